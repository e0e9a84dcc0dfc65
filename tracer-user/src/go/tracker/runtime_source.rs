//! The goroutine source of a live Go target: the runtime's goroutines
//! ([`GoroutineReader`]) with the locks they hold by pending deferred unlocks
//! ([`DeferAnalyzer`]) and by the lock variables of frames stopped between an acquisition
//! and its release ([`FrameHoldAnalyzer`]), as the lock graph of `go::parked` takes them.
use std::sync::Arc;

use super::parked::{GoroutineSource, ParkedSnapshot, SnapshotError};
use crate::{
    go::{
        defers::DeferAnalyzer,
        frame_holds::FrameHoldAnalyzer,
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
    /// `None` when the code cannot be analysed (no inline trees, not x86-64).
    frames: Option<FrameHoldAnalyzer>,
    table: Arc<GoTable>,
    /// Notes given with the first snapshot (an analysis that could not be set up).
    setup_notes: Vec<String>,
}

impl RuntimeGoroutines {
    #[must_use]
    pub fn new(
        reader: GoroutineReader,
        defers: Option<DeferAnalyzer>,
        frames: Option<FrameHoldAnalyzer>,
        table: Arc<GoTable>,
    ) -> Self {
        Self {
            reader,
            defers,
            frames,
            table,
            setup_notes: Vec::new(),
        }
    }

    /// Notes to give with the first snapshot.
    #[must_use]
    pub fn with_notes(mut self, notes: Vec<String>) -> Self {
        self.setup_notes = notes;
        self
    }

    /// Notes on what the holder analyses met and could not use (counts left out, so
    /// that a note is given once however many snapshots meet the same thing).
    fn analysis_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(defers) = &self.defers {
            let stats = defers.stats();
            if stats.unresolved_unlocks > 0 {
                notes.push(
                    "some pending deferred unlocks were of a lock whose address their code does not show: those holders may be missing"
                        .to_owned(),
                );
            }
            if stats.chains_truncated > 0 {
                notes.push(format!(
                    "some goroutines' _defer chains were read only to their first {} records",
                    crate::go::defers::MAX_DEFER_RECORDS
                ));
            }
        }
        notes
    }

    /// What `g` holds: its deferred unlocks, then the locks of its frames' variables not
    /// already named by a deferred unlock.
    fn holds(&self, g: &GoroutineInfo, process: &dyn TargetProcess) -> Vec<ParkedHold> {
        let mut holds = self.deferred_holds(g, process);
        for hold in self.frame_holds(g, process) {
            if !holds.iter().any(|h| h.lock == hold.lock) {
                holds.push(hold);
            }
        }
        holds
    }

    /// The locks `g`'s frames hold through their variables. A frame inside an
    /// acquisition whose lock the code does not locate may name the lock it waits for:
    /// that one is dropped, and everything the frame names when the wait is unknown.
    fn frame_holds(&self, g: &GoroutineInfo, process: &dyn TargetProcess) -> Vec<ParkedHold> {
        let Some(analyzer) = &self.frames else {
            return Vec::new();
        };
        let waits_for = g.lock_wait.map(|w| w.lock);
        let mut holds: Vec<ParkedHold> = Vec::new();
        for frame in &g.frames {
            let found = analyzer.frame_holds(frame.pc, frame.bp, process);
            for hold in found.holds {
                if found.acquiring_unresolved && waits_for.is_none_or(|w| w == hold.lock) {
                    continue;
                }
                if holds.iter().any(|h| h.lock == hold.lock) {
                    continue;
                }
                holds.push(ParkedHold {
                    lock: hold.lock,
                    mode: hold.mode,
                    evidence: HolderEvidence::FrameVariable,
                });
            }
        }
        holds
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
        let mut notes = std::mem::take(&mut self.setup_notes);
        if snapshot.truncated {
            notes.push(format!(
                "only the first {} of {} goroutines were read: locks waited for or held by the others are not seen",
                snapshot.goroutines.len(),
                snapshot.total_gs
            ));
        }
        // Holders matter only for locks someone waits for: with no lock waiter, the
        // stacks are not searched for deferred unlocks or lock variables at all.
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
                    self.holds(g, process)
                } else {
                    Vec::new()
                },
                stack: g.frames.iter().map(|f| f.pc).collect(),
            })
            .collect();
        notes.extend(self.analysis_notes());
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
