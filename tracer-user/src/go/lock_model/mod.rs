//! The Go lock model: turns Go lock probe events into who holds and who waits for each
//! `sync.Mutex` and `sync.RWMutex`, per-lock statistics, wait-for cycles between
//! goroutines and stuck locks. Pure: no aya, no `/proc`; `gotrace` feeds it and checks its
//! findings against the live process.
//!
//! Semantics of the events ([`GoOp`]; sites after an atomic fire once it has run):
//! - `MutexLockFast` / `RwLockFast`: the goroutine now holds the lock (the write side of an
//!   `RWMutex` for the latter, at the same address since `w` is its first field).
//! - `MutexUnlock` / `RwUnlock`: a write hold ended. The event follows the atomic, so the
//!   next owner's acquisition can arrive first: a release by anyone but the recorded
//!   writer leaves the writer alone.
//! - `RLockFast` (`addr` = lock + [`RW_READER_COUNT_OFFSET`], `value` = old `readerCount`):
//!   old + 1 < 0 means a writer holds or waits and the reader blocks; otherwise it holds a
//!   read lock (a goroutine may hold several).
//! - `RUnlock`: one read hold of the goroutine ended.
//! - `LockSlowEnter` starts a write wait (it can fire twice for one wait when the
//!   stack-growth prologue re-runs the entry); `LockSlowReturn` ends it with the lock held.
//! - `SemacquireReturn` ends a pending read wait with the read lock held.
//!
//! A goroutine waits for one lock at a time, and its own events arrive in order: when it
//! is seen running lock code (a fast path, a release) while a wait is pending, that
//! wait's end event was lost, and the wait is dropped without a wait-time sample
//! ([`GoCounts::stale_waits`]), so a lost event cannot leave a phantom wait in cycles.
//!
//! One thing is inferred beyond the events: Go's `RWMutex.Lock` takes the write side
//! first, then waits (on a semaphore no event names) for the readers that got in before
//! it. A writer whose lock still has readers is therefore treated as waiting for them
//! (a *draining* writer, see [`Wait::drains_readers`]); without that the classic
//! recursive-`RLock` deadlock (reader → pending writer → the same reader) has no cycle.
//!
//! Cost: every event does a few hash lookups; a cycle search runs only from the goroutine
//! the event is about, and only when that goroutine is blocked. It follows holder edges
//! only (never waiter lists) and, for read-held locks, only the readers that are blocked
//! themselves, so it costs the length of the path, not the size of the pile of waiters.
//! Memory: goroutines that hold and wait for nothing, and locks nobody holds or waits for,
//! are dropped at once.
use std::collections::BTreeSet;

// Fx hashing: keys are goroutine ids and lock addresses from the kernel, and hashing is
// on the per-event path of hot locks.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::Serialize;
use smallvec::SmallVec;
use tracer_common::{GoEvent, GoOp, UnknownValue};

use crate::lockstats::{LockSlot, LockTable};

/// Offset of `readerCount` in `sync.RWMutex` (after `w Mutex` (8 bytes), `writerSem` and
/// `readerSem`): the address `RLockFast` and `RUnlock` events carry.
pub const RW_READER_COUNT_OFFSET: u64 = 16;

/// Cycles longer than this many goroutines are not searched for: real deadlocks involve a
/// handful, and the bound keeps a search along a long wait chain cheap.
pub const MAX_CYCLE_LEN: usize = 1024;

/// At most this many cycles wait in [`GoLockModel::take_new_cycles`]; more are counted in
/// [`GoCounts::cycles_dropped`]. The session drains them several times a second.
pub const MAX_PENDING_CYCLES: usize = 1024;

/// Edges followed by one search at most. Searches follow holders only, so a healthy
/// process never comes near this; it bounds pathological tangles of read-held locks.
const SEARCH_STEP_BUDGET: usize = 1 << 16;

/// Cycles one search collects at most: an event closes one deadlock, rarely a few.
const MAX_CYCLES_PER_SEARCH: usize = 16;

/// Distinct cycles remembered (so each is reported once); beyond it new ones are dropped
/// and counted rather than letting a churning false-positive source grow memory.
const MAX_SEEN_CYCLES: usize = 1 << 16;

/// Marks the key of a goroutine whose id could not be read (`goid` 0): it is then known
/// by its `g` address. User addresses stay far below bit 63, and goids never reach it.
const G_ONLY_KEY: u64 = 1 << 63;

/// The key of a goroutine in the model's maps: its id, or its `g` when the id is unknown.
fn goroutine_key(goid: u64, g: u64) -> u64 {
    if goid != 0 { goid } else { g | G_ONLY_KEY }
}

/// Whether an `RLock` whose `readerCount` add saw `old` blocks (Go: `Add(1) < 0`, on an
/// `int32`).
fn reader_blocks(old: i64) -> bool {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "readerCount is an int32; the kernel sign-extends it, and wrapping is Go's own arithmetic"
    )]
    let old = old as i32;
    old.wrapping_add(1) < 0
}

/// What kind of Go lock an address is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum GoLockKind {
    /// A `sync.Mutex` (or a lock not yet seen used as an `RWMutex`).
    #[default]
    Mutex,
    /// A `sync.RWMutex`: seen through `RwLockFast`, `RwUnlock`, `RLockFast` or `RUnlock`.
    RwMutex,
}

/// How a lock is held or waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum LockMode {
    /// Shared: the read side of an `RWMutex`.
    Read,
    /// Exclusive: a `Mutex`, or the write side of an `RWMutex`.
    Write,
}

/// A decoded [`GoEvent`]: one Go lock probe site firing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoLockEvent {
    /// What the site means.
    pub op: GoOp,
    /// Kernel TID of the thread running the goroutine.
    pub tid: u32,
    /// When the site fired (`CLOCK_MONOTONIC`, ns).
    pub ts_ns: u64,
    /// The goroutine id, 0 if it could not be read (the goroutine is then known by `g`).
    pub goid: u64,
    /// Address of the goroutine's `g`.
    pub g: u64,
    /// The lock (`readerCount` inside it for `RLockFast`/`RUnlock`), 0 at return sites.
    pub addr: u64,
    /// The probed instruction.
    pub pc: u64,
    /// Return address at entry sites, 0 elsewhere.
    pub caller: u64,
    /// The value register (the old `readerCount` for `RLockFast`).
    pub value: i64,
    /// User stack id, negative when the kernel could not record one.
    pub stack_id: i32,
}

impl TryFrom<&GoEvent> for GoLockEvent {
    type Error = UnknownValue;

    fn try_from(raw: &GoEvent) -> Result<Self, Self::Error> {
        Ok(Self {
            op: GoOp::try_from(raw.op)?,
            tid: raw.tid,
            ts_ns: raw.ts_ns,
            goid: raw.goid,
            g: raw.g,
            addr: raw.addr,
            pc: raw.pc,
            caller: raw.caller,
            value: raw.value,
            stack_id: raw.stack_id,
        })
    }
}

/// Where and when a goroutine took a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Hold {
    /// The goroutine id (0 if unknown).
    pub goid: u64,
    /// Its `g` (to check later whether the goroutine still exists).
    pub g: u64,
    /// The thread it ran on when it took the lock.
    pub tid: u32,
    /// When the lock became held (end of the wait for a slow acquisition).
    pub since_ns: u64,
    /// The acquisition site: the fast path's probed instruction, or for a slow path the
    /// return address of the slow-path call (the code that called `Lock`).
    pub pc: u64,
    /// User stack at the acquisition (at the wait start for a slow path).
    pub stack_id: i32,
}

impl Hold {
    /// A hold taken by the event's goroutine at the event's site.
    fn at(ev: &GoLockEvent) -> Self {
        Self {
            goid: ev.goid,
            g: ev.g,
            tid: ev.tid,
            since_ns: ev.ts_ns,
            pc: ev.pc,
            stack_id: ev.stack_id,
        }
    }

    fn key(&self) -> u64 {
        goroutine_key(self.goid, self.g)
    }
}

/// A goroutine waiting for a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Wait {
    /// The goroutine id (0 if unknown).
    pub goid: u64,
    /// Its `g`.
    pub g: u64,
    /// The thread it ran on when the wait began.
    pub tid: u32,
    /// The lock it waits for.
    pub lock: u64,
    /// Which side of the lock it wants.
    pub mode: LockMode,
    /// When the wait began (the first of repeated `LockSlowEnter`s).
    pub since_ns: u64,
    /// The site where the wait began.
    pub pc: u64,
    /// Return address at that site when it is a function entry (`lockSlow`), else 0.
    pub caller: u64,
    /// User stack at the wait start.
    pub stack_id: i32,
    /// A writer that holds the write side of an `RWMutex` and waits for the readers that
    /// got in before it (inferred, see the module docs). Such a wait exists only inside
    /// cycles: it is built from the writer's hold (`since_ns`, `pc`, `stack_id` are the
    /// acquisition's) and [`GoLockModel::is_waiting`] does not list it.
    pub drains_readers: bool,
}

