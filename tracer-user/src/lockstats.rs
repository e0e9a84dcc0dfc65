//! Per-lock contention counters and wait/hold time distributions, in a table whose
//! memory is bounded by design.
//!
//! A distribution starts compact: exact count, max and total, and the number of values
//! per power of two (176 bytes). Only once it has [`HISTOGRAM_AFTER`] values does it get
//! an HDR histogram covering 1 ns .. 1 hour at 2 significant digits ([`SIGFIG`], every
//! percentile within 1% of the true value; ~36 KiB), and a [`LockTable`] hands out at
//! most [`MAX_HISTOGRAMS`] of those. Percentiles of a compact distribution are coarser:
//! the top of the power-of-two range the percentile falls in (so within 2x), capped by the
//! exact max, which keeps `p50 <= p90 <= p99 <= max`.
//!
//! A [`LockTable`] tracks at most its `max_locks` locks ([`DEFAULT_MAX_LOCKS`]); past that
//! the caller folds the coldest (least total wait time) into one aggregate
//! ([`LockTable::fold_coldest`]), never the locks it says are pinned (open waits, held
//! locks, locks of findings). A program contending 100 000 distinct mutexes drove the
//! tracer to 2.9 GB when every lock had its own histograms.

use std::borrow::Cow;

use hdrhistogram::Histogram;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::model::{
    Quantiles,
    live::{BUCKET_BOUNDS_NS, Buckets},
};

/// Smallest value the histograms tell apart from zero.
const LOWEST_NS: u64 = 1;
/// Largest value the histograms hold; longer waits are counted as one hour (their exact
/// length still goes into max and total). An hour-long lock wait is a finding either way.
const HIGHEST_NS: u64 = 3_600_000_000_000;
/// Significant digits: 2 keeps percentiles within 1%, which is finer than anyone reads a
/// latency percentile, and keeps a histogram several times smaller than at 3 digits:
/// the smaller table stays in cache on the event path.
const SIGFIG: u8 = 2;

/// Values a full distribution collects before adding them to its histogram in one go.
const PENDING: usize = 8;

/// Values a distribution holds in its compact form before it gets a full histogram.
///
/// Why 64: the percentiles of a few dozen values are their few largest values (p99 of 64
/// values is the largest or the second largest), which the compact form's exact max and
/// power-of-two counts already give to within 2x; a 36 KiB histogram for them would be
/// 200 times the lock's other state. A lock that has slept 64 times is one a reader of
/// the report looks at, and from then on its percentiles are within 1%. A program with
/// many locks mostly has locks that each slept a few times: they stay compact.
pub const HISTOGRAM_AFTER: u64 = 64;

/// Full histograms a [`LockTable`] hands out at most (wait and hold histograms alike):
/// 1024 × ~36 KiB bounds them to ~36 MiB. Locks contended beyond that keep compact
/// (coarser) percentiles, and a note says how many.
pub const MAX_HISTOGRAMS: usize = 1024;

/// Locks a [`LockTable`] tracks by default before folding the coldest (`--max-locks`).
///
/// Why 10 000: a compact lock costs well under 2 KiB with its stack sample, so 10 000
/// bound the per-lock state to ~20 MiB besides the histograms; no reader looks at more
/// rows than that, and the locks that matter (most waited on) are the ones kept.
pub const DEFAULT_MAX_LOCKS: usize = 10_000;

/// Power-of-two ranges of the compact form: 0, then `[2^(i-1), 2^i)` for `i` in 1..=42
/// (2^42 ns > [`HIGHEST_NS`]).
const LOG2_BUCKETS: usize = 44;

/// The compact form: how many values fell in each power-of-two range.
#[derive(Clone, Debug)]
struct Log2Counts([u32; LOG2_BUCKETS]);

impl Log2Counts {
    fn index(ns: u64) -> usize {
        (64 - ns.min(HIGHEST_NS).leading_zeros()) as usize
    }

    /// The largest value of range `i`.
    fn upper(i: usize) -> u64 {
        if i == 0 {
            0
        } else {
            ((1u64 << i) - 1).min(HIGHEST_NS)
        }
    }

    fn add(&mut self, ns: u64, n: u32) {
        if let Some(c) = self.0.get_mut(Self::index(ns)) {
            *c = c.saturating_add(n);
        }
    }

