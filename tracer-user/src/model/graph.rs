//! Pictures of the graphs (`--graph`): the wait-for graph as it stood at a finding or at
//! the end (threads or goroutines and locks as nodes, waits and holds as edges), and the
//! lock-order graph (locks as nodes, "taken while holding" as edges). Pure: names in,
//! nodes and edges out; `crate::sinks` renders them (Graphviz DOT).

use std::{collections::BTreeMap, fmt::Write as _};

use super::{Deadlock, HoldMode, HolderEvidence, LockOrderInversion, LockRef, StuckLock};
use crate::units;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A native thread.
    Thread,
    /// A Go goroutine.
    Goroutine,
    /// A lock.
    Lock,
}

/// One node: `id` is unique in its graph (`t1234`, `g17`, `l0x55d0c0ffee10`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphNode {
    pub id: String,
    pub kind: NodeKind,
    /// What the picture shows: `worker_a (1234)`, `lock_a (0x55d0c0ffee10)`.
    pub label: String,
    /// On a cycle.
    pub highlighted: bool,
}

/// What an edge means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// A thread waits for a lock (thread → lock).
    WaitsFor,
    /// A lock is held by a thread (lock → thread): with the waits, a wait-for cycle reads
    /// thread → lock → thread → …
    HeldBy,
    /// A lock was taken while another was held (held → taken).
    Order,
}

/// One edge, between node ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphEdge {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
    /// Shown beside the edge (which thread took an order), when any.
    pub label: Option<String>,
    /// On a cycle.
    pub highlighted: bool,
}

/// A graph as it stood at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphSnapshot {
    /// Which moment: `deadlock 1`, `wait-for graph at the end`, `lock-order graph`.
    pub title: String,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// Edges left out to bound the picture ([`MAX_GRAPH_EDGES`]).
    pub edges_left_out: usize,
    index: BTreeMap<String, usize>,
}

/// The most edges a snapshot keeps: a picture of more says nothing, and naming each lock
/// costs symbol lookups.
pub const MAX_GRAPH_EDGES: usize = 2000;

