//! Findings from snapshots of the goroutines: what the Go runtime's own data says about
//! who waits for and who holds which lock, probes or not. This is how a deadlock or a
//! stuck lock that formed before the attach is found, and how holders are named when no
//! probe saw them take their lock.
//!
//! A snapshot is taken at the first look after the attach, then every
//! [`SNAPSHOT_INTERVAL`] (longer when a snapshot is slow, so that snapshots take about
//! 1/[`COST_RATIO`] of the time at most), and [`CONFIRM_GAP`] after one that found a new
//! cycle: a cycle is reported once two snapshots [`CONFIRM_GAP`] apart both show
//! it and the target's memory says its locks are still taken.
use std::{
    collections::{BTreeSet, HashSet},
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap as HashMap;
use thiserror::Error;

use super::lock_taken;
use crate::{
    go::{
        lock_model::GoLockMode,
        parked::{ParkedGoroutine, ParkedGraph},
    },
    model::{
        HoldMode,
        raw::{RawCycleEntry, RawFinding, RawHolder, RawStack, RawStuckLock},
    },
    target::TargetProcess,
};

/// Longest pause between two snapshots.
pub(super) const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(1);
/// The pause before the snapshot that confirms a cycle.
pub(super) const CONFIRM_GAP: Duration = Duration::from_millis(100);
/// Snapshots are spaced at least this many times their own duration apart.
const COST_RATIO: u32 = 20;

/// Why the goroutines could not be read.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The runtime's goroutine list could not be found or failed validation: says what.
    #[error("the goroutine list cannot be read: {0}")]
    Unreadable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What a snapshot found, and the limits it hit.
#[derive(Debug, Default)]
pub struct ParkedSnapshot {
    pub goroutines: Vec<ParkedGoroutine>,
    /// Notes on what was left out (a goroutine count or stack depth cap hit, …).
    pub notes: Vec<String>,
}

/// Reads the goroutines of the live process with their lock waits and holds.
pub trait GoroutineSource: Send {
    /// One snapshot of `process`.
    ///
    /// # Errors
    /// When the runtime's data cannot be read at all.
    fn snapshot(&mut self, process: &dyn TargetProcess) -> Result<ParkedSnapshot, SnapshotError>;
}

/// What the probes' model knows that a snapshot does not.
pub(super) trait TracedView {
    /// The holders the probes saw take `lock`.
    fn traced_holders(&self, lock: u64) -> Vec<RawHolder>;
    /// When `lock` was last released or handed over, while it has waiters.
    fn last_release(&self, lock: u64) -> Option<u64>;
    /// When goroutine `goid` began to wait for `lock`, when a probe saw it.
    fn wait_start(&self, goid: u64, lock: u64) -> Option<u64>;
    /// Whether the model reported `lock` as stuck already.
    fn reported_stuck(&self, lock: u64) -> bool;
}

/// A cycle as a set: its (goroutine, waited lock) pairs.
type CycleKey = BTreeSet<(u64, u64)>;

/// The snapshot side of the Go tracker.
pub(super) struct ParkedWatch {
    source: Box<dyn GoroutineSource>,
    stuck_after_ns: u64,
    next_at: Option<Instant>,
    /// Waits seen in the first snapshot: they predate the attach.
    at_attach: Option<HashSet<(u64, u64)>>,
    /// When each (goroutine, lock) wait was first seen (`CLOCK_MONOTONIC` ns).
    first_seen: HashMap<(u64, u64), u64>,
    /// Cycles seen once, awaiting the confirming snapshot.
    pending: Vec<CycleKey>,
    reported: HashSet<CycleKey>,
    /// Stuck locks reported, with their waiter count then (reported again when it
    /// doubles, like the traced model).
    stuck_reported: HashMap<u64, usize>,
    notes: BTreeSet<String>,
    /// Set when snapshots failed: none is tried again.
    disabled: bool,
    pub(super) snapshots: u64,
    pub(super) snapshot_time: Duration,
    /// Goroutines in the last snapshot.
    pub(super) last_goroutines: usize,
    /// When the next lock with waiters reaches the stuck threshold, if one will.
    next_stuck_due_ns: Option<u64>,
    /// When the last snapshot was taken, and how long it took.
    last: Option<(Instant, Duration)>,
}

impl ParkedWatch {
    pub(super) fn new(source: Box<dyn GoroutineSource>, stuck_after: Duration) -> Self {
        Self {
            source,
            stuck_after_ns: u64::try_from(stuck_after.as_nanos()).unwrap_or(u64::MAX),
            next_at: None,
            at_attach: None,
            first_seen: HashMap::default(),
            pending: Vec::new(),
            reported: HashSet::new(),
            stuck_reported: HashMap::default(),
            notes: BTreeSet::new(),
            disabled: false,
            snapshots: 0,
            snapshot_time: Duration::ZERO,
            last_goroutines: 0,
            next_stuck_due_ns: None,
            last: None,
        }
    }

    /// Brings the next snapshot forward, as far as the cost bound allows: a probe saw a
    /// goroutine park on a lock and stay parked, so a deadlock may have just formed.
    pub(super) fn hurry(&mut self) {
        let Some((at, took)) = self.last else {
            return;
        };
        let earliest = at + CONFIRM_GAP.max(took * COST_RATIO);
        self.next_at = Some(self.next_at.map_or(earliest, |n| n.min(earliest)));
    }

    /// Whether snapshots are taken (the goroutine list could be read so far).
    pub(super) fn is_active(&self) -> bool {
        !self.disabled
    }

    /// Whether a cycle awaits its confirming snapshot.
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Notes on what the snapshots left out, and what they cost.
    pub(super) fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.notes.iter().cloned().collect();
        if self.snapshots > 0 {
            notes.push(format!(
                "goroutines read from the runtime {} times, {:.1} ms each on average, {} goroutines in the last",
                self.snapshots,
                (self.snapshot_time / u32::try_from(self.snapshots).unwrap_or(u32::MAX))
                    .as_secs_f64()
                    * 1e3,
                self.last_goroutines
            ));
        }
        notes
    }

    /// Takes a snapshot when one is due and returns the findings it confirms.
    /// `deadlocked` holds the locks of deadlocks already reported (by either side):
    /// cycles and stuck locks over them are not reported again. `traced_holders` gives
    /// the holders the probes saw take a lock, for locks no stack names a holder of.
    pub(super) fn findings(
        &mut self,
        process: &dyn TargetProcess,
        now_ns: u64,
        deadlocked: &mut HashSet<u64>,
        traced: &dyn TracedView,
    ) -> Vec<RawFinding> {
        if self.disabled || self.next_at.is_some_and(|at| Instant::now() < at) {
            return Vec::new();
        }
        let started = Instant::now();
        let snapshot = match self.source.snapshot(process) {
            Ok(s) => s,
            Err(err) => {
                self.disabled = true;
                self.notes.insert(format!(
                    "goroutines parked before the attach are not seen: {}",
                    crate::error_chain(&err)
                ));
                return Vec::new();
            }
        };
        let took = started.elapsed();
        self.last = Some((started, took));
        self.snapshots += 1;
        self.snapshot_time += took;
        self.last_goroutines = snapshot.goroutines.len();
        self.notes.extend(snapshot.notes);
        let graph = ParkedGraph::new(snapshot.goroutines);
        let out = self.examine(&graph, process, now_ns, deadlocked, traced);
        // A cycle's confirmation, or a lock that becomes stuck, is not put off for cost:
        // it is one more snapshot, and the operator waits for it.
        let mut gap = if self.pending.is_empty() {
            SNAPSHOT_INTERVAL.max(took * COST_RATIO)
        } else {
            CONFIRM_GAP
        };
        if let Some(due_ns) = self.next_stuck_due_ns {
            let until = Duration::from_nanos(due_ns.saturating_sub(now_ns));
            gap = gap.min(until.max(CONFIRM_GAP));
        }
        self.next_at = Some(Instant::now() + gap);
        out
    }

    fn examine(
        &mut self,
        graph: &ParkedGraph,
        process: &dyn TargetProcess,
        now_ns: u64,
        deadlocked: &mut HashSet<u64>,
        traced: &dyn TracedView,
    ) -> Vec<RawFinding> {
        let waits: HashSet<(u64, u64)> = graph
            .goroutines()
            .iter()
            .filter_map(|g| g.wait.map(|w| (g.goid, w.lock)))
            .collect();
        if self.at_attach.is_none() {
            self.at_attach = Some(waits.clone());
        }
        self.first_seen.retain(|k, _| waits.contains(k));
        for &k in &waits {
            self.first_seen.entry(k).or_insert(now_ns);
        }
        let mut out = self.confirmed_cycles(graph, process, deadlocked, traced);
        out.extend(self.stuck_locks(graph, now_ns, deadlocked, traced));
        out
    }

    /// Cycles of this snapshot that the previous one showed too, their locks still taken.
    fn confirmed_cycles(
        &mut self,
        graph: &ParkedGraph,
        process: &dyn TargetProcess,
        deadlocked: &mut HashSet<u64>,
        traced: &dyn TracedView,
    ) -> Vec<RawFinding> {
        let gs = graph.goroutines();
        let empty = HashSet::new();
        let at_attach = self.at_attach.as_ref().unwrap_or(&empty);
        let mut out = Vec::new();
        // Cycles: reported when the previous snapshot showed them too.
        let pending = std::mem::take(&mut self.pending);
        for cycle in graph.cycles() {
            let key: CycleKey = cycle
                .iter()
                .map(|e| (gs[e.goroutine].goid, e.waits_for))
                .collect();
            if self.reported.contains(&key)
                || cycle.iter().all(|e| deadlocked.contains(&e.waits_for))
            {
                continue;
            }
            let still_taken = cycle.iter().all(|e| {
                let mode = gs[e.goroutine].wait.map_or(GoLockMode::Write, |w| w.mode);
                lock_taken(process, e.waits_for, mode)
            });
            if !pending.contains(&key) || !still_taken {
                self.pending.push(key);
                continue;
            }
            deadlocked.extend(cycle.iter().map(|e| e.waits_for));
            self.reported.insert(key);
            out.push(RawFinding::Deadlock(
                cycle
                    .iter()
                    .map(|e| {
                        let g = &gs[e.goroutine];
                        let wait = g.wait;
                        RawCycleEntry {
                            goid: Some(g.goid),
                            tid: 0,
                            holds: e.holds,
                            waits_for: e.waits_for,
                            waiting: RawStack::GoUnwound(g.stack.clone()),
                            waiting_since_ns: wait
                                .and_then(|w| w.since_ns)
                                .or_else(|| traced.wait_start(g.goid, e.waits_for)),
                            blocked_before_attach: at_attach.contains(&(g.goid, e.waits_for)),
                            // Go waits (semaphore acquires) have no timeout the tracer reads.
                            timed: false,
                            gives_up_at_ns: None,
                            holding_since_ns: None,
                            holder_evidence: e.evidence,
                            acquired: RawStack::None,
                        }
                    })
                    .collect(),
            ));
        }

        out
    }

    /// Locks some goroutine of this snapshot has waited for longer than the threshold.
    fn stuck_locks(
        &mut self,
        graph: &ParkedGraph,
        now_ns: u64,
        deadlocked: &HashSet<u64>,
        traced: &dyn TracedView,
    ) -> Vec<RawFinding> {
        let gs = graph.goroutines();
        let mut out = Vec::new();
        // Stuck locks: some goroutine has waited for them longer than the threshold.
        self.next_stuck_due_ns = None;
        for lock in graph.contended_locks() {
            if deadlocked.contains(&lock.lock) || traced.reported_stuck(lock.lock) {
                continue;
            }
            // The lock's own waiters (indexed by the graph), not a scan of everyone.
            let oldest_seen = graph
                .waiters_of(lock.lock)
                .iter()
                .map(|&i| &gs[i])
                .filter_map(|g| {
                    // A park the probes saw starts the wait exactly: a goroutine that woke
                    // and parked again between two snapshots looks unmoved to them.
                    traced
                        .wait_start(g.goid, lock.lock)
                        .or_else(|| self.first_seen.get(&(g.goid, lock.lock)).copied())
                })
                .min()
                .unwrap_or(now_ns);
            let since = lock
                .oldest_wait_ns
                .map_or(oldest_seen, |t| t.min(oldest_seen));
            let since = traced
                .last_release(lock.lock)
                .map_or(since, |r| r.max(since));
            if now_ns.saturating_sub(since) < self.stuck_after_ns {
                let due = since.saturating_add(self.stuck_after_ns);
                self.next_stuck_due_ns = Some(self.next_stuck_due_ns.map_or(due, |d| d.min(due)));
                continue;
            }
            if let Some(&before) = self.stuck_reported.get(&lock.lock)
                && lock.waiters < before.saturating_mul(2)
            {
                continue;
            }
            self.stuck_reported.insert(lock.lock, lock.waiters);
            let mut holders: Vec<RawHolder> = lock
                .holders
                .iter()
                .map(|&(i, evidence)| RawHolder {
                    goid: gs[i].goid,
                    state: gs[i].state,
                    evidence,
                    acquired: RawStack::GoUnwound(gs[i].stack.clone()),
                })
                .collect();
            if holders.is_empty() {
                holders = traced.traced_holders(lock.lock);
            }
            out.push(RawFinding::StuckLock(RawStuckLock {
                addr: lock.lock,
                mode: match lock.mode {
                    GoLockMode::Read => HoldMode::Read,
                    GoLockMode::Write => HoldMode::Write,
                },
                held_ns: now_ns.saturating_sub(since),
                holders,
                waiters: lock.waiters,
                readers_waiting: lock.readers_waiting,
                writers_waiting: lock.writers_waiting,
            }));
        }
        out
    }

    /// Whether this side already reported `lock` as stuck (the traced model then need
    /// not).
    pub(super) fn reported_stuck(&self, lock: u64) -> bool {
        self.stuck_reported.contains_key(&lock)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{
        go::parked::{ParkedHold, ParkedWait},
        model::{HolderEvidence, HolderState},
        target::fake::FakeProcess,
    };

    const A: u64 = 0xc000_1000;
    const B: u64 = 0xc000_2000;

    /// Hands out the snapshots it is given, the last one forever.
    struct Scripted(Arc<Mutex<Vec<Vec<ParkedGoroutine>>>>);

    impl GoroutineSource for Scripted {
        fn snapshot(&mut self, _: &dyn TargetProcess) -> Result<ParkedSnapshot, SnapshotError> {
            let mut script = self.0.lock().unwrap();
            let goroutines = if script.len() > 1 {
                script.remove(0)
            } else {
                script[0].clone()
            };
            Ok(ParkedSnapshot {
                goroutines,
                notes: Vec::new(),
            })
        }
    }

    struct Broken;

    /// A model that saw nothing.
    struct NothingTraced;

    impl TracedView for NothingTraced {
        fn traced_holders(&self, _: u64) -> Vec<RawHolder> {
            Vec::new()
        }

        fn last_release(&self, _: u64) -> Option<u64> {
            None
        }

        fn wait_start(&self, _: u64, _: u64) -> Option<u64> {
            None
        }

        fn reported_stuck(&self, _: u64) -> bool {
            false
        }
    }

    impl GoroutineSource for Broken {
        fn snapshot(&mut self, _: &dyn TargetProcess) -> Result<ParkedSnapshot, SnapshotError> {
            Err(SnapshotError::Unreadable(
                "runtime.allgs failed validation".into(),
            ))
        }
    }

    fn parked(goid: u64, wait: Option<u64>, holds: &[u64]) -> ParkedGoroutine {
        ParkedGoroutine {
            goid,
            state: HolderState::Blocked,
            wait: wait.map(|lock| ParkedWait {
                lock,
                mode: GoLockMode::Write,
                drains_readers: false,
                since_ns: None,
            }),
            holds: holds
                .iter()
                .map(|&lock| ParkedHold {
                    lock,
                    mode: GoLockMode::Write,
                    evidence: HolderEvidence::DeferredUnlock,
                })
                .collect(),
            stack: vec![0x40_1000 + goid],
        }
    }

    /// A process whose mutexes at `A` and `B` are locked.
    fn locked() -> FakeProcess {
        FakeProcess::new(7)
            .region(A, vec![0; 16], "rw-p", None)
            .region(B, vec![0; 16], "rw-p", None)
            .poke(A, &1_i32.to_ne_bytes())
            .poke(B, &1_i32.to_ne_bytes())
    }

    fn watch(script: Vec<Vec<ParkedGoroutine>>) -> ParkedWatch {
        ParkedWatch::new(
            Box::new(Scripted(Arc::new(Mutex::new(script)))),
            Duration::from_secs(1),
        )
    }

    fn look(w: &mut ParkedWatch, process: &FakeProcess, now_ns: u64) -> Vec<RawFinding> {
        w.findings(process, now_ns, &mut HashSet::new(), &NothingTraced)
    }

    /// Guards the deadlock that formed before the attach: seen in the first snapshot,
    /// reported after the confirming one, once, with its goroutines marked as blocked
    /// before the attach and their holds' evidence.
    #[test]
    fn a_cycle_parked_before_the_attach_is_reported_after_two_snapshots() {
        let abba = vec![parked(7, Some(B), &[A]), parked(8, Some(A), &[B])];
        let mut w = watch(vec![abba]);
        let process = locked();
        assert!(
            look(&mut w, &process, 1_000).is_empty(),
            "first sighting only"
        );
        assert!(w.has_pending());
        assert!(look(&mut w, &process, 2_000).is_empty(), "not due yet");
        std::thread::sleep(CONFIRM_GAP);
        let found = look(&mut w, &process, 3_000);
        let [RawFinding::Deadlock(entries)] = found.as_slice() else {
            panic!("one deadlock: {found:?}");
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (entries[0].goid, entries[0].holds, entries[0].waits_for),
            (Some(7), A, B)
        );
        assert!(entries.iter().all(|e| e.blocked_before_attach));
        assert!(
            entries
                .iter()
                .all(|e| e.holder_evidence == Some(HolderEvidence::DeferredUnlock))
        );
        assert_eq!(entries[1].waiting, RawStack::GoUnwound(vec![0x40_1008]));
        std::thread::sleep(SNAPSHOT_INTERVAL);
        assert!(look(&mut w, &process, 4_000).is_empty(), "reported once");
    }

    /// Guards against reporting a cycle whose locks the target's memory shows free (a
    /// snapshot torn by goroutines that moved while it was read).
    #[test]
    fn a_cycle_over_free_locks_is_not_reported() {
        let abba = vec![parked(7, Some(B), &[A]), parked(8, Some(A), &[B])];
        let mut w = watch(vec![abba]);
        let free = FakeProcess::new(7)
            .region(A, vec![0; 16], "rw-p", None)
            .region(B, vec![0; 16], "rw-p", None);
        for now in [1_000, 2_000] {
            assert!(look(&mut w, &free, now).is_empty());
            std::thread::sleep(CONFIRM_GAP);
        }
    }

    /// Guards the stuck lock of a holder named by its deferred unlock: reported once its
    /// oldest waiter has waited past the threshold, and again only when the pile of
    /// waiters doubles.
    #[test]
    fn a_stuck_lock_is_reported_past_the_threshold_and_again_when_waiters_double() {
        let holder = parked(3, None, &[A]);
        let two = vec![
            holder.clone(),
            parked(10, Some(A), &[]),
            parked(11, Some(A), &[]),
        ];
        let mut three = two.clone();
        three.push(parked(12, Some(A), &[]));
        let mut four = three.clone();
        four.push(parked(13, Some(A), &[]));
        let mut w = watch(vec![two.clone(), two, three, four]);
        let process = locked();
        assert!(look(&mut w, &process, 1_000_000_000).is_empty(), "not yet");
        std::thread::sleep(SNAPSHOT_INTERVAL);
        let found = look(&mut w, &process, 2_000_000_000);
        let [RawFinding::StuckLock(stuck)] = found.as_slice() else {
            panic!("one stuck lock: {found:?}");
        };
        assert_eq!(
            (stuck.addr, stuck.waiters, stuck.held_ns),
            (A, 2, 1_000_000_000)
        );
        assert_eq!(stuck.holders.len(), 1);
        assert_eq!(stuck.holders[0].goid, 3);
        assert_eq!(stuck.holders[0].evidence, HolderEvidence::DeferredUnlock);
        std::thread::sleep(SNAPSHOT_INTERVAL);
        assert!(
            look(&mut w, &process, 3_000_000_000).is_empty(),
            "3 < 2 × 2"
        );
        std::thread::sleep(SNAPSHOT_INTERVAL);
        assert_eq!(look(&mut w, &process, 4_000_000_000).len(), 1, "4 ≥ 2 × 2");
    }

    /// Guards the fallback when the goroutine list cannot be read: one note naming why,
    /// no findings, and no further attempts.
    #[test]
    fn an_unreadable_goroutine_list_gives_one_note() {
        let mut w = ParkedWatch::new(Box::new(Broken), Duration::from_secs(1));
        assert!(look(&mut w, &FakeProcess::new(7), 1).is_empty());
        assert!(look(&mut w, &FakeProcess::new(7), 2).is_empty());
        let notes = w.notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("runtime.allgs failed validation"),
            "{notes:?}"
        );
        assert_eq!(w.snapshots, 0);
    }
}