    /// The top of the range holding the value of rank `ceil(q * count)`.
    fn at_quantile(&self, q: f64, count: u64) -> u64 {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a rank between 1 and count; f64 precision is plenty for a percentile"
        )]
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count.max(1));
        let mut seen = 0u64;
        for (i, &c) in self.0.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Self::upper(i);
            }
        }
        Self::upper(LOG2_BUCKETS - 1)
    }
}

/// The full form: an HDR histogram and the values not yet added to it.
#[derive(Clone, Debug)]
struct FullHistogram {
    hist: Histogram<u64>,
    /// Recorded values not yet in `hist`, already clamped to its bounds. With hundreds
    /// of locks the histograms do not fit in cache, and the bucket increment was a cache
    /// miss per wait that stalled the event loop; added [`PENDING`] at a time, the
    /// increments are independent loads the CPU overlaps.
    pending: [u64; PENDING],
    pending_len: usize,
}

impl FullHistogram {
    /// `None` only if the histogram could not be created, which the constant bounds rule
    /// out (a test pins it): the distribution then stays compact instead of panicking.
    fn new() -> Option<Self> {
        // Auto-resize is off with explicit bounds: memory per histogram stays fixed.
        Some(Self {
            hist: Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGFIG).ok()?,
            pending: [0; PENDING],
            pending_len: 0,
        })
    }

    /// Records `ns` `n` times: a value standing for several (a sampled wait) goes
    /// straight into the histogram.
    fn record_n(&mut self, ns: u64, n: u64) {
        if n == 1 {
            self.record(ns);
        } else {
            self.hist
                .saturating_record_n(ns.clamp(LOWEST_NS, HIGHEST_NS), n);
        }
    }

    fn record(&mut self, ns: u64) {
        // Clamped, so out-of-range values are counted at the edge instead of failing.
        if let Some(slot) = self.pending.get_mut(self.pending_len) {
            *slot = ns.clamp(LOWEST_NS, HIGHEST_NS);
            self.pending_len += 1;
        }
        if self.pending_len == PENDING {
            add_all(&mut self.hist, &self.pending);
            self.pending_len = 0;
        }
    }

    /// Adds a compact form's counts, each at the top of its range capped by `max`: the
    /// value the compact form reported for them.
    fn add_compact(&mut self, counts: &Log2Counts, max: u64) {
        for (i, &c) in counts.0.iter().enumerate() {
            if c > 0 {
                let ns = Log2Counts::upper(i).min(max).clamp(LOWEST_NS, HIGHEST_NS);
                self.hist.saturating_record_n(ns, u64::from(c));
            }
        }
    }

    /// The histogram with the pending values in it: a copy when some are pending (only
    /// summaries read it, once per lock).
    fn histogram(&self) -> Cow<'_, Histogram<u64>> {
        let pending = self.pending.get(..self.pending_len).unwrap_or_default();
        if pending.is_empty() {
            return Cow::Borrowed(&self.hist);
        }
        let mut hist = self.hist.clone();
        add_all(&mut hist, pending);
        Cow::Owned(hist)
    }
}

#[derive(Clone, Debug)]
enum Shape {
    Compact(Log2Counts),
    Full(Box<FullHistogram>),
}

/// One distribution: compact, then a histogram; count, max and total always exact.
#[derive(Clone, Debug)]
struct Distribution {
    shape: Shape,
    count: u64,
    max: u64,
    total: u128,
}

impl Distribution {
    fn new() -> Self {
        Self {
            shape: Shape::Compact(Log2Counts([0; LOG2_BUCKETS])),
            count: 0,
            max: 0,
            total: 0,
        }
    }

    fn is_full(&self) -> bool {
        matches!(self.shape, Shape::Full(_))
    }

    /// Records `ns`; `histograms_left` is the table's budget of full histograms, taken
    /// from when this distribution gets one.
    fn record(&mut self, ns: u64, histograms_left: &mut usize) {
        self.record_n(ns, 1, histograms_left);
    }

    /// Records `ns` `n` times (a sampled wait standing for `n`).
    fn record_n(&mut self, ns: u64, n: u64, histograms_left: &mut usize) {
        match &mut self.shape {
            Shape::Compact(counts) => counts.add(ns, u32::try_from(n).unwrap_or(u32::MAX)),
            Shape::Full(full) => full.record_n(ns, n),
        }
        self.count = self.count.saturating_add(n);
        self.max = self.max.max(ns);
        self.total += u128::from(ns) * u128::from(n);
        if self.count >= HISTOGRAM_AFTER && *histograms_left > 0 && self.promote() {
            *histograms_left -= 1;
        }
    }

