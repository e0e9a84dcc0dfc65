//! Root integration tests: `--graph FILE`, the wait-for graph as Graphviz DOT, read back
//! and compared with the threads and locks the deadlocked target printed.

use std::{collections::BTreeSet, process::Command, time::Duration};

use crate::{
    common::{
        Target, as_strs, assert_success, build_target, deadlocks, describe, json_attach_args,
        json_lines, run_tracer,
    },
    lock_order::{ROUNDS, trace_rounds},
    tools,
};

/// One `digraph` of a DOT file, as the tracer writes it: one statement per line.
#[derive(Debug, Default)]
struct Digraph {
    label: String,
    /// Node id → (label, highlighted).
    nodes: Vec<(String, String, bool)>,
    /// (from, to, label, highlighted).
    edges: Vec<(String, String, String, bool)>,
}

/// The quoted strings of `line` in order, unescaped (`\"`, `\\`).
fn quoted_strings(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => s.extend(chars.next()),
                '"' => break,
                c => s.push(c),
            }
        }
        out.push(s);
    }
    out
}

/// A tiny reader for the DOT the tracer writes: `digraph "…" {`, `label="…";`, node
/// lines `"id" [… label="…" …];`, edge lines `"a" -> "b" [label="…" …];`, `}`.
fn parse_dot(text: &str) -> Vec<Digraph> {
    let mut graphs = Vec::new();
    let mut current: Option<Digraph> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("digraph ") {
            current = Some(Digraph::default());
        } else if line == "}" {
            graphs.extend(current.take());
        } else if let Some(g) = current.as_mut() {
            let strings = quoted_strings(line);
            let highlighted = line.contains("color=\"red\"");
            if line.starts_with("label=") {
                g.label.clone_from(&strings[0]);
            } else if line.contains(" -> ") {
                g.edges.push((
                    strings[0].clone(),
                    strings[1].clone(),
                    strings[2].clone(),
                    highlighted,
                ));
            } else if line.starts_with('"') {
                let label_at = line.find("label=").expect("node label");
                let label = quoted_strings(&line[label_at..])[0].clone();
                g.nodes.push((strings[0].clone(), label, highlighted));
            }
        }
    }
    graphs
}

/// Guards against: a `--graph` picture of a deadlock that is not the deadlock: missing
/// threads, locks or edges of the cycle, the cycle not highlighted, waits and holds
/// pointing the wrong way (thread → lock it waits for, lock → thread holding it), a DOT
/// file Graphviz cannot read, or no picture of the graph as it stood at the end; and the
/// same from `tracer report --graph` of a recording made after the target is gone (the
/// recording keeps the live run's graphs).
#[test]
fn a_deadlock_graph_reads_back_as_the_targets_cycle() {
    crate::common::require_root();
    tools::output(Command::new("dot").arg("-V"), "graphviz");
    let bin = build_target("abba", &[]);
    let target = Target::spawn(bin.path(), &[]);
    let (a, b) = (target.tid("worker_a"), target.tid("worker_b"));
    target.wait_in_futex(&[a, b], Duration::from_secs(5));
    let (lock_a, lock_b) = (target.lock("lock_a"), target.lock("lock_b"));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("abba.dot");
    let path_arg = path.to_string_lossy().into_owned();
    let out = run_tracer(&as_strs(&json_attach_args(
        target.pid(),
        2,
        &["--graph", &path_arg],
    )));
    assert_success(&out);
    let what = describe(&out);
    assert_eq!(deadlocks(&json_lines(&out.stdout)).len(), 1, "{what}");
    let text = std::fs::read_to_string(&path).expect("the --graph file");
    assert_abba_graphs(&text, (a, b), (lock_a, lock_b), &what);
    // Graphviz read each one: its SVG is next to the file.
    for n in 1..=2 {
        let svg = dir.path().join(format!("abba.dot.{n}.svg"));
        let svg_text = std::fs::read_to_string(&svg)
            .unwrap_or_else(|e| panic!("{}: {e}\n{what}", svg.display()));
        assert!(svg_text.contains("<svg"), "{}", svg.display());
        assert!(svg_text.contains("lock_b"), "{}", svg.display());
    }

    // The same pictures from a recording, reported after the target is gone.
    let recording = dir.path().join("abba.rec");
    let out = run_tracer(&[
        "record",
        "--pid",
        &target.pid().to_string(),
        "--duration",
        "2",
        "-o",
        &recording.to_string_lossy(),
    ]);
    assert_success(&out);
    drop(target);
    let reported = dir.path().join("report.dot");
    let out = run_tracer(&[
        "report",
        &recording.to_string_lossy(),
        "--graph",
        &reported.to_string_lossy(),
    ]);
    assert_success(&out);
    let text = std::fs::read_to_string(&reported).expect("report's --graph file");
    assert_abba_graphs(&text, (a, b), (lock_a, lock_b), &describe(&out));
}

