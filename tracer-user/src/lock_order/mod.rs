//! Lock-order inversions: potential deadlocks predicted from the order in which locks are
//! taken, before any deadlock happens (lockdep's idea, applied to a traced process).
//!
//! Every blocking acquisition of lock B by a thread (or goroutine) that holds A adds the
//! edge A → B between the locks' *classes*; a cycle of edges is a potential deadlock: each
//! code path can run alone for years, and the first time two of them overlap the
//! program hangs. Pure logic: the analyses feed acquisitions and releases (with a class and
//! a stack handle `S` per lock), and collect [`Inversion`]s.
//!
//! - **Classes** keep the graph small when a program has a lock per object: the caller
//!   names one per lock instance ([`LockClass`]: the static that holds it, the
//!   `Type.field`, else the function that first took it), and the class is kept for the
//!   instance's life in the graph.
//! - **Chains**: the held classes plus the new one are hashed (as lockdep's chain keys);
//!   a chain seen before adds nothing new between classes, so the steady-state cost of an
//!   acquisition is one hash and one lookup.
//! - **No false alarms**:
//!   - a lock re-taken by its holder (a recursive mutex) adds no edge;
//!   - a trylock cannot block, so no edge leads to it (edges from it do);
//!   - two shared (read) holds cannot block each other, so a cycle needs, at every lock,
//!     one side that takes it exclusively;
//!   - an inversion whose every edge was always taken under one common outer lock (a
//!     *gate*) cannot deadlock: it is reported once as harmless, naming the gate, and
//!     again as harmful if an edge is later taken without it;
//!   - instances of one class nested in each other (`transfer(from, to)`) only report
//!     when one pair of instances is seen in both orders: a program that orders them by
//!     address, or by any other rule, never shows a reversed pair.
//! - **Bounded**: classes, edges, chains, same-class pairs and held depth are capped;
//!   what the caps left out is counted ([`LockOrderCounts`]).
use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use smallvec::SmallVec;

use crate::model::{
    HoldMode,
    raw::{RawInversion, RawOrderEdge, RawStack},
};

/// Most lock classes kept; locks of further classes are not ordered (counted).
pub const MAX_CLASSES: usize = 4096;
/// Most distinct (class, class) edges kept.
pub const MAX_EDGES: usize = 16_384;
/// Most validated chains remembered; past it every acquisition is validated again (only
/// slower).
pub const MAX_CHAINS: usize = 65_536;
/// Most instance → class entries kept; past it new instances get a class from their
/// acquisition without being remembered.
pub const MAX_INSTANCES: usize = 65_536;
/// Most ordered pairs of instances of one class remembered.
pub const MAX_SAME_CLASS_PAIRS: usize = 32_768;
/// Most locks one thread is tracked holding at once (lockdep's `MAX_LOCK_DEPTH` is 48).
pub const MAX_HELD: usize = 48;
/// Most threads and goroutines tracked holding locks at once.
pub const MAX_ACTORS: usize = 100_000;

/// What a lock instance belongs to, for ordering: the caller's best name for "all the locks
/// that play the same part".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockClass {
    /// A named place: the static that holds it (`lock_a`, `table+0x28`), or `Type.field`
    /// (from DWARF).
    Named(std::sync::Arc<str>),
    /// Nothing better known: the function (its entry address) that first took it.
    Site(u64),
}

/// Who took a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Actor {
    /// The thread (for a goroutine, the one it ran on).
    pub tid: u32,
    /// The goroutine, for Go.
    pub goid: Option<u64>,
}

/// One acquisition, as the analyses saw it.
#[derive(Clone, Copy, Debug)]
pub struct Acquisition<S> {
    /// The lock instance (its address).
    pub lock: u64,
    /// Exclusive or shared.
    pub mode: HoldMode,
    /// Whether it could have blocked (`false` for a trylock).
    pub blocking: bool,
    /// Where it was taken.
    pub stack: S,
}

/// One edge of an inversion: `actor` took `to` while holding `from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InversionEdge<S> {
    pub from: u64,
    pub to: u64,
    pub actor: Actor,
    /// Where `from` was taken.
    pub from_stack: S,
    /// Where `to` was then taken.
    pub to_stack: S,
}