impl GraphSnapshot {
    /// An empty graph called `title`.
    #[must_use]
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    /// A graph made of its parts as they were taken apart (a recording's): each node's
    /// id indexed again.
    #[must_use]
    pub fn from_parts(
        title: String,
        nodes: Vec<GraphNode>,
        edges: Vec<GraphEdge>,
        edges_left_out: usize,
    ) -> Self {
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.id.clone(), i))
            .collect();
        Self {
            title,
            nodes,
            edges,
            edges_left_out,
            index,
        }
    }

    fn add_node(&mut self, id: String, kind: NodeKind, label: String) -> String {
        if !self.index.contains_key(&id) {
            self.index.insert(id.clone(), self.nodes.len());
            self.nodes.push(GraphNode {
                id: id.clone(),
                kind,
                label,
                highlighted: false,
            });
        }
        id
    }

    /// The node of a thread (or, with `goid`, a goroutine); returns its id.
    pub fn thread(&mut self, tid: u32, goid: Option<u64>, name: &str) -> String {
        if let Some(goid) = goid {
            return self.add_node(
                format!("g{goid}"),
                NodeKind::Goroutine,
                format!("goroutine {goid}"),
            );
        }
        let label = if name.is_empty() {
            format!("thread {tid}")
        } else {
            format!("{name} ({tid})")
        };
        self.add_node(format!("t{tid}"), NodeKind::Thread, label)
    }

    /// The node of a lock; returns its id.
    pub fn lock(&mut self, lock: &LockRef) -> String {
        self.add_node(
            format!("l{:#x}", lock.addr),
            NodeKind::Lock,
            lock.to_string(),
        )
    }

    /// An edge between two node ids; past [`MAX_GRAPH_EDGES`], only counted. Returns
    /// whether it was kept.
    pub fn edge(
        &mut self,
        from: String,
        to: String,
        kind: EdgeKind,
        label: Option<String>,
    ) -> bool {
        if self.edges.len() >= MAX_GRAPH_EDGES {
            self.edges_left_out += 1;
            return false;
        }
        self.edges.push(GraphEdge {
            from,
            to,
            kind,
            label,
            highlighted: false,
        });
        true
    }

    /// Whether the next edges would be left out.
    #[must_use]
    pub fn full(&self) -> bool {
        self.edges.len() >= MAX_GRAPH_EDGES
    }

    /// Highlights every node and edge on a cycle (in a strongly connected component of
    /// more than one node, or with an edge to itself).
    pub fn highlight_cycles(&mut self) {
        let n = self.nodes.len();
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
        for e in &self.edges {
            if let (Some(&a), Some(&b)) = (self.index.get(&e.from), self.index.get(&e.to)) {
                out[a].push(b);
            }
        }
        let component = strongly_connected(&out);
        let mut size = vec![0usize; n];
        for &c in &component {
            size[c] += 1;
        }
        for e in &mut self.edges {
            if let (Some(&a), Some(&b)) = (self.index.get(&e.from), self.index.get(&e.to))
                && component[a] == component[b]
                && (a == b || size[component[a]] > 1)
            {
                e.highlighted = true;
                self.nodes[a].highlighted = true;
                self.nodes[b].highlighted = true;
            }
        }
    }

    /// A title naming `deadlock`'s cycle: `deadlock: worker_a (1234) waits for lock_b,
    /// held by worker_b (1235), waits for lock_a`.
    #[must_use]
    pub fn deadlock_title(deadlock: &Deadlock) -> String {
        let mut title = String::from(if deadlock.will_time_out {
            "cycle of timed waits:"
        } else {
            "deadlock:"
        });
        for (i, entry) in deadlock.cycle.iter().enumerate() {
            let who = match entry.goid {
                Some(goid) => format!("goroutine {goid}"),
                None if entry.thread.is_empty() => format!("thread {}", entry.tid),
                None => format!("{} ({})", entry.thread, entry.tid),
            };
            if i > 0 {
                title.push_str(", held by");
            }
            let _ = write!(title, " {who} waits for {}", entry.waits_for.label());
        }
        title
    }

    /// The wait-for cycle of `deadlock` alone (threads or goroutines, the locks each
    /// holds and waits for), the cycle highlighted: for a deadlock whose whole graph the
    /// session cannot give (Go).
    #[must_use]
    pub fn of_deadlock(title: impl Into<String>, deadlock: &Deadlock) -> Self {
        let mut g = Self::new(title);
        g.add_deadlock(deadlock);
        g
    }

    /// Adds the waits and holds of `deadlock`'s cycle that the graph lacks (a holder the
    /// tracer knows from evidence in the process, not from a traced acquisition), then
    /// highlights the cycles.
    pub fn add_deadlock(&mut self, deadlock: &Deadlock) {
        for entry in &deadlock.cycle {
            let t = self.thread(entry.tid, entry.goid, &entry.thread);
            let held = self.lock(&entry.holds);
            let waited = self.lock(&entry.waits_for);
            self.edge_once(held, t.clone(), EdgeKind::HeldBy);
            self.edge_once(t, waited, EdgeKind::WaitsFor);
        }
        self.highlight_cycles();
    }

    fn edge_once(&mut self, from: String, to: String, kind: EdgeKind) {
        if !self
            .edges
            .iter()
            .any(|e| e.from == from && e.to == to && e.kind == kind)
        {
            self.edge(from, to, kind, None);
        }
    }

    /// The locks of `inversion` and the orders they were taken in, the cycle highlighted.
    #[must_use]
    pub fn of_inversion(title: impl Into<String>, inversion: &LockOrderInversion) -> Self {
        let mut g = Self::new(title);
        for edge in &inversion.edges {
            let from = g.lock(&edge.from);
            let to = g.lock(&edge.to);
            let by = match edge.goid {
                Some(goid) => format!("goroutine {goid}"),
                None if edge.thread.is_empty() => format!("thread {}", edge.tid),
                None => format!("{} ({})", edge.thread, edge.tid),
            };
            g.edge(from, to, EdgeKind::Order, Some(by));
        }
        g.highlight_cycles();
        g
    }
}

impl GraphSnapshot {
    /// A title naming `stuck`: `stuck lock: main.Registry.mu (0x…) held for writing for
    /// 2.41 s by goroutine 7 (exited), 12 goroutines waiting (12 to read, 0 to write)`.
    #[must_use]
    pub fn stuck_title(stuck: &StuckLock) -> String {
        let mode = match stuck.mode {
            HoldMode::Write => "writing",
            HoldMode::Read => "reading",
        };
        let by = match stuck.holders.as_slice() {
            [] => "an unknown holder".to_owned(),
            [one] => holder_label(one.goid, one.state),
            several => format!("{} goroutines", several.len()),
        };
        format!(
            "stuck lock: {} held for {mode} for {} by {by}, {}",
            stuck.lock,
            units::duration_ns(stuck.held_ns),
            waiting_label(stuck)
        )
    }

