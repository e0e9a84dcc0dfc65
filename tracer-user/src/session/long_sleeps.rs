//! Lean waits that sleep long. With `tracer serve`'s lean waits the kernel sends a wait
//! that slept only once it is over (one small record, nothing read at the sleep, which is
//! on the lock's hand-over path): a wait that never ends (a deadlock, a leaked lock)
//! would never be seen. So the session reads the kernel's table of sleeping waits
//! (`OPEN_SLEEPS`) at each rescan, and gives the analysis each lean wait asleep for
//! longer than [`LONG_SLEEP_NS`], once, built from `/proc` and the target's memory
//! (`adopt::adopt_long_sleep`).
//!
//! While the kernel samples sleeps ([`super::sleep_sampling`]), a sleep left out is in
//! no table: [`UnsampledSleeps`] finds those that last from what `/proc` shows of each
//! thread at successive rescans. No `/proc` and no aya here: which waits are due.
use std::collections::{HashMap, HashSet};

use tracer_common::OpenSleep;

use crate::target::SyscallState;

/// How long a lean wait sleeps before userspace reads it: short next to the
/// thresholds of a stuck lock (a second) and of a deadlock report, long next to a
/// contended lock's waits (microseconds to milliseconds), so almost no wait is read twice.
pub(super) const LONG_SLEEP_NS: u64 = 200_000_000;

/// The long lean waits already given to the analysis, by thread and start.
///
/// A wait stays in the kernel's table until its thread's next switch-out, so a thread
/// woken that has run since without leaving its CPU still looks asleep: it is returned
/// too, once, and `/proc` then shows it out of that call (`adopt_long_sleep` gives it
/// nothing).
#[derive(Debug, Default)]
pub(super) struct LongSleeps {
    announced: HashSet<(u32, u64)>,
}

impl LongSleeps {
    /// The lean waits of `table` (the kernel's, read at `now_ns`) asleep since
    /// [`LONG_SLEEP_NS`] or more and not yet returned by an earlier call. Forgets the
    /// waits returned earlier that are no longer asleep in `table`, so the set stays no
    /// larger than the table.
    pub(super) fn due(&mut self, table: &[OpenSleep], now_ns: u64) -> Vec<OpenSleep> {
        let asleep = || table.iter().filter(|s| s.lean != 0 && s.addr != 0);
        let still: HashSet<(u32, u64)> = asleep().map(|s| (s.tid, s.start_ns)).collect();
        self.announced.retain(|key| still.contains(key));
        asleep()
            .filter(|s| now_ns.saturating_sub(s.start_ns) >= LONG_SLEEP_NS)
            .filter(|s| self.announced.insert((s.tid, s.start_ns)))
            .copied()
            .collect()
    }
}

/// Threads looked at per rescan at most while sleeps are sampled (two small `/proc`
/// reads each): a target with thousands of threads costs at most 512 reads a second; its
/// threads take turns, so one asleep for good is found within two of its turns.
pub(super) const UNSAMPLED_CHECKS_PER_RESCAN: usize = 64;

/// A thread seen asleep in a system call by a rescan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SeenAsleep {
    call: SyscallState,
    /// Its context switches then: unchanged later, it has not run in between.
    switches: u64,
    /// When it was first seen so.
    since_ns: u64,
    /// Already returned by [`UnsampledSleeps::observe`].
    announced: bool,
}

/// Threads asleep in a futex wait the kernel may have left out (see the module notes),
/// as successive rescans saw them; and whose turn it is to be looked at.
#[derive(Debug, Default)]
pub(super) struct UnsampledSleeps {
    seen: HashMap<u32, SeenAsleep>,
    /// Where the next rescan's turn starts in the target's threads.
    next: usize,
}

impl UnsampledSleeps {
    /// The threads of `tids` (the target's, ascending) to look at this rescan: up to
    /// [`UNSAMPLED_CHECKS_PER_RESCAN`], taking turns. Forgets threads no longer in `tids`.
    pub(super) fn turn(&mut self, tids: &[u32]) -> Vec<u32> {
        self.seen.retain(|tid, _| tids.binary_search(tid).is_ok());
        if tids.is_empty() {
            return Vec::new();
        }
        let start = self.next % tids.len();
        let count = tids.len().min(UNSAMPLED_CHECKS_PER_RESCAN);
        self.next = start + count;
        tids.iter()
            .cycle()
            .skip(start)
            .take(count)
            .copied()
            .collect()
    }

    /// What thread `tid` was seen doing at `now_ns`: asleep in futex wait `call` after
    /// `switches` context switches, or (`None`) anything else, including a wait the
    /// analysis already has. Returns when it has slept since, once: when an earlier look,
    /// [`LONG_SLEEP_NS`] or more ago, saw it in the same call with the same switches (it
    /// has not run in between).
    pub(super) fn observe(
        &mut self,
        tid: u32,
        now_ns: u64,
        asleep: Option<(SyscallState, u64)>,
    ) -> Option<u64> {
        let Some((call, switches)) = asleep else {
            self.seen.remove(&tid);
            return None;
        };
        let seen = self.seen.entry(tid).or_insert(SeenAsleep {
            call,
            switches,
            since_ns: now_ns,
            announced: false,
        });
        if seen.call != call || seen.switches != switches {
            *seen = SeenAsleep {
                call,
                switches,
                since_ns: now_ns,
                announced: false,
            };
            return None;
        }
        if seen.announced || now_ns.saturating_sub(seen.since_ns) < LONG_SLEEP_NS {
            return None;
        }
        seen.announced = true;
        Some(seen.since_ns)
    }