/// A cycle in the lock order: a potential deadlock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inversion<S> {
    /// The edges in cycle order: each edge's `to` is the next edge's `from` class.
    pub edges: Vec<InversionEdge<S>>,
    /// The lock every edge of the cycle was taken under, when there is one: the cycle
    /// cannot deadlock.
    pub gate: Option<u64>,
}

/// What the caps left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockOrderCounts {
    /// Blocking acquisitions checked against the graph.
    pub acquisitions: u64,
    /// Acquisitions whose chain was already validated (a lookup, nothing else).
    pub chain_hits: u64,
    /// Acquisitions not ordered: a new class past `MAX_CLASSES`, an edge past
    /// `MAX_EDGES`, a thread past `MAX_HELD` or `MAX_ACTORS`.
    pub not_ordered: u64,
    /// Nestings of two instances of one class not remembered (past
    /// `MAX_SAME_CLASS_PAIRS`), in classes nested in both address orders (a class always
    /// nested lower address first, or always higher first, cannot have a reversed pair).
    pub pairs_not_kept: u64,
    /// Holds dropped because another thread took the lock exclusively meanwhile: their
    /// release was lost (a dropped record), or happened before the probes were in place.
    pub stale_holds: u64,
}

impl LockOrderCounts {
    /// The summary's notes: what the caps left out, and the holds found stale.
    #[must_use]
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.not_ordered > 0 || self.pairs_not_kept > 0 {
            notes.push(format!(
                "lock order: {} acquisitions were not ordered and {} nestings of two locks of \
                 one class were not remembered (the graph's caps on classes, edges, held locks \
                 and instance pairs): inversions among them may have been missed",
                self.not_ordered, self.pairs_not_kept
            ));
        }
        if self.stale_holds > 0 {
            notes.push(format!(
                "lock order: {} holds whose release was never seen were ended when another \
                 thread took their lock (records lost, or a release made as the probes were \
                 being attached)",
                self.stale_holds
            ));
        }
        notes
    }
}

impl<S> Inversion<S> {
    /// The inversion as a raw finding, each stack handle turned into its `RawStack` by
    /// `stack`.
    pub fn into_raw(self, stack: impl Fn(S) -> RawStack) -> RawInversion {
        RawInversion {
            edges: self
                .edges
                .into_iter()
                .map(|e| RawOrderEdge {
                    from: e.from,
                    to: e.to,
                    tid: e.actor.tid,
                    goid: e.actor.goid,
                    from_stack: stack(e.from_stack),
                    to_stack: stack(e.to_stack),
                })
                .collect(),
            gate: self.gate,
        }
    }
}

type ClassId = u32;

#[derive(Clone, Copy, Debug)]
struct HeldLock<S> {
    lock: u64,
    class: ClassId,
    mode: HoldMode,
    stack: S,
    /// A re-entry of a lock this actor already held (recursive mutex): no edges.
    reentry: bool,
}

/// The first time an edge was taken, in one pair of modes.
#[derive(Clone, Copy, Debug)]
struct EdgeSeen<S> {
    from_mode: HoldMode,
    to_mode: HoldMode,
    edge: InversionEdge<S>,
}

#[derive(Clone, Debug)]
struct ClassEdge<S> {
    /// One per pair of modes seen (at most four).
    seen: SmallVec<[EdgeSeen<S>; 1]>,
    /// The exclusively held locks (class, instance) every occurrence was taken under,
    /// outside `from`: the intersection over the chains seen.
    gates: SmallVec<[(ClassId, u64); 2]>,
}

/// One nesting of two instances of a class.
#[derive(Clone, Copy, Debug)]
struct PairSeen<S> {
    edge: InversionEdge<S>,
    /// The outermost exclusively held lock of another class at the time, if any.
    gate: Option<(ClassId, u64)>,
}

/// Which cycle a report is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CycleKey {
    /// A cycle of classes, rotated to start at the smallest id.
    Classes(Vec<ClassId>),
    /// Two instances of one class nested in both orders (lower address first).
    Pair(u64, u64),
}

/// How the instances of one class were nested in each other.
#[derive(Clone, Copy, Debug, Default)]
struct SameClassOrders {
    ascending: bool,
    descending: bool,
    not_kept: u64,
}

