//! The Go lock model: turns Go lock probe events into who holds and who waits for each
//! `sync.Mutex` and `sync.RWMutex`, per-lock statistics, wait-for cycles between
//! goroutines and stuck locks. Pure: no aya, no `/proc`; [`crate::go::tracker`] feeds it
//! and checks its findings against the live process.
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
//! (a *draining* writer, see [`GoWait::drains_readers`]); without that the classic
//! recursive-`RLock` deadlock (reader → pending writer → the same reader) has no cycle.
//!
//! Cost: every event does a few hash lookups; a cycle search runs only from the goroutine
//! the event is about, and only when that goroutine is blocked. It follows holder edges
//! only (never waiter lists) and, for read-held locks, only the readers that are blocked
//! themselves, so it costs the length of the path, not the size of the pile of waiters.
//! Memory: goroutines that hold and wait for nothing, and locks nobody holds or waits for,
//! are dropped at once.
//!
//! Layout, one concern per file; everything public is re-exported here:
//! - this file: [`GoLockModel`], its entry point [`GoLockModel::handle`] and its queries,
//!   and [`GoCounts`];
//! - `event`: [`GoLockEvent`] (decoded from the wire [`GoEvent`](tracer_common::GoEvent))
//!   and [`GoLockMode`];
//! - `state`: goroutine and lock records ([`GoHold`], [`GoWait`], [`GoLockKind`]) and the
//!   transitions: waits start and end, holds begin and end;
//! - `cycles`: wait-for edges, the cycle search, [`GoCycle`] and the queue of new cycles;
//! - `stuck`: the stuck-lock scan and its result, [`StuckCandidate`];
//! - `profile`: the measured waits of a time window by lock and stack
//!   ([`GoWaitProfile`]), for contention profiles;
//! - `tests`: unit tests, one file per concern.
mod cycles;
mod event;
mod profile;
mod recent_releases;
mod state;
mod stuck;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

// Fx hashing: keys are goroutine ids and lock addresses from the kernel, and hashing is
// on the per-event path of hot locks.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::Serialize;
use tracer_common::GoOp;

pub use self::{
    cycles::{GoCycle, GoCycleEntry, MAX_CYCLE_LEN, MAX_PENDING_CYCLES},
    event::{GoLockEvent, GoLockMode, ParkSide, RW_READER_COUNT_OFFSET},
    profile::{GoProfileEntry, GoWaitProfile, GoWaitStack, MAX_GO_PROFILE_ENTRIES},
    state::{GoHold, GoLockKind, GoWait},
    stuck::StuckCandidate,
};
use self::{
    event::reader_blocks,
    recent_releases::RecentReleases,
    state::{Goroutine, LockState, goroutine_key, kind_of},
};
use crate::lockstats::LockTable;

/// What the model has seen and what its bounds cut, for diagnostics: the session can
/// report them through [`GoLockModel::counts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GoCounts {
    /// Releases of any kind (matched or not): the base of `unmatched_releases`.
    pub releases: u64,
    /// Releases by a goroutine not recorded as holding the lock (the hold predates the
    /// trace, its event was lost, or another goroutine took the lock in between).
    pub unmatched_releases: u64,
    /// Pending waits ended because their goroutine was seen running (their end event was
    /// lost); they record no wait time.
    pub stale_waits: u64,
    /// Cycles found but not queued for the report: [`MAX_PENDING_CYCLES`] cycles were
    /// already waiting, or the memory of reported cycles was full. Not zero: a deadlock
    /// may be missing from the report.
    pub cycles_dropped: u64,
    /// Cycle searches stopped by their step budget before they had followed every edge
    /// they reached. Not zero: a deadlock through the goroutine searched from may have
    /// been missed at that event (only tangles of read-held locks come near the budget).
    pub searches_cut: u64,
}

