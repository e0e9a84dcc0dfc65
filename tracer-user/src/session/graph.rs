//! Snapshots of the native graphs for pictures (`--graph`): the wait-for graph as it
//! stands (every wait and every known hold, not only a cycle's) and the lock-order graph,
//! named through the session's naming.

use crate::{
    assemble::Naming,
    lock_order::Actor,
    model::graph::{EdgeKind, GraphSnapshot},
    native::waitgraph::WaitGraph,
};

/// The wait-for graph `graph` as it stands, cycles highlighted.
pub(super) fn wait_for(title: String, graph: &WaitGraph, naming: &mut dyn Naming) -> GraphSnapshot {
    let mut g = GraphSnapshot::new(title);
    for (tid, lock) in graph.all_waits() {
        if g.full() {
            g.edges_left_out += 1;
            continue;
        }
        let name = naming.thread_name(tid);
        let t = g.thread(tid, None, &name);
        let l = g.lock(&naming.lock(lock));
        g.edge(t, l, EdgeKind::WaitsFor, None);
    }
    for (lock, tid) in graph.all_holds() {
        if g.full() {
            g.edges_left_out += 1;
            continue;
        }
        let name = naming.thread_name(tid);
        let t = g.thread(tid, None, &name);
        let l = g.lock(&naming.lock(lock));
        g.edge(l, t, EdgeKind::HeldBy, None);
    }
    g.highlight_cycles();
    g
}

/// The lock-order graph from its `edges` (held, then taken, by whom), cycles highlighted.
pub(super) fn lock_order(
    title: String,
    edges: &[(u64, u64, Actor)],
    naming: &mut dyn Naming,
) -> GraphSnapshot {
    let mut g = GraphSnapshot::new(title);
    for &(from, to, actor) in edges {
        if g.full() {
            g.edges_left_out += 1;
            continue;
        }
        let name = naming.thread_name(actor.tid);
        let by = match actor.goid {
            Some(goid) => format!("goroutine {goid}"),
            None if name.is_empty() => format!("thread {}", actor.tid),
            None => format!("{name} ({})", actor.tid),
        };
        let f = g.lock(&naming.lock(from));
        let t = g.lock(&naming.lock(to));
        g.edge(f, t, EdgeKind::Order, Some(by));
    }
    g.highlight_cycles();
    g
}