impl Wait {
    /// Where a lock taken at the end of this wait counts as acquired: the code that called
    /// the slow path when the wait began at a function entry, else the wait's own site.
    fn acquisition_pc(&self) -> u64 {
        if self.caller != 0 {
            self.caller
        } else {
            self.pc
        }
    }

    fn key(&self) -> u64 {
        goroutine_key(self.goid, self.g)
    }
}

/// One goroutine's place in a wait-for cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GoCycleEntry {
    /// Its wait: the next entry of the cycle holds `waiter.lock`.
    pub waiter: Wait,
    /// The lock it holds that the previous entry waits for.
    pub holds: u64,
    /// Its hold of `holds` (the first one for a goroutine with several read holds).
    pub hold: Option<Hold>,
}

/// A wait-for cycle between goroutines: entry `i` waits for a lock entry `i + 1` holds
/// (wrapping around), so `entries[i].holds == entries[i - 1].waiter.lock`. Rotated to
/// start with the smallest goroutine id, so the same deadlock found from any of its
/// goroutines compares equal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GoCycle {
    /// The goroutines of the cycle, in wait order.
    pub entries: Vec<GoCycleEntry>,
}

impl GoCycle {
    /// Number of goroutines in the cycle.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cycle is empty (never for cycles the model returns).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The goroutine ids in wait order.
    pub fn goids(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.iter().map(|e| e.waiter.goid)
    }

    /// What makes two findings the same deadlock: goroutines, awaited locks and kinds of
    /// wait, in canonical order.
    fn identity(&self) -> Vec<(u64, u64, bool)> {
        self.entries
            .iter()
            .map(|e| (e.waiter.key(), e.waiter.lock, e.waiter.drains_readers))
            .collect()
    }
}

/// A lock that goroutines wait for while nothing releases it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StuckLock {
    /// The lock.
    pub addr: u64,
    /// Mutex or `RWMutex`.
    pub kind: GoLockKind,
    /// How it is held: `Read` when readers are known (even with a writer that waits for
    /// them, see `draining_writer`), `Write` when only a writer is known; with no known
    /// holder, `Write` (readers only ever block on a writer, and writers on either, so
    /// `Write` is the one mode consistent with any waiter).
    pub mode: LockMode,
    /// The writer, else the reader that has held it longest; `None` when nobody is known
    /// to hold it (its acquisition predates the trace, or its event was lost).
    pub holder: Option<Hold>,
    /// Every known reader (its first hold), oldest first.
    pub readers: Vec<Hold>,
    /// A writer that took the write side but still waits for `readers` to leave (Go's
    /// `RWMutex.Lock` drains the readers that got in before it).
    pub draining_writer: Option<Hold>,
    /// Start of the stuck period: the later of the last release and the oldest current
    /// waiter's start.
    pub since_ns: u64,
    /// How long the holder has held it, or for an unknown holder how long it is stuck.
    pub held_ns: u64,
    /// Goroutines waiting for it now.
    pub waiters: usize,
    /// Of those, waiting to read.
    pub readers_waiting: usize,
    /// Of those, waiting to write.
    pub writers_waiting: usize,
}

/// What the model has seen, for diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GoCounts {
    /// Events handled.
    pub events: u64,
    /// Releases of any kind (matched or not).
    pub releases: u64,
    /// Releases by a goroutine not recorded as holding the lock (the hold predates the
    /// trace, its event was lost, or another goroutine took the lock in between).
    pub unmatched_releases: u64,
    /// Pending waits ended because their goroutine was seen running (their end event was
    /// lost); they record no wait time.
    pub stale_waits: u64,
    /// Cycles found but not reported (queue or memory bound reached).
    pub cycles_dropped: u64,
    /// Searches stopped by their step budget.
    pub searches_cut: u64,
}

/// A goroutine that holds or waits for something.
#[derive(Clone, Debug, Default)]
struct Goroutine {
    wait: Option<Wait>,
    /// The stats slot of `wait` while its [`crate::lockstats::LockStats::begin_wait`] is
    /// still open (`finish` closes it early).
    wait_slot: Option<LockSlot>,
    /// Locks it is the recorded writer of.
    write_locks: SmallVec<[u64; 2]>,
    /// Locks it holds for reading (each once, however many read holds).
    read_locks: SmallVec<[u64; 2]>,
    /// Whether it waits (explicitly or as a draining writer): only blocked readers can be
    /// on a cycle, so locks list them apart ([`LockState::blocked_readers`]).
    blocked: bool,
}

impl Goroutine {
    fn is_idle(&self) -> bool {
        self.wait.is_none() && self.write_locks.is_empty() && self.read_locks.is_empty()
    }
}

/// A lock that is held or waited for.
#[derive(Clone, Debug, Default)]
struct LockState {
    kind: GoLockKind,
    writer: Option<Hold>,
    /// A writer replaced by a racing acquisition before its release arrived: its release
    /// still gives a hold time (and keeps this state until it arrives).
    displaced: Option<Hold>,
    /// Read holds by goroutine, in acquisition order.
    readers: HashMap<u64, SmallVec<[Hold; 1]>>,
    /// The readers that are blocked themselves (see [`Goroutine::blocked`]).
    blocked_readers: BTreeSet<u64>,
    /// Waiters by (wait start, goroutine): the oldest first.
    waiting: BTreeSet<(u64, u64)>,
    read_waiters: usize,
    write_waiters: usize,
    last_release_ns: Option<u64>,
    /// Waiter count at the last stuck report of the current episode; 0 = not reported.
    reported_waiters: usize,
}

impl LockState {
    fn is_idle(&self) -> bool {
        self.writer.is_none()
            && self.displaced.is_none()
            && self.readers.is_empty()
            && self.waiting.is_empty()
    }

    fn note_release(&mut self, ts_ns: u64) {
        self.last_release_ns = Some(self.last_release_ns.map_or(ts_ns, |t| t.max(ts_ns)));
        self.reported_waiters = 0;
    }

    /// The first hold of each reader, oldest first.
    fn reader_holds(&self) -> Vec<Hold> {
        let mut holds: Vec<Hold> = self
            .readers
            .values()
            .filter_map(|h| h.first().copied())
            .collect();
        holds.sort_unstable_by_key(|h| (h.since_ns, h.key()));
        holds
    }

    fn hold_of(&self, key: u64, as_reader: bool) -> Option<Hold> {
        let writer = self.writer.filter(|h| !as_reader && h.key() == key);
        writer.or_else(|| self.readers.get(&key).and_then(|h| h.first().copied()))
    }
}

/// One wait-for edge: `from` waits for `to` through `lock`.
#[derive(Clone, Copy, Debug)]
struct Edge {
    lock: u64,
    to: u64,
    /// The edge of a draining writer to a reader.
    drain: bool,
}

/// A goroutine on the search path and the edges out of it still to try.
struct Frame {
    node: u64,
    edges: SmallVec<[Edge; 4]>,
    next: usize,
}

/// The Go lock state machine (see the module docs).
#[derive(Clone, Debug)]
pub struct GoLockModel {
    stuck_after_ns: u64,
    goroutines: HashMap<u64, Goroutine>,
    locks: HashMap<u64, LockState>,
    /// Locks with at least one waiter, in address order (stuck-lock scans visit only them).
    waited_locks: BTreeSet<u64>,
    stats: LockTable,
    /// Lock kinds by stats slot: contended locks keep their kind after their state goes.
    kinds: Vec<GoLockKind>,
    pending_cycles: Vec<GoCycle>,
    seen_cycles: HashSet<Vec<(u64, u64, bool)>>,
    counts: GoCounts,
    last_search_steps: usize,
}

impl GoLockModel {
    /// An empty model; a lock counts as stuck once waited for with no release for
    /// `stuck_after_ns`.
    #[must_use]
    pub fn new(stuck_after_ns: u64) -> Self {
        Self {
            stuck_after_ns,
            goroutines: HashMap::default(),
            locks: HashMap::default(),
            waited_locks: BTreeSet::new(),
            stats: LockTable::new(),
            kinds: Vec::new(),
            pending_cycles: Vec::new(),
            seen_cycles: HashSet::default(),
            counts: GoCounts::default(),
            last_search_steps: 0,
        }
    }

