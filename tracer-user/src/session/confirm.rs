//! The check of a deadlock candidate against the live process before it is reported,
//! and what its waits' timeouts make of it (a cycle of timed waits resolves itself).
//!
//! Reads glibc's lock layouts (owner fields at `MUTEX_OWNER_OFFSET` and
//! `RWLOCK_WRITER_OFFSET`, the PI futex word's TID bits), or musl's for a musl program
//! (`musl_lock::still_held`). A Rust `std` mutex's holder found from a guard on its
//! stack is checked by reading that guard again (`rust_holders::guard_still`).
use rustc_hash::FxHashSet as HashSet;
use tracer_common::{FUTEX_TID_MASK, syscall};

use crate::{
    model::LockKind,
    native::{
        LockLayout,
        analysis::{Analysis, ThreadIds},
        futex_lock::{MUTEX_OWNER_OFFSET, RWLOCK_WRITER_OFFSET},
        musl_lock,
        waitgraph::Cycle,
    },
    target::{SyscallState, TargetProcess},
};

/// Checks a candidate cycle of `analysis` against the live process, so a cycle assembled from
/// events that raced (a wake not yet seen) is never reported: every thread must still
/// sleep in a futex call on the word it waits on, and every lock's owner field, read
/// now, must still name the next thread of the cycle.
///
/// Those reads are made one after another, so each thread's context-switch count is
/// read before and after them all and must not move: otherwise a thread could be seen
/// asleep on a lock and, a moment later, as its owner, after it woke and took it (a
/// false self-deadlock on a busy mutex). A deadlocked thread does not
/// run, so a real cycle always passes.
///
/// `threads` translate the cycle's host TIDs into the TIDs the target's memory holds
/// (they differ for a target in a PID namespace).
pub(super) fn confirm(
    target: &dyn TargetProcess,
    analysis: &Analysis,
    threads: &ThreadIds,
    cycle: &Cycle,
) -> bool {
    let switches = || -> Option<Vec<u64>> {
        cycle
            .edges
            .iter()
            .map(|edge| target.context_switches(edge.tid))
            .collect()
    };
    let Some(before) = switches() else {
        return false;
    };
    cycle_state_holds(target, analysis, threads, cycle)
        && switches().is_some_and(|after| after == before)
}

/// Whether every thread of `cycle` sleeps in a futex call on the word it waits on and
/// every lock's owner field names the next thread (see [`confirm`]).
fn cycle_state_holds(
    target: &dyn TargetProcess,
    analysis: &Analysis,
    threads: &ThreadIds,
    cycle: &Cycle,
) -> bool {
    let n = cycle.edges.len();
    cycle.edges.iter().enumerate().all(|(i, edge)| {
        let Some(wait) = analysis.active_wait(edge.tid) else {
            return false;
        };
        if wait.lock != Some(edge.waits_for) {
            return false;
        }
        let blocked_here = match target.syscall_state(edge.tid) {
            Some(SyscallState::InSyscall { nr, args, .. }) => match nr {
                // Parked after EDEADLK: asleep for good, on a word of its own.
                syscall::FUTEX | syscall::FUTEX_WAIT if wait.parked => true,
                syscall::FUTEX | syscall::FUTEX_WAIT => args[0] == wait.futex,
                syscall::FUTEX_WAITV => true,
                _ => false,
            },
            _ => false,
        };
        let next = cycle.edges[(i + 1) % n].tid;
        blocked_here && owner_still(target, analysis, threads, edge.waits_for, next)
    })
}

/// When one wait of a cycle gives up by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EntryTimeout {
    /// The wait has a timeout.
    pub(super) timed: bool,
    /// When it gives up (`CLOCK_MONOTONIC`), if its timeout is known.
    pub(super) gives_up_at_ns: Option<u64>,
}

/// The timeouts of `cycle`'s waits, in its order, with `CLOCK_REALTIME`
/// `realtime_ahead_ns` ahead of `CLOCK_MONOTONIC` (for `CLOCK_REALTIME` deadlines).
pub(super) fn entry_timeouts(
    analysis: &Analysis,
    cycle: &Cycle,
    realtime_ahead_ns: i128,
) -> Vec<EntryTimeout> {
    cycle
        .edges
        .iter()
        .map(|edge| match analysis.active_wait(edge.tid) {
            Some(wait) => EntryTimeout {
                timed: wait.timeout.is_timed(),
                gives_up_at_ns: wait.timeout.deadline_ns(wait.start_ns, realtime_ahead_ns),
            },
            None => EntryTimeout {
                timed: false,
                gives_up_at_ns: None,
            },
        })
        .collect()
}

