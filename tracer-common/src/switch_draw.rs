//! The dispatcher's sampling draw of a served process's sleeps, and what the reader keeps
//! to change the process's period without losing a sleep's end.
//!
//! The dispatcher draws a sleep from a hash of the thread's host TID and its count of
//! voluntary switches (`task_struct.nvcsw`), not from a random number: the same question,
//! asked again at the thread's next switch-out, then tells whether its last sleep was
//! drawn ([`hand_off`](crate::hand_off)). So the dispatcher does not read, on every
//! switch-out of a served thread, the count of open sleeps that the process's programs
//! keep on other CPUs (a cache line those writes take away, and a lookup in an inner
//! map). BENCHMARKS.md, "The draw from the thread's own switch count".
//!
//! The answer depends on the period: a sleep drawn under period `p` is drawn under any
//! period that divides `p`, but not under a larger one. So when the period changes
//! otherwise (it rises: fewer sleeps drawn), the dispatcher also reads the counts of open
//! sleeps, as before, until every sleep still open in the process's table began after
//! the change ([`SwitchDraw`]). A sleep asleep for hours keeps it reading them, which
//! costs what the dispatcher cost before, no more.

/// Whether a thread's sleep at its voluntary switch numbered `voluntary_switches` is
/// drawn under sampling period `period`: always for 0 or 1, else for one in `period`
/// of the hashes. The hash (`MurmurHash3`'s 64-bit finaliser) spreads consecutive counts
/// of one thread, and threads that take turns on a CPU, over the draw.
#[must_use]
#[inline]
pub const fn sleep_drawn(host_tid: u32, voluntary_switches: u64, period: u32) -> bool {
    if period <= 1 {
        return true;
    }
    let mut x = ((host_tid as u64) << 32) ^ voluntary_switches;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    // The session's periods are powers of two: a mask, not a division, on this path.
    // (The hidden `--sleep-sample-period` may give any other.)
    if period.is_power_of_two() {
        x & (period as u64 - 1) == 0
    } else {
        x.is_multiple_of(period as u64)
    }
}

/// The bit of a [`MAP_SWITCH_PERIODS`](crate::MAP_SWITCH_PERIODS) value that makes the
/// dispatcher read the process's counts of open sleeps as well.
const READS_COUNTS: u64 = 1 << 32;

/// The bit of a [`MAP_SWITCH_PERIODS`](crate::MAP_SWITCH_PERIODS) value that makes the
/// dispatcher draw no new sleep, while it still hands on the ends of the sleeps it drew:
/// set for every process for a while before the dispatcher is detached (`tracer serve`'s
/// duty cycle), so that the sleeps drawn last end while it is still there to see them.
const DRAWS_NONE: u64 = 1 << 33;

/// `value` with the dispatcher drawing no new sleep ([`DRAWS_NONE`]).
#[must_use]
#[inline]
pub const fn switch_value_drawing_none(value: u64) -> u64 {
    value | DRAWS_NONE
}

/// Whether a [`MAP_SWITCH_PERIODS`](crate::MAP_SWITCH_PERIODS) value lets the dispatcher
/// draw new sleeps.
#[must_use]
#[inline]
pub const fn switch_draws_new(value: u64) -> bool {
    value & DRAWS_NONE == 0
}

/// A process's value in [`MAP_SWITCH_PERIODS`](crate::MAP_SWITCH_PERIODS): its period
/// in the lower half, and whether the dispatcher also reads its counts of open sleeps.
#[must_use]
#[inline]
pub const fn switch_period_value(period: u32, reads_counts: bool) -> u64 {
    period as u64 | if reads_counts { READS_COUNTS } else { 0 }
}

/// The period in a [`switch_period_value`].
#[must_use]
#[inline]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the period is the lower half by definition"
)]
pub const fn switch_period(value: u64) -> u32 {
    value as u32
}

/// Whether a [`switch_period_value`] makes the dispatcher read the counts of open sleeps.
#[must_use]
#[inline]
pub const fn switch_reads_counts(value: u64) -> bool {
    value & READS_COUNTS != 0
}

