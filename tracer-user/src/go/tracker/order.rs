//! The Go lock-order graph of a tracked program (`crate::lock_order`): fed the holds the
//! model applied (`GoLockModel::take_hold_changes`), each lock's class the name the
//! tracker knows it by (`Type.field` from the site that took it, a global's name), else
//! the function that first took it.
use crate::{
    go::lock_model::{GoHold, GoLockMode, HoldChange},
    lock_order::{Acquisition, Actor, Inversion, LockClass, LockOrder, LockOrderCounts},
    model::{
        HoldMode,
        raw::{RawInversion, RawStack},
    },
};

/// Where a goroutine took a lock: the acquisition site and the kernel's stack there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GoSite {
    pc: u64,
    stack_id: i32,
}

/// The graph, and the inversions found and not yet reported.
#[derive(Debug, Default)]
pub(super) struct GoOrder {
    graph: LockOrder<GoSite>,
    found: Vec<Inversion<GoSite>>,
}

impl GoOrder {
    /// Applies one hold change; `class` names a lock not seen before from its address and
    /// the site that took it.
    pub(super) fn apply(&mut self, change: HoldChange, class: impl FnOnce(u64, u64) -> LockClass) {
        match change {
            HoldChange::Acquired {
                key,
                lock,
                mode,
                hold,
            } => {
                let GoHold {
                    goid,
                    tid,
                    pc,
                    stack_id,
                    ..
                } = hold;
                let found = self.graph.acquired(
                    key,
                    Actor {
                        tid,
                        goid: (goid != 0).then_some(goid),
                    },
                    &Acquisition {
                        lock,
                        mode: match mode {
                            GoLockMode::Read => HoldMode::Read,
                            GoLockMode::Write => HoldMode::Write,
                        },
                        // The probes see `Lock`/`RLock`, which block; `TryLock` sites are
                        // not probed.
                        blocking: true,
                        stack: GoSite { pc, stack_id },
                    },
                    || class(lock, pc),
                );
                self.found.extend(found);
            }
            HoldChange::Released { key, lock } => self.graph.released(key, lock),
        }
    }

    /// The inversions found since the last call.
    pub(super) fn take_found(&mut self) -> Vec<RawInversion> {
        self.found
            .drain(..)
            .map(|inversion| {
                inversion.into_raw(|site| RawStack::Go {
                    pc: site.pc,
                    caller: 0,
                    stack_id: site.stack_id,
                })
            })
            .collect()
    }

    pub(super) fn counts(&self) -> LockOrderCounts {
        self.graph.counts()
    }
}