/// Whether a wait of the cycle is past its deadline at `now_ns`: it is timing out (its
/// `ETIMEDOUT` end is on its way), so the cycle is breaking up and is not reported as
/// live.
pub(super) fn timing_out(timeouts: &[EntryTimeout], now_ns: u64) -> bool {
    timeouts
        .iter()
        .any(|t| t.gives_up_at_ns.is_some_and(|at| at <= now_ns))
}

/// Whether every wait of the cycle has a timeout: the cycle will time out, it is no
/// deadlock.
pub(super) fn will_time_out(timeouts: &[EntryTimeout]) -> bool {
    !timeouts.is_empty() && timeouts.iter().all(|t| t.timed)
}

/// At most this many distinct cycles of timed waits are remembered as reported; beyond,
/// new ones are not reported (a note says how many).
pub(super) const MAX_TIMED_CYCLES: usize = 1024;

/// The cycles of timed waits reported so far. A program that backs off from a timed
/// cycle usually retries and forms the same cycle again, many times a second: each is
/// reported once. Unlike a deadlock, such a cycle is not marked reported in the
/// analysis, so if the same threads and locks later form it with an untimed wait, that
/// deadlock is still reported.
#[derive(Debug, Default)]
pub(super) struct TimedCycles {
    reported: HashSet<Cycle>,
    /// Distinct cycles not reported because `reported` was full.
    over_cap: usize,
}

impl TimedCycles {
    /// Whether `cycle` is to be reported now: the first time it is seen, while there is
    /// room to remember it.
    pub(super) fn first_report(&mut self, cycle: &Cycle) -> bool {
        if self.reported.contains(cycle) {
            return false;
        }
        if self.reported.len() >= MAX_TIMED_CYCLES {
            self.over_cap += 1;
            return false;
        }
        self.reported.insert(cycle.clone());
        true
    }

    /// Number of distinct cycles of timed waits reported.
    pub(super) fn reported(&self) -> usize {
        self.reported.len()
    }

    /// A note when some were left unreported.
    pub(super) fn note(&self) -> Option<String> {
        (self.over_cap > 0).then(|| {
            format!(
                "{} cycle(s) of timed lock waits were not reported: at most {MAX_TIMED_CYCLES} distinct ones are",
                self.over_cap
            )
        })
    }
}

