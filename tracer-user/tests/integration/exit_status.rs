//! Root integration tests: `tracer attach`'s exit status says what it found (README "Exit
//! status"): 0 nothing, 3 a deadlock, 4 a stuck lock, 5 a lock-order inversion.
//!
//! Each runs a real target whose own printout says what it did (its threads and locks),
//! and checks both the report and the exit status against it.

use std::{process::Output, time::Duration};

use serde_json::Value;

use crate::{
    common::{
        EXIT_DEADLOCK, EXIT_INVERSION, EXIT_STUCK_LOCK, Target, addr_of, as_strs, build_target,
        deadlocks, describe, json_attach_args, json_lines, lock_by_addr, run_tracer, summary,
        u64_field,
    },
    go_toolchain,
    lock_order::{ROUNDS, inversions, trace_rounds},
};

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// Guards against: a deadlock leaving the tracer with exit status 0, so a health check
/// running `tracer attach --pid N --duration 2` cannot tell a hung service from a healthy
/// one; or a deadlock reported on the wrong threads with the right code.
#[test]
fn a_deadlock_exits_3() {
    crate::common::require_root();
    let bin = build_target("abba", &[]);
    let target = Target::spawn(bin.path(), &[]);
    let (a, b) = (target.tid("worker_a"), target.tid("worker_b"));
    target.wait_in_futex(&[a, b], Duration::from_secs(5));
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 2, &[])));
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(found.len(), 1, "one deadlock\n{}", describe(&out));
    let mut tids: Vec<u64> = found[0]["cycle"]
        .as_array()
        .expect("cycle")
        .iter()
        .map(|e| u64_field(e, "tid"))
        .collect();
    tids.sort_unstable();
    let mut expected = vec![a, b];
    expected.sort_unstable();
    assert_eq!(tids, expected, "the cycle is the target's two workers");
    assert_eq!(
        code(&out),
        Some(EXIT_DEADLOCK),
        "a deadlock exits {EXIT_DEADLOCK}\n{}",
        describe(&out)
    );
}

/// Guards against: a stuck lock (a write lock leaked by a Go goroutine, readers piling
/// up behind it) exiting 0, or with the deadlock's code (it is no cycle).
#[test]
fn a_stuck_lock_exits_4() {
    crate::common::require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let [go, _] = go_toolchain::installed();
    let bin = go_toolchain::build(&go, "go_rwleak", dir.path(), false);
    let target = Target::spawn(&bin, &["lives", "2500"]);
    let registry = target.lock("registry");
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 6, &["--holds"])));
    let values = json_lines(&out.stdout);
    assert!(deadlocks(&values).is_empty(), "{}", describe(&out));
    assert!(
        values
            .iter()
            .any(|v| v["kind"] == "stuck_lock" && addr_of(&v["lock"]["addr"]) == registry),
        "registry ({registry:#x}) reported stuck\n{}",
        describe(&out)
    );
    assert_eq!(
        code(&out),
        Some(EXIT_STUCK_LOCK),
        "a stuck lock exits {EXIT_STUCK_LOCK}\n{}",
        describe(&out)
    );
}

/// Guards against: a lock-order inversion (a deadlock that has not happened yet) exiting
/// 0, or with a deadlock's code.
#[test]
fn a_lock_order_inversion_exits_5() {
    crate::common::require_root();
    let bin = build_target("order_inversion", &[]);
    let mut target = Target::spawn(bin.path(), &[&ROUNDS.to_string()]);
    let (a, b) = (target.lock("lock_a"), target.lock("lock_b"));
    let run = trace_rounds(&mut target, "json", &[]);
    let values = run.values();
    let found = inversions(&values, &run.what);
    assert_eq!(found.len(), 1, "one inversion\n{}", run.what);
    let mut locks: Vec<u64> = found[0]["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .map(|l| addr_of(&l["addr"]))
        .collect();
    locks.sort_unstable();
    let mut expected = vec![a, b];
    expected.sort_unstable();
    assert_eq!(locks, expected, "the target's two locks\n{}", run.what);
    assert!(deadlocks(&values).is_empty(), "{}", run.what);
    assert_eq!(
        code(&run.out),
        Some(EXIT_INVERSION),
        "an inversion exits {EXIT_INVERSION}\n{}",
        run.what
    );
}

/// Guards against: contention alone (a hot lock, no deadlock, nothing stuck) giving a
/// non-zero exit status, which would page for a busy but healthy service.
#[test]
fn contention_alone_exits_0() {
    crate::common::require_root();
    let bin = build_target("hot_cold", &[]);
    let target = Target::spawn(bin.path(), &["4"]);
    let hot = target.lock("hot_lock");
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 2, &[])));
    let values = json_lines(&out.stdout);
    let s: &Value = summary(&values);
    let hot_lock = lock_by_addr(s, hot)
        .unwrap_or_else(|| panic!("hot_lock ({hot:#x}) was contended\n{}", describe(&out)));
    assert!(u64_field(hot_lock, "contentions") > 0);
    assert_eq!(code(&out), Some(0), "{}", describe(&out));
}