    /// Gives a compact distribution its full histogram, with its values so far at the top
    /// of their ranges. Whether it did (not when already full).
    fn promote(&mut self) -> bool {
        let Shape::Compact(counts) = &self.shape else {
            return false;
        };
        let Some(mut full) = FullHistogram::new() else {
            return false;
        };
        full.add_compact(counts, self.max);
        self.shape = Shape::Full(Box::new(full));
        true
    }

    /// Adds every value of `other` (for the aggregate of folded locks, which takes a full
    /// histogram outside any budget: there is one).
    fn absorb(&mut self, other: &Self) {
        self.count = self.count.saturating_add(other.count);
        self.max = self.max.max(other.max);
        self.total += other.total;
        if other.is_full() || self.count >= HISTOGRAM_AFTER {
            self.promote();
        }
        match (&mut self.shape, &other.shape) {
            (Shape::Compact(mine), Shape::Compact(theirs)) => {
                for (m, t) in mine.0.iter_mut().zip(&theirs.0) {
                    *m = m.saturating_add(*t);
                }
            }
            (Shape::Full(mine), Shape::Compact(theirs)) => mine.add_compact(theirs, other.max),
            (Shape::Full(mine), Shape::Full(theirs)) => {
                // Same bounds on both sides: adding cannot fail.
                let _ = mine.hist.add(&*theirs.histogram());
            }
            // `promote` only fails if a histogram cannot be created: keep the exact
            // aggregates, and the ranges of the other side's max.
            (Shape::Compact(mine), Shape::Full(_)) => mine.add(other.max, 1),
        }
    }

    /// The values in the fixed buckets of live metrics, cumulative. A compact
    /// distribution's values count at the top of their power-of-two range (capped by the
    /// max), as its percentiles do; a full one's at their histogram bucket's value.
    fn buckets(&self) -> Buckets {
        let mut out = Buckets {
            count: self.count,
            sum_ns: self.total,
            ..Buckets::default()
        };
        // Per-bucket counts first (each value once, in the first bound at or above it),
        // then summed into cumulative counts.
        let mut add = |ns: u64, n: u64| {
            let i = BUCKET_BOUNDS_NS.partition_point(|&bound| bound < ns);
            if let Some(c) = out.le.get_mut(i) {
                *c = c.saturating_add(n);
            }
        };
        match &self.shape {
            Shape::Compact(counts) => {
                for (i, &c) in counts.0.iter().enumerate() {
                    if c > 0 {
                        add(Log2Counts::upper(i).min(self.max), u64::from(c));
                    }
                }
            }
            Shape::Full(full) => {
                for value in full.histogram().iter_recorded() {
                    add(
                        value.value_iterated_to().min(self.max),
                        value.count_at_value(),
                    );
                }
            }
        }
        let mut running = 0u64;
        for c in &mut out.le {
            running = running.saturating_add(*c);
            *c = running.min(self.count);
        }
        out
    }