    /// The lock of `stuck`, each goroutine known to hold it (lock → goroutine; its label
    /// says where it took the lock) or one node for an unknown holder, and one node for
    /// its waiters (→ lock), all highlighted: a stuck lock is no cycle, but it is what the
    /// picture is about. The waiters are one node, as many as they are: a leaked lock's
    /// pile-up runs to the hundreds of thousands.
    #[must_use]
    pub fn of_stuck_lock(title: impl Into<String>, stuck: &StuckLock) -> Self {
        let mut g = Self::new(title);
        let lock = g.lock(&stuck.lock);
        if stuck.holders.is_empty() {
            let holder = g.add_node(
                format!("h{:#x}", stuck.lock.addr),
                NodeKind::Goroutine,
                "holder unknown".to_owned(),
            );
            g.edge(lock.clone(), holder, EdgeKind::HeldBy, None);
        }
        for holder in &stuck.holders {
            let mut label = holder_label(holder.goid, holder.state);
            if let Some(at) = &holder.acquired_at {
                // As the text report says it: a pending deferred unlock names the frame
                // that holds the lock now, not where it was taken.
                let how = if holder.evidence == Some(HolderEvidence::DeferredUnlock) {
                    "holds it in"
                } else {
                    "took it at"
                };
                let _ = write!(label, "\n{how} {at}");
            }
            let id = match holder.goid {
                Some(goid) => format!("g{goid}"),
                None => format!("h{:#x}", stuck.lock.addr),
            };
            let node = g.add_node(id, NodeKind::Goroutine, label);
            g.edge(lock.clone(), node, EdgeKind::HeldBy, None);
        }
        if stuck.waiters > 0 {
            let waiters = g.add_node(
                format!("w{:#x}", stuck.lock.addr),
                NodeKind::Goroutine,
                waiting_label(stuck),
            );
            g.edge(waiters, lock, EdgeKind::WaitsFor, None);
        }
        for node in &mut g.nodes {
            node.highlighted = true;
        }
        for edge in &mut g.edges {
            edge.highlighted = true;
        }
        g
    }
}

/// `goroutine 7 (exited)`, or `unknown holder`.
fn holder_label(goid: Option<u64>, state: super::HolderState) -> String {
    match goid {
        Some(goid) => format!("goroutine {goid} ({})", state.name()),
        None => "unknown holder".to_owned(),
    }
}

/// `12 goroutines waiting (12 to read, 0 to write)`.
fn waiting_label(stuck: &StuckLock) -> String {
    format!(
        "{} goroutine{} waiting ({} to read, {} to write)",
        stuck.waiters,
        if stuck.waiters == 1 { "" } else { "s" },
        stuck.readers_waiting,
        stuck.writers_waiting
    )
}

