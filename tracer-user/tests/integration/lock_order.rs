//! Root integration tests: lock-order inversions, the deadlocks that have not happened yet
//! (issue 18).
//!
//! The targets (`tests/targets/order_*.c`, `tests/go_targets/go_order_inversion`) take
//! their locks in rounds, their threads (or goroutines) taking turns, so two opposite lock
//! orders are both taken but never at the same time: nothing ever deadlocks. They print
//! their facts (thread and goroutine ids, lock addresses) and `ready`, then wait for
//! SIGUSR1; each test starts `tracer attach --pid N --holds --format json|text`, waits
//! until its probes are attached, sends SIGUSR1, waits for the target's `done` and stops
//! the tracer with SIGINT. So the tracer sees every acquisition, and each test checks it
//! did (the locks' hold counts, or its event count) before trusting an empty report.
//!
//! Report contract checked here: one NDJSON line per potential deadlock,
//! `{"kind":"lock_order_inversion","locks":[{"addr","name"},…],"edges":[{"from","to",
//! "tid","goid","thread","from_stack","to_stack"},…],"harmless":bool,"gate":null|{…}}`,
//! with `locks` in cycle order and one edge per pair of neighbours; the summary's
//! `lock_order_inversions` counts the inversions that are not harmless; the text report
//! has one `LOCK ORDER INVERSION` section per inversion.

use std::{
    collections::BTreeSet,
    fs,
    process::Output,
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    common::{
        Target, Tracer, addr_of, assert_success, build_target, deadlocks, describe, json_lines,
        kind, lock_by_addr, name_of, parse_hex, require_root, summary, u64_field,
    },
    go_attach::{assert_frames_in_order, go_builds, go_deadlocks, go_summary, goid, strs},
};

/// Rounds the C targets and the Go target with the inversion run: each thread (goroutine)
/// takes its locks this many times.
pub(crate) const ROUNDS: u64 = 5;
/// Rounds of the corrected Go program: enough acquisitions that the event count proves
/// the tracer saw them (the idle program makes a few hundred other events per trace).
const GO_FIXED_ROUNDS: u64 = 200;
/// Go lock acquisitions per round in `go_order_inversion -fixed`: Subscribe 2, the GC
/// path 1 (marking an alert resolved) + 2.
const GO_FIXED_LOCKS_PER_ROUND: u64 = 5;
/// `--duration`: only a bound on a run that goes wrong; each test stops the tracer with
/// SIGINT once the target is done.
const DURATION_SECS: u64 = 180;
/// How long the target may take for its rounds once started (the 10 000 accounts take
/// ~10 s under the probes).
const ROUNDS_TIMEOUT: Duration = Duration::from_mins(2);
/// How long the tracer may take to exit after SIGINT.
const EXIT_TIMEOUT: Duration = Duration::from_mins(1);

/// The accounts of `order_accounts`.
const ACCOUNTS: u64 = 10_000;
/// The tracer's peak RSS allowed with [`ACCOUNTS`] instances of one lock class (on
/// `main` before the lock-order graph: ~95 MB, ~47 MB of which for any target).
const ACCOUNTS_PEAK_RSS_LIMIT_KB: u64 = 128 * 1024;

// ---------------------------------------------------------------------------------------
// Running a target's rounds under the tracer
// ---------------------------------------------------------------------------------------

/// A finished trace of a target's rounds.
pub(crate) struct Run {
    pub(crate) out: Output,
    /// The tracer's peak resident set (`VmHWM`, KiB), polled while it ran.
    peak_rss_kib: u64,
    /// The target's `key=value` lines printed after `ready` (e.g. `trylocks_taken`).
    later_facts: Vec<(String, String)>,
    /// Facts and the tracer's output, for failure messages.
    pub(crate) what: String,
}

impl Run {
    pub(crate) fn values(&self) -> Vec<Value> {
        json_lines(&self.out.stdout)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// The value of `key=…` the target printed after `ready`.
    fn later_fact(&self, key: &str) -> &str {
        self.later_facts.iter().find(|(k, _)| k == key).map_or_else(
            || panic!("the target printed no {key}= after ready\n{}", self.what),
            |(_, v)| v.as_str(),
        )
    }
}

/// BPF links process `pid` holds (its attached probes), from its fdinfo.
fn bpf_link_count(pid: u32) -> usize {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| fs::read_to_string(fd.path()).is_ok_and(|info| info.contains("link_id:")))
        .count()
}

/// Waits until the tracer `pid` holds BPF links and their number has not changed for a
/// second (all probes attached), then half a second more (threads blocked at the attach).
fn wait_attached(pid: u32) {
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut last = 0;
    let mut stable_since = Instant::now();
    loop {
        let links = bpf_link_count(pid);
        if links != last {
            last = links;
            stable_since = Instant::now();
        } else if links > 0 && stable_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tracer {pid} did not finish attaching within 60 s ({last} links)"
        );
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(500));
}

