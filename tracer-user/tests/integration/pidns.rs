//! Root integration tests: targets in their own PID namespace, as every container is.
//! Their lock memory (a glibc mutex's `__owner`) holds TIDs as the namespace sees them,
//! while the kernel names threads by their host TIDs.

use std::{path::Path, time::Duration};

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

/// Runs `script` (sh) as PID 1's child in a new PID namespace, with `TRACER` set to the
/// tracer binary and `ABBA` to the `abba` target, and returns its stdout and stderr: the
/// shape of a sidecar container that shares its pod's PID namespace
/// (`shareProcessNamespace`), where the tracer and its target see the same ids.
fn run_in_shared_namespace(script: &str) -> std::process::Output {
    let bin = build_target("abba", &[]);
    run_in_new_pid_namespace(script, ("ABBA", bin.path()))
}

/// Runs `sh -c script` in a new PID namespace (`unshare --pid --fork --mount-proc`, at
/// most 60 s), with `$TRACER` the tracer and `$NAME` (`target`'s) a target binary.
fn run_in_new_pid_namespace(script: &str, target: (&str, &Path)) -> std::process::Output {
    let out = crate::tools::output(
        std::process::Command::new("timeout")
            .args([
                "60",
                "unshare",
                "--pid",
                "--fork",
                "--mount-proc",
                "sh",
                "-c",
                script,
            ])
            .env("TRACER", crate::common::tracer_bin())
            .env(target.0, target.1),
        "util-linux",
    );
    eprintln!("{}", describe(&out));
    out
}

/// The `key=value` facts the script printed (the target's, in its namespace's ids).
fn facts(stdout: &str) -> std::collections::HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.starts_with('{'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Checks the one deadlock line in `stdout` against the target's facts: both workers by
/// the TIDs it printed (the namespace's), each holding and waiting for the locks at the
/// addresses it printed, formed after the attach.
fn check_deadlock_in_shared_namespace(stdout: &str) -> serde_json::Value {
    let facts = facts(stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["kind"] == "deadlock")
        .collect();
    assert_eq!(lines.len(), 1, "one deadlock expected:\n{stdout}");
    let deadlock = lines[0].clone();
    let fact = |k: &str| {
        facts
            .get(k)
            .unwrap_or_else(|| panic!("no fact {k}: {stdout}"))
            .clone()
    };
    let cycle = deadlock["cycle"].as_array().expect("cycle");
    for (worker, holds, waits) in [
        ("worker_a", "lock_a", "lock_b"),
        ("worker_b", "lock_b", "lock_a"),
    ] {
        let tid: u64 = fact(&format!("tid.{worker}")).parse().expect("tid");
        let entry = cycle
            .iter()
            .find(|e| e["tid"].as_u64() == Some(tid))
            .unwrap_or_else(|| panic!("{worker} ({tid}) not in the cycle: {deadlock}"));
        let addr = |lock: &str| crate::common::parse_hex(&fact(&format!("lock.{lock}")));
        assert_eq!(
            crate::common::addr_of(&entry["holds"]["addr"]),
            addr(holds).expect("hex")
        );
        assert_eq!(
            crate::common::addr_of(&entry["waits_for"]["addr"]),
            addr(waits).expect("hex")
        );
        assert_eq!(entry["blocked_before_attach"], false, "{deadlock}");
    }
    deadlock
}

/// Guards the sidecar shape: a tracer running in its target's PID namespace (a container
/// of a pod with `shareProcessNamespace`) used to get no kernel events at all (the eBPF
/// programs filtered on host ids, the tracer knew the namespace's), so a deadlock that
/// formed after the attach was never reported. Now it is, with the namespace's TIDs and
/// the lock addresses the target printed.
#[test]
fn tracer_in_the_targets_namespace_sees_a_deadlock_form() {
    require_root();
    let out = run_in_shared_namespace(
        r#"
        "$ABBA" 1500 > /tmp/abba-sidecar-$$.out &
        while ! grep -q ready /tmp/abba-sidecar-$$.out 2>/dev/null; do sleep 0.05; done
        cat /tmp/abba-sidecar-$$.out
        P=$(sed -n 's/^pid=//p' /tmp/abba-sidecar-$$.out)
        rm -f /tmp/abba-sidecar-$$.out
        "$TRACER" attach --pid "$P" --duration 4 --format json
        "#,
    );
    assert_success(&out);
    check_deadlock_in_shared_namespace(&String::from_utf8_lossy(&out.stdout));
}

/// Guards `tracer serve` in the sidecar shape: in its pod's PID namespace, `--exe` finds
/// the service and its deadlock is reported as an NDJSON line with the namespace's PID.
#[test]
fn serve_in_the_targets_namespace_reports_its_deadlock() {
    require_root();
    let out = run_in_shared_namespace(
        r#"
        "$TRACER" serve --exe abba --listen 127.0.0.1:0 > /tmp/serve-sidecar-$$.out &
        S=$!
        sleep 0.5
        "$ABBA" 1500 > /tmp/abba-sidecar-$$.out &
        while ! grep -q ready /tmp/abba-sidecar-$$.out 2>/dev/null; do sleep 0.05; done
        cat /tmp/abba-sidecar-$$.out
        P=$(sed -n 's/^pid=//p' /tmp/abba-sidecar-$$.out)
        for i in $(seq 100); do grep -q deadlock /tmp/serve-sidecar-$$.out && break; sleep 0.1; done
        kill -TERM $S; wait $S; echo "serve_exit=$?"
        cat /tmp/serve-sidecar-$$.out
        rm -f /tmp/abba-sidecar-$$.out /tmp/serve-sidecar-$$.out
        "#,
    );
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("serve_exit=0"), "{stdout}");
    let deadlock = check_deadlock_in_shared_namespace(&stdout);
    assert_eq!(
        deadlock["pid"].to_string(),
        facts(&stdout)["pid"],
        "{deadlock}"
    );
    assert_eq!(deadlock["comm"], "abba");
}

