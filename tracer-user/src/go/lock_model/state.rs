//! Who holds and who waits for each lock: the goroutine and lock records and the
//! transitions the events drive (waits start and end, write and read holds begin and
//! end), with the per-lock statistics they feed.
//!
//! Assumes what the module docs of [`super`] state: a goroutine waits for one lock at a
//! time, its own events arrive in order, and a release event follows the atomic, so the
//! next owner's acquisition can arrive before it. Goroutines and locks with nothing held
//! or waited for are dropped at once.
use std::collections::BTreeSet;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::Serialize;
use smallvec::SmallVec;

use super::{GoLockEvent, GoLockMode, GoLockModel, GoWaitStack, HoldChange};

/// Most hold changes kept between two takes by the tracker (it takes them after every
/// event; only a model fed without a tracker reaches this).
const MAX_HOLD_CHANGES: usize = 1024;
use crate::lockstats::{LockSlot, LockTable};

/// Marks the key of a goroutine whose id could not be read (`goid` 0): it is then known
/// by its `g` address. User addresses stay far below bit 63, and goids never reach it.
const G_ONLY_KEY: u64 = 1 << 63;

/// The key of a goroutine in the model's maps: its id, or its `g` when the id is unknown.
pub(super) fn goroutine_key(goid: u64, g: u64) -> u64 {
    if goid != 0 { goid } else { g | G_ONLY_KEY }
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

/// Where and when a goroutine took a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GoHold {
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

impl GoHold {
    /// A hold taken by the event's goroutine at the event's site.
    pub(super) fn at(ev: &GoLockEvent) -> Self {
        Self {
            goid: ev.goid,
            g: ev.g,
            tid: ev.tid,
            since_ns: ev.ts_ns,
            pc: ev.pc,
            stack_id: ev.stack_id,
        }
    }

    pub(super) fn key(&self) -> u64 {
        goroutine_key(self.goid, self.g)
    }
}

/// A goroutine waiting for a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GoWait {
    /// The goroutine id (0 if unknown).
    pub goid: u64,
    /// Its `g`.
    pub g: u64,
    /// The thread it ran on when the wait began.
    pub tid: u32,
    /// The lock it waits for.
    pub lock: u64,
    /// Which side of the lock it wants.
    pub mode: GoLockMode,
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

impl GoWait {
    /// Where a lock taken at the end of this wait counts as acquired: the code that called
    /// the slow path when the wait began at a function entry, else the wait's own site.
    fn acquisition_pc(&self) -> u64 {
        if self.caller != 0 {
            self.caller
        } else {
            self.pc
        }
    }

    pub(super) fn key(&self) -> u64 {
        goroutine_key(self.goid, self.g)
    }
}

/// A goroutine that holds or waits for something.
#[derive(Clone, Debug, Default)]
pub(super) struct Goroutine {
    pub(super) wait: Option<GoWait>,
    /// The stats slot of `wait` while its [`crate::lockstats::LockStats::begin_wait`] is
    /// still open (`finish` closes it early).
    pub(super) wait_slot: Option<LockSlot>,
    /// Locks it is the recorded writer of.
    pub(super) write_locks: SmallVec<[u64; 2]>,
    /// Locks it holds for reading (each once, however many read holds).
    pub(super) read_locks: SmallVec<[u64; 2]>,
    /// Whether it waits (explicitly or as a draining writer): only blocked readers can be
    /// on a cycle, so locks list them apart ([`LockState::blocked_readers`]).
    pub(super) blocked: bool,
}

impl Goroutine {
    fn is_idle(&self) -> bool {
        self.wait.is_none() && self.write_locks.is_empty() && self.read_locks.is_empty()
    }
}

/// A lock that is held or waited for.
#[derive(Clone, Debug, Default)]
pub(super) struct LockState {
    pub(super) kind: GoLockKind,
    pub(super) writer: Option<GoHold>,
    /// A writer replaced by a racing acquisition before its release arrived: its release
    /// still gives a hold time (and keeps this state until it arrives).
    displaced: Option<GoHold>,
    /// Read holds by goroutine, in acquisition order.
    pub(super) readers: HashMap<u64, SmallVec<[GoHold; 1]>>,
    /// The readers that are blocked themselves (see [`Goroutine::blocked`]).
    pub(super) blocked_readers: BTreeSet<u64>,
    /// Waiters by (wait start, goroutine): the oldest first.
    pub(super) waiting: BTreeSet<(u64, u64)>,
    pub(super) read_waiters: usize,
    pub(super) write_waiters: usize,
    pub(super) last_release_ns: Option<u64>,
    /// The hold released last and when, kept only while holder profiles are collected:
    /// the hold a waiter woken by that release waited out.
    last_released: Option<(u64, GoHold)>,
    /// Waiter count at the last stuck report of the current episode; 0 = not reported.
    pub(super) reported_waiters: usize,
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
    pub(super) fn reader_holds(&self) -> Vec<GoHold> {
        let mut holds: Vec<GoHold> = self
            .readers
            .values()
            .filter_map(|h| h.first().copied())
            .collect();
        holds.sort_unstable_by_key(|h| (h.since_ns, h.key()));
        holds
    }

    pub(super) fn hold_of(&self, key: u64, as_reader: bool) -> Option<GoHold> {
        let writer = self.writer.filter(|h| !as_reader && h.key() == key);
        writer.or_else(|| self.readers.get(&key).and_then(|h| h.first().copied()))
    }
}

impl GoLockModel {
    /// Marks `addr` as an `RWMutex`, in its live state and in its stats slot.
    pub(super) fn note_rw(&mut self, addr: u64) {
        if let Some(lock) = self.locks.get_mut(&addr) {
            lock.kind = GoLockKind::RwMutex;
        }
        if let Some(slot) = self.stats.slot_of(addr) {
            set_kind(&mut self.kinds, slot, GoLockKind::RwMutex);
        }
    }

    /// The goroutine runs lock code, so a wait still pending lost its end event.
    pub(super) fn end_stale_wait(&mut self, key: u64) {
        if self.goroutines.get(&key).is_some_and(|g| g.wait.is_some()) {
            self.counts.stale_waits += 1;
            self.end_wait(key, None);
        }
    }

    /// Marks the pending wait of `key` as a writer's that waits for readers to leave.
    pub(super) fn mark_draining(&mut self, key: u64) {
        if let Some(wait) = self.goroutines.get_mut(&key).and_then(|g| g.wait.as_mut()) {
            wait.drains_readers = true;
        }
    }

    /// A hand-over of `addr` to its waiters (a semaphore release): it is not stuck.
    pub(super) fn note_hand_over(&mut self, addr: u64, ts_ns: u64) {
        match self.locks.get_mut(&addr) {
            Some(lock) => lock.note_release(ts_ns),
            None => self.recent_releases.note(addr, ts_ns),
        }
    }

    pub(super) fn start_wait(&mut self, key: u64, ev: &GoLockEvent, lock: u64, mode: GoLockMode) {
        if let Some(current) = self.goroutines.get(&key).and_then(|g| g.wait) {
            if current.lock == lock && current.mode == mode {
                // The entry ran again (stack growth): the wait began at the first one.
                return;
            }
            self.counts.stale_waits += 1;
            self.end_wait(key, None);
        }
        let wait = GoWait {
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
            GoLockMode::Read => state.read_waiters += 1,
            GoLockMode::Write => state.write_waiters += 1,
        }
        let kind = state.kind;
        self.waited_locks.insert(lock);
        let slot = self.stats.slot(lock);
        if kind == GoLockKind::RwMutex {
            set_kind(&mut self.kinds, slot, kind);
        }
        self.stats.at(slot).begin_wait();
        if self.stats.over_cap() {
            self.fold_cold_locks();
        }
        let g = self.goroutines.entry(key).or_default();
        g.wait = Some(wait);
        g.wait_slot = Some(slot);
        self.refresh_blocked(key);
    }

    /// Ends the pending wait of `key` in `mode`, if any, with the lock now held.
    pub(super) fn end_wait_holding(&mut self, key: u64, ev: &GoLockEvent, mode: GoLockMode) {
        let Some(wait) = self.goroutines.get(&key).and_then(|g| g.wait) else {
            return;
        };
        if wait.mode != mode {
            return;
        }
        self.end_wait(key, Some(ev.ts_ns));
        let hold = GoHold {
            goid: ev.goid,
            g: ev.g,
            tid: ev.tid,
            since_ns: ev.ts_ns,
            pc: wait.acquisition_pc(),
            stack_id: wait.stack_id,
        };
        match mode {
            GoLockMode::Write => self.acquire_write(key, wait.lock, hold),
            GoLockMode::Read => self.acquire_read(key, wait.lock, hold),
        }
    }

    /// Ends the wait of `key`: at `end_ns` (recording its duration), or at an unknown
    /// time.
    pub(super) fn end_wait(&mut self, key: u64, end_ns: Option<u64>) {
        let Some(g) = self.goroutines.get_mut(&key) else {
            return;
        };
        let Some(wait) = g.wait.take() else {
            return;
        };
        if let Some(slot) = g.wait_slot.take() {
            let mut stats = self.stats.at(slot);
            match end_ns {
                Some(end) => stats.end_wait(end.saturating_sub(wait.since_ns)),
                None => stats.end_wait_unmeasured(),
            }
        }
        if let Some(end) = end_ns
            && (!self.profiles.is_empty() || !self.holder_profiles.is_empty())
        {
            self.profile_wait(&wait, end.saturating_sub(wait.since_ns));
        }
        if let Some(lock) = self.locks.get_mut(&wait.lock) {
            lock.waiting.remove(&(wait.since_ns, key));
            match wait.mode {
                GoLockMode::Read => lock.read_waiters = lock.read_waiters.saturating_sub(1),
                GoLockMode::Write => lock.write_waiters = lock.write_waiters.saturating_sub(1),
            }
            if lock.waiting.is_empty() {
                self.waited_locks.remove(&wait.lock);
                lock.reported_waiters = 0;
            }
        }
        self.refresh_blocked(key);
        self.drop_lock_if_idle(wait.lock);
    }

    /// Adds a wait that ended after `ns` to the profiles being collected (before its
    /// lock's state may go, which keeps the kind).
    fn profile_wait(&mut self, wait: &GoWait, ns: u64) {
        let kind = kind_of(
            self.locks.get(&wait.lock),
            &self.stats,
            &self.kinds,
            wait.lock,
        );
        let stack = GoWaitStack {
            pc: wait.pc,
            caller: wait.caller,
            stack_id: wait.stack_id,
        };
        for (_, profile) in &mut self.profiles {
            profile.record(wait.lock, kind, stack, ns);
        }
        if self.holder_profiles.is_empty() {
            return;
        }
        // The hold released during the wait (its release woke the waiter), else the
        // lock's current holder; an unknown holder's stack is all zeros.
        let key = wait.key();
        let holder = self.locks.get(&wait.lock).and_then(|lock| {
            lock.last_released
                .filter(|(released_ns, _)| *released_ns >= wait.since_ns)
                .map(|(_, hold)| hold)
                .or_else(|| lock.writer.filter(|h| h.key() != key))
                .or_else(|| {
                    lock.readers
                        .iter()
                        .filter(|(reader, _)| **reader != key)
                        .find_map(|(_, holds)| holds.first().copied())
                })
        });
        let holder_stack = holder.map_or(
            GoWaitStack {
                pc: 0,
                caller: 0,
                stack_id: -1,
            },
            |h| GoWaitStack {
                pc: h.pc,
                caller: 0,
                stack_id: h.stack_id,
            },
        );
        for (_, profile) in &mut self.holder_profiles {
            profile.record(wait.lock, kind, holder_stack, ns);
        }
    }

    pub(super) fn acquire_write(&mut self, key: u64, addr: u64, hold: GoHold) {
        self.log_hold(HoldChange::Acquired {
            key,
            lock: addr,
            mode: GoLockMode::Write,
            hold,
        });
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

    pub(super) fn release_write(&mut self, key: u64, addr: u64, ts_ns: u64) {
        self.counts.releases += 1;
        self.log_hold(HoldChange::Released { key, lock: addr });
        let Some(lock) = self.locks.get_mut(&addr) else {
            self.counts.unmatched_releases += 1;
            self.recent_releases.note(addr, ts_ns);
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
            if !self.holder_profiles.is_empty() {
                lock.last_released = Some((ts_ns, hold));
            }
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

    pub(super) fn acquire_read(&mut self, key: u64, addr: u64, hold: GoHold) {
        self.log_hold(HoldChange::Acquired {
            key,
            lock: addr,
            mode: GoLockMode::Read,
            hold,
        });
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

    pub(super) fn release_read(&mut self, key: u64, addr: u64, ts_ns: u64) {
        self.counts.releases += 1;
        self.log_hold(HoldChange::Released { key, lock: addr });
        let Some(lock) = self.locks.get_mut(&addr) else {
            self.counts.unmatched_releases += 1;
            self.recent_releases.note(addr, ts_ns);
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
            if !self.holder_profiles.is_empty() {
                lock.last_released = Some((ts_ns, hold));
            }
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

    /// Keeps a hold change for the tracker's lock-order graph. Bounded: the tracker takes
    /// them after every event; a model nobody takes them from keeps only the last few.
    fn log_hold(&mut self, change: HoldChange) {
        if self.waits_only {
            return;
        }
        if self.hold_changes.len() >= MAX_HOLD_CHANGES {
            self.hold_changes.clear();
        }
        self.hold_changes.push(change);
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

    pub(super) fn drop_goroutine_if_idle(&mut self, key: u64) {
        if self.goroutines.get(&key).is_some_and(Goroutine::is_idle) {
            self.goroutines.remove(&key);
        }
    }

    /// Folds the coldest contended locks past the stats table's cap (see
    /// `crate::lockstats`), never one with live state: waited for or held, which every
    /// lock of a deadlock or a stuck lock is.
    fn fold_cold_locks(&mut self) {
        let pinned: HashSet<u64> = self.locks.keys().copied().collect();
        for (_, slot) in self.stats.fold_coldest(&pinned) {
            if let Some(kind) = self.kinds.get_mut(slot as usize) {
                *kind = GoLockKind::Mutex;
            }
        }
    }

    /// Drops `addr`'s state once nothing holds or waits for it; its last release moves
    /// to `recent_releases`, which outlives it (the live state keeps it until then, so
    /// the release path pays no second lookup).
    fn drop_lock_if_idle(&mut self, addr: u64) {
        if self.locks.get(&addr).is_some_and(LockState::is_idle)
            && let Some(ts_ns) = self.locks.remove(&addr).and_then(|l| l.last_release_ns)
        {
            self.recent_releases.note(addr, ts_ns);
        }
    }
}

/// The kind of `addr` from its live state and its stats slot: `RwMutex` if either says so.
pub(super) fn kind_of(
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
