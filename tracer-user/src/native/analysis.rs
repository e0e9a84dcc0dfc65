//! The state machine that turns decoded events into the live wait-for graph, per-lock
//! statistics and deadlock candidates. Pure: no aya, no `/proc`. The session hands it
//! the target's threads as it last read them (and reads them again when an event names
//! an owner outside them, see [`Analysis::try_on_event`]), and confirms candidates
//! against the live process before reporting them.
//!
//! Semantics:
//! - a *contention* is one futex wait on a lock (a lock acquisition that sleeps twice
//!   counts twice); its wait time is the time spent in that futex call;
//! - the holder of a lock comes from the lock's own owner field as copied at wait start
//!   (default mode), and also from acquire/release uprobes (`--holds`);
//! - hold times exist only with `--holds` (acquire return → unlock entry).
use std::{
    cell::Cell,
    collections::{BTreeSet, hash_map::Entry},
};

// Fx hashing: keys are TIDs and addresses from the kernel, not attacker-chosen strings,
// and SipHash was the largest single cost of the event pipeline.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use tracer_common::{BriefWaits, LockOp};

use crate::{
    event::{Snapshot, StackId, StackWindow, TraceEvent, WaitTimeout, WindowRef},
    lockstats::{LockSlot, LockTable},
    model::LockKind,
    native::{
        LockLayout,
        futex_lock::{self, FutexWaitClass, KnownLocks},
        go_runtime::SemasleepLocks,
        musl_lock,
        rust_lock::{self, RustLocks},
        wait_profile::{HolderProfiles, ReleasedHold, WaitProfile},
        waitgraph::{Cycle, WaitGraph},
    },
};

/// A futex wait in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one wait (owner read, reader, in graph, parked), not \
              states of one machine"
)]
pub struct ActiveWait {
    /// The futex word the thread sleeps on.
    pub futex: u64,
    /// The lock object, when the wait is a lock wait.
    pub lock: Option<u64>,
    pub start_ns: u64,
    pub stack: StackId,
    /// The lock's slot in the stats table (meaningful when `lock` is set).
    pub lock_slot: LockSlot,
    /// Holder named by the lock's owner field when the wait began.
    pub holder: Option<u32>,
    /// The owner field, read when the wait began, named nobody.
    pub unowned: bool,
    pub reader: bool,
    /// Whether the wait is in the wait-for graph (see [`Analysis::flush`]).
    pub in_graph: bool,
    /// The kernel refused this PI lock with `EDEADLK` (it saw the deadlock itself) and
    /// glibc parks the thread forever on a private word: the thread still waits for the
    /// lock, but sleeps on another futex.
    pub parked: bool,
    /// Slot of the wait's stack window in the analysis's window slab (lock waits only);
    /// read it with [`Analysis::window`].
    pub window_slot: Option<u32>,
    /// The call's timeout: a cycle of timed waits resolves itself.
    pub timeout: WaitTimeout,
    /// How many waits it stands for (the kernel's sampling period when it was traced).
    pub weight: u32,
}

/// A lock held by a thread, known from `--holds` uprobes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub since_ns: u64,
    pub stack: StackId,
    /// Return address of the lock call: where the lock was taken.
    pub call_site: u64,
    pub op: LockOp,
    /// The lock's slot in the stats table, so the release reaches its stats without a
    /// lookup by address.
    pub lock_slot: LockSlot,
}

/// Counts of what the analysis has seen, for the summary and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub events: u64,
    pub lock_waits: u64,
    pub other_waits: u64,
    /// Of `lock_waits`, those that returned without sleeping (added up by the kernel, or
    /// woken before they slept: an end with no start). Counted, not timed.
    pub brief_lock_waits: u64,
    /// Failed wait ends (a timeout, a signal) without a matching start: the wait never
    /// slept, or its start predates the attach or was dropped.
    pub unmatched_wait_ends: u64,
    pub acquisitions: u64,
    pub releases: u64,
}

/// `EDEADLK`, as the futex syscall returns it (negated).
const EDEADLK: i64 = 35;

/// Whether a futex call's end is the kernel refusing a PI lock because it would deadlock.
fn is_pi_deadlock_refusal(cmd: u32, ret: i64) -> bool {
    matches!(
        cmd,
        tracer_common::futex_cmd::LOCK_PI | tracer_common::futex_cmd::LOCK_PI2
    ) && ret == -EDEADLK
}

/// The target's threads, as the caller last read them, by the TID the target's own
/// memory names them with (a lock's owner field holds the TID in the target's PID
/// namespace, which differs from the host TID the kernel's events carry when the target
/// runs in a container). A TID outside them found where a lock keeps its owner is no
/// holder (a stale owner field, or a word that only sits where an owner field would be).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadIds {
    /// Host TID by namespace TID.
    host_by_ns: HashMap<u32, u32>,
    /// Namespace TID by host TID.
    ns_by_host: HashMap<u32, u32>,
}

impl ThreadIds {
    /// From (host TID, namespace TID) pairs (see `TargetProcess::namespace_tids`).
    #[must_use]
    pub fn from_namespace_pairs(pairs: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let mut ids = Self::default();
        for (host, ns) in pairs {
            ids.host_by_ns.insert(ns, host);
            ids.ns_by_host.insert(host, ns);
        }
        ids
    }

    /// The host TID of the thread the target's memory names `ns_tid`.
    #[must_use]
    pub fn host_tid(&self, ns_tid: u32) -> Option<u32> {
        self.host_by_ns.get(&ns_tid).copied()
    }

    /// The TID the target's memory names host thread `host_tid` with.
    #[must_use]
    pub fn namespace_tid(&self, host_tid: u32) -> Option<u32> {
        self.ns_by_host.get(&host_tid).copied()
    }

    /// Whether host thread `host_tid` is among them.
    #[must_use]
    pub fn contains_host(&self, host_tid: u32) -> bool {
        self.ns_by_host.contains_key(&host_tid)
    }

    /// The (host TID, namespace TID) pairs, by host TID: what
    /// [`ThreadIds::from_namespace_pairs`] makes them from.
    #[must_use]
    pub fn pairs(&self) -> Vec<(u32, u32)> {
        let mut pairs: Vec<(u32, u32)> = self.ns_by_host.iter().map(|(&h, &n)| (h, n)).collect();
        pairs.sort_unstable();
        pairs
    }
}

/// Threads of a target in the tracer's own PID namespace: each TID is the same on both
/// sides.
impl FromIterator<u32> for ThreadIds {
    fn from_iter<I: IntoIterator<Item = u32>>(tids: I) -> Self {
        Self::from_namespace_pairs(tids.into_iter().map(|tid| (tid, tid)))
    }
}

/// A futex wait named, as its lock's owner, a thread outside the [`ThreadIds`] it was
/// given (see [`Analysis::try_on_event`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownThread(pub u32);

/// Key of [`Analysis::top_wait_stack`] for waits that have a stack window but no kernel
/// stack id (threads found blocked at attach).
pub const WINDOW_ONLY_STACK: u32 = u32::MAX;

/// Lock waits whose (lock, stack) pairs are counted together. With many locks and stacks
/// the counter table does not fit in cache and each lookup missed it, stalling the event
/// loop; a batch of independent lookups lets the CPU overlap the misses.
const STACK_BATCH: usize = 16;

/// Upper bound on deadlock candidates kept for confirmation; beyond it new ones wait for
/// the periodic full scan. Keeps a pathological graph from growing memory without bound.
const MAX_CANDIDATES: usize = 1024;

/// Distinct stacks counted per lock: the report shows the top one (the Go runtime's
/// futexes are classified from up to `assemble::STACKS_PER_GO_FUTEX` of them). A lock
/// waited on from ever new stacks (generated code, deep recursion) would otherwise grow
/// its stack table and samples (~300 bytes each) without bound; waits from further stacks
/// still count on the lock, not among its stacks, and a note says how many.
pub const MAX_STACKS_PER_LOCK: u16 = 16;

#[derive(Default)]
pub struct Analysis {
    graph: WaitGraph,
    stats: LockTable,
    /// Lock kinds, by the lock's slot in `stats`.
    kinds: Vec<LockKind>,
    known: KnownLocks,
    waits: HashMap<u32, ActiveWait>,
    held: HashMap<(u32, u64), Held>,
    /// How often each user stack waited on each lock, with the index of the first window
    /// seen for it in `stack_samples`: the report shows the top one. Entries stay small
    /// (this lookup runs on every wait; large entries made it a cache miss each time).
    wait_stacks: HashMap<(LockSlot, u32), (u64, u32)>,
    stack_samples: Vec<StackWindow>,
    /// Entries of `stack_samples` of folded locks, for new (lock, stack) pairs.
    free_samples: Vec<u32>,
    /// Distinct stacks in `wait_stacks` per lock slot (at most [`MAX_STACKS_PER_LOCK`]).
    stacks_per_lock: Vec<u16>,
    /// Sampled waits not counted among their lock's stacks: it had
    /// [`MAX_STACKS_PER_LOCK`] already.
    stacks_not_counted: u64,
    /// Lock waits not yet counted in `wait_stacks`, with the slot of their window in
    /// `windows`: counted [`STACK_BATCH`] at a time (see [`Analysis::count_wait_stacks`]).
    pending_stacks: Vec<((LockSlot, u32), u32)>,
    /// Window slots freed while `pending_stacks` may still read them; free again once
    /// the pending waits are counted.
    quarantined_windows: Vec<u32>,
    /// Threads whose lock wait began since the last [`Analysis::flush`].
    unflushed: Vec<u32>,
    /// Stack windows of open lock waits, by `ActiveWait::window_slot`, and free slots.
    windows: Vec<StackWindow>,
    free_windows: Vec<u32>,
    candidates: BTreeSet<Cycle>,
    reported: HashSet<Cycle>,
    counts: Counts,
    /// The kernel's running totals of waits that never slept, per futex word, as last
    /// folded in by [`Analysis::on_brief_waits`].
    brief_folded: HashMap<u64, BriefWaits>,
    first_ns: Option<u64>,
    last_ns: u64,
    /// Whose lock layouts futex words are classified with (the target's C library).
    layout: LockLayout,
    /// Contention profiles being collected, by the id their requester gave (see
    /// `super::wait_profile`); empty unless someone asked for one.
    profiles: Vec<(u64, WaitProfile)>,
    /// Holder profiles being collected (`--holds --pprof`); empty unless asked for.
    holder_profiles: HolderProfiles,
    /// A Rust program's locks: `std`'s, `parking_lot`'s slow paths, holders from guards.
    rust: RustLocks,
    /// A Go ≥ 1.24 program's runtime locks, whose waiters sleep on their own semaphore
    /// (see [`SemasleepLocks`]).
    go_semasleep: Option<SemasleepLocks>,
}

impl Analysis {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An analysis that tracks at most `max_locks` locks before folding the coldest
    /// (`--max-locks`; see [`crate::lockstats`]).
    #[must_use]
    pub fn with_max_locks(max_locks: usize) -> Self {
        Self {
            stats: LockTable::with_max_locks(max_locks),
            ..Self::default()
        }
    }

