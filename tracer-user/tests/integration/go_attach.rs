//! Root integration tests: Go programs (`tracer attach` on goroutines and `sync` locks).
//!
//! The targets are in `tests/go_targets/go_*`; every scenario runs against each of them
//! built by Go 1.19 and Go 1.25, normal and stripped (`-ldflags=-s -w`: no symbol table,
//! no DWARF, but still the pclntab, so function names stay known while lock names go).
//! The targets print their facts (goroutine ids as the runtime numbers them, lock
//! addresses, source lines), then sleep [`START_MS`] before they start taking locks, so
//! the tracer, which for Go also plans its probes from the binary, is attached first and
//! sees every acquisition. These scenarios run with `--holds` (every acquisition and
//! release probed: exact holders, hold times); the default probes (parks and hand-overs
//! only, holders from the goroutines' stacks) are tested in `go_parked`.

use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::{
    common::{
        Target, addr_of, as_strs, assert_success, describe, json_attach_args, json_lines, kind,
        name_of, parse_hex, require_root, run_tracer, u64_field,
    },
    go_toolchain::{GoBuild, build_all},
};

/// How long the targets wait after `ready` before they take their locks (ms).
pub(crate) const START_MS: &str = "2500";

/// Lock types the summary may report.
const LOCK_TYPES: [&str; 6] = [
    "mutex",
    "rwlock",
    "pi_mutex",
    "futex",
    "go_mutex",
    "go_rwmutex",
];

/// Builds Go target `target` with every toolchain, normal and stripped, into a temporary
/// directory that lives as long as the returned value.
pub(crate) fn go_builds(target: &str, cgo: bool) -> (TempDir, Vec<GoBuild>) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("tracer-it-{target}-"))
        .tempdir()
        .expect("create temp dir for Go target");
    let builds = build_all(target, dir.path(), cgo);
    (dir, builds)
}

/// The goroutine id fact `goid.NAME`.
pub(crate) fn goid(target: &Target, name: &str) -> u64 {
    let key = format!("goid.{name}");
    let v = target.fact(&key);
    v.parse()
        .unwrap_or_else(|e| panic!("fact {key}={v} is not a goroutine id: {e}"))
}

/// Runs the tracer on `target` for `secs` seconds (JSON, plus `extra`), asserts it
/// succeeded and returns its report lines and a description of the run for messages.
pub(crate) fn trace(
    target: &Target,
    secs: u64,
    extra: &[&str],
    build: &GoBuild,
) -> (Vec<Value>, String) {
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), secs, extra)));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let what = format!(
        "[{} build {}, facts {:?}]\n{}",
        build.label,
        build.path.display(),
        target.facts(),
        describe(&out)
    );
    (values, what)
}

// ---------------------------------------------------------------------------------------
// Report shape (the Go contract: goroutine ids, Go lock types, stuck locks)
// ---------------------------------------------------------------------------------------

fn check_histogram(h: &Value, what: &str) {
    let [count, p50, p90, p99, max, total] =
        ["count", "p50", "p90", "p99", "max", "total"].map(|k| u64_field(h, k));
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= max,
        "{what}: percentiles not ordered (p50 <= p90 <= p99 <= max): {h}"
    );
    if count == 0 {
        assert_eq!(total, 0, "{what}: empty histogram with a total: {h}");
    }
}

fn check_lock_ref(r: &Value, what: &str) {
    assert!(r.is_object(), "{what} is not an object: {r}");
    addr_of(&r["addr"]);
    name_of(r);
}

/// The one summary object: it must be the last line and have the contract's shape, with
/// Go lock types allowed. Its pid must be the target's.
pub(crate) fn go_summary<'a>(values: &'a [Value], target: &Target, what: &str) -> &'a Value {
    let n = values.iter().filter(|v| kind(v) == "summary").count();
    assert_eq!(n, 1, "expected exactly one summary object, got {n}\n{what}");
    let s = values.last().expect("a summary line");
    assert_eq!(
        kind(s),
        "summary",
        "the summary must be the last line\n{what}"
    );
    for k in ["pid", "duration_ns", "events", "dropped"] {
        u64_field(s, k);
    }
    assert_eq!(
        u64_field(s, "pid"),
        u64::from(target.pid()),
        "summary pid\n{what}"
    );
    let locks = s["locks"]
        .as_array()
        .unwrap_or_else(|| panic!("summary without \"locks\" array\n{what}"));
    let mut prev_total = u64::MAX;
    for l in locks {
        addr_of(&l["addr"]);
        name_of(l);
        let ty = l["type"].as_str().unwrap_or_default();
        assert!(
            LOCK_TYPES.contains(&ty),
            "lock type must be one of {LOCK_TYPES:?}: {l}\n{what}"
        );
        u64_field(l, "contentions");
        u64_field(l, "max_waiters");
        check_histogram(&l["wait_ns"], "wait_ns");
        match l.get("hold_ns") {
            None | Some(Value::Null) => {}
            Some(h) => check_histogram(h, "hold_ns"),
        }
        let total = u64_field(&l["wait_ns"], "total");
        assert!(
            total <= prev_total,
            "summary.locks not sorted by wait_ns.total (largest first)\n{what}"
        );
        prev_total = total;
    }
    s
}