    fn quantiles(&self) -> Quantiles {
        if self.count == 0 {
            return Quantiles::default();
        }
        // A bucket's highest equivalent value (or a range's top) can exceed the true
        // maximum; clamp so that p50 <= p90 <= p99 <= max always holds in the report.
        let at = |q: f64| -> u64 {
            match &self.shape {
                Shape::Compact(counts) => counts.at_quantile(q, self.count),
                Shape::Full(full) => full.histogram().value_at_quantile(q),
            }
            .min(self.max)
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

/// Contention counters and wait/hold distributions of one lock (a few hundred bytes
/// until a distribution gets its histogram).
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
    hold: Option<Box<Distribution>>,
}

impl Default for LockStats {
    fn default() -> Self {
        Self::new()
    }
}

/// The budget of a [`LockStats`] used on its own: unlimited.
fn no_budget_limit() -> usize {
    usize::MAX
}

impl LockStats {
    /// Empty stats, compact, with no hold distribution yet.
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
        self.begin_sampled_wait(1);
    }

    /// One more wait began, which stands for `weight` waits (a sampled one: the kernel
    /// traced one sleep in `weight`): it counts as `weight` contentions, and as one open
    /// wait (`max_waiters` counts threads seen waiting at once).
    pub fn begin_sampled_wait(&mut self, weight: u64) {
        self.waiting = self.waiting.saturating_add(1);
        self.contentions = self.contentions.saturating_add(weight.max(1));
        self.max_waiters = self.max_waiters.max(self.waiting);
    }

    /// A wait begun with [`LockStats::begin_wait`] ended after `ns` nanoseconds.
    pub fn end_wait(&mut self, ns: u64) {
        self.end_wait_within(ns, 1, &mut no_budget_limit());
    }

    fn end_wait_within(&mut self, ns: u64, weight: u64, histograms_left: &mut usize) {
        self.waiting = self.waiting.saturating_sub(1);
        self.wait.record_n(ns, weight.max(1), histograms_left);
    }

    /// A wait begun with [`LockStats::begin_wait`] ended at an unknown time (its end
    /// event was lost): it no longer counts as open, and records no duration.
    pub fn end_wait_unmeasured(&mut self) {
        self.waiting = self.waiting.saturating_sub(1);
    }

    /// A wait of `ns` nanoseconds ended.
    pub fn record_wait(&mut self, ns: u64) {
        self.wait.record(ns, &mut no_budget_limit());
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
        self.record_hold_within(ns, &mut no_budget_limit());
    }

    fn record_hold_within(&mut self, ns: u64, histograms_left: &mut usize) {
        self.hold
            .get_or_insert_with(|| Box::new(Distribution::new()))
            .record(ns, histograms_left);
    }

    /// Wait time distribution (all zero when no wait was recorded).
    #[must_use]
    pub fn wait(&self) -> Quantiles {
        self.wait.quantiles()
    }

    /// Hold time distribution, `None` when no hold time was ever recorded.
    #[must_use]
    pub fn hold(&self) -> Option<Quantiles> {
        self.hold.as_deref().map(Distribution::quantiles)
    }

    /// The wait distribution in the fixed buckets of live metrics.
    #[must_use]
    pub fn wait_buckets(&self) -> Buckets {
        self.wait.buckets()
    }

    /// The hold distribution in the fixed buckets of live metrics, `None` when no hold
    /// time was ever recorded.
    #[must_use]
    pub fn hold_buckets(&self) -> Option<Buckets> {
        self.hold.as_deref().map(Distribution::buckets)
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

    /// Whether a wait on this lock is open now.
    #[must_use]
    pub fn has_open_waits(&self) -> bool {
        self.waiting > 0
    }

    /// Full histograms this lock holds (0, 1 or 2).
    fn histograms(&self) -> usize {
        usize::from(self.wait.is_full())
            + usize::from(self.hold.as_ref().is_some_and(|h| h.is_full()))
    }

    /// Whether a distribution of this lock has enough values for a histogram and has
    /// none (the table's budget was spent).
    fn kept_compact(&self) -> bool {
        let compact_past = |d: &Distribution| !d.is_full() && d.count >= HISTOGRAM_AFTER;
        compact_past(&self.wait) || self.hold.as_deref().is_some_and(compact_past)
    }

    /// Adds `other`'s counts and values to these (for the aggregate of folded locks).
    fn absorb(&mut self, other: &Self) {
        self.contentions = self.contentions.saturating_add(other.contentions);
        self.max_waiters = self.max_waiters.max(other.max_waiters);
        self.wait.absorb(&other.wait);
        if let Some(theirs) = &other.hold {
            self.hold
                .get_or_insert_with(|| Box::new(Distribution::new()))
                .absorb(theirs);
        }
    }
}

/// The stats of a lock in a [`LockTable`], recording within the table's budget of full
/// histograms.
pub struct LockStatsMut<'a> {
    stats: &'a mut LockStats,
    histograms_left: &'a mut usize,
}

impl LockStatsMut<'_> {
    /// See [`LockStats::record_contention`].
    pub fn record_contention(&mut self, waiters_now: u32) {
        self.stats.record_contention(waiters_now);
    }

    /// See [`LockStats::begin_wait`].
    pub fn begin_wait(&mut self) {
        self.stats.begin_wait();
    }

    /// See [`LockStats::begin_sampled_wait`].
    pub fn begin_sampled_wait(&mut self, weight: u64) {
        self.stats.begin_sampled_wait(weight);
    }

