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

/// The Go wait-for graph from the goroutines' `waits` (goroutine, thread, lock) and
/// `holds` (lock, goroutine, thread), cycles highlighted. A goroutine id of 0 (unknown)
/// is drawn as its thread.
pub(super) fn go_wait_for(
    title: String,
    waits: &[(u64, u32, u64)],
    holds: &[(u64, u64, u32)],
    naming: &mut dyn Naming,
) -> GraphSnapshot {
    let mut g = GraphSnapshot::new(title);
    let node = |g: &mut GraphSnapshot, goid: u64, tid: u32, naming: &mut dyn Naming| {
        if goid == 0 {
            let name = naming.thread_name(tid);
            g.thread(tid, None, &name)
        } else {
            g.thread(tid, Some(goid), "")
        }
    };
    for &(goid, tid, lock) in waits {
        if g.full() {
            g.edges_left_out += 1;
            continue;
        }
        let who = node(&mut g, goid, tid, naming);
        let l = g.lock(&naming.lock(lock));
        g.edge(who, l, EdgeKind::WaitsFor, None);
    }
    for &(lock, goid, tid) in holds {
        if g.full() {
            g.edges_left_out += 1;
            continue;
        }
        let who = node(&mut g, goid, tid, naming);
        let l = g.lock(&naming.lock(lock));
        g.edge(l, who, EdgeKind::HeldBy, None);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        assemble::Stack,
        model::{LockRef, raw::RawStack},
    };

    /// Locks named `lock_<addr>`; thread 1 named `one`, the others unknown.
    struct Names;

    impl Naming for Names {
        fn lock(&mut self, addr: u64) -> LockRef {
            LockRef {
                addr,
                name: Some(format!("lock_{addr:x}")),
                location: None,
                name_source: None,
            }
        }

        fn stack(&mut self, _stack: &RawStack) -> Stack {
            Stack::default()
        }

        fn thread_name(&mut self, tid: u32) -> String {
            if tid == 1 {
                "one".into()
            } else {
                String::new()
            }
        }

        fn is_lock_internal(&self, _function: &str) -> bool {
            false
        }
    }

    fn lit_edges(g: &GraphSnapshot) -> Vec<(&str, &str)> {
        g.edges
            .iter()
            .filter(|e| e.highlighted)
            .map(|e| (e.from.as_str(), e.to.as_str()))
            .collect()
    }

    #[test]
    fn the_whole_native_graph_with_its_cycle_lit() {
        let mut graph = WaitGraph::new();
        // 1 and 2 deadlock on 0xa and 0xb; 3 waits for 0xa too, holding 0xc.
        graph.add_holder(0xa, 1);
        graph.add_holder(0xb, 2);
        graph.add_holder(0xc, 3);
        graph.add_wait(1, 0xb);
        graph.add_wait(2, 0xa);
        graph.add_wait(3, 0xa);
        let g = wait_for("deadlock".into(), &graph, &mut Names);
        assert_eq!(g.edges.len(), 6);
        assert_eq!(
            lit_edges(&g),
            [
                ("t1", "l0xb"),
                ("t2", "l0xa"),
                ("l0xa", "t1"),
                ("l0xb", "t2")
            ]
        );
        let label = |id: &str| g.nodes.iter().find(|n| n.id == id).unwrap().label.clone();
        assert_eq!(label("t1"), "one (1)");
        assert_eq!(label("t3"), "thread 3");
        assert_eq!(label("l0xc"), "lock_c (0xc)");
        assert!(!g.nodes.iter().find(|n| n.id == "t3").unwrap().highlighted);
    }

    #[test]
    fn goroutines_by_id_and_unknown_ones_by_thread() {
        let waits = [(7, 100, 0xa), (0, 1, 0xb)];
        let holds = [(0xa, 8, 101), (0xb, 7, 100)];
        let g = go_wait_for("end".into(), &waits, &holds, &mut Names);
        let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["g7", "l0xa", "t1", "l0xb", "g8"]);
        assert_eq!(g.nodes[0].label, "goroutine 7");
        assert_eq!(g.nodes[2].label, "one (1)");
        assert!(lit_edges(&g).is_empty(), "no cycle");
    }

    #[test]
    fn lock_orders_say_who() {
        let edges = [
            (0xa, 0xb, Actor { tid: 1, goid: None }),
            (
                0xb,
                0xa,
                Actor {
                    tid: 2,
                    goid: Some(9),
                },
            ),
        ];
        let g = lock_order("orders".into(), &edges, &mut Names);
        assert_eq!(lit_edges(&g), [("l0xa", "l0xb"), ("l0xb", "l0xa")]);
        assert_eq!(g.edges[0].label.as_deref(), Some("one (1)"));
        assert_eq!(g.edges[1].label.as_deref(), Some("goroutine 9"));
    }
}
