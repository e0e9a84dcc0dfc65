//! Slots of the per-CPU [`MAP_COUNTERS`](crate::MAP_COUNTERS) array: what the programs
//! count instead of sending.

/// Slots of the per-CPU [`MAP_COUNTERS`](crate::MAP_COUNTERS) array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Ring-buffer reservations that failed: events dropped, never blocked on.
    Dropped = 0,
    /// Futex wake-type calls by the target (aggregated here, no event per call).
    FutexWakes = 1,
    /// Futex wait-type calls by the target.
    FutexWaits = 2,
    /// Stacks that neither stack map took (not recorded; the event still goes out).
    StackErrors = 3,
    /// Lock calls whose return was seen without a matching entry (`--holds`): their
    /// acquisitions are not sent.
    UnmatchedReturns = 4,
    /// Waits that never slept but found [`MAP_BRIEF_WAITS`](crate::MAP_BRIEF_WAITS) full:
    /// counted nowhere else.
    BriefWaitsUntracked = 5,
    /// Waits gone to sleep that found [`MAP_OPEN_SLEEPS`](crate::MAP_OPEN_SLEEPS) full
    /// (when wait ends are timed at `sched_switch`): their ends are not sent.
    OpenSleepsUntracked = 6,
}

/// Number of slots in [`MAP_COUNTERS`](crate::MAP_COUNTERS).
pub const COUNTER_SLOTS: u32 = 7;