/// Asserts the `--graph` file `text` of the ABBA deadlock of threads `a`, `b` over
/// `lock_a`, `lock_b`: two graphs (at the deadlock and at the end), each with the cycle
/// highlighted and its nodes labelled.
fn assert_abba_graphs(text: &str, (a, b): (u64, u64), (lock_a, lock_b): (u64, u64), what: &str) {
    let graphs = parse_dot(text);
    assert_eq!(
        graphs.len(),
        2,
        "the deadlock's graph and the end's\n{text}\n{what}"
    );
    let (ta, tb) = (format!("t{a}"), format!("t{b}"));
    let (la, lb) = (format!("l{lock_a:#x}"), format!("l{lock_b:#x}"));
    // worker_a holds lock_a and waits for lock_b, held by worker_b, which waits for lock_a.
    let cycle: BTreeSet<(String, String, String)> = [
        (&ta, &lb, "waits for"),
        (&lb, &tb, "held by"),
        (&tb, &la, "waits for"),
        (&la, &ta, "held by"),
    ]
    .into_iter()
    .map(|(f, t, l)| (f.clone(), t.clone(), l.to_owned()))
    .collect();
    for (i, g) in graphs.iter().enumerate() {
        let lit: BTreeSet<(String, String, String)> = g
            .edges
            .iter()
            .filter(|e| e.3)
            .map(|e| (e.0.clone(), e.1.clone(), e.2.clone()))
            .collect();
        assert_eq!(
            lit, cycle,
            "graph {i}: the highlighted edges are the cycle\n{text}"
        );
        let lit_nodes: BTreeSet<&str> = g
            .nodes
            .iter()
            .filter(|n| n.2)
            .map(|n| n.0.as_str())
            .collect();
        assert_eq!(
            lit_nodes,
            BTreeSet::from([ta.as_str(), tb.as_str(), la.as_str(), lb.as_str()]),
            "graph {i}: the highlighted nodes are the cycle's\n{text}"
        );
        let label = |id: &str| {
            g.nodes
                .iter()
                .find(|n| n.0 == id)
                .map(|n| n.1.clone())
                .unwrap_or_default()
        };
        assert_eq!(label(&ta), format!("worker_a ({a})"), "{text}");
        assert_eq!(label(&tb), format!("worker_b ({b})"), "{text}");
        assert_eq!(label(&la), format!("lock_a ({lock_a:#x})"), "{text}");
        assert_eq!(label(&lb), format!("lock_b ({lock_b:#x})"), "{text}");
    }
    assert!(graphs[0].label.starts_with("deadlock:"), "{text}");
    assert_eq!(graphs[1].label, "wait-for graph at the end", "{text}");
}