/// The lock-order graph of one process.
#[derive(Debug)]
pub struct LockOrder<S> {
    class_ids: FxHashMap<LockClass, ClassId>,
    instance_class: FxHashMap<u64, ClassId>,
    held: FxHashMap<u64, SmallVec<[HeldLock<S>; 4]>>,
    /// Who holds each held lock (keys of `held`), to drop a hold whose release was lost.
    holders: FxHashMap<u64, SmallVec<[u64; 2]>>,
    edges: FxHashMap<(ClassId, ClassId), ClassEdge<S>>,
    /// Out-edges per class, for the cycle search.
    successors: Vec<SmallVec<[ClassId; 4]>>,
    chains: FxHashSet<u64>,
    pairs: FxHashMap<(u64, u64), PairSeen<S>>,
    /// Per class nested in itself: whether a lower-then-higher address nesting was seen,
    /// a higher-then-lower one, and how many nestings the pair cap left out.
    same_class: FxHashMap<ClassId, SameClassOrders>,
    /// Cycles reported, and whether as harmless.
    reported: FxHashMap<CycleKey, bool>,
    counts: LockOrderCounts,
}

impl<S> Default for LockOrder<S> {
    fn default() -> Self {
        Self {
            class_ids: FxHashMap::default(),
            instance_class: FxHashMap::default(),
            held: FxHashMap::default(),
            holders: FxHashMap::default(),
            edges: FxHashMap::default(),
            successors: Vec::new(),
            chains: FxHashSet::default(),
            pairs: FxHashMap::default(),
            same_class: FxHashMap::default(),
            reported: FxHashMap::default(),
            counts: LockOrderCounts::default(),
        }
    }
}

/// Whether a wait in mode `waits` is blocked by a hold in mode `held`: only two shared
/// sides pass each other.
fn conflicts(waits: HoldMode, held: HoldMode) -> bool {
    !(waits == HoldMode::Read && held == HoldMode::Read)
}

impl<S: Copy> LockOrder<S> {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// One edge per pair of classes seen nested (its first occurrence: the lock held,
    /// the lock then taken, who), sorted: for a picture of the graph.
    #[must_use]
    pub fn order_edges(&self) -> Vec<(u64, u64, Actor)> {
        let mut edges: Vec<(u64, u64, Actor)> = self
            .edges
            .values()
            .filter_map(|e| e.seen.first())
            .map(|seen| (seen.edge.from, seen.edge.to, seen.edge.actor))
            .collect();
        edges.sort_unstable_by_key(|&(from, to, actor)| (from, to, actor.tid));
        edges
    }

    /// What was checked and what the caps left out.
    #[must_use]
    pub fn counts(&self) -> LockOrderCounts {
        LockOrderCounts {
            pairs_not_kept: self
                .same_class
                .values()
                .filter(|o| o.ascending && o.descending)
                .map(|o| o.not_kept)
                .sum(),
            ..self.counts
        }
    }