/// The summary's lock at `addr`, if listed.
fn summary_lock(summary: &Value, addr: u64) -> Option<&Value> {
    summary["locks"]
        .as_array()
        .and_then(|locks| locks.iter().find(|l| addr_of(&l["addr"]) == addr))
}

/// All deadlock objects, each checked for the Go contract's shape: every entry has a
/// goroutine id, a tid (or null), a thread name (or null), the two lock references and a
/// stack of function names.
pub(crate) fn go_deadlocks<'a>(values: &'a [Value], what: &str) -> Vec<&'a Value> {
    let found: Vec<&Value> = values.iter().filter(|v| kind(v) == "deadlock").collect();
    for d in &found {
        let cycle = d["cycle"]
            .as_array()
            .unwrap_or_else(|| panic!("deadlock without \"cycle\" array: {d}\n{what}"));
        assert!(!cycle.is_empty(), "empty deadlock cycle: {d}\n{what}");
        for e in cycle {
            u64_field(e, "goid");
            assert!(
                e.get("tid").is_none_or(|t| t.is_null() || t.is_u64()),
                "tid must be a number or null: {e}\n{what}"
            );
            assert!(
                e.get("thread").is_none_or(|t| t.is_null() || t.is_string()),
                "thread must be a string or null: {e}\n{what}"
            );
            check_lock_ref(&e["holds"], "holds");
            check_lock_ref(&e["waits_for"], "waits_for");
            assert!(
                e["stack"]
                    .as_array()
                    .is_some_and(|s| s.iter().all(Value::is_string)),
                "entry without a \"stack\" array of strings: {e}\n{what}"
            );
        }
    }
    found
}

/// The `stuck_lock` objects about the lock at `addr`, in output order, each checked for
/// the contract's shape.
pub(crate) fn stuck_locks<'a>(values: &'a [Value], addr: u64, what: &str) -> Vec<&'a Value> {
    let found: Vec<&Value> = values
        .iter()
        .filter(|v| kind(v) == "stuck_lock" && addr_of(&v["lock"]["addr"]) == addr)
        .collect();
    for s in &found {
        check_lock_ref(&s["lock"], "lock");
        assert!(
            matches!(s["mode"].as_str(), Some("write" | "read")),
            "mode must be write|read: {s}\n{what}"
        );
        for k in ["held_ns", "waiters", "readers_waiting", "writers_waiting"] {
            u64_field(s, k);
        }
        assert_eq!(
            u64_field(s, "readers_waiting") + u64_field(s, "writers_waiting"),
            u64_field(s, "waiters"),
            "waiters must be readers_waiting + writers_waiting: {s}\n{what}"
        );
        let h = &s["holder"];
        assert!(
            h["goid"].is_null() || h["goid"].is_u64(),
            "holder.goid must be a number or null: {s}\n{what}"
        );
        assert!(
            matches!(
                h["state"].as_str(),
                Some("running" | "blocked" | "exited" | "unknown")
            ),
            "holder.state must be running|blocked|exited|unknown: {s}\n{what}"
        );
        assert!(
            h["stack"]
                .as_array()
                .is_some_and(|st| st.iter().all(Value::is_string)),
            "holder without a \"stack\" array of strings: {s}\n{what}"
        );
        assert!(
            h["acquired_at"].is_null() || h["acquired_at"].is_string(),
            "holder.acquired_at must be a string or null: {s}\n{what}"
        );
    }
    found
}

/// Where the symbol naming a global lock lives, i.e. whether stripping removes it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Symbol {
    /// Only in the symbol table (`.symtab`): gone from a stripped build.
    Static,
    /// Also in the dynamic symbol table (`.dynsym`), which stripping keeps: a C global of
    /// a cgo program (linked by gcc, which exports them).
    Dynamic,
}

/// Whether `name` is what a stripped build calls a lock taken through a method's pointer
/// receiver: the receiver's type and an offset (`main.Store+0x18`), never a variable's
/// symbol (`main.store+0x8`, which only the symbol table could give).
fn is_receiver_form(name: &str) -> bool {
    name.rsplit_once("+0x").is_some_and(|(type_path, offset)| {
        u64::from_str_radix(offset, 16).is_ok()
            && type_path
                .rsplit('.')
                .next()
                .is_some_and(|t| t.starts_with(|c: char| c.is_ascii_uppercase()))
    })
}