/// Guards the kernel's table of sleeping threads (`OPEN_SLEEPS`, serve's default hooks)
/// in the sidecar shape: in the pod's PID namespace a thread that exits has no ids there
/// any more by its last switch-out, so a removal filtered by the target's ids would never
/// happen, and every thread the service ever ran would keep its entry for the serve's
/// lifetime. `thread_churn` starts ~40 threads a second; after 4 s the table must hold
/// about as many entries as it has threads.
#[test]
fn serve_in_the_targets_namespace_forgets_exited_threads() {
    require_root();
    let churn = build_target("thread_churn", &[]);
    let script = r#"
        "$TRACER" serve --exe thread_churn --listen 127.0.0.1:0 > /dev/null 2> /tmp/serve-churn-$$.err &
        S=$!
        sleep 0.5
        "$CHURN" 8 > /dev/null &
        C=$!
        for i in $(seq 100); do grep -q "tracing process" /tmp/serve-churn-$$.err && break; sleep 0.1; done
        sleep 4
        ID=$(bpftool map show | awk -F: '/name OPEN_SLEEPS/ {id=$1} END {print id}')
        echo "entries=$(bpftool map dump id "$ID" | sed -n 's/^Found \([0-9]*\) element.*/\1/p')"
        echo "threads=$(ls /proc/$C/task | wc -l)"
        kill -TERM $S; wait $S; echo "serve_exit=$?"
        wait $C
        cat /tmp/serve-churn-$$.err; rm -f /tmp/serve-churn-$$.err
        "#;
    let out = run_in_new_pid_namespace(script, ("CHURN", churn.path()));
    assert_success(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("serve_exit=0"), "{stdout}");
    let facts = facts(&stdout);
    let number = |key: &str| -> usize {
        facts
            .get(key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key}= in {stdout}"))
    };
    let (entries, threads) = (number("entries"), number("threads"));
    assert!(
        entries <= threads + 4,
        "OPEN_SLEEPS holds {entries} entries for {threads} live threads: exited threads stay"
    );
}