/// `VmHWM` (peak resident set, KiB) of `pid`; `None` once it is gone or a zombie.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Polls the `VmHWM` of `pid` every 20 ms until it is gone; returns the largest seen.
fn watch_peak_rss(pid: u32) -> JoinHandle<u64> {
    thread::spawn(move || {
        let mut peak = 0;
        while let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
            thread::sleep(Duration::from_millis(20));
        }
        peak
    })
}

/// Longest stdout line shown in failure messages (the summary of the 10 000 accounts is
/// megabytes long).
const SHOWN_LINE_CHARS: usize = 4000;

/// [`describe`] with each stdout line cut to [`SHOWN_LINE_CHARS`].
fn describe_shortened(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut short = Vec::new();
    for line in stdout.lines() {
        if let Some((cut, _)) = line.char_indices().nth(SHOWN_LINE_CHARS) {
            short.extend_from_slice(&line.as_bytes()[..cut]);
            short.extend_from_slice(b"... (cut)\n");
        } else {
            short.extend_from_slice(line.as_bytes());
            short.push(b'\n');
        }
    }
    describe(&Output {
        status: out.status,
        stdout: short,
        stderr: out.stderr.clone(),
    })
}

/// Sends SIGUSR1 to `pid` (the targets' start signal).
pub(crate) fn send_start(pid: u32) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) with a live child's pid; no memory is passed.
    let rc = unsafe { libc::kill(pid, libc::SIGUSR1) };
    assert_eq!(rc, 0, "kill({pid}, SIGUSR1) failed");
}

/// Traces `target`'s rounds: `tracer attach --pid N --holds --format FORMAT --duration
/// 180 EXTRA…`, started once the probes are attached, stopped with SIGINT once the target
/// printed `done`. Asserts the tracer exited successfully.
pub(crate) fn trace_rounds(target: &mut Target, format: &str, extra: &[&str]) -> Run {
    let pid = target.pid().to_string();
    let duration = DURATION_SECS.to_string();
    let mut args = vec![
        "attach",
        "--pid",
        &pid,
        "--holds",
        "--format",
        format,
        "--duration",
        &duration,
    ];
    args.extend_from_slice(extra);
    let tracer = Tracer::spawn(&args);
    let peak = watch_peak_rss(tracer.pid());
    wait_attached(tracer.pid());
    send_start(target.pid());
    let deadline = Instant::now() + ROUNDS_TIMEOUT;
    while !target.later_lines().iter().any(|l| l == "done") {
        assert!(
            Instant::now() < deadline,
            "the target did not finish its rounds within {ROUNDS_TIMEOUT:?}: {:?}",
            target.later_lines()
        );
        thread::sleep(Duration::from_millis(50));
    }
    // Let the last events reach the tracer before it stops.
    thread::sleep(Duration::from_millis(500));
    tracer.signal("INT");
    let out = tracer.wait(EXIT_TIMEOUT);
    let peak_rss_kib = peak.join().expect("the VmHWM poller");
    let later_facts = target
        .later_lines()
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let what = format!(
        "[target {}, facts {:?}, tracer {args:?}, peak RSS {peak_rss_kib} KiB]\n{}",
        target.exe().display(),
        target.facts(),
        describe_shortened(&out)
    );
    eprintln!("{what}");
    assert_success(&out);
    Run {
        out,
        peak_rss_kib,
        later_facts,
        what,
    }
}

// ---------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------

fn check_lock_ref(r: &Value, who: &str, what: &str) {
    assert!(r.is_object(), "{who} is not a lock object: {r}\n{what}");
    addr_of(&r["addr"]);
    name_of(r);
}

/// Asserts that `v` is a JSON array of strings (a stack, innermost first).
fn check_stack(v: &Value, who: &str, what: &str) {
    assert!(
        v.as_array().is_some_and(|s| s.iter().all(Value::is_string)),
        "{who} is not an array of function names: {v}\n{what}"
    );
}

/// Checks one `lock_order_inversion` object against the contract: a non-empty `locks`
/// array of lock objects, as many `edges` (each: lock objects `from` and `to`, a `tid`
/// or a `goid`, `thread` a string when present, `from_stack` and `to_stack` arrays of
/// strings), `harmless` a bool, and `gate` null, or a lock object when harmless.
fn check_inversion_shape(inv: &Value, what: &str) {
    let locks = inv["locks"]
        .as_array()
        .unwrap_or_else(|| panic!("inversion without a \"locks\" array: {inv}\n{what}"));
    assert!(
        locks.len() >= 2,
        "an inversion needs two locks at least: {inv}\n{what}"
    );
    for l in locks {
        check_lock_ref(l, "a lock of the inversion", what);
    }
    let edges = inv["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("inversion without an \"edges\" array: {inv}\n{what}"));
    assert_eq!(
        edges.len(),
        locks.len(),
        "a cycle of N locks has N edges: {inv}\n{what}"
    );
    for e in edges {
        check_lock_ref(&e["from"], "edge.from", what);
        check_lock_ref(&e["to"], "edge.to", what);
        assert!(
            e["tid"].is_u64() || e["goid"].is_u64(),
            "edge with neither a tid nor a goid: {e}\n{what}"
        );
        assert!(
            e.get("thread").is_none_or(|t| t.is_null() || t.is_string()),
            "edge.thread must be a string: {e}\n{what}"
        );
        check_stack(&e["from_stack"], "edge.from_stack", what);
        check_stack(&e["to_stack"], "edge.to_stack", what);
    }
    let harmless = inv["harmless"]
        .as_bool()
        .unwrap_or_else(|| panic!("inversion without a bool \"harmless\": {inv}\n{what}"));
    match &inv["gate"] {
        Value::Null => assert!(
            !harmless,
            "a harmless inversion must name its gate lock: {inv}\n{what}"
        ),
        gate => check_lock_ref(gate, "gate", what),
    }
}

