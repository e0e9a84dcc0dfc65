//! The sliding window over successive live snapshots: per-lock rates and wait
//! percentiles over the last few seconds, from the differences of cumulative counters.
//!
//! A snapshot's counters and bucketed distributions count everything since the attach;
//! the difference between the newest snapshot and the one taken a window earlier is what
//! happened within the window. Percentiles come from the bucket differences, so they are
//! bucket upper bounds ([`BUCKET_BOUNDS_NS`]: 1-2.5-5 steps), not exact values.

use std::{collections::VecDeque, time::Duration};

use rustc_hash::FxHashMap;

use crate::model::{
    LockKind,
    live::{BUCKET_BOUNDS_NS, Buckets, TargetSnapshot},
};

/// One lock's counters at one snapshot.
#[derive(Clone, Debug)]
struct Counters {
    contentions: u64,
    wait: Buckets,
}

/// The snapshots of the last window (and the one just before it, the baseline).
#[derive(Debug)]
pub struct Window {
    span: Duration,
    /// (time since the attach, each lock's counters by address), oldest first.
    samples: VecDeque<(Duration, FxHashMap<u64, Counters>)>,
}

/// A wait duration read off the buckets: at most this bound, or beyond the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BucketBound {
    /// At most this many nanoseconds.
    AtMost(u64),
    /// More than the last bound.
    Beyond,
}

/// One lock over the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowLock {
    /// The lock's address.
    pub addr: u64,
    /// What the view calls it.
    pub label: String,
    /// Its kind.
    pub kind: LockKind,
    /// Contentions in the window.
    pub contentions: u64,
    /// Contentions per second, in tenths.
    pub contentions_per_10s: u64,
    /// Total wait time in the window, nanoseconds.
    pub wait_ns: u128,
    /// Waits measured in the window.
    pub waits: u64,
    /// Median wait (bucket bound), when there were waits.
    pub p50: Option<BucketBound>,
    /// 99th percentile wait (bucket bound).
    pub p99: Option<BucketBound>,
    /// Longest wait (bucket bound).
    pub max: Option<BucketBound>,
}

impl Window {
    /// An empty window `span` long.
    #[must_use]
    pub fn new(span: Duration) -> Self {
        Self {
            span,
            samples: VecDeque::new(),
        }
    }

    /// The window's length.
    #[must_use]
    pub fn span(&self) -> Duration {
        self.span
    }

    /// Adds the snapshot taken `at` (time since the attach), and forgets the ones no
    /// longer needed: the oldest kept is the last taken at or before `at - span`.
    pub fn push(&mut self, at: Duration, snapshot: &TargetSnapshot) {
        let counters = snapshot
            .locks
            .iter()
            .map(|l| {
                (
                    l.lock.addr,
                    Counters {
                        contentions: l.contentions,
                        wait: l.wait.clone(),
                    },
                )
            })
            .collect();
        self.samples.push_back((at, counters));
        let start = at.saturating_sub(self.span);
        while self.samples.len() > 2 && self.samples.get(1).is_some_and(|(t, _)| *t <= start) {
            self.samples.pop_front();
        }
    }

    /// Each lock of `snapshot` (the newest pushed) over the window, in the snapshot's
    /// order. With a single snapshot, the window is the time since the attach.
    #[must_use]
    pub fn locks(&self, snapshot: &TargetSnapshot) -> Vec<WindowLock> {
        let Some((newest_at, _)) = self.samples.back() else {
            return Vec::new();
        };
        let (base_at, base) = match self.samples.front() {
            Some((at, base)) if self.samples.len() > 1 => (*at, Some(base)),
            _ => (Duration::ZERO, None),
        };
        let elapsed_ms = newest_at.saturating_sub(base_at).as_millis().max(1);
        snapshot
            .locks
            .iter()
            .map(|l| {
                let before = base.and_then(|b| b.get(&l.lock.addr));
                let contentions = l
                    .contentions
                    .saturating_sub(before.map_or(0, |b| b.contentions));
                let wait = difference(&l.wait, before.map(|b| &b.wait));
                let per_10s = u128::from(contentions) * 10_000 / elapsed_ms;
                WindowLock {
                    addr: l.lock.addr,
                    label: l.lock.label(),
                    kind: l.kind,
                    contentions,
                    contentions_per_10s: u64::try_from(per_10s).unwrap_or(u64::MAX),
                    wait_ns: wait.sum_ns,
                    waits: wait.count,
                    p50: quantile(&wait, 50),
                    p99: quantile(&wait, 99),
                    max: quantile(&wait, 100),
                }
            })
            .collect()
    }
}

/// `now - before`, bucket by bucket (`now` alone without a baseline).
fn difference(now: &Buckets, before: Option<&Buckets>) -> Buckets {
    let Some(before) = before else {
        return now.clone();
    };
    let mut le = now.le;
    for (d, b) in le.iter_mut().zip(before.le) {
        *d = d.saturating_sub(b);
    }
    Buckets {
        le,
        count: now.count.saturating_sub(before.count),
        sum_ns: now.sum_ns.saturating_sub(before.sum_ns),
    }
}

