//! The end-of-run summary: per-lock contention and wait/hold distributions.

use serde::Serialize;

use super::{LockKind, LockRef};

/// Contention summary of one lock.
///
/// JSON: `{"addr":"0x…","name":…,"type":"mutex","contentions":…,"max_waiters":…,
/// "wait_ns":{…},"hold_ns":{…}|null,"top_waiter_stack":[…]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockSummary {
    /// The lock; flattened into `addr` and `name` in JSON.
    #[serde(flatten)]
    pub lock: LockRef,
    /// Lock kind, JSON field `type`.
    #[serde(rename = "type")]
    pub kind: LockKind,
    /// Number of waits that began on this lock.
    pub contentions: u64,
    /// Largest number of simultaneous waiters.
    pub max_waiters: u32,
    /// Wait time distribution.
    pub wait_ns: Quantiles,
    /// Hold time distribution, when hold times were measured.
    pub hold_ns: Option<Quantiles>,
    /// Function names of the stack that waited longest in total, innermost first.
    pub top_waiter_stack: Vec<String>,
}

/// The least waited-on locks, folded into one aggregate once more than `--max-locks`
/// were tracked.
///
/// JSON: `{"locks":…,"contentions":…,"wait_ns":{…},"hold_ns":{…}|null}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OtherLocks {
    /// How many locks were folded.
    pub locks: u64,
    /// Their waits, added up.
    pub contentions: u64,
    /// Their wait times, together.
    pub wait_ns: Quantiles,
    /// Their hold times, together, when measured.
    pub hold_ns: Option<Quantiles>,
}

/// The contended locks the filters (`--lock`, `--type`, `--min-wait`) left out of the
/// table: counted, not reported.
///
/// JSON: `{"locks":…,"contentions":…,"waits":…,"wait_total_ns":…,"wait_max_ns":…}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FilteredLocks {
    /// How many locks were left out.
    pub locks: u64,
    /// Their waits (contentions), added up.
    pub contentions: u64,
    /// Their timed waits (the count of their wait distributions), added up.
    pub waits: u64,
    /// Their total wait time.
    pub wait_total_ns: u64,
    /// The longest of their waits.
    pub wait_max_ns: u64,
}

/// The end-of-run summary.
///
/// JSON: `{"kind":"summary","pid":…,"ns_pid":…,"duration_ns":…,"events":…,"dropped":…,"futex_wakes":…,
/// "futex_waits":…,"brief_lock_waits":…,"deadlocks":…,"timed_cycles":…,
/// "lock_order_inversions":…,"locks":[…],
/// "other_locks":{…},"notes":[…]}` (`other_locks` only when locks were folded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename = "summary")]
pub struct Summary {
    /// The traced process.
    pub pid: u32,
    /// Its PID as its own PID namespace sees it (inside a container), when that differs
    /// from `pid`; omitted in JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
    /// How long it was traced.
    pub duration_ns: u64,
    /// Events received from the kernel.
    pub events: u64,
    /// Events lost before reaching user space; nonzero means the results are incomplete.
    pub dropped: u64,
    /// Futex wake calls seen.
    pub futex_wakes: u64,
    /// Futex wait calls seen (lock waits and others, such as condition variables).
    pub futex_waits: u64,
    /// Of the lock waits, those that returned without sleeping (the lock was released
    /// while the waiter entered the kernel). The kernel adds these up instead of sending
    /// each; they are included in the locks' `contentions` and `wait_ns`.
    pub brief_lock_waits: u64,
    /// Number of deadlocks reported during the run (not counting `timed_cycles`).
    pub deadlocks: usize,
    /// Number of distinct cycles of timed waits reported during the run (each would
    /// time out: no deadlock).
    pub timed_cycles: usize,
    /// Number of lock-order inversions (potential deadlocks) reported during the run, not
    /// counting harmless ones (every order taken under one common lock).
    pub lock_order_inversions: usize,
    /// Contended locks, in report order (see [`Summary::sort_locks`]).
    pub locks: Vec<LockSummary>,
    /// The locks folded into one aggregate to bound the tracer's memory (`--max-locks`);
    /// omitted in JSON when none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_locks: Option<OtherLocks>,
    /// The locks the filters left out of `locks` (`--lock`, `--type`, `--min-wait`);
    /// omitted in JSON when no filter was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filtered_out: Option<FilteredLocks>,
    /// Remarks for the reader (limits hit, probes that could not attach, …).
    pub notes: Vec<String>,
}

impl Summary {
    /// Sorts the locks by total wait time, largest first; ties by address, so the order is
    /// deterministic.
    pub fn sort_locks(&mut self) {
        self.locks.sort_by(|a, b| {
            b.wait_ns
                .total
                .cmp(&a.wait_ns.total)
                .then(a.lock.addr.cmp(&b.lock.addr))
        });
    }
}

/// Summary of a distribution of durations, all in nanoseconds. Percentiles are within 1%
/// once the distribution has 64 values or more; below that (and for the locks beyond the
/// tracer's budget of histograms) they are the top of the power-of-two range they fall in
/// (within 2x), never above `max`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Quantiles {
    /// Number of recorded values.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value, exact.
    pub max: u64,
    /// Sum of all values, exact, saturating at `u64::MAX` (584 years).
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use crate::model::fixtures::summary;

    #[test]
    fn sort_by_total_wait_then_addr() {
        let mut s = summary();
        s.sort_locks();
        let addrs: Vec<u64> = s.locks.iter().map(|l| l.lock.addr).collect();
        // 0x7f12ab00 waited longest; 0x10 and 0x20 tie on total, so by address.
        assert_eq!(addrs, vec![0x7f12_ab00, 0x10, 0x20]);
    }
}