/// The Go lock state machine (see the module docs).
#[derive(Clone, Debug)]
pub struct GoLockModel {
    stuck_after_ns: u64,
    goroutines: HashMap<u64, Goroutine>,
    locks: HashMap<u64, LockState>,
    /// Locks with at least one waiter, in address order (stuck-lock scans visit only them).
    waited_locks: BTreeSet<u64>,
    /// The last release of each lock whose state went (see `recent_releases`); a live
    /// lock keeps its own (`LockState::last_release_ns`).
    recent_releases: RecentReleases,
    stats: LockTable,
    /// Lock kinds by stats slot: contended locks keep their kind after their state goes.
    kinds: Vec<GoLockKind>,
    pending_cycles: Vec<GoCycle>,
    seen_cycles: HashSet<Vec<(u64, u64, bool)>>,
    counts: GoCounts,
    last_search_steps: usize,
    /// The default Go probes: waits (semaphore parks) and hand-overs only, no holds.
    waits_only: bool,
    /// Contention profiles being collected, by the id their requester gave (see
    /// `profile`); empty unless someone asked for one.
    profiles: Vec<(u64, GoWaitProfile)>,
    /// Holder profiles being collected (`--holds --pprof`): each wait charged to the
    /// stack where its lock's holder took it (keyed by that stack).
    holder_profiles: Vec<(u64, GoWaitProfile)>,
    /// Holds taken and ended since the tracker last took them (for the lock-order graph);
    /// not kept in `waits_only` mode, which sees no holds.
    hold_changes: Vec<HoldChange>,
}

/// The goroutines' waits and holds as they stand, sorted, for a picture of the wait-for
/// graph (`--graph`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaitEdges {
    /// (goroutine id, thread it ran on, lock) per waiting goroutine.
    pub waits: Vec<(u64, u32, u64)>,
    /// (lock, goroutine id, thread it ran on) per known hold (a reader's first).
    pub holds: Vec<(u64, u64, u32)>,
}

