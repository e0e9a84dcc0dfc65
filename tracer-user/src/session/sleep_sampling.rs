//! How many of a target's sleeping futex waits the kernel traces (`tracer serve`).
//!
//! Each traced sleep costs the target a few hundred nanoseconds inside the scheduler,
//! on the lock's hand-over path: a process that sleeps in futex calls tens of thousands
//! of times a second would pay ~2% for it (BENCHMARKS.md, "Sampled sleeps"). So, as
//! `perf record -F` does with its period, the session picks a sampling period from the
//! rate of sleeps it saw (at each rescan): every sleep while the target sleeps at most
//! `max_per_second` times a second, else one in `P` (a power of two) at random, each
//! traced sleep standing for `P` in every count, sum and histogram (as Go's own mutex
//! profile scales its samples). Deadlocks and stuck locks do not depend on it: a sleep
//! left out that lasts is found from `/proc` ([`super::long_sleeps::UnsampledSleeps`]).
//! No `/proc` and no aya here.
use tracer_common::MAX_SLEEP_SAMPLE_PERIOD;

/// How long the sleeps are counted before the period may rise: a burst of contention is
/// sampled within a rescan or two.
const RISE_AFTER_NS: u64 = 250_000_000;
/// How long the sleeps are counted before the period may fall.
const FALL_AFTER_NS: u64 = 1_000_000_000;

/// How long after the last sampled second the session still looks in `/proc` for
/// sleeps left out: enough for a sleep that began then to be seen twice, unchanged, by
/// the rescans.
const UNSAMPLED_GRACE_NS: u64 = 2_000_000_000;

/// How a session samples its target's sleeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SleepSample {
    /// Every sleep while the target sleeps at most this many times a second, sampled
    /// beyond (see the module notes); 0 never samples.
    UpTo(u32),
    /// One in this many, always (for tests of what sampling leaves out).
    Fixed(u32),
}

/// The sampling period of one target's sleeps, and what it is chosen from.
#[derive(Debug)]
pub(super) struct SleepSampling {
    /// Sleeps a second traced one by one; 0 never samples.
    max_per_second: u32,
    /// The period the kernel uses now.
    period: u32,
    /// Sleeps the traced ones stood for, since `since_ns`.
    seen: u64,
    since_ns: u64,
    /// When the period was last above 1.
    sampled_at: Option<u64>,
}

impl SleepSampling {
    /// As `sample` says, from `now_ns`; [`SleepSampling::period`] is the period to give
    /// the kernel first.
    pub(super) fn with(sample: SleepSample, now_ns: u64) -> Self {
        let (max_per_second, period) = match sample {
            SleepSample::UpTo(max) => (max, 1),
            // Never chosen again: no limit.
            SleepSample::Fixed(period) => (0, period.clamp(1, MAX_SLEEP_SAMPLE_PERIOD)),
        };
        Self {
            max_per_second,
            period,
            seen: 0,
            since_ns: now_ns,
            sampled_at: None,
        }
    }

    /// The period the kernel uses now.
    pub(super) fn period(&self) -> u32 {
        self.period
    }

    /// Starts counting afresh from `now_ns`: the kernel did not trace all along since the
    /// count began (`tracer serve`'s duty cycle detached its hook), so the rate seen
    /// would be too low.
    pub(super) fn restart(&mut self, now_ns: u64) {
        self.seen = 0;
        self.since_ns = now_ns;
    }

    /// A traced sleep came, standing for `weight` sleeps.
    pub(super) fn on_traced(&mut self, weight: u32) {
        self.seen = self.seen.saturating_add(u64::from(weight.max(1)));
    }

    /// At each rescan: the new period if it changes (the caller gives it to the kernel).
    /// It rises as soon as the target has slept more than `max_per_second` times a second
    /// over a quarter of a second, and falls back only over a whole second in which the
    /// target slept well below that (3/4), so it does not swing back and forth around
    /// the limit.
    pub(super) fn decide(&mut self, now_ns: u64) -> Option<u32> {
        let elapsed = now_ns.saturating_sub(self.since_ns);
        if self.max_per_second == 0 || elapsed < RISE_AFTER_NS {
            return None;
        }
        let per_second = u128::from(self.seen) * 1_000_000_000 / u128::from(elapsed);
        let limit = u128::from(self.max_per_second);
        let wanted = period_for(per_second, limit);
        let next = if wanted > self.period {
            wanted
        } else if elapsed >= FALL_AFTER_NS {
            self.period
                .min(period_for(per_second, (limit * 3 / 4).max(1)))
        } else {
            // Not long enough to fall: keep counting.
            return None;
        };
        self.seen = 0;
        self.since_ns = now_ns;
        if self.period > 1 || next > 1 {
            self.sampled_at = Some(now_ns);
        }
        (next != self.period).then(|| {
            self.period = next;
            next
        })
    }

