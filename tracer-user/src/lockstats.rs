//! Per-lock contention counters and wait/hold time histograms.
//!
//! Histograms are HDR histograms covering 1 ns .. 1 hour at 2 significant digits
//! ([`SIGFIG`]), which keeps every percentile within 1% of the true value. Count, max and total are tracked exactly
//! beside the histogram, because the histogram only knows values to its bucket precision.

use std::borrow::Cow;

use hdrhistogram::Histogram;
use rustc_hash::FxHashMap as HashMap;

use crate::model::Quantiles;

/// Smallest value the histograms tell apart from zero.
const LOWEST_NS: u64 = 1;
/// Largest value the histograms hold; longer waits are counted as one hour (their exact
/// length still goes into max and total). An hour-long lock wait is a finding either way.
const HIGHEST_NS: u64 = 3_600_000_000_000;
/// Significant digits: 2 keeps percentiles within 1%, which is finer than anyone reads a
/// latency percentile, and keeps a histogram several times smaller than at 3 digits:
/// the tracer's memory grows with the number of contended locks, and the smaller table
/// stays in cache on the event path.
const SIGFIG: u8 = 2;

/// Values a [`Distribution`] collects before adding them to its histogram in one go.
const PENDING: usize = 8;

/// One distribution: the histogram plus the exact aggregates it cannot give.
#[derive(Clone, Debug)]
struct Distribution {
    /// `None` only if the histogram could not be created, which the constant bounds rule out
    /// (a test pins it). Kept as an `Option` so that case degrades to zero percentiles
    /// instead of a panic in the tracer.
    hist: Option<Histogram<u64>>,
    /// Recorded values not yet in `hist`, already clamped to its bounds. With hundreds
    /// of locks the histograms do not fit in cache, and the bucket increment was a cache
    /// miss per wait that stalled the event loop; added [`PENDING`] at a time, the
    /// increments are independent loads the CPU overlaps.
    pending: [u64; PENDING],
    pending_len: usize,
    count: u64,
    max: u64,
    total: u128,
}

impl Distribution {
    fn new() -> Self {
        // Auto-resize is off with explicit bounds: memory per histogram stays fixed.
        Self {
            hist: Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGFIG).ok(),
            pending: [0; PENDING],
            pending_len: 0,
            count: 0,
            max: 0,
            total: 0,
        }
    }

    fn record(&mut self, ns: u64) {
        // Clamped, so out-of-range values are counted at the edge instead of failing.
        if let Some(slot) = self.pending.get_mut(self.pending_len) {
            *slot = ns.clamp(LOWEST_NS, HIGHEST_NS);
            self.pending_len += 1;
        }
        if self.pending_len == PENDING
            && let Some(hist) = &mut self.hist
        {
            add_all(hist, &self.pending);
            self.pending_len = 0;
        }
        self.count = self.count.saturating_add(1);
        self.max = self.max.max(ns);
        self.total += u128::from(ns);
    }

    /// The histogram with the pending values in it: a copy when some are pending (only
    /// summaries read it, once per lock).
    fn histogram(&self) -> Option<Cow<'_, Histogram<u64>>> {
        let hist = self.hist.as_ref()?;
        let pending = self.pending.get(..self.pending_len).unwrap_or_default();
        if pending.is_empty() {
            return Some(Cow::Borrowed(hist));
        }
        let mut hist = hist.clone();
        add_all(&mut hist, pending);
        Some(Cow::Owned(hist))
    }

    fn quantiles(&self) -> Quantiles {
        if self.count == 0 {
            return Quantiles::default();
        }
        let hist = self.histogram();
        // A bucket's highest equivalent value can exceed the true maximum; clamp so that
        // p50 <= p90 <= p99 <= max always holds in the report.
        let at = |q: f64| {
            hist.as_ref()
                .map_or(0, |h| h.value_at_quantile(q).min(self.max))
        };
        Quantiles {
            count: self.count,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: self.max,
            total: saturate(self.total),
        }
    }
}

