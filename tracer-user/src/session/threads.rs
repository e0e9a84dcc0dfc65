//! The target's threads as the session knows them, for the analysis, which reads no
//! `/proc` itself: read at attach, and read again when an event names, as a lock's
//! owner, a TID outside them (a thread may have started since). At most once per drain
//! interval, so a burst of bogus owner fields (a word that only sits where an owner field
//! would be) costs one directory read; until the next read such a TID is no holder.
//!
//! Each thread is known by its host TID (what the kernel's events carry) and by its TID
//! in the target's PID namespace (what the target's memory holds): they differ for a
//! target in a container, and owner TIDs are translated with these pairs.
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
    /// How many times the threads were read: a recording puts each new reading on its
    /// tape.
    reads: u64,
}

impl LiveThreads {
    /// Reads the threads of `target` now.
    pub(super) fn read(target: &dyn TargetProcess) -> Self {
        Self {
            tids: read_tids(target),
            read_at: Instant::now(),
            reads: 1,
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

    /// How many times the threads were read (a new reading changes it).
    pub(super) fn reads(&self) -> u64 {
        self.reads
    }

    /// The threads as last read.
    pub(super) fn ids(&self) -> &ThreadIds {
        &self.tids
    }

    /// The PID a target in a PID namespace (a container) knows itself by (its main
    /// thread's TID there), when it differs from its host PID `pid`.
    pub(super) fn namespace_pid(&self, pid: u32) -> Option<u32> {
        self.tids.namespace_tid(pid).filter(|&ns_pid| ns_pid != pid)
    }

    /// Makes sure every host TID of `host_tids` is among the threads known, reading them
    /// again when one is not (at most once per drain interval, as for owners).
    pub(super) fn cover(&mut self, target: &dyn TargetProcess, host_tids: &[u32]) {
        if host_tids.iter().any(|&t| !self.tids.contains_host(t)) {
            self.refresh_if_due(target, Instant::now());
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
        self.reads += 1;
        true
    }
}

/// The threads of `target` now (none when it is gone).
fn read_tids(target: &dyn TargetProcess) -> ThreadIds {
    ThreadIds::from_namespace_pairs(target.namespace_tids().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        session::test_support::mutex_wait,
        target::fake::{FakeProcess, FakeThread},
    };

    const LOCK_A: u64 = 0x5000;
    const LOCK_B: u64 = 0x5040;

    /// Guards the refresh of the target's threads that replaced the analysis's `/proc`
    /// callback: an owner TID outside the threads known is looked up again only once
    /// the last read is a drain interval old (until then it is no holder), and then a
    /// thread started since becomes the holder.
    #[test]
    fn an_unknown_owner_reads_the_threads_again_at_most_once_per_interval() {
        let before = FakeProcess::new(100)
            .thread(100, FakeThread::running("main"))
            .thread(101, FakeThread::running("worker"));
        let after = before.clone().thread(102, FakeThread::running("new"));
        let mut threads = LiveThreads::read(&before);
        let mut analysis = Analysis::new();

        threads.apply(&mut analysis, &after, &mutex_wait(101, 10, LOCK_A, 102));
        let wait = analysis.active_wait(101).copied();
        assert_eq!(wait.map(|w| w.holder), Some(None), "read too recently");
        assert!(!threads.tids.contains_host(102));

        threads.read_at = threads
            .read_at
            .checked_sub(DRAIN_INTERVAL)
            .expect("the clock started long ago");
        threads.apply(&mut analysis, &after, &mutex_wait(100, 20, LOCK_B, 102));
        let wait = analysis.active_wait(100).copied();
        assert_eq!(wait.map(|w| w.holder), Some(Some(102)), "read again");
        assert!(threads.tids.contains_host(102));
        assert!(!threads.refresh_if_due(&after, Instant::now()));
    }

    /// Guards targets in a PID namespace (containers): the owner field holds the TID
    /// inside the namespace; the holder must be the host TID, the same thread the kernel
    /// names in its events.
    #[test]
    fn owners_in_a_pid_namespace_become_host_tids() {
        let target = FakeProcess::new(4242)
            .thread(4242, FakeThread::running("main").in_namespace(1))
            .thread(4243, FakeThread::running("t1").in_namespace(2))
            .thread(4244, FakeThread::running("t2").in_namespace(3));
        let mut threads = LiveThreads::read(&target);
        let mut analysis = Analysis::new();
        threads.apply(&mut analysis, &target, &mutex_wait(4243, 10, LOCK_A, 3));
        let wait = analysis.active_wait(4243).copied();
        assert_eq!(wait.map(|w| w.holder), Some(Some(4244)));
        assert_eq!(threads.ids().namespace_tid(4244), Some(3));
        assert_eq!(threads.namespace_pid(4242), Some(1));
        let outside = LiveThreads::read(&FakeProcess::new(7).thread(7, FakeThread::running("m")));
        assert_eq!(outside.namespace_pid(7), None, "same PID on both sides");
    }

    /// Guards a target that exited: its threads read as none, so no owner is a holder.
    #[test]
    fn a_gone_target_has_no_threads() {
        let gone = FakeProcess::new(100)
            .thread(100, FakeThread::running("main"))
            .exited();
        let mut threads = LiveThreads::read(&gone);
        let mut analysis = Analysis::new();
        threads.apply(&mut analysis, &gone, &mutex_wait(101, 10, LOCK_A, 100));
        let wait = analysis.active_wait(101).copied();
        assert_eq!(wait.map(|w| w.holder), Some(None));
    }
}
