//! Root integration tests: how a trace ends (target exit, SIGTERM, SIGKILL) and that no
//! probe outlives the tracer.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Read},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::common::{
    EXIT_DEADLOCK, Target, Tracer, as_strs, assert_success, bpf_links, build_target,
    json_attach_args, json_lines, our_prog_ids, require_root, summary, tracer_bin, u64_field,
    uprobe_events,
};

const SECOND_NS: u64 = 1_000_000_000;

/// Guards against: the tracer not noticing that its target exited (running on to the end
/// of `--duration`), or erroring out instead of printing the summary and exiting 0.
#[test]
fn target_exit_mid_trace_ends_trace_with_summary() {
    require_root();
    let bin = build_target("exits_soon", &[]);
    // 2 s of life from its start: enough for the tracer to finish attaching first.
    let mut target = Target::spawn(bin.path(), &["2"]);
    let tracer = Tracer::spawn(&as_strs(&json_attach_args(target.pid(), 30, &[])));
    // Reap the target as soon as it exits, as a shell would (no lingering zombie).
    let status = target.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "target should have exited 0 by itself, got {status:?}"
    );
    let out = tracer.wait(Duration::from_secs(10));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let s = summary(&values);
    assert_eq!(u64_field(s, "pid"), u64::from(target.pid()), "{s:#}");
    assert!(
        u64_field(s, "duration_ns") < 10 * SECOND_NS,
        "trace should have ended with the target: {s:#}"
    );
    assert!(
        target.later_lines().iter().any(|l| l == "done"),
        "target did not finish"
    );
}

/// Guards against: SIGTERM killing the tracer without a report (it must print the summary
/// and exit 0, like SIGINT).
#[test]
fn sigterm_ends_trace_with_summary() {
    require_root();
    let bin = build_target("hot_cold", &[]);
    let target = Target::spawn(bin.path(), &["30"]);
    let tracer = Tracer::spawn(&as_strs(&json_attach_args(target.pid(), 60, &[])));
    thread::sleep(Duration::from_secs(3));
    tracer.signal("TERM");
    let out = tracer.wait(Duration::from_secs(10));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let s = summary(&values);
    assert_eq!(u64_field(s, "pid"), u64::from(target.pid()), "{s:#}");
    assert!(u64_field(s, "duration_ns") < 30 * SECOND_NS, "{s:#}");
}

/// Guards against: `tracer attach … | head -1` ending in an error line and a failing exit
/// once the reader has closed the pipe, or tracing on to the end of `--duration` with
/// nobody left to read. The deadlock line is written at once, into a closed pipe.
#[test]
fn closed_stdout_ends_the_trace_quietly() {
    require_root();
    let bin = build_target("abba", &[]);
    let target = Target::spawn(bin.path(), &[]);
    target.wait_in_futex(
        &[target.tid("worker_a"), target.tid("worker_b")],
        Duration::from_secs(5),
    );
    let mut tracer = Command::new(tracer_bin())
        .args(as_strs(&json_attach_args(target.pid(), 30, &[])))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer");
    // The reader is gone before the first line.
    drop(tracer.stdout.take());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = tracer.try_wait().expect("wait for tracer") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = tracer.kill();
            panic!("the tracer went on for 15 s with its stdout closed");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    tracer
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    // 0 when the tracer saw its reader gone before the deadlock was confirmed, else the
    // deadlock's code (the finding is counted even though it could not be written).
    assert!(
        matches!(status.code(), Some(0 | EXIT_DEADLOCK)) && !stderr.contains("error"),
        "a closed stdout should end the trace quietly with exit 0 or {EXIT_DEADLOCK}: {status}, stderr: {stderr}"
    );
}