    /// See [`LockStats::end_wait`].
    pub fn end_wait(&mut self, ns: u64) {
        self.stats.end_wait_within(ns, 1, self.histograms_left);
    }

    /// A wait begun with [`LockStatsMut::begin_sampled_wait`] ended after `ns`
    /// nanoseconds: its time counts `weight` times.
    pub fn end_sampled_wait(&mut self, ns: u64, weight: u64) {
        self.stats.end_wait_within(ns, weight, self.histograms_left);
    }

    /// See [`LockStats::end_wait_unmeasured`].
    pub fn end_wait_unmeasured(&mut self) {
        self.stats.end_wait_unmeasured();
    }

    /// See [`LockStats::record_wait`].
    pub fn record_wait(&mut self, ns: u64) {
        self.stats.wait.record(ns, self.histograms_left);
    }

    /// See [`LockStats::record_brief_waits`].
    pub fn record_brief_waits(&mut self, count: u64) {
        self.stats.record_brief_waits(count);
    }

    /// See [`LockStats::record_hold`].
    pub fn record_hold(&mut self, ns: u64) {
        self.stats.record_hold_within(ns, self.histograms_left);
    }
}

/// A lock's place in a [`LockTable`]: stable until the lock is folded
/// ([`LockTable::fold_coldest`]), so a wait can keep it and reach its lock's stats again
/// without a hash lookup. A folded lock's slot is reused for a new lock.
pub type LockSlot = u32;

/// The address of a free slot: no lock word lives at the last byte of the address space.
const FREE: u64 = u64::MAX;

/// The locks folded into one aggregate to bound the table's memory.
#[derive(Clone, Debug, Default)]
pub struct FoldedLocks {
    /// How many locks were folded (a lock folded twice, contended again in between,
    /// counts twice).
    pub locks: u64,
    /// Their counts and values, added up.
    pub stats: LockStats,
}

impl FoldedLocks {
    /// Adds `other`'s locks (the Go locks' aggregate to the native one).
    pub fn absorb(&mut self, other: &Self) {
        self.locks += other.locks;
        self.stats.absorb(&other.stats);
    }
}

/// Stats of the contended locks, by lock address, bounded (see the module docs).
#[derive(Clone, Debug)]
pub struct LockTable {
    slots: HashMap<u64, LockSlot>,
    addrs: Vec<u64>,
    stats: Vec<LockStats>,
    /// Slots of folded locks, for new locks.
    free: Vec<LockSlot>,
    max_locks: usize,
    /// Full histograms that may still be handed out ([`MAX_HISTOGRAMS`] to start with).
    histograms_left: usize,
    folded: FoldedLocks,
}

impl Default for LockTable {
    fn default() -> Self {
        Self::new()
    }
}