/// Asserts the name of `lock_ref`, a global lock named `symbol`: `symbol` (exactly, or
/// `symbol+0x…`) in a normal build; in a stripped build none, or at most an address or
/// the type of the method receiver that took it and an offset ([`is_receiver_form`]),
/// or, for a [`Symbol::Dynamic`] one, still `symbol`.
fn assert_lock_name(lock_ref: &Value, symbol: &str, kept: Symbol, build: &GoBuild, what: &str) {
    let name = name_of(lock_ref);
    let is_symbol = |n: &str| {
        n == symbol
            || n.strip_prefix(symbol)
                .is_some_and(|rest| rest.starts_with("+0x"))
    };
    if build.stripped {
        assert!(
            name.is_none_or(|n| parse_hex(n).is_some()
                || is_receiver_form(n)
                || (kept == Symbol::Dynamic && is_symbol(n))),
            "stripped build, yet lock {} has a name: {lock_ref}\n{what}",
            lock_ref["addr"]
        );
    } else {
        assert!(
            name.is_some_and(is_symbol),
            "lock {} should be named {symbol}: {lock_ref}\n{what}",
            lock_ref["addr"]
        );
    }
}

/// Position in `stack` of the frame for function `func` (the bare name, or the name
/// followed by a space or `+`).
pub(crate) fn frame_pos(stack: &[&str], func: &str) -> Option<usize> {
    stack.iter().position(|f| {
        f.strip_prefix(func)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '+']))
    })
}

/// Asserts that `stack` (innermost first) has the frames `funcs`, in this order from the
/// inside out (other frames may come in between).
pub(crate) fn assert_frames_in_order(stack: &[&str], funcs: &[&str], who: &str, what: &str) {
    let mut from = 0;
    for func in funcs {
        let at = frame_pos(&stack[from..], func).unwrap_or_else(|| {
            panic!(
                "stack of {who} should have {func} (after {:?}), innermost first {funcs:?}: \
                 {stack:?}\n{what}",
                &stack[..from]
            )
        });
        from += at + 1;
    }
}

pub(crate) fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// go_abba: the alerting-service deadlock
// ---------------------------------------------------------------------------------------

/// (goroutine fact, lock it holds, lock it waits for, its stack from the inside out: the
/// inlined `sync` lock, the method that waits, and the method that holds).
const GO_ABBA: [(&str, &str, &str, [&str; 3]); 2] = [
    (
        "writer",
        "provider",
        "store",
        [
            "sync.(*Mutex).Lock",
            "main.(*Store).Put",
            "main.(*Provider).Refresh",
        ],
    ),
    (
        "gc",
        "store",
        "provider",
        [
            "sync.(*Mutex).Lock",
            "main.(*Provider).Evict",
            "main.(*Store).GC",
        ],
    ),
];

/// How `go_abba`'s locks are named in a normal build: `main.provider.mu` for the global
/// (its symbol and, from DWARF, the field), `main.Provider.mu` on the heap (the type of
/// the struct holding it, from DWARF and the locking code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AbbaLocks {
    Globals,
    Heap,
}

impl AbbaLocks {
    /// The expected name of the mutex of `which` (`provider` or `store`).
    fn name(self, which: &str) -> String {
        match self {
            Self::Globals => format!("main.{which}.mu"),
            Self::Heap => match which {
                "provider" => "main.Provider.mu".to_owned(),
                _ => "main.Store.mu".to_owned(),
            },
        }
    }
}

