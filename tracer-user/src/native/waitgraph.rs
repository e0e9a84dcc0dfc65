//! The live wait-for graph: which thread waits for which lock, and which threads hold each lock.
//!
//! A deadlock is a cycle thread → lock it waits for → a holder of that lock → the lock that
//! holder waits for → … → back to the first thread. Each thread waits for at most one lock at a
//! time, but a lock may have several holders (an rwlock held for reading), so the search has to
//! branch on holders.
//!
//! The graph can hold ~100k threads, so every search is iterative (no recursion that could
//! overflow the stack) and bounded in depth, in cycles found and in steps.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
};

// Fx hashing: keys are TIDs and lock addresses, and hashing dominated the event pipeline.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use smallvec::SmallVec;

/// A kernel thread id (later also goroutine ids, hence a plain alias rather than a newtype).
pub type Tid = u32;

/// The user-space address of a lock word; it identifies the lock.
pub type LockAddr = u64;

/// At most this many cycles are returned by [`WaitGraph::cycles_through`]: one is enough to
/// report a deadlock, a few more help to see its shape, thousands only flood the report.
pub const MAX_CYCLES: usize = 64;

/// Cycles longer than this many threads are not searched for. Real deadlocks involve a handful
/// of threads; the bound keeps a search over a 100k-thread wait chain cheap.
pub const MAX_DEPTH: usize = 1024;

/// At most this many cycles are returned by [`WaitGraph::all_cycles`].
pub const MAX_ALL_CYCLES: usize = 1024;

/// Step budget of one [`WaitGraph::cycles_through`] call. Enumerating simple cycles is
/// exponential in the worst case (many rwlocks with many readers that wait on each other), and
/// a tracer must not stall on it.
const MAX_STEPS: usize = 1 << 20;

/// Step budget of one [`WaitGraph::all_cycles`] call, shared by all its components.
const MAX_ALL_STEPS: usize = 1 << 24;

/// One thread's place in a wait-for cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CycleEdge {
    /// The thread.
    pub tid: Tid,
    /// The lock this thread holds that the previous thread of the cycle waits for.
    pub holds: LockAddr,
    /// The lock this thread waits for; the next thread of the cycle holds it.
    pub waits_for: LockAddr,
}

/// A simple wait-for cycle (no thread and no lock appears twice), in canonical form.
///
/// `edges[i].waits_for` is held by `edges[(i + 1) % n].tid`, and
/// `edges[i].holds == edges[(i + n - 1) % n].waits_for`. The edges are rotated so that the one
/// with the smallest tid comes first, so the same deadlock found from different threads
/// compares equal (which is how each deadlock is reported once).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cycle {
    /// The threads of the cycle, in wait order, starting with the smallest tid.
    pub edges: Vec<CycleEdge>,
}

impl Cycle {
    /// Builds the canonical cycle from a path: `tids[i]` waits for `locks[i]`, which is held by
    /// `tids[i + 1]`, and the last lock is held by `tids[0]`. Both slices have the same length.
    fn from_path(tids: &[Tid], locks: &[LockAddr]) -> Self {
        let n = tids.len().min(locks.len());
        let mut edges: Vec<CycleEdge> = (0..n)
            .map(|i| CycleEdge {
                tid: tids[i],
                holds: locks[(i + n - 1) % n],
                waits_for: locks[i],
            })
            .collect();
        if let Some(first) = edges
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.tid)
            .map(|(i, _)| i)
        {
            edges.rotate_left(first);
        }
        Self { edges }
    }

    /// Number of threads in the cycle.
    #[must_use]
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    /// Whether the cycle has no threads (never the case for cycles the graph returns).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// The threads of the cycle in wait order.
    pub fn tids(&self) -> impl Iterator<Item = Tid> + '_ {
        self.edges.iter().map(|e| e.tid)
    }
}

