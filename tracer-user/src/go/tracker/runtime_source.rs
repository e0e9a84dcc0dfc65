//! The goroutine source of a live Go target: the runtime's goroutines
//! ([`GoroutineReader`]) with the locks they hold by pending deferred unlocks
//! ([`DeferAnalyzer`]), as the lock graph of `go::parked` takes them.
use std::sync::Arc;

use super::parked::{GoroutineSource, ParkedSnapshot, SnapshotError};
use crate::{
    go::{
        defers::DeferAnalyzer,
        goroutines::{GoroutineInfo, GoroutineReader, GoroutineStatus},
        parked::{ParkedGoroutine, ParkedHold, ParkedWait},
        sym::GoTable,
    },
    model::{HolderEvidence, HolderState},
    target::TargetProcess,
};

/// Reads a Go process's goroutines, waits and deferred holds.
pub struct RuntimeGoroutines {
    reader: GoroutineReader,
    /// `None` when the Go release's defers cannot be read (a note says so).
    defers: Option<DeferAnalyzer>,
    table: Arc<GoTable>,
}

impl RuntimeGoroutines {
    #[must_use]
    pub fn new(
        reader: GoroutineReader,
        defers: Option<DeferAnalyzer>,
        table: Arc<GoTable>,
    ) -> Self {
        Self {
            reader,
            defers,
            table,
        }
    }

    /// The locks `g` holds by deferred unlocks still pending on its stack: in its
    /// frames' open-coded defer slots and in its `_defer` records.
    fn deferred_holds(&self, g: &GoroutineInfo, process: &dyn TargetProcess) -> Vec<ParkedHold> {
        let Some(defers) = &self.defers else {
            return Vec::new();
        };
        let mut unlocks: Vec<_> = g
            .frames
            .iter()
            .flat_map(|f| defers.frame_unlocks(f.pc, f.bp, process))
            .collect();
        if g.defer != 0 {
            unlocks.extend(defers.chained_unlocks(g.defer, process));
        }
        unlocks
            .into_iter()
            .map(|u| ParkedHold {
                lock: u.lock,
                mode: u.mode,
                evidence: HolderEvidence::DeferredUnlock,
            })
            .collect()
    }
}

impl GoroutineSource for RuntimeGoroutines {
    fn snapshot(&mut self, process: &dyn TargetProcess) -> Result<ParkedSnapshot, SnapshotError> {
        let snapshot = self
            .reader
            .snapshot(&self.table, process)
            .map_err(|e| SnapshotError::Unreadable(Box::new(e)))?;
        let mut notes = Vec::new();
        if snapshot.truncated {
            notes.push(format!(
                "only the first {} of {} goroutines were read: locks waited for or held by the others are not seen",
                snapshot.goroutines.len(),
                snapshot.total_gs
            ));
        }
        // Holders matter only for locks someone waits for: with no lock waiter, the
        // stacks are not searched for deferred unlocks at all.
        let anyone_waits = snapshot.goroutines.iter().any(|g| g.lock_wait.is_some());
        let goroutines = snapshot
            .goroutines
            .iter()
            .map(|g| ParkedGoroutine {
                goid: g.goid,
                state: holder_state(g.status),
                wait: g
                    .lock_wait
                    .filter(|w| w.lock_memory_agrees)
                    .map(|w| ParkedWait {
                        lock: w.lock,
                        mode: w.mode,
                        drains_readers: w.drains_readers,
                        since_ns: g.waitsince_ns,
                    }),
                holds: if anyone_waits && g.status == GoroutineStatus::Waiting {
                    self.deferred_holds(g, process)
                } else {
                    Vec::new()
                },
                stack: g.frames.iter().map(|f| f.pc).collect(),
            })
            .collect();
        Ok(ParkedSnapshot { goroutines, notes })
    }
}

/// What a goroutine of the snapshot is doing, as a stuck lock's holder state says it.
fn holder_state(status: GoroutineStatus) -> HolderState {
    match status {
        GoroutineStatus::Runnable
        | GoroutineStatus::Running
        | GoroutineStatus::Syscall
        | GoroutineStatus::CopyStack => HolderState::Running,
        GoroutineStatus::Waiting | GoroutineStatus::Preempted => HolderState::Blocked,
        GoroutineStatus::Idle | GoroutineStatus::Dead => HolderState::Unknown,
    }
}