/// How long after a period change was written a sleep must have begun to be known drawn
/// under it: a dispatcher that read the old value is done with the sleep (its
/// `drawn_sleep` has stamped it) within microseconds; this is thousands of those.
pub const SETTLE_MARGIN_NS: u64 = 10_000_000;

/// What the reader keeps of one served process's draw, to write its
/// [`switch_period_value`]s in an order that never lets a drawn sleep's end go unseen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchDraw {
    period: u32,
    reads_counts: bool,
    /// A change that needs the counts was planned, and not yet [`Self::written`].
    unwritten: bool,
    /// Sleeps that began before this (monotonic ns) may have been drawn under an
    /// earlier period.
    settles_after_ns: u64,
}

impl Default for SwitchDraw {
    fn default() -> Self {
        Self::new()
    }
}

impl SwitchDraw {
    /// A process just registered: period 0 (every sleep drawn), value 0.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            period: 0,
            reads_counts: false,
            unwritten: false,
            settles_after_ns: 0,
        }
    }

    /// The period the dispatcher draws with.
    #[must_use]
    pub const fn period(&self) -> u32 {
        self.period
    }

    /// Whether the dispatcher reads the process's counts of open sleeps, waiting for
    /// [`Self::settle`].
    #[must_use]
    pub const fn reads_counts(&self) -> bool {
        self.reads_counts
    }

    /// The values to write, in this order, for the dispatcher to draw under `period`
    /// (none if it does already). Then [`Self::written`].
    ///
    /// A period that divides the old one draws a superset: a single write. Any other
    /// turns the counts on first, with the old period, and only then changes the
    /// period, so that no reading (the kernel copies the value unlocked) pairs the new
    /// period with the counts off.
    pub fn set_period(&mut self, period: u32) -> [Option<u64>; 2] {
        if period == self.period {
            return [None, None];
        }
        let old = self.period.max(1);
        let divides = old.is_multiple_of(period.max(1));
        let mut writes = [None, None];
        if !divides {
            if !self.reads_counts {
                self.reads_counts = true;
                writes[0] = Some(switch_period_value(self.period, true));
            }
            self.unwritten = true;
        }
        self.period = period;
        writes[1] = Some(switch_period_value(period, self.reads_counts));
        writes
    }

    /// The writes of [`Self::set_period`] were made, at `now_ns` (monotonic) or before.
    pub fn written(&mut self, now_ns: u64) {
        if self.unwritten {
            self.unwritten = false;
            self.settles_after_ns = now_ns.saturating_add(SETTLE_MARGIN_NS);
        }
    }

    /// Given when the oldest sleep still open in the process's table began (`None`: no
    /// sleep open), from a read of the table begun at `read_ns`: the value that turns the
    /// counts off, once every open sleep was drawn under the present period. A read
    /// begun within the margin after the change could miss a sleep drawn under the old
    /// period whose entry was not yet written, so it settles nothing.
    pub fn settle(&mut self, oldest_open_ns: Option<u64>, read_ns: u64) -> Option<u64> {
        if !self.reads_counts || self.unwritten || read_ns <= self.settles_after_ns {
            return None;
        }
        if oldest_open_ns.is_some_and(|start| start <= self.settles_after_ns) {
            return None;
        }
        self.reads_counts = false;
        Some(switch_period_value(self.period, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HandOff, SwitchOut, VoluntarySwitch, hand_off};

    #[test]
    fn a_value_keeps_its_period_and_its_counts_bit() {
        for period in [0, 1, 64, 1 << 20, u32::MAX] {
            for counts in [false, true] {
                let value = switch_period_value(period, counts);
                assert_eq!(switch_period(value), period);
                assert_eq!(switch_reads_counts(value), counts);
            }
        }
        assert_eq!(switch_period_value(0, false), 0, "a new slot's zero");
    }

    #[test]
    fn the_draw_takes_about_one_in_the_period_and_a_divisors_draw_takes_more() {
        let mut drawn_64 = 0;
        for n in 0..64_000_u64 {
            let tid = 1000 + u32::try_from(n % 7).unwrap();
            if sleep_drawn(tid, n, 64) {
                drawn_64 += 1;
                assert!(
                    sleep_drawn(tid, n, 16),
                    "a sleep drawn under 64 is drawn under 16"
                );
                assert!(sleep_drawn(tid, n, 1));
            }
            assert!(sleep_drawn(tid, n, 0));
        }
        assert!((800..1200).contains(&drawn_64), "{drawn_64} of 64000");
        // A period that is no power of two draws by division.
        let drawn_3 = (0..30_000_u64).filter(|&n| sleep_drawn(7, n, 3)).count();
        assert!((9_000..11_000).contains(&drawn_3), "{drawn_3} of 30000");
    }

    #[test]
    fn a_fall_to_a_divisor_is_one_write_and_keeps_the_counts_off() {
        let mut draw = SwitchDraw::new();
        assert_eq!(
            draw.set_period(1),
            [None, Some(1)],
            "1 divides the new slot's 0"
        );
        assert_eq!(draw.set_period(1), [None, None]);
        let mut draw = SwitchDraw {
            period: 64,
            ..SwitchDraw::new()
        };
        assert_eq!(draw.set_period(16), [None, Some(16)]);
        draw.written(5);
        assert!(!draw.reads_counts());
    }

    #[test]
    fn a_rise_turns_the_counts_on_before_the_period_and_off_once_settled() {
        let mut draw = SwitchDraw::new();
        let [first, then] = draw.set_period(64);
        assert_eq!(
            first,
            Some(switch_period_value(0, true)),
            "counts on, old period"
        );
        assert_eq!(then, Some(switch_period_value(64, true)));
        let later = 2 * SETTLE_MARGIN_NS;
        assert_eq!(draw.settle(None, later), None, "not written yet");
        draw.written(1_000);
        // A read of the table within the margin may miss a sleep being noted.
        assert_eq!(draw.settle(None, 1_000 + SETTLE_MARGIN_NS), None);
        // A sleep begun before the change (or within the margin) is still open.
        assert_eq!(draw.settle(Some(500), later), None);
        assert_eq!(draw.settle(Some(1_000 + SETTLE_MARGIN_NS), later), None);
        assert!(draw.reads_counts());
        assert_eq!(
            draw.settle(Some(1_001 + SETTLE_MARGIN_NS), later),
            Some(switch_period_value(64, false))
        );
        assert!(!draw.reads_counts());
        assert_eq!(draw.settle(None, later), None, "nothing left to write");
    }

    #[test]
    fn a_rise_while_the_counts_are_on_moves_the_settling_later() {
        let mut draw = SwitchDraw::new();
        let _ = draw.set_period(16);
        draw.written(1_000);
        // Already on: one write, the period's.
        assert_eq!(
            draw.set_period(64),
            [None, Some(switch_period_value(64, true))]
        );
        draw.written(2_000_000_000);
        assert_eq!(
            draw.settle(Some(1_500 + SETTLE_MARGIN_NS), 3_000_000_000),
            None
        );
        // A fall while they are on keeps them on.
        assert_eq!(
            draw.set_period(32),
            [None, Some(switch_period_value(32, true))]
        );
        draw.written(3_000_000_000);
        assert_eq!(
            draw.settle(None, 4_000_000_000),
            Some(switch_period_value(32, false))
        );
        // A period that does not divide the old one is a rise for this purpose.
        let [first, _] = draw.set_period(24);
        assert_eq!(first, Some(switch_period_value(32, true)));
    }

    /// A small deterministic generator for the simulation (xorshift64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// One thread of the simulated process, as the kernel and the process's programs
    /// see it.
    #[derive(Clone, Copy)]
    struct Thread {
        tid: u32,
        nvcsw: u64,
        /// When its drawn sleep began, while it is open in the table.
        open_since: Option<u64>,
    }

    /// Guards the one thing the draw must never do: leave a drawn sleep's end unseen
    /// (its entry would stay open, and the thread be reported waiting while it runs).
    /// Threads sleep, are preempted, have a sleep turned back by a signal, and exit, in
    /// random order, while the reader changes the period up and down and settles; every
    /// switch-out after a drawn sleep must be handed on, under every value the
    /// dispatcher may read, including one read between the writes of a change.
    #[test]
    fn no_drawn_sleep_is_left_open_through_any_switch_or_period_change() {
        const THREADS: usize = 6;
        const PERIODS: [u32; 7] = [0, 1, 2, 4, 16, 64, 3];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut threads = [Thread {
            tid: 0,
            nvcsw: 0,
            open_since: None,
        }; THREADS];
        for (i, thread) in threads.iter_mut().enumerate() {
            thread.tid = 4000 + u32::try_from(i).unwrap();
        }
        let mut next_tid = 5000_u32;
        let mut draw = SwitchDraw::new();
        let mut value = 0_u64;
        let mut now = 1_u64;
        let (mut drawn_sleeps, mut rises, mut settled) = (0, 0, 0);
        for step in 0..400_000 {
            // A few switch-outs a millisecond: the margin spans dozens of them.
            now += 1 + rng.below(500_000);
            if step % 97 == 0 {
                let period = PERIODS[usize::try_from(rng.below(7)).unwrap()];
                let before = draw.period();
                let writes = draw.set_period(period);
                if period > before.max(1) {
                    rises += 1;
                }
                // The dispatcher may run between the writes, on every value written.
                for written in writes.into_iter().flatten() {
                    value = written;
                    let _ =
                        switch_some_thread(&mut rng, &mut threads, value, now, &mut drawn_sleeps);
                }
                draw.written(now);
            }
            if step % 31 == 0 {
                let oldest = threads.iter().filter_map(|t| t.open_since).min();
                if let Some(written) = draw.settle(oldest, now) {
                    value = written;
                    settled += 1;
                }
            }
            if let Some(exited) =
                switch_some_thread(&mut rng, &mut threads, value, now, &mut drawn_sleeps)
            {
                // A new thread takes the exited one's place.
                threads[exited] = Thread {
                    tid: next_tid,
                    nvcsw: rng.below(1000),
                    open_since: None,
                };
                next_tid += 1;
            }
        }
        assert!(
            drawn_sleeps > 10_000,
            "the simulation drew {drawn_sleeps} sleeps"
        );
        assert!(rises > 100, "{rises} rises");
        assert!(settled > 100, "the counts were turned off {settled} times");
    }

    /// Switches one random thread out, as the kernel and the dispatcher would under
    /// `value`, and checks that a drawn sleep's end is handed on. The thread's index if
    /// it exited.
    fn switch_some_thread(
        rng: &mut Rng,
        threads: &mut [Thread],
        value: u64,
        now: u64,
        drawn_sleeps: &mut u32,
    ) -> Option<usize> {
        // The first two threads switch out rarely: their sleeps stay open through
        // period changes and settlings, as a pool's idle threads' do.
        let n = threads.len() as u64;
        let i = usize::try_from(if rng.below(100) == 0 {
            rng.below(2)
        } else {
            2 + rng.below(n - 2)
        })
        .unwrap();
        let thread = &mut threads[i];
        // How the thread leaves its CPU, and whether the kernel counts it voluntary.
        let (out, voluntary) = match rng.below(20) {
            0..=11 => (SwitchOut::Sleeps, true),
            12..=16 => (SwitchOut::Runnable, false),
            // A sleep a pending signal turned back to running: counted voluntary.
            17 | 18 => (SwitchOut::Runnable, true),
            _ => (SwitchOut::Exits, true),
        };
        if voluntary {
            thread.nvcsw += 1;
        }
        let (tid, nvcsw, period) = (thread.tid, thread.nvcsw, switch_period(value));
        let open = thread.open_since.is_some();
        let handed = hand_off(
            out,
            true,
            |switch| {
                let n = match switch {
                    VoluntarySwitch::This => nvcsw,
                    VoluntarySwitch::Before => nvcsw.wrapping_sub(1),
                };
                sleep_drawn(tid, n, period)
            },
            || switch_reads_counts(value) && open,
        );
        if open {
            assert!(
                handed.is_some(),
                "thread {tid}'s drawn sleep was not ended at a {out:?} switch-out \
                 (nvcsw {nvcsw}, value {value:#x})"
            );
        }
        if handed.is_some() {
            thread.open_since = None;
        }
        if handed == Some(HandOff::Drawn) {
            thread.open_since = Some(now);
            *drawn_sleeps += 1;
        }
        if out == SwitchOut::Exits {
            assert!(handed.is_some(), "an exit is always handed on");
            return Some(i);
        }
        None
    }
}