/// A hold taken or ended, in the order the model applied them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldChange {
    /// Goroutine `key` took `lock` in `mode`.
    Acquired {
        key: u64,
        lock: u64,
        mode: GoLockMode,
        hold: GoHold,
    },
    /// Goroutine `key` released `lock`.
    Released { key: u64, lock: u64 },
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
            recent_releases: RecentReleases::new(stuck_after_ns),
            stats: LockTable::new(),
            kinds: Vec::new(),
            pending_cycles: Vec::new(),
            seen_cycles: HashSet::default(),
            counts: GoCounts::default(),
            last_search_steps: 0,
            waits_only: false,
            profiles: Vec::new(),
            holder_profiles: Vec::new(),
            hold_changes: Vec::new(),
        }
    }

    /// The holds taken and ended since the last call, in order.
    pub fn take_hold_changes(&mut self) -> std::vec::Drain<'_, HoldChange> {
        self.hold_changes.drain(..)
    }

    /// A model fed by the default Go probes only: `SemacquireEnter` starts a wait,
    /// `SemacquireReturn` ends it (no hold follows: the goroutine may park again, and
    /// releases are not seen), `SemreleaseEnter` marks a hand-over.
    #[must_use]
    pub fn waits_only(stuck_after_ns: u64) -> Self {
        Self {
            waits_only: true,
            ..Self::new(stuck_after_ns)
        }
    }

    /// The model with a stats table that keeps `max_locks` locks before folding the
    /// coldest (`--max-locks`; see `crate::lockstats`).
    #[must_use]
    pub fn with_max_locks(self, max_locks: usize) -> Self {
        Self {
            stats: LockTable::with_max_locks(max_locks),
            ..self
        }
    }

    /// Whether `addr` is held or waited for now, as the probes saw it.
    #[must_use]
    pub fn is_live(&self, addr: u64) -> bool {
        self.locks.contains_key(&addr)
    }

    /// When `addr` was last released or handed over, also after its state went (while
    /// the release is recent: `recent_releases`).
    #[must_use]
    pub fn last_release(&self, addr: u64) -> Option<u64> {
        let live = self.locks.get(&addr).and_then(|l| l.last_release_ns);
        live.max(self.recent_releases.last(addr))
    }

    /// Applies one event.
    pub fn handle(&mut self, ev: &GoLockEvent) {
        let key = goroutine_key(ev.goid, ev.g);
        match ev.op {
            GoOp::MutexLockFast | GoOp::RwLockFast => {
                self.end_stale_wait(key);
                self.acquire_write(key, ev.addr, GoHold::at(ev));
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
                    self.start_wait(key, ev, lock, GoLockMode::Read);
                } else {
                    self.end_stale_wait(key);
                    self.acquire_read(key, lock, GoHold::at(ev));
                }
                self.note_rw(lock);
            }
            GoOp::RUnlock => {
                let lock = ev.addr.wrapping_sub(RW_READER_COUNT_OFFSET);
                self.end_stale_wait(key);
                self.note_rw(lock);
                self.release_read(key, lock, ev.ts_ns);
            }
            GoOp::LockSlowEnter => self.start_wait(key, ev, ev.addr, GoLockMode::Write),
            GoOp::LockSlowReturn => self.end_wait_holding(key, ev, GoLockMode::Write),
            GoOp::SemacquireReturn if self.waits_only => self.end_wait(key, Some(ev.ts_ns)),
            GoOp::SemacquireReturn => self.end_wait_holding(key, ev, GoLockMode::Read),
            GoOp::SemacquireEnter => {
                let side = ParkSide::decode(ev.value);
                self.start_wait(key, ev, ev.addr, side.mode);
                // After the wait: it creates the lock's state, which keeps the kind.
                if side.rw {
                    self.note_rw(ev.addr);
                }
                if side.drains_readers {
                    self.mark_draining(key);
                }
            }
            GoOp::SemreleaseEnter => self.note_hand_over(ev.addr, ev.ts_ns),
        }
        // Every edge the event added touches this goroutine (its wait, its holds), so any
        // cycle the event closed passes through it.
        self.search_from(key);
        self.drop_goroutine_if_idle(key);
    }

    /// The lock `goid` waits for now, if any (draining writers are not listed).
    #[must_use]
    pub fn is_waiting(&self, goid: u64) -> Option<&GoWait> {
        self.goroutines.get(&goid)?.wait.as_ref()
    }

    /// Every goroutine's wait (goroutine id, thread, lock) and every known hold (lock,
    /// goroutine id, thread), sorted: for a picture of the wait-for graph.
    #[must_use]
    pub fn wait_edges(&self) -> WaitEdges {
        let mut waits: Vec<(u64, u32, u64)> = self
            .goroutines
            .values()
            .filter_map(|g| g.wait.as_ref())
            .map(|w| (w.goid, w.tid, w.lock))
            .collect();
        waits.sort_unstable();
        let mut holds: Vec<(u64, u64, u32)> = Vec::new();
        for (&addr, state) in &self.locks {
            holds.extend(state.writer.iter().map(|h| (addr, h.goid, h.tid)));
            holds.extend(
                state
                    .readers
                    .values()
                    .filter_map(|r| r.first())
                    .map(|h| (addr, h.goid, h.tid)),
            );
        }
        holds.sort_unstable();
        WaitEdges { waits, holds }
    }

    /// The recorded writer of `addr`.
    #[must_use]
    pub fn writer(&self, addr: u64) -> Option<&GoHold> {
        self.locks.get(&addr)?.writer.as_ref()
    }

    /// The known readers of `addr` (their first holds), oldest first.
    #[must_use]
    pub fn readers(&self, addr: u64) -> Vec<GoHold> {
        self.locks
            .get(&addr)
            .map(LockState::reader_holds)
            .unwrap_or_default()
    }

    /// Per-lock contention counts and wait/hold histograms. Only contended locks have an
    /// entry, so the table grows with the locks that were waited for, not with every lock
    /// taken; hold times are recorded for locks that have been waited for at least once.
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

    /// Starts collecting a contention profile under `id`: every measured wait that ends
    /// from now on, until [`GoLockModel::finish_profile`]. Waits closed by
    /// [`GoLockModel::finish`] (still open when tracing ended) did not end: not in it.
    pub fn start_profile(&mut self, id: u64) {
        self.profiles.push((id, GoWaitProfile::default()));
    }

    /// The waits collected under `id` since [`GoLockModel::start_profile`], which stops
    /// collecting them; `None` if no such profile was started.
    pub fn finish_profile(&mut self, id: u64) -> Option<GoWaitProfile> {
        let at = self.profiles.iter().position(|(i, _)| *i == id)?;
        Some(self.profiles.swap_remove(at).1)
    }

    /// Starts collecting a holder profile under `id`: every measured wait that ends from
    /// now on, charged to the acquisition stack of the hold it waited for (the hold
    /// released during the wait, else the lock's holder), until
    /// [`GoLockModel::finish_holder_profile`].
    pub fn start_holder_profile(&mut self, id: u64) {
        self.holder_profiles.push((id, GoWaitProfile::default()));
    }

    /// The holder profile collected under `id`, which stops collecting it.
    pub fn finish_holder_profile(&mut self, id: u64) -> Option<GoWaitProfile> {
        let at = self.holder_profiles.iter().position(|(i, _)| *i == id)?;
        Some(self.holder_profiles.swap_remove(at).1)
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

    /// What the model has seen, and what its bounds cut.
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
}