/// Every `lock_order_inversion` object of the report, shape checked.
pub(crate) fn inversions<'a>(values: &'a [Value], what: &str) -> Vec<&'a Value> {
    let found: Vec<&Value> = values
        .iter()
        .filter(|v| kind(v) == "lock_order_inversion")
        .collect();
    for inv in &found {
        check_inversion_shape(inv, what);
    }
    found
}

/// The summary's count of inversions that are not harmless.
fn summary_inversions(summary: &Value, what: &str) -> u64 {
    summary["lock_order_inversions"]
        .as_u64()
        .unwrap_or_else(|| panic!("summary without a \"lock_order_inversions\" count\n{what}"))
}

/// Asserts that the `locks` of `inv` are in cycle order: an edge goes from each lock to
/// the next (the last one's to the first).
fn assert_cycle_order(inv: &Value, what: &str) {
    let locks: Vec<u64> = inv["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .map(|l| addr_of(&l["addr"]))
        .collect();
    let edges: BTreeSet<(u64, u64)> = inv["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| (addr_of(&e["from"]["addr"]), addr_of(&e["to"]["addr"])))
        .collect();
    for (i, &from) in locks.iter().enumerate() {
        let to = locks[(i + 1) % locks.len()];
        assert!(
            edges.contains(&(from, to)),
            "locks not in cycle order: no edge {from:#x} -> {to:#x}: {inv:#}\n{what}"
        );
    }
}

/// The edge of `inv` from the lock at `from` to the lock at `to`.
fn edge<'a>(inv: &'a Value, from: u64, to: u64, what: &str) -> &'a Value {
    inv["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| addr_of(&e["from"]["addr"]) == from && addr_of(&e["to"]["addr"]) == to)
        .unwrap_or_else(|| panic!("no edge {from:#x} -> {to:#x}: {inv:#}\n{what}"))
}

/// Whether some frame of `stack` is in function `func` (C frames: the name, maybe with an
/// offset or a source line).
fn has_frame(stack: &[&str], func: &str) -> Option<usize> {
    stack.iter().position(|f| {
        f.strip_prefix(func)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '+', '(']))
    })
}

/// How the locks of a C target are expected to be named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Naming {
    /// Symbol table and DWARF: named after the global, stacks symbolized.
    Symbols,
    /// Stripped: no name, or `object+offset`; stacks of any frames.
    Stripped,
}

/// Asserts the name of `lock_ref`, the global `global`, per `naming`.
fn assert_global_name(lock_ref: &Value, global: &str, naming: Naming, what: &str) {
    let name = name_of(lock_ref);
    match naming {
        Naming::Symbols => assert_eq!(
            name,
            Some(global),
            "lock {} should be named {global}: {lock_ref}\n{what}",
            lock_ref["addr"]
        ),
        Naming::Stripped => assert!(
            name.is_none_or(|n| n.contains("+0x") || parse_hex(n).is_some()),
            "stripped binary: lock {} should have no name or object+offset: {lock_ref}\n{what}",
            lock_ref["addr"]
        ),
    }
}

/// Asserts that the summary lists the lock `name` of `target` with at least `holds`
/// hold times: the tracer saw every acquisition of the rounds (an empty report means
/// nothing if the tracer saw nothing).
fn assert_held(target: &Target, summary: &Value, name: &str, holds: u64, what: &str) {
    let addr = target.lock(name);
    let lock = lock_by_addr(summary, addr)
        .unwrap_or_else(|| panic!("summary without lock {name} ({addr:#x})\n{what}"));
    let seen = lock["hold_ns"]["count"].as_u64().unwrap_or(0);
    assert!(
        seen >= holds,
        "{name} was taken {holds} times, the tracer saw {seen}: {lock}\n{what}"
    );
}

/// Asserts a report with no lock-order inversion at all (and no deadlock), whose summary
/// counts none, and in which the tracer saw each of `held` taken `holds` times at least.
fn assert_no_inversion(target: &Target, run: &Run, held: &[&str], holds: u64) {
    let what = &run.what;
    let values = run.values();
    let found = inversions(&values, what);
    assert!(found.is_empty(), "no lock-order inversion expected\n{what}");
    assert!(
        deadlocks(&values).is_empty(),
        "no deadlock expected\n{what}"
    );
    let s = summary(&values);
    assert_eq!(summary_inversions(s, what), 0, "summary count\n{what}");
    for name in held {
        assert_held(target, s, name, holds, what);
    }
}