    /// Applies one event.
    pub fn handle(&mut self, ev: &GoLockEvent) {
        self.counts.events += 1;
        let key = goroutine_key(ev.goid, ev.g);
        match ev.op {
            GoOp::MutexLockFast | GoOp::RwLockFast => {
                self.end_stale_wait(key);
                self.acquire_write(key, ev.addr, Hold::at(ev));
                if ev.op == GoOp::RwLockFast {
                    self.note_rw(ev.addr);
                }
            }
            GoOp::MutexUnlock | GoOp::RwUnlock => {
                self.end_stale_wait(key);
                if ev.op == GoOp::RwUnlock {
                    self.note_rw(ev.addr);
                }
                self.release_write(key, ev.addr, ev.ts_ns);
            }
            GoOp::RLockFast => {
                let lock = ev.addr.wrapping_sub(RW_READER_COUNT_OFFSET);
                if reader_blocks(ev.value) {
                    self.start_wait(key, ev, lock, LockMode::Read);
                } else {
                    self.end_stale_wait(key);
                    self.acquire_read(key, lock, Hold::at(ev));
                }
                self.note_rw(lock);
            }
            GoOp::RUnlock => {
                let lock = ev.addr.wrapping_sub(RW_READER_COUNT_OFFSET);
                self.end_stale_wait(key);
                self.note_rw(lock);
                self.release_read(key, lock, ev.ts_ns);
            }
            GoOp::LockSlowEnter => self.start_wait(key, ev, ev.addr, LockMode::Write),
            GoOp::LockSlowReturn => self.end_wait_holding(key, ev, LockMode::Write),
            GoOp::SemacquireReturn => self.end_wait_holding(key, ev, LockMode::Read),
        }
        // Every edge the event added touches this goroutine (its wait, its holds), so any
        // cycle the event closed passes through it.
        self.search_from(key);
        self.drop_goroutine_if_idle(key);
    }

    /// Cycles found since the last call, each distinct cycle reported once over the
    /// model's life (lengths 1 — a goroutine waiting for a lock it holds — and up).
    pub fn take_new_cycles(&mut self) -> Vec<GoCycle> {
        std::mem::take(&mut self.pending_cycles)
    }

    /// Whether every edge of `cycle` still holds: each goroutine still waits for its lock
    /// in the same mode (or, for a draining writer, still writes it while the next one
    /// still reads it) and the next goroutine still holds that lock.
    #[must_use]
    pub fn cycle_still_present(&self, cycle: &GoCycle) -> bool {
        let n = cycle.entries.len();
        n > 0
            && cycle.entries.iter().enumerate().all(|(i, entry)| {
                let next = cycle.entries[(i + 1) % n].waiter.key();
                let w = &entry.waiter;
                let Some(lock) = self.locks.get(&w.lock) else {
                    return false;
                };
                let writer_is = |k: u64| lock.writer.is_some_and(|h| h.key() == k);
                if w.drains_readers {
                    return writer_is(w.key()) && lock.readers.contains_key(&next);
                }
                let still_waits = self
                    .goroutines
                    .get(&w.key())
                    .and_then(|g| g.wait.as_ref())
                    .is_some_and(|now| now.lock == w.lock && now.mode == w.mode);
                still_waits
                    && (writer_is(next)
                        || (w.mode == LockMode::Write && lock.readers.contains_key(&next)))
            })
    }

    /// Stuck-lock findings due at `now_ns`, by lock address: a lock with a waiter and no
    /// release for `stuck_after_ns` (counted from the later of its last release and its
    /// oldest waiter's start). A lock is reported when first found stuck, then again each
    /// time its waiter count reaches double the count last reported; a release (or the
    /// last waiter leaving) ends the episode.
    pub fn due_stuck_locks(&mut self, now_ns: u64) -> Vec<StuckLock> {
        let mut out = Vec::new();
        for &addr in &self.waited_locks {
            let Some(lock) = self.locks.get_mut(&addr) else {
                continue;
            };
            let Some(&(oldest, _)) = lock.waiting.first() else {
                continue;
            };
            let since = lock.last_release_ns.map_or(oldest, |r| r.max(oldest));
            if now_ns.saturating_sub(since) < self.stuck_after_ns {
                continue;
            }
            let waiters = lock.waiting.len();
            if lock.reported_waiters != 0 && waiters < lock.reported_waiters.saturating_mul(2) {
                continue;
            }
            lock.reported_waiters = waiters;
            let readers = lock.reader_holds();
            let (mode, holder, draining_writer) = match (lock.writer, readers.first()) {
                (writer, Some(&oldest_reader)) => (LockMode::Read, Some(oldest_reader), writer),
                (Some(writer), None) => (LockMode::Write, Some(writer), None),
                (None, None) => (LockMode::Write, None, None),
            };
            let kind = kind_of(Some(&*lock), &self.stats, &self.kinds, addr);
            out.push(StuckLock {
                addr,
                kind,
                mode,
                holder,
                readers,
                draining_writer,
                since_ns: since,
                held_ns: now_ns.saturating_sub(holder.map_or(since, |h| h.since_ns)),
                waiters,
                readers_waiting: lock.read_waiters,
                writers_waiting: lock.write_waiters,
            });
        }
        out
    }

    /// The lock `goid` waits for now, if any (draining writers are not listed).
    #[must_use]
    pub fn is_waiting(&self, goid: u64) -> Option<&Wait> {
        self.goroutines.get(&goid)?.wait.as_ref()
    }

    /// The recorded writer of `addr`.
    #[must_use]
    pub fn writer(&self, addr: u64) -> Option<&Hold> {
        self.locks.get(&addr)?.writer.as_ref()
    }

    /// The known readers of `addr` (their first holds), oldest first.
    #[must_use]
    pub fn readers(&self, addr: u64) -> Vec<Hold> {
        self.locks
            .get(&addr)
            .map(LockState::reader_holds)
            .unwrap_or_default()
    }

    /// Per-lock contention counts and wait/hold histograms. Only contended locks have an
    /// entry (a histogram per lock ever taken would cost gigabytes in a big service), so
    /// hold times are recorded for locks that have been waited for at least once.
    #[must_use]
    pub fn stats(&self) -> &LockTable {
        &self.stats
    }

    /// The kind of the lock at `addr`: known while it is held or waited for, and for good
    /// once it has been contended; `Mutex` until an `RWMutex` event names it.
    #[must_use]
    pub fn lock_kind(&self, addr: u64) -> GoLockKind {
        kind_of(self.locks.get(&addr), &self.stats, &self.kinds, addr)
    }

    /// Closes the open waits into the wait histograms at `now_ns` (they were still
    /// waiting when tracing ended). The waits stay in the model; each is recorded once.
    pub fn finish(&mut self, now_ns: u64) {
        for g in self.goroutines.values_mut() {
            if let (Some(wait), Some(slot)) = (&g.wait, g.wait_slot.take()) {
                self.stats
                    .at(slot)
                    .end_wait(now_ns.saturating_sub(wait.since_ns));
            }
        }
    }

    /// Goroutines that hold or wait for something now.
    #[must_use]
    pub fn goroutine_count(&self) -> usize {
        self.goroutines.len()
    }

    /// Locks that are held or waited for now.
    #[must_use]
    pub fn lock_count(&self) -> usize {
        self.locks.len()
    }

    /// Goroutines waiting for a lock now (draining writers not included).
    #[must_use]
    pub fn waiting_count(&self) -> usize {
        self.locks.values().map(|l| l.waiting.len()).sum()
    }

    /// What the model has seen.
    #[must_use]
    pub fn counts(&self) -> GoCounts {
        self.counts
    }

    /// Edges the last event's cycle search followed (0 when the goroutine was not
    /// blocked): what a search costs.
    #[must_use]
    pub fn last_search_steps(&self) -> usize {
        self.last_search_steps
    }

    /// Marks `addr` as an `RWMutex`, in its live state and in its stats slot.
    fn note_rw(&mut self, addr: u64) {
        if let Some(lock) = self.locks.get_mut(&addr) {
            lock.kind = GoLockKind::RwMutex;
        }
        if let Some(slot) = self.stats.slot_of(addr) {
            set_kind(&mut self.kinds, slot, GoLockKind::RwMutex);
        }
    }

    /// The goroutine runs lock code, so a wait still pending lost its end event.
    fn end_stale_wait(&mut self, key: u64) {
        if self.goroutines.get(&key).is_some_and(|g| g.wait.is_some()) {
            self.counts.stale_waits += 1;
            self.end_wait(key, None);
        }
    }

