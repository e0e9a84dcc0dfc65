//! The duty cycle of `tracer serve`'s `sched_switch` hook: when the host switches more
//! than `--max-switches-per-cpu` times a second per CPU, the hook is attached for one
//! period of [`ON_NS`] in every `D` (a power of two), and detached the rest of the time.
//!
//! Why: the hook runs on every context switch of the host, with the run queue's lock
//! held, whether or not it traces anything. On a lock-bound workload that switches tens
//! of thousands of times a second, that alone costs ~0.5 – 1% of its throughput
//! (BENCHMARKS.md, (i) and "What each futex hook costs"), where sampling the sleeps it
//! traces no longer helps: the cost is in being there. Detached, the hook costs nothing.
//! So, as a continuous profiler profiles a slice of the time, the serve traces one slice
//! in `D`, and each sleep it traces then stands for `D` more (its weight is multiplied by
//! `D`, as by the sampling period of sleeps).
//!
//! What does not depend on it: deadlocks and stuck locks are found from `/proc` while the
//! hook is off, as sleeps sampling left out are (`session::long_sleeps`).
//!
//! A cycle: attached and drawing sleeps for [`ON_NS`]; attached, drawing none, for
//! [`DRAIN_NS`], so that the sleeps drawn last end while the hook still sees them;
//! detached for the rest of `D` × [`ON_NS`]. So sleeps are drawn exactly one slice in
//! `D` of the time, and the weights are exact over whole cycles. Deadlines follow one
//! another, not the moments the steps were taken, so late steps do not bias them.
//!
//! No aya and no `/proc` here: the steps, from the clock and the host's switch count.

/// How long the hook draws sleeps in each cycle: long enough for the sampling period of
/// sleeps to be chosen within it (`session::sleep_sampling`: a rise needs a quarter of a
/// second of sleeps seen, a fall a whole second).
pub(crate) const ON_NS: u64 = 2_000_000_000;
/// How long the hook stays attached, drawing no new sleep, before it is detached: the
/// waits of a contended lock last microseconds to milliseconds; a wait still asleep after
/// this is found from `/proc` like any long sleep.
pub(crate) const DRAIN_NS: u64 = 100_000_000;
/// The shortest time detached: the sessions set their weights for the next slice then,
/// at their rescans (every 250 ms).
pub(crate) const MIN_OFF_NS: u64 = 1_000_000_000;
/// The largest `D`: even at a million switches a second the hook is attached 1/64 of
/// the time, one slice of [`ON_NS`] every two minutes or so.
pub(crate) const MAX_FACTOR: u32 = 64;
/// `--max-switches-per-cpu` by default, switches a second per CPU: the hook costs
/// ~100 – 200 ns a switch, so at this rate ~0.1% of each CPU, and on a lock-bound
/// workload (whose lock hand-overs wait for it) well under its 1% budget (BENCHMARKS.md
/// (i): on 2 CPUs, a limit of 10 000 a second).
pub const DEFAULT_MAX_SWITCHES_PER_CPU: u64 = 5_000;

/// Where the hook is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Attached, drawing sleeps.
    On,
    /// Attached, drawing none: the last drawn sleeps end.
    Draining,
    /// Detached.
    Off,
}

/// What to do to the hook now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep it attached, but draw no new sleep.
    StopDrawing,
    /// Detach it; sleeps drawn from the next attach on weigh `factor` times more.
    Detach { factor: u32 },
    /// Attach it again, drawing sleeps.
    Attach,
}

/// The duty cycle (see the module notes).
#[derive(Debug)]
pub(crate) struct HookDuty {
    /// `--max-switches-per-cpu` times the host's CPUs; 0: always attached.
    max_per_second: u64,
    /// A factor given (hidden `--switch-duty-factor`, for tests), not chosen from the rate.
    fixed: Option<u32>,
    phase: Phase,
    /// When the phase ends (monotonic ns).
    until_ns: u64,
    /// `D` of the slice drawing now, or last drawn.
    factor: u32,
    /// `D` chosen for the next slice.
    next_factor: u32,
    /// The host's switch count when the rate was last measured, and when.
    counted: Option<(u64, u64)>,
}

impl HookDuty {
    /// Attached and drawing from `now_ns`, at most `max_per_second` switches a second
    /// (0: always attached).
    pub(crate) fn new(max_per_second: u64, now_ns: u64) -> Self {
        Self {
            max_per_second,
            fixed: None,
            phase: Phase::On,
            until_ns: now_ns.saturating_add(ON_NS),
            factor: 1,
            next_factor: 1,
            counted: None,
        }
    }

