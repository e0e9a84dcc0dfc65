//! Root integration tests: contention statistics (`tracer attach` on busy C targets).

use std::{os::unix::process::CommandExt as _, process::Output, time::Duration};

use serde_json::Value;

use crate::common::{
    PTHREAD_COND_SIZE, PTHREAD_RWLOCK_SIZE, TRACER_SLACK, Target, Tracer, addr_of, as_strs,
    assert_success, build_target, deadlocks, describe, json_attach_args, json_lines, lock_by_addr,
    locks, name_of, require_root, run_tracer, summary, u64_field,
};

/// Runs `hot_cold` for 4 s, traces it for 3 s and checks that `hot_lock` leads the summary.
/// Returns the `hot_lock` entry.
fn check_hot_cold(extra: &[&str]) -> Value {
    let bin = build_target("hot_cold", &[]);
    let target = Target::spawn(bin.path(), &["4"]);
    let hot = target.lock("hot_lock");
    let cold = target.lock("cold_lock");
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 3, extra)));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    assert!(
        deadlocks(&values).is_empty(),
        "no deadlock expected\n{}",
        describe(&out)
    );
    let s = summary(&values);
    assert_eq!(u64_field(s, "pid"), u64::from(target.pid()));
    assert_eq!(u64_field(s, "deadlocks"), 0);
    assert!(
        u64_field(s, "events") > 0,
        "a busy target produced no events: {s:#}"
    );
    let first = locks(s)
        .first()
        .unwrap_or_else(|| panic!("no locks in the summary\n{}", describe(&out)));
    assert_eq!(
        addr_of(&first["addr"]),
        hot,
        "the most waited-for lock should be hot_lock ({hot:#x}): {s:#}"
    );
    assert_eq!(name_of(first), Some("hot_lock"), "{first:#}");
    assert_eq!(first["type"].as_str(), Some("mutex"), "{first:#}");
    let contentions = u64_field(first, "contentions");
    assert!(
        contentions > 100,
        "hot_lock contentions {contentions} <= 100: {first:#}"
    );
    assert!(u64_field(first, "max_waiters") >= 1, "{first:#}");
    let hot_wait = &first["wait_ns"];
    assert!(u64_field(hot_wait, "count") > 0, "{first:#}");
    let hot_total = u64_field(hot_wait, "total");
    assert!(hot_total > 0, "{first:#}");
    // Most waits on a hot lock return at once (released while the waiter entered the
    // kernel); the kernel only adds those up, and they must reach the lock table.
    let brief = u64_field(s, "brief_lock_waits");
    let all_contentions: u64 = locks(s).iter().map(|l| u64_field(l, "contentions")).sum();
    assert!(brief > 0, "no lock wait returned without sleeping: {s:#}");
    assert!(
        all_contentions >= brief,
        "brief waits not in the lock table ({all_contentions} contentions < {brief}): {s:#}"
    );
    // Waits found blocked at attach count as contentions but began before the kernel
    // counted futex waits: a few threads' worth of slack.
    assert!(
        u64_field(s, "futex_waits") + 64 >= all_contentions,
        "more contentions than futex waits (counted twice?): {s:#}"
    );
    if let Some(c) = lock_by_addr(s, cold) {
        let cold_total = u64_field(&c["wait_ns"], "total");
        assert!(
            cold_total.saturating_mul(100) < hot_total,
            "cold_lock waited {cold_total} ns, not < 1% of hot_lock's {hot_total} ns: {s:#}"
        );
    }
    first.clone()
}

/// Guards against: losing or misattributing contention events under load (`hot_lock` must
/// dominate), sorting locks wrongly, inflating a lock that is never contended, or losing
/// (or double-counting) the waits the kernel adds up because they never slept.
#[test]
fn hot_lock_dominates_contention() {
    require_root();
    check_hot_cold(&[]);
}

/// Guards against: `--holds` breaking contention stats, or not filling hold times for a
/// lock that is taken millions of times.
#[test]
fn hot_lock_has_hold_times_with_holds() {
    require_root();
    let hot = check_hot_cold(&["--holds"]);
    let hold = &hot["hold_ns"];
    assert!(
        hold.is_object(),
        "--holds given but hot_lock has no hold_ns: {hot:#}"
    );
    assert!(
        u64_field(hold, "count") > 0,
        "no hold samples for hot_lock: {hot:#}"
    );
    assert!(u64_field(hold, "total") > 0, "{hot:#}");
}