/// The live wait-for graph.
///
/// Threads that neither wait nor hold anything take no memory: empty sets are removed.
/// Holder sets are small sorted inline vectors (a mutex has one holder, a thread holds a
/// few locks), so the per-event updates allocate nothing; waiters are only counted per
/// lock, and listed by scanning `waits` on the rare paths that need them.
#[derive(Clone, Debug, Default)]
pub struct WaitGraph {
    /// thread → the lock it waits for.
    waits: HashMap<Tid, LockAddr>,
    /// lock → number of threads waiting for it.
    waiters: HashMap<LockAddr, usize>,
    /// lock → threads holding it. Sorted sets keep every search and listing deterministic.
    holders: HashMap<LockAddr, SortedSet<Tid>>,
    /// thread → locks it holds (reverse of `holders`, for `held_by` and `remove_thread`).
    holds: HashMap<Tid, SortedSet<LockAddr>>,
}

/// A small sorted set stored inline: no allocation up to four members.
#[derive(Clone, Debug, Default)]
struct SortedSet<T>(SmallVec<[T; 4]>);

impl<T: Ord + Copy> SortedSet<T> {
    fn insert(&mut self, value: T) {
        if let Err(at) = self.0.binary_search(&value) {
            self.0.insert(at, value);
        }
    }

    fn remove(&mut self, value: &T) {
        if let Ok(at) = self.0.binary_search(value) {
            self.0.remove(at);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, value: &T) -> bool {
        self.0.binary_search(value).is_ok()
    }

    fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T> IntoIterator for SortedSet<T>
where
    [T; 4]: smallvec::Array<Item = T>,
{
    type Item = T;
    type IntoIter = smallvec::IntoIter<[T; 4]>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Iterator over the holders of one lock, `None` for a lock nobody holds.
type HolderIter<'a> = Option<std::slice::Iter<'a, Tid>>;

impl WaitGraph {
    /// An empty graph.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// `waiter` now waits for `lock` (replaces any previous wait of that thread).
    pub fn add_wait(&mut self, waiter: Tid, lock: LockAddr) {
        self.end_wait(waiter);
        self.waits.insert(waiter, lock);
        *self.waiters.entry(lock).or_default() += 1;
    }

    /// The wait of `waiter` ended (no-op if none).
    pub fn end_wait(&mut self, waiter: Tid) {
        if let Some(lock) = self.waits.remove(&waiter)
            && let Some(count) = self.waiters.get_mut(&lock)
        {
            *count -= 1;
            if *count == 0 {
                self.waiters.remove(&lock);
            }
        }
    }

    /// The lock `waiter` currently waits for.
    #[must_use]
    pub fn waiting_on(&self, waiter: Tid) -> Option<LockAddr> {
        self.waits.get(&waiter).copied()
    }

    /// The threads waiting for `lock`, in ascending tid order.
    pub fn waiters(&self, lock: LockAddr) -> impl Iterator<Item = Tid> + '_ {
        let mut tids: Vec<Tid> = if self.waiter_count(lock) == 0 {
            Vec::new()
        } else {
            self.waits
                .iter()
                .filter(|&(_, &l)| l == lock)
                .map(|(&t, _)| t)
                .collect()
        };
        tids.sort_unstable();
        tids.into_iter()
    }

    /// How many threads wait for `lock`.
    #[must_use]
    pub fn waiter_count(&self, lock: LockAddr) -> usize {
        self.waiters.get(&lock).copied().unwrap_or(0)
    }

    /// `holder` now holds `lock`, in addition to any other holders.
    ///
    /// Holders: a mutex has one, an rwlock held for reading may have several.
    pub fn add_holder(&mut self, lock: LockAddr, holder: Tid) {
        self.holders.entry(lock).or_default().insert(holder);
        self.holds.entry(holder).or_default().insert(lock);
    }

    /// `holder` no longer holds `lock` (no-op if it did not).
    pub fn remove_holder(&mut self, lock: LockAddr, holder: Tid) {
        remove_from(&mut self.holders, lock, holder);
        remove_from(&mut self.holds, holder, lock);
    }

    /// Replaces all holders of `lock` with `holder` (or with nobody).
    pub fn set_sole_holder(&mut self, lock: LockAddr, holder: Option<Tid>) {
        // The common case on a busy lock: the same owner is seen by several waiters.
        let current = self.holders.get(&lock).map(|set| set.0.as_slice());
        if current == holder.as_ref().map(std::slice::from_ref) {
            return;
        }
        if let Some(old) = self.holders.remove(&lock) {
            for tid in old {
                remove_from(&mut self.holds, tid, lock);
            }
        }
        if let Some(tid) = holder {
            self.add_holder(lock, tid);
        }
    }

    /// The threads holding `lock`, in ascending tid order.
    pub fn holders(&self, lock: LockAddr) -> impl Iterator<Item = Tid> + '_ {
        self.holders.get(&lock).into_iter().flatten().copied()
    }

    /// The locks `tid` holds, in ascending address order.
    pub fn held_by(&self, tid: Tid) -> impl Iterator<Item = LockAddr> + '_ {
        self.holds.get(&tid).into_iter().flatten().copied()
    }