    fn start_wait(&mut self, key: u64, ev: &GoLockEvent, lock: u64, mode: LockMode) {
        if let Some(current) = self.goroutines.get(&key).and_then(|g| g.wait) {
            if current.lock == lock && current.mode == mode {
                // The entry ran again (stack growth): the wait began at the first one.
                return;
            }
            self.counts.stale_waits += 1;
            self.end_wait(key, None);
        }
        let wait = Wait {
            goid: ev.goid,
            g: ev.g,
            tid: ev.tid,
            lock,
            mode,
            since_ns: ev.ts_ns,
            pc: ev.pc,
            caller: ev.caller,
            stack_id: ev.stack_id,
            drains_readers: false,
        };
        let state = self.locks.entry(lock).or_default();
        state.waiting.insert((wait.since_ns, key));
        match mode {
            LockMode::Read => state.read_waiters += 1,
            LockMode::Write => state.write_waiters += 1,
        }
        let kind = state.kind;
        self.waited_locks.insert(lock);
        let slot = self.stats.slot(lock);
        if kind == GoLockKind::RwMutex {
            set_kind(&mut self.kinds, slot, kind);
        }
        self.stats.at(slot).begin_wait();
        let g = self.goroutines.entry(key).or_default();
        g.wait = Some(wait);
        g.wait_slot = Some(slot);
        self.refresh_blocked(key);
    }

    /// Ends the pending wait of `key` in `mode`, if any, with the lock now held.
    fn end_wait_holding(&mut self, key: u64, ev: &GoLockEvent, mode: LockMode) {
        let Some(wait) = self.goroutines.get(&key).and_then(|g| g.wait) else {
            return;
        };
        if wait.mode != mode {
            return;
        }
        self.end_wait(key, Some(ev.ts_ns));
        let hold = Hold {
            goid: ev.goid,
            g: ev.g,
            tid: ev.tid,
            since_ns: ev.ts_ns,
            pc: wait.acquisition_pc(),
            stack_id: wait.stack_id,
        };
        match mode {
            LockMode::Write => self.acquire_write(key, wait.lock, hold),
            LockMode::Read => self.acquire_read(key, wait.lock, hold),
        }
    }

    /// Ends the wait of `key`: at `end_ns` (recording its duration), or at an unknown
    /// time.
    fn end_wait(&mut self, key: u64, end_ns: Option<u64>) {
        let Some(g) = self.goroutines.get_mut(&key) else {
            return;
        };
        let Some(wait) = g.wait.take() else {
            return;
        };
        if let Some(slot) = g.wait_slot.take() {
            let stats = self.stats.at(slot);
            match end_ns {
                Some(end) => stats.end_wait(end.saturating_sub(wait.since_ns)),
                None => stats.end_wait_unmeasured(),
            }
        }
        if let Some(lock) = self.locks.get_mut(&wait.lock) {
            lock.waiting.remove(&(wait.since_ns, key));
            match wait.mode {
                LockMode::Read => lock.read_waiters = lock.read_waiters.saturating_sub(1),
                LockMode::Write => lock.write_waiters = lock.write_waiters.saturating_sub(1),
            }
            if lock.waiting.is_empty() {
                self.waited_locks.remove(&wait.lock);
                lock.reported_waiters = 0;
            }
        }
        self.refresh_blocked(key);
        self.drop_lock_if_idle(wait.lock);
    }

    fn acquire_write(&mut self, key: u64, addr: u64, hold: Hold) {
        let lock = self.locks.entry(addr).or_default();
        let previous = lock.writer.replace(hold);
        if let Some(old) = previous.filter(|h| h.key() != key) {
            // A new owner while another is recorded: the old owner's release is still on
            // its way (it follows the atomic), or was lost. Its release can still time it.
            lock.displaced = Some(old);
            let old_key = old.key();
            if let Some(g) = self.goroutines.get_mut(&old_key) {
                g.write_locks.retain(|l| *l != addr);
            }
            self.refresh_blocked(old_key);
            self.drop_goroutine_if_idle(old_key);
        }
        let g = self.goroutines.entry(key).or_default();
        if !g.write_locks.contains(&addr) {
            g.write_locks.push(addr);
        }
        self.refresh_blocked(key);
    }

    fn release_write(&mut self, key: u64, addr: u64, ts_ns: u64) {
        self.counts.releases += 1;
        let Some(lock) = self.locks.get_mut(&addr) else {
            self.counts.unmatched_releases += 1;
            return;
        };
        lock.note_release(ts_ns);
        let was_writer = lock.writer.is_some_and(|h| h.key() == key);
        let ended = if was_writer {
            lock.writer.take()
        } else if lock.displaced.is_some_and(|h| h.key() == key) {
            lock.displaced.take()
        } else {
            // Most often the release of a goroutine whose successor's acquisition already
            // arrived and displaced it earlier; the writer stays.
            self.counts.unmatched_releases += 1;
            None
        };
        if let Some(hold) = ended {
            self.record_hold(addr, ts_ns.saturating_sub(hold.since_ns));
        }
        if was_writer {
            if let Some(g) = self.goroutines.get_mut(&key) {
                g.write_locks.retain(|l| *l != addr);
            }
            self.refresh_blocked(key);
        }
        self.drop_lock_if_idle(addr);
    }

    fn acquire_read(&mut self, key: u64, addr: u64, hold: Hold) {
        let g = self.goroutines.entry(key).or_default();
        let blocked = g.blocked;
        let lock = self.locks.entry(addr).or_default();
        let first_reader = lock.readers.is_empty();
        let holds = lock.readers.entry(key).or_default();
        let first_for_goroutine = holds.is_empty();
        holds.push(hold);
        if first_for_goroutine {
            if blocked {
                lock.blocked_readers.insert(key);
            }
            g.read_locks.push(addr);
        }
        // The writer (if any) now drains a reader: it waits.
        if first_reader && let Some(writer) = lock.writer.map(|h| h.key()) {
            self.refresh_blocked(writer);
        }
    }

    fn release_read(&mut self, key: u64, addr: u64, ts_ns: u64) {
        self.counts.releases += 1;
        let Some(lock) = self.locks.get_mut(&addr) else {
            self.counts.unmatched_releases += 1;
            return;
        };
        lock.note_release(ts_ns);
        let Some(holds) = lock.readers.get_mut(&key) else {
            self.counts.unmatched_releases += 1;
            return;
        };
        // Nested read holds end innermost first.
        let ended = holds.pop();
        let last_for_goroutine = holds.is_empty();
        if last_for_goroutine {
            lock.readers.remove(&key);
            lock.blocked_readers.remove(&key);
        }
        let drained_writer = lock
            .writer
            .filter(|_| lock.readers.is_empty())
            .map(|h| h.key());
        if let Some(hold) = ended {
            self.record_hold(addr, ts_ns.saturating_sub(hold.since_ns));
        }
        if last_for_goroutine && let Some(g) = self.goroutines.get_mut(&key) {
            g.read_locks.retain(|l| *l != addr);
        }
        if let Some(writer) = drained_writer {
            self.refresh_blocked(writer);
        }
        self.drop_lock_if_idle(addr);
    }

    /// A hold time, for locks that have stats (see [`GoLockModel::stats`]).
    fn record_hold(&mut self, addr: u64, ns: u64) {
        if let Some(slot) = self.stats.slot_of(addr) {
            self.stats.at(slot).record_hold(ns);
        }
    }

    /// Recomputes whether `key` is blocked and keeps the `blocked_readers` of the locks
    /// it reads in step.
    fn refresh_blocked(&mut self, key: u64) {
        let Some(g) = self.goroutines.get_mut(&key) else {
            return;
        };
        let locks = &mut self.locks;
        let blocked = g.wait.is_some()
            || g.write_locks
                .iter()
                .any(|l| locks.get(l).is_some_and(|s| !s.readers.is_empty()));
        if blocked == g.blocked {
            return;
        }
        g.blocked = blocked;
        for addr in &g.read_locks {
            if let Some(lock) = locks.get_mut(addr) {
                if blocked {
                    lock.blocked_readers.insert(key);
                } else {
                    lock.blocked_readers.remove(&key);
                }
            }
        }
    }

    fn drop_goroutine_if_idle(&mut self, key: u64) {
        if self.goroutines.get(&key).is_some_and(Goroutine::is_idle) {
            self.goroutines.remove(&key);
        }
    }

    fn drop_lock_if_idle(&mut self, addr: u64) {
        if self.locks.get(&addr).is_some_and(LockState::is_idle) {
            self.locks.remove(&addr);
        }
    }