// ---------------------------------------------------------------------------------------
// C: two mutexes in opposite orders
// ---------------------------------------------------------------------------------------

/// One side of `order_inversion`: the thread, the lock it takes first and second, and the
/// functions that take them.
struct Side {
    thread: &'static str,
    first: &'static str,
    second: &'static str,
    outer_fn: &'static str,
    inner_fn: &'static str,
}

const AB_SIDES: [Side; 2] = [
    Side {
        thread: "order_ab",
        first: "lock_a",
        second: "lock_b",
        outer_fn: "ab_outer",
        inner_fn: "ab_inner",
    },
    Side {
        thread: "order_ba",
        first: "lock_b",
        second: "lock_a",
        outer_fn: "ba_outer",
        inner_fn: "ba_inner",
    },
];

/// Checks a JSON report of `order_inversion` (not gated): exactly one inversion, not
/// harmless, between `lock_a` and `lock_b` (addresses, names per `naming`), in cycle
/// order, with the edge a→b by thread `order_ab` and b→a by `order_ba`, each with its
/// stacks (symbolized: the first lock taken in the outer function, the second in the
/// inner one called from it); printed before the summary, which counts it; no deadlock.
fn check_ab_inversion(target: &Target, run: &Run, naming: Naming) {
    let what = &run.what;
    let values = run.values();
    let found = inversions(&values, what);
    assert_eq!(found.len(), 1, "expected exactly one inversion\n{what}");
    let inv = found[0];
    assert_eq!(
        inv["harmless"].as_bool(),
        Some(false),
        "no gate: not harmless\n{what}"
    );
    let locks: BTreeSet<u64> = inv["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .map(|l| addr_of(&l["addr"]))
        .collect();
    let want: BTreeSet<u64> = [target.lock("lock_a"), target.lock("lock_b")].into();
    assert_eq!(locks, want, "the inversion's locks: {inv:#}\n{what}");
    for l in inv["locks"].as_array().expect("locks") {
        let global = if addr_of(&l["addr"]) == target.lock("lock_a") {
            "lock_a"
        } else {
            "lock_b"
        };
        assert_global_name(l, global, naming, what);
    }
    assert_cycle_order(inv, what);
    for side in &AB_SIDES {
        let e = edge(inv, target.lock(side.first), target.lock(side.second), what);
        let who = format!("edge {} -> {}", side.first, side.second);
        assert_eq!(
            e["tid"].as_u64(),
            Some(target.tid(side.thread)),
            "{who} should be by {}: {e:#}\n{what}",
            side.thread
        );
        assert_eq!(
            e["thread"].as_str(),
            Some(side.thread),
            "{who}: thread name: {e:#}\n{what}"
        );
        assert_global_name(&e["from"], side.first, naming, what);
        assert_global_name(&e["to"], side.second, naming, what);
        let from_stack = strs(&e["from_stack"]);
        let to_stack = strs(&e["to_stack"]);
        assert!(
            !from_stack.is_empty() && !to_stack.is_empty(),
            "{who}: empty stack: {e:#}\n{what}"
        );
        if naming == Naming::Symbols {
            assert!(
                has_frame(&from_stack, side.outer_fn).is_some(),
                "{who}: from_stack should be where {} took {}: {}: {from_stack:?}\n{what}",
                side.thread,
                side.first,
                side.outer_fn
            );
            assert!(
                has_frame(&from_stack, side.inner_fn).is_none(),
                "{who}: from_stack has the inner function {} (the to_stack's?): \
                 {from_stack:?}\n{what}",
                side.inner_fn
            );
            let inner = has_frame(&to_stack, side.inner_fn);
            let outer = has_frame(&to_stack, side.outer_fn);
            assert!(
                matches!((inner, outer), (Some(i), Some(o)) if i < o),
                "{who}: to_stack should have {} then (further out) {}: {to_stack:?}\n{what}",
                side.inner_fn,
                side.outer_fn
            );
        }
    }
    assert!(
        deadlocks(&values).is_empty(),
        "no deadlock expected\n{what}"
    );
    let s = summary(&values);
    assert_eq!(summary_inversions(s, what), 1, "summary count\n{what}");
    assert_eq!(u64_field(s, "deadlocks"), 0, "summary.deadlocks\n{what}");
    for name in ["lock_a", "lock_b"] {
        assert_held(target, s, name, 2 * ROUNDS, what);
    }
}

/// Guards against: missing a lock-order inversion whose two orders never overlap (so no
/// deadlock ever forms: the alert manager's bug before it paged anyone), reporting it
/// more than once (each round repeats both orders), swapping which thread took which
/// order, losing either order's two stacks or swapping `from_stack` and `to_stack`, wrong
/// lock addresses or names, a cycle not in order, or calling it a deadlock.
#[test]
fn opposite_lock_orders_are_one_inversion() {
    require_root();
    let bin = build_target("order_inversion", &[]);
    let mut target = Target::spawn(bin.path(), &[&ROUNDS.to_string()]);
    let run = trace_rounds(&mut target, "json", &[]);
    check_ab_inversion(&target, &run, Naming::Symbols);
}

/// Guards against: depending on symbols to find an inversion (a stripped binary must give
/// the same inversion by address, threads and orders), or inventing global names for a
/// stripped binary (no name, or `object+offset`).
#[test]
fn opposite_lock_orders_are_one_inversion_in_a_stripped_binary() {
    require_root();
    let bin = build_target("order_inversion", &[]);
    let stripped = bin.strip_copy();
    let mut target = Target::spawn(&stripped, &[&ROUNDS.to_string()]);
    let run = trace_rounds(&mut target, "json", &[]);
    check_ab_inversion(&target, &run, Naming::Stripped);
}

/// Guards against: the text report leaving the inversion out, printing it more than once,
/// or filing it as a deadlock: one `LOCK ORDER INVERSION` section, naming both locks and
/// both threads' ids, and no `DEADLOCK` section.
#[test]
fn opposite_lock_orders_have_a_text_section() {
    require_root();
    let bin = build_target("order_inversion", &[]);
    let mut target = Target::spawn(bin.path(), &[&ROUNDS.to_string()]);
    let run = trace_rounds(&mut target, "text", &[]);
    let what = &run.what;
    let text = run.text();
    let headings = text.matches("LOCK ORDER INVERSION").count();
    assert_eq!(
        headings, 1,
        "expected one LOCK ORDER INVERSION section\n{what}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("DEADLOCK")),
        "an inversion is no deadlock\n{what}"
    );
    let section = &text[text.find("LOCK ORDER INVERSION").expect("heading")..];
    for needle in [
        "lock_a".to_owned(),
        "lock_b".to_owned(),
        target.tid("order_ab").to_string(),
        target.tid("order_ba").to_string(),
    ] {
        assert!(
            section.contains(&needle),
            "the LOCK ORDER INVERSION section should mention {needle}\n{what}"
        );
    }
}

/// Guards against: a false alarm on opposite orders that are always taken under one
/// common outer lock (`gate`), which can never deadlock: the report must have no
/// inversion that is not harmless; one marked harmless must name the gate, and the
/// summary must not count it.
#[test]
fn opposite_orders_under_a_common_gate_are_harmless() {
    require_root();
    let bin = build_target("order_inversion", &["-DGATED"]);
    let mut target = Target::spawn(bin.path(), &[&ROUNDS.to_string()]);
    let run = trace_rounds(&mut target, "json", &[]);
    let what = &run.what;
    let values = run.values();
    for inv in inversions(&values, what) {
        assert_eq!(
            inv["harmless"].as_bool(),
            Some(true),
            "the orders are gated: the inversion must be harmless (or left out): {inv:#}\n{what}"
        );
        assert_eq!(
            addr_of(&inv["gate"]["addr"]),
            target.lock("gate"),
            "the harmless inversion should name the gate: {inv:#}\n{what}"
        );
        assert_eq!(
            name_of(&inv["gate"]),
            Some("gate"),
            "gate name: {inv:#}\n{what}"
        );
    }
    assert!(
        deadlocks(&values).is_empty(),
        "no deadlock expected\n{what}"
    );
    let s = summary(&values);
    assert_eq!(
        summary_inversions(s, what),
        0,
        "harmless inversions are not counted\n{what}"
    );
    for name in ["gate", "lock_a", "lock_b"] {
        assert_held(&target, s, name, 2 * ROUNDS, what);
    }
}

// ---------------------------------------------------------------------------------------
// C: orders that cannot deadlock
// ---------------------------------------------------------------------------------------

/// Guards against: a false alarm on consistent nesting: three threads take `lock_a`,
/// `lock_b`, `lock_c` always in that order (two of them all three nested, the third
/// a→c and b→c), which gives a graph with transitive edges but no cycle.
#[test]
fn consistent_nesting_on_three_threads_is_no_inversion() {
    require_root();
    let bin = build_target("order_nested", &[]);
    let mut target = Target::spawn(bin.path(), &[&ROUNDS.to_string()]);
    let run = trace_rounds(&mut target, "json", &[]);
    assert_no_inversion(&target, &run, &["lock_a", "lock_b", "lock_c"], 3 * ROUNDS);
}

/// Guards against: a false alarm on a recursive mutex re-entered by its owner (rec →
/// inner → rec again, on two threads): the re-entry never blocks, so it is no edge
/// inner → rec against rec → inner.
#[test]
fn recursive_mutex_reentered_by_its_owner_is_no_inversion() {
    require_root();
    let bin = build_target("order_recursive", &[]);
    let mut target = Target::spawn(bin.path(), &[&ROUNDS.to_string()]);
    let run = trace_rounds(&mut target, "json", &[]);
    assert_no_inversion(&target, &run, &["rec", "inner"], 2 * ROUNDS);
}

/// Guards against: a false alarm on a trylock: one thread takes `lock_a` then `lock_b`,
/// the other holds `lock_b` and *trylocks* `lock_a`, which cannot block, so the orders
/// cannot deadlock. The target says every trylock succeeded, and the tracer must have
/// seen both threads take `lock_a`, so the trylock was an acquisition it knew of.
#[test]
fn trylock_against_the_order_is_no_inversion() {
    require_root();
    let bin = build_target("order_trylock", &[]);
    let mut target = Target::spawn(bin.path(), &[&ROUNDS.to_string()]);
    let run = trace_rounds(&mut target, "json", &[]);
    assert_eq!(
        run.later_fact("trylocks_taken"),
        ROUNDS.to_string(),
        "every trylock should have succeeded\n{}",
        run.what
    );
    assert_no_inversion(&target, &run, &["lock_a", "lock_b"], 2 * ROUNDS);
}

/// Guards against: a false alarm on read locks: two rwlocks read-locked in opposite orders
/// by two threads (readers never block readers, and nothing write-locks them).
#[test]
fn read_locks_in_opposite_orders_are_no_inversion() {
    require_root();
    let bin = build_target("order_rdlock", &[]);
    let mut target = Target::spawn(bin.path(), &[&ROUNDS.to_string()]);
    let run = trace_rounds(&mut target, "json", &[]);
    assert_no_inversion(&target, &run, &["rw_a", "rw_b"], 2 * ROUNDS);
}

/// Guards against: a false alarm on many instances of one lock class ordered by design
/// (10 000 heap `struct account`s, two locked per transfer, lower index, so lower address,
/// first, by four threads at once: every instance nested with others in both roles), and
/// against a lock-order graph that grows with the instances instead of their classes: the
/// tracer's peak RSS must stay within 128 MB. The tracer must have seen (tracked or
/// folded into "other locks") nine in ten of the accounts' mutexes at least, each named
/// `account.m` (its class).
#[test]
fn ten_thousand_instances_in_address_order_are_no_inversion_in_bounded_memory() {
    require_root();
    let bin = build_target("order_accounts", &[]);
    let mut target = Target::spawn(bin.path(), &[&ACCOUNTS.to_string(), "2"]);
    let run = trace_rounds(&mut target, "json", &[]);
    let what = &run.what;
    assert_eq!(
        run.later_fact("balance_ok"),
        "1",
        "the transfers lost money\n{what}"
    );
    let values = run.values();
    assert!(
        inversions(&values, what).is_empty(),
        "no lock-order inversion expected\n{what}"
    );
    assert!(
        deadlocks(&values).is_empty(),
        "no deadlock expected\n{what}"
    );
    let s = summary(&values);
    assert_eq!(summary_inversions(s, what), 0, "summary count\n{what}");

    let first = parse_hex(target.fact("first_account")).expect("first_account= is an address");
    let size: u64 = target
        .fact("account_size")
        .parse()
        .expect("account_size= is a number");
    let is_account =
        |a: u64| a >= first && a < first + ACCOUNTS * size && (a - first).is_multiple_of(size);
    let tracked = s["locks"]
        .as_array()
        .expect("summary locks")
        .iter()
        .filter(|l| is_account(addr_of(&l["addr"])))
        .filter(|l| l["hold_ns"]["count"].as_u64().unwrap_or(0) > 0)
        .count() as u64;
    // Named by their struct type and field (`lock_names::c`), every one: a lock call
    // that named none would class some instances apart from the others.
    for l in s["locks"].as_array().expect("summary locks") {
        if is_account(addr_of(&l["addr"])) {
            assert_eq!(
                name_of(l),
                Some("account.m"),
                "an account's mutex: {l}\n{what}"
            );
        }
    }
    let folded = s["other_locks"]["locks"].as_u64().unwrap_or(0);
    assert!(
        (tracked + folded) * 10 >= ACCOUNTS * 9,
        "the tracer saw {tracked} account mutexes held (+{folded} folded) of {ACCOUNTS}\n{what}"
    );
    eprintln!("tracer peak RSS {} KiB", run.peak_rss_kib);
    assert!(
        run.peak_rss_kib > 0 && run.peak_rss_kib <= ACCOUNTS_PEAK_RSS_LIMIT_KB,
        "tracer peak RSS {} KiB (limit {ACCOUNTS_PEAK_RSS_LIMIT_KB} KiB) with {ACCOUNTS} \
         instances of one lock class\n{what}",
        run.peak_rss_kib
    );
}

// ---------------------------------------------------------------------------------------
// Go: the alert manager
// ---------------------------------------------------------------------------------------

/// One path of `go_order_inversion`: its goroutine's fact, the lock it takes first and
/// second, the `Type.field` names of those locks, and the functions on the stack when it
/// takes the first lock and the second one (innermost first).
struct GoPath {
    goroutine: &'static str,
    first: &'static str,
    second: &'static str,
    first_class: &'static str,
    second_class: &'static str,
    from_frames: &'static [&'static str],
    to_frames: &'static [&'static str],
    /// A function that must not be on the `from_stack` (it is the second lock's).
    not_in_from: &'static str,
}