/// Checks the report of a `go_abba deadlock` (or `heap`) run: exactly one deadlock, the
/// cycle [`GO_ABBA`] by goroutine id, lock addresses, names (per `build` and `locks`) and
/// stacks, printed before the summary.
fn check_go_abba_deadlock(
    target: &Target,
    values: &[Value],
    build: &GoBuild,
    locks: AbbaLocks,
    what: &str,
) {
    let found = go_deadlocks(values, what);
    assert_eq!(found.len(), 1, "expected exactly one deadlock\n{what}");
    let cycle = found[0]["cycle"].as_array().expect("cycle array");
    assert_eq!(cycle.len(), 2, "the cycle should have 2 goroutines\n{what}");
    for (g, held, wanted, frames) in GO_ABBA {
        let id = goid(target, g);
        let entry = cycle
            .iter()
            .find(|e| e["goid"].as_u64() == Some(id))
            .unwrap_or_else(|| panic!("no cycle entry for goroutine {g} (goid {id})\n{what}"));
        assert_eq!(
            addr_of(&entry["holds"]["addr"]),
            target.lock(held),
            "goroutine {g} should hold {held}: {entry:#}\n{what}"
        );
        assert_eq!(
            addr_of(&entry["waits_for"]["addr"]),
            target.lock(wanted),
            "goroutine {g} should wait for {wanted}: {entry:#}\n{what}"
        );
        assert_lock_name(
            &entry["holds"],
            &locks.name(held),
            Symbol::Static,
            build,
            what,
        );
        assert_lock_name(
            &entry["waits_for"],
            &locks.name(wanted),
            Symbol::Static,
            build,
            what,
        );
        if build.stripped {
            // Taken in methods of `*Provider` and `*Store`: named by the receiver's type
            // and the offset the target prints, globals and heap objects alike.
            for (lock_ref, which) in [(&entry["holds"], held), (&entry["waits_for"], wanted)] {
                let type_name = if which == "provider" {
                    "Provider"
                } else {
                    "Store"
                };
                let offset: u64 = target
                    .fact(&format!("offset.{which}.mu"))
                    .parse()
                    .expect("offset fact");
                assert_eq!(
                    name_of(lock_ref),
                    Some(format!("main.{type_name}+{offset:#x}").as_str()),
                    "stripped build: {which}.mu by its receiver's type: {lock_ref}\n{what}"
                );
            }
        }
        assert_frames_in_order(&strs(&entry["stack"]), &frames, g, what);
    }
    let dl = values
        .iter()
        .position(|v| kind(v) == "deadlock")
        .expect("deadlock line");
    assert!(
        dl + 1 < values.len(),
        "the deadlock line must come before the summary\n{what}"
    );
    let s = go_summary(values, target, what);
    if let Some(n) = s.get("deadlocks") {
        assert_eq!(n.as_u64(), Some(1), "summary.deadlocks\n{what}");
    }
}

/// Guards against: missing a deadlock between goroutines (they park in the Go runtime's
/// semaphores, not on futexes of their own, and their threads go on running other
/// goroutines), reporting it under thread ids instead of the runtime's goroutine ids,
/// mixing up which goroutine holds which `sync.Mutex` or which one it waits for, losing
/// the globals' names (`main.provider`, `main.store`) in a normal build or inventing them
/// in a stripped one, stacks without the methods that took and wanted the locks (symbolized
/// from the pclntab, which stripping keeps; inlined `sync.(*Mutex).Lock` frames included),
/// and reporting the same cycle more than once.
#[test]
fn go_abba_deadlock_is_reported_with_goroutine_ids() {
    require_root();
    let (_dir, builds) = go_builds("go_abba", false);
    for build in &builds {
        let target = Target::spawn(&build.path, &["deadlock", START_MS]);
        let (values, what) = trace(&target, 5, &["--holds"], build);
        check_go_abba_deadlock(&target, &values, build, AbbaLocks::Globals, &what);
    }
}

/// Guards against: losing the names of locks inside heap objects, the usual case in a
/// real service (the provider and store are allocated at run time, so their addresses
/// are in no symbol): in a normal build they must be named by the struct type and field
/// (`main.Provider.mu`, `main.Store.mu`) learnt from DWARF at the sites that take them;
/// in a stripped build, which has no DWARF, by the type of the method receiver that takes
/// them and the offset (`main.Provider+0x0`), from the pclntab. The cycle, goroutine
/// ids and stacks must be the same as for the globals.
#[test]
fn go_abba_heap_deadlock_names_locks_by_struct_type() {
    require_root();
    let (_dir, builds) = go_builds("go_abba", false);
    for build in &builds {
        let target = Target::spawn(&build.path, &["heap", START_MS]);
        let (values, what) = trace(&target, 5, &["--holds"], build);
        check_go_abba_deadlock(&target, &values, build, AbbaLocks::Heap, &what);
    }
}

/// Guards against: position-independent Go executables (`-buildmode=pie`, loaded at a
/// random base) getting wrong stacks, names or holders because pcs were looked up
/// without the load bias, for globals and for locks in heap objects (named through the
/// sites that take them, whose addresses the bias moves).
#[test]
fn go_abba_deadlock_is_reported_for_pie_builds() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("tracer-it-go_abba-pie-")
        .tempdir()
        .expect("create temp dir for Go target");
    let builds =
        crate::go_toolchain::build_all_with("go_abba", dir.path(), false, &["-buildmode=pie"]);
    for build in &builds {
        for (mode, locks) in [("deadlock", AbbaLocks::Globals), ("heap", AbbaLocks::Heap)] {
            let target = Target::spawn(&build.path, &[mode, START_MS]);
            let (values, what) = trace(&target, 5, &["--holds"], build);
            check_go_abba_deadlock(&target, &values, build, locks, &what);
        }
    }
}