    /// The wait-for edges out of goroutine `key`: its wait's holders (the writer; for a
    /// write wait also the readers) and, while it drains readers as a writer, those
    /// readers. Readers that are not blocked are left out: they cannot lead anywhere.
    fn out_edges(&self, key: u64, out: &mut SmallVec<[Edge; 4]>) {
        let Some(g) = self.goroutines.get(&key) else {
            return;
        };
        if let Some(wait) = &g.wait
            && let Some(lock) = self.locks.get(&wait.lock)
        {
            let writer = lock.writer.map(|h| h.key());
            if let Some(to) = writer {
                out.push(Edge {
                    lock: wait.lock,
                    to,
                    drain: false,
                });
            }
            // A read wait waits for the writer only: never for readers, itself included.
            if wait.mode == LockMode::Write {
                out.extend(
                    lock.blocked_readers
                        .iter()
                        .filter(|&&r| Some(r) != writer)
                        .map(|&to| Edge {
                            lock: wait.lock,
                            to,
                            drain: false,
                        }),
                );
            }
        }
        for &addr in &g.write_locks {
            if let Some(lock) = self.locks.get(&addr)
                && !lock.readers.is_empty()
            {
                out.extend(lock.blocked_readers.iter().map(|&to| Edge {
                    lock: addr,
                    to,
                    drain: true,
                }));
            }
        }
    }

    /// Looks for cycles through `start` and queues the new ones.
    ///
    /// Iterative DFS over holder edges, each goroutine expanded once: it finds a cycle
    /// through `start` whenever one exists (not necessarily every one), in steps bounded
    /// by the edges it reaches.
    fn search_from(&mut self, start: u64) {
        self.last_search_steps = 0;
        if !self.goroutines.get(&start).is_some_and(|g| g.blocked) {
            return;
        }
        let mut edges = SmallVec::new();
        self.out_edges(start, &mut edges);
        let mut frames = vec![Frame {
            node: start,
            edges,
            next: 0,
        }];
        let mut visited: HashSet<u64> = [start].into_iter().collect();
        let mut found = Vec::new();
        let mut steps = 0;
        while let Some(top) = frames.last_mut() {
            let Some(&edge) = top.edges.get(top.next) else {
                frames.pop();
                continue;
            };
            top.next += 1;
            steps += 1;
            if steps > SEARCH_STEP_BUDGET {
                self.counts.searches_cut += 1;
                break;
            }
            if edge.to == start {
                found.extend(self.cycle_of(&frames));
                if found.len() >= MAX_CYCLES_PER_SEARCH {
                    break;
                }
                continue;
            }
            if frames.len() >= MAX_CYCLE_LEN || !visited.insert(edge.to) {
                continue;
            }
            let mut edges = SmallVec::new();
            self.out_edges(edge.to, &mut edges);
            if !edges.is_empty() {
                frames.push(Frame {
                    node: edge.to,
                    edges,
                    next: 0,
                });
            }
        }
        self.last_search_steps = steps;
        for cycle in found {
            self.offer_cycle(cycle);
        }
    }

    /// The cycle along the search path: each frame's last tried edge, the last one back
    /// to the first goroutine. Canonical rotation.
    fn cycle_of(&self, frames: &[Frame]) -> Option<GoCycle> {
        let path: Vec<(u64, Edge)> = frames
            .iter()
            .map(|f| Some((f.node, *f.edges.get(f.next.checked_sub(1)?)?)))
            .collect::<Option<_>>()?;
        let n = path.len();
        let mut entries = Vec::with_capacity(n);
        for (i, &(node, edge)) in path.iter().enumerate() {
            let (_, prev) = path[(i + n - 1) % n];
            let waiter = if edge.drain {
                let hold = self.locks.get(&edge.lock)?.writer?;
                Wait {
                    goid: hold.goid,
                    g: hold.g,
                    tid: hold.tid,
                    lock: edge.lock,
                    mode: LockMode::Write,
                    since_ns: hold.since_ns,
                    pc: hold.pc,
                    caller: 0,
                    stack_id: hold.stack_id,
                    drains_readers: true,
                }
            } else {
                self.goroutines.get(&node)?.wait?
            };
            let hold = self
                .locks
                .get(&prev.lock)
                .and_then(|l| l.hold_of(node, prev.drain));
            entries.push(GoCycleEntry {
                waiter,
                holds: prev.lock,
                hold,
            });
        }
        if let Some(first) = entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.waiter.key())
            .map(|(i, _)| i)
        {
            entries.rotate_left(first);
        }
        Some(GoCycle { entries })
    }

    fn offer_cycle(&mut self, cycle: GoCycle) {
        let identity = cycle.identity();
        if self.seen_cycles.contains(&identity) {
            return;
        }
        if self.seen_cycles.len() >= MAX_SEEN_CYCLES
            || self.pending_cycles.len() >= MAX_PENDING_CYCLES
        {
            self.counts.cycles_dropped += 1;
            return;
        }
        self.seen_cycles.insert(identity);
        self.pending_cycles.push(cycle);
    }
}

/// The kind of `addr` from its live state and its stats slot: `RwMutex` if either says so.
fn kind_of(
    live: Option<&LockState>,
    stats: &LockTable,
    kinds: &[GoLockKind],
    addr: u64,
) -> GoLockKind {
    let live = live.map(|s| s.kind);
    let stored = stats
        .slot_of(addr)
        .and_then(|slot| kinds.get(slot as usize).copied());
    if live == Some(GoLockKind::RwMutex) || stored == Some(GoLockKind::RwMutex) {
        GoLockKind::RwMutex
    } else {
        GoLockKind::Mutex
    }
}