    /// An analysis that reads lock memory with `layout` (the target's C library's).
    #[must_use]
    pub fn with_layout(layout: LockLayout) -> Self {
        Self {
            layout,
            ..Self::default()
        }
    }

    /// The analysis of a target: lock memory read with `layout` (its C library's), at
    /// most `max_locks` locks tracked before the coldest are folded.
    #[must_use]
    pub fn for_target(layout: LockLayout, max_locks: usize) -> Self {
        Self {
            layout,
            stats: LockTable::with_max_locks(max_locks),
            ..Self::default()
        }
    }

    /// A fresh analysis for the program the target executed (`exec`), which starts with
    /// nothing of this one but the kernel's brief-wait totals already counted here (they
    /// are cumulative per futex word, and must not be counted again) and the profile
    /// windows open (taken from this one). It keeps this one's lock cap, and its lock
    /// layout until [`Analysis::set_layout`] gives the new program's.
    #[must_use]
    pub fn successor(&mut self) -> Self {
        Self {
            layout: self.layout,
            stats: LockTable::with_max_locks(self.stats.max_locks()),
            brief_folded: self.brief_folded.clone(),
            // Open profile windows go on over the exec (a profile is of the process):
            // they keep the old program's waits, which are named when the window closes.
            profiles: std::mem::take(&mut self.profiles),
            holder_profiles: std::mem::take(&mut self.holder_profiles),
            ..Self::default()
        }
    }

    /// Classifies futex words with `layout` from now on (after an `exec`, the new
    /// program's C library's).
    pub fn set_layout(&mut self, layout: LockLayout) {
        self.layout = layout;
    }

    /// The lock layout futex words are classified with.
    #[must_use]
    pub fn layout(&self) -> LockLayout {
        self.layout
    }

    /// Classifies a futex wait with the target's lock layout. `waiter_sp` is the waiting
    /// thread's stack pointer, when known.
    fn classify(
        &self,
        (addr, cmd, val): (u64, u32, u32),
        snapshot: &Snapshot,
        waiter_sp: Option<u64>,
        host_tid: &dyn Fn(u32) -> Option<u32>,
    ) -> FutexWaitClass {
        // Rust's `std` locks sleep on their own words with their own values, on either C
        // library; glibc's and musl's keep theirs.
        if self.rust.std_locks()
            && let Some(class) = rust_lock::classify_std(addr, cmd, val, snapshot)
        {
            return class;
        }
        match self.layout {
            LockLayout::Glibc => {
                futex_lock::classify(addr, cmd, val, snapshot, &self.known, host_tid)
            }
            LockLayout::Musl => {
                if waiter_sp.is_some_and(|sp| musl_lock::in_own_frame(addr, sp)) {
                    return FutexWaitClass::NotALock;
                }
                let class = musl_lock::classify(addr, cmd, val, snapshot, &self.known, host_tid);
                match class {
                    // Without memory nor stack pointer (a wait that never slept), a bare
                    // futex word may be a condvar waiter's node (see
                    // `musl_lock::in_own_frame`): only one already seen sleeping as a
                    // lock counts.
                    FutexWaitClass::Lock {
                        lock,
                        kind: LockKind::Futex,
                        ..
                    } if waiter_sp.is_none() && self.stats.slot_of(lock).is_none() => {
                        FutexWaitClass::NotALock
                    }
                    class => class,
                }
            }
        }
    }

    /// Applies one event. `threads` are the target's threads: an owner TID outside them
    /// is no holder.
    pub fn on_event(&mut self, event: &TraceEvent<'_>, threads: &ThreadIds) {
        let applied = self.apply(event, threads, false);
        debug_assert!(applied.is_ok(), "nothing is refused when not asked to");
    }

    /// Applies one event, unless it is a futex wait whose lock names as its owner a TID
    /// outside `threads`: then nothing is applied and that TID is returned, so the caller
    /// can read the target's threads again (one may have started since they were read)
    /// and apply the event with [`Analysis::on_event`].
    ///
    /// # Errors
    /// [`UnknownThread`] with the TID, when the event was not applied.
    pub fn try_on_event(
        &mut self,
        event: &TraceEvent<'_>,
        threads: &ThreadIds,
    ) -> Result<(), UnknownThread> {
        self.apply(event, threads, true)
    }

    /// Applies one event, or with `refuse_unknown` refuses a futex wait that names an
    /// owner TID outside `threads` (see [`Analysis::try_on_event`]).
    fn apply(
        &mut self,
        event: &TraceEvent<'_>,
        threads: &ThreadIds,
        refuse_unknown: bool,
    ) -> Result<(), UnknownThread> {
        match *event {
            TraceEvent::FutexWait {
                tid,
                ts_ns,
                addr,
                cmd,
                val,
                stack,
                ref snapshot,
                ref window,
                timeout,
                weight,
            } => {
                let sp = Some(window.sp()).filter(|&sp| sp != 0);
                let (class, unknown) = self.classify_wait((addr, cmd, val), snapshot, sp, threads);
                let class = match class {
                    FutexWaitClass::NotALock => self.go_runtime_lock_wait(window),
                    class @ FutexWaitClass::Lock { .. } => class,
                };
                if let Some(owner) = unknown.filter(|_| refuse_unknown) {
                    return Err(UnknownThread(owner));
                }
                let class = self.rust.park_class(tid, (ts_ns, addr, sp), class);
                self.count_event(ts_ns);
                self.on_wait_start(tid, (ts_ns, timeout, weight), addr, (stack, window), class);
            }
            TraceEvent::FutexWaitDone {
                tid,
                ts_ns,
                addr,
                cmd,
                val,
                ret,
            } => {
                self.count_event(ts_ns);
                if is_pi_deadlock_refusal(cmd, ret) {
                    self.park(tid);
                } else if !self.on_wait_end(tid, ts_ns, addr) {
                    if ret >= 0 {
                        // Woken (or, for a PI lock, given the lock) before it slept: the
                        // kernel sent no start, so this is a wait that never slept.
                        self.on_brief_waits_of(addr, cmd, val, 1);
                    } else {
                        self.counts.unmatched_wait_ends += 1;
                    }
                }
            }
            TraceEvent::LockAcquired {
                tid,
                ts_ns,
                addr,
                op,
                stack,
                call_site,
                ..
            } => {
                self.count_event(ts_ns);
                self.on_acquired(tid, ts_ns, addr, op, (stack, call_site));
            }
            TraceEvent::LockReleased {
                tid,
                ts_ns,
                addr,
                op,
            } => {
                self.count_event(ts_ns);
                self.on_released(tid, ts_ns, addr, op);
            }
        }
        Ok(())
    }

    /// Counts an event and its time in the span of the trace.
    fn count_event(&mut self, ts_ns: u64) {
        self.counts.events += 1;
        self.first_ns.get_or_insert(ts_ns);
        self.last_ns = self.last_ns.max(ts_ns);
    }

    /// What lock a futex wait is about (its holder as a host TID), and the first owner
    /// TID its memory named that is outside `threads` (taken for no holder). This is
    /// where owner TIDs read from the target's memory enter the analysis: they are
    /// translated from the target's PID namespace to host TIDs here.
    fn classify_wait(
        &self,
        (addr, cmd, val): (u64, u32, u32),
        snapshot: &Snapshot,
        waiter_sp: Option<u64>,
        threads: &ThreadIds,
    ) -> (FutexWaitClass, Option<u32>) {
        let unknown = Cell::new(None);
        let host_tid = |ns_tid: u32| {
            let host = threads.host_tid(ns_tid);
            if host.is_none() && unknown.get().is_none() {
                unknown.set(Some(ns_tid));
            }
            host
        };
        let class = self.classify((addr, cmd, val), snapshot, waiter_sp, &host_tid);
        (class, unknown.get())
    }

    /// Folds in the kernel's totals of futex waits that returned without sleeping: one
    /// entry per futex word, cumulative since the attach, so each call adds what grew
    /// since the previous one. The word is classified from the futex command and value
    /// alone (these waits carry no copy of the lock's memory) and from locks already
    /// known, so a word seen only this way counts as a lock only when its protocol says
    /// so (`val == 2` of the lowlevellock protocol, PI futexes).
    pub fn on_brief_waits(&mut self, totals: &[(u64, BriefWaits)]) {
        for &(futex, now) in totals {
            let before = self
                .brief_folded
                .get(&futex)
                .copied()
                .unwrap_or(BriefWaits::ZERO);
            // A read can miss running totals that were moving into the kernel's hash, or
            // (rarely) see them twice: keeping the largest totals seen lets the next read
            // correct either, without counting anything twice.
            self.brief_folded.insert(
                futex,
                BriefWaits {
                    count: now.count.max(before.count),
                    ..now
                },
            );
            let count = now.count.saturating_sub(before.count);
            if count > 0 {
                self.on_brief_waits_of(futex, now.op, now.val, count);
            }
        }
        self.enforce_lock_cap();
    }

    /// Counts `count` waits on `futex` (futex command `cmd`, expected value `val`) that
    /// never slept. The word is classified from the command and value alone (such waits
    /// carry no copy of the lock's memory) and from locks already known. Without memory
    /// there is no owner field to read, so no TID to check against the target's threads.
    fn on_brief_waits_of(&mut self, futex: u64, cmd: u32, val: u32, count: u64) {
        match self.classify((futex, cmd, val), &Snapshot::EMPTY, None, &|_| None) {
            FutexWaitClass::Lock { lock, kind, .. } => {
                self.counts.lock_waits += count;
                self.counts.brief_lock_waits += count;
                let slot = self.stats.slot(lock);
                self.note_kind(slot, kind);
                self.stats.at(slot).record_brief_waits(count);
            }
            FutexWaitClass::NotALock => self.counts.other_waits += count,
        }
    }

