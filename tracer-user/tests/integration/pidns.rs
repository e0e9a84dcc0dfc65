//! Root integration tests: targets in their own PID namespace, as every container is.
//! Their lock memory (a glibc mutex's `__owner`) holds TIDs as the namespace sees them,
//! while the kernel names threads by their host TIDs.

use std::time::Duration;

use crate::common::{
    Edge, Names, Target, TargetBinary, as_strs, assert_cycle, assert_success, build_target,
    deadlocks, describe, json_attach_args, lock_by_addr, require_root, run_tracer, summary,
    u64_field,
};

const ABBA: [Edge<'static>; 2] = [
    ("worker_a", "lock_a", "lock_b"),
    ("worker_b", "lock_b", "lock_a"),
];

/// Starts `abba` in a new PID namespace; with no delay, waits until the deadlock exists
/// (both workers asleep in futex) before returning.
fn start_abba_in_namespace(delay_ms: Option<u64>) -> (Target, TargetBinary) {
    let bin = build_target("abba", &[]);
    let delay = delay_ms.map(|d| d.to_string());
    let args: Vec<&str> = delay.iter().map(String::as_str).collect();
    let target = Target::spawn_in_pid_namespace(bin.path(), &args);
    if delay_ms.is_none() {
        let tids = [target.tid("worker_a"), target.tid("worker_b")];
        target.wait_in_futex(&tids, Duration::from_secs(5));
    }
    (target, bin)
}

/// Attaches to the host PID of `target` for `secs` seconds with `extra` flags and checks
/// the report: exactly one deadlock, the ABBA cycle by host TIDs with thread names and
/// stacks, both locks of type `mutex` (their owners were recognised), and the summary
/// naming the host PID as `pid` and the namespace's as `ns_pid`.
fn check_abba_in_namespace(target: &Target, secs: u64, extra: &[&str]) {
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), secs, extra)));
    assert_success(&out);
    let values = crate::common::json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one deadlock\n{}",
        describe(&out)
    );
    assert_cycle(target, found[0], &ABBA, Names::Symbols);
    let s = summary(&values);
    assert_eq!(u64_field(s, "pid"), u64::from(target.pid()), "{s:#}");
    assert_eq!(u64_field(s, "ns_pid"), u64::from(target.ns_pid()), "{s:#}");
    assert_eq!(u64_field(s, "deadlocks"), 1, "{s:#}");
    for name in ["lock_a", "lock_b"] {
        let lock = lock_by_addr(s, target.lock(name))
            .unwrap_or_else(|| panic!("{name} missing from the summary: {s:#}"));
        assert_eq!(lock["type"].as_str(), Some("mutex"), "{name}: {lock:#}");
    }
}

/// Guards against: a deadlock inside a PID namespace (a container) that exists before the
/// attach going unreported, or reported with the namespace's TIDs, because the mutex
/// owner TIDs read from lock memory were compared with host TIDs untranslated (the locks
/// then also showed as ownerless `futex` words).
#[test]
fn deadlock_in_a_pid_namespace_is_reported_with_host_tids() {
    require_root();
    let (target, _bin) = start_abba_in_namespace(None);
    check_abba_in_namespace(&target, 3, &[]);
}

/// Guards against: the same with `--holds` (holders also from the lock uprobes, which
/// name host TIDs, while the confirmation re-reads owner fields holding namespace TIDs).
#[test]
fn deadlock_in_a_pid_namespace_is_reported_with_holds() {
    require_root();
    let (target, _bin) = start_abba_in_namespace(None);
    check_abba_in_namespace(&target, 3, &["--holds"]);
}

/// Guards against: a deadlock that forms inside a PID namespace while the tracer is
/// attached (with `--holds`) going unreported: the waits' owner fields, copied by the
/// kernel at wait start, hold namespace TIDs.
#[test]
fn deadlock_formed_in_a_pid_namespace_while_attached_is_reported() {
    require_root();
    let (target, _bin) = start_abba_in_namespace(Some(2000));
    check_abba_in_namespace(&target, 5, &["--holds"]);
}

/// Guards against: a priority-inheritance deadlock inside a PID namespace going
/// unreported. Its owner TIDs are in the futex words (namespace TIDs), and the thread the
/// kernel refused with `EDEADLK` is parked on a word of its own stack: the search for the
/// mutex it wanted matches futex words against its owners' TIDs, which must be the
/// namespace's, and so must the confirmation's reads of the words.
#[test]
fn pi_deadlock_in_a_pid_namespace_is_reported() {
    require_root();
    let bin = build_target("pi_abba", &[]);
    let target = Target::spawn_in_pid_namespace(bin.path(), &[]);
    let tids = [target.tid("pi_a"), target.tid("pi_b")];
    target.wait_in_futex(&tids, Duration::from_secs(5));
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 2, &[])));
    assert_success(&out);
    let values = crate::common::json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(found.len(), 1, "expected one deadlock\n{}", describe(&out));
    let pi_abba: [Edge<'static>; 2] = [
        ("pi_a", "pi_lock_a", "pi_lock_b"),
        ("pi_b", "pi_lock_b", "pi_lock_a"),
    ];
    assert_cycle(&target, found[0], &pi_abba, Names::Symbols);
    let s = summary(&values);
    assert_eq!(u64_field(s, "ns_pid"), u64::from(target.ns_pid()), "{s:#}");
    for name in ["pi_lock_a", "pi_lock_b"] {
        let lock = lock_by_addr(s, target.lock(name))
            .unwrap_or_else(|| panic!("{name} missing from the summary: {s:#}"));
        assert_eq!(lock["type"].as_str(), Some("pi_mutex"), "{name}: {lock:#}");
    }
}
