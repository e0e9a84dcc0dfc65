//! Wait-for cycles between goroutines: the edges out of a goroutine, the search for a
//! cycle through the goroutine an event is about, the cycles found ([`GoCycle`]) queued
//! until the session takes them, and the check that a cycle still stands.
//!
//! Assumes every edge an event adds touches the event's goroutine, so searching from it
//! alone finds any cycle the event closed. A search follows holder edges only (never
//! waiter lists) and, for read-held locks, only the readers that are blocked themselves:
//! it costs the length of the path, not the number of waiters. Its depth, its steps and
//! the cycles it collects are bounded, and so are the queue and the set of cycles already
//! reported; a search cut by its step budget, and a cycle the queue or the set has no room
//! for, are counted in [`super::GoCounts`].
use rustc_hash::FxHashSet as HashSet;
use serde::Serialize;
use smallvec::SmallVec;

use super::{GoHold, GoLockMode, GoLockModel, GoWait};

/// Cycles longer than this many goroutines are not searched for: real deadlocks involve a
/// handful, and the bound keeps a search along a long wait chain cheap.
pub const MAX_CYCLE_LEN: usize = 1024;

/// At most this many cycles wait in [`GoLockModel::take_new_cycles`]; more are counted in
/// [`super::GoCounts::cycles_dropped`]. The session drains them several times a second.
pub const MAX_PENDING_CYCLES: usize = 1024;

/// Edges followed by one search at most. Searches follow holders only, so a healthy
/// process never comes near this; it bounds pathological tangles of read-held locks.
const SEARCH_STEP_BUDGET: usize = 1 << 16;

/// Cycles one search collects at most: an event closes one deadlock, rarely a few.
const MAX_CYCLES_PER_SEARCH: usize = 16;

/// Distinct cycles remembered (so each is reported once); beyond it new ones are dropped
/// and counted rather than letting a churning false-positive source grow memory.
const MAX_SEEN_CYCLES: usize = 1 << 16;

/// One goroutine's place in a wait-for cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GoCycleEntry {
    /// Its wait: the next entry of the cycle holds `waiter.lock`.
    pub waiter: GoWait,
    /// The lock it holds that the previous entry waits for.
    pub holds: u64,
    /// Its hold of `holds` (the first one for a goroutine with several read holds).
    pub hold: Option<GoHold>,
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

/// One wait-for edge: `from` waits for `to` through `lock`.
#[derive(Clone, Copy, Debug)]
struct WaitEdge {
    lock: u64,
    to: u64,
    /// The edge of a draining writer to a reader.
    drain: bool,
}

/// A goroutine on the search path and the edges out of it still to try.
struct SearchFrame {
    node: u64,
    edges: SmallVec<[WaitEdge; 4]>,
    next: usize,
}

impl GoLockModel {
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
                        || (w.mode == GoLockMode::Write && lock.readers.contains_key(&next)))
            })
    }

    /// The wait-for edges out of goroutine `key`: its wait's holders (the writer; for a
    /// write wait also the readers) and, while it drains readers as a writer, those
    /// readers. Readers that are not blocked are left out: they cannot lead anywhere.
    fn out_edges(&self, key: u64, out: &mut SmallVec<[WaitEdge; 4]>) {
        let Some(g) = self.goroutines.get(&key) else {
            return;
        };
        if let Some(wait) = &g.wait
            && let Some(lock) = self.locks.get(&wait.lock)
        {
            let writer = lock.writer.map(|h| h.key());
            if let Some(to) = writer {
                out.push(WaitEdge {
                    lock: wait.lock,
                    to,
                    drain: false,
                });
            }
            // A read wait waits for the writer only: never for readers, itself included.
            if wait.mode == GoLockMode::Write {
                out.extend(
                    lock.blocked_readers
                        .iter()
                        .filter(|&&r| Some(r) != writer)
                        .map(|&to| WaitEdge {
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
                out.extend(lock.blocked_readers.iter().map(|&to| WaitEdge {
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
    pub(super) fn search_from(&mut self, start: u64) {
        self.last_search_steps = 0;
        if !self.goroutines.get(&start).is_some_and(|g| g.blocked) {
            return;
        }
        let mut edges = SmallVec::new();
        self.out_edges(start, &mut edges);
        let mut frames = vec![SearchFrame {
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
                frames.push(SearchFrame {
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
    fn cycle_of(&self, frames: &[SearchFrame]) -> Option<GoCycle> {
        let path: Vec<(u64, WaitEdge)> = frames
            .iter()
            .map(|f| Some((f.node, *f.edges.get(f.next.checked_sub(1)?)?)))
            .collect::<Option<_>>()?;
        let n = path.len();
        let mut entries = Vec::with_capacity(n);
        for (i, &(node, edge)) in path.iter().enumerate() {
            let (_, prev) = path[(i + n - 1) % n];
            let waiter = if edge.drain {
                let hold = self.locks.get(&edge.lock)?.writer?;
                GoWait {
                    goid: hold.goid,
                    g: hold.g,
                    tid: hold.tid,
                    lock: edge.lock,
                    mode: GoLockMode::Write,
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