/// Guards against: `tracer attach … | head -1` (the README's example) never ending on a
/// deadlocked target. After the deadlock line nothing more is written, so a closed pipe
/// seen only by a failed write is never seen: the tracer stayed attached, its probes
/// loaded, until `--duration` or a kill. It must notice that its reader has gone,
/// detach, and exit with the deadlock's status (3) without a word, within a few seconds.
#[test]
fn reader_gone_after_the_first_line_ends_a_quiet_trace() {
    require_root();
    let bin = build_target("abba", &[]);
    let target = Target::spawn(bin.path(), &[]);
    target.wait_in_futex(
        &[target.tid("worker_a"), target.tid("worker_b")],
        Duration::from_secs(5),
    );
    let baseline_ids = our_prog_ids();
    let mut tracer = Command::new(tracer_bin())
        .args(as_strs(&json_attach_args(target.pid(), 60, &[])))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer");
    // `head -1`: read the first line, then close the pipe. The line is the deadlock
    // (the target is deadlocked before the attach), after which the tracer has nothing
    // more to write until the end of the trace.
    let mut reader = BufReader::new(tracer.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("read the first line");
    assert!(
        first.contains("\"deadlock\""),
        "the first line should be the deadlock: {first:?}"
    );
    let attached: BTreeSet<u64> = our_prog_ids().difference(&baseline_ids).copied().collect();
    assert!(
        !attached.is_empty(),
        "while attached, bpftool shows none of our programs"
    );
    drop(reader);
    let closed = Instant::now();
    let limit = Duration::from_secs(3);
    let status = loop {
        if let Some(status) = tracer.try_wait().expect("wait for tracer") {
            break status;
        }
        if closed.elapsed() > limit {
            let _ = tracer.kill();
            let _ = tracer.wait();
            panic!("the tracer was still attached {limit:?} after its reader closed the pipe");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    tracer
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    // The deadlock was reported (the line read): its exit status, as with `| head -1`.
    assert!(
        status.code() == Some(EXIT_DEADLOCK) && stderr.is_empty(),
        "a gone reader should end the trace with the deadlock's exit status {EXIT_DEADLOCK} and nothing said: {status}, stderr: {stderr}"
    );
    // Dropped with the tracer's descriptors: allow the kernel a moment to free them.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left: Vec<u64> = attached.intersection(&our_prog_ids()).copied().collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "programs {left:?} still loaded after the tracer exited"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Program ids (of our names) not in `baseline`, links of those programs, and new
/// `uprobe_events` lines that mention libc or the target.
fn our_leftovers(
    baseline_ids: &BTreeSet<u64>,
    baseline_events: &[String],
    target_exe: &str,
) -> (BTreeSet<u64>, Vec<String>, Vec<String>) {
    let ids: BTreeSet<u64> = our_prog_ids().difference(baseline_ids).copied().collect();
    let links: Vec<String> = bpf_links()
        .into_iter()
        .filter(|l| l["prog_id"].as_u64().is_some_and(|p| ids.contains(&p)))
        .map(|l| l.to_string())
        .collect();
    let events: Vec<String> = uprobe_events()
        .into_iter()
        .filter(|e| !baseline_events.contains(e))
        .filter(|e| e.contains("libc") || e.contains(target_exe))
        .collect();
    (ids, links, events)
}

/// Attaches with `--holds` to a running target, SIGKILLs the tracer once it is surely
/// attached, and checks that the kernel drops every program, link and uprobe of ours.
/// `wait_for_deadlock`: wait (up to 5 s) for the deadlock line before the kill.
fn check_no_probes_left_after_sigkill(target: &Target, wait_for_deadlock: bool) {
    let baseline_ids = our_prog_ids();
    let baseline_events = uprobe_events();
    let exe = target.exe().to_string_lossy().to_string();

    let mut tracer = Tracer::spawn(&as_strs(&json_attach_args(target.pid(), 60, &["--holds"])));
    let started = Instant::now();
    if wait_for_deadlock {
        let _ = tracer.wait_for_line(Duration::from_secs(5), |l| l.contains("\"deadlock\""));
    }
    if let Some(rest) = Duration::from_secs(2).checked_sub(started.elapsed()) {
        thread::sleep(rest);
    }
    let (attached, _, _) = our_leftovers(&baseline_ids, &baseline_events, &exe);
    assert!(
        !attached.is_empty(),
        "while attached, bpftool shows none of our programs {:?}",
        crate::common::OUR_PROG_NAMES
    );

    tracer.kill9();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (ids, links, events) = our_leftovers(&baseline_ids, &baseline_events, &exe);
        if ids.is_empty() && links.is_empty() && events.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "5 s after SIGKILL of the tracer, left behind: programs {ids:?}, links {links:?}, \
             uprobe_events {events:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Guards against: probes (eBPF programs, perf/uprobe links, tracefs `uprobe_events` entries)
/// that survive a tracer killed with SIGKILL, e.g. pinned objects or tracefs-created
/// uprobes that nobody removes.
#[test]
fn no_probes_left_after_sigkill() {
    require_root();
    let bin = build_target("abba", &[]);
    let mut target = Target::spawn(bin.path(), &[]);
    check_no_probes_left_after_sigkill(&target, true);
    assert!(target.is_running(), "the target died with the tracer");
}

/// Guards against: a target crashing (e.g. SIGTRAP from a stale uprobe breakpoint) when
/// the tracer is killed with SIGKILL while the target is calling the probed lock functions.
#[test]
fn busy_target_survives_tracer_sigkill() {
    require_root();
    let bin = build_target("hot_cold", &[]);
    let mut target = Target::spawn(bin.path(), &["6"]);
    check_no_probes_left_after_sigkill(&target, false);
    let status = target.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "target should finish normally after the tracer was killed, got {status:?}"
    );
    assert!(
        target.later_lines().iter().any(|l| l == "done"),
        "target did not print done"
    );
}