impl LockTable {
    /// An empty table for [`DEFAULT_MAX_LOCKS`] locks.
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_locks(DEFAULT_MAX_LOCKS)
    }

    /// An empty table that keeps `max_locks` locks (at least 1) before folding.
    #[must_use]
    pub fn with_max_locks(max_locks: usize) -> Self {
        Self {
            slots: HashMap::default(),
            addrs: Vec::new(),
            stats: Vec::new(),
            free: Vec::new(),
            max_locks: max_locks.max(1),
            histograms_left: MAX_HISTOGRAMS,
            folded: FoldedLocks::default(),
        }
    }

    /// The slot of the lock at `addr`, created (with empty stats) on first use. The
    /// table may go past its cap until the next [`LockTable::fold_coldest`].
    pub fn slot(&mut self, addr: u64) -> LockSlot {
        if let Some(&slot) = self.slots.get(&addr) {
            return slot;
        }
        let slot = if let Some(slot) = self.free.pop() {
            if let Some(a) = self.addrs.get_mut(slot as usize) {
                *a = addr;
            }
            slot
        } else {
            self.addrs.push(addr);
            self.stats.push(LockStats::new());
            LockSlot::try_from(self.stats.len() - 1).unwrap_or(LockSlot::MAX)
        };
        self.slots.insert(addr, slot);
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
    pub fn at(&mut self, slot: LockSlot) -> LockStatsMut<'_> {
        LockStatsMut {
            stats: &mut self.stats[slot as usize],
            histograms_left: &mut self.histograms_left,
        }
    }

    /// The stats of the lock at `addr`, created empty on first use.
    pub fn entry(&mut self, addr: u64) -> LockStatsMut<'_> {
        let slot = self.slot(addr);
        self.at(slot)
    }

    /// The stats of the lock at `addr`, if it has any.
    #[must_use]
    pub fn get(&self, addr: u64) -> Option<&LockStats> {
        self.stats.get(*self.slots.get(&addr)? as usize)
    }

    /// All tracked locks with their stats, in no particular order (the report sorts).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &LockStats)> {
        self.addrs
            .iter()
            .copied()
            .zip(&self.stats)
            .filter(|&(addr, _)| addr != FREE)
    }

    /// Number of locks tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the table tracks no locks.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The most locks kept before folding.
    #[must_use]
    pub fn max_locks(&self) -> usize {
        self.max_locks
    }

    /// Whether more locks are tracked than the cap: time for [`LockTable::fold_coldest`].
    #[must_use]
    pub fn over_cap(&self) -> bool {
        self.len() > self.max_locks
    }

    /// The locks folded so far, with their stats added up.
    #[must_use]
    pub fn folded(&self) -> &FoldedLocks {
        &self.folded
    }

    /// Locks whose distributions had values enough for a histogram but got none, the
    /// budget of [`MAX_HISTOGRAMS`] being spent: their percentiles are coarser.
    #[must_use]
    pub fn kept_compact(&self) -> usize {
        self.iter().filter(|(_, s)| s.kept_compact()).count()
    }

    /// When over the cap, folds the coldest locks (least total wait, then fewest
    /// contentions, then least total hold) into the aggregate, down to 7/8 of the cap so
    /// that folding is rare, never a lock with an open wait or one `pinned` says to keep
    /// (held locks, locks of findings). Returns the folded locks' addresses and former
    /// slots, for the caller to forget what it keeps by slot.
    pub fn fold_coldest(&mut self, pinned: &HashSet<u64>) -> Vec<(u64, LockSlot)> {
        if !self.over_cap() {
            return Vec::new();
        }
        let keep = self.max_locks - self.max_locks / 8;
        let mut candidates: Vec<(u128, u64, u128, LockSlot)> = self
            .slots
            .iter()
            .filter(|(addr, _)| !pinned.contains(addr))
            .filter_map(|(_, &slot)| {
                let s = self.stats.get(slot as usize)?;
                (!s.has_open_waits())
                    .then(|| (s.wait_total_ns(), s.contentions, s.hold_total_ns(), slot))
            })
            .collect();
        let excess = self.len().saturating_sub(keep).min(candidates.len());
        if excess == 0 {
            return Vec::new();
        }
        if excess < candidates.len() {
            candidates.select_nth_unstable(excess);
        }
        let mut folded = Vec::with_capacity(excess);
        for &(.., slot) in candidates.get(..excess).unwrap_or_default() {
            let Some(addr) = self.addrs.get_mut(slot as usize) else {
                continue;
            };
            let lock = std::mem::replace(addr, FREE);
            self.slots.remove(&lock);
            if let Some(stats) = self.stats.get_mut(slot as usize) {
                let stats = std::mem::take(stats);
                self.histograms_left += stats.histograms();
                self.folded.stats.absorb(&stats);
                self.folded.locks += 1;
            }
            self.free.push(slot);
            folded.push((lock, slot));
        }
        folded
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
        assert!(FullHistogram::new().is_some());
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
        // Every fill level of the pending batch, including none and a full one, after the
        // compact values (1023 is the top of its power-of-two range: promoted exactly).
        for n in 0..=3 * PENDING as u64 + 1 {
            let mut s = LockStats::new();
            let mut plain =
                Histogram::<u64>::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGFIG).unwrap();
            for _ in 0..HISTOGRAM_AFTER {
                s.record_wait(1023);
                plain.saturating_record(1023);
            }
            for i in 0..n {
                let ns = (i * 7_919 + 13) % 50_000 * 100;
                s.record_wait(ns);
                plain.saturating_record(ns.clamp(LOWEST_NS, HIGHEST_NS));
            }
            let q = s.wait();
            let max = (0..n).map(|i| (i * 7_919 + 13) % 50_000 * 100).max();
            let at = |p: f64| plain.value_at_quantile(p).min(max.unwrap_or(0).max(1023));
            assert_eq!(q.count, n + HISTOGRAM_AFTER);
            {
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
        // Compact: 40 is known to its power-of-two range [32, 63], capped by the max.
        assert_eq!(h.p50, 60);
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

    /// Guards the memory bound of issue 16: a lock gets its ~36 KiB histogram only after
    /// [`HISTOGRAM_AFTER`] slept waits; before, its percentiles are coarse but ordered and
    /// never above the exact max.
    #[test]
    fn a_lock_is_compact_until_it_has_waits_worth_a_histogram() {
        let mut s = LockStats::new();
        for i in 1..HISTOGRAM_AFTER {
            s.record_wait(i * 1_000);
        }
        assert!(!s.wait.is_full(), "compact below the threshold");
        let q = s.wait();
        assert_eq!(q.count, HISTOGRAM_AFTER - 1);
        assert_eq!(q.max, (HISTOGRAM_AFTER - 1) * 1_000);
        assert!(q.p50 <= q.p90 && q.p90 <= q.p99 && q.p99 <= q.max, "{q:?}");
        // Within 2x: the true median is 32 µs.
        assert!((32_000..=64_000).contains(&q.p50), "{q:?}");
        assert!(std::mem::size_of::<LockStats>() <= 512);
        s.record_wait(HISTOGRAM_AFTER * 1_000);
        assert!(s.wait.is_full(), "promoted at the threshold");
        for i in HISTOGRAM_AFTER + 1..=1_000 {
            s.record_wait(i * 1_000);
        }
        // The first values went in at the top of their ranges; later ones are exact.
        let q = s.wait();
        assert_close(q.p90, 900_000);
        assert_close(q.p99, 990_000);
        assert_eq!((q.count, q.max), (1_000, 1_000_000));
    }

    #[test]
    fn compact_percentiles_are_ordered_for_any_values() {
        let values = [0, 1, 3, 900, 1_000_001, 17, 250, u64::MAX, 64, 65];
        for n in 1..=values.len() {
            let mut s = LockStats::new();
            for &v in &values[..n] {
                s.record_wait(v);
            }
            let q = s.wait();
            assert!(q.p50 <= q.p90 && q.p90 <= q.p99 && q.p99 <= q.max, "{q:?}");
            assert_eq!(q.max, *values[..n].iter().max().unwrap());
        }
    }

    /// The budget of full histograms is shared by the table's locks and given back when a
    /// lock is folded.
    #[test]
    fn histograms_come_from_the_tables_budget() {
        let mut t = LockTable::with_max_locks(MAX_HISTOGRAMS + 10);
        for addr in 0..=MAX_HISTOGRAMS as u64 {
            for _ in 0..HISTOGRAM_AFTER {
                t.entry(addr * 8).record_wait(1_000 + addr);
            }
        }
        assert_eq!(t.histograms_left, 0);
        assert_eq!(t.kept_compact(), 1, "the last lock found the budget spent");
        let last = t.get(MAX_HISTOGRAMS as u64 * 8).unwrap();
        assert!(!last.wait.is_full());
        assert_eq!(last.wait().count, HISTOGRAM_AFTER);
    }

    fn waited(t: &mut LockTable, addr: u64, ns: u64) {
        let mut s = t.entry(addr);
        s.begin_wait();
        s.end_wait(ns);
    }

    /// Guards the cap on tracked locks: past it the coldest (least waited) are folded into
    /// one aggregate that keeps their counts, and their slots are reused.
    #[test]
    fn the_coldest_locks_are_folded_into_an_aggregate() {
        let mut t = LockTable::with_max_locks(8);
        for i in 1..=8u64 {
            waited(&mut t, i * 0x10, i * 1_000);
        }
        assert!(!t.over_cap());
        assert!(t.fold_coldest(&HashSet::default()).is_empty());
        waited(&mut t, 0x900, 500_000);
        assert!(t.over_cap());
        let folded = t.fold_coldest(&HashSet::default());
        // Down to 7/8 of the cap: 9 - 7 = the two coldest.
        let mut addrs: Vec<u64> = folded.iter().map(|&(a, _)| a).collect();
        addrs.sort_unstable();
        assert_eq!(addrs, vec![0x10, 0x20]);
        assert_eq!(t.len(), 7);
        assert!(t.get(0x10).is_none() && t.get(0x900).is_some());
        let other = t.folded();
        assert_eq!(other.locks, 2);
        assert_eq!(other.stats.contentions, 2);
        assert_eq!(other.stats.wait().total, 3_000);
        assert_eq!(other.stats.wait().max, 2_000);
        // A new lock takes a folded lock's slot; iteration skips none and shows no free slot.
        let slot = t.slot(0xa00);
        assert!(folded.iter().any(|&(_, s)| s == slot));
        assert_eq!(t.iter().count(), 8);
        assert!(t.iter().all(|(addr, _)| addr != FREE));
        assert_eq!(
            t.get(0xa00).unwrap().contentions,
            0,
            "fresh stats in a reused slot"
        );
    }

    /// Guards findings against the cap: a pinned lock (part of a deadlock, held) and a
    /// lock with a wait still open are never folded, however cold.
    #[test]
    fn pinned_locks_and_open_waits_are_never_folded() {
        let mut t = LockTable::with_max_locks(2);
        t.entry(0x10).record_contention(1); // coldest, pinned
        t.entry(0x20).begin_wait(); // cold, open wait
        for i in 3..=6u64 {
            waited(&mut t, i * 0x10, i * 1_000);
        }
        let pinned: HashSet<u64> = [0x10].into_iter().collect();
        let folded = t.fold_coldest(&pinned);
        assert!(t.get(0x10).is_some() && t.get(0x20).is_some());
        assert!(folded.iter().all(|&(a, _)| a != 0x10 && a != 0x20));
        // Only the four unpinned locks without an open wait could go, hottest included.
        assert_eq!(folded.len(), 4);
        assert_eq!(t.len(), 2, "down to the two pinned locks: {folded:?}");
    }

    #[test]
    fn folding_merges_full_and_compact_distributions() {
        let mut t = LockTable::with_max_locks(1);
        for _ in 0..HISTOGRAM_AFTER * 2 {
            waited(&mut t, 0x10, 2_000);
        }
        waited(&mut t, 0x20, 9_000);
        t.entry(0x20).record_hold(40);
        waited(&mut t, 0x30, 10_000_000);
        let before = t.histograms_left;
        assert_eq!(before, MAX_HISTOGRAMS - 1);
        t.fold_coldest(&HashSet::default());
        assert_eq!(t.len(), 1);
        assert!(t.get(0x30).is_some(), "the hottest stays");
        assert_eq!(
            t.histograms_left, MAX_HISTOGRAMS,
            "a folded histogram is given back"
        );
        let other = &t.folded().stats;
        let q = other.wait();
        assert_eq!(q.count, HISTOGRAM_AFTER * 2 + 1);
        assert_eq!(q.max, 9_000);
        assert_close(q.p50, 2_000);
        assert!(q.p99 <= q.max);
        assert_eq!(other.hold().map(|h| h.count), Some(1));
    }

    /// Guards the live metrics' buckets: cumulative, ending at the count, with the exact
    /// sum; compact values counted at the top of their range, a full histogram's within
    /// its precision.
    #[test]
    fn buckets_are_cumulative_in_both_forms() {
        let mut stats = LockStats::new();
        stats.record_wait(800); // range [512, 1023]: top 1023 -> bucket 2.5 µs
        stats.record_wait(3_000_000); // 3 ms -> bucket 5 ms
        let b = stats.wait_buckets();
        assert_eq!(b.count, 2);
        assert_eq!(b.sum_ns, 3_000_800);
        assert_eq!(b.le[0], 0, "1 µs: {b:?}");
        assert_eq!(b.le[1], 1, "2.5 µs: {b:?}");
        assert_eq!(b.le[10], 1, "2.5 ms: {b:?}");
        assert_eq!(b.le[11], 2, "5 ms: {b:?}");
        assert_eq!(*b.le.last().unwrap(), 2);
        let mut hot = LockStats::new();
        for _ in 0..HISTOGRAM_AFTER * 2 {
            hot.record_wait(40_000);
        }
        hot.record_wait(20_000_000_000); // beyond the last bound: only in +Inf
        let b = hot.wait_buckets();
        let n = HISTOGRAM_AFTER * 2;
        assert_eq!(b.le[4], 0, "25 µs: {b:?}");
        assert_eq!(b.le[5], n, "50 µs: {b:?}");
        assert_eq!(*b.le.last().unwrap(), n);
        assert_eq!(b.count, n + 1);
        assert!(stats.hold_buckets().is_none());
    }
}