const GO_PATHS: [GoPath; 2] = [
    GoPath {
        goroutine: "subscriber",
        first: "mem_store",
        second: "alert_store",
        first_class: "main.MemStore.mu",
        second_class: "main.AlertStore.mu",
        from_frames: &["main.(*MemStore).Subscribe", "main.subscriber"],
        to_frames: &[
            "main.(*AlertStore).listen",
            "main.(*MemStore).Subscribe",
            "main.subscriber",
        ],
        not_in_from: "main.(*AlertStore).listen",
    },
    GoPath {
        goroutine: "gc",
        first: "alert_store",
        second: "mem_store",
        first_class: "main.AlertStore.mu",
        second_class: "main.MemStore.mu",
        from_frames: &["main.(*AlertStore).GC", "main.collector"],
        to_frames: &[
            "main.(*MemStore).drop",
            "main.(*AlertStore).GC",
            "main.collector",
        ],
        not_in_from: "main.(*MemStore).drop",
    },
];

/// Asserts the name of the Go heap lock `lock_ref`: `class` (`Type.field`, from DWARF) in
/// a normal build; none, or an address, in a stripped one (no DWARF).
fn assert_go_lock_name(lock_ref: &Value, class: &str, stripped: bool, what: &str) {
    let name = name_of(lock_ref);
    if stripped {
        assert!(
            name.is_none_or(|n| parse_hex(n).is_some() || n.contains("+0x")),
            "stripped build, yet lock {} has a name: {lock_ref}\n{what}",
            lock_ref["addr"]
        );
    } else {
        assert_eq!(
            name,
            Some(class),
            "lock {} should be named {class}: {lock_ref}\n{what}",
            lock_ref["addr"]
        );
    }
}

