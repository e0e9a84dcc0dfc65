//! Root integration tests: deadlock detection (`tracer attach` on deadlocked C targets).

use std::time::Duration;

use crate::common::{
    Edge, Names, Target, Tracer, as_strs, assert_cycle, assert_success, build_target, deadlocks,
    describe, json_attach_args, json_lines, kind, require_root, run_tracer, stack_of, summary,
    tracer_bin, u64_field,
};

const ABBA: [Edge<'static>; 2] = [
    ("worker_a", "lock_a", "lock_b"),
    ("worker_b", "lock_b", "lock_a"),
];

/// Starts `abba` (optionally with a delay before the second locks) and, when the deadlock
/// is to exist before the tracer attaches, waits until both workers sit in futex.
fn start_abba(exe: &std::path::Path, delay_ms: Option<u64>) -> Target {
    let delay = delay_ms.map(|d| d.to_string());
    let args: Vec<&str> = delay.iter().map(String::as_str).collect();
    let target = Target::spawn(exe, &args);
    if delay_ms.is_none() {
        let tids = [target.tid("worker_a"), target.tid("worker_b")];
        target.wait_in_futex(&tids, Duration::from_secs(5));
    }
    target
}

/// Runs the tracer on an already-deadlocked ABBA target and checks the JSON report: exactly
/// one deadlock, with the right cycle, reported before the summary.
fn check_abba_json(exe: &std::path::Path, extra: &[&str], names: Names) {
    let target = start_abba(exe, None);
    check_abba_report(&target, extra, &ABBA, names);
}

/// Runs the tracer on the already-deadlocked ABBA `target` and checks the JSON report:
/// exactly the cycle `expected`, reported before the summary.
fn check_abba_report(target: &Target, extra: &[&str], expected: &[Edge<'_>], names: Names) {
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 3, extra)));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one deadlock\n{}",
        describe(&out)
    );
    assert_cycle(target, found[0], expected, names);
    let dl_pos = values
        .iter()
        .position(|v| kind(v) == "deadlock")
        .expect("deadlock line");
    let sum_pos = values
        .iter()
        .position(|v| kind(v) == "summary")
        .expect("summary line");
    assert!(
        dl_pos < sum_pos,
        "the deadlock line must come before the summary"
    );
    let s = summary(&values);
    assert_eq!(u64_field(s, "pid"), u64::from(target.pid()), "summary pid");
    assert_eq!(u64_field(s, "deadlocks"), 1, "summary.deadlocks: {s:#}");
}

/// Guards against: missing an ABBA deadlock that already exists when the tracer attaches
/// (threads parked in futex before any probe fired), mixing up which thread holds which
/// lock, wrong lock addresses or names, wrong thread names, empty stacks, or printing the
/// deadlock after (instead of before) the summary.
#[test]
fn abba_deadlock_is_reported() {
    require_root();
    let bin = build_target("abba", &[]);
    check_abba_json(bin.path(), &[], Names::Symbols);
}

/// Guards against: the `--holds` mode (lock/unlock uprobes) breaking deadlock detection or
/// reporting a second, duplicate cycle for the same deadlock.
#[test]
fn abba_deadlock_is_reported_with_holds() {
    require_root();
    let bin = build_target("abba", &[]);
    check_abba_json(bin.path(), &["--holds"], Names::Symbols);
}

/// Guards against: depending on the symbol table to find locks (a stripped binary must
/// still give the same cycle by address), or inventing names for a stripped binary.
#[test]
fn abba_deadlock_is_reported_for_stripped_binary() {
    require_root();
    let bin = build_target("abba", &[]);
    let stripped = bin.strip_copy();
    check_abba_json(&stripped, &[], Names::Absent);
}