    /// Whether sleeps were left out lately, so that one still going on may be missing
    /// from the kernel's table of sleeping threads.
    pub(super) fn left_out_lately(&self, now_ns: u64) -> bool {
        self.period > 1
            || self
                .sampled_at
                .is_some_and(|at| now_ns.saturating_sub(at) <= UNSAMPLED_GRACE_NS)
    }
}

/// The smallest power of two `P` with `per_second / P <= limit`, at most
/// [`MAX_SLEEP_SAMPLE_PERIOD`].
fn period_for(per_second: u128, limit: u128) -> u32 {
    let mut period = 1u32;
    while u128::from(period) * limit < per_second && period < MAX_SLEEP_SAMPLE_PERIOD {
        period *= 2;
    }
    period
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn second_of(sampling: &mut SleepSampling, at: u64, sleeps: u32) -> Option<u32> {
        let weight = sampling.period();
        for _ in 0..sleeps / weight {
            sampling.on_traced(weight);
        }
        sampling.decide(at)
    }

    #[test]
    fn the_period_rises_with_the_rate_and_falls_back_below_three_quarters() {
        let mut sampling = SleepSampling::with(SleepSample::UpTo(2_000), 0);
        assert_eq!(second_of(&mut sampling, S, 2_000), None, "at the limit");
        assert_eq!(second_of(&mut sampling, 2 * S, 23_000), Some(16));
        // Traced at one in 16, the same rate keeps it.
        assert_eq!(second_of(&mut sampling, 3 * S, 23_000), None);
        // Halved: 11 520 a second wants 8 (1 440 each), and 1 440 <= 1 500.
        assert_eq!(second_of(&mut sampling, 4 * S, 11_520), Some(8));
        // 1 900 a second: below the limit, not below 3/4 of it with a period of 1.
        assert_eq!(second_of(&mut sampling, 5 * S, 1_904), Some(2));
        assert_eq!(second_of(&mut sampling, 6 * S, 1_000), Some(1));
        assert!(sampling.left_out_lately(6 * S), "just now");
        assert!(!sampling.left_out_lately(6 * S + UNSAMPLED_GRACE_NS + 1));
    }

    #[test]
    fn it_rises_within_a_quarter_second_and_falls_only_over_a_second() {
        let mut sampling = SleepSampling::with(SleepSample::UpTo(1_000), 0);
        assert_eq!(second_of(&mut sampling, S / 5, 20_000), None, "too soon");
        assert_eq!(
            sampling.decide(S / 4),
            Some(128),
            "80 000 a second over 1/4 s"
        );
        // Quiet for half a second: not enough to fall.
        assert_eq!(sampling.decide(3 * S / 4), None);
        assert_eq!(
            sampling.decide(5 * S / 4),
            Some(1),
            "quiet for a whole second"
        );
        let mut never = SleepSampling::with(SleepSample::UpTo(0), 0);
        assert_eq!(second_of(&mut never, 10 * S, 1_000_000), None);
        assert_eq!(never.period(), 1);
        assert!(!never.left_out_lately(10 * S));
        let mut fixed = SleepSampling::with(SleepSample::Fixed(64), 0);
        assert_eq!(second_of(&mut fixed, 10 * S, 10), None);
        assert_eq!(fixed.period(), 64);
        assert!(fixed.left_out_lately(10 * S));
    }

    #[test]
    fn the_period_is_capped() {
        let mut sampling = SleepSampling::with(SleepSample::UpTo(1), 0);
        assert_eq!(
            second_of(&mut sampling, S, 10_000_000),
            Some(MAX_SLEEP_SAMPLE_PERIOD)
        );
        assert_eq!(period_for(0, 1), 1);
        assert_eq!(period_for(3, 1), 4);
    }
}