/// Guards against: a false self-deadlock on a mutex handed between owners that sleep
/// holding it (seen in CI on a cgo program; this target showed it in 2 of 8 traces). A
/// waiter's record can name as owner a thread whose own wait end is not read yet, and a
/// confirmation made of `/proc` reads one after another could see that thread asleep on
/// the lock and then as its owner. Two traces, to give the race two chances.
#[test]
fn a_mutex_handed_between_sleeping_owners_is_no_deadlock() {
    require_root();
    let bin = build_target("sleepy_handoff", &[]);
    let target = Target::spawn(bin.path(), &["12"]);
    let lock = target.lock("handoff_lock");
    for _ in 0..2 {
        let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 4, &[])));
        assert_success(&out);
        let values = json_lines(&out.stdout);
        assert!(
            deadlocks(&values).is_empty(),
            "no deadlock expected\n{}",
            describe(&out)
        );
        let s = summary(&values);
        assert_eq!(u64_field(s, "deadlocks"), 0);
        let first = locks(s)
            .first()
            .unwrap_or_else(|| panic!("no locks in the summary\n{}", describe(&out)));
        assert_eq!(addr_of(&first["addr"]), lock, "{s:#}");
        // 6 threads, ~8,000 hand-offs a second, nearly all of them to a sleeping waiter.
        assert!(u64_field(first, "contentions") > 1_000, "{first:#}");
        assert!(u64_field(first, "max_waiters") >= 2, "{first:#}");
    }
}

/// Guards against: reporting condition variables (whose futex words live inside the
/// 48-byte `pthread_cond_t`) as locks, or seeing a deadlock in a healthy producer/consumer.
#[test]
fn condvars_are_not_locks() {
    require_root();
    let bin = build_target("condvar", &[]);
    let target = Target::spawn(bin.path(), &["6"]);
    let conds = [target.cond("not_empty"), target.cond("not_full")];
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 3, &[])));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    assert!(
        deadlocks(&values).is_empty(),
        "no deadlock expected\n{}",
        describe(&out)
    );
    let s = summary(&values);
    assert_eq!(u64_field(s, "deadlocks"), 0);
    assert!(
        u64_field(s, "futex_wakes") > 0,
        "condvar signalling produced no futex wakes: {s:#}"
    );
    for l in locks(s) {
        let a = addr_of(&l["addr"]);
        for c in conds {
            assert!(
                !(c..c + PTHREAD_COND_SIZE).contains(&a),
                "condvar at {c:#x} reported as a lock: {l:#}"
            );
        }
    }
}

/// Guards against: `--holds` counting a condition-variable wait as time the mutex was
/// held. `pthread_cond_wait` releases and re-takes its mutex inside glibc, where the lock
/// and unlock uprobes cannot see it; here producers and consumers wait on condvars for
/// ~1 ms at a time while their critical sections take microseconds, so hold times that
/// include the condvar waits would put p90 in the milliseconds.
#[test]
fn condvar_waits_are_not_hold_time_with_holds() {
    require_root();
    let bin = build_target("condvar", &[]);
    let target = Target::spawn(bin.path(), &["6"]);
    let lock = target.lock("queue_lock");
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 3, &["--holds"])));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    assert!(
        deadlocks(&values).is_empty(),
        "no deadlock expected\n{}",
        describe(&out)
    );
    let s = summary(&values);
    let queue = locks(s)
        .iter()
        .find(|l| addr_of(&l["addr"]) == lock)
        .unwrap_or_else(|| panic!("queue_lock {lock:#x} should be contended: {s:#}"));
    let hold = &queue["hold_ns"];
    assert!(
        u64_field(hold, "count") > 100,
        "hold times of queue_lock: {queue:#}"
    );
    assert!(
        u64_field(hold, "p90") < 200_000,
        "queue_lock's hold p90 includes condvar waits: {queue:#}"
    );
}

/// Readers blocked behind a writer: the lock must show up as `rw_lock`, type rwlock, with
/// its 3 waiting readers, and no deadlock. `readers_delay_ms`: None = the readers are
/// blocked before the tracer attaches; Some(ms) = they call rdlock ms after `ready`.
fn check_rwlock(extra: &[&str], readers_delay_ms: Option<u64>, duration_secs: u64) {
    let bin = build_target("rwlock_writer", &[]);
    let delay = readers_delay_ms.map(|d| d.to_string());
    let args: Vec<&str> = delay.iter().map(String::as_str).collect();
    let target = Target::spawn(bin.path(), &args);
    if readers_delay_ms.is_none() {
        let readers: Vec<u64> = (0..3).map(|i| target.tid(&format!("reader_{i}"))).collect();
        target.wait_in_futex(&readers, Duration::from_secs(5));
    }
    let rw = target.lock("rw_lock");
    let out = run_tracer(&as_strs(&json_attach_args(
        target.pid(),
        duration_secs,
        extra,
    )));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    assert!(
        deadlocks(&values).is_empty(),
        "a blocked rwlock is no deadlock\n{}",
        describe(&out)
    );
    let s = summary(&values);
    assert_eq!(u64_field(s, "deadlocks"), 0);
    let inside: Vec<&Value> = locks(s)
        .iter()
        .filter(|l| (rw..rw + PTHREAD_RWLOCK_SIZE).contains(&addr_of(&l["addr"])))
        .collect();
    assert_eq!(
        inside.len(),
        1,
        "expected one lock entry for rw_lock ({rw:#x}, futex words inside it mapped back to \
         its start): {s:#}"
    );
    let l = inside[0];
    assert_eq!(
        addr_of(&l["addr"]),
        rw,
        "rw_lock reported at an inner address: {l:#}"
    );
    assert_eq!(name_of(l), Some("rw_lock"), "{l:#}");
    assert_eq!(l["type"].as_str(), Some("rwlock"), "{l:#}");
    let waiters = u64_field(l, "max_waiters");
    assert!(
        waiters >= 3,
        "3 readers wait on rw_lock, max_waiters is {waiters}: {l:#}"
    );
}