    /// Removes a thread entirely (it exited): its wait and its holdings.
    pub fn remove_thread(&mut self, tid: Tid) {
        self.end_wait(tid);
        if let Some(locks) = self.holds.remove(&tid) {
            for lock in locks {
                remove_from(&mut self.holders, lock, tid);
            }
        }
    }

    /// Forgets the holders of `lock` when nobody waits for it (the lock was folded out
    /// of the tracked locks): a holder named by a long-gone wait would stay forever.
    pub fn forget_lock(&mut self, lock: LockAddr) {
        if self.waiter_count(lock) == 0 {
            self.set_sole_holder(lock, None);
        }
    }

    /// Every wait (thread, lock), sorted: for a picture of the graph.
    #[must_use]
    pub fn all_waits(&self) -> Vec<(Tid, LockAddr)> {
        let mut waits: Vec<(Tid, LockAddr)> = self.waits.iter().map(|(&t, &l)| (t, l)).collect();
        waits.sort_unstable();
        waits
    }

    /// Every hold (lock, thread), sorted: for a picture of the graph.
    #[must_use]
    pub fn all_holds(&self) -> Vec<(LockAddr, Tid)> {
        let mut holds: Vec<(LockAddr, Tid)> = self
            .holders
            .iter()
            .flat_map(|(&l, tids)| tids.into_iter().map(move |&t| (l, t)))
            .collect();
        holds.sort_unstable();
        holds
    }

    /// Number of threads currently waiting for some lock.
    #[must_use]
    pub fn waiting_threads(&self) -> usize {
        self.waits.len()
    }

    /// All simple cycles passing through `tid`'s current wait edge, each canonical, sorted.
    ///
    /// Empty when `tid` waits for nothing. Cycles longer than [`MAX_DEPTH`] threads are not
    /// found, at most [`MAX_CYCLES`] are returned, and the enumeration stops after a fixed step
    /// budget, so this stays cheap on huge graphs (call it whenever a wait begins).
    #[must_use]
    pub fn cycles_through(&self, tid: Tid) -> Vec<Cycle> {
        if !self.waits.contains_key(&tid) {
            return Vec::new();
        }
        // Fast path, taken by almost every wait of a healthy process: a cycle needs a
        // holder of the awaited lock that is itself waiting (or is `tid`). Answering
        // that needs no allocation.
        if !self
            .successors(tid)
            .into_iter()
            .flatten()
            .any(|h| *h == tid || self.waits.contains_key(h))
        {
            return Vec::new();
        }
        // Only threads that `tid` reaches and that reach back to `tid` can be on a cycle
        // through it. Restricting the enumeration to them makes the common no-deadlock case
        // linear instead of a walk over every path leaving `tid`.
        let scope = self.scope_of(tid);
        let mut out = Vec::new();
        let mut steps = MAX_STEPS;
        self.enumerate(
            tid,
            |t| scope.contains(&t),
            MAX_CYCLES,
            &mut steps,
            &mut out,
        );
        out.sort_unstable();
        out
    }

