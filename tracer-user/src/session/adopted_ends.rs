//! The ends of the waits found asleep at attach ([`super::adopt`]) when the kernel side
//! times wait ends at switch-in (`WaitEnds::AtSwitchIn`, `tracer serve`'s default).
//!
//! There, only a wait the `sched_switch` program saw go to sleep is ended by it (it keeps
//! the sleeping task, and ends the wait at that task's switch back in); with no
//! `sys_exit` program, nothing in the kernel sees a wait that was asleep before the
//! attach return. So the session looks at those threads itself, every rescan: a thread
//! whose system call is no longer the one it was found in, or that has been switched
//! out since (it ran), has ended its wait, and the end is given to the analysis then,
//! at most one rescan late (a few, when more than [`CHECKS_PER_RESCAN`] such waits are
//! left). (Such a wait began before the attach: its time is a lower
//! bound either way.)
//!
//! The same goes for a wait the kernel left out while it sampled sleeps, found asleep
//! from `/proc` ([`super::long_sleeps::UnsampledSleeps`]): [`AdoptedEnds::push`].
use tracer_common::futex_cmd;

use super::threads::LiveThreads;
use crate::{
    event::{TraceEvent, encode_bytes},
    native::analysis::Analysis,
    recording::tape::TapeItem,
    target::{SyscallState, TargetProcess},
};

/// Threads looked at per rescan at most (two small `/proc` reads each): a target found
/// with thousands of idle workers asleep on condition variables costs at most 128 reads
/// a second, not thousands; the rest wait their turn, round-robin, so with more than 16
/// adopted waits an end may be seen a few rescans late.
const CHECKS_PER_RESCAN: usize = 16;

/// One wait found asleep at attach that has not been seen end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AdoptedWait {
    tid: u32,
    /// When the analysis has it begin.
    start_ns: u64,
    /// The futex word, as the analysis keeps the wait under.
    futex: u64,
    /// The system call the thread was found in.
    call: SyscallState,
    /// Its context switches then.
    switches: Option<u64>,
}

/// The waits found asleep at attach whose end is still to be seen (see the module notes).
#[derive(Debug, Default)]
pub(super) struct AdoptedEnds {
    waits: Vec<AdoptedWait>,
    /// Where the next rescan's checks start in `waits`.
    next: usize,
}

impl AdoptedEnds {
    /// The waits of `analysis` begun at `adopted_at` (the adoption's stamp), with each
    /// thread's system call and context switches as they are now.
    pub(super) fn of_adoption(
        analysis: &Analysis,
        target: &dyn TargetProcess,
        adopted_at: u64,
    ) -> Self {
        let mut waits: Vec<AdoptedWait> = analysis
            .active_waits()
            .filter(|(_, wait)| wait.start_ns == adopted_at && !wait.parked)
            .filter_map(|(tid, wait)| {
                Some(AdoptedWait {
                    tid,
                    start_ns: adopted_at,
                    futex: wait.futex,
                    call: target.syscall_state(tid)?,
                    switches: target.context_switches(tid),
                })
            })
            .collect();
        waits.sort_unstable_by_key(|w| w.tid);
        Self { waits, next: 0 }
    }

    /// Watches thread `tid`'s wait, as `analysis` has it now (given it from `/proc`), for
    /// its end; `(call, switches)` are what `/proc` showed of the thread then.
    pub(super) fn push(
        &mut self,
        analysis: &Analysis,
        tid: u32,
        (call, switches): (SyscallState, u64),
    ) {
        let Some(wait) = analysis.active_wait(tid) else {
            return;
        };
        self.waits.push(AdoptedWait {
            tid,
            start_ns: wait.start_ns,
            futex: wait.futex,
            call,
            switches: Some(switches),
        });
    }