/// Guards against: one-letter C globals being named as C++ type codes (issue 16: a mutex
/// `m` was reported as `unsigned long`, since every symbol went through the C++
/// demangler). `abba` built with its locks named `m` and `n` must report them as `m` and
/// `n`. Checked to fail (`unsigned long`/`unsigned int`) without the fix.
#[test]
fn one_letter_lock_names_are_not_demangled() {
    require_root();
    let bin = build_target("abba", &["-DLOCK_A=m", "-DLOCK_B=n"]);
    let target = start_abba(bin.path(), None);
    let one_letter: [Edge<'static>; 2] = [("worker_a", "m", "n"), ("worker_b", "n", "m")];
    check_abba_report(&target, &[], &one_letter, Names::Symbols);
}

/// Guards against: losing every name when the target's executable was deleted after it
/// started (issue 16; a rebuilt or cleaned-up binary): the file is still open through
/// the target's mappings, and names must come from there. Checked to fail (no names)
/// without the fix.
#[test]
fn abba_deadlock_names_locks_of_a_deleted_executable() {
    require_root();
    let bin = build_target("abba", &[]);
    let target = start_abba(bin.path(), None);
    std::fs::remove_file(bin.path()).expect("delete the target's executable");
    check_abba_report(&target, &[], &ABBA, Names::Symbols);
}

/// Guards against: only seeing deadlocks that pre-date the attach (the cycle here forms
/// ~2 s after the target printed `ready`, while the tracer is attached), and stacks that
/// miss the thread functions although the binary has a symbol table.
#[test]
fn abba_deadlock_formed_while_attached_has_symbolized_stacks() {
    require_root();
    let bin = build_target("abba", &[]);
    let target = start_abba(bin.path(), Some(2000));
    let (values, _) = expect_one_deadlock(&target, 5, &["--holds"], &ABBA, Names::Symbols);
    let found = deadlocks(&values);
    for thread in ["worker_a", "worker_b"] {
        let func = format!("{thread}_main");
        let stack = stack_of(found[0], target.tid(thread));
        assert!(
            stack.iter().any(|f| f.contains(&func)),
            "stack of {thread} should contain its thread function {func}: {stack:?}"
        );
    }
    summary(&values);
}

/// Guards against: a deadlock whose waits the kernel sent without their stacks (it
/// samples the stacks of a run of waits on one word, `STACK_SAMPLE_EVERY`) being reported
/// with stacks cut to the futex call. `sampled_abba` makes worker a's deadlocking wait the
/// second in a row on its word on its CPU, so it always goes out without a stack; the
/// report must read a's full stack from the blocked thread instead.
#[test]
fn deadlock_waits_sent_without_their_stacks_still_have_full_stacks() {
    require_root();
    let bin = build_target("sampled_abba", &[]);
    let target = Target::spawn(bin.path(), &["2000"]);
    let (values, _) = expect_one_deadlock(
        &target,
        5,
        &[],
        &[
            ("sampled_a", "first_lock", "second_lock"),
            ("sampled_b", "second_lock", "first_lock"),
        ],
        Names::Symbols,
    );
    let found = deadlocks(&values);
    for (thread, func) in [
        ("sampled_a", "sampled_worker_a"),
        ("sampled_b", "sampled_worker_b"),
    ] {
        let stack = stack_of(found[0], target.tid(thread));
        let at = stack.iter().position(|f| f.contains("pthread_mutex_lock"));
        let caller = stack.iter().position(|f| f.contains(func));
        assert!(
            matches!((at, caller), (Some(at), Some(caller)) if at < caller),
            "stack of {thread} should have pthread_mutex_lock, then {func}: {stack:?}\n{:#}",
            found[0]
        );
    }
}

/// Guards against: reporting only two-party cycles, or getting the thread→lock mapping of
/// a longer cycle wrong.
#[test]
fn three_thread_cycle_is_reported() {
    require_root();
    let bin = build_target("three_cycle", &[]);
    let target = Target::spawn(bin.path(), &[]);
    let tids = [target.tid("t0"), target.tid("t1"), target.tid("t2")];
    target.wait_in_futex(&tids, Duration::from_secs(5));
    let (values, _) = expect_one_deadlock(
        &target,
        3,
        &[],
        &[("t0", "l0", "l1"), ("t1", "l1", "l2"), ("t2", "l2", "l0")],
        Names::Symbols,
    );
    assert_eq!(u64_field(summary(&values), "deadlocks"), 1);
}

/// Guards against: missing a thread that deadlocks on a lock it already holds (a one-node
/// cycle, easy to drop as a "self edge").
#[test]
fn self_deadlock_is_reported() {
    require_root();
    let bin = build_target("self_deadlock", &[]);
    let target = Target::spawn(bin.path(), &[]);
    target.wait_in_futex(&[target.tid("self_locker")], Duration::from_secs(5));
    expect_one_deadlock(
        &target,
        3,
        &[],
        &[("self_locker", "self_lock", "self_lock")],
        Names::Symbols,
    );
}

/// Guards against: the text report (the default format) hiding a deadlock, not putting it
/// first, or leaving out lock names and thread ids.
#[test]
fn abba_deadlock_in_text_format() {
    require_root();
    let bin = build_target("abba", &[]);
    let target = start_abba(bin.path(), None);
    let pid = target.pid().to_string();
    let out = run_tracer(&["attach", "--pid", &pid, "--duration", "3"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let dl = text
        .find("DEADLOCK")
        .unwrap_or_else(|| panic!("no DEADLOCK\n{}", describe(&out)));
    for needle in ["lock_a", "lock_b"] {
        let at = text
            .find(needle)
            .unwrap_or_else(|| panic!("text report lacks {needle}\n{}", describe(&out)));
        assert!(
            dl < at,
            "DEADLOCK should come first, before {needle}\n{}",
            describe(&out)
        );
    }
    for thread in ["worker_a", "worker_b"] {
        let tid = target.tid(thread).to_string();
        assert!(
            text.contains(&tid),
            "text report lacks tid {tid} of {thread}\n{}",
            describe(&out)
        );
    }
}

/// Guards against: buffering the deadlock line until the end (it must be printed as soon as
/// the cycle is found) and SIGINT not producing the summary and the deadlock's exit status (3).
#[test]
fn deadlock_is_streamed_and_sigint_ends_with_summary() {
    require_root();
    let bin = build_target("abba", &[]);
    let target = start_abba(bin.path(), None);
    let pid = target.pid().to_string();
    let mut tracer = Tracer::spawn(&[
        "attach",
        "--pid",
        &pid,
        "--duration",
        "60",
        "--format",
        "json",
    ]);
    let line = tracer.wait_for_line(Duration::from_secs(15), |l| l.contains("\"deadlock\""));
    assert!(
        line.is_some(),
        "no deadlock line within 15 s of a 60 s trace (not streamed?); tracer {}",
        tracer_bin()
    );
    tracer.signal("INT");
    let elapsed_before = tracer.elapsed();
    let out = tracer.wait(Duration::from_secs(10));
    assert_success(&out);
    assert!(elapsed_before < Duration::from_mins(1));
    let values = json_lines(&out.stdout);
    assert_eq!(deadlocks(&values).len(), 1, "{}", describe(&out));
    let s = summary(&values);
    assert_eq!(u64_field(s, "pid"), u64::from(target.pid()));
    assert_eq!(u64_field(s, "deadlocks"), 1);
}

/// Attaches to `target` for `secs` seconds (JSON, plus `extra` flags) and asserts the
/// report holds exactly one deadlock, the cycle `edges`. Returns every JSON line and the
/// tracer's stderr.
fn expect_one_deadlock(
    target: &Target,
    secs: u64,
    extra: &[&str],
    edges: &[Edge<'_>],
    names: Names,
) -> (Vec<serde_json::Value>, String) {
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), secs, extra)));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one deadlock\n{}",
        describe(&out)
    );
    assert_cycle(target, found[0], edges, names);
    (values, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Guards against: requiring a dynamically linked glibc. A statically linked program has
/// no libc.so to put uprobes in: `--holds` must say so and carry on in futex mode, which
/// still finds the deadlock with names and stacks.
#[test]
fn abba_deadlock_is_reported_for_static_binary() {
    require_root();
    let bin = build_target("abba", &["-static"]);
    let target = start_abba(bin.path(), None);
    let (values, stderr) = expect_one_deadlock(&target, 2, &["--holds"], &ABBA, Names::Symbols);
    assert!(
        stderr.contains("futex mode"),
        "the fallback to futex mode must be said: {stderr}"
    );
    let notes = summary(&values)["notes"].to_string();
    assert!(
        notes.contains("futex mode"),
        "and noted in the report: {notes}"
    );
}

/// Guards against: `--holds` knowing who holds a lock but not where and since when it was
/// taken. Every lock here is taken while the tracer is attached, so each cycle entry must
/// name the code that took its held lock and how long it has held it.
#[test]
fn holds_mode_reports_where_each_held_lock_was_taken() {
    require_root();
    let bin = build_target("late_abba", &[]);
    let target = Target::spawn(bin.path(), &["1500"]);
    let late: [Edge<'static>; 2] = [
        ("late_a", "first_lock", "second_lock"),
        ("late_b", "second_lock", "first_lock"),
    ];
    let (values, _) = expect_one_deadlock(&target, 4, &["--holds"], &late, Names::Symbols);
    for entry in deadlocks(&values)[0]["cycle"]
        .as_array()
        .expect("cycle array")
    {
        let taken: Vec<&str> = entry["acquired_at"]
            .as_array()
            .map(|frames| {
                frames
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .collect()
            })
            .unwrap_or_default();
        let func = if entry["thread"] == "late_a" {
            "late_worker_a"
        } else {
            "late_worker_b"
        };
        assert!(
            taken.iter().any(|f| *f == "run" || *f == func),
            "acquired_at should start at the code that took the lock (run, called from {func}): {entry:#}"
        );
        let held = entry["held_ns"].as_u64().expect("held_ns with --holds");
        assert!(
            held > 0 && held < 10_000_000_000,
            "held_ns out of range: {entry:#}"
        );
    }
}

const PI_ABBA: [Edge<'static>; 2] = [
    ("pi_a", "pi_lock_a", "pi_lock_b"),
    ("pi_b", "pi_lock_b", "pi_lock_a"),
];

/// Guards against: missing deadlocks on priority-inheritance mutexes that formed before
/// the attach. glibc locks them with `FUTEX_LOCK_PI`/`FUTEX_LOCK_PI2` and the owner's TID
/// lives in the futex word, and the kernel refuses the second locker with `EDEADLK`, after
/// which glibc parks it forever on a word of its own stack: the tracer must still find
/// which mutex it wanted, and confirm the cycle by the PI owner words.
#[test]
fn pi_mutex_deadlock_is_reported() {
    require_root();
    let bin = build_target("pi_abba", &[]);
    let target = Target::spawn(bin.path(), &[]);
    target.wait_in_futex(
        &[target.tid("pi_a"), target.tid("pi_b")],
        Duration::from_secs(5),
    );
    let (values, _) = expect_one_deadlock(&target, 2, &[], &PI_ABBA, Names::Symbols);
    let s = summary(&values);
    let types: Vec<&str> = s["locks"]
        .as_array()
        .expect("locks array")
        .iter()
        .filter_map(|l| l["type"].as_str())
        .collect();
    assert_eq!(types, ["pi_mutex", "pi_mutex"], "{s:#}");
}

/// Guards against: losing a PI deadlock that forms while attached. The kernel refuses the
/// second PI lock with `EDEADLK` and glibc parks that thread forever on a word of its own
/// stack; the tracer must keep counting it as waiting for the mutex it asked for.
#[test]
fn pi_mutex_deadlock_formed_while_attached_is_reported() {
    require_root();
    let bin = build_target("pi_abba", &[]);
    let target = Target::spawn(bin.path(), &["1500"]);
    expect_one_deadlock(&target, 4, &[], &PI_ABBA, Names::Symbols);
}
