//! The target's threads as the session knows them, for the analysis, which reads no
//! `/proc` itself: read at attach, and read again when an event names, as a lock's
//! owner, a TID outside them (a thread may have started since). At most once per drain
//! interval, so a burst of bogus owner fields (a word that only sits where an owner field
//! would be) costs one directory read; until the next read such a TID is no holder.
use std::time::Instant;

use super::DRAIN_INTERVAL;
use crate::{
    event::TraceEvent,
    native::analysis::{Analysis, ThreadIds},
    target::TargetProcess,
};

/// The target's threads, as last read, and when.
pub(super) struct LiveThreads {
    tids: ThreadIds,
    read_at: Instant,
}

impl LiveThreads {
    /// Reads the threads of `target` now.
    pub(super) fn read(target: &dyn TargetProcess) -> Self {
        Self {
            tids: read_tids(target),
            read_at: Instant::now(),
        }
    }

    /// Applies `event` to `analysis`. When it names an owner TID outside the threads
    /// known, they are read again first (unless they were read less than a drain
    /// interval ago), and a TID still outside them is no holder.
    pub(super) fn apply(
        &mut self,
        analysis: &mut Analysis,
        target: &dyn TargetProcess,
        event: &TraceEvent<'_>,
    ) {
        if analysis.try_on_event(event, &self.tids).is_err() {
            self.refresh_if_due(target, Instant::now());
            analysis.on_event(event, &self.tids);
        }
    }

    /// Reads the threads again unless the last read is less than `DRAIN_INTERVAL` older
    /// than `now`; whether it did.
    fn refresh_if_due(&mut self, target: &dyn TargetProcess, now: Instant) -> bool {
        if now.saturating_duration_since(self.read_at) < DRAIN_INTERVAL {
            return false;
        }
        self.tids = read_tids(target);
        self.read_at = now;
        true
    }
}

/// The threads of `target` now (none when it is gone).
fn read_tids(target: &dyn TargetProcess) -> ThreadIds {
    target
        .thread_ids()
        .unwrap_or_default()
        .into_iter()
        .collect()
}