    /// Whether no adopted wait is left to watch.
    pub(super) fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }

    /// Looks at up to [`CHECKS_PER_RESCAN`] threads: each whose wait is over is given
    /// its end at `now_ns`, and each whose wait the analysis no longer holds (the kernel
    /// side sent a newer wait of the thread, or an `exec` replaced the program) is
    /// forgotten. Returns the ends applied, as a recording's tape keeps them.
    pub(super) fn check(
        &mut self,
        analysis: &mut Analysis,
        threads: &mut LiveThreads,
        target: &dyn TargetProcess,
        now_ns: u64,
    ) -> Vec<TapeItem> {
        let mut applied = Vec::new();
        let checks = self.waits.len().min(CHECKS_PER_RESCAN);
        let mut index = self.next;
        for _ in 0..checks {
            if index >= self.waits.len() {
                index = 0;
            }
            let wait = self.waits[index];
            let still_adopted = analysis
                .active_wait(wait.tid)
                .is_some_and(|w| w.start_ns == wait.start_ns && w.futex == wait.futex);
            if !still_adopted {
                self.waits.swap_remove(index);
                continue;
            }
            let asleep = target.syscall_state(wait.tid) == Some(wait.call)
                && target.context_switches(wait.tid) == wait.switches;
            if asleep {
                index += 1;
                continue;
            }
            let end = TraceEvent::FutexWaitDone {
                tid: wait.tid,
                ts_ns: now_ns,
                addr: wait.futex,
                cmd: futex_cmd::WAIT,
                val: 0,
                ret: 0,
            };
            threads.apply(analysis, target, &end);
            applied.push(TapeItem::Record(encode_bytes(&end)));
            self.waits.swap_remove(index);
        }
        self.next = index;
        applied
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;
    use crate::{
        session::test_support::{FUTEX_PRIVATE, mutex_wait},
        target::fake::{FakeProcess, FakeThread},
    };

    const FUTEX_NR: i64 = 202;
    const WORD: u64 = 0x7000;

    fn asleep(word: u64) -> FakeThread {
        FakeThread::in_syscall(
            "worker",
            FUTEX_NR,
            [word, FUTEX_PRIVATE, 2, 0, 0, 0],
            0x1000,
            0x2000,
        )
    }

    /// Guards against a wait found asleep at attach staying open for good under `tracer
    /// serve` (no `sys_exit` program sees it return): a lock released after the attach
    /// would read as held, its waiter as stuck, forever.
    #[test]
    fn an_adopted_wait_ends_once_its_thread_left_the_call() {
        let target = FakeProcess::new(10)
            .thread(11, asleep(WORD))
            .thread(12, asleep(WORD + 64));
        let mut analysis = Analysis::new();
        let mut threads = LiveThreads::read(&target);
        for (tid, word) in [(11, WORD), (12, WORD + 64)] {
            threads.apply(&mut analysis, &target, &mutex_wait(tid, 100, word, 0));
        }
        let mut ends = AdoptedEnds::of_adoption(&analysis, &target, 100);
        assert_eq!(ends.waits.len(), 2);

        // Nothing changed: both still wait.
        let applied = ends.check(&mut analysis, &mut threads, &target, 200);
        assert!(applied.is_empty());
        assert!(analysis.active_wait(11).is_some());

        // Thread 11 returned from its call; thread 12 went back to sleep in the same
        // call's place after running (its switches moved on).
        let mut woken = asleep(WORD + 64);
        woken.switches += 1;
        let target = target
            .thread(11, FakeThread::running("worker"))
            .thread(12, woken);
        let applied = ends.check(&mut analysis, &mut threads, &target, 300);
        assert_eq!(applied.len(), 2);
        assert!(analysis.active_wait(11).is_none());
        assert!(analysis.active_wait(12).is_none());
        assert!(ends.is_empty());
    }

    /// Guards against ending a thread's newer wait (one the kernel side sent after the
    /// adopted one ended) with the adopted wait's end.
    #[test]
    fn a_newer_wait_of_the_thread_is_left_alone() {
        let target = FakeProcess::new(10).thread(11, asleep(WORD));
        let mut analysis = Analysis::new();
        let mut threads = LiveThreads::read(&target);
        threads.apply(&mut analysis, &target, &mutex_wait(11, 100, WORD, 0));
        let mut ends = AdoptedEnds::of_adoption(&analysis, &target, 100);
        // The kernel side: the adopted wait ended (unseen), and a new one began.
        threads.apply(&mut analysis, &target, &mutex_wait(11, 150, WORD + 64, 0));
        let target = target.thread(11, FakeThread::running("worker"));
        let applied = ends.check(&mut analysis, &mut threads, &target, 300);
        assert!(applied.is_empty());
        assert_eq!(analysis.active_wait(11).map(|w| w.start_ns), Some(150));
        assert!(ends.is_empty());
    }
}
