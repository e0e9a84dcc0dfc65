//! The lock graph of a goroutine snapshot: who waits for and who holds which
//! `sync.Mutex`/`RWMutex`, from what the goroutines' own stacks say (no probes), and the
//! findings it supports: wait-for cycles and locks whose waiters never move.
//!
//! This is how goroutines parked before the attach are seen at all, and how holders are
//! named when the fast paths are not probed. Pure: the snapshot is read elsewhere
//! (`go::goroutines` reads the runtime's goroutines, `go::defers` their pending deferred
//! unlocks); this module only reasons about it.
//!
//! Edges of the wait-for graph (Go's `RWMutex`: a writer first takes the inner mutex `w`,
//! then waits for the readers that got in before it to leave, *draining*):
//! - a reader waiting for `L` waits for the writers of `L`: write holders and the writer
//!   draining it (which already holds `w`);
//! - a writer waiting for `w` (or a `Mutex` waiter) waits for the same;
//! - a draining writer waits for the read holders of `L`.
//!
//! Only goroutines that both wait and hold (or drain) can be on a cycle, so the search
//! runs over those alone: a pile of thousands of parked readers costs nothing.
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use rustc_hash::FxHashMap as HashMap;

use crate::{
    go::lock_model::GoLockMode,
    model::{HolderEvidence, HolderState},
};

/// Longest cycle searched for: a deadlock of more goroutines is not reported.
pub const MAX_PARKED_CYCLE_LEN: usize = 16;
/// Most cycles reported from one snapshot.
pub const MAX_PARKED_CYCLES: usize = 64;

/// What a goroutine of the snapshot waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkedWait {
    /// The lock (the `Mutex` or `RWMutex`, not its semaphore).
    pub lock: u64,
    /// `Read` for an `RLock`, `Write` for a `Mutex` or an `RWMutex.Lock`.
    pub mode: GoLockMode,
    /// A writer that holds `w` and waits for the readers to leave.
    pub drains_readers: bool,
    /// When it parked (`CLOCK_MONOTONIC`, ns), when the runtime recorded it.
    pub since_ns: Option<u64>,
}

/// A lock a goroutine of the snapshot holds, and how that is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkedHold {
    pub lock: u64,
    pub mode: GoLockMode,
    pub evidence: HolderEvidence,
}

/// One goroutine of a snapshot, as far as locks go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedGoroutine {
    pub goid: u64,
    /// Running, blocked (parked) or unknown; never exited (it is in the snapshot).
    pub state: HolderState,
    pub wait: Option<ParkedWait>,
    pub holds: Vec<ParkedHold>,
    /// Its program counter, then its callers' return addresses (runtime addresses).
    pub stack: Vec<u64>,
}

/// One goroutine of a cycle: it holds `holds`, which the previous entry waits for, and
/// waits for `waits_for`, held (or drained) by the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkedCycleEntry {
    /// Index into [`ParkedGraph::goroutines`].
    pub goroutine: usize,
    pub holds: u64,
    /// How it is known to hold `holds`; `None` for a draining writer (it holds `w` by
    /// being where it is).
    pub evidence: Option<HolderEvidence>,
    pub waits_for: u64,
}

/// A lock with waiters in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedLock {
    pub lock: u64,
    /// `Write` when a writer holds (or drains) it or a `Mutex` waiter waits; `Read` when
    /// only readers are known to hold it.
    pub mode: GoLockMode,
    /// Indexes of the goroutines known to hold it, with the evidence.
    pub holders: Vec<(usize, HolderEvidence)>,
    pub waiters: usize,
    pub readers_waiting: usize,
    pub writers_waiting: usize,
    /// The earliest recorded park time of its waiters.
    pub oldest_wait_ns: Option<u64>,
}

