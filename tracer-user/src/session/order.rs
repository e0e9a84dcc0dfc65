//! The native lock-order graph of a session (`crate::lock_order`): fed the traced
//! acquisitions and releases (`--holds`, or the lock uprobes a musl target gets by
//! itself), each new lock given its class from the symbols.
use std::sync::Arc;

use rustc_hash::FxHashMap;
use tracer_common::LockOp;

use crate::{
    event::{StackId, StackWindow, TraceEvent},
    lock_order::{Acquisition, Actor, Inversion, LockClass, LockOrder},
    model::{
        HoldMode,
        raw::{RawInversion, RawStack},
    },
    symbols::Symbolizer,
};

/// Most call sites whose function is remembered (a program has a few hundred lock call
/// sites; past the cap a site is looked up again).
const MAX_SITES: usize = 4096;

/// Where a native lock was taken: the kernel's stack, and the lock call's return address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NativeSite {
    stack: StackId,
    call_site: u64,
}

impl NativeSite {
    fn raw_stack(self) -> RawStack {
        RawStack::Native {
            stack_id: self.stack,
            window: Box::new(StackWindow {
                ip: self.call_site,
                ..StackWindow::EMPTY
            }),
            waiter: None,
        }
    }
}

/// The graph and what names its classes.
#[derive(Debug, Default)]
pub(super) struct NativeOrder {
    graph: LockOrder<NativeSite>,
    /// The class of a lock first taken at a call site, by call site.
    sites: FxHashMap<u64, LockClass>,
    found: Vec<Inversion<NativeSite>>,
}

impl NativeOrder {
    /// Applies one record; `site_name` is the `Type.field` its lock call names, if any
    /// (`lock_names::c`).
    pub(super) fn on_event(
        &mut self,
        event: &TraceEvent<'_>,
        symbolizer: &mut Symbolizer,
        site_name: Option<&Arc<str>>,
    ) {
        match *event {
            TraceEvent::LockAcquired {
                tid,
                addr,
                op,
                stack,
                call_site,
                ..
            } => {
                let acquisition = Acquisition {
                    lock: addr,
                    mode: if op.is_read() {
                        HoldMode::Read
                    } else {
                        HoldMode::Write
                    },
                    // A trylock cannot block: no order leads to it.
                    blocking: !matches!(
                        op,
                        LockOp::MutexTryLock | LockOp::RwTryRead | LockOp::RwTryWrite
                    ),
                    stack: NativeSite { stack, call_site },
                };
                let sites = &mut self.sites;
                let found = self.graph.acquired(
                    u64::from(tid),
                    Actor { tid, goid: None },
                    &acquisition,
                    || class_of(symbolizer, sites, addr, (call_site, site_name)),
                );
                self.found.extend(found);
            }
            TraceEvent::LockReleased { tid, addr, .. } => self.graph.released(u64::from(tid), addr),
            TraceEvent::FutexWait { .. } | TraceEvent::FutexWaitDone { .. } => {}
        }
    }

    /// The inversions found since the last call.
    pub(super) fn take_found(&mut self) -> Vec<RawInversion> {
        self.found
            .drain(..)
            .map(|inversion| inversion.into_raw(NativeSite::raw_stack))
            .collect()
    }

    /// The graph's edges (lock held, lock then taken, by whom), for a picture.
    pub(super) fn order_edges(&self) -> Vec<(u64, u64, crate::lock_order::Actor)> {
        self.graph.order_edges()
    }

    /// The notes for the summary (see [`LockOrderCounts::notes`]).
    pub(super) fn note(&self) -> Vec<String> {
        self.graph.counts().notes()
    }
}

/// A native lock's class: the static that holds it (with its offset: each lock of a
/// static array is its own), else the struct type and field its lock call takes
/// (`site_name`: `account.mu`, one class for every `struct account`), else the function
/// that first took it.
fn class_of(
    symbolizer: &mut Symbolizer,
    sites: &mut FxHashMap<u64, LockClass>,
    lock: u64,
    (call_site, site_name): (u64, Option<&Arc<str>>),
) -> LockClass {
    if let Some(name) = symbolizer.data_name(lock) {
        return LockClass::Named(name.into());
    }
    if let Some(name) = site_name {
        return LockClass::Named(Arc::clone(name));
    }
    if let Some(class) = sites.get(&call_site) {
        return class.clone();
    }
    let frame = symbolizer.frame(call_site);
    let class = if frame.function.is_some() {
        LockClass::Site(call_site.wrapping_sub(frame.offset))
    } else {
        LockClass::Site(call_site)
    };
    if sites.len() < MAX_SITES {
        sites.insert(call_site, class.clone());
    }
    class
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::fake::FakeProcess;

    /// Two threads each nest two locks of other instances, one `store.mu` then
    /// `cache.mu`, the other the reverse, each lock call in a function of its own (no
    /// symbols: four call sites). By `Type.field` the classes are ordered both ways: one
    /// inversion; without the names each call site is its own class: none.
    #[test]
    fn call_site_names_class_heap_locks_across_instances() {
        let run = |named: bool| {
            let target = FakeProcess::new(7);
            let mut symbolizer = Symbolizer::from_target_maps(Vec::new(), &target);
            let mut order = NativeOrder::default();
            let store: Arc<str> = Arc::from("store.mu");
            let cache: Arc<str> = Arc::from("cache.mu");
            // (tid, lock, call site, name)
            let takes = [
                (1, 0x1000, 0x40_0100, &store),
                (1, 0x2000, 0x40_0200, &cache),
                (2, 0x3000, 0x40_0300, &cache),
                (2, 0x4000, 0x40_0400, &store),
            ];
            for pair in takes.chunks(2) {
                for &(tid, addr, call_site, name) in pair {
                    let event = TraceEvent::LockAcquired {
                        tid,
                        ts_ns: 1,
                        start_ns: 1,
                        addr,
                        op: LockOp::MutexLock,
                        stack: StackId::default(),
                        call_site,
                    };
                    order.on_event(&event, &mut symbolizer, named.then_some(name));
                }
                for &(tid, addr, _, _) in pair.iter().rev() {
                    let event = TraceEvent::LockReleased {
                        tid,
                        ts_ns: 2,
                        addr,
                        op: LockOp::MutexUnlock,
                    };
                    order.on_event(&event, &mut symbolizer, None);
                }
            }
            order.take_found()
        };
        let found = run(true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(run(false).is_empty());
    }
}