/// Checks a report that must have no findings: no deadlock, no stuck lock, a valid
/// summary.
fn check_no_findings(target: &Target, values: &[Value], what: &str) {
    assert!(
        go_deadlocks(values, what).is_empty(),
        "no deadlock expected\n{what}"
    );
    assert!(
        !values.iter().any(|v| kind(v) == "stuck_lock"),
        "no stuck lock expected\n{what}"
    );
    let s = go_summary(values, target, what);
    if let Some(n) = s.get("deadlocks") {
        assert_eq!(n.as_u64(), Some(0), "summary.deadlocks\n{what}");
    }
}

/// Guards against: false positives on the fixed code. Both paths take provider.mu, then
/// store.mu, under heavy contention for ~2 s: waiting goroutines, lock handoffs and a
/// lock order that only ever goes one way are neither a deadlock nor a stuck lock.
#[test]
fn go_abba_ordered_has_no_findings() {
    require_root();
    let (_dir, builds) = go_builds("go_abba", false);
    for build in &builds {
        let target = Target::spawn(&build.path, &["ordered", START_MS]);
        let (values, what) = trace(&target, 5, &["--holds"], build);
        check_no_findings(&target, &values, &what);
    }
}

// ---------------------------------------------------------------------------------------
// go_rwleak: the ingestion incident (a write lock leaked on an error path)
// ---------------------------------------------------------------------------------------

/// Checks the report of a `go_rwleak` run: stuck-lock lines for `registry.mu`, held for
/// writing by the leaker (`goid.leaker`, in state `state`) for at least `threshold_ns`,
/// taken in `main.(*Registry).Update` at `main.go:<line.leak>`, readers piling up and
/// reported again once their number has doubled; no deadlock; the registry in the summary
/// as a `go_rwmutex`.
pub(crate) fn check_rwleak_report(
    target: &Target,
    build: &GoBuild,
    values: &[Value],
    state: &str,
    threshold_ns: u64,
    what: &str,
) {
    let registry = target.lock("registry");
    let leaker = goid(target, "leaker");
    let line = target.fact("line.leak");
    assert!(
        go_deadlocks(values, what).is_empty(),
        "a leaked lock is no deadlock\n{what}"
    );
    let stuck = stuck_locks(values, registry, what);
    let first = stuck
        .first()
        .unwrap_or_else(|| panic!("no stuck_lock for registry ({registry:#x})\n{what}"));
    assert_eq!(
        first["mode"], "write",
        "registry is write-held: {first:#}\n{what}"
    );
    // A heap object: named by its type (DWARF), learnt at the call of the out-of-line
    // `RWMutex.Lock` found in the acquisition stack, or at the readers' inlined `RLock`.
    assert_lock_name(
        &first["lock"],
        "main.Registry.mu",
        Symbol::Static,
        build,
        what,
    );
    assert!(
        u64_field(first, "held_ns") >= threshold_ns,
        "reported as stuck before the threshold ({threshold_ns} ns): {first:#}\n{what}"
    );
    let h = &first["holder"];
    assert_eq!(
        h["goid"].as_u64(),
        Some(leaker),
        "the holder is the leaker goroutine: {first:#}\n{what}"
    );
    assert_eq!(h["state"], state, "holder state: {first:#}\n{what}");
    assert_eq!(
        h["holder_evidence"], "traced_acquire",
        "with --holds the probes saw it take the lock: {first:#}\n{what}"
    );
    let at = h["acquired_at"].as_str().unwrap_or_else(|| {
        panic!("the leaker took the lock while traced: acquired_at needed: {first:#}\n{what}")
    });
    assert!(
        at.contains("main.(*Registry).Update") && at.contains(&format!("main.go:{line}")),
        "acquired_at should be main.(*Registry).Update (main.go:{line}): {first:#}\n{what}"
    );
    let waiters = u64_field(first, "waiters");
    assert!(waiters >= 1, "readers are waiting: {first:#}\n{what}");
    assert!(
        u64_field(first, "readers_waiting") >= 1,
        "readers are waiting: {first:#}\n{what}"
    );
    assert!(
        stuck[1..]
            .iter()
            .any(|s| u64_field(s, "waiters") >= 2 * waiters),
        "the waiters keep growing (doubling every ~0.6 s): a later stuck_lock line should \
         report >= {} waiters\n{what}",
        2 * waiters
    );
    let s = go_summary(values, target, what);
    let l = summary_lock(s, registry)
        .unwrap_or_else(|| panic!("registry ({registry:#x}) missing from the summary\n{what}"));
    assert_eq!(l["type"], "go_rwmutex", "{l:#}\n{what}");
    assert!(u64_field(l, "contentions") >= 1, "{l:#}\n{what}");
}