/// Who waits for and holds what, in one snapshot.
#[derive(Debug, Default)]
pub struct ParkedGraph {
    goroutines: Vec<ParkedGoroutine>,
    /// Lock → goroutines holding it (index, mode, evidence).
    holders: HashMap<u64, Vec<(usize, GoLockMode, HolderEvidence)>>,
    /// Lock → goroutines waiting for it.
    waiters: HashMap<u64, Vec<usize>>,
}

impl ParkedGraph {
    /// Indexes a snapshot. A goroutine's holds are deduplicated (a frame's deferred
    /// unlock may also be found through its `_defer` record).
    #[must_use]
    pub fn new(mut goroutines: Vec<ParkedGoroutine>) -> Self {
        let mut holders: HashMap<u64, Vec<(usize, GoLockMode, HolderEvidence)>> =
            HashMap::default();
        let mut waiters: HashMap<u64, Vec<usize>> = HashMap::default();
        for (i, g) in goroutines.iter_mut().enumerate() {
            let mut seen = BTreeSet::new();
            g.holds.retain(|h| seen.insert((h.lock, h.mode)));
            for h in &g.holds {
                holders
                    .entry(h.lock)
                    .or_default()
                    .push((i, h.mode, h.evidence));
            }
            if let Some(w) = g.wait {
                waiters.entry(w.lock).or_default().push(i);
            }
        }
        Self {
            goroutines,
            holders,
            waiters,
        }
    }

    #[must_use]
    pub fn goroutines(&self) -> &[ParkedGoroutine] {
        &self.goroutines
    }

    /// Indexes of the goroutines waiting for `lock`.
    #[must_use]
    pub fn waiters_of(&self, lock: u64) -> &[usize] {
        self.waiters.get(&lock).map_or(&[], Vec::as_slice)
    }

    /// The goroutines that keep a waiter of `lock` waiting, with how each is
    /// known to (`None`: a draining writer).
    fn blockers(&self, lock: u64, drains: bool) -> Vec<(usize, Option<HolderEvidence>)> {
        let mut out = Vec::new();
        let holds = self.holders.get(&lock).map_or(&[][..], Vec::as_slice);
        if drains {
            // A draining writer waits for the readers inside.
            out.extend(
                holds
                    .iter()
                    .filter(|h| h.1 == GoLockMode::Read)
                    .map(|h| (h.0, Some(h.2))),
            );
            return out;
        }
        // Readers and writers alike wait for the writer side: its holders, and a writer
        // draining the lock (it holds `w`). A reader never waits for other readers.
        out.extend(
            holds
                .iter()
                .filter(|h| h.1 == GoLockMode::Write)
                .map(|h| (h.0, Some(h.2))),
        );
        if let Some(ws) = self.waiters.get(&lock) {
            out.extend(
                ws.iter()
                    .filter(|&&w| self.goroutines[w].wait.is_some_and(|x| x.drains_readers))
                    .map(|&w| (w, None)),
            );
        }
        out
    }