/// The `percent`th percentile of `buckets` (cumulative), as the bound of the first
/// bucket that reaches it; `None` without values.
fn quantile(buckets: &Buckets, percent: u64) -> Option<BucketBound> {
    if buckets.count == 0 {
        return None;
    }
    // The rank of the value wanted, 1-based, rounded up.
    let rank = (u128::from(buckets.count) * u128::from(percent))
        .div_ceil(100)
        .max(1);
    Some(
        buckets
            .le
            .iter()
            .position(|&n| u128::from(n) >= rank)
            .map_or(BucketBound::Beyond, |i| {
                BucketBound::AtMost(BUCKET_BOUNDS_NS[i])
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LockRef, live::LiveLock};

    /// A lock's address, contentions, and (wait in ns, how many) pairs, cumulative.
    type LockCounts<'a> = (u64, u64, &'a [(u64, u64)]);

    /// A snapshot of `locks`.
    fn snapshot(locks: &[LockCounts<'_>]) -> TargetSnapshot {
        TargetSnapshot {
            pid: 1,
            comm: "t".to_owned(),
            attached: true,
            locks: locks
                .iter()
                .map(|&(addr, contentions, waits)| {
                    let mut wait = Buckets::default();
                    for &(ns, n) in waits {
                        for (i, bound) in BUCKET_BOUNDS_NS.iter().enumerate() {
                            if ns <= *bound {
                                wait.le[i] += n;
                            }
                        }
                        wait.count += n;
                        wait.sum_ns += u128::from(ns) * u128::from(n);
                    }
                    LiveLock {
                        lock: LockRef {
                            addr,
                            name: None,
                            location: None,
                            name_source: None,
                        },
                        kind: LockKind::Mutex,
                        contentions,
                        wait,
                        hold: None,
                    }
                })
                .collect(),
            other: Vec::new(),
            deadlocks: 0,
            lock_order_inversions: 0,
            stuck_locks: 0,
            events: 0,
            dropped: 0,
            sleep_sample_period: 1,
        }
    }

    /// Guards the window's arithmetic: rates and percentiles cover only what happened
    /// since the baseline a window ago, not everything since the attach.
    #[test]
    fn rates_and_percentiles_cover_the_window_only() {
        let mut window = Window::new(Duration::from_secs(5));
        // Before the window: 1000 slow waits (100 ms).
        let old = snapshot(&[(0x10, 1000, &[(100_000_000, 1000)])]);
        window.push(Duration::from_secs(1), &old);
        // Five seconds later: 500 more contentions, 100 fast waits (2 µs) and one 40 ms.
        let new = snapshot(&[(
            0x10,
            1500,
            &[(100_000_000, 1000), (2_000, 99), (40_000_000, 1)],
        )]);
        window.push(Duration::from_secs(6), &new);
        let locks = window.locks(&new);
        assert_eq!(locks.len(), 1);
        let lock = &locks[0];
        assert_eq!(lock.contentions, 500);
        assert_eq!(lock.contentions_per_10s, 1000, "100.0/s");
        assert_eq!(lock.waits, 100);
        assert_eq!(lock.wait_ns, 99 * 2_000 + 40_000_000);
        assert_eq!(lock.p50, Some(BucketBound::AtMost(2_500)));
        assert_eq!(lock.p99, Some(BucketBound::AtMost(2_500)));
        assert_eq!(lock.max, Some(BucketBound::AtMost(50_000_000)));
    }

    /// Guards the baseline's eviction: snapshots older than the window go, but one at or
    /// before its start stays, so the window never shrinks to nothing.
    #[test]
    fn old_snapshots_leave_but_the_baseline_stays() {
        let mut window = Window::new(Duration::from_secs(2));
        for (second, contentions) in [(1, 10), (2, 20), (3, 30), (4, 40), (5, 50)] {
            window.push(
                Duration::from_secs(second),
                &snapshot(&[(0x10, contentions, &[])]),
            );
        }
        let last = snapshot(&[(0x10, 50, &[])]);
        let lock = &window.locks(&last)[0];
        // Baseline at 3 s (30): 20 contentions over 2 s.
        assert_eq!(lock.contentions, 20);
        assert_eq!(lock.contentions_per_10s, 100);
        assert_eq!(lock.p50, None);
    }

    /// Guards the first refresh: with one snapshot, everything since the attach counts.
    #[test]
    fn a_single_snapshot_counts_since_the_attach() {
        let mut window = Window::new(Duration::from_secs(5));
        let only = snapshot(&[(0x10, 30, &[(20_000_000_000, 2)])]);
        window.push(Duration::from_secs(3), &only);
        let lock = &window.locks(&only)[0];
        assert_eq!(lock.contentions, 30);
        assert_eq!(lock.contentions_per_10s, 100);
        assert_eq!(lock.max, Some(BucketBound::Beyond));
    }
}