    /// `actor` (keyed `key`: a TID, or a goroutine's key) took `acq.lock`; `class` is
    /// called for the lock's class unless it is known already. Returns the inversions this
    /// acquisition revealed (each cycle once; again only when a harmless one turns
    /// harmful).
    pub fn acquired(
        &mut self,
        key: u64,
        actor: Actor,
        acq: &Acquisition<S>,
        class: impl FnOnce() -> LockClass,
    ) -> Vec<Inversion<S>> {
        let Some(class) = self.class_of(acq.lock, class) else {
            self.counts.not_ordered += 1;
            return Vec::new();
        };
        if !self.held.contains_key(&key) && self.held.len() >= MAX_ACTORS {
            self.counts.not_ordered += 1;
            return Vec::new();
        }
        if self
            .held
            .get(&key)
            .is_some_and(|held| held.len() >= MAX_HELD)
        {
            self.counts.not_ordered += 1;
            return Vec::new();
        }
        self.drop_stale_holds(key, acq.lock, acq.mode);
        let held = self.held.entry(key).or_default();
        if !held.iter().any(|h| h.lock == acq.lock) {
            let holders = self.holders.entry(acq.lock).or_default();
            if !holders.contains(&key) {
                holders.push(key);
            }
        }
        let reentry = held.iter().any(|h| h.lock == acq.lock);
        let before: SmallVec<[HeldLock<S>; 4]> = held.clone();
        held.push(HeldLock {
            lock: acq.lock,
            class,
            mode: acq.mode,
            stack: acq.stack,
            reentry,
        });
        if reentry || !acq.blocking || before.is_empty() {
            return Vec::new();
        }
        self.counts.acquisitions += 1;
        let mut found = Vec::new();
        self.check_same_class(&before, actor, acq, class, &mut found);
        let chain = chain_key(&before, class, acq.mode);
        if self.chains.contains(&chain) {
            self.counts.chain_hits += 1;
            return found;
        }
        let mut complete = true;
        for (i, h) in before.iter().enumerate() {
            if h.reentry || h.class == class {
                continue;
            }
            let gates: SmallVec<[(ClassId, u64); 2]> = before[..i]
                .iter()
                .filter(|g| g.mode == HoldMode::Write && !g.reentry && g.class != h.class)
                .filter(|g| g.class != class)
                .map(|g| (g.class, g.lock))
                .collect();
            let seen = EdgeSeen {
                from_mode: h.mode,
                to_mode: acq.mode,
                edge: InversionEdge {
                    from: h.lock,
                    to: acq.lock,
                    actor,
                    from_stack: h.stack,
                    to_stack: acq.stack,
                },
            };
            match self.add_edge(h.class, class, seen, &gates) {
                None => complete = false,
                Some(false) => {}
                Some(true) => found.extend(self.cycles_through(h.class, h.mode, class, acq.mode)),
            }
        }
        if complete && self.chains.len() < MAX_CHAINS {
            self.chains.insert(chain);
        }
        found
    }

    /// `key` released `lock` (its innermost hold of it).
    pub fn released(&mut self, key: u64, lock: u64) {
        let Some(held) = self.held.get_mut(&key) else {
            return;
        };
        if let Some(i) = held.iter().rposition(|h| h.lock == lock) {
            held.remove(i);
        }
        let still_held = held.iter().any(|h| h.lock == lock);
        if held.is_empty() {
            self.held.remove(&key);
        }
        if !still_held {
            self.forget_holder(lock, key);
        }
    }

    fn forget_holder(&mut self, lock: u64, key: u64) {
        if let Some(holders) = self.holders.get_mut(&lock) {
            holders.retain(|k| *k != key);
            if holders.is_empty() {
                self.holders.remove(&lock);
            }
        }
    }

    /// Before `key` takes `lock` in `mode`: any other holder it excludes (everyone, for an
    /// exclusive acquisition; writers, for a shared one) no longer holds it, whatever the
    /// graph last saw. A release record is sent at the unlock call's entry, before the
    /// lock is free, so it always comes before the next owner's acquisition: a hold still
    /// here is one whose release was lost, and left in place it would add orders from a
    /// lock its thread no longer holds (false inversions).
    fn drop_stale_holds(&mut self, key: u64, lock: u64, mode: HoldMode) {
        let Some(holders) = self.holders.get(&lock) else {
            return;
        };
        let others: SmallVec<[u64; 2]> = holders.iter().copied().filter(|&k| k != key).collect();
        for other in others {
            let Some(held) = self.held.get_mut(&other) else {
                continue;
            };
            let before = held.len();
            held.retain(|h| h.lock != lock || (mode == HoldMode::Read && h.mode == HoldMode::Read));
            let dropped = before - held.len();
            if dropped == 0 {
                continue;
            }
            self.counts.stale_holds += dropped as u64;
            if held.is_empty() {
                self.held.remove(&other);
            }
            self.forget_holder(lock, other);
        }
    }

    fn class_of(&mut self, lock: u64, class: impl FnOnce() -> LockClass) -> Option<ClassId> {
        if let Some(&id) = self.instance_class.get(&lock) {
            return Some(id);
        }
        let class = class();
        let id = if let Some(&id) = self.class_ids.get(&class) {
            id
        } else {
            if self.class_ids.len() >= MAX_CLASSES {
                return None;
            }
            let id = ClassId::try_from(self.class_ids.len()).ok()?;
            self.class_ids.insert(class, id);
            self.successors.push(SmallVec::new());
            id
        };
        if self.instance_class.len() < MAX_INSTANCES {
            self.instance_class.insert(lock, id);
        }
        Some(id)
    }