/// Runs `go_rwleak HOLDER` on every build and checks the report with
/// [`check_rwleak_report`]. `stuck_after`: the `--stuck-after` value, None for the
/// default (1 s).
fn run_rwleak(holder: &str, state: &str, stuck_after: Option<&str>) {
    let (_dir, builds) = go_builds("go_rwleak", false);
    let mut extra: Vec<&str> = vec!["--holds"];
    extra.extend(
        stuck_after
            .map(|s| ["--stuck-after", s])
            .into_iter()
            .flatten(),
    );
    let threshold = match stuck_after {
        None => Duration::from_secs(1),
        Some(s) => Duration::from_secs_f64(s.parse().expect("--stuck-after is a number")),
    };
    let threshold_ns = u64::try_from(threshold.as_nanos()).expect("threshold fits in u64");
    for build in &builds {
        let target = Target::spawn(&build.path, &[holder, START_MS]);
        let (values, what) = trace(&target, 6, &extra, build);
        check_rwleak_report(&target, build, &values, state, threshold_ns, &what);
    }
}

/// Guards against: missing a lock that is never released by a goroutine that no longer
/// exists (the classic early return without Unlock), not recognizing the holder as exited
/// (its goroutine id must still be the one the runtime gave it), losing where it took the
/// lock (the `Update` line), counting the blocked readers wrongly, not reporting again as
/// the pile-up grows, and calling a leaked lock a deadlock.
#[test]
fn go_rwleak_holder_exited_is_reported_as_stuck() {
    require_root();
    run_rwleak("exits", "exited", None);
}

/// Guards against: the same mistakes when the holder lives on, blocked on a channel
/// elsewhere (it must be reported as blocked, not exited or running), and `--stuck-after`
/// not accepting a decimal number of seconds or not lowering the threshold.
#[test]
fn go_rwleak_holder_blocked_elsewhere_is_reported_as_stuck() {
    require_root();
    run_rwleak("lives", "blocked", Some("0.5"));
}

/// Guards against: a holder that is still busy (running or runnable) being reported as
/// blocked or exited, i.e. a holder state not read from the live goroutine.
#[test]
fn go_rwleak_holder_still_running_is_reported_as_running() {
    require_root();
    run_rwleak("spins", "running", None);
}

// ---------------------------------------------------------------------------------------
// go_hot: contention statistics of sync.Mutex
// ---------------------------------------------------------------------------------------

/// Checks the report of a `go_hot` run: `hotMu` in the summary as a named (per `build`)
/// `go_mutex` with contentions, waits and hold times, outweighing `coldMu`.
fn check_hot_report(target: &Target, values: &[Value], build: &GoBuild, what: &str) {
    check_hot_waits(target, values, build, what);
    let h = summary_lock(go_summary(values, target, what), target.lock("hot")).expect("hotMu");
    let hold = &h["hold_ns"];
    assert!(hold.is_object(), "hotMu without hold_ns: {h:#}\n{what}");
    assert!(u64_field(hold, "count") > 0, "{h:#}\n{what}");
}

/// The wait side of [`check_hot_report`]: hotMu contended, waited for, named, more than
/// coldMu; no deadlock.
fn check_hot_waits(target: &Target, values: &[Value], build: &GoBuild, what: &str) {
    let (hot, cold) = (target.lock("hot"), target.lock("cold"));
    assert!(
        go_deadlocks(values, what).is_empty(),
        "no deadlock expected\n{what}"
    );
    let s = go_summary(values, target, what);
    assert!(
        u64_field(s, "events") > 0,
        "a busy target, no events\n{what}"
    );
    let h = summary_lock(s, hot)
        .unwrap_or_else(|| panic!("hotMu ({hot:#x}) missing from the summary\n{what}"));
    assert_eq!(h["type"], "go_mutex", "{h:#}\n{what}");
    assert_lock_name(h, "main.hotMu", Symbol::Static, build, what);
    assert!(u64_field(h, "contentions") > 0, "{h:#}\n{what}");
    assert!(u64_field(&h["wait_ns"], "count") > 0, "{h:#}\n{what}");
    let hot_total = u64_field(&h["wait_ns"], "total");
    if let Some(c) = summary_lock(s, cold) {
        let cold_total = u64_field(&c["wait_ns"], "total");
        assert!(
            hot_total > cold_total,
            "hotMu waited {hot_total} ns, not more than coldMu's {cold_total} ns\n{what}"
        );
    }
}