    /// Forgets every thread (sampling is over: the kernel's table has every sleep again).
    pub(super) fn clear(&mut self) {
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleep(tid: u32, start_ns: u64) -> OpenSleep {
        OpenSleep {
            addr: 0x1000,
            start_ns,
            runtime_ns: 0,
            user_sp: 0x7ffe_0000,
            user_ip: 0x7f00_0000,
            tid,
            op: 0,
            val: 2,
            lean: 1,
            weight: 1,
            voluntary_switches: 0,
        }
    }

    #[test]
    fn a_lean_wait_is_due_once_when_it_has_slept_long() {
        let mut long = LongSleeps::default();
        let table = [sleep(7, 1_000)];
        assert!(long.due(&table, 1_000 + LONG_SLEEP_NS - 1).is_empty());
        assert_eq!(long.due(&table, 1_000 + LONG_SLEEP_NS), vec![table[0]]);
        assert!(
            long.due(&table, 1_000 + 5 * LONG_SLEEP_NS).is_empty(),
            "once"
        );
        // The thread's next long wait (another start) is due again.
        let next = [sleep(7, 9 * LONG_SLEEP_NS)];
        assert_eq!(long.due(&next, 10 * LONG_SLEEP_NS), vec![next[0]]);
        assert_eq!(long.announced.len(), 1, "the first one is forgotten");
    }

    #[test]
    fn sent_and_announced_waits_are_not_due() {
        let mut long = LongSleeps::default();
        let now = 10 * LONG_SLEEP_NS;
        let sent = OpenSleep {
            addr: 0,
            ..sleep(2, 0)
        };
        let announced_at_its_sleep = OpenSleep {
            lean: 0,
            ..sleep(3, 0)
        };
        assert!(long.due(&[sent, announced_at_its_sleep], now).is_empty());
        assert!(long.announced.is_empty());
    }

    fn futex_call(word: u64) -> SyscallState {
        SyscallState::InSyscall {
            nr: 202,
            args: [word, 128, 2, 0, 0, 0],
            sp: 0x7ffe_0000,
            pc: 0x7f00_0000,
        }
    }

    #[test]
    fn an_unsampled_sleep_is_due_once_when_two_looks_apart_see_it_unchanged() {
        let mut unsampled = UnsampledSleeps::default();
        let asleep = Some((futex_call(0x1000), 40));
        assert_eq!(unsampled.observe(7, 1_000, asleep), None);
        assert_eq!(
            unsampled.observe(7, 1_000 + LONG_SLEEP_NS - 1, asleep),
            None
        );
        assert_eq!(
            unsampled.observe(7, 1_000 + LONG_SLEEP_NS, asleep),
            Some(1_000)
        );
        assert_eq!(
            unsampled.observe(7, 1_000 + 9 * LONG_SLEEP_NS, asleep),
            None,
            "once"
        );
    }

    #[test]
    fn a_thread_that_ran_in_between_or_changed_call_starts_over() {
        let mut unsampled = UnsampledSleeps::default();
        let t = LONG_SLEEP_NS;
        assert_eq!(
            unsampled.observe(7, 0, Some((futex_call(0x1000), 40))),
            None
        );
        // Woken and asleep again in the same call: one more context switch.
        assert_eq!(
            unsampled.observe(7, t, Some((futex_call(0x1000), 41))),
            None
        );
        // Another lock.
        assert_eq!(
            unsampled.observe(7, 2 * t, Some((futex_call(0x2000), 41))),
            None
        );
        // Running, then the same wait again.
        assert_eq!(unsampled.observe(7, 3 * t, None), None);
        assert_eq!(
            unsampled.observe(7, 4 * t, Some((futex_call(0x2000), 41))),
            None
        );
        assert_eq!(
            unsampled.observe(7, 5 * t, Some((futex_call(0x2000), 41))),
            Some(4 * t)
        );
    }

    #[test]
    fn threads_take_turns_and_exited_ones_are_forgotten() {
        let mut unsampled = UnsampledSleeps::default();
        let tids: Vec<u32> = (1..=100).collect();
        let first = unsampled.turn(&tids);
        assert_eq!(first.len(), UNSAMPLED_CHECKS_PER_RESCAN);
        assert_eq!(first[0], 1);
        let second = unsampled.turn(&tids);
        assert_eq!(second[0], 65);
        assert_eq!(*second.last().unwrap_or(&0), 28, "wraps around");
        unsampled.observe(3, 0, Some((futex_call(0x1000), 1)));
        unsampled.observe(4, 0, Some((futex_call(0x1000), 1)));
        unsampled.turn(&[4, 5]);
        assert_eq!(unsampled.seen.keys().copied().collect::<Vec<_>>(), vec![4]);
        assert_eq!(unsampled.turn(&[]), Vec::<u32>::new());
    }
}