    /// Adds one occurrence of `from → to`: `Some(true)` when it is new between these
    /// classes in these modes, or took away the edge's last gate (the cycles through it
    /// must be looked at again); `None` when the edge cap left it out.
    fn add_edge(
        &mut self,
        from: ClassId,
        to: ClassId,
        seen: EdgeSeen<S>,
        gates: &[(ClassId, u64)],
    ) -> Option<bool> {
        if let Some(edge) = self.edges.get_mut(&(from, to)) {
            let had_gates = !edge.gates.is_empty();
            edge.gates
                .retain(|(class, _)| gates.iter().any(|(c, _)| c == class));
            let new_modes = !edge
                .seen
                .iter()
                .any(|s| s.from_mode == seen.from_mode && s.to_mode == seen.to_mode);
            if new_modes {
                edge.seen.push(seen);
            }
            return Some(new_modes || (had_gates && edge.gates.is_empty()));
        }
        if self.edges.len() >= MAX_EDGES {
            self.counts.not_ordered += 1;
            return None;
        }
        self.edges.insert(
            (from, to),
            ClassEdge {
                seen: SmallVec::from_elem(seen, 1),
                gates: gates.iter().copied().collect(),
            },
        );
        self.successors[from as usize].push(to);
        Some(true)
    }

    /// Nestings of two instances of one class: remembered by pair, an inversion when the
    /// reversed pair was seen.
    fn check_same_class(
        &mut self,
        before: &[HeldLock<S>],
        actor: Actor,
        acq: &Acquisition<S>,
        class: ClassId,
        found: &mut Vec<Inversion<S>>,
    ) {
        for (i, h) in before.iter().enumerate() {
            if h.reentry || h.class != class || h.lock == acq.lock {
                continue;
            }
            if !conflicts(acq.mode, h.mode) {
                // Shared inside shared: neither side can block the other's reversal.
                continue;
            }
            let gate = before[..i]
                .iter()
                .find(|g| g.mode == HoldMode::Write && !g.reentry && g.class != class)
                .map(|g| (g.class, g.lock));
            let seen = PairSeen {
                edge: InversionEdge {
                    from: h.lock,
                    to: acq.lock,
                    actor,
                    from_stack: h.stack,
                    to_stack: acq.stack,
                },
                gate,
            };
            if let Some(reverse) = self.pairs.get(&(acq.lock, h.lock)).copied() {
                let key = CycleKey::Pair(h.lock.min(acq.lock), h.lock.max(acq.lock));
                let gate = match (reverse.gate, seen.gate) {
                    (Some((c1, addr)), Some((c2, _))) if c1 == c2 => Some(addr),
                    _ => None,
                };
                if self.should_report(key, gate.is_some()) {
                    found.push(Inversion {
                        edges: vec![reverse.edge, seen.edge],
                        gate,
                    });
                }
            }
            let room = self.pairs.len() < MAX_SAME_CLASS_PAIRS;
            let orders = self.same_class.entry(class).or_default();
            if acq.lock > h.lock {
                orders.ascending = true;
            } else {
                orders.descending = true;
            }
            match self.pairs.get_mut(&(h.lock, acq.lock)) {
                Some(kept) => {
                    // A gate holds only if every nesting of the pair had it.
                    if kept.gate.map(|g| g.0) != seen.gate.map(|g| g.0) {
                        kept.gate = None;
                    }
                }
                None if room => {
                    self.pairs.insert((h.lock, acq.lock), seen);
                }
                None => {
                    if let Some(orders) = self.same_class.get_mut(&class) {
                        orders.not_kept += 1;
                    }
                }
            }
        }
    }

    /// Whether a cycle (by its key) is to be reported now, recording it.
    fn should_report(&mut self, key: CycleKey, harmless: bool) -> bool {
        match self.reported.get_mut(&key) {
            None => {
                self.reported.insert(key, harmless);
                true
            }
            Some(was_harmless) if *was_harmless && !harmless => {
                *was_harmless = false;
                true
            }
            Some(_) => false,
        }
    }