/// Guards against: missing the alert manager's deadlock before it happens (Subscribe
/// holds `MemStore.mu` and takes `AlertStore.mu`; the GC callback holds `AlertStore.mu`
/// and takes `MemStore.mu`; the two never overlap), for `sync.Mutex`es in heap objects,
/// with every Go toolchain, normal and stripped: exactly one inversion, not harmless,
/// between the two locks (addresses; `main.MemStore.mu` / `main.AlertStore.mu` unless
/// stripped), in cycle order, each order by the right goroutine id, with stacks through
/// the methods that took each lock; no deadlock; the summary counts one.
#[test]
fn go_alert_manager_lock_orders_are_one_inversion() {
    require_root();
    let (_dir, builds) = go_builds("go_order_inversion", false);
    for build in &builds {
        let mut target = Target::spawn(&build.path, &["-rounds", &ROUNDS.to_string()]);
        let run = trace_rounds(&mut target, "json", &[]);
        let what = format!("[{} build]\n{}", build.label, run.what);
        let values = run.values();
        let found = inversions(&values, &what);
        assert_eq!(found.len(), 1, "expected exactly one inversion\n{what}");
        let inv = found[0];
        assert_eq!(
            inv["harmless"].as_bool(),
            Some(false),
            "not harmless\n{what}"
        );
        let locks: BTreeSet<u64> = inv["locks"]
            .as_array()
            .expect("locks")
            .iter()
            .map(|l| addr_of(&l["addr"]))
            .collect();
        let want: BTreeSet<u64> = [target.lock("mem_store"), target.lock("alert_store")].into();
        assert_eq!(locks, want, "the inversion's locks: {inv:#}\n{what}");
        assert_cycle_order(inv, &what);
        for path in &GO_PATHS {
            let e = edge(
                inv,
                target.lock(path.first),
                target.lock(path.second),
                &what,
            );
            let who = format!("edge {} -> {}", path.first, path.second);
            assert_eq!(
                e["goid"].as_u64(),
                Some(goid(&target, path.goroutine)),
                "{who} should be by goroutine {}: {e:#}\n{what}",
                path.goroutine
            );
            assert_go_lock_name(&e["from"], path.first_class, build.stripped, &what);
            assert_go_lock_name(&e["to"], path.second_class, build.stripped, &what);
            let from_stack = strs(&e["from_stack"]);
            let to_stack = strs(&e["to_stack"]);
            assert_frames_in_order(&from_stack, path.from_frames, &who, &what);
            assert_frames_in_order(&to_stack, path.to_frames, &who, &what);
            assert!(
                !from_stack.iter().any(|f| f.starts_with(path.not_in_from)),
                "{who}: from_stack has {} (the to_stack's?): {from_stack:?}\n{what}",
                path.not_in_from
            );
        }
        for l in inv["locks"].as_array().expect("locks") {
            let class = if addr_of(&l["addr"]) == target.lock("mem_store") {
                "main.MemStore.mu"
            } else {
                "main.AlertStore.mu"
            };
            assert_go_lock_name(l, class, build.stripped, &what);
        }
        assert!(
            go_deadlocks(&values, &what).is_empty(),
            "no deadlock expected\n{what}"
        );
        let s = go_summary(&values, &target, &what);
        assert_eq!(summary_inversions(s, &what), 1, "summary count\n{what}");
    }
}