/// Guards against: a lock in a heap object that is only ever taken through the
/// out-of-line `sync.(*RWMutex).Lock` (never inlined, so no acquisition site of the
/// caller's own) losing its `Type.field` name: the name is found from the caller's call
/// in the acquisition stack (`main.Store.rw`, from DWARF), and a stripped build keeps the
/// address only. Also: the lock is a `go_rwmutex` with write contention.
#[test]
fn go_heap_rwmutex_taken_by_call_is_named_from_the_stack() {
    require_root();
    let (_dir, builds) = go_builds("heap_locks", false);
    for build in &builds {
        let target = Target::spawn(&build.path, &["writers", START_MS]);
        let (values, what) = trace(&target, 4, &["--holds"], build);
        let rw = target.lock("rw");
        let s = go_summary(&values, &target, &what);
        let l = summary_lock(s, rw)
            .unwrap_or_else(|| panic!("s.rw ({rw:#x}) missing from the summary\n{what}"));
        assert_eq!(l["type"], "go_rwmutex", "{l:#}\n{what}");
        assert!(u64_field(l, "contentions") > 0, "{l:#}\n{what}");
        assert_lock_name(l, "main.Store.rw", Symbol::Static, build, &what);
    }
}

/// Guards against: no contention statistics for Go locks (goroutines that wait in the Go
/// runtime's semaphores rather than in futexes of their own), Go mutexes reported under
/// a native type, missing hold times, a hot `sync.Mutex` (4 goroutines hammering it) not
/// outweighing a cold one taken 5 times a second, and losing its name in a normal build.
#[test]
fn go_hot_mutex_has_contention_stats() {
    require_root();
    let (_dir, builds) = go_builds("go_hot", false);
    for build in &builds {
        let target = Target::spawn(&build.path, &["4", START_MS]);
        let (values, what) = trace(&target, 5, &["--holds"], build);
        check_hot_report(&target, &values, build, &what);
    }
}

// ---------------------------------------------------------------------------------------
// go_cgo: pthread mutexes and sync.Mutex in one process
// ---------------------------------------------------------------------------------------

/// Checks the report of a `go_cgo` run: both `c_lock` (a pthread `mutex`) and `goMu` (a
/// `go_mutex`) in the summary, contended and named per `build` (`c_lock` stays in the
/// dynamic symbol table of a stripped build, so its name may remain).
fn check_cgo_report(target: &Target, values: &[Value], build: &GoBuild, what: &str) {
    let (c, go) = (target.lock("c"), target.lock("go"));
    assert!(
        go_deadlocks(values, what).is_empty(),
        "no deadlock expected\n{what}"
    );
    let s = go_summary(values, target, what);
    let cl = summary_lock(s, c)
        .unwrap_or_else(|| panic!("c_lock ({c:#x}) missing from the summary\n{what}"));
    assert_eq!(
        cl["type"], "mutex",
        "c_lock is a pthread mutex: {cl:#}\n{what}"
    );
    assert_lock_name(cl, "c_lock", Symbol::Dynamic, build, what);
    assert!(u64_field(cl, "contentions") > 0, "{cl:#}\n{what}");
    let gl = summary_lock(s, go)
        .unwrap_or_else(|| panic!("goMu ({go:#x}) missing from the summary\n{what}"));
    assert_eq!(gl["type"], "go_mutex", "{gl:#}\n{what}");
    assert_lock_name(gl, "main.goMu", Symbol::Static, build, what);
    assert!(u64_field(gl, "contentions") > 0, "{gl:#}\n{what}");
}

/// Guards against: Go support breaking the native tracing of a cgo program (a pthread
/// mutex taken in C on the threads cgo calls run on, dynamically linked libc) or the other
/// way round, i.e. seeing only one of the two kinds of locks, or reporting the pthread
/// mutex as a Go lock or the `sync.Mutex` as a native one.
#[test]
fn go_cgo_reports_pthread_and_go_mutexes() {
    require_root();
    let (_dir, builds) = go_builds("go_cgo", true);
    for build in &builds {
        let target = Target::spawn(&build.path, &["4", START_MS]);
        let (values, what) = trace(&target, 5, &["--holds"], build);
        check_cgo_report(&target, &values, build, &what);
    }
}

// ---------------------------------------------------------------------------------------
// Lifecycle: Go sites go away at once, and a busy Go target survives the tracer
// ---------------------------------------------------------------------------------------