/// Adds already clamped values to a histogram.
fn add_all(hist: &mut Histogram<u64>, values: &[u64]) {
    for &ns in values {
        hist.saturating_record(ns);
    }
}

fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Contention counters and wait/hold histograms of one lock.
///
/// Each histogram takes ~36 KiB (fixed, no resizing), so only locks that were contended
/// should get an entry.
#[derive(Clone, Debug)]
pub struct LockStats {
    /// Number of waits that began on this lock.
    pub contentions: u64,
    /// Largest number of simultaneous waiters seen.
    pub max_waiters: u32,
    /// Waits begun with [`LockStats::begin_wait`] and not yet ended.
    waiting: u32,
    wait: Distribution,
    /// Created on first use: hold times are only known for locks whose release is traced.
    hold: Option<Distribution>,
}

impl Default for LockStats {
    fn default() -> Self {
        Self::new()
    }
}

impl LockStats {
    /// Empty stats with a wait histogram and no hold histogram yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            contentions: 0,
            max_waiters: 0,
            waiting: 0,
            wait: Distribution::new(),
            hold: None,
        }
    }

    /// One more wait began; `waiters_now` counts the threads waiting now, this one included.
    pub fn record_contention(&mut self, waiters_now: u32) {
        self.contentions = self.contentions.saturating_add(1);
        self.max_waiters = self.max_waiters.max(waiters_now);
    }

    /// One more wait began; the lock counts its open waits itself (for `max_waiters`).
    pub fn begin_wait(&mut self) {
        self.waiting = self.waiting.saturating_add(1);
        self.record_contention(self.waiting);
    }

    /// A wait begun with [`LockStats::begin_wait`] ended after `ns` nanoseconds.
    pub fn end_wait(&mut self, ns: u64) {
        self.waiting = self.waiting.saturating_sub(1);
        self.record_wait(ns);
    }

    /// A wait begun with [`LockStats::begin_wait`] ended at an unknown time (its end
    /// event was lost): it no longer counts as open, and records no duration.
    pub fn end_wait_unmeasured(&mut self) {
        self.waiting = self.waiting.saturating_sub(1);
    }

    /// A wait of `ns` nanoseconds ended.
    pub fn record_wait(&mut self, ns: u64) {
        self.wait.record(ns);
    }

    /// `count` waits that never slept ended. They count as contentions but have no
    /// duration: the kernel counts them at their end and has no hook at their start (see
    /// `tracer-ebpf/src/futex_sleep.rs`); each lasted about one system call.
    pub fn record_brief_waits(&mut self, count: u64) {
        if count == 0 {
            return;
        }
        self.contentions = self.contentions.saturating_add(count);
        self.max_waiters = self.max_waiters.max(1);
    }

    /// The lock was held for `ns` nanoseconds.
    pub fn record_hold(&mut self, ns: u64) {
        self.hold.get_or_insert_with(Distribution::new).record(ns);
    }

    /// Wait time distribution (all zero when no wait was recorded).
    #[must_use]
    pub fn wait(&self) -> Quantiles {
        self.wait.quantiles()
    }

    /// Hold time distribution, `None` when no hold time was ever recorded.
    #[must_use]
    pub fn hold(&self) -> Option<Quantiles> {
        self.hold.as_ref().map(Distribution::quantiles)
    }

    /// Exact sum of all recorded waits, in nanoseconds.
    #[must_use]
    pub fn wait_total_ns(&self) -> u128 {
        self.wait.total
    }

    /// Exact sum of all recorded holds, in nanoseconds.
    #[must_use]
    pub fn hold_total_ns(&self) -> u128 {
        self.hold.as_ref().map_or(0, |h| h.total)
    }
}

/// A lock's place in a [`LockTable`]: stable for the table's life, so a wait can keep it
/// and reach its lock's stats again without a hash lookup.
pub type LockSlot = u32;

/// Stats of every contended lock, by lock address.
#[derive(Clone, Debug, Default)]
pub struct LockTable {
    slots: HashMap<u64, LockSlot>,
    addrs: Vec<u64>,
    stats: Vec<LockStats>,
}