/// Guards against: not recognizing a `pthread_rwlock_t` (readers wait on futex words at
/// offsets inside it, not at its start), reporting it under an inner address or the wrong
/// type, not counting waiters that were already blocked at attach, or calling a writer
/// that merely holds the lock a deadlock.
#[test]
fn blocked_readers_show_up_on_rwlock() {
    require_root();
    check_rwlock(&[], None, 2);
}

/// Guards against: the same rwlock mistakes in `--holds` mode (where the rwlock uprobes
/// are attached too).
#[test]
fn blocked_readers_show_up_on_rwlock_with_holds() {
    require_root();
    check_rwlock(&["--holds"], None, 2);
}

/// Guards against: the same rwlock mistakes when the readers block while the tracer is
/// attached (live futex events at inner offsets of the `pthread_rwlock_t`, not state found
/// at attach).
#[test]
fn readers_blocking_while_attached_show_up_on_rwlock() {
    require_root();
    check_rwlock(&[], Some(2000), 4);
}

/// Starts `realtime_hot` (`SCHED_FIFO` threads keeping two CPUs busy from 1 s after start,
/// for 3 s) and traces it from those same two CPUs, so the tracer competes with the
/// target whatever the machine's size; with `above_target`, at `--realtime` one above the
/// highest priority the target prints. Returns the target (exited) and the tracer's
/// output.
fn trace_realtime_hot(above_target: bool) -> (Target, Output) {
    let bin = build_target("realtime_hot", &[]);
    let mut target = Target::spawn(bin.path(), &["1", "3"]);
    let cpus: Vec<usize> = ["cpu.0", "cpu.1"]
        .iter()
        .map(|key| target.fact(key).parse().expect("a CPU number"))
        .collect();
    let priority = (max_priority(&target) + 1).to_string();
    let extra: &[&str] = if above_target {
        &["--realtime", &priority]
    } else {
        &[]
    };
    let args = json_attach_args(target.pid(), 5, extra);
    let tracer = Tracer::spawn_with(&as_strs(&args), |cmd| {
        // SAFETY: runs in the child between fork and exec and only calls
        // async-signal-safe functions (the CPU set is built on its stack).
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for &cpu in &cpus {
                    libc::CPU_SET(cpu, &mut set);
                }
                if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    let out = tracer.wait(Duration::from_secs(5) + TRACER_SLACK);
    eprintln!("{}", describe(&out));
    assert!(
        target.wait_exit(Duration::from_secs(20)).is_some(),
        "realtime_hot did not finish"
    );
    (target, out)
}

/// The target's highest real-time priority, as it printed it.
fn max_priority(target: &Target) -> u32 {
    target.fact("max_priority").parse().expect("a priority")
}

/// Guards against records silently lost to a real-time target: `SCHED_FIFO` threads that
/// keep the CPUs busy starve a normal-priority tracer and its ring buffer overflows
/// (`stress-ng --mutex` lost more than half of its records). The report must say why and
/// which `--realtime` priority drains above the target.
#[test]
fn a_realtime_target_that_starves_the_tracer_is_named_with_the_priority_to_use() {
    require_root();
    let (target, out) = trace_realtime_hot(false);
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let s = summary(&values);
    assert!(
        u64_field(s, "dropped") > 0,
        "a starved tracer dropped nothing: {s:#}"
    );
    let max = max_priority(&target);
    let notes: Vec<&str> = s["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let note = notes
        .iter()
        .find(|n| n.contains("real-time priority"))
        .unwrap_or_else(|| panic!("no note on the real-time threads: {notes:?}"));
    // Counted while records were being dropped: at attach only main ran real-time.
    let threads = target.fact("realtime_threads");
    assert!(
        note.starts_with(&format!("{threads} of the target's threads")),
        "{note}"
    );
    assert!(note.contains(&format!("up to {max})")), "{note}");
    assert!(note.contains(&format!("--realtime {}", max + 1)), "{note}");
}

/// Guards `--realtime`: drained at a priority above the target's threads, the tracer
/// keeps up with a real-time target that otherwise starves it (no dropped records), and
/// sees its contention on the lock the target names.
#[test]
fn realtime_option_drains_above_a_realtime_target() {
    require_root();
    let (target, out) = trace_realtime_hot(true);
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let s = summary(&values);
    assert_eq!(u64_field(s, "dropped"), 0, "{s:#}");
    let first = locks(s)
        .first()
        .unwrap_or_else(|| panic!("no locks in the summary\n{}", describe(&out)));
    assert_eq!(addr_of(&first["addr"]), target.lock("rt_lock"), "{s:#}");
    assert_eq!(name_of(first), Some("rt_lock"), "{first:#}");
    let contentions = u64_field(first, "contentions");
    assert!(
        contentions > 1000,
        "rt_lock contended only {contentions} times: {first:#}"
    );
    assert!(
        !s["notes"].to_string().contains("real-time priority"),
        "{s:#}"
    );
}
