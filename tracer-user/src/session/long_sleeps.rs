//! Lean waits that sleep long. With `tracer serve`'s lean waits the kernel sends a wait
//! that slept only once it is over (one small record, nothing read at the sleep, which is
//! on the lock's hand-over path): a wait that never ends (a deadlock, a leaked lock)
//! would never be seen. So the session reads the kernel's table of sleeping waits
//! (`OPEN_SLEEPS`) at each rescan, and gives the analysis each lean wait asleep for
//! longer than [`LONG_SLEEP_NS`], once, built from `/proc` and the target's memory
//! (`adopt::adopt_long_sleep`). No `/proc` and no aya here: which waits are due.
use std::collections::HashSet;

use tracer_common::OpenSleep;

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
}