impl LockTable {
    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The slot of the lock at `addr`, created (with empty stats) on first use.
    pub fn slot(&mut self, addr: u64) -> LockSlot {
        if let Some(&slot) = self.slots.get(&addr) {
            return slot;
        }
        let slot = LockSlot::try_from(self.stats.len()).unwrap_or(LockSlot::MAX);
        self.slots.insert(addr, slot);
        self.addrs.push(addr);
        self.stats.push(LockStats::new());
        slot
    }

    /// The slot of the lock at `addr`, if it has one.
    #[must_use]
    pub fn slot_of(&self, addr: u64) -> Option<LockSlot> {
        self.slots.get(&addr).copied()
    }

    /// The stats in `slot` (from [`LockTable::slot`]).
    ///
    /// # Panics
    /// Never for a slot this table handed out; other values are a caller bug.
    pub fn at(&mut self, slot: LockSlot) -> &mut LockStats {
        &mut self.stats[slot as usize]
    }

    /// The stats of the lock at `addr`, created empty on first use.
    pub fn entry(&mut self, addr: u64) -> &mut LockStats {
        let slot = self.slot(addr);
        self.at(slot)
    }

    /// The stats of the lock at `addr`, if it has any.
    #[must_use]
    pub fn get(&self, addr: u64) -> Option<&LockStats> {
        self.stats.get(*self.slots.get(&addr)? as usize)
    }