    /// Wait-for cycles between goroutines, each once (starting at its lowest index), at
    /// most [`MAX_PARKED_CYCLES`], each at most [`MAX_PARKED_CYCLE_LEN`] long.
    #[must_use]
    pub fn cycles(&self) -> Vec<Vec<ParkedCycleEntry>> {
        // Out-edges of the goroutines that can be on a cycle: they wait, and someone can
        // wait for them (they hold a lock or drain one).
        let mut edges: HashMap<usize, Vec<(usize, u64, Option<HolderEvidence>)>> =
            HashMap::default();
        for (i, g) in self.goroutines.iter().enumerate() {
            let Some(w) = g.wait else { continue };
            if g.holds.is_empty() && !w.drains_readers {
                continue;
            }
            let next = self
                .blockers(w.lock, w.drains_readers)
                .into_iter()
                .map(|(to, evidence)| (to, w.lock, evidence))
                .collect();
            edges.insert(i, next);
        }
        let mut starts: Vec<usize> = edges.keys().copied().collect();
        starts.sort_unstable();
        let mut found: Vec<Vec<ParkedCycleEntry>> = Vec::new();
        let mut seen: BTreeSet<Vec<usize>> = BTreeSet::new();
        for &start in &starts {
            // Depth-first search for paths back to `start` through goroutines with a
            // higher index (so each cycle is found from its lowest member only).
            let mut path: Vec<(usize, u64, Option<HolderEvidence>)> = Vec::new();
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let out = edges.get(&node).map_or(&[][..], Vec::as_slice);
                if *next >= out.len() || found.len() >= MAX_PARKED_CYCLES {
                    stack.pop();
                    path.pop();
                    continue;
                }
                let (to, lock, evidence) = out[*next];
                *next += 1;
                if to == start {
                    let mut members: Vec<usize> = stack.iter().map(|s| s.0).collect();
                    let mut full = path.clone();
                    full.push((to, lock, evidence));
                    members.sort_unstable();
                    if seen.insert(members) {
                        found.push(Self::cycle_entries(&stack, &full));
                    }
                    continue;
                }
                if to < start
                    || stack.len() >= MAX_PARKED_CYCLE_LEN
                    || stack.iter().any(|s| s.0 == to)
                    || !edges.contains_key(&to)
                {
                    continue;
                }
                path.push((to, lock, evidence));
                stack.push((to, 0));
            }
        }
        found
    }

    /// The entries of a cycle: `stack[k]` waits for `steps[k].1`, held by `steps[k].0`
    /// (`stack[k + 1]`, and the last step leads back to `stack[0]`).
    fn cycle_entries(
        stack: &[(usize, usize)],
        steps: &[(usize, u64, Option<HolderEvidence>)],
    ) -> Vec<ParkedCycleEntry> {
        let n = stack.len();
        (0..n)
            .map(|k| {
                let me = stack[k].0;
                // What I hold is what the previous member waits for.
                let (_, prev_lock, evidence) = steps[(k + n - 1) % n];
                ParkedCycleEntry {
                    goroutine: me,
                    holds: prev_lock,
                    evidence,
                    waits_for: steps[k].1,
                }
            })
            .collect()
    }

    /// Every lock with waiters, with its known holders and waiter counts, sorted by
    /// address.
    #[must_use]
    pub fn contended_locks(&self) -> Vec<ParkedLock> {
        let mut out: Vec<ParkedLock> = self
            .waiters
            .iter()
            .map(|(&lock, ws)| {
                let mut readers = 0;
                let mut writers = 0;
                let mut oldest: Option<u64> = None;
                for &w in ws {
                    let Some(wait) = self.goroutines[w].wait else {
                        continue;
                    };
                    match wait.mode {
                        GoLockMode::Read => readers += 1,
                        GoLockMode::Write => writers += 1,
                    }
                    if let Some(t) = wait.since_ns {
                        oldest = Some(oldest.map_or(t, |o| o.min(t)));
                    }
                }
                let holds = self.holders.get(&lock).map_or(&[][..], Vec::as_slice);
                let writer_holds = holds.iter().any(|h| h.1 == GoLockMode::Write);
                let holders: Vec<(usize, HolderEvidence)> = holds
                    .iter()
                    .filter(|h| !writer_holds || h.1 == GoLockMode::Write)
                    .map(|h| (h.0, h.2))
                    .collect();
                let read_held = !holders.is_empty() && !writer_holds;
                ParkedLock {
                    lock,
                    // Held for reading (a draining writer may wait for the readers), or
                    // by a writer, known or not.
                    mode: if read_held {
                        GoLockMode::Read
                    } else {
                        GoLockMode::Write
                    },
                    holders,
                    waiters: ws.len(),
                    readers_waiting: readers,
                    writers_waiting: writers,
                    oldest_wait_ns: oldest,
                }
            })
            .collect();
        out.sort_by_key(|l| l.lock);
        out
    }
}