/// Tarjan's strongly connected components, iterative: the component of each node.
fn strongly_connected(out: &[Vec<usize>]) -> Vec<usize> {
    const NONE: usize = usize::MAX;
    let n = out.len();
    let mut index = vec![NONE; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut component = vec![NONE; n];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut next_component = 0;
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        // (node, next successor to look at)
        let mut work = vec![(root, 0usize)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut i)) = work.last_mut() {
            if let Some(&w) = out[v].get(*i) {
                *i += 1;
                if index[w] == NONE {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
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
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component[w] = next_component;
                    if w == v {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
    component
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    #[test]
    fn a_deadlock_is_its_cycle_highlighted() {
        let g = GraphSnapshot::of_deadlock("deadlock 1", &fixtures::deadlock());
        let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["t1234", "l0x55d0aa00", "l0x55d0bb00", "t1235"]);
        assert_eq!(g.edges.len(), 4);
        assert!(g.nodes.iter().all(|n| n.highlighted));
        assert!(g.edges.iter().all(|e| e.highlighted));
        assert_eq!(g.nodes[0].label, "worker-a (1234)");
        assert_eq!(g.nodes[1].label, "lock_a (0x55d0aa00)");
        assert_eq!(
            GraphSnapshot::deadlock_title(&fixtures::deadlock()),
            "deadlock: worker-a (1234) waits for lock_b, held by worker-b (1235) waits for lock_a"
        );
    }

    #[test]
    fn only_what_is_on_a_cycle_is_highlighted() {
        let mut g = GraphSnapshot::new("end");
        let (a, b) = (
            fixtures::lock(0xa, Some("a")),
            fixtures::lock(0xb, Some("b")),
        );
        // t1 waits for a, held by t2, which waits for b, held by t3: a chain, no cycle.
        let t1 = g.thread(1, None, "one");
        let t2 = g.thread(2, None, "");
        let t3 = g.thread(3, None, "three");
        let (la, lb) = (g.lock(&a), g.lock(&b));
        g.edge(t1.clone(), la.clone(), EdgeKind::WaitsFor, None);
        g.edge(la.clone(), t2.clone(), EdgeKind::HeldBy, None);
        g.edge(t2.clone(), lb.clone(), EdgeKind::WaitsFor, None);
        g.edge(lb.clone(), t3.clone(), EdgeKind::HeldBy, None);
        g.highlight_cycles();
        assert!(!g.edges.iter().any(|e| e.highlighted));
        assert_eq!(g.nodes[1].label, "thread 2");
        // t3 now waits for a: t2 → b → t3 → a → t2 is a cycle; t1 only waits on it.
        g.edge(t3, la, EdgeKind::WaitsFor, None);
        g.highlight_cycles();
        let lit: Vec<&str> = g
            .nodes
            .iter()
            .filter(|n| n.highlighted)
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(lit, ["t2", "t3", "l0xa", "l0xb"]);
        assert!(!g.edges[0].highlighted, "t1's wait is not on the cycle");
        assert_eq!(g.edges.iter().filter(|e| e.highlighted).count(), 4);
    }

    #[test]
    fn an_inversion_is_its_orders() {
        let g = GraphSnapshot::of_inversion("inversion 1", &fixtures::inversion());
        assert_eq!(g.nodes.len(), 2);
        assert_eq!(g.edges.len(), 2);
        assert!(
            g.edges
                .iter()
                .all(|e| e.highlighted && e.kind == EdgeKind::Order)
        );
        assert_eq!(g.edges[0].label.as_deref(), Some("worker-a (1234)"));
    }

    /// Guards the picture of a leaked lock: the lock, who holds it (and where it took it),
    /// and its waiters as one node however many they are, all drawn as what the picture
    /// is about; the title says how long and by whom.
    #[test]
    fn a_stuck_lock_is_its_holder_and_its_waiters() {
        let stuck = fixtures::stuck_lock();
        let g = GraphSnapshot::of_stuck_lock(GraphSnapshot::stuck_title(&stuck), &stuck);
        assert_eq!(
            g.title,
            "stuck lock: main.Registry.mu (0x40) held for writing for 2.50 s by goroutine 7 \
             (exited), 13 goroutines waiting (12 to read, 1 to write)"
        );
        let nodes: Vec<(&str, &str)> = g
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), n.label.as_str()))
            .collect();
        assert_eq!(
            nodes,
            [
                ("l0x40", "main.Registry.mu (0x40)"),
                (
                    "g7",
                    "goroutine 7 (exited)\ntook it at main.(*Registry).Update (main.go:42)"
                ),
                ("w0x40", "13 goroutines waiting (12 to read, 1 to write)"),
            ]
        );
        let edges: Vec<(&str, &str, EdgeKind)> = g
            .edges
            .iter()
            .map(|e| (e.from.as_str(), e.to.as_str(), e.kind))
            .collect();
        assert_eq!(
            edges,
            [
                ("l0x40", "g7", EdgeKind::HeldBy),
                ("w0x40", "l0x40", EdgeKind::WaitsFor),
            ]
        );
        assert!(g.nodes.iter().all(|n| n.highlighted));
        assert!(g.edges.iter().all(|e| e.highlighted));
    }

    /// Guards the picture when the holder is not known (it took the lock before the
    /// attach) and nobody waits yet: a node says so, no waiters' node.
    #[test]
    fn a_stuck_lock_with_an_unknown_holder_says_so() {
        let mut stuck = fixtures::stuck_lock();
        stuck.holders.clear();
        stuck.waiters = 0;
        stuck.readers_waiting = 0;
        stuck.writers_waiting = 0;
        let title = GraphSnapshot::stuck_title(&stuck);
        assert!(
            title.contains("by an unknown holder, 0 goroutines waiting"),
            "{title}"
        );
        let g = GraphSnapshot::of_stuck_lock(title, &stuck);
        let labels: Vec<&str> = g.nodes.iter().map(|n| n.label.as_str()).collect();
        assert_eq!(labels, ["main.Registry.mu (0x40)", "holder unknown"]);
        assert_eq!(g.edges.len(), 1);
        assert_eq!(g.edges[0].kind, EdgeKind::HeldBy);
    }

    #[test]
    fn edges_are_capped() {
        let mut g = GraphSnapshot::new("big");
        for i in 0..MAX_GRAPH_EDGES + 3 {
            let t = g.thread(u32::try_from(i).unwrap(), None, "");
            let l = g.lock(&fixtures::lock(1, None));
            g.edge(t, l, EdgeKind::WaitsFor, None);
        }
        assert_eq!(g.edges.len(), MAX_GRAPH_EDGES);
        assert_eq!(g.edges_left_out, 3);
    }
}