    /// Every cycle in the graph (for periodic re-checks), canonical, deduplicated and sorted.
    ///
    /// At most [`MAX_ALL_CYCLES`] cycles, none longer than [`MAX_DEPTH`] threads, and the work
    /// is bounded by a step budget. Small components are searched first, so that when a huge
    /// tangle exhausts the budget, the ordinary small deadlocks have already been found.
    #[must_use]
    pub fn all_cycles(&self) -> Vec<Cycle> {
        let mut out = Vec::new();
        let mut steps = MAX_ALL_STEPS;
        let mut nodes: Vec<Tid> = self.waits.keys().copied().collect();
        nodes.sort_unstable();
        // Johnson's scheme: in each strongly connected component, find the cycles through its
        // smallest thread, then drop that thread and split the rest into components again.
        // Every cycle is found exactly once, from its smallest thread, and threads that lie on
        // no cycle are never searched from.
        let mut queue: BinaryHeap<Reverse<(usize, Vec<Tid>)>> = self
            .components(&nodes, &mut steps)
            .into_iter()
            .map(|c| Reverse((c.len(), c)))
            .collect();
        while let Some(Reverse((_, component))) = queue.pop() {
            let Some((&start, rest)) = component.split_first() else {
                continue;
            };
            let limit = MAX_ALL_CYCLES.saturating_sub(out.len());
            if limit == 0 || steps == 0 {
                break;
            }
            let members: HashSet<Tid> = rest.iter().copied().collect();
            self.enumerate(start, |t| members.contains(&t), limit, &mut steps, &mut out);
            for sub in self.components(rest, &mut steps) {
                queue.push(Reverse((sub.len(), sub)));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The lock `tid` waits for and the holders of that lock: the successors of `tid`.
    fn successors(&self, tid: Tid) -> HolderIter<'_> {
        let lock = self.waits.get(&tid)?;
        self.holders.get(lock).map(SortedSet::iter)
    }

    /// Threads within [`MAX_DEPTH`] steps of `start` that can also reach `start` back.
    fn scope_of(&self, start: Tid) -> HashSet<Tid> {
        // Forward BFS, recording reverse edges among waiting threads as it goes.
        let mut depth: HashMap<Tid, usize> = [(start, 0)].into_iter().collect::<HashMap<_, _>>();
        let mut reverse: HashMap<Tid, Vec<Tid>> = HashMap::default();
        let mut queue = VecDeque::from([start]);
        while let Some(t) = queue.pop_front() {
            let d = depth.get(&t).copied().unwrap_or(0);
            for &h in self.successors(t).into_iter().flatten() {
                // A holder that waits for nothing has no way back: it cannot be on a cycle.
                if !self.waits.contains_key(&h) {
                    continue;
                }
                reverse.entry(h).or_default().push(t);
                if d + 1 < MAX_DEPTH && !depth.contains_key(&h) {
                    depth.insert(h, d + 1);
                    queue.push_back(h);
                }
            }
        }
        // Backward BFS from `start` over the recorded edges.
        let mut scope = [start].into_iter().collect::<HashSet<_>>();
        let mut queue = VecDeque::from([start]);
        while let Some(t) = queue.pop_front() {
            for &p in reverse.get(&t).into_iter().flatten() {
                if depth.contains_key(&p) && scope.insert(p) {
                    queue.push_back(p);
                }
            }
        }
        scope
    }

    /// Appends to `out` the canonical simple cycles through `start` whose other threads all
    /// satisfy `allowed`, until `out` holds `limit` more cycles or `steps` runs out.
    ///
    /// Iterative DFS: one frame (an iterator over the holders of the lock the thread waits
    /// for) per thread on the current path, so depth costs heap, not stack.
    fn enumerate(
        &self,
        start: Tid,
        allowed: impl Fn(Tid) -> bool,
        limit: usize,
        steps: &mut usize,
        out: &mut Vec<Cycle>,
    ) {
        let Some(&first_lock) = self.waits.get(&start) else {
            return;
        };
        let target = out.len().saturating_add(limit);
        let mut tids = vec![start];
        let mut locks = vec![first_lock];
        let mut on_path_tids = [start].into_iter().collect::<HashSet<_>>();
        let mut on_path_locks = [first_lock].into_iter().collect::<HashSet<_>>();
        let mut frames: Vec<HolderIter<'_>> = vec![self.successors(start)];

        while let Some(frame) = frames.last_mut() {
            if out.len() >= target || *steps == 0 {
                return;
            }
            *steps -= 1;
            let Some(&h) = frame.as_mut().and_then(Iterator::next) else {
                // This thread's holders are exhausted: backtrack.
                frames.pop();
                if let Some(t) = tids.pop() {
                    on_path_tids.remove(&t);
                }
                if let Some(l) = locks.pop() {
                    on_path_locks.remove(&l);
                }
                continue;
            };
            if h == start {
                out.push(Cycle::from_path(&tids, &locks));
                continue;
            }
            if tids.len() >= MAX_DEPTH || on_path_tids.contains(&h) || !allowed(h) {
                continue;
            }
            let Some(&next_lock) = self.waits.get(&h) else {
                continue;
            };
            // A lock repeated on the path means a shorter cycle exists inside this one (the
            // threads between the two waits for it); that one is reported on its own.
            if on_path_locks.contains(&next_lock) {
                continue;
            }
            tids.push(h);
            locks.push(next_lock);
            on_path_tids.insert(h);
            on_path_locks.insert(next_lock);
            frames.push(self.successors(h));
        }
    }

    /// Strongly connected components of the subgraph induced by `nodes` (sorted tids of
    /// waiting threads) that can contain a cycle: more than one thread, or one thread waiting
    /// for a lock it holds. Each component is sorted. Stops early when `steps` runs out.
    ///
    /// Iterative Tarjan, so a 100k-thread chain does not overflow the stack.
    fn components(&self, nodes: &[Tid], steps: &mut usize) -> Vec<Vec<Tid>> {
        const UNVISITED: usize = usize::MAX;
        let dense: HashMap<Tid, usize> = nodes.iter().enumerate().map(|(i, &t)| (t, i)).collect();
        let mut index = vec![UNVISITED; nodes.len()];
        let mut low = vec![0; nodes.len()];
        let mut on_stack = vec![false; nodes.len()];
        let mut stack: Vec<usize> = Vec::new();
        let mut next_index = 0;
        let mut components = Vec::new();

        for root in 0..nodes.len() {
            if index[root] != UNVISITED {
                continue;
            }
            let mut work: Vec<(usize, HolderIter<'_>)> = Vec::new();
            index[root] = next_index;
            low[root] = next_index;
            next_index += 1;
            stack.push(root);
            on_stack[root] = true;
            work.push((root, self.successors(nodes[root])));

            while let Some((v, succ)) = work.last_mut() {
                if *steps == 0 {
                    return components;
                }
                *steps -= 1;
                let v = *v;
                if let Some(&h) = succ.as_mut().and_then(Iterator::next) {
                    // Holders outside `nodes` (running threads, or threads already searched
                    // from) are not part of this subgraph.
                    let Some(&w) = dense.get(&h) else {
                        continue;
                    };
                    if index[w] == UNVISITED {
                        index[w] = next_index;
                        low[w] = next_index;
                        next_index += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        work.push((w, self.successors(h)));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component.push(nodes[w]);
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 || self.is_self_wait(nodes[v]) {
                        component.sort_unstable();
                        components.push(component);
                    }
                }
            }
        }
        components
    }

    /// Whether `tid` waits for a lock it holds itself.
    fn is_self_wait(&self, tid: Tid) -> bool {
        self.waits
            .get(&tid)
            .and_then(|lock| self.holders.get(lock))
            .is_some_and(|h| h.contains(&tid))
    }
}

/// Removes `value` from the set under `key`, dropping the set when it becomes empty.
fn remove_from<K, V>(map: &mut HashMap<K, SortedSet<V>>, key: K, value: V)
where
    K: std::hash::Hash + Eq + Copy,
    V: Ord + Copy,
{
    if let Some(set) = map.get_mut(&key) {
        set.remove(&value);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    const LA: LockAddr = 0xa000;
    const LB: LockAddr = 0xb000;
    const LC: LockAddr = 0xc000;

    fn edge(tid: Tid, holds: LockAddr, waits_for: LockAddr) -> CycleEdge {
        CycleEdge {
            tid,
            holds,
            waits_for,
        }
    }

    /// Thread 10 holds A and waits for B; thread 20 holds B and waits for A.
    fn abba() -> WaitGraph {
        let mut g = WaitGraph::new();
        g.add_holder(LA, 10);
        g.add_holder(LB, 20);
        g.add_wait(10, LB);
        g.add_wait(20, LA);
        g
    }

    #[test]
    fn abba_found_from_either_thread_and_canonical() {
        let g = abba();
        let from_10 = g.cycles_through(10);
        let from_20 = g.cycles_through(20);
        let expected = Cycle {
            edges: vec![edge(10, LA, LB), edge(20, LB, LA)],
        };
        assert_eq!(from_10, vec![expected.clone()]);
        assert_eq!(from_20, vec![expected]);
    }

    #[test]
    fn cycle_invariants_hold() {
        let g = abba();
        for c in g.cycles_through(20) {
            let n = c.len();
            for i in 0..n {
                assert_eq!(c.edges[i].holds, c.edges[(i + n - 1) % n].waits_for);
                let next = c.edges[(i + 1) % n].tid;
                assert!(g.holders(c.edges[i].waits_for).any(|h| h == next));
            }
        }
    }

    #[test]
    fn three_cycle() {
        let mut g = WaitGraph::new();
        // 3 holds A waits B, 1 holds B waits C, 2 holds C waits A.
        g.add_holder(LA, 3);
        g.add_holder(LB, 1);
        g.add_holder(LC, 2);
        g.add_wait(3, LB);
        g.add_wait(1, LC);
        g.add_wait(2, LA);
        let cycles = g.cycles_through(3);
        assert_eq!(
            cycles,
            vec![Cycle {
                edges: vec![edge(1, LB, LC), edge(2, LC, LA), edge(3, LA, LB)],
            }]
        );
        assert_eq!(g.cycles_through(2), cycles);
        assert_eq!(g.all_cycles(), cycles);
    }

    #[test]
    fn self_deadlock_is_a_one_cycle() {
        let mut g = WaitGraph::new();
        g.add_holder(LA, 7);
        g.add_wait(7, LA);
        assert_eq!(
            g.cycles_through(7),
            vec![Cycle {
                edges: vec![edge(7, LA, LA)],
            }]
        );
        assert_eq!(g.all_cycles().len(), 1);
    }

    #[test]
    fn no_cycle_when_holder_is_not_waiting() {
        let mut g = WaitGraph::new();
        g.add_holder(LA, 1);
        g.add_holder(LB, 2);
        g.add_wait(1, LB); // 1 waits for 2, but 2 runs.
        g.add_wait(3, LA); // 3 waits for 1.
        assert!(g.cycles_through(1).is_empty());
        assert!(g.cycles_through(3).is_empty());
        assert!(g.cycles_through(2).is_empty());
        assert!(g.all_cycles().is_empty());
    }

    #[test]
    fn rwlock_with_two_readers() {
        // Readers 1 and 2 hold rwlock A. Writer 3 holds mutex B and waits for A.
        // Reader 2 waits for B: 2 → B → 3 → A → {1, 2}; the cycle goes through reader 2 only.
        let mut g = WaitGraph::new();
        g.add_holder(LA, 1);
        g.add_holder(LA, 2);
        g.add_holder(LB, 3);
        g.add_wait(3, LA);
        g.add_wait(2, LB);
        assert_eq!(g.holders(LA).collect::<Vec<_>>(), vec![1, 2]);
        let expected = vec![Cycle {
            edges: vec![edge(2, LA, LB), edge(3, LB, LA)],
        }];
        assert_eq!(g.cycles_through(3), expected);
        assert_eq!(g.cycles_through(2), expected);
        assert!(g.cycles_through(1).is_empty());
        assert_eq!(g.all_cycles(), expected);
    }

    #[test]
    fn rwlock_upgrade_reports_only_simple_cycles() {
        // Readers 1 and 2 both hold A and both try to take it for writing: each waits for
        // itself (and for the other). The 1 → 2 → 1 loop repeats lock A, so it is not simple:
        // it adds nothing over the two one-thread cycles and is not reported.
        let mut g = WaitGraph::new();
        g.add_holder(LA, 1);
        g.add_holder(LA, 2);
        g.add_wait(1, LA);
        g.add_wait(2, LA);
        let self1 = Cycle {
            edges: vec![edge(1, LA, LA)],
        };
        let self2 = Cycle {
            edges: vec![edge(2, LA, LA)],
        };
        assert_eq!(g.cycles_through(1), vec![self1.clone()]);
        assert_eq!(g.cycles_through(2), vec![self2.clone()]);
        assert_eq!(g.all_cycles(), vec![self1, self2]);
    }

    #[test]
    fn two_cycles_through_one_thread() {
        // 1 waits for A held by readers 2 and 3; both wait for B held by 1.
        let mut g = WaitGraph::new();
        g.add_holder(LA, 2);
        g.add_holder(LA, 3);
        g.add_holder(LB, 1);
        g.add_wait(1, LA);
        g.add_wait(2, LB);
        g.add_wait(3, LB);
        let cycles = g.cycles_through(1);
        assert_eq!(
            cycles,
            vec![
                Cycle {
                    edges: vec![edge(1, LB, LA), edge(2, LA, LB)],
                },
                Cycle {
                    edges: vec![edge(1, LB, LA), edge(3, LA, LB)],
                },
            ]
        );
        assert_eq!(g.all_cycles(), cycles);
    }

    #[test]
    fn all_cycles_finds_cycles_not_through_the_smallest_thread() {
        // 2 waits for A, read-held by 1 and 3; 1 waits for B and 3 waits for C, both held by 2.
        // One component {1, 2, 3} with two cycles: 1-2 and 2-3.
        let mut g = WaitGraph::new();
        g.add_holder(LA, 1);
        g.add_holder(LA, 3);
        g.add_holder(LB, 2);
        g.add_holder(LC, 2);
        g.add_wait(2, LA);
        g.add_wait(1, LB);
        g.add_wait(3, LC);
        let expected = vec![
            Cycle {
                edges: vec![edge(1, LA, LB), edge(2, LB, LA)],
            },
            Cycle {
                edges: vec![edge(2, LC, LA), edge(3, LA, LC)],
            },
        ];
        assert_eq!(g.all_cycles(), expected);
        assert_eq!(g.cycles_through(2), expected);
        assert_eq!(g.cycles_through(3), expected[1..]);
    }

    #[test]
    fn end_wait_breaks_cycle() {
        let mut g = abba();
        assert_eq!(g.cycles_through(10).len(), 1);
        g.end_wait(20);
        assert!(g.cycles_through(10).is_empty());
        assert!(g.all_cycles().is_empty());
        assert_eq!(g.waiting_on(20), None);
        assert_eq!(g.waiter_count(LA), 0);
        // Ending a wait that does not exist is a no-op.
        g.end_wait(20);
        g.end_wait(999);
        assert_eq!(g.waiting_on(10), Some(LB));
    }

    #[test]
    fn add_wait_replaces_previous_wait() {
        let mut g = WaitGraph::new();
        g.add_wait(1, LA);
        g.add_wait(2, LA);
        g.add_wait(1, LB);
        assert_eq!(g.waiting_on(1), Some(LB));
        assert_eq!(g.waiters(LA).collect::<Vec<_>>(), vec![2]);
        assert_eq!(g.waiters(LB).collect::<Vec<_>>(), vec![1]);
        assert_eq!(g.waiter_count(LA), 1);
        assert_eq!(g.waiting_threads(), 2);
    }

    #[test]
    fn waiters_are_sorted() {
        let mut g = WaitGraph::new();
        for t in [5, 3, 9, 1] {
            g.add_wait(t, LA);
        }
        assert_eq!(g.waiters(LA).collect::<Vec<_>>(), vec![1, 3, 5, 9]);
        assert_eq!(g.waiter_count(LA), 4);
        assert_eq!(g.waiters(LB).count(), 0);
    }

    #[test]
    fn holders_bookkeeping() {
        let mut g = WaitGraph::new();
        g.add_holder(LB, 4);
        g.add_holder(LA, 4);
        g.add_holder(LA, 2);
        assert_eq!(g.held_by(4).collect::<Vec<_>>(), vec![LA, LB]);
        assert_eq!(g.holders(LA).collect::<Vec<_>>(), vec![2, 4]);
        g.set_sole_holder(LA, Some(9));
        assert_eq!(g.holders(LA).collect::<Vec<_>>(), vec![9]);
        assert_eq!(g.held_by(4).collect::<Vec<_>>(), vec![LB]);
        assert_eq!(g.held_by(2).count(), 0);
        g.remove_holder(LB, 4);
        assert_eq!(g.held_by(4).count(), 0);
        g.set_sole_holder(LA, None);
        assert_eq!(g.holders(LA).count(), 0);
        assert_eq!(g.held_by(9).count(), 0);
        // Nothing left behind.
        assert!(g.holders.is_empty() && g.holds.is_empty());
    }

    #[test]
    fn remove_thread_drops_wait_and_holdings() {
        let mut g = abba();
        g.add_holder(LC, 20);
        g.remove_thread(20);
        assert_eq!(g.waiting_on(20), None);
        assert_eq!(g.held_by(20).count(), 0);
        assert_eq!(g.holders(LB).count(), 0);
        assert_eq!(g.holders(LC).count(), 0);
        assert!(g.cycles_through(10).is_empty());
        assert_eq!(g.waiting_on(10), Some(LB));
        assert_eq!(g.holders(LA).collect::<Vec<_>>(), vec![10]);
    }

    /// Thread i waits for lock i, held by thread i + 1; the last thread runs free.
    fn chain(n: u32) -> WaitGraph {
        let mut g = WaitGraph::new();
        for i in 0..n {
            g.add_wait(i, u64::from(i));
            g.add_holder(u64::from(i), i + 1);
        }
        g
    }

    #[test]
    fn long_chain_is_fast_and_has_no_cycle() {
        let g = chain(100_000);
        let t = Instant::now();
        for tid in [0, 1, 50_000, 99_999] {
            assert!(g.cycles_through(tid).is_empty());
        }
        assert!(g.all_cycles().is_empty());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn long_ring_beyond_depth_bound_does_not_overflow() {
        let mut g = chain(100_000);
        // Close the ring: the first thread holds the last lock.
        g.set_sole_holder(99_999, Some(0));
        let t = Instant::now();
        // Longer than MAX_DEPTH: documented as not found, but the search must end quickly.
        assert!(g.cycles_through(0).is_empty());
        assert!(g.all_cycles().is_empty());
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t.elapsed()
        );
    }

    #[test]
    fn ring_within_depth_bound_is_found() {
        let n: u32 = 1000;
        let mut g = chain(n);
        g.set_sole_holder(u64::from(n - 1), Some(0));
        let cycles = g.cycles_through(500);
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), 1000);
        assert_eq!(cycles[0].edges[0].tid, 0);
        assert_eq!(g.all_cycles(), cycles);
    }

    #[test]
    fn depth_bound_is_exact() {
        let ring = |n: u32| {
            let mut g = chain(n);
            g.set_sole_holder(u64::from(n - 1), Some(0));
            g
        };
        let max = u32::try_from(MAX_DEPTH).expect("small");
        let g = ring(max);
        assert_eq!(g.cycles_through(max / 2).len(), 1);
        assert_eq!(g.all_cycles().len(), 1);
        let g = ring(max + 1);
        assert!(g.cycles_through(max / 2).is_empty());
        assert!(g.all_cycles().is_empty());
    }

    #[test]
    fn cycle_count_is_bounded() {
        // 1 waits for A held by 100 readers, each waiting for B held by 1: 100 cycles.
        let mut g = WaitGraph::new();
        g.add_holder(LB, 1);
        g.add_wait(1, LA);
        for r in 2..102 {
            g.add_holder(LA, r);
            g.add_wait(r, LB);
        }
        assert_eq!(g.cycles_through(1).len(), MAX_CYCLES);
        assert_eq!(g.all_cycles().len(), 100);
    }

    #[test]
    fn all_cycles_deduplicates() {
        // Two independent ABBA pairs plus a self-deadlock; every thread lies on a cycle, but
        // each cycle is listed once.
        let mut g = abba();
        g.add_holder(0x1, 30);
        g.add_holder(0x2, 40);
        g.add_wait(30, 0x2);
        g.add_wait(40, 0x1);
        g.add_holder(LC, 50);
        g.add_wait(50, LC);
        let all = g.all_cycles();
        assert_eq!(all.len(), 3);
        let mut from_each: Vec<Cycle> = [10, 20, 30, 40, 50]
            .iter()
            .flat_map(|&t| g.cycles_through(t))
            .collect();
        from_each.sort();
        from_each.dedup();
        assert_eq!(all, from_each);
        assert_eq!(all[0].tids().collect::<Vec<_>>(), vec![10, 20]);
    }

    #[test]
    fn no_wait_no_cycles() {
        let mut g = WaitGraph::new();
        g.add_holder(LA, 1);
        assert!(g.cycles_through(1).is_empty());
        assert!(g.cycles_through(42).is_empty());
    }
}