/// Guards against: Go lock sites that outlive the tracer, or that the kernel removes one
/// by one (about 0.1 s each, minutes for a real service) instead of all at once through
/// the `uprobe_multi` link; and against a Go target hurt by the tracer's death while its
/// goroutines run through the probed lock sites.
#[test]
fn go_sites_are_gone_at_once_after_sigkill_and_the_target_survives() {
    require_root();
    let (_dir, builds) = go_builds("go_hot", false);
    for build in &builds {
        let baseline = crate::common::our_prog_ids();
        let mut target = Target::spawn(&build.path, &["4", "0"]);
        let mut tracer =
            crate::common::Tracer::spawn(&as_strs(&json_attach_args(target.pid(), 60, &[])));
        std::thread::sleep(Duration::from_secs(2));
        let ours = || -> Vec<u64> {
            crate::common::our_prog_ids()
                .difference(&baseline)
                .copied()
                .collect()
        };
        assert!(
            !ours().is_empty(),
            "[{}] while attached, none of our programs is loaded",
            build.label
        );
        // kill9 returns once the tracer is reaped, which is after the kernel has closed
        // its descriptors and so removed every uprobe it held.
        let killed = std::time::Instant::now();
        tracer.kill9();
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "[{}] the killed tracer took {:?} to go away: its Go sites were removed one by one",
            build.label,
            killed.elapsed()
        );
        while !ours().is_empty() {
            assert!(
                killed.elapsed() < Duration::from_secs(2),
                "[{}] 2 s after SIGKILL of the tracer, programs {:?} are still loaded",
                build.label,
                ours()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The target hammers its locks for 4 s, prints `done`, then lives on.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !target.later_lines().iter().any(|l| l == "done") {
            assert!(
                target.is_running() && std::time::Instant::now() < deadline,
                "[{}] the Go target did not finish its work after the tracer was killed \
                 (running: {}), output {:?}",
                build.label,
                target.is_running(),
                target.later_lines()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(target.is_running(), "[{}] the Go target died", build.label);
    }
}

// ---------------------------------------------------------------------------------------
// The default Go probes: parks and hand-overs only, holders from the goroutines' stacks
// ---------------------------------------------------------------------------------------

/// Guards the default mode's promise: with no probe on any lock fast path, the deadlock
/// of `go_abba` that forms after the attach is still found, with the same cycle, goroutine
/// ids, lock names and stacks as with `--holds`; its holders are known from their frames
/// (the lock's address in the slot the function unlocks from), stripped builds included.
#[test]
fn go_abba_deadlock_is_found_by_the_default_probes() {
    require_root();
    let (_dir, builds) = go_builds("go_abba", false);
    for build in &builds {
        for (mode, locks) in [("deadlock", AbbaLocks::Globals), ("heap", AbbaLocks::Heap)] {
            let target = Target::spawn(&build.path, &[mode, START_MS]);
            let (values, what) = trace(&target, 5, &[], build);
            check_go_abba_deadlock(&target, &values, build, locks, &what);
            let d = values
                .iter()
                .find(|v| kind(v) == "deadlock")
                .expect("deadlock");
            for e in d["cycle"].as_array().expect("cycle") {
                assert_eq!(
                    e["holder_evidence"].as_str(),
                    Some("frame_variable"),
                    "{e}\n{what}"
                );
                assert_eq!(
                    e["blocked_before_attach"],
                    Value::Bool(false),
                    "{e}\n{what}"
                );
            }
        }
    }
}

/// Guards the default mode on position-independent builds: the park sites, the
/// goroutine list and the frames' code are all found at the load bias.
#[test]
fn go_abba_deadlock_is_found_by_the_default_probes_in_pie_builds() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("tracer-it-go_abba-pie-")
        .tempdir()
        .expect("create temp dir for Go target");
    let builds =
        crate::go_toolchain::build_all_with("go_abba", dir.path(), false, &["-buildmode=pie"]);
    for build in &builds {
        let target = Target::spawn(&build.path, &["deadlock", START_MS]);
        let (values, what) = trace(&target, 5, &[], build);
        check_go_abba_deadlock(&target, &values, build, AbbaLocks::Globals, &what);
    }
}

/// Guards the default mode's contention statistics: counted from the goroutines that
/// park (not from every acquisition), so a hot mutex still shows up ranked above a cold
/// one, named, with wait times, and without hold times (which need `--holds`).
#[test]
fn go_hot_mutex_waits_are_counted_by_the_default_probes() {
    require_root();
    let (_dir, builds) = go_builds("go_hot", false);
    for build in &builds {
        let target = Target::spawn(&build.path, &["3", START_MS]);
        let (values, what) = trace(&target, 5, &[], build);
        check_hot_waits(&target, &values, build, &what);
        let s = go_summary(&values, &target, &what);
        let h = summary_lock(s, target.lock("hot")).expect("hotMu");
        assert!(
            h["hold_ns"].is_null(),
            "hold times need --holds: {h:#}\n{what}"
        );
    }
}