    /// All locks with their stats, in no particular order (the report sorts).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &LockStats)> {
        self.addrs.iter().copied().zip(&self.stats)
    }

    /// Number of locks in the table.
    #[must_use]
    pub fn len(&self) -> usize {
        self.stats.len()
    }

    /// Whether the table has no locks.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    const US: u64 = 1_000;

    /// Asserts `actual` is within 1% of `expected`.
    fn assert_close(actual: u64, expected: u64) {
        let diff = actual.abs_diff(expected);
        assert!(
            diff * 100 <= expected,
            "{actual} not within 1% of {expected}"
        );
    }

    /// Guards the folding of the kernel's brief-wait counts: they are contentions, with
    /// one waiter at least, but they have no duration and must not drag the wait
    /// distribution down with invented zeros.
    #[test]
    fn brief_waits_count_as_contentions_without_a_duration() {
        let mut s = LockStats::new();
        s.begin_wait();
        s.end_wait(100 * US);
        s.record_brief_waits(10);
        s.record_brief_waits(0);
        let q = s.wait();
        assert_eq!(s.contentions, 11);
        assert_eq!(
            (q.count, q.total, q.max, q.p50),
            (1, 100 * US, 100 * US, 100 * US)
        );
        assert_eq!(s.max_waiters, 1);
        let mut only_brief = LockStats::new();
        only_brief.record_brief_waits(3);
        assert_eq!(only_brief.contentions, 3);
        assert_eq!(only_brief.wait().count, 0);
    }

    #[test]
    fn histogram_bounds_are_valid() {
        // The `Option` in `Distribution` is only for this impossible failure.
        assert!(Distribution::new().hist.is_some());
    }

    #[test]
    fn uniform_microseconds() {
        let mut s = LockStats::new();
        for v in 1..=1000 {
            s.record_wait(v * US);
        }
        let q = s.wait();
        assert_eq!(q.count, 1000);
        assert_close(q.p50, 500 * US);
        assert_close(q.p90, 900 * US);
        assert_close(q.p99, 990 * US);
        assert_eq!(q.max, 1000 * US);
        assert_eq!(q.total, 500_500 * US);
        assert_eq!(s.wait_total_ns(), 500_500 * u128::from(US));
    }

    #[test]
    fn skewed_distribution() {
        // 98 fast waits and 2 slow ones: p50 and p90 fast, p99 slow.
        let mut s = LockStats::new();
        for _ in 0..98 {
            s.record_wait(250);
        }
        s.record_wait(7_000_000);
        s.record_wait(9_000_001);
        let q = s.wait();
        assert_close(q.p50, 250);
        assert_close(q.p90, 250);
        assert_close(q.p99, 7_000_000);
        assert_eq!(q.max, 9_000_001);
        assert_eq!(q.total, 98 * 250 + 16_000_001);
    }

    #[test]
    fn percentiles_never_exceed_max() {
        let mut s = LockStats::new();
        // 1_000_001 sits in a bucket whose highest equivalent value is larger.
        s.record_wait(1_000_001);
        let q = s.wait();
        assert_eq!(q.max, 1_000_001);
        assert_eq!(q.p50, 1_000_001);
        assert_eq!(q.p99, 1_000_001);
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let mut s = LockStats::new();
        s.record_wait(0);
        s.record_wait(u64::MAX);
        s.record_wait(u64::MAX);
        let q = s.wait();
        assert_eq!(q.count, 3);
        assert_eq!(q.max, u64::MAX);
        // Huge values land in the histogram's top bucket.
        assert_close(q.p50, HIGHEST_NS);
        // Total saturates in the report but stays exact in u128.
        assert_eq!(q.total, u64::MAX);
        assert_eq!(s.wait_total_ns(), 2 * u128::from(u64::MAX));

        let mut s = LockStats::new();
        s.record_wait(0);
        let q = s.wait();
        assert_eq!((q.count, q.p50, q.p99, q.max, q.total), (1, 0, 0, 0, 0));
    }

    #[test]
    fn batched_values_read_like_values_recorded_one_by_one() {
        // Every fill level of the pending batch, including none and a full one.
        for n in 0..=3 * PENDING as u64 + 1 {
            let mut s = LockStats::new();
            let mut plain =
                Histogram::<u64>::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGFIG).unwrap();
            for i in 0..n {
                let ns = (i * 7_919 + 13) % 50_000 * 100;
                s.record_wait(ns);
                plain.saturating_record(ns.clamp(LOWEST_NS, HIGHEST_NS));
            }
            let q = s.wait();
            let max = (0..n).map(|i| (i * 7_919 + 13) % 50_000 * 100).max();
            let at = |p: f64| plain.value_at_quantile(p).min(max.unwrap_or(0));
            assert_eq!(q.count, n);
            if n > 0 {
                assert_eq!(
                    (q.p50, q.p90, q.p99),
                    (at(0.5), at(0.9), at(0.99)),
                    "{n} values"
                );
            }
            // Reading does not consume the pending values.
            assert_eq!(s.wait(), q);
        }
    }

    #[test]
    fn empty_wait_is_zero_and_hold_is_created_lazily() {
        let mut s = LockStats::new();
        assert_eq!(s.wait(), Quantiles::default());
        assert_eq!(s.hold(), None);
        assert_eq!(s.hold_total_ns(), 0);
        s.record_hold(40);
        s.record_hold(60);
        let h = s.hold().expect("hold histogram exists after a hold");
        assert_eq!((h.count, h.max, h.total), (2, 60, 100));
        assert_eq!(h.p50, 40);
        assert_eq!(s.hold_total_ns(), 100);
        // Holds do not leak into waits.
        assert_eq!(s.wait().count, 0);
    }

    #[test]
    fn contention_counters() {
        let mut s = LockStats::new();
        s.record_contention(1);
        s.record_contention(3);
        s.record_contention(2);
        assert_eq!(s.contentions, 3);
        assert_eq!(s.max_waiters, 3);
    }

    #[test]
    fn table_entries() {
        let mut t = LockTable::new();
        assert!(t.is_empty());
        t.entry(0x10).record_wait(5);
        t.entry(0x10).record_wait(7);
        t.entry(0x20).record_contention(1);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(0x10).map(|s| s.wait().count), Some(2));
        assert!(t.get(0x30).is_none());
        let mut addrs: Vec<u64> = t.iter().map(|(a, _)| a).collect();
        addrs.sort_unstable();
        assert_eq!(addrs, vec![0x10, 0x20]);
    }
}