/// Guards against: `--graph --holds` leaving out the lock-order graph or the inversion's
/// picture, order edges pointing the wrong way (from the lock held to the lock then
/// taken) or credited to the wrong thread, or the inversion's cycle not highlighted.
#[test]
fn a_lock_order_graph_reads_back_as_the_targets_orders() {
    crate::common::require_root();
    let bin = build_target("order_inversion", &[]);
    let mut target = Target::spawn(bin.path(), &[&ROUNDS.to_string()]);
    let (lock_a, lock_b) = (target.lock("lock_a"), target.lock("lock_b"));
    let (ab, ba) = (target.tid("order_ab"), target.tid("order_ba"));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("order.dot");
    let path_arg = path.to_string_lossy().into_owned();
    let run = trace_rounds(&mut target, "json", &["--graph", &path_arg]);
    let text = std::fs::read_to_string(&path).expect("the --graph file");
    let graphs = parse_dot(&text);
    let (la, lb) = (format!("l{lock_a:#x}"), format!("l{lock_b:#x}"));
    // order_ab takes lock_b holding lock_a; order_ba the other way round.
    let orders: BTreeSet<(String, String, String)> = BTreeSet::from([
        (
            la.clone(),
            lb.clone(),
            format!("then taken by order_ab ({ab})"),
        ),
        (lb, la, format!("then taken by order_ba ({ba})")),
    ]);
    let titles: Vec<&str> = graphs.iter().map(|g| g.label.as_str()).collect();
    assert_eq!(
        titles,
        [
            "lock-order inversion",
            "wait-for graph at the end",
            "lock-order graph at the end"
        ],
        "{text}\n{}",
        run.what
    );
    for i in [0, 2] {
        let lit: BTreeSet<(String, String, String)> = graphs[i]
            .edges
            .iter()
            .filter(|e| e.3)
            .map(|e| (e.0.clone(), e.1.clone(), e.2.clone()))
            .collect();
        assert_eq!(lit, orders, "graph {i}\n{text}");
    }
}

/// Guards against: a Go deadlock's picture missing its goroutines or locks, drawing
/// goroutines as threads, or edges that disagree with the deadlock the report gives
/// (each goroutine waits for the lock the next one holds) or with the goroutine ids and
/// lock addresses `go_abba` printed.
#[test]
fn a_go_deadlock_graph_reads_back_as_the_targets_cycle() {
    crate::common::require_root();
    tools::output(Command::new("dot").arg("-V"), "graphviz");
    let dir = tempfile::tempdir().expect("temp dir");
    let [go, _] = crate::go_toolchain::installed();
    let bin = crate::go_toolchain::build(&go, "go_abba", dir.path(), false);
    let target = Target::spawn(&bin, &["deadlock", "1500"]);
    let goids: BTreeSet<String> = ["writer", "gc"]
        .map(|n| format!("g{}", target.fact(&format!("goid.{n}"))))
        .into();
    let locks: BTreeSet<String> = ["provider", "store"]
        .map(|n| format!("l{:#x}", target.lock(n)))
        .into();
    let path = dir.path().join("go.dot");
    let path_arg = path.to_string_lossy().into_owned();
    let out = run_tracer(&as_strs(&json_attach_args(
        target.pid(),
        4,
        &["--graph", &path_arg],
    )));
    assert_success(&out);
    let what = describe(&out);
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(found.len(), 1, "{what}");
    // The report's cycle as edges: goroutine → lock it waits for, lock held → goroutine.
    let mut cycle = BTreeSet::new();
    for entry in found[0]["cycle"].as_array().expect("cycle") {
        let g = format!("g{}", entry["goid"].as_u64().expect("goid"));
        let held = format!("l{:#x}", crate::common::addr_of(&entry["holds"]["addr"]));
        let waited = format!(
            "l{:#x}",
            crate::common::addr_of(&entry["waits_for"]["addr"])
        );
        cycle.insert((g.clone(), waited, "waits for".to_owned()));
        cycle.insert((held, g, "held by".to_owned()));
    }
    let text = std::fs::read_to_string(&path).expect("the --graph file");
    let graphs = parse_dot(&text);
    let first = graphs.first().unwrap_or_else(|| panic!("no graph\n{what}"));
    assert!(first.label.starts_with("deadlock:"), "{text}");
    let lit: BTreeSet<(String, String, String)> = first
        .edges
        .iter()
        .filter(|e| e.3)
        .map(|e| (e.0.clone(), e.1.clone(), e.2.clone()))
        .collect();
    assert_eq!(
        lit, cycle,
        "the highlighted edges are the report's cycle\n{text}"
    );
    let lit_nodes: BTreeSet<String> = first
        .nodes
        .iter()
        .filter(|n| n.2)
        .map(|n| n.0.clone())
        .collect();
    let expected: BTreeSet<String> = goids.union(&locks).cloned().collect();
    assert_eq!(
        lit_nodes, expected,
        "the target's goroutines and locks\n{text}"
    );
    for g in &goids {
        let label = &first.nodes.iter().find(|n| &n.0 == g).expect("node").1;
        assert_eq!(label, &format!("goroutine {}", &g[1..]), "{text}");
    }
    assert!(
        graphs
            .iter()
            .any(|g| g.label == "Go wait-for graph at the end"),
        "{text}"
    );
}

