//! Root integration tests: wait-for cycles made of timed lock waits
//! (`pthread_mutex_timedlock`, `pthread_mutex_clocklock`), which resolve themselves when
//! the waits time out, and so are no deadlock (issue 16, point 5).

use std::time::Duration;

use crate::common::{
    Edge, Names, Target, as_strs, assert_cycle, assert_success, build_target, deadlocks, describe,
    json_attach_args, json_lines, require_root, run_tracer, summary, u64_field,
};

const ABBA: [Edge<'static>; 2] = [
    ("worker_a", "lock_a", "lock_b"),
    ("worker_b", "lock_b", "lock_a"),
];

/// Starts `timed_abba` (200 ms timeouts) and waits until it has printed that a worker
/// timed out and backed off: the program really resolves its cycles.
fn start_timed_abba() -> Target {
    let bin = build_target("timed_abba", &[]);
    let mut target = Target::spawn(bin.path(), &[]);
    wait_backed_off(&mut target, Duration::from_secs(5));
    target
}

/// Waits up to `timeout` for `target` to print `backed_off`.
fn wait_backed_off(target: &mut Target, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while !target.later_lines().iter().any(|l| l == "backed_off") {
        assert!(
            std::time::Instant::now() < deadline,
            "timed_abba never printed backed_off: {:?}",
            target.later_lines()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks a report of `timed_abba`'s cycle: one finding, the ABBA cycle of the threads
/// and locks the target printed, `will_time_out`, each entry timed with a `timeout_ns`
/// within the target's timeout; no deadlock and one timed cycle in the summary. Returns
/// the cycle.
fn check_timed_report(target: &Target, out: &std::process::Output) -> serde_json::Value {
    assert_success(out);
    let timeout_ns = target
        .fact("timeout_ms")
        .parse::<u64>()
        .expect("timeout_ms is a number")
        * 1_000_000;
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(
        found.len(),
        1,
        "the repeating cycle is reported once\n{}",
        describe(out)
    );
    let cycle = found[0];
    assert_cycle(target, cycle, &ABBA, Names::Symbols);
    assert_eq!(cycle["will_time_out"], true, "{cycle:#}");
    for entry in cycle["cycle"].as_array().expect("cycle array") {
        assert_eq!(entry["timed"], true, "{entry:#}");
        let left = u64_field(entry, "timeout_ns");
        assert!(
            left > 0 && left <= timeout_ns,
            "timeout_ns {left} should be within the target's {timeout_ns} ns: {entry:#}"
        );
    }
    let s = summary(&values);
    assert_eq!(u64_field(s, "deadlocks"), 0, "no deadlock: {s:#}");
    assert_eq!(u64_field(s, "timed_cycles"), 1, "{s:#}");
    cycle.clone()
}

/// Guards against: a cycle of timed lock waits that time out and back off (two threads,
/// ABBA, 200 ms timeouts, one on `CLOCK_REALTIME`, one on `CLOCK_MONOTONIC`) being
/// reported as a permanent deadlock. The report must give the cycle (threads and lock
/// addresses the target printed) with `"will_time_out": true`, each entry `"timed": true`
/// with a `timeout_ns` (time left until the wait gives up) within the target's timeout,
/// and count no deadlock in the summary; the target keeps running. Checked to fail
/// (a plain deadlock, no `timeout_ns`, `"deadlocks": 1`) without the fix.
#[test]
fn timed_lock_cycle_is_reported_as_timing_out() {
    require_root();
    let mut target = start_timed_abba();
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 2, &[])));
    check_timed_report(&target, &out);
    assert!(
        target.is_running(),
        "the target backs off and keeps running"
    );
}

/// Guards against: the kernel side losing a wait's timeout. Here the first cycle forms
/// ~2 s after the target started, while the tracer is attached, so the cycle is built
/// from the waits the `sched_switch` hook sent (not from threads found blocked at
/// attach, whose timeouts `/proc` gives): they must carry each call's timeout (a
/// `CLOCK_REALTIME` and a `CLOCK_MONOTONIC` deadline), or the cycle is a deadlock.
#[test]
fn timed_lock_cycle_formed_while_attached_is_reported_as_timing_out() {
    require_root();
    let bin = build_target("timed_abba", &[]);
    let mut target = Target::spawn(bin.path(), &["200", "2000"]);
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 4, &[])));
    let cycle = check_timed_report(&target, &out);
    for entry in cycle["cycle"].as_array().unwrap() {
        assert_eq!(
            entry["blocked_before_attach"], false,
            "formed while attached: {entry:#}"
        );
        let waited = u64_field(entry, "waited_ns");
        assert!(waited <= 200_000_000, "waited {waited} ns: {entry:#}");
    }
    wait_backed_off(&mut target, Duration::from_secs(1));
    assert!(
        target.is_running(),
        "the target backs off and keeps running"
    );
}

/// Guards against: the text report calling a cycle of timed waits that will time out a
/// DEADLOCK. It must say "will time out", name both threads and locks, and say when each
/// wait gives up. Checked to fail (a DEADLOCK headline) without the fix.
#[test]
fn timed_lock_cycle_in_text_is_not_a_deadlock() {
    require_root();
    let target = start_timed_abba();
    let pid = target.pid().to_string();
    let out = run_tracer(&["attach", "--pid", &pid, "--duration", "2"]);
    assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("LOCK CYCLE (will time out)"),
        "no will-time-out cycle\n{}",
        describe(&out)
    );
    assert!(
        !text.contains("DEADLOCK"),
        "a cycle of timed waits called a deadlock\n{}",
        describe(&out)
    );
    assert!(text.contains("gives up in"), "{}", describe(&out));
    for thread in ["worker_a", "worker_b"] {
        let tid = target.tid(thread).to_string();
        assert!(text.contains(&tid), "no tid {tid}\n{}", describe(&out));
    }
}