/// Guards against: a false alarm on the corrected alert manager (`-fixed`: the GC path
/// takes `MemStore.mu` before `AlertStore.mu`, like Subscribe), with every Go toolchain,
/// normal and stripped. The tracer must have seen the acquisitions: its event count is at
/// least one lock and one unlock event for each of the program's acquisitions.
#[test]
fn go_alert_manager_fixed_is_no_inversion() {
    require_root();
    let (_dir, builds) = go_builds("go_order_inversion", false);
    for build in &builds {
        let mut target = Target::spawn(
            &build.path,
            &["-fixed", "-rounds", &GO_FIXED_ROUNDS.to_string()],
        );
        let run = trace_rounds(&mut target, "json", &[]);
        let what = format!("[{} build]\n{}", build.label, run.what);
        let values = run.values();
        assert!(
            inversions(&values, &what).is_empty(),
            "no lock-order inversion expected\n{what}"
        );
        assert!(
            go_deadlocks(&values, &what).is_empty(),
            "no deadlock expected\n{what}"
        );
        let s = go_summary(&values, &target, &what);
        assert_eq!(summary_inversions(s, &what), 0, "summary count\n{what}");
        let acquisitions = GO_FIXED_ROUNDS * GO_FIXED_LOCKS_PER_ROUND;
        assert!(
            u64_field(s, "events") >= 2 * acquisitions,
            "the tracer saw fewer events than the {acquisitions} acquisitions' locks and \
             unlocks\n{what}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// C heap locks named by struct type and field
// ---------------------------------------------------------------------------------------

/// `order_heap_classes`' contention turns: each worker takes `tally.inner.mu` this many
/// times (held 2 ms each), both at once.
const HEAP_COUNTS: u64 = 50;

/// Asserts that `lock_ref` is the heap lock the target printed as `lock.FACT`, named
/// `name`.
fn assert_heap_lock(target: &Target, lock_ref: &Value, fact: &str, name: &str, what: &str) {
    assert_eq!(
        addr_of(&lock_ref["addr"]),
        target.lock(fact),
        "not the {fact} lock: {lock_ref}\n{what}"
    );
    assert_eq!(
        name_of(lock_ref),
        Some(name),
        "the {fact} lock should be named {name}: {lock_ref}\n{what}"
    );
}

/// Guards against: C heap locks reported by address only, or classed by the function
/// that took them, where the program's DWARF names them by struct type and field (issue
/// 18, point 2): a `struct store`'s and a `struct cache`'s mutexes taken in opposite
/// orders (never at the same time) are one inversion between `store.mu` and `cache.mu`,
/// at the addresses the program prints, with the edge store → cache by the thread that
/// took that order; a contended mutex in a nested struct is `tally.inner.mu` in the
/// summary; at `-O1` and `-O0` (the pointers in registers, in stack slots).
#[test]
fn c_heap_locks_are_named_by_struct_type_and_field() {
    require_root();
    for flags in [&[][..], &["-O0"]] {
        let bin = build_target("order_heap_classes", flags);
        let mut target =
            Target::spawn(bin.path(), &[&ROUNDS.to_string(), &HEAP_COUNTS.to_string()]);
        let run = trace_rounds(&mut target, "json", &[]);
        let what = &format!("gcc {flags:?} {}", run.what);
        let values = run.values();
        let found = inversions(&values, what);
        assert_eq!(found.len(), 1, "expected exactly one inversion\n{what}");
        let inv = found[0];
        assert_eq!(
            inv["harmless"].as_bool(),
            Some(false),
            "not harmless\n{what}"
        );
        assert_cycle_order(inv, what);
        let mut locks: Vec<&Value> = inv["locks"].as_array().expect("locks").iter().collect();
        locks.sort_by_key(|l| addr_of(&l["addr"]) != target.lock("store"));
        assert_eq!(locks.len(), 2, "two locks: {inv:#}\n{what}");
        assert_heap_lock(&target, locks[0], "store", "store.mu", what);
        assert_heap_lock(&target, locks[1], "cache", "cache.mu", what);
        let e = edge(inv, target.lock("store"), target.lock("cache"), what);
        assert_eq!(
            e["tid"].as_u64(),
            Some(target.tid("order_sc")),
            "store -> cache is order_sc's order: {e:#}\n{what}"
        );
        assert_heap_lock(&target, &e["from"], "store", "store.mu", what);
        assert_heap_lock(&target, &e["to"], "cache", "cache.mu", what);
        let e = edge(inv, target.lock("cache"), target.lock("store"), what);
        assert_eq!(
            e["tid"].as_u64(),
            Some(target.tid("order_cs")),
            "cache -> store is order_cs's order: {e:#}\n{what}"
        );
        let s = summary(&values);
        assert_eq!(summary_inversions(s, what), 1, "summary count\n{what}");
        let tally = lock_by_addr(s, target.lock("tally"))
            .unwrap_or_else(|| panic!("summary without the tally lock\n{what}"));
        assert_heap_lock(&target, tally, "tally", "tally.inner.mu", what);
        assert!(
            u64_field(tally, "contentions") > 0,
            "the tally lock was contended (two threads, held 2 ms): {tally}\n{what}"
        );
        for (fact, name) in [("store", "store.mu"), ("cache", "cache.mu")] {
            let lock = lock_by_addr(s, target.lock(fact))
                .unwrap_or_else(|| panic!("summary without the {fact} lock\n{what}"));
            assert_heap_lock(&target, lock, fact, name, what);
        }
    }
}