    fn on_wait_start(
        &mut self,
        tid: u32,
        (ts_ns, timeout, weight): (u64, WaitTimeout, u32),
        futex: u64,
        (stack, window): (StackId, &WindowRef<'_>),
        class: FutexWaitClass,
    ) {
        if self.end_stale_wait(tid, futex) {
            // The same call again: its thread slept twice in it (a spurious wakeup), or
            // this is the copy sent with an unusual end. The wait began at the first.
            return;
        }
        let FutexWaitClass::Lock {
            lock,
            kind,
            holder,
            unowned,
            reader,
        } = class
        else {
            self.counts.other_waits += u64::from(weight);
            // A condvar or semaphore wait: remember it only to pair the end event.
            let wait = ActiveWait {
                futex,
                lock: None,
                start_ns: ts_ns,
                stack,
                lock_slot: 0,
                holder: None,
                unowned: false,
                reader: false,
                in_graph: false,
                parked: false,
                window_slot: None,
                timeout,
                weight,
            };
            self.store_wait(tid, wait);
            return;
        };
        self.counts.lock_waits += u64::from(weight);
        let slot = self.stats.slot(lock);
        self.note_kind(slot, kind);
        self.stats.at(slot).begin_sampled_wait(u64::from(weight));
        let window_slot = self.store_window(window);
        // A wait sent without its stack (`STACK_SAMPLE_EVERY`) is not counted among the
        // stacks that waited: the counts are of the sampled waits.
        if stack.is_some() || !window.is_empty() {
            // Waits found blocked at attach have no kernel stack id, only their window.
            let key = (slot, stack.unwrap_or(WINDOW_ONLY_STACK));
            self.pending_stacks.push((key, window_slot));
            if self.pending_stacks.len() >= STACK_BATCH {
                self.count_wait_stacks();
            }
        }
        let wait = ActiveWait {
            futex,
            lock: Some(lock),
            start_ns: ts_ns,
            stack,
            lock_slot: slot,
            holder,
            unowned,
            reader,
            in_graph: false,
            parked: false,
            window_slot: Some(window_slot),
            timeout,
            weight,
        };
        self.store_wait(tid, wait);
        self.unflushed.push(tid);
    }

    /// Counts the pending lock waits in `wait_stacks`, keeping the window of the first
    /// wait of each new (lock, stack) pair as its sample.
    fn count_wait_stacks(&mut self) {
        let Self {
            wait_stacks,
            stack_samples,
            free_samples,
            stacks_per_lock,
            stacks_not_counted,
            pending_stacks,
            windows,
            free_windows,
            quarantined_windows,
            ..
        } = self;
        for (key, window_slot) in pending_stacks.drain(..) {
            match wait_stacks.entry(key) {
                Entry::Occupied(mut counted) => counted.get_mut().0 += 1,
                Entry::Vacant(new) => {
                    let slot = key.0 as usize;
                    if slot >= stacks_per_lock.len() {
                        stacks_per_lock.resize(slot + 1, 0);
                    }
                    let stacks = &mut stacks_per_lock[slot];
                    if *stacks >= MAX_STACKS_PER_LOCK {
                        *stacks_not_counted += 1;
                        continue;
                    }
                    *stacks += 1;
                    let window = windows
                        .get(window_slot as usize)
                        .copied()
                        .unwrap_or(StackWindow::EMPTY);
                    let sample = if let Some(free) = free_samples.pop()
                        && let Some(stored) = stack_samples.get_mut(free as usize)
                    {
                        *stored = window;
                        free
                    } else {
                        stack_samples.push(window);
                        u32::try_from(stack_samples.len() - 1).unwrap_or(u32::MAX)
                    };
                    new.insert((1, sample));
                }
            }
        }
        free_windows.append(quarantined_windows);
    }

    /// Folds the coldest locks when more than the cap are tracked, and forgets what is
    /// kept per lock for them (kind, stacks, holders). Never a lock a thread waits for or
    /// holds, nor one of a deadlock candidate or report.
    fn enforce_lock_cap(&mut self) {
        if !self.stats.over_cap() {
            return;
        }
        // Pending waits name slots: count them before any slot changes hands.
        self.count_wait_stacks();
        let mut pinned: HashSet<u64> = self.waits.values().filter_map(|w| w.lock).collect();
        pinned.extend(self.held.keys().map(|&(_, lock)| lock));
        for cycle in self.candidates.iter().chain(&self.reported) {
            pinned.extend(cycle.edges.iter().flat_map(|e| [e.holds, e.waits_for]));
        }
        let folded = self.stats.fold_coldest(&pinned);
        if folded.is_empty() {
            return;
        }
        let mut folded_slots = vec![false; self.kinds.len().max(self.stacks_per_lock.len())];
        for &(lock, slot) in &folded {
            let slot = slot as usize;
            if let Some(flag) = folded_slots.get_mut(slot) {
                *flag = true;
            }
            if let Some(kind) = self.kinds.get_mut(slot) {
                *kind = LockKind::Futex;
            }
            if let Some(stacks) = self.stacks_per_lock.get_mut(slot) {
                *stacks = 0;
            }
            self.known.remove(lock);
            self.graph.forget_lock(lock);
        }
        let free_samples = &mut self.free_samples;
        self.wait_stacks.retain(|&(slot, _), &mut (_, sample)| {
            let folded = folded_slots.get(slot as usize).copied().unwrap_or(false);
            if folded {
                free_samples.push(sample);
            }
            !folded
        });
    }

    /// Records `tid`'s new wait (after [`Analysis::end_stale_wait`], so the only wait
    /// that can still be there is a park). A parked thread keeps its PI lock wait for
    /// good: the new wait is the park itself, or a restart of it after a signal.
    fn store_wait(&mut self, tid: u32, wait: ActiveWait) {
        if self.waits.get(&tid).is_some_and(|w| w.parked) {
            self.free_window(wait.window_slot);
            if wait.lock.is_some() {
                self.stats.at(wait.lock_slot).end_wait_unmeasured();
            }
            return;
        }
        self.waits.insert(tid, wait);
    }

    /// A thread has one wait at a time: a wait still open for `tid` when its next one
    /// begins (its end was lost, or it was found blocked at attach and is now also
    /// reported by the kernel) ends here at an unknown time, before the new one counts,
    /// so it is never counted twice among its lock's waiters (`max_waiters`). An open wait
    /// on `futex` itself is the same call seen again: it is kept, and `true` returned.
    fn end_stale_wait(&mut self, tid: u32, futex: u64) -> bool {
        let Entry::Occupied(current) = self.waits.entry(tid) else {
            return false;
        };
        let open = current.get();
        if open.futex == futex && !open.parked {
            return true;
        }
        if !open.parked {
            let stale = current.remove();
            self.retire_unmeasured(tid, stale);
        }
        false
    }

    /// Ends `stale`, `tid`'s wait whose end was lost, at an unknown time.
    fn retire_unmeasured(&mut self, tid: u32, stale: ActiveWait) {
        self.free_window(stale.window_slot);
        if stale.lock.is_some() {
            self.stats.at(stale.lock_slot).end_wait_unmeasured();
        }
        if stale.in_graph {
            self.graph.end_wait(tid);
        }
    }

    /// glibc's answer to `EDEADLK` from `FUTEX_LOCK_PI` on a normal PI mutex is to park
    /// the thread forever (`pthread_mutex_lock.c`, "delay the thread indefinitely"): keep
    /// its lock wait open instead of ending it.
    fn park(&mut self, tid: u32) {
        if let Some(wait) = self.waits.get_mut(&tid) {
            wait.parked = true;
        }
    }

    /// Marks `tid`'s current wait as a PI lock wait parked after `EDEADLK` (for a thread
    /// found that way at attach).
    pub fn mark_parked(&mut self, tid: u32) {
        self.park(tid);
    }

    /// Ends `tid`'s wait on `futex`; `false` if it had none open, so the end has no
    /// start (the wait never slept, or its start predates the attach or was dropped).
    fn on_wait_end(&mut self, tid: u32, ts_ns: u64, futex: u64) -> bool {
        let Entry::Occupied(current) = self.waits.entry(tid) else {
            return false;
        };
        if current.get().parked {
            // Only a restart of the park; the lock wait goes on.
            return true;
        }
        let wait = current.remove();
        if wait.futex != futex {
            // A thread is in one futex call at a time: the open wait is an older one whose
            // end was lost, and this call never slept.
            self.retire_unmeasured(tid, wait);
            return false;
        }
        if let Some(lock) = wait.lock {
            let ns = ts_ns.saturating_sub(wait.start_ns);
            if !self.profiles.is_empty() {
                self.profile_wait(lock, &wait, ns);
            }
            if !self.holder_profiles.is_empty() {
                self.profile_holder(tid, lock, &wait, ns);
            }
            self.stats
                .at(wait.lock_slot)
                .end_sampled_wait(ns, u64::from(wait.weight));
        }
        self.free_window(wait.window_slot);
        if wait.in_graph {
            self.graph.end_wait(tid);
        }
        true
    }

    /// Adds a lock wait that ended after `ns` to the profiles being collected.
    fn profile_wait(&mut self, lock: u64, wait: &ActiveWait, ns: u64) {
        // By field, not through `Analysis::window`: the window is borrowed while the
        // profiles are written, and never copied unless a profile keeps it.
        let window = wait
            .window_slot
            .and_then(|slot| self.windows.get(slot as usize))
            .unwrap_or(&StackWindow::EMPTY);
        let stack = (wait.stack.is_some() || window.len > 0)
            .then(|| (wait.stack.unwrap_or(WINDOW_ONLY_STACK), window));
        let weight = u64::from(wait.weight.max(1));
        for (_, profile) in &mut self.profiles {
            profile.record_n(lock, stack, weight, ns.saturating_mul(weight));
        }
    }

    /// Charges a lock wait of `tid` that ended after `ns` to the holds it waited for: the
    /// holds released during the wait, each for the time it overlapped it, and the rest to
    /// the lock's current holder (known from the `--holds` uprobes) if any
    /// ([`HolderProfiles::split`]).
    fn profile_holder(&mut self, tid: u32, lock: u64, wait: &ActiveWait, ns: u64) {
        let current = wait
            .holder
            .into_iter()
            .chain(self.graph.holders(lock))
            .filter(|&holder| holder != tid)
            .find_map(|holder| self.held.get(&(holder, lock)))
            .map(|h| (h.stack, h.call_site));
        let shares = self.holder_profiles.split(
            lock,
            (wait.start_ns, wait.start_ns.saturating_add(ns)),
            current,
        );
        self.holder_profiles
            .record(lock, &shares, u64::from(wait.weight.max(1)));
    }

    /// Starts collecting a holder profile under `id` (see [`HolderProfiles`]): every lock
    /// wait that ends from now on, charged to its holder's acquisition stack, until
    /// [`Analysis::finish_holder_profile`].
    pub fn start_holder_profile(&mut self, id: u64) {
        self.holder_profiles.start(id);
    }

    /// The holder profile collected under `id`, which stops collecting it.
    pub fn finish_holder_profile(&mut self, id: u64) -> Option<WaitProfile> {
        self.holder_profiles.finish(id)
    }

    /// The waits collected under `id` so far (waiter profile, and holder profile when one
    /// was started).
    #[must_use]
    pub fn profiles(&self, id: u64) -> (Option<&WaitProfile>, Option<&WaitProfile>) {
        let waiters = self.profiles.iter().find(|(i, _)| *i == id).map(|(_, p)| p);
        (waiters, self.holder_profiles.get(id))
    }

    /// Starts collecting a contention profile under `id`: every lock wait that ends from
    /// now on, until [`Analysis::finish_profile`].
    pub fn start_profile(&mut self, id: u64) {
        self.profiles.push((id, WaitProfile::default()));
    }

    /// The waits collected under `id` since [`Analysis::start_profile`], which stops
    /// collecting them; `None` if no such profile was started.
    pub fn finish_profile(&mut self, id: u64) -> Option<WaitProfile> {
        let at = self.profiles.iter().position(|(i, _)| *i == id)?;
        Some(self.profiles.swap_remove(at).1)
    }

    /// Copies a wait's stack window into a free slot of the slab, straight from the
    /// record's bytes. Windows are large (~280 bytes): kept apart from `waits`, each is
    /// copied once per wait instead of on every move of the hash table's entries.
    fn store_window(&mut self, window: &WindowRef<'_>) -> u32 {
        if let Some(slot) = self.free_windows.pop()
            && let Some(stored) = self.windows.get_mut(slot as usize)
        {
            window.write_to(stored);
            return slot;
        }
        self.windows.push(window.to_window());
        u32::try_from(self.windows.len() - 1).unwrap_or(u32::MAX)
    }

    fn free_window(&mut self, slot: Option<u32>) {
        if let Some(slot) = slot {
            // A pending wait may still need this window as its stack's sample.
            if self.pending_stacks.is_empty() {
                self.free_windows.push(slot);
            } else {
                self.quarantined_windows.push(slot);
            }
        }
    }

    /// The stack window of a wait (empty for waits that are not lock waits).
    #[must_use]
    pub fn window(&self, wait: &ActiveWait) -> &StackWindow {
        wait.window_slot
            .and_then(|slot| self.windows.get(slot as usize))
            .unwrap_or(&StackWindow::EMPTY)
    }

    /// Puts the lock waits begun since the last flush that are still open into the
    /// wait-for graph and looks for cycles through them. Almost every wait of a busy
    /// process starts and ends between two flushes (one per drained batch), so the graph
    /// only ever sees the waits that last: the ones a deadlock is made of.
    pub fn flush(&mut self) {
        self.count_wait_stacks();
        let mut unflushed = std::mem::take(&mut self.unflushed);
        for tid in unflushed.drain(..) {
            let Some(wait) = self.waits.get_mut(&tid) else {
                continue;
            };
            let (Some(lock), false) = (wait.lock, wait.in_graph) else {
                continue;
            };
            wait.in_graph = true;
            let (holder, unowned, reader) = (wait.holder, wait.unowned, wait.reader);
            // The wait carries its lock's slot: no address lookup for the kind.
            let rwlock = self.kinds.get(wait.lock_slot as usize) == Some(&LockKind::RwLock);
            self.graph.add_wait(tid, lock);
            if unowned && !rwlock {
                // The waiter's own read found the mutex free, so any older snapshot naming
                // the waiter as its holder is stale; left in, it is a false cycle of one.
                // (A rwlock's writer field says nothing of its readers: keep them.)
                self.graph.remove_holder(lock, tid);
            }
            if let Some(holder) = holder {
                self.end_graph_wait_of_holder(holder, tid, lock);
                if rwlock && !reader {
                    // A writer's wait names the writer holding it, but readers may too.
                    self.graph.add_holder(lock, holder);
                } else {
                    // A mutex has one owner; readers wait while the writer holds it alone.
                    self.graph.set_sole_holder(lock, Some(holder));
                }
            }
            self.collect_cycles_through(tid);
        }
        // Keep the buffer's capacity for the next batch.
        self.unflushed = unflushed;
        self.enforce_lock_cap();
    }

    /// `holder`, named as `lock`'s owner by `waiter`'s wait, holds the lock, so any wait of
    /// its own for that lock is over even if its end is not read yet: the ring buffer
    /// orders records by reservation, and a record's lock memory is read after that, so
    /// a waiter can name the thread that just took the lock before that thread's wait end
    /// arrives. Left in the graph, that stale edge is a false cycle of one. Only a
    /// thread's own wait may name itself (a real self-deadlock).
    fn end_graph_wait_of_holder(&mut self, holder: u32, waiter: u32, lock: u64) {
        if holder == waiter || self.graph.waiting_on(holder) != Some(lock) {
            return;
        }
        self.graph.end_wait(holder);
        if let Some(wait) = self.waits.get_mut(&holder) {
            wait.in_graph = false;
        }
    }

    fn on_acquired(
        &mut self,
        tid: u32,
        ts_ns: u64,
        lock: u64,
        op: LockOp,
        (stack, call_site): (StackId, u64),
    ) {
        self.counts.acquisitions += 1;
        let kind = if op.is_rwlock() {
            LockKind::RwLock
        } else {
            LockKind::Mutex
        };
        self.known.insert(lock, kind);
        let slot = self.stats.slot(lock);
        self.note_kind(slot, kind);
        if op.is_read() {
            self.graph.add_holder(lock, tid);
        } else {
            self.graph.set_sole_holder(lock, Some(tid));
        }
        self.held.insert(
            (tid, lock),
            Held {
                since_ns: ts_ns,
                stack,
                call_site,
                op,
                lock_slot: slot,
            },
        );
        // A new holder can close a cycle for any thread already waiting on this lock.
        let waiters: Vec<u32> = self.graph.waiters(lock).collect();
        for waiter in waiters {
            self.collect_cycles_through(waiter);
        }
    }

    fn on_released(&mut self, tid: u32, ts_ns: u64, lock: u64, op: LockOp) {
        self.counts.releases += 1;
        let kind = if op.is_rwlock() {
            LockKind::RwLock
        } else {
            LockKind::Mutex
        };
        self.known.insert(lock, kind);
        self.graph.remove_holder(lock, tid);
        if let Some(held) = self.held.remove(&(tid, lock)) {
            self.stats
                .at(held.lock_slot)
                .record_hold(ts_ns.saturating_sub(held.since_ns));
            self.holder_profiles.on_release(
                lock,
                ReleasedHold {
                    acquired_ns: held.since_ns,
                    released_ns: ts_ns,
                    stack: held.stack,
                    call_site: held.call_site,
                },
            );
        }
    }

    fn note_kind(&mut self, slot: LockSlot, kind: LockKind) {
        let slot = slot as usize;
        if slot >= self.kinds.len() {
            self.kinds.resize(slot + 1, LockKind::Futex);
        }
        let entry = &mut self.kinds[slot];
        // A lock first seen as a bare futex may later be recognised for what it is.
        if *entry == LockKind::Futex {
            *entry = kind;
        }
    }

    fn collect_cycles_through(&mut self, tid: u32) {
        for cycle in self.graph.cycles_through(tid) {
            if self.candidates.len() >= MAX_CANDIDATES {
                break;
            }
            if !self.reported.contains(&cycle) {
                self.candidates.insert(cycle);
            }
        }
    }

    /// Re-scans the whole graph for cycles (cheap when few threads wait). Catches cycles
    /// whose last edge arrived as a holder update rather than a wait.
    pub fn rescan(&mut self) {
        self.flush();
        for cycle in self.graph.all_cycles() {
            if self.candidates.len() >= MAX_CANDIDATES {
                break;
            }
            if !self.reported.contains(&cycle) {
                self.candidates.insert(cycle);
            }
        }
    }

    /// Whether deadlock candidates wait to be confirmed: the session then keeps checking
    /// at its fast pace even if no records come.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        !self.candidates.is_empty()
    }