    /// Attached and drawing from `now_ns`, one slice in `factor` from the first slice's
    /// end on, whatever the host's rate (for tests of what the duty cycle does).
    pub(crate) fn fixed(factor: u32, now_ns: u64) -> Self {
        Self {
            fixed: Some(factor.clamp(1, MAX_FACTOR)),
            ..Self::new(0, now_ns)
        }
    }

    /// Counts the host's switches from `switches` at `now_ns` (the start), so that the
    /// first slice's end knows the rate.
    pub(crate) fn count_from(&mut self, now_ns: u64, switches: Option<u64>) {
        self.counted = switches.map(|n| (now_ns, n));
    }

    /// When [`Self::step`] has something to do next.
    pub(crate) fn until_ns(&self) -> u64 {
        self.until_ns
    }

    /// Where the hook is.
    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// At `now_ns`, with the host's switch count `switches` (`None`: unreadable, the
    /// hook stays as it is): what to do to the hook, if anything.
    pub(crate) fn step(&mut self, now_ns: u64, switches: Option<u64>) -> Option<Step> {
        if now_ns < self.until_ns {
            return None;
        }
        // A step taken long after its deadline (the serve was stopped, the machine
        // suspended) starts afresh rather than catching up.
        let base = if now_ns - self.until_ns > ON_NS {
            now_ns
        } else {
            self.until_ns
        };
        match self.phase {
            Phase::On => {
                let wanted = self.wanted_factor(now_ns, switches);
                if wanted == 1 && self.factor == 1 {
                    self.until_ns = base.saturating_add(ON_NS);
                    return None;
                }
                self.next_factor = wanted;
                self.phase = Phase::Draining;
                self.until_ns = base.saturating_add(DRAIN_NS);
                Some(Step::StopDrawing)
            }
            Phase::Draining => {
                // The slice just drawn stands for `factor` slices: the cycle is that long.
                let off = (u64::from(self.factor) - 1)
                    .saturating_mul(ON_NS)
                    .saturating_sub(DRAIN_NS)
                    .max(MIN_OFF_NS);
                self.factor = self.next_factor;
                self.phase = Phase::Off;
                self.until_ns = base.saturating_add(off);
                Some(Step::Detach {
                    factor: self.factor,
                })
            }
            Phase::Off => {
                self.phase = Phase::On;
                self.until_ns = base.saturating_add(ON_NS);
                Some(Step::Attach)
            }
        }
    }