fn set_kind(kinds: &mut Vec<GoLockKind>, slot: LockSlot, kind: GoLockKind) {
    let slot = slot as usize;
    if slot >= kinds.len() {
        kinds.resize(slot + 1, GoLockKind::Mutex);
    }
    kinds[slot] = kind;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    const MS: u64 = 1_000_000;
    const STUCK_AFTER: u64 = 100 * MS;
    /// Mutexes.
    const A: u64 = 0xc000_1000;
    const B: u64 = 0xc000_2000;
    const C: u64 = 0xc000_3000;
    /// `RWMutex`es.
    const L: u64 = 0xc000_4000;
    const M: u64 = 0xc000_5000;
    const N: u64 = 0xc000_6000;
    /// Old `readerCount` seen by a reader while a writer holds or waits.
    const WRITER_PENDING: i32 = -(1 << 30);
    /// Sites inside `lockSlow`.
    const LOCK_SLOW_ENTRY: u64 = 0x47_0000;
    const LOCK_SLOW_RET: u64 = 0x47_0100;
    const SEMACQUIRE_RET: u64 = 0x46_0100;

    /// A distinct acquisition site per goroutine and lock.
    fn site(goid: u64, addr: u64) -> u64 {
        0x40_0000 | (goid << 16) | ((addr >> 12) & 0xfff)
    }

    fn g_of(goid: u64) -> u64 {
        0xc000_8000_0000 + goid * 0x400
    }

    fn ev(op: GoOp, goid: u64, ts_ns: u64, addr: u64) -> GoLockEvent {
        GoLockEvent {
            op,
            tid: 100 + u32::try_from(goid % 1000).unwrap(),
            ts_ns,
            goid,
            g: g_of(goid),
            addr,
            pc: site(goid, addr),
            caller: 0,
            value: 0,
            stack_id: i32::try_from(goid % 1000).unwrap(),
        }
    }

    fn lock(goid: u64, ts: u64, addr: u64) -> GoLockEvent {
        ev(GoOp::MutexLockFast, goid, ts, addr)
    }

    fn unlock(goid: u64, ts: u64, addr: u64) -> GoLockEvent {
        ev(GoOp::MutexUnlock, goid, ts, addr)
    }

    fn wlock(goid: u64, ts: u64, addr: u64) -> GoLockEvent {
        ev(GoOp::RwLockFast, goid, ts, addr)
    }

    fn wunlock(goid: u64, ts: u64, addr: u64) -> GoLockEvent {
        ev(GoOp::RwUnlock, goid, ts, addr)
    }

    /// `RLock` on the `RWMutex` at `lock`, whose `readerCount` was `old`.
    fn rlock(goid: u64, ts: u64, lock: u64, old: i32) -> GoLockEvent {
        GoLockEvent {
            addr: lock + RW_READER_COUNT_OFFSET,
            pc: site(goid, lock),
            value: i64::from(old),
            ..ev(GoOp::RLockFast, goid, ts, 0)
        }
    }

    fn runlock(goid: u64, ts: u64, lock: u64) -> GoLockEvent {
        ev(GoOp::RUnlock, goid, ts, lock + RW_READER_COUNT_OFFSET)
    }

    /// Entry of `lockSlow(addr)`, called from the goroutine's site for `addr`.
    fn enter(goid: u64, ts: u64, addr: u64) -> GoLockEvent {
        GoLockEvent {
            pc: LOCK_SLOW_ENTRY,
            caller: site(goid, addr),
            ..ev(GoOp::LockSlowEnter, goid, ts, addr)
        }
    }

    fn slow_ret(goid: u64, ts: u64) -> GoLockEvent {
        GoLockEvent {
            pc: LOCK_SLOW_RET,
            ..ev(GoOp::LockSlowReturn, goid, ts, 0)
        }
    }

    fn sem_ret(goid: u64, ts: u64) -> GoLockEvent {
        GoLockEvent {
            pc: SEMACQUIRE_RET,
            ..ev(GoOp::SemacquireReturn, goid, ts, 0)
        }
    }

    fn model() -> GoLockModel {
        GoLockModel::new(STUCK_AFTER)
    }

    fn feed(m: &mut GoLockModel, events: &[GoLockEvent]) {
        for e in events {
            m.handle(e);
        }
    }

    /// The chain invariant every cycle must satisfy.
    fn assert_chained(c: &GoCycle) {
        let n = c.len();
        for i in 0..n {
            assert_eq!(
                c.entries[i].holds,
                c.entries[(i + n - 1) % n].waiter.lock,
                "{c:?}"
            );
        }
    }

    #[test]
    fn abba_cycle_is_found_once_with_holds_and_sites() {
        let mut m = model();
        feed(&mut m, &[lock(1, 10, A), lock(2, 20, B), enter(1, 30, B)]);
        assert!(m.take_new_cycles().is_empty(), "one wait is no cycle");
        m.handle(&enter(2, 40, A));
        let cycles = m.take_new_cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        let c = &cycles[0];
        assert_chained(c);
        assert_eq!(c.goids().collect::<Vec<_>>(), vec![1, 2]);
        let (e1, e2) = (&c.entries[0], &c.entries[1]);
        assert_eq!(
            (e1.waiter.lock, e1.waiter.mode, e1.waiter.since_ns),
            (B, LockMode::Write, 30)
        );
        assert_eq!(e1.waiter.caller, site(1, B));
        assert!(!e1.waiter.drains_readers);
        assert_eq!(e1.holds, A);
        let h1 = e1.hold.unwrap();
        assert_eq!(
            (h1.goid, h1.since_ns, h1.pc, h1.g),
            (1, 10, site(1, A), g_of(1))
        );
        assert_eq!((e2.waiter.lock, e2.waiter.since_ns, e2.holds), (A, 40, B));
        let h2 = e2.hold.unwrap();
        assert_eq!((h2.goid, h2.since_ns, h2.pc), (2, 20, site(2, B)));
        assert!(m.cycle_still_present(c));

        // A re-run entry, unrelated traffic and a repeated wait report nothing new.
        feed(
            &mut m,
            &[
                enter(1, 50, B),
                lock(3, 60, C),
                unlock(3, 70, C),
                enter(2, 80, A),
            ],
        );
        assert!(m.take_new_cycles().is_empty());
        assert!(m.cycle_still_present(c));

        // Goroutine 1 gets B (scripted): the edge 2 → 1 through B's holder is gone.
        m.handle(&slow_ret(1, 90));
        assert!(!m.cycle_still_present(c));
    }

    #[test]
    fn three_goroutine_cycle_is_rotated_to_the_smallest_goid() {
        let mut m = model();
        feed(
            &mut m,
            &[
                lock(1, 1, A),
                lock(2, 2, B),
                lock(3, 3, C),
                enter(1, 4, B),
                enter(2, 5, C),
            ],
        );
        assert!(m.take_new_cycles().is_empty());
        // Closed by goroutine 3, reported from goroutine 1.
        m.handle(&enter(3, 6, A));
        let cycles = m.take_new_cycles();
        assert_eq!(cycles.len(), 1);
        let c = &cycles[0];
        assert_chained(c);
        assert_eq!(c.goids().collect::<Vec<_>>(), vec![1, 2, 3]);
        let waits: Vec<u64> = c.entries.iter().map(|e| e.waiter.lock).collect();
        assert_eq!(waits, vec![B, C, A]);
        let sites: Vec<u64> = c.entries.iter().map(|e| e.hold.unwrap().pc).collect();
        assert_eq!(sites, vec![site(1, A), site(2, B), site(3, C)]);
    }

    #[test]
    fn waiting_for_a_held_mutex_is_a_cycle_of_one() {
        let mut m = model();
        feed(&mut m, &[lock(5, 10, A), enter(5, 20, A)]);
        let cycles = m.take_new_cycles();
        assert_eq!(cycles.len(), 1);
        let e = &cycles[0].entries[0];
        assert_eq!(
            (cycles[0].len(), e.waiter.goid, e.waiter.lock, e.holds),
            (1, 5, A, A)
        );
        assert_eq!(e.hold.unwrap().pc, site(5, A));
        assert!(m.cycle_still_present(&cycles[0]));
    }

    #[test]
    fn a_read_wait_waits_for_the_writer_only() {
        let mut m = model();
        // Goroutine 1 reads L and waits to read it again, with no writer known: not a
        // self-deadlock (readers do not block readers).
        feed(
            &mut m,
            &[rlock(1, 10, L, 0), rlock(1, 20, L, WRITER_PENDING)],
        );
        assert_eq!(
            m.is_waiting(1).map(|w| (w.lock, w.mode)),
            Some((L, LockMode::Read))
        );
        // Goroutine 2 reads M and waits for A held by 3; 3 waits to read M: the reader 2
        // is not in 3's way, so there is no cycle.
        feed(
            &mut m,
            &[
                rlock(2, 30, M, 0),
                lock(3, 40, A),
                enter(2, 50, A),
                rlock(3, 60, M, WRITER_PENDING),
            ],
        );
        assert!(m.take_new_cycles().is_empty());
        // A write wait does wait for readers: 4 holds B and waits to write M; 2 (a reader
        // of M) now waits for B.
        feed(&mut m, &[lock(4, 70, B), enter(4, 80, M)]);
        assert!(m.take_new_cycles().is_empty());
        feed(&mut m, &[unlock(3, 90, A), enter(2, 95, B)]);
        let cycles = m.take_new_cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert_chained(&cycles[0]);
        assert_eq!(cycles[0].goids().collect::<Vec<_>>(), vec![2, 4]);
        // Goroutine 2's hold of M is a read hold.
        assert_eq!(cycles[0].entries[0].holds, M);
        assert_eq!(cycles[0].entries[0].hold.unwrap().pc, site(2, M));
    }

    #[test]
    fn ordered_locking_has_no_cycle() {
        let mut m = model();
        // 1 takes A then B; 2 waits for A; 3 holds C and 1 waits for it: a chain 2 → 1 → 3.
        feed(
            &mut m,
            &[
                lock(1, 1, A),
                lock(1, 2, B),
                enter(2, 3, A),
                lock(3, 4, C),
                enter(1, 5, C),
            ],
        );
        assert_eq!(m.is_waiting(2).map(|w| w.lock), Some(A));
        assert_eq!(m.is_waiting(1).map(|w| w.lock), Some(C));
        // Everyone then takes A before B: waits come and go, none closes a cycle.
        feed(
            &mut m,
            &[
                unlock(3, 6, C),
                slow_ret(1, 7),
                unlock(1, 8, C),
                unlock(1, 9, B),
                unlock(1, 10, A),
                slow_ret(2, 11),
                enter(3, 12, A),
                lock(2, 13, B),
                unlock(2, 14, B),
                unlock(2, 15, A),
                slow_ret(3, 16),
                unlock(3, 17, A),
            ],
        );
        assert!(m.take_new_cycles().is_empty());
        assert_eq!(m.goroutine_count(), 0);
        assert_eq!(m.counts().unmatched_releases, 0);
        assert_eq!(m.counts().stale_waits, 0);
    }

    #[test]
    fn a_release_after_a_racing_acquire_keeps_the_new_holder() {
        let mut m = model();
        feed(&mut m, &[lock(1, 10, A), enter(2, 20, A)]);
        // 2's acquisition arrives before 1's release (which ran first: its event follows
        // the atomic).
        feed(&mut m, &[slow_ret(2, 40), unlock(1, 35, A)]);
        let w = m.writer(A).unwrap();
        assert_eq!((w.goid, w.since_ns, w.pc), (2, 40, site(2, A)));
        // The displaced holder's release still timed its hold.
        let hold = m.stats().get(A).unwrap().hold().unwrap();
        assert_eq!((hold.count, hold.max), (1, 25));
        assert_eq!(m.counts().unmatched_releases, 0);
        // And 2 really is the holder: a cycle through it is found.
        feed(&mut m, &[lock(3, 50, B), enter(2, 60, B), enter(3, 70, A)]);
        let cycles = m.take_new_cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].goids().collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn a_repeated_slow_path_entry_keeps_the_first_start() {
        let mut m = model();
        feed(&mut m, &[lock(1, 0, A), enter(2, 10, A), enter(2, 15, A)]);
        assert_eq!(m.is_waiting(2).map(|w| w.since_ns), Some(10));
        assert_eq!(m.stats().get(A).unwrap().contentions, 1);
        feed(&mut m, &[unlock(1, 20, A), slow_ret(2, 30)]);
        let wait = m.stats().get(A).unwrap().wait();
        assert_eq!((wait.count, wait.max), (1, 20));
        // The slow acquisition counts as taken where Lock was called.
        assert_eq!(
            m.writer(A).map(|h| (h.pc, h.since_ns)),
            Some((site(2, A), 30))
        );
        assert!(m.is_waiting(2).is_none());
    }

    #[test]
    fn stuck_rwmutex_is_reported_when_found_then_when_waiters_double() {
        let mut m = model();
        m.handle(&wlock(1, 0, L));
        for goid in 11..=14 {
            m.handle(&rlock(goid, goid * MS, L, WRITER_PENDING));
        }
        // The clock starts at the oldest waiter (11 ms).
        assert!(m.due_stuck_locks(110 * MS).is_empty());
        let due = m.due_stuck_locks(111 * MS);
        assert_eq!(due.len(), 1);
        let s = &due[0];
        assert_eq!(
            (s.addr, s.kind, s.mode),
            (L, GoLockKind::RwMutex, LockMode::Write)
        );
        let holder = s.holder.unwrap();
        assert_eq!(
            (holder.goid, holder.pc, holder.since_ns),
            (1, site(1, L), 0)
        );
        assert_eq!((s.since_ns, s.held_ns), (11 * MS, 111 * MS));
        assert_eq!((s.waiters, s.readers_waiting, s.writers_waiting), (4, 4, 0));
        assert!(s.readers.is_empty() && s.draining_writer.is_none());

        assert!(m.due_stuck_locks(200 * MS).is_empty(), "reported once");
        for goid in 15..=17 {
            m.handle(&rlock(goid, 200 * MS, L, WRITER_PENDING));
            assert!(
                m.due_stuck_locks(201 * MS).is_empty(),
                "{goid}: below double"
            );
        }
        m.handle(&rlock(18, 210 * MS, L, WRITER_PENDING));
        let due = m.due_stuck_locks(211 * MS);
        assert_eq!(due.iter().map(|s| s.waiters).collect::<Vec<_>>(), vec![8]);
        assert!(m.due_stuck_locks(250 * MS).is_empty());

        // The writer's release ends the episode, before the readers' wake-ups arrive.
        m.handle(&wunlock(1, 300 * MS, L));
        assert!(m.due_stuck_locks(399 * MS).is_empty());
        let due = m.due_stuck_locks(400 * MS);
        assert_eq!(due.len(), 1);
        let s = &due[0];
        assert_eq!((s.waiters, s.holder, s.mode), (8, None, LockMode::Write));
        assert_eq!((s.since_ns, s.held_ns), (300 * MS, 100 * MS));

        for goid in 11..=18 {
            m.handle(&sem_ret(goid, 301 * MS));
        }
        assert!(m.due_stuck_locks(1000 * MS).is_empty());
        assert_eq!(m.readers(L).len(), 8);
    }

    #[test]
    fn read_held_lock_with_writers_waiting_is_reported_as_read() {
        let mut m = model();
        // Two readers, then a writer queued on the write side (lockSlow on `w`).
        feed(
            &mut m,
            &[
                rlock(1, 10 * MS, L, 0),
                rlock(2, 20 * MS, L, 1),
                enter(3, 30 * MS, L),
            ],
        );
        let due = m.due_stuck_locks(130 * MS);
        assert_eq!(due.len(), 1);
        let s = &due[0];
        assert_eq!((s.mode, s.kind), (LockMode::Read, GoLockKind::RwMutex));
        let holder = s.holder.unwrap();
        assert_eq!((holder.goid, holder.pc), (1, site(1, L)));
        assert_eq!(s.held_ns, 120 * MS);
        assert_eq!(
            s.readers.iter().map(|h| h.goid).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!((s.waiters, s.readers_waiting, s.writers_waiting), (1, 0, 1));

        // Go's own shape: the writer takes `w`, then waits for the reader that got in
        // first; a later reader queues behind it. Held for reading; the writer drains.
        feed(
            &mut m,
            &[
                rlock(4, 10 * MS, M, 0),
                wlock(5, 20 * MS, M),
                rlock(6, 30 * MS, M, WRITER_PENDING),
            ],
        );
        let due = m.due_stuck_locks(130 * MS);
        let s = due.iter().find(|s| s.addr == M).unwrap();
        assert_eq!(
            (s.mode, s.holder.map(|h| h.goid)),
            (LockMode::Read, Some(4))
        );
        assert_eq!(s.draining_writer.map(|h| h.goid), Some(5));
        assert_eq!((s.waiters, s.readers_waiting), (1, 1));
    }

    #[test]
    fn a_reader_wait_ends_at_the_semaphore_return() {
        let mut m = model();
        feed(&mut m, &[wlock(1, 0, L), rlock(2, 100, L, WRITER_PENDING)]);
        assert_eq!(
            m.is_waiting(2).map(|w| (w.lock, w.mode)),
            Some((L, LockMode::Read))
        );
        // lockSlow's return does not end a read wait.
        m.handle(&slow_ret(2, 150));
        assert!(m.is_waiting(2).is_some());
        feed(&mut m, &[wunlock(1, 200, L), sem_ret(2, 250)]);
        assert!(m.is_waiting(2).is_none());
        let readers = m.readers(L);
        assert_eq!(readers.len(), 1);
        // Taken where RLock was called, when the wait ended.
        assert_eq!(
            (readers[0].goid, readers[0].since_ns, readers[0].pc),
            (2, 250, site(2, L))
        );
        let stats = m.stats().get(L).unwrap();
        assert_eq!(
            (stats.contentions, stats.wait().count, stats.wait().max),
            (1, 1, 150)
        );
        m.handle(&runlock(2, 300, L));
        let hold = m.stats().get(L).unwrap().hold().unwrap();
        // The writer's hold (0..200) and the reader's (250..300).
        assert_eq!((hold.count, hold.total), (2, 250));

        // A semaphore return without a pending read wait changes nothing (a mutex slow
        // path goes on until lockSlow returns).
        feed(
            &mut m,
            &[lock(3, 400, A), enter(4, 410, A), sem_ret(4, 420)],
        );
        assert_eq!(m.is_waiting(4).map(|w| w.lock), Some(A));
    }

    #[test]
    fn histograms_follow_a_scripted_sequence() {
        let mut m = model();
        feed(
            &mut m,
            &[
                lock(1, 0, A),
                enter(2, 10, A),
                enter(3, 20, A),
                unlock(1, 30, A),
                slow_ret(2, 35),
                unlock(2, 50, A),
                slow_ret(3, 55),
                unlock(3, 60, A),
                // Never contended: no stats entry.
                lock(4, 70, B),
                unlock(4, 80, B),
            ],
        );
        let s = m.stats().get(A).unwrap();
        assert_eq!((s.contentions, s.max_waiters), (2, 2));
        let wait = s.wait();
        assert_eq!((wait.count, wait.max, wait.total), (2, 35, 25 + 35));
        let hold = s.hold().unwrap();
        assert_eq!((hold.count, hold.max, hold.total), (3, 30, 30 + 15 + 5));
        assert!(m.stats().get(B).is_none());
        assert_eq!(m.stats().len(), 1);

        // An open wait is closed by `finish`, once.
        feed(&mut m, &[lock(5, 100, A), enter(6, 100, A)]);
        m.finish(400);
        m.finish(500);
        let s = m.stats().get(A).unwrap();
        assert_eq!((s.contentions, s.wait().count, s.wait().max), (3, 3, 300));
        // It still waits as far as the model goes, and its end records nothing more.
        assert!(m.is_waiting(6).is_some());
        feed(&mut m, &[unlock(5, 600, A), slow_ret(6, 610)]);
        assert_eq!(m.stats().get(A).unwrap().wait().count, 3);
    }

    #[test]
    fn a_huge_pile_of_waiters_keeps_searches_short() {
        const PILE: u64 = 100_000;
        let started = Instant::now();
        let mut m = model();
        // Writer 1 holds L and waits for M, held by 2.
        feed(&mut m, &[wlock(1, 0, L), lock(2, 1, M), enter(1, 2, M)]);
        let mut worst = 0;
        for i in 0..PILE {
            m.handle(&rlock(1000 + i, 10 + i, L, WRITER_PENDING));
            worst = worst.max(m.last_search_steps());
        }
        // Reader → writer 1 → holder 2 of M: two edges, whatever the pile's size.
        assert_eq!(worst, 2);
        assert_eq!(m.waiting_count(), usize::try_from(PILE).unwrap() + 1);

        let check = Instant::now();
        m.handle(&enter(2, 1_000_000, L));
        let cycles = m.take_new_cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].goids().collect::<Vec<_>>(), vec![1, 2]);
        assert!(m.cycle_still_present(&cycles[0]));
        assert!(m.last_search_steps() <= 2, "{}", m.last_search_steps());
        let due = m.due_stuck_locks(10_000 * MS);
        assert_eq!(due.iter().find(|s| s.addr == L).unwrap().waiters, 100_001);
        assert!(
            check.elapsed() < Duration::from_secs(1),
            "{:?}",
            check.elapsed()
        );

        // 100k goroutines read the RWMutex N; writers queueing on it have no blocked
        // reader to follow, and find that out without walking the readers.
        for i in 0..PILE {
            m.handle(&rlock(200_000 + i, 10, N, 0));
        }
        for i in 0..100 {
            m.handle(&enter(300_000 + i, 20, N));
            assert_eq!(m.last_search_steps(), 0);
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn idle_goroutines_and_locks_are_dropped() {
        let mut m = model();
        for i in 0..10_000 {
            m.handle(&lock(i, i, 0x1_0000 + i * 8));
            m.handle(&rlock(i, i, 0x100_0000 + i * 32, 0));
        }
        assert_eq!((m.goroutine_count(), m.lock_count()), (10_000, 20_000));
        for i in 0..10_000 {
            m.handle(&unlock(i, 20_000 + i, 0x1_0000 + i * 8));
            m.handle(&runlock(i, 20_000 + i, 0x100_0000 + i * 32));
        }
        assert_eq!((m.goroutine_count(), m.lock_count()), (0, 0));

        // Nested read holds are counted.
        feed(
            &mut m,
            &[rlock(1, 1, L, 0), rlock(1, 2, L, 1), runlock(1, 3, L)],
        );
        assert_eq!(
            m.readers(L).iter().map(|h| h.goid).collect::<Vec<_>>(),
            vec![1]
        );
        m.handle(&runlock(1, 4, L));
        assert!(m.readers(L).is_empty());

        // A handoff, and a wait whose end event was lost (the goroutine is then seen
        // releasing a lock: it runs, so the wait is over).
        feed(
            &mut m,
            &[
                lock(1, 10, A),
                enter(2, 11, A),
                unlock(1, 12, A),
                slow_ret(2, 13),
                unlock(2, 14, A),
                lock(3, 20, B),
                enter(4, 21, B),
                unlock(3, 22, B),
                // 4's lockSlow return is lost.
                unlock(4, 30, B),
            ],
        );
        assert_eq!(m.counts().stale_waits, 1);
        assert_eq!((m.goroutine_count(), m.lock_count()), (0, 0));
        assert_eq!(m.waiting_count(), 0);
    }

    #[test]
    fn recursive_read_lock_behind_a_pending_writer_is_a_cycle() {
        let mut m = model();
        // 1 reads L; 2 takes the write side and waits for 1 to leave; 1 reads again and
        // queues behind 2.
        feed(&mut m, &[rlock(1, 10, L, 0), wlock(2, 20, L)]);
        assert!(
            m.take_new_cycles().is_empty(),
            "a writer draining a running reader"
        );
        m.handle(&rlock(1, 30, L, WRITER_PENDING));
        let cycles = m.take_new_cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        let c = &cycles[0];
        assert_chained(c);
        let (r, w) = (&c.entries[0], &c.entries[1]);
        assert_eq!(
            (r.waiter.goid, r.waiter.mode, r.waiter.drains_readers),
            (1, LockMode::Read, false)
        );
        assert_eq!(r.hold.map(|h| (h.goid, h.since_ns)), Some((1, 10)));
        assert_eq!(
            (w.waiter.goid, w.waiter.mode, w.waiter.drains_readers),
            (2, LockMode::Write, true)
        );
        assert_eq!(
            (w.waiter.lock, w.waiter.since_ns, w.waiter.pc),
            (L, 20, site(2, L))
        );
        assert_eq!(w.hold.map(|h| h.since_ns), Some(20));
        assert!(m.cycle_still_present(c));
        assert!(m.is_waiting(2).is_none(), "drains are not listed as waits");
        // 1 is seen releasing its first read hold (scripted): it was not stuck after all.
        m.handle(&runlock(1, 40, L));
        assert!(!m.cycle_still_present(c));

        // Write-locking an RWMutex you read yourself: a cycle of one.
        feed(&mut m, &[rlock(7, 50, M, 0), wlock(7, 60, M)]);
        let cycles = m.take_new_cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!((cycles[0].len(), cycles[0].entries[0].holds), (1, M));
        assert!(cycles[0].entries[0].waiter.drains_readers);
    }

    #[test]
    fn an_acquisition_can_close_a_cycle() {
        let mut m = model();
        // 1 reads L, then waits for A held by 2; 2 then write-locks L and must wait for
        // reader 1: the cycle closes at 2's acquisition, not at a wait start.
        feed(
            &mut m,
            &[rlock(1, 10, L, 0), lock(2, 20, A), enter(1, 30, A)],
        );
        assert!(m.take_new_cycles().is_empty());
        m.handle(&wlock(2, 40, L));
        let cycles = m.take_new_cycles();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        let c = &cycles[0];
        assert_chained(c);
        assert_eq!(c.goids().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!((c.entries[0].waiter.lock, c.entries[0].holds), (A, L));
        assert_eq!((c.entries[1].waiter.lock, c.entries[1].holds), (L, A));
        assert!(c.entries[1].waiter.drains_readers);
    }

    #[test]
    fn lock_kinds() {
        let mut m = model();
        feed(&mut m, &[lock(1, 1, A), wlock(2, 2, L)]);
        assert_eq!(
            (m.lock_kind(A), m.lock_kind(L)),
            (GoLockKind::Mutex, GoLockKind::RwMutex)
        );
        // Contended locks keep their kind once nobody holds them.
        feed(
            &mut m,
            &[
                rlock(3, 3, L, WRITER_PENDING),
                wunlock(2, 4, L),
                sem_ret(3, 5),
                runlock(3, 6, L),
                unlock(1, 7, A),
            ],
        );
        assert_eq!(m.lock_count(), 0);
        assert_eq!(m.lock_kind(L), GoLockKind::RwMutex);
        assert_eq!(m.lock_kind(A), GoLockKind::Mutex);
        // A lock first contended through lockSlow is learnt to be an RWMutex later.
        feed(
            &mut m,
            &[
                lock(4, 10, M),
                enter(5, 11, M),
                unlock(4, 12, M),
                slow_ret(5, 13),
                wunlock(5, 14, M),
            ],
        );
        assert_eq!(m.lock_kind(M), GoLockKind::RwMutex);
    }

    #[test]
    fn go_events_convert_and_unknown_ops_are_refused() {
        let raw = GoEvent {
            kind: tracer_common::EventKind::GoLock as u32,
            tid: 7,
            ts_ns: 8,
            goid: 9,
            g: 10,
            addr: 11,
            pc: 12,
            caller: 13,
            value: -1,
            op: GoOp::RLockFast as u32,
            stack_id: -14,
        };
        let ev = GoLockEvent::try_from(&raw).unwrap();
        assert_eq!(
            (ev.op, ev.tid, ev.goid, ev.value, ev.stack_id),
            (GoOp::RLockFast, 7, 9, -1, -14)
        );
        assert!(GoLockEvent::try_from(&GoEvent { op: 0, ..raw }).is_err());
        // Go's int32 arithmetic: the reader blocks when old + 1 < 0, wrapping included.
        assert!(reader_blocks(-2) && reader_blocks(i64::from(WRITER_PENDING)));
        assert!(!reader_blocks(-1) && !reader_blocks(0) && !reader_blocks(5));
        assert!(reader_blocks(i64::from(i32::MAX)));
    }

    #[test]
    fn goroutines_without_an_id_are_told_apart_by_g() {
        let mut m = model();
        let anon = |g: u64, e: GoLockEvent| GoLockEvent { goid: 0, g, ..e };
        feed(
            &mut m,
            &[anon(0x100, lock(0, 1, A)), anon(0x200, lock(0, 2, B))],
        );
        feed(
            &mut m,
            &[anon(0x100, enter(0, 3, B)), anon(0x200, enter(0, 4, A))],
        );
        let cycles = m.take_new_cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(
            cycles[0]
                .entries
                .iter()
                .map(|e| e.waiter.g)
                .collect::<Vec<_>>(),
            vec![0x100, 0x200]
        );
    }
}