    /// Deadlock candidates still present in the graph, dropping those that dissolved.
    pub fn candidates(&mut self) -> Vec<Cycle> {
        self.flush();
        let graph = &self.graph;
        self.candidates.retain(|cycle| {
            cycle.edges.iter().all(|e| {
                graph.waiting_on(e.tid) == Some(e.waits_for)
                    && graph.holders(e.holds).any(|h| h == e.tid)
            })
        });
        self.candidates.iter().cloned().collect()
    }

    /// Drops a candidate without marking it reported: the cycle may be reported when
    /// it forms again (a cycle of timed waits, which the session reports once itself).
    pub fn drop_candidate(&mut self, cycle: &Cycle) {
        self.candidates.remove(cycle);
    }

    /// Marks a cycle as reported: it is never reported again.
    pub fn mark_reported(&mut self, cycle: &Cycle) {
        self.candidates.remove(cycle);
        self.reported.insert(cycle.clone());
    }

    /// Ends the trace: waits still in progress count as waits lasting until `now_ns`, so
    /// a lock nobody gets (a deadlock, a leaked lock) shows its waiting time instead of
    /// none. Returns how many waits were still in progress.
    pub fn close_open_waits(&mut self, now_ns: u64) -> usize {
        let open: Vec<(u32, u64)> = self
            .waits
            .iter()
            .filter(|(_, w)| w.lock.is_some())
            .map(|(&tid, w)| (tid, w.futex))
            .collect();
        for &(tid, futex) in &open {
            if let Some(wait) = self.waits.get_mut(&tid) {
                wait.parked = false;
            }
            self.on_wait_end(tid, now_ns, futex);
        }
        open.len()
    }

    /// A thread is gone: forget its wait and its holdings.
    pub fn thread_exited(&mut self, tid: u32) {
        self.rust.thread_exited(tid);
        self.graph.remove_thread(tid);
        if let Some(wait) = self.waits.remove(&tid) {
            self.free_window(wait.window_slot);
        }
        self.held.retain(|&(holder, _), _| holder != tid);
    }

    /// Finds the runtime locks of a Go ≥ 1.24 program in the stacks of its waits that
    /// sleep on a thread's semaphore (see [`SemasleepLocks`]).
    pub fn set_go_semasleep_locks(&mut self, locks: Option<SemasleepLocks>) {
        self.go_semasleep = locks;
    }

    /// A wait its futex word did not show to be a lock's: a Go runtime lock's if its
    /// stack says so (Go ≥ 1.24), the lock then known by address alone (the runtime's
    /// mutex names no owner).
    fn go_runtime_lock_wait(&self, window: &WindowRef<'_>) -> FutexWaitClass {
        let Some(finder) = &self.go_semasleep else {
            return FutexWaitClass::NotALock;
        };
        if window.is_empty() {
            return FutexWaitClass::NotALock;
        }
        let mut copy = StackWindow::EMPTY;
        window.write_to(&mut copy);
        match finder.lock_of(copy.sp, copy.words()) {
            Some(lock) => FutexWaitClass::Lock {
                lock,
                kind: LockKind::Futex,
                holder: None,
                unowned: false,
                reader: false,
            },
            None => FutexWaitClass::NotALock,
        }
    }

    /// Classifies Rust `std`'s lock waits as such from now on (the target is a Rust
    /// program; see `rust_lock`).
    pub fn set_rust_std(&mut self, on: bool) {
        self.rust.set_std_locks(on);
    }

    /// Whether the target's Rust `std` lock waits are classified as such.
    #[must_use]
    pub fn rust_std(&self) -> bool {
        self.rust.std_locks()
    }

    /// What is known of the Rust program's locks beyond their futex words (names of its
    /// heap locks among them).
    #[must_use]
    pub fn rust(&self) -> &RustLocks {
        &self.rust
    }

    /// [`Analysis::rust`], to record what was learnt.
    pub fn rust_mut(&mut self) -> &mut RustLocks {
        &mut self.rust
    }

    /// Thread `tid` entered a `parking_lot` slow path for `lock` (its next park is a
    /// wait for that lock: see [`RustLocks::park_class`]).
    pub fn on_slow_path(
        &mut self,
        tid: u32,
        ts_ns: u64,
        lock: u64,
        op: tracer_common::NativeSiteOp,
    ) {
        self.count_event(ts_ns);
        self.rust.on_slow_path(tid, ts_ns, lock, op);
    }

    /// Sets the holders of ownerless locks found from guards on their threads' stacks
    /// (`found`: (thread, lock) pairs), replacing those found before, and looks for the
    /// cycles they close.
    pub fn set_found_holders(&mut self, found: HashSet<(u32, u64)>) {
        let new: Vec<(u32, u64)> = found.iter().copied().collect();
        for (tid, lock) in self.rust.replace_found_holders(found) {
            self.graph.remove_holder(lock, tid);
        }
        for (tid, lock) in new {
            self.graph.set_sole_holder(lock, Some(tid));
            let waiters: Vec<u32> = self.graph.waiters(lock).collect();
            for waiter in waiters {
                self.collect_cycles_through(waiter);
            }
        }
    }

