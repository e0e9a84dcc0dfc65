//! `tracer top` driven in a real terminal: tmux runs it in an 80×24 pane, the test reads
//! the screen (`tmux capture-pane`) and types the keys (`tmux send-keys`).

use std::{
    collections::BTreeSet,
    fs,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crate::{
    common::{Target, build_target, our_prog_ids, require_root, tracer_bin},
    tools,
};

/// A tmux server of the test's own (its own socket: other tmux users are left alone),
/// killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` in a detached 80×24 session.
    fn start(command: &str) -> Self {
        let tmux = Self {
            socket: format!("tracer-top-test-{}", std::process::id()),
        };
        let out = tmux.run(&["new-session", "-d", "-x", "80", "-y", "24", command]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        tools::output(
            Command::new("tmux").args(["-L", &self.socket]).args(args),
            "tmux",
        )
    }

    /// The pane's lines now.
    fn screen(&self) -> Vec<String> {
        let out = self.run(&["capture-pane", "-p"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn keys(&self, keys: &str) {
        let out = self.run(&["send-keys", keys]);
        assert!(out.status.success(), "tmux send-keys {keys} failed");
    }

    /// Waits up to `limit` for a screen `done` accepts; returns it, or panics with the
    /// last screen.
    fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < limit,
                "after {limit:?}, no {what} on the screen:\n{}",
                screen.join("\n")
            );
            thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// Starts `tracer top --pid PID` in a tmux pane with a colour terminal (the tests' own
/// TERM may be none); once the tracer exits, its status goes to `status_file` and the
/// pane stays open, so its last screen can be read.
fn start_top(pid: u32, status_file: &Path) -> Tmux {
    start_top_with(pid, status_file, "")
}

/// [`start_top`] with more arguments (`extra`, as one shell word list).
fn start_top_with(pid: u32, status_file: &Path, extra: &str) -> Tmux {
    Tmux::start(&format!(
        "TERM=xterm-256color {} top --pid {pid} {extra}; echo $? > {}; sleep 60",
        tracer_bin(),
        status_file.display()
    ))
}

/// The tracer's exit status, once `after` (a key) ended it: panics if it still runs
/// 10 s later.
fn exit_status(tmux: &Tmux, status_file: &Path, after: &str) -> String {
    let start = Instant::now();
    loop {
        if let Ok(status) = fs::read_to_string(status_file) {
            return status.trim().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "tracer top still running 10 s after {after}:\n{}",
            tmux.screen().join("\n")
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Panics unless every program of `attached` is unloaded within 2 s (the kernel frees
/// them with the tracer's descriptors).
fn assert_unloaded(attached: &BTreeSet<u64>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left: Vec<u64> = attached.intersection(&our_prog_ids()).copied().collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "programs {left:?} still loaded after tracer top exited"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The first row of the lock table: the line after the column header.
fn first_row(screen: &[String]) -> Option<&String> {
    let header = screen.iter().position(|l| l.starts_with("LOCK "))?;
    screen.get(header + 1)
}

/// Guards `tracer top` end to end, as a person at an 80×24 terminal uses it: attached
/// to `hot_warm`, the lock its four threads hammer (`hot_lock`, as the target names it)
/// is the first row, above `warm_lock` (contended too, far less); a holder shown is one
/// of the target's threads; `/` filters the table down to `warm_lock`; Enter opens
/// `hot_lock`'s stacks under the address the target printed; `q` ends the tracer with
/// status 0, the terminal given back (the full-screen view gone), and none of the BPF
/// programs it loaded left in the kernel. Catches a view that never shows the data, ranks
/// the locks wrong, names the wrong lock, or quits leaving probes attached or the
/// terminal in the alternate screen.
#[test]
fn top_shows_the_hot_lock_first_and_quits_leaving_nothing() {
    require_root();
    let bin = build_target("hot_warm", &[]);
    let target = Target::spawn(bin.path(), &["60"]);
    let hot = target.lock("hot_lock");
    let tids: BTreeSet<u64> = ["hot_0", "hot_1", "hot_2", "hot_3", "warm_0", "warm_1"]
        .iter()
        .map(|name| target.tid(name))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("status");
    let baseline = our_prog_ids();
    let tmux = start_top(target.pid(), &status_file);
    let screen = tmux.wait_for(
        "lock table with hot_lock first and warm_lock below",
        Duration::from_secs(30),
        |s| {
            first_row(s).is_some_and(|row| row.starts_with("hot_lock "))
                && s.iter().any(|l| l.starts_with("warm_lock "))
        },
    );
    assert!(
        screen[0].starts_with(&format!("tracer top {} (hot_warm)", target.pid())),
        "{}",
        screen.join("\n")
    );
    assert!(screen[0].contains("dropped "), "{}", screen[0]);
    let attached: BTreeSet<u64> = our_prog_ids().difference(&baseline).copied().collect();
    assert!(
        !attached.is_empty(),
        "while top runs, bpftool shows none of our programs"
    );
    // The holder column names a thread of the target when it names one.
    for row in screen.iter().filter(|l| l.contains("_lock ")) {
        if let Some(holder) = row
            .split_whitespace()
            .find(|w| w.starts_with('T') && w[1..].parse::<u64>().is_ok())
        {
            let tid: u64 = holder[1..].parse().unwrap();
            assert!(
                tids.contains(&tid),
                "holder {holder} is not a thread of the target ({tids:?}): {row}"
            );
        }
    }
    tmux.keys("/");
    tmux.keys("warm");
    tmux.keys("Enter");
    tmux.wait_for(
        "the table filtered to warm_lock",
        Duration::from_secs(5),
        |s| {
            first_row(s).is_some_and(|row| row.starts_with("warm_lock "))
                && !s.iter().any(|l| l.starts_with("hot_lock "))
        },
    );
    // `/` then Esc clears the filter.
    tmux.keys("/");
    tmux.keys("Escape");
    tmux.wait_for("hot_lock first again", Duration::from_secs(5), |s| {
        first_row(s).is_some_and(|row| row.starts_with("hot_lock "))
    });
    tmux.keys("Enter");
    let title = format!("hot_lock ({hot:#x})");
    let screen = tmux.wait_for("stacks pane of hot_lock", Duration::from_secs(10), |s| {
        s.iter().any(|l| l.contains(&title)) && s.iter().any(|l| l.contains("hot_main"))
    });
    assert!(
        screen.iter().any(|l| l.contains("pthread_mutex_lock")),
        "{}",
        screen.join("\n")
    );
    tmux.keys("q");
    assert_eq!(
        exit_status(&tmux, &status_file, "q"),
        "0",
        "tracer top's exit status"
    );
    let screen = tmux.screen();
    assert!(
        !screen
            .iter()
            .any(|l| l.contains("wait-for chains now") || l.starts_with("LOCK ")),
        "the full-screen view is still shown after the tracer exited:\n{}",
        screen.join("\n")
    );
    assert_unloaded(&attached);
}

/// Guards the banner of a deadlock that forms while `tracer top` watches: `abba` (its
/// workers take their second locks 6 s after `ready`, time for the tracer to attach) deadlocks under the view, which
/// must then show the deadlock banner naming both threads the target printed, and the
/// cycle in the wait-for chains; Ctrl-C (a key in the view's raw mode, not a signal) ends
/// the tracer with status 0 and nothing left loaded.
#[test]
fn top_shows_a_deadlock_banner_and_quits_on_ctrl_c() {
    require_root();
    let bin = build_target("abba", &[]);
    let target = Target::spawn(bin.path(), &["6000"]);
    let (tid_a, tid_b) = (target.tid("worker_a"), target.tid("worker_b"));
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("status");
    let baseline = our_prog_ids();
    let tmux = start_top(target.pid(), &status_file);
    // The view is up before the deadlock forms (no banner yet).
    let screen = tmux.wait_for("the view", Duration::from_secs(20), |s| {
        s.iter().any(|l| l.starts_with("LOCK "))
    });
    let attached: BTreeSet<u64> = our_prog_ids().difference(&baseline).copied().collect();
    assert!(
        !attached.is_empty(),
        "while top runs, bpftool shows none of our programs"
    );
    let early_banner = screen.iter().any(|l| l.starts_with("!! DEADLOCK"));
    let screen = tmux.wait_for("deadlock banner", Duration::from_secs(20), |s| {
        s.iter().any(|l| l.starts_with("!! DEADLOCK: "))
    });
    let banner = screen
        .iter()
        .position(|l| l.starts_with("!! DEADLOCK: "))
        .unwrap();
    let text = format!("{} {}", screen[banner], screen[banner + 1]);
    for tid in [tid_a, tid_b] {
        assert!(
            text.contains(&format!("T{tid} ")),
            "banner names no T{tid}: {text}"
        );
    }
    assert!(text.contains("lock_a") && text.contains("lock_b"), "{text}");
    let screen = tmux.wait_for("the cycle in the chains", Duration::from_secs(5), |s| {
        s.iter().any(|l| l.contains("(cycle)"))
    });
    assert!(
        screen.iter().any(|l| l.contains(&format!("T{tid_a} "))) && !early_banner,
        "{}",
        screen.join("\n")
    );
    tmux.keys("C-c");
    assert_eq!(
        exit_status(&tmux, &status_file, "Ctrl-C"),
        "0",
        "tracer top's exit status"
    );
    assert_unloaded(&attached);
}

/// Guards `tracer top` without a terminal (a pipe, a cron job): one error line and a
/// non-zero status before anything is attached, not an attach that traces for nobody or
/// an error about a device.
#[test]
fn top_without_a_terminal_is_one_error_line() {
    require_root();
    let out = tools::output(
        Command::new(tracer_bin())
            .args(["top", "--pid", &std::process::id().to_string()])
            .stdin(std::process::Stdio::null()),
        "tracer",
    );
    assert!(
        !out.status.success(),
        "tracer top without a terminal succeeded"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("tracer: error: ") && lines[0].contains("terminal"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Guards `tracer top` on a Go program: the goroutines of `go_abba` (the alerting-service
/// deadlock, formed 8 s after `ready` while the view watches with `--holds`) must appear
/// as goroutines in the wait-for chains, by the ids the target printed (`G<goid>`), the
/// cycle marked, each lock's row showing a goroutine waiting now and its goroutine holder,
/// and the deadlock banner. Catches a view that shows Go locks as counters only (no
/// waiters, holders or chains), or goroutines under the ids of the threads they ran on.
#[test]
fn top_shows_goroutines_waiting_and_holding_in_a_go_deadlock() {
    require_root();
    let (_dir, builds) = crate::go_attach::go_builds("go_abba", false);
    let build = &builds[0];
    let target = Target::spawn(&build.path, &["deadlock", "8000"]);
    let (writer, gc) = (target.fact("goid.writer"), target.fact("goid.gc"));
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("status");
    let tmux = start_top_with(target.pid(), &status_file, "--holds");
    let screen = tmux.wait_for("the Go deadlock's chains", Duration::from_secs(40), |s| {
        s.iter().any(|l| l.contains("(cycle)")) && s.iter().any(|l| l.starts_with("!! DEADLOCK"))
    });
    let text = screen.join("\n");
    for goid in [writer, gc] {
        assert!(
            screen.iter().any(|l| l.contains(&format!("G{goid} "))),
            "goroutine {goid} in the chains\n{text}"
        );
    }
    assert!(
        screen.iter().any(|l| l.contains("(cycle)")
            && (l.contains(&format!("G{writer} ")) || l.contains(&format!("G{gc} ")))),
        "the cycle is one of the two goroutines\n{text}"
    );
    let rows: Vec<&String> = screen
        .iter()
        .filter(|l| l.contains("main.provider") || l.contains("main.store"))
        .collect();
    assert!(
        rows.iter()
            .any(|l| l.contains(&format!("G{writer}")) || l.contains(&format!("G{gc}"))),
        "a lock row names its goroutine holder\n{text}"
    );
    tmux.keys("q");
    assert_eq!(exit_status(&tmux, &status_file, "q"), "0");
}