    /// `D` for the host's switch rate since the last measure: the smallest power of two
    /// that brings it to `max_per_second`; a lower one only once the rate is below 3/4 of
    /// what it allows, so that it does not swing around the limit.
    fn wanted_factor(&mut self, now_ns: u64, switches: Option<u64>) -> u32 {
        if let Some(factor) = self.fixed {
            return factor;
        }
        let Some(switches) = switches else {
            return self.factor;
        };
        let Some((then_ns, then)) = self.counted.replace((now_ns, switches)) else {
            // The first measure starts the count: no rate yet.
            return self.factor;
        };
        if self.max_per_second == 0 {
            return 1;
        }
        let elapsed = now_ns.saturating_sub(then_ns).max(1);
        let per_second =
            u128::from(switches.saturating_sub(then)) * 1_000_000_000 / u128::from(elapsed);
        let limit = u128::from(self.max_per_second);
        let factor_for = |limit: u128| {
            let mut factor = 1u32;
            while u128::from(factor) * limit < per_second && factor < MAX_FACTOR {
                factor *= 2;
            }
            factor
        };
        let wanted = factor_for(limit);
        if wanted >= self.factor {
            wanted
        } else {
            self.factor.min(factor_for((limit * 3 / 4).max(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// The host: its clock and its count of switches.
    #[derive(Default)]
    struct Host {
        now: u64,
        switches: u64,
    }

    /// Runs `duty` on `host` until `end` at `rate` switches a second, stepping every
    /// 10 ms: returns how long it drew sleeps and how long the hook was attached, and the
    /// factor of each slice drawn.
    fn run(duty: &mut HookDuty, host: &mut Host, end: u64, rate: u64) -> (u64, u64, Vec<u32>) {
        let (mut drawing, mut attached, mut factors) = (0, 0, Vec::new());
        let mut factor = duty.factor;
        while host.now < end {
            match duty.phase() {
                Phase::On => {
                    drawing += 10_000_000;
                    attached += 10_000_000;
                }
                Phase::Draining => attached += 10_000_000,
                Phase::Off => {}
            }
            host.now += 10_000_000;
            host.switches += rate / 100;
            match duty.step(host.now, Some(host.switches)) {
                Some(Step::Detach { factor: next }) => {
                    factors.push(factor);
                    factor = next;
                }
                Some(Step::StopDrawing | Step::Attach) | None => {}
            }
        }
        (drawing, attached, factors)
    }

    #[test]
    fn a_quiet_host_keeps_the_hook_attached() {
        let mut duty = HookDuty::new(10_000, 0);
        let (drawing, attached, factors) = run(&mut duty, &mut Host::default(), 60 * S, 5_000);
        assert_eq!((drawing, attached), (60 * S, 60 * S));
        assert!(factors.is_empty());
    }

    /// Guards the weights: each slice drawn must stand for exactly the time its factor
    /// says, or every count and sum the serve exports is off by the difference.
    #[test]
    fn a_busy_host_draws_one_slice_in_the_factor_and_pays_little_more() {
        for (rate, factor) in [(15_000, 2), (30_000, 4), (10_000_000, MAX_FACTOR)] {
            let mut duty = HookDuty::new(10_000, 0);
            let mut host = Host::default();
            // The first slices: the count starts, then the rate is known.
            run(&mut duty, &mut host, 20 * S, rate);
            // Whole cycles from a slice's start on.
            while duty.phase() != Phase::On || duty.until_ns() != host.now + ON_NS {
                let end = host.now + 10_000_000;
                run(&mut duty, &mut host, end, rate);
            }
            let cycles = 10;
            let span = u64::from(factor) * ON_NS * cycles;
            let end = host.now + span;
            let (drawing, attached, factors) = run(&mut duty, &mut host, end, rate);
            assert!(factors.iter().all(|&f| f == factor), "{rate}: {factors:?}");
            assert_eq!(
                drawing * u64::from(factor),
                span,
                "{rate}/s draws 1 in {factor}"
            );
            assert_eq!(attached - drawing, DRAIN_NS * cycles);
        }
    }

    #[test]
    fn the_factor_follows_the_rate_down_only_below_three_quarters() {
        let mut duty = HookDuty::new(10_000, 0);
        let mut host = Host::default();
        run(&mut duty, &mut host, 30 * S, 30_000);
        assert_eq!(duty.factor, 4);
        // 19 000 a second: 2 would allow 20 000, but not with the margin.
        run(&mut duty, &mut host, 60 * S, 19_000);
        assert_eq!(duty.factor, 4);
        run(&mut duty, &mut host, 90 * S, 14_000);
        assert_eq!(duty.factor, 2);
        // Quiet again: back to always attached, after the last slice's cycle.
        run(&mut duty, &mut host, 120 * S, 1_000);
        assert_eq!(duty.factor, 1);
        assert_eq!(duty.phase(), Phase::On);
        let (drawing, attached, _) = run(&mut duty, &mut host, 150 * S, 1_000);
        assert_eq!((drawing, attached), (30 * S, 30 * S));
    }

    #[test]
    fn no_limit_or_no_count_never_detaches() {
        let mut duty = HookDuty::new(0, 0);
        let (drawing, _, _) = run(&mut duty, &mut Host::default(), 30 * S, 1_000_000);
        assert_eq!(drawing, 30 * S);
        let mut duty = HookDuty::new(10_000, 0);
        for now in (1..100).map(|n| n * S) {
            assert_eq!(duty.step(now, None), None);
        }
    }

    #[test]
    fn a_fixed_factor_holds_whatever_the_rate() {
        let mut duty = HookDuty::fixed(4, 0);
        let mut host = Host::default();
        let (_, _, factors) = run(&mut duty, &mut host, 40 * S, 100);
        // The first slice, drawn before the factor applied, then slices of 4.
        assert_eq!(factors.first(), Some(&1));
        assert!(factors[1..].iter().all(|&f| f == 4), "{factors:?}");
        assert!(factors.len() >= 4, "{factors:?}");
    }

    #[test]
    fn a_count_from_the_start_decides_at_the_first_slices_end() {
        let mut duty = HookDuty::new(10_000, 0);
        duty.count_from(0, Some(0));
        let mut host = Host::default();
        run(&mut duty, &mut host, ON_NS + DRAIN_NS + 10_000_000, 30_000);
        assert_eq!((duty.phase(), duty.factor), (Phase::Off, 4));
    }

    #[test]
    fn a_late_step_starts_afresh() {
        let mut duty = HookDuty::new(10_000, 0);
        let mut host = Host::default();
        run(&mut duty, &mut host, 20 * S, 30_000);
        // The serve was stopped for a minute.
        let late = host.now + 60 * S;
        let _ = duty.step(late, Some(host.switches + 30_000 * 60));
        assert!(duty.until_ns() > late);
        assert!(duty.until_ns() <= late + 8 * ON_NS);
    }
}