    /// Whether `tid` was found to hold `lock` by a guard on its stack.
    #[must_use]
    pub fn found_holder(&self, tid: u32, lock: u64) -> bool {
        self.rust.found_holder(tid, lock)
    }

    #[must_use]
    pub fn active_wait(&self, tid: u32) -> Option<&ActiveWait> {
        self.waits.get(&tid)
    }

    /// Every thread waiting now, with its wait (in no particular order).
    pub fn active_waits(&self) -> impl Iterator<Item = (u32, &ActiveWait)> + '_ {
        self.waits.iter().map(|(&tid, wait)| (tid, wait))
    }

    #[must_use]
    pub fn held(&self, tid: u32, lock: u64) -> Option<&Held> {
        self.held.get(&(tid, lock))
    }

    #[must_use]
    pub fn lock_kind(&self, lock: u64) -> LockKind {
        self.stats
            .slot_of(lock)
            .and_then(|slot| self.kinds.get(slot as usize).copied())
            .unwrap_or(LockKind::Futex)
    }

    /// The stack that waited on `lock` most often, with a stack window seen with it.
    #[must_use]
    pub fn top_wait_stack(&self, lock: u64) -> Option<(u32, StackWindow)> {
        self.wait_stacks(lock, 1).into_iter().next()
    }

    /// Up to `limit` of the stacks that waited on `lock`, most frequent first (ties: the
    /// smaller stack id first), each with a stack window seen with it.
    #[must_use]
    pub fn wait_stacks(&self, lock: u64, limit: usize) -> Vec<(u32, StackWindow)> {
        // Only the report asks, once per lock at the end: a scan is fine.
        let Some(slot) = self.stats.slot_of(lock) else {
            return Vec::new();
        };
        // Counted waits, then the pending ones (their pairs may be new; the first
        // pending window of a new pair is its sample, as counting them would keep).
        let mut counts: HashMap<u32, (u64, &StackWindow)> = self
            .wait_stacks
            .iter()
            .filter(|&(&(l, _), _)| l == slot)
            .map(|(&(_, stack), &(count, sample))| {
                let window = self.stack_samples.get(sample as usize);
                (stack, (count, window.unwrap_or(&StackWindow::EMPTY)))
            })
            .collect();
        for &((l, stack), window_slot) in &self.pending_stacks {
            if l == slot {
                let window = self.windows.get(window_slot as usize);
                counts
                    .entry(stack)
                    .or_insert((0, window.unwrap_or(&StackWindow::EMPTY)))
                    .0 += 1;
            }
        }
        let mut stacks: Vec<(u32, (u64, &StackWindow))> = counts.into_iter().collect();
        stacks.sort_unstable_by_key(|&(stack, (count, _))| (std::cmp::Reverse(count), stack));
        stacks
            .into_iter()
            .take(limit)
            .map(|(stack, (_, window))| (stack, *window))
            .collect()
    }

    #[must_use]
    pub fn stats(&self) -> &LockTable {
        &self.stats
    }

    /// Sampled waits not counted among their lock's stacks (see [`MAX_STACKS_PER_LOCK`]).
    #[must_use]
    pub fn stacks_not_counted(&self) -> u64 {
        self.stacks_not_counted
    }

    #[must_use]
    pub fn graph(&self) -> &WaitGraph {
        &self.graph
    }

    #[must_use]
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Number of deadlocks reported so far.
    #[must_use]
    pub fn deadlocks_reported(&self) -> usize {
        self.reported.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use tracer_common::{SNAPSHOT_LEAD_BYTES, SNAPSHOT_WORDS, futex_cmd};

    use super::*;
    use crate::{event::Snapshot, native::waitgraph::CycleEdge};

    const LOCK_A: u64 = 0x5000;
    const LOCK_B: u64 = 0x5040;
    const COND: u64 = 0x6000;

    /// The target's threads in these tests.
    fn threads() -> ThreadIds {
        (100..200).collect()
    }

    /// A glibc mutex wait as the kernel reports it: futex word = 2, owner TID at +8.
    fn mutex_wait(tid: u32, ts_ns: u64, lock: u64, owner: u32) -> TraceEvent<'static> {
        let mut words = [0; SNAPSHOT_WORDS];
        let lead = usize::try_from(SNAPSHOT_LEAD_BYTES / 4).unwrap();
        words[lead] = 2;
        words[lead + 2] = owner;
        let snapshot = Snapshot {
            addr: lock - SNAPSHOT_LEAD_BYTES,
            len: 64,
            words,
        };
        TraceEvent::FutexWait {
            tid,
            ts_ns,
            addr: lock,
            cmd: futex_cmd::WAIT,
            val: 2,
            stack: Some(tid),
            snapshot,
            window: WindowRef::EMPTY,
            timeout: WaitTimeout::Untimed,
            weight: 1,
        }
    }

    fn done(tid: u32, ts_ns: u64, addr: u64) -> TraceEvent<'static> {
        TraceEvent::FutexWaitDone {
            tid,
            ts_ns,
            addr,
            cmd: futex_cmd::WAIT,
            val: 2,
            ret: 0,
        }
    }

    fn cond_wait(tid: u32, ts_ns: u64) -> TraceEvent<'static> {
        let snapshot = Snapshot {
            addr: COND + 40 - SNAPSHOT_LEAD_BYTES,
            len: 64,
            words: [0; SNAPSHOT_WORDS],
        };
        TraceEvent::FutexWait {
            tid,
            ts_ns,
            addr: COND + 40,
            cmd: futex_cmd::WAIT_BITSET,
            val: 0,
            stack: None,
            snapshot,
            window: WindowRef::EMPTY,
            timeout: WaitTimeout::Untimed,
            weight: 1,
        }
    }

    fn feed(analysis: &mut Analysis, events: &[TraceEvent]) {
        let threads = threads();
        for event in events {
            analysis.on_event(event, &threads);
        }
    }

    /// Brief-wait totals of a word waited on with expected value `val`.
    fn brief(count: u64, val: u32) -> BriefWaits {
        BriefWaits {
            count,
            op: futex_cmd::WAIT,
            val,
        }
    }

    /// Guards the analysis's purity about threads: a wait whose owner field names a TID
    /// outside the threads it is given is refused untouched by `try_on_event` (so the
    /// session can read the target's threads again first), and applied by `on_event`
    /// with no holder, which also leaves the word a plain futex lock.
    #[test]
    fn an_unknown_owner_is_refused_then_taken_for_no_holder() {
        let wait = mutex_wait(101, 10, LOCK_A, 250);
        let mut a = Analysis::new();
        assert_eq!(a.try_on_event(&wait, &threads()), Err(UnknownThread(250)));
        assert_eq!(a.counts().events, 0);
        assert!(a.active_wait(101).is_none());
        a.on_event(&wait, &threads());
        assert_eq!(a.active_wait(101).map(|w| w.holder), Some(None));
        assert_eq!(a.lock_kind(LOCK_A), LockKind::Futex);

        let with_owner: ThreadIds = (100..200).chain([250]).collect();
        let mut b = Analysis::new();
        assert_eq!(b.try_on_event(&wait, &with_owner), Ok(()));
        assert_eq!(b.active_wait(101).map(|w| w.holder), Some(Some(250)));
        assert_eq!(b.lock_kind(LOCK_A), LockKind::Mutex);
        // Events that name no owner are never refused.
        assert_eq!(
            b.try_on_event(&done(101, 20, LOCK_A), &ThreadIds::default()),
            Ok(())
        );
    }

    /// Thread `tid`'s lean wait (serve's one record per wait that slept) on `LOCK_A`, a
    /// lowlevellock word, from `start_ns` to `end_ns`, standing for `weight` waits.
    fn lean_wait(tid: u32, (start_ns, end_ns): (u64, u64), weight: u32) -> crate::event::Slept {
        crate::event::Slept {
            tid,
            start_ns,
            end_ns,
            addr: LOCK_A,
            cmd: futex_cmd::WAIT,
            val: 2,
            sp: 0x7ffe_0000,
            ip: 0x7f00_0000,
            weight,
        }
    }

    /// Guards serve's lean waits (the kernel's one record per wait that slept, sent
    /// once over, with no lock memory): a lowlevellock word's lean wait is a timed lock
    /// wait of its start-to-end length; a lean wait that userspace already gave the
    /// analysis while it slept long (read from the kernel's table, with the memory and
    /// so the holder) is the same call when its record comes: one wait, not two, ended at
    /// the record's end, its start the first's.
    #[test]
    fn a_lean_wait_is_one_timed_wait_even_when_read_while_it_slept() {
        let lean = |tid, start_ns, end_ns| lean_wait(tid, (start_ns, end_ns), 1);
        let mut a = Analysis::new();
        let short = lean(101, 1_000, 4_000);
        let window = short.window();
        feed(&mut a, &short.events(&window));
        // Read while it slept (start 10 000, holder 100), then its lean record.
        feed(&mut a, &[mutex_wait(102, 10_000, LOCK_A, 100)]);
        assert_eq!(a.active_wait(102).and_then(|w| w.lock), Some(LOCK_A));
        let long = lean(102, 10_000, 510_000);
        let window = long.window();
        feed(&mut a, &long.events(&window));
        assert!(a.active_wait(102).is_none());
        let stats = a.stats().get(LOCK_A).unwrap();
        let wait = stats.wait();
        assert_eq!((wait.count, wait.total), (2, 3_000 + 500_000), "{wait:?}");
        assert_eq!(a.counts().lock_waits, 2);
    }

    /// Guards the scaling of sampled sleeps (`tracer serve` above
    /// `--max-sleeps-per-second`): a wait the kernel traced as one in 16 counts 16 times in
    /// the lock's contentions, its wait count and total, its histogram and the contention
    /// profile, while it is one thread waiting (`max_waiters`); a wait of weight 1 beside
    /// it counts once.
    #[test]
    fn a_sampled_wait_counts_for_its_weight() {
        let mut a = Analysis::new();
        a.start_profile(1);
        for slept in [
            lean_wait(101, (1_000, 4_000), 16),
            lean_wait(102, (2_000, 2_500), 1),
        ] {
            let window = slept.window();
            feed(&mut a, &slept.events(&window));
        }
        let stats = a.stats().get(LOCK_A).unwrap();
        assert_eq!(stats.contentions, 17);
        assert_eq!(stats.max_waiters, 1);
        let wait = stats.wait();
        assert_eq!((wait.count, wait.total), (17, 16 * 3_000 + 500), "{wait:?}");
        assert_eq!(
            wait.p50, 3_000,
            "the sampled wait is most of the distribution"
        );
        assert_eq!(stats.wait_buckets().count, 17);
        assert_eq!(a.counts().lock_waits, 17);
        let entries = a.finish_profile(1).unwrap().spread_unsampled();
        let count: u64 = entries.iter().map(|(_, _, e)| e.count).sum();
        let delay: u64 = entries.iter().map(|(_, _, e)| e.delay_ns).sum();
        assert_eq!((count, delay), (17, 16 * 3_000 + 500));
    }

    /// Guards the folding of the kernel's cumulative brief-wait totals: each read adds
    /// only what grew, a lowlevellock word (`val == 2`) counts as a lock, a condition
    /// variable's word does not, and folded waits never enter the wait-for graph nor the
    /// wait-time distribution (they are not timed).
    #[test]
    fn brief_waits_fold_growth_only_and_skip_non_locks() {
        let mut a = Analysis::new();
        a.on_brief_waits(&[(LOCK_A, brief(3, 2)), (COND + 40, brief(7, 0))]);
        a.on_brief_waits(&[(LOCK_A, brief(5, 2))]);
        a.on_brief_waits(&[(LOCK_A, brief(5, 2))]);
        let stats = a.stats().get(LOCK_A).unwrap();
        assert_eq!(stats.contentions, 5);
        assert_eq!(stats.wait().count, 0);
        assert!(a.stats().get(COND + 40).is_none());
        assert_eq!(a.counts().brief_lock_waits, 5);
        assert_eq!(a.counts().other_waits, 7);
        assert!(a.candidates().is_empty());
    }

    /// Guards the folding against the kernel moving a CPU's running totals into its hash
    /// while userspace reads them: a read that misses them must neither lose them for good
    /// nor, when the next read has them again, count them twice.
    #[test]
    fn a_brief_wait_read_that_misses_running_totals_is_corrected_next_time() {
        let mut a = Analysis::new();
        a.on_brief_waits(&[(LOCK_A, brief(5, 2))]);
        // Three waits were in flight between the two maps when this read was made.
        a.on_brief_waits(&[(LOCK_A, brief(2, 2))]);
        a.on_brief_waits(&[(LOCK_A, brief(6, 2))]);
        assert_eq!(a.stats().get(LOCK_A).unwrap().contentions, 6);
        assert_eq!(a.counts().brief_lock_waits, 6);
    }

    /// Guards the pairing of slept waits with the folded totals: a lock first seen by a
    /// slept wait (with its owner) keeps its kind when brief waits are folded in, and
    /// only the slept wait is timed.
    #[test]
    fn brief_waits_add_to_a_lock_seen_sleeping() {
        let mut a = Analysis::new();
        feed(
            &mut a,
            &[mutex_wait(101, 10, LOCK_A, 102), done(101, 60, LOCK_A)],
        );
        a.on_brief_waits(&[(LOCK_A, brief(4, 2))]);
        let stats = a.stats().get(LOCK_A).unwrap();
        assert_eq!(stats.contentions, 5);
        assert_eq!((stats.wait().count, stats.wait().total), (1, 50));
        assert_eq!(a.lock_kind(LOCK_A), LockKind::Mutex);
    }

    /// Guards the end of a wait woken before it slept: the kernel sends its end but no
    /// start, and it must count as a brief wait on its lock (a contention), not vanish
    /// among unmatched ends nor end another wait. A failed end with no start (a timeout
    /// of a wait begun before the attach) is only counted as unmatched.
    #[test]
    fn an_end_without_a_start_is_a_wait_that_never_slept() {
        let mut a = Analysis::new();
        feed(&mut a, &[done(101, 20, LOCK_A)]);
        let stats = a.stats().get(LOCK_A).unwrap();
        assert_eq!((stats.contentions, stats.wait().count), (1, 0));
        assert_eq!(a.counts().brief_lock_waits, 1);
        assert_eq!(a.counts().unmatched_wait_ends, 0);
        let timed_out = TraceEvent::FutexWaitDone {
            tid: 102,
            ts_ns: 30,
            addr: LOCK_B,
            cmd: futex_cmd::WAIT,
            val: 2,
            ret: -110,
        };
        feed(&mut a, &[timed_out]);
        assert!(a.stats().get(LOCK_B).is_none());
        assert_eq!(a.counts().unmatched_wait_ends, 1);
    }

    /// Guards against a lost end keeping a thread in the wait-for graph: a thread is in
    /// one futex call at a time, so an end on another word than its open wait means that
    /// wait's end was lost (it ends, untimed) and this call never slept.
    #[test]
    fn an_end_on_another_word_retires_the_stale_wait() {
        let mut a = Analysis::new();
        feed(
            &mut a,
            &[
                mutex_wait(101, 10, LOCK_A, 102),
                mutex_wait(102, 20, LOCK_B, 103),
                done(101, 30, LOCK_B),
            ],
        );
        assert!(a.active_wait(101).is_none());
        let a_stats = a.stats().get(LOCK_A).unwrap();
        assert_eq!((a_stats.contentions, a_stats.wait().count), (1, 0));
        assert_eq!(a.stats().get(LOCK_B).unwrap().contentions, 2);
        assert!(a.active_wait(102).is_some(), "another thread's wait stays");
    }

    /// Guards `max_waiters` and the wait's start against a wait seen twice: found blocked
    /// at attach and then reported by the kernel too, or sent again because its thread
    /// slept twice in one call. The thread waits once, from the first start.
    #[test]
    fn a_wait_seen_twice_counts_one_waiter() {
        let mut a = Analysis::new();
        feed(
            &mut a,
            &[
                mutex_wait(101, 10, LOCK_A, 103),
                mutex_wait(101, 11, LOCK_A, 103),
                mutex_wait(102, 12, LOCK_A, 103),
                done(101, 20, LOCK_A),
                done(102, 30, LOCK_A),
            ],
        );
        let stats = a.stats().get(LOCK_A).unwrap();
        assert_eq!(stats.max_waiters, 2);
        assert_eq!(stats.contentions, 2);
        assert_eq!(stats.wait().total, (20 - 10) + (30 - 12));
    }

    #[test]
    fn abba_yields_one_candidate_with_both_edges() {
        let mut a = Analysis::new();
        feed(
            &mut a,
            &[
                mutex_wait(101, 10, LOCK_B, 102),
                mutex_wait(102, 20, LOCK_A, 101),
            ],
        );
        let candidates = a.candidates();
        assert_eq!(candidates.len(), 1);
        assert_eq!(
            candidates[0].edges,
            vec![
                CycleEdge {
                    tid: 101,
                    holds: LOCK_A,
                    waits_for: LOCK_B
                },
                CycleEdge {
                    tid: 102,
                    holds: LOCK_B,
                    waits_for: LOCK_A
                },
            ]
        );
        a.mark_reported(&candidates[0]);
        assert!(a.candidates().is_empty());
        a.rescan();
        assert!(
            a.candidates().is_empty(),
            "a reported cycle is never proposed again"
        );
        assert_eq!(a.deadlocks_reported(), 1);
    }

    #[test]
    fn a_cycle_that_dissolves_before_confirmation_is_dropped() {
        let mut a = Analysis::new();
        feed(
            &mut a,
            &[
                mutex_wait(101, 10, LOCK_B, 102),
                mutex_wait(102, 20, LOCK_A, 101),
                done(101, 30, LOCK_B),
            ],
        );
        assert!(a.candidates().is_empty());
    }

    /// Guards against a false self-deadlock seen in CI on a busy cgo mutex: thread 101's
    /// wait on A ends and 101 takes A, but another waiter's record, which names 101 as
    /// A's owner, is read before 101's wait end (the ring buffer orders records by
    /// reservation; the owner field is read after). A holder cannot be waiting for the
    /// lock it holds, so its wait edge goes; only a thread's own wait may name itself.
    #[test]
    fn a_holder_named_by_another_waiter_no_longer_waits_for_that_lock() {
        let mut a = Analysis::new();
        feed(&mut a, &[mutex_wait(101, 10, LOCK_A, 102)]);
        a.flush();
        feed(&mut a, &[mutex_wait(103, 20, LOCK_A, 101)]);
        a.flush();
        assert!(a.candidates().is_empty(), "{:?}", a.candidates());
        assert_eq!(a.graph().waiting_on(101), None);
        assert_eq!(a.graph().waiting_on(103), Some(LOCK_A));
        // 101's wait end still arrives later and is measured as usual.
        feed(&mut a, &[done(101, 30, LOCK_A)]);
        assert_eq!(a.stats().get(LOCK_A).unwrap().wait().count, 1);
        assert_eq!(a.counts().unmatched_wait_ends, 0);
    }

    /// Guards against false self-deadlocks on a hot mutex (hundreds of `/proc`
    /// confirmations a second in the overhead bench): 103's wait names 101 as A's owner;
    /// 101 then unlocks A and waits for it again, reading the owner field between another
    /// thread's unlock and the next lock, as zero. 101's own read is the newer fact: it
    /// does not hold A, so A's stale holder entry naming 101 goes.
    #[test]
    fn a_waiter_that_finds_the_mutex_free_is_not_its_holder() {
        let mut a = Analysis::new();
        feed(&mut a, &[mutex_wait(103, 10, LOCK_A, 101)]);
        a.flush();
        feed(&mut a, &[mutex_wait(101, 20, LOCK_A, 0)]);
        assert!(a.candidates().is_empty(), "{:?}", a.candidates());
        a.rescan();
        assert!(a.candidates().is_empty(), "{:?}", a.candidates());
        assert_eq!(a.graph().holders(LOCK_A).count(), 0);
        assert_eq!(a.graph().waiting_on(101), Some(LOCK_A));
        // A waiter whose read names someone else leaves a real self-deadlock alone.
        feed(&mut a, &[mutex_wait(150, 30, LOCK_B, 150)]);
        feed(&mut a, &[mutex_wait(151, 40, LOCK_B, 0)]);
        assert_eq!(a.candidates().len(), 1);
    }

    #[test]
    fn self_deadlock_is_a_cycle_of_one() {
        let mut a = Analysis::new();
        feed(&mut a, &[mutex_wait(150, 10, LOCK_A, 150)]);
        let candidates = a.candidates();
        assert_eq!(candidates.len(), 1);
        assert_eq!(
            candidates[0].edges,
            vec![CycleEdge {
                tid: 150,
                holds: LOCK_A,
                waits_for: LOCK_A
            }]
        );
    }

    #[test]
    fn contention_and_wait_times_are_per_lock() {
        let mut a = Analysis::new();
        feed(
            &mut a,
            &[
                mutex_wait(101, 1_000, LOCK_A, 103),
                mutex_wait(102, 1_500, LOCK_A, 103),
                done(101, 3_000, LOCK_A),
                done(102, 6_500, LOCK_A),
            ],
        );
        let stats = a.stats().get(LOCK_A).expect("lock A has stats");
        assert_eq!(stats.contentions, 2);
        assert_eq!(stats.max_waiters, 2);
        let wait = stats.wait();
        assert_eq!(wait.count, 2);
        assert_eq!(wait.total, 2_000 + 5_000);
        assert_eq!(a.lock_kind(LOCK_A), LockKind::Mutex);
        assert!(a.candidates().is_empty());
    }

    #[test]
    fn condvar_waits_never_become_contention_or_edges() {
        let mut a = Analysis::new();
        feed(
            &mut a,
            &[
                cond_wait(101, 10),
                cond_wait(102, 11),
                done(101, 50, COND + 40),
                done(102, 60, COND + 40),
            ],
        );
        assert!(a.stats().is_empty());
        assert_eq!(a.graph().waiting_on(101), None);
        assert_eq!(a.counts().other_waits, 2);
        assert_eq!(a.counts().lock_waits, 0);
    }

    /// A musl normal-mutex wait as the kernel reports it: the thread sleeps on the
    /// mutex + 4 expecting `EBUSY | 0x80000000`, the type word (0) before it, one waiter
    /// after it; `sp` is the waiter's stack pointer.
    fn musl_mutex_wait(tid: u32, ts_ns: u64, mutex: u64, window: &StackWindow) -> TraceEvent<'_> {
        let word = mutex + 4;
        let mut words = [0; SNAPSHOT_WORDS];
        let lead = usize::try_from(SNAPSHOT_LEAD_BYTES / 4).unwrap();
        words[lead] = 0x8000_0010;
        words[lead + 1] = 1;
        TraceEvent::FutexWait {
            tid,
            ts_ns,
            addr: word,
            cmd: futex_cmd::WAIT,
            val: 0x8000_0010,
            stack: Some(tid),
            snapshot: Snapshot {
                addr: word - SNAPSHOT_LEAD_BYTES,
                len: 64,
                words,
            },
            window: WindowRef::Built(window),
            timeout: WaitTimeout::Untimed,
            weight: 1,
        }
    }

    /// Guards musl deadlocks being missed ("no contended locks observed"): with musl's
    /// layout, waits on two normal mutexes whose holders the lock uprobes saw form the
    /// ABBA cycle, on the mutexes' own addresses; read with glibc's layout, the same
    /// waits are no lock waits at all (the bug).
    #[test]
    fn musl_abba_is_a_cycle_with_holders_from_the_uprobes() {
        let acquired = |tid, ts, addr| TraceEvent::LockAcquired {
            tid,
            ts_ns: ts,
            start_ns: ts,
            addr,
            op: LockOp::MutexLock,
            stack: None,
            call_site: 0,
        };
        let window = StackWindow {
            sp: 0x7fff_0000,
            ..StackWindow::EMPTY
        };
        let events = [
            acquired(101, 10, LOCK_A),
            acquired(102, 20, LOCK_B),
            musl_mutex_wait(101, 30, LOCK_B, &window),
            musl_mutex_wait(102, 40, LOCK_A, &window),
        ];
        let mut musl = Analysis::with_layout(LockLayout::Musl);
        feed(&mut musl, &events);
        let cycles = musl.candidates();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        let mut edges: Vec<(u32, u64, u64)> = cycles[0]
            .edges
            .iter()
            .map(|e| (e.tid, e.holds, e.waits_for))
            .collect();
        edges.sort_unstable();
        assert_eq!(edges, [(101, LOCK_A, LOCK_B), (102, LOCK_B, LOCK_A)]);
        assert_eq!(musl.lock_kind(LOCK_A), LockKind::Mutex);
        let mut glibc = Analysis::new();
        feed(&mut glibc, &events);
        assert!(glibc.candidates().is_empty());
        assert_eq!(glibc.counts().lock_waits, 0, "the bug: no lock waits");
    }

    /// Guards the holder profile's choice of holder in the analysis: a wait is charged to
    /// the acquisition (stack id and lock call site, from the `--holds` uprobes) of the
    /// hold released during it, else to the lock's holder when it ended; and only while a
    /// holder profile is open.
    #[test]
    fn a_wait_is_charged_to_the_hold_it_waited_out() {
        let acquired = |tid, ts, addr, stack, call_site| TraceEvent::LockAcquired {
            tid,
            ts_ns: ts,
            start_ns: ts,
            addr,
            op: LockOp::MutexLock,
            stack,
            call_site,
        };
        let released = |tid, ts, addr| TraceEvent::LockReleased {
            tid,
            ts_ns: ts,
            addr,
            op: LockOp::MutexUnlock,
        };
        let mut a = Analysis::new();
        // Before the profile: not charged.
        feed(
            &mut a,
            &[
                acquired(101, 1, LOCK_A, Some(9), 0xa0),
                mutex_wait(102, 2, LOCK_A, 101),
                released(101, 3, LOCK_A),
                done(102, 4, LOCK_A),
                released(102, 5, LOCK_A),
            ],
        );
        a.start_holder_profile(1);
        feed(
            &mut a,
            &[
                acquired(101, 10, LOCK_A, Some(7), 0xa1),
                mutex_wait(102, 20, LOCK_A, 101),
                released(101, 50, LOCK_A),
                done(102, 60, LOCK_A),
                // 103's release of B is not seen by the end of 104's wait.
                acquired(103, 70, LOCK_B, None, 0xb1),
                mutex_wait(104, 80, LOCK_B, 103),
                done(104, 90, LOCK_B),
            ],
        );
        let mut charged: Vec<_> = a
            .finish_holder_profile(1)
            .expect("holder profile 1")
            .spread_unsampled()
            .into_iter()
            .map(|(lock, stack, e)| (lock, stack, e.count, e.delay_ns, e.window.ip))
            .collect();
        charged.sort_unstable();
        assert_eq!(
            charged,
            [
                (LOCK_A, Some(Some(7)), 1, 40, 0xa1),
                (LOCK_B, Some(None), 1, 10, 0xb1),
            ]
        );
        assert!(a.finish_holder_profile(1).is_none(), "finished once");
    }

    /// Guards musl condition variables counted as lock contention: a musl condvar waiter
    /// sleeps on a node in its own stack frame, expecting 2 like a lowlevellock; such a
    /// wait (and a brief one on a word never seen sleeping as a lock) is no lock wait.
    #[test]
    fn musl_condvar_waits_on_the_waiters_own_frame_are_not_locks() {
        let sp = 0x7fff_0000;
        let node_barrier = sp + 0x1a4;
        let window = StackWindow {
            sp,
            ..StackWindow::EMPTY
        };
        let mut a = Analysis::with_layout(LockLayout::Musl);
        let wait = match mutex_wait(101, 10, node_barrier, 0) {
            TraceEvent::FutexWait {
                tid,
                ts_ns,
                addr,
                cmd,
                val,
                stack,
                snapshot,
                timeout,
                ..
            } => TraceEvent::FutexWait {
                tid,
                ts_ns,
                addr,
                cmd,
                val,
                stack,
                snapshot,
                window: WindowRef::Built(&window),
                timeout,
                weight: 1,
            },
            other => other,
        };
        feed(&mut a, &[wait]);
        a.on_brief_waits(&[(node_barrier, brief(5, 2))]);
        assert_eq!(a.counts().lock_waits, 0);
        assert_eq!(a.counts().other_waits, 6);
        assert!(a.stats().iter().next().is_none());
    }

    #[test]
    fn holds_mode_tracks_hold_times_and_closes_cycles_on_acquire() {
        let mut a = Analysis::new();
        let acquired = |tid, ts, addr| TraceEvent::LockAcquired {
            tid,
            ts_ns: ts,
            start_ns: ts,
            addr,
            op: LockOp::MutexLock,
            stack: None,
            call_site: 0,
        };
        // 101 holds A; 102 holds B; both wait with owner fields we could not read.
        let unknown_owner_wait = |tid, ts, lock| match mutex_wait(tid, ts, lock, 0) {
            TraceEvent::FutexWait {
                tid,
                ts_ns,
                addr,
                cmd,
                val,
                stack,
                snapshot,
                window,
                timeout,
                weight,
            } => TraceEvent::FutexWait {
                tid,
                ts_ns,
                addr,
                cmd,
                val,
                stack,
                snapshot: Snapshot { len: 0, ..snapshot },
                window,
                timeout,
                weight,
            },
            other => other,
        };
        let w1 = unknown_owner_wait(101, 30, LOCK_B);
        let w2 = unknown_owner_wait(102, 40, LOCK_A);
        feed(&mut a, &[acquired(101, 10, LOCK_A), w1, w2]);
        assert!(a.candidates().is_empty(), "B's holder is not known yet");
        feed(&mut a, &[acquired(102, 20, LOCK_B)]);
        assert_eq!(
            a.candidates().len(),
            1,
            "learning B's holder closes the cycle"
        );
        feed(
            &mut a,
            &[TraceEvent::LockReleased {
                tid: 101,
                ts_ns: 1_010,
                addr: LOCK_A,
                op: LockOp::MutexUnlock,
            }],
        );
        assert_eq!(
            a.stats()
                .get(LOCK_A)
                .and_then(crate::lockstats::LockStats::hold)
                .map(|h| h.total),
            Some(1_000)
        );
        assert!(a.held(102, LOCK_B).is_some());
        a.thread_exited(102);
        assert!(a.held(102, LOCK_B).is_none());
        assert!(a.candidates().is_empty());
    }

    #[test]
    fn open_waits_count_until_the_end_of_the_trace() {
        let mut a = Analysis::new();
        feed(
            &mut a,
            &[mutex_wait(101, 1_000, LOCK_A, 102), cond_wait(103, 1_000)],
        );
        assert_eq!(
            a.close_open_waits(5_000),
            1,
            "the condvar wait is not a lock wait"
        );
        let wait = a.stats().get(LOCK_A).unwrap().wait();
        assert_eq!((wait.count, wait.total), (1, 4_000));
        assert_eq!(a.graph().waiting_on(101), None);
    }

    /// A PI mutex wait as the kernel reports it: the owner's TID is in the futex word.
    fn pi_wait(tid: u32, ts_ns: u64, lock: u64, owner: u32) -> TraceEvent<'static> {
        let mut words = [0; SNAPSHOT_WORDS];
        words[usize::try_from(SNAPSHOT_LEAD_BYTES / 4).unwrap()] = owner;
        TraceEvent::FutexWait {
            tid,
            ts_ns,
            addr: lock,
            cmd: futex_cmd::LOCK_PI2,
            val: 0,
            stack: None,
            snapshot: Snapshot {
                addr: lock - SNAPSHOT_LEAD_BYTES,
                len: 64,
                words,
            },
            window: WindowRef::EMPTY,
            timeout: WaitTimeout::Untimed,
            weight: 1,
        }
    }

    #[test]
    fn pi_lock_refused_with_edeadlk_stays_a_wait_through_glibcs_park() {
        let mut a = Analysis::new();
        let refused = TraceEvent::FutexWaitDone {
            tid: 101,
            ts_ns: 20,
            addr: LOCK_A,
            cmd: futex_cmd::LOCK_PI2,
            val: 0,
            ret: -35,
        };
        // glibc then sleeps forever on a zero word of its own stack.
        let park = TraceEvent::FutexWait {
            tid: 101,
            ts_ns: 21,
            addr: 0x7ffe_0000,
            cmd: futex_cmd::WAIT_BITSET,
            val: 0,
            stack: None,
            snapshot: Snapshot {
                addr: 0x7ffe_0000,
                len: 64,
                words: [0; SNAPSHOT_WORDS],
            },
            window: WindowRef::EMPTY,
            timeout: WaitTimeout::Untimed,
            weight: 1,
        };
        feed(
            &mut a,
            &[
                pi_wait(101, 10, LOCK_A, 102),
                refused,
                park,
                pi_wait(102, 30, LOCK_B, 101),
            ],
        );
        let candidates = a.candidates();
        assert_eq!(
            candidates.len(),
            1,
            "the refused thread still waits for LOCK_A"
        );
        assert!(
            a.active_wait(101)
                .is_some_and(|w| w.parked && w.lock == Some(LOCK_A))
        );
        // Any other failure of LOCK_PI ends the wait as usual.
        let mut b = Analysis::new();
        let timed_out = TraceEvent::FutexWaitDone {
            tid: 101,
            ts_ns: 20,
            addr: LOCK_A,
            cmd: futex_cmd::LOCK_PI2,
            val: 0,
            ret: -110,
        };
        feed(&mut b, &[pi_wait(101, 10, LOCK_A, 102), timed_out]);
        assert!(b.active_wait(101).is_none());
        // At the end of the trace the parked wait counts until the end like any other.
        assert_eq!(a.close_open_waits(1_000), 2);
    }

    /// A mutex wait of `tid` from stack `stack`, with a window that names `ip`.
    fn wait_from(tid: u32, ts_ns: u64, stack: u32, ip: u64) -> TraceEvent<'static> {
        // Leaked: a test's handful of windows, borrowed by events for the test's life.
        let window = Box::leak(Box::new(StackWindow {
            ip,
            ..StackWindow::EMPTY
        }));
        with_stack(
            mutex_wait(tid, ts_ns, LOCK_A, 199),
            Some(stack),
            WindowRef::Built(window),
        )
    }

    /// `event` (a futex wait) with the given stack id and window.
    fn with_stack(
        event: TraceEvent<'static>,
        stack: StackId,
        window: WindowRef<'static>,
    ) -> TraceEvent<'static> {
        match event {
            TraceEvent::FutexWait {
                tid,
                ts_ns,
                addr,
                cmd,
                val,
                snapshot,
                timeout,
                ..
            } => TraceEvent::FutexWait {
                tid,
                ts_ns,
                addr,
                cmd,
                val,
                stack,
                snapshot,
                window,
                timeout,
                weight: 1,
            },
            other => other,
        }
    }

    #[test]
    fn stack_samples_are_the_first_window_of_each_stack_across_batches() {
        let mut a = Analysis::new();
        // Stack 7's first wait ends at once: its window slot is freed and the next wait
        // (stack 8) would reuse it if the pending count did not keep it.
        feed(
            &mut a,
            &[
                wait_from(101, 1, 7, 0x7001),
                done(101, 2, LOCK_A),
                wait_from(102, 3, 8, 0x8001),
                done(102, 4, LOCK_A),
            ],
        );
        let top = |a: &Analysis| a.top_wait_stack(LOCK_A).map(|(s, w)| (s, w.ip));
        assert_eq!(top(&a), Some((7, 0x7001)), "ties go to the smaller stack");
        // Enough waits to count several batches, stack 8 most often.
        let (mut ts, mut sevens, mut eights) = (10, 1, 1);
        for i in 0..3 * STACK_BATCH as u64 {
            let stack = if i % 3 == 0 { 7 } else { 8 };
            if stack == 7 {
                sevens += 1;
            } else {
                eights += 1;
            }
            ts += 2;
            feed(
                &mut a,
                &[
                    wait_from(103, ts, stack, 0x9000 + i),
                    done(103, ts + 1, LOCK_A),
                ],
            );
            let expected = if eights > sevens {
                (8, 0x8001)
            } else {
                (7, 0x7001)
            };
            assert_eq!(top(&a), Some(expected), "after {} more waits", i + 1);
        }
        a.flush();
        assert_eq!(top(&a), Some((8, 0x8001)));
        assert_eq!(
            a.stats().get(LOCK_A).map(|s| s.contentions),
            Some(2 + 3 * STACK_BATCH as u64)
        );
    }

    /// Guards the report's `top_waiter_stack` against the kernel's stack sampling
    /// (`STACK_SAMPLE_EVERY`): waits sent without a stack must not add up to an empty
    /// "most frequent stack" that hides the sampled ones.
    #[test]
    fn waits_sent_without_a_stack_are_not_counted_among_stacks() {
        let mut a = Analysis::new();
        let sampled_out =
            |tid, ts_ns| with_stack(mutex_wait(tid, ts_ns, LOCK_A, 199), None, WindowRef::EMPTY);
        for ts in [1, 3, 5] {
            feed(&mut a, &[sampled_out(101, ts), done(101, ts + 1, LOCK_A)]);
        }
        feed(
            &mut a,
            &[wait_from(102, 7, 8, 0x8001), done(102, 8, LOCK_A)],
        );
        a.flush();
        assert_eq!(
            a.top_wait_stack(LOCK_A).map(|(s, w)| (s, w.ip)),
            Some((8, 0x8001))
        );
        assert_eq!(a.stats().get(LOCK_A).map(|s| s.contentions), Some(4));
    }

    #[test]
    fn top_wait_stack_is_the_most_frequent() {
        let mut a = Analysis::new();
        feed(
            &mut a,
            &[mutex_wait(101, 1, LOCK_A, 103), done(101, 2, LOCK_A)],
        );
        feed(
            &mut a,
            &[mutex_wait(102, 3, LOCK_A, 103), done(102, 4, LOCK_A)],
        );
        feed(
            &mut a,
            &[mutex_wait(102, 5, LOCK_A, 103), done(102, 6, LOCK_A)],
        );
        assert_eq!(a.top_wait_stack(LOCK_A).map(|(stack, _)| stack), Some(102));
        assert_eq!(a.top_wait_stack(LOCK_B), None);
    }

    /// Guards issue 16's memory bound in the analysis: with 100 distinct locks each
    /// contended once and a cap of 8, the tracked locks, their stack counts and stack
    /// samples stay bounded; the locks of a reported deadlock are kept even once nobody
    /// waits for them, and the folded count adds up.
    #[test]
    fn the_cap_folds_cold_locks_but_never_a_deadlocks() {
        let mut a = Analysis::with_max_locks(8);
        feed(
            &mut a,
            &[
                mutex_wait(101, 10, LOCK_B, 102),
                mutex_wait(102, 20, LOCK_A, 101),
            ],
        );
        let cycle = a.candidates().remove(0);
        a.mark_reported(&cycle);
        // The waits end (say, a timed lock gave up): the finding still pins its locks.
        feed(&mut a, &[done(101, 30, LOCK_B), done(102, 30, LOCK_A)]);
        let first = 0x10_0000;
        for i in 0..100u64 {
            let lock = first + i * 0x40;
            let t = 1_000 + i * 100;
            feed(
                &mut a,
                &[
                    with_stack(
                        mutex_wait(103, t, lock, 104),
                        Some(7),
                        WindowRef::Built(Box::leak(Box::new(StackWindow {
                            ip: 0x40_1000,
                            ..StackWindow::EMPTY
                        }))),
                    ),
                    done(103, t + 50, lock),
                ],
            );
            a.flush();
        }
        let stats = a.stats();
        assert!(stats.len() <= 8, "{} tracked", stats.len());
        assert!(stats.get(LOCK_A).is_some() && stats.get(LOCK_B).is_some());
        assert_eq!(stats.len() as u64 + stats.folded().locks, 102);
        let tracked: u64 = stats.iter().map(|(_, s)| s.contentions).sum();
        assert_eq!(stats.folded().stats.contentions + tracked, 102);
        assert!(
            a.wait_stacks.len() <= 8,
            "{} stack entries",
            a.wait_stacks.len()
        );
        assert!(
            a.stack_samples.len() <= 9,
            "{} samples",
            a.stack_samples.len()
        );
        // The newest lock is tracked with its stack; folded ones have none.
        let newest = first + 99 * 0x40;
        assert_eq!(a.top_wait_stack(newest).map(|(id, _)| id), Some(7));
        assert!(a.top_wait_stack(first).is_none());
        assert_eq!(a.lock_kind(newest), LockKind::Mutex);
    }

    #[test]
    fn stacks_per_lock_are_capped() {
        let mut a = Analysis::new();
        let extra = 4;
        for stack in 0..u32::from(MAX_STACKS_PER_LOCK) + extra {
            let t = u64::from(stack) * 100;
            feed(
                &mut a,
                &[
                    wait_from(101, t, stack, 0x40_1000),
                    done(101, t + 10, LOCK_A),
                ],
            );
        }
        a.flush();
        assert_eq!(
            a.wait_stacks(LOCK_A, 100).len(),
            usize::from(MAX_STACKS_PER_LOCK)
        );
        assert_eq!(a.stacks_not_counted(), u64::from(extra));
        assert_eq!(
            a.stats().get(LOCK_A).unwrap().contentions,
            u64::from(MAX_STACKS_PER_LOCK) + u64::from(extra),
            "waits from further stacks still count on the lock"
        );
    }

    /// Guards a Go ≥ 1.24 program's runtime lock waits counting as no lock waits: each
    /// waiter sleeps on its own M's semaphore word, and the lock (`lock2`'s argument) is
    /// found in its stack window, so two waiters on different words wait for one lock.
    /// Without the finder (an older Go, or any other program) they stay other waits.
    #[test]
    fn go_semasleep_waits_are_waits_for_the_lock_in_their_stacks() {
        use crate::native::go_runtime::SemasleepLocks;

        const RUNTIME_LOCK: u64 = 0xc000_8048;
        let window = |sp: u64| {
            let mut w = StackWindow {
                sp,
                len: 32,
                ..StackWindow::EMPTY
            };
            let at = |i: u64| sp + 8 * i;
            w.words[0] = 0x40_1010; // into futexsleep
            w.words[8] = 0x40_2020; // into semasleep
            w.words[12] = at(22); // lock2's frame pointer
            w.words[13] = 0x40_3030; // into lock2
            w.words[24] = RUNTIME_LOCK;
            w
        };
        let (w1, w2) = (window(0x7f00_1000), window(0x7f00_9000));
        let sleep = |tid: u32, ts_ns: u64, waitsema: u64, window| TraceEvent::FutexWait {
            tid,
            ts_ns,
            addr: waitsema,
            cmd: futex_cmd::WAIT,
            val: u32::MAX,
            stack: Some(tid),
            snapshot: Snapshot::EMPTY,
            window: WindowRef::Built(window),
            timeout: WaitTimeout::Untimed,
            weight: 1,
        };
        let events = [
            sleep(101, 10, 0xc000_0100, &w1),
            sleep(102, 20, 0xc000_0200, &w2),
        ];
        let mut go = Analysis::new();
        go.set_go_semasleep_locks(Some(SemasleepLocks::new(
            0x40_3000..0x40_3100,
            0x40_2000..0x40_2100,
        )));
        feed(&mut go, &events);
        assert_eq!((go.counts().lock_waits, go.counts().other_waits), (2, 0));
        for tid in [101, 102] {
            assert_eq!(go.active_wait(tid).and_then(|w| w.lock), Some(RUNTIME_LOCK));
        }
        assert_eq!(go.lock_kind(RUNTIME_LOCK), LockKind::Futex);
        let mut other = Analysis::new();
        feed(&mut other, &events);
        assert_eq!(
            (other.counts().lock_waits, other.counts().other_waits),
            (0, 2)
        );
    }
}