/// Guards the picture of the ingestion incident (a `sync.RWMutex` leaked on an error
/// path by a goroutine that then exited), where a stuck lock used to draw nothing. Each
/// `stuck_lock` line must come with a picture of the lock `go_rwleak` printed, held by
/// the leaker goroutine it printed (exited), and one node for the readers piled up on
/// it, as many as that line counts, all highlighted; the title names the mode and the
/// holder.
#[test]
fn a_go_stuck_lock_graph_reads_back_as_the_leaked_lock() {
    crate::common::require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let [go, _] = crate::go_toolchain::installed();
    let bin = crate::go_toolchain::build(&go, "go_rwleak", dir.path(), false);
    let target = Target::spawn(&bin, &["exits", crate::go_attach::START_MS]);
    let registry = target.lock("registry");
    let leaker = crate::go_attach::goid(&target, "leaker");
    let path = dir.path().join("stuck.dot");
    let path_arg = path.to_string_lossy().into_owned();
    let out = run_tracer(&as_strs(&json_attach_args(
        target.pid(),
        6,
        &["--holds", "--graph", &path_arg],
    )));
    assert_success(&out);
    let what = describe(&out);
    let values = json_lines(&out.stdout);
    let stuck = crate::go_attach::stuck_locks(&values, registry, &what);
    assert!(!stuck.is_empty(), "no stuck_lock for registry\n{what}");
    let text = std::fs::read_to_string(&path).expect("the --graph file");
    let pictures: Vec<Digraph> = parse_dot(&text)
        .into_iter()
        .filter(|g| g.label.starts_with("stuck lock:"))
        .collect();
    assert_eq!(
        pictures.len(),
        stuck.len(),
        "one picture per stuck_lock line\n{text}\n{what}"
    );
    let (lock, holder, waiters) = (
        format!("l{registry:#x}"),
        format!("g{leaker}"),
        format!("w{registry:#x}"),
    );
    for (picture, finding) in pictures.iter().zip(&stuck) {
        assert!(
            picture.label.contains("held for writing")
                && picture
                    .label
                    .contains(&format!("by goroutine {leaker} (exited)")),
            "title: {}\n{text}",
            picture.label
        );
        let ids: Vec<&str> = picture.nodes.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(ids, [&lock, &holder, &waiters], "{text}");
        let count = crate::common::u64_field(finding, "waiters");
        let label = |id: &str| &picture.nodes.iter().find(|n| n.0 == id).expect("node").1;
        assert!(
            label(&holder).starts_with(&format!("goroutine {leaker} (exited)")),
            "{text}"
        );
        assert!(
            label(&waiters).starts_with(&format!("{count} goroutine")),
            "the waiters' node counts the finding's {count}\n{text}"
        );
        let edges: Vec<(&str, &str, &str, bool)> = picture
            .edges
            .iter()
            .map(|e| (e.0.as_str(), e.1.as_str(), e.2.as_str(), e.3))
            .collect();
        assert_eq!(
            edges,
            [
                (lock.as_str(), holder.as_str(), "held by", true),
                (waiters.as_str(), lock.as_str(), "waits for", true),
            ],
            "{text}"
        );
        assert!(picture.nodes.iter().all(|n| n.2), "all highlighted\n{text}");
    }
}