    /// The cycle through the edge `(a, a_mode) → (b, b_mode)`, if there is one: a path of
    /// edges from `b` back to `a` on which every lock is taken exclusively by one of the
    /// two edges that meet at it.
    fn cycles_through(
        &mut self,
        a: ClassId,
        a_mode: HoldMode,
        b: ClassId,
        b_mode: HoldMode,
    ) -> Option<Inversion<S>> {
        let path = self.path_back(a, a_mode, b, b_mode)?;
        // The first edge: the one just added, in these modes.
        let first = self
            .edges
            .get(&(a, b))?
            .seen
            .iter()
            .find(|s| s.from_mode == a_mode && s.to_mode == b_mode)?
            .edge;
        let mut classes = vec![a, b];
        let mut edges = vec![first];
        for &(_, to, seen) in &path {
            edges.push(seen.edge);
            if to != a {
                classes.push(to);
            }
        }
        let gate = self.common_gate(&classes);
        let key = CycleKey::Classes(canonical(&classes));
        if !self.should_report(key, gate.is_some()) {
            return None;
        }
        // Start at the edge whose `from` lock has the lowest address, for stable output.
        let start = edges
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.from)
            .map_or(0, |(i, _)| i);
        edges.rotate_left(start);
        Some(Inversion { edges, gate })
    }

    /// A path of edges from `(b, waits in b_mode)` to `a`, entering `a` in a mode that
    /// conflicts with `a_mode` (breadth-first: the shortest such cycle).
    fn path_back(
        &self,
        a: ClassId,
        a_mode: HoldMode,
        b: ClassId,
        b_mode: HoldMode,
    ) -> Option<Vec<(ClassId, ClassId, EdgeSeen<S>)>> {
        type State = (ClassId, HoldMode);
        let mut parent: FxHashMap<State, (State, EdgeSeen<S>)> = FxHashMap::default();
        let mut queue = std::collections::VecDeque::from([(b, b_mode)]);
        let start = (b, b_mode);
        while let Some(state @ (class, waits)) = queue.pop_front() {
            for &next in &self.successors[class as usize] {
                let Some(edge) = self.edges.get(&(class, next)) else {
                    continue;
                };
                for seen in &edge.seen {
                    if !conflicts(waits, seen.from_mode) {
                        continue;
                    }
                    let to = (next, seen.to_mode);
                    if next == a {
                        if !conflicts(seen.to_mode, a_mode) {
                            continue;
                        }
                        let mut path = vec![(class, next, *seen)];
                        let mut at = state;
                        while at != start {
                            let &(prev, prev_seen) = parent.get(&at)?;
                            path.push((prev.0, at.0, prev_seen));
                            at = prev;
                        }
                        path.reverse();
                        return Some(path);
                    }
                    if to == start || parent.contains_key(&to) {
                        continue;
                    }
                    parent.insert(to, (state, *seen));
                    queue.push_back(to);
                }
            }
        }
        None
    }

    /// The first exclusively held lock every edge of the cycle `classes` was taken under.
    fn common_gate(&self, classes: &[ClassId]) -> Option<u64> {
        let n = classes.len();
        let mut common: Option<SmallVec<[(ClassId, u64); 2]>> = None;
        for i in 0..n {
            let edge = self.edges.get(&(classes[i], classes[(i + 1) % n]))?;
            common = Some(match common {
                None => edge.gates.clone(),
                Some(mut gates) => {
                    gates.retain(|(class, _)| edge.gates.iter().any(|(c, _)| c == class));
                    gates
                }
            });
        }
        common?.first().map(|&(_, lock)| lock)
    }
}

/// The chain key of holding `held` and taking a lock of `class` in `mode`.
fn chain_key<S>(held: &[HeldLock<S>], class: ClassId, mode: HoldMode) -> u64 {
    let mut hasher = FxHasher::default();
    for h in held {
        (h.class, h.mode == HoldMode::Write, h.reentry).hash(&mut hasher);
    }
    (class, mode == HoldMode::Write).hash(&mut hasher);
    hasher.finish()
}

/// `classes` rotated to start at the smallest, so a cycle has one key whichever edge
/// closed it.
fn canonical(classes: &[ClassId]) -> Vec<ClassId> {
    let start = classes
        .iter()
        .enumerate()
        .min_by_key(|&(_, c)| c)
        .map_or(0, |(i, _)| i);
    let mut key = classes.to_vec();
    key.rotate_left(start);
    key
}

#[cfg(test)]
mod tests;