/// Whether the lock's owner field still names host thread `tid` (true when the lock has
/// no owner field to check and the holder came from the acquire uprobes).
fn owner_still(
    target: &dyn TargetProcess,
    analysis: &Analysis,
    threads: &ThreadIds,
    lock: u64,
    tid: u32,
) -> bool {
    let read_i32 = |addr: u64| target.read_i32(addr);
    // The owner fields hold the TID in the target's PID namespace; a thread not among
    // those known cannot be checked.
    let ns_tid = threads.namespace_tid(tid);
    let expect = ns_tid.and_then(|t| i32::try_from(t).ok());
    if analysis.lock_kind(lock) == LockKind::RustMutex && analysis.found_holder(tid, lock) {
        // Its holder was found from a guard on its stack: the guard must still be there.
        return super::rust_holders::guard_still(target, analysis, tid, lock);
    }
    if analysis.layout() == LockLayout::Musl {
        let held_by_probes = analysis.held(tid, lock).is_some();
        let read_word = |addr: u64| target.read_u32(addr);
        return musl_lock::still_held(
            analysis.lock_kind(lock),
            lock,
            ns_tid,
            held_by_probes,
            &read_word,
        );
    }
    match analysis.lock_kind(lock) {
        LockKind::Mutex => expect.is_some() && read_i32(lock + MUTEX_OWNER_OFFSET) == expect,
        LockKind::PiMutex => ns_tid.is_some_and(|ns_tid| {
            read_i32(lock).is_some_and(|w| w.cast_unsigned() & FUTEX_TID_MASK == ns_tid)
        }),
        LockKind::RwLock => match read_i32(lock + RWLOCK_WRITER_OFFSET) {
            // Readers are not recorded in the lock; only the uprobes know them.
            Some(0) => analysis.held(tid, lock).is_some(),
            writer => expect.is_some() && writer == expect,
        },
        LockKind::Futex
        | LockKind::GoMutex
        | LockKind::GoRwMutex
        | LockKind::RustMutex
        | LockKind::RustRwLock
        | LockKind::ParkingLotMutex
        | LockKind::ParkingLotRwLock => analysis.held(tid, lock).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{TraceEvent, WaitTimeout},
        session::test_support::{FUTEX_PRIVATE, locked_mutex, mutex_wait},
        target::fake::{FakeProcess, FakeThread},
    };

    const HEAP: u64 = 0x10_0000;
    const LOCK_A: u64 = HEAP + 0x100;
    const LOCK_B: u64 = HEAP + 0x140;

    /// A thread asleep in `FUTEX_WAIT_PRIVATE` on `lock`.
    fn asleep_on(name: &str, lock: u64) -> FakeThread {
        let args = [lock, FUTEX_PRIVATE, 2, 0, 0, 0];
        FakeThread::in_syscall(name, syscall::FUTEX, args, 0x7ff0_0100, 0x40_0080)
    }

    /// An ABBA deadlock as the analysis sees it: 101 holds A and waits for B, 102 holds
    /// B and waits for A; and its one candidate cycle. `threads` name each host TID's
    /// TID in the target's PID namespace, which the owner fields hold.
    fn abba(threads: &ThreadIds) -> (Analysis, Cycle) {
        let ns = |host| threads.namespace_tid(host).expect("a known thread");
        let mut analysis = Analysis::new();
        analysis.on_event(&mutex_wait(101, 10, LOCK_B, ns(102)), threads);
        analysis.on_event(&mutex_wait(102, 20, LOCK_A, ns(101)), threads);
        let cycle = analysis.candidates().pop().expect("one candidate");
        (analysis, cycle)
    }

    /// The threads of [`abba`] in the tracer's PID namespace.
    fn same_namespace() -> ThreadIds {
        [101, 102].into_iter().collect()
    }

    /// The live process of [`abba`], still deadlocked, with owner fields naming `threads`'
    /// namespace TIDs.
    fn deadlocked(threads: &ThreadIds) -> FakeProcess {
        let ns = |host| threads.namespace_tid(host).expect("a known thread");
        let target = FakeProcess::new(100)
            .region(HEAP, vec![0; 0x1000], "rw-p", Some("[heap]"))
            .thread(101, asleep_on("t1", LOCK_B).in_namespace(ns(101)))
            .thread(102, asleep_on("t2", LOCK_A).in_namespace(ns(102)));
        locked_mutex(locked_mutex(target, LOCK_A, ns(101)), LOCK_B, ns(102))
    }

    /// Guards the confirmation of a deadlock against the live process: a cycle whose
    /// threads still sleep on their locks, whose owners are still the next threads, is
    /// confirmed; one whose state moved on is not.
    #[test]
    fn a_cycle_is_confirmed_only_while_the_process_agrees() {
        let threads = same_namespace();
        let (analysis, cycle) = abba(&threads);
        let confirm = |target: &FakeProcess| confirm(target, &analysis, &threads, &cycle);
        assert!(confirm(&deadlocked(&threads)));
        // The owner of A changed: a wake the analysis has not seen yet.
        let moved = deadlocked(&threads).poke(LOCK_A + 8, &0i32.to_ne_bytes());
        assert!(!confirm(&moved));
        // 101 woke up and runs.
        let running = deadlocked(&threads).thread(101, FakeThread::running("t1"));
        assert!(!confirm(&running));
        // 102 sleeps on another word.
        let elsewhere = deadlocked(&threads).thread(102, asleep_on("t2", HEAP + 0x800));
        assert!(!confirm(&elsewhere));
        // The process is gone.
        assert!(!confirm(&deadlocked(&threads).exited()));
    }

    /// Guards targets in a PID namespace (containers): the owner fields hold the TIDs
    /// inside the namespace, so the check must compare them with the cycle's host TIDs
    /// translated, or a real deadlock is never confirmed.
    #[test]
    fn a_cycle_in_a_pid_namespace_is_confirmed_through_its_tids() {
        let threads = ThreadIds::from_namespace_pairs([(101, 2), (102, 3)]);
        let (analysis, cycle) = abba(&threads);
        let tids: Vec<u32> = cycle.edges.iter().map(|e| e.tid).collect();
        assert_eq!(tids.len(), 2);
        assert!(tids.contains(&101) && tids.contains(&102), "host TIDs");
        assert!(confirm(&deadlocked(&threads), &analysis, &threads, &cycle));
        // Owner fields naming the host TIDs are no owners inside the namespace.
        let host_owned = locked_mutex(locked_mutex(deadlocked(&threads), LOCK_A, 101), LOCK_B, 102);
        assert!(!confirm(&host_owned, &analysis, &threads, &cycle));
    }

    /// `mutex_wait` with a timeout.
    fn with_timeout(event: TraceEvent<'static>, timeout: WaitTimeout) -> TraceEvent<'static> {
        match event {
            TraceEvent::FutexWait {
                tid,
                ts_ns,
                addr,
                cmd,
                val,
                stack,
                snapshot,
                window,
                ..
            } => TraceEvent::FutexWait {
                tid,
                ts_ns,
                addr,
                cmd,
                val,
                stack,
                snapshot,
                window,
                timeout,
                weight: 1,
            },
            other => other,
        }
    }

    /// An ABBA cycle: 101 (wait begun at 10 ns) with timeout `a`, 102 (at 20 ns) with `b`.
    fn abba_with(a: WaitTimeout, b: WaitTimeout) -> (Analysis, Cycle) {
        let threads = same_namespace();
        let mut analysis = Analysis::new();
        analysis.on_event(&with_timeout(mutex_wait(101, 10, LOCK_B, 102), a), &threads);
        analysis.on_event(&with_timeout(mutex_wait(102, 20, LOCK_A, 101), b), &threads);
        let cycle = analysis.candidates().pop().expect("one candidate");
        (analysis, cycle)
    }

    /// Guards issue 16's timed-lock cycle: two `pthread_mutex_timedlock` waits (a
    /// `CLOCK_REALTIME` deadline and a relative timeout) in an ABBA cycle make a cycle
    /// that will time out, each with its deadline on the events' clock; it is not live
    /// once a deadline has passed (the wait is timing out: its `ETIMEDOUT` end follows).
    #[test]
    fn a_cycle_of_timed_waits_will_time_out() {
        let ahead = 1_000_000_000;
        let (analysis, cycle) = abba_with(
            WaitTimeout::AtRealtime(ahead + 500),
            WaitTimeout::After(700),
        );
        let timeouts = entry_timeouts(&analysis, &cycle, i128::from(ahead));
        assert_eq!(
            timeouts,
            [
                EntryTimeout {
                    timed: true,
                    gives_up_at_ns: Some(500)
                },
                EntryTimeout {
                    timed: true,
                    gives_up_at_ns: Some(720)
                },
            ]
        );
        assert!(will_time_out(&timeouts));
        assert!(!timing_out(&timeouts, 499));
        assert!(timing_out(&timeouts, 500), "101's wait gives up now");
        // A timed wait whose timeout could not be read still times out.
        let (analysis, cycle) = abba_with(WaitTimeout::Unknown, WaitTimeout::AtMonotonic(900));
        let timeouts = entry_timeouts(&analysis, &cycle, 0);
        assert!(will_time_out(&timeouts));
        assert_eq!(timeouts[0].gives_up_at_ns, None);
        assert!(!timing_out(&timeouts, 899));
    }

    /// Guards the mixed cycle: one untimed wait keeps it a deadlock (for the untimed
    /// thread), while the timed entry still carries its deadline.
    #[test]
    fn a_cycle_with_an_untimed_wait_is_a_deadlock() {
        let (analysis, cycle) = abba_with(WaitTimeout::Untimed, WaitTimeout::AtMonotonic(900));
        let timeouts = entry_timeouts(&analysis, &cycle, 0);
        assert!(!will_time_out(&timeouts));
        assert_eq!(
            timeouts,
            [
                EntryTimeout {
                    timed: false,
                    gives_up_at_ns: None
                },
                EntryTimeout {
                    timed: true,
                    gives_up_at_ns: Some(900)
                },
            ]
        );
        let (analysis, cycle) = abba_with(WaitTimeout::Untimed, WaitTimeout::Untimed);
        assert!(!will_time_out(&entry_timeouts(&analysis, &cycle, 0)));
        assert!(!will_time_out(&[]), "no waits, no timed cycle");
    }

    /// Guards against flooding the report with a program that backs off and retries the
    /// same timed cycle several times a second: each distinct cycle is reported once,
    /// and past the cap none is (with a note), so memory stays bounded.
    #[test]
    fn each_timed_cycle_is_reported_once_up_to_the_cap() {
        let (_, cycle) = abba_with(WaitTimeout::After(1), WaitTimeout::After(1));
        let mut timed = TimedCycles::default();
        assert!(timed.first_report(&cycle));
        assert!(!timed.first_report(&cycle), "the same cycle formed again");
        assert_eq!(timed.reported(), 1);
        assert_eq!(timed.note(), None);
        for tid in 0..u32::try_from(MAX_TIMED_CYCLES).unwrap() {
            let mut other = cycle.clone();
            other.edges[0].tid = 1_000 + tid;
            timed.first_report(&other);
        }
        assert_eq!(timed.reported(), MAX_TIMED_CYCLES);
        assert!(timed.note().is_some_and(|n| n.contains("1 cycle(s)")));
    }
}
