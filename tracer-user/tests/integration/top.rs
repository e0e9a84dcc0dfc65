//! `tracer top` driven in a real terminal: tmux runs it in an 80×24 pane, the test reads
//! the screen (`tmux capture-pane`) and types the keys (`tmux send-keys`).

use std::{
    collections::BTreeSet,
    fs,
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

/// The first row of the lock table: the line after the column header.
fn first_row(screen: &[String]) -> Option<&String> {
    let header = screen.iter().position(|l| l.starts_with("LOCK "))?;
    screen.get(header + 1)
}

/// Guards `tracer top` end to end, as a person at an 80×24 terminal uses it: attached
/// to `hot_cold`, the lock its four threads hammer (`hot_lock`, as the target names it)
/// is the first row; a holder shown is one of the target's threads; Enter opens that
/// lock's stacks under the address the target printed; `q` ends the tracer with status
/// 0, the terminal given back (the full-screen view gone), and none of the BPF programs
/// it loaded left in the kernel. Catches a view that never shows the data, ranks the
/// locks wrong, names the wrong lock, or quits leaving probes attached or the terminal
/// in the alternate screen.
#[test]
fn top_shows_the_hot_lock_first_and_quits_leaving_nothing() {
    require_root();
    let bin = build_target("hot_cold", &[]);
    let target = Target::spawn(bin.path(), &["60"]);
    let hot = target.lock("hot_lock");
    let hot_tids: BTreeSet<u64> = (0..4).map(|i| target.tid(&format!("hot_{i}"))).collect();
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("status");
    let baseline = our_prog_ids();
    // A terminal with colours (the tests' own TERM may be none); the pane stays open
    // after the tracer exits so its last screen can be read.
    let command = format!(
        "TERM=xterm-256color {} top --pid {}; echo $? > {}; sleep 60",
        tracer_bin(),
        target.pid(),
        status_file.display()
    );
    let tmux = Tmux::start(&command);
    let screen = tmux.wait_for(
        "lock table with hot_lock first",
        Duration::from_secs(30),
        |s| first_row(s).is_some_and(|row| row.starts_with("hot_lock ")),
    );
    assert!(
        screen[0].starts_with(&format!("tracer top {} (hot_cold)", target.pid())),
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
    let row = first_row(&screen).unwrap();
    if let Some(holder) = row
        .split_whitespace()
        .find(|w| w.starts_with('T') && w[1..].parse::<u64>().is_ok())
    {
        let tid: u64 = holder[1..].parse().unwrap();
        assert!(
            hot_tids.contains(&tid),
            "holder {holder} is not a hot_ thread ({hot_tids:?}): {row}"
        );
    }
    tmux.keys("Enter");
    let title = format!("hot_lock ({hot:#x})");
    let screen = tmux.wait_for("stacks pane of hot_lock", Duration::from_secs(10), |s| {
        s.iter().any(|l| l.contains(&title)) && s.iter().any(|l| l.contains("hot_worker_main"))
    });
    assert!(
        screen.iter().any(|l| l.contains("pthread_mutex_lock")),
        "{}",
        screen.join("\n")
    );
    tmux.keys("q");
    let start = Instant::now();
    let status = loop {
        if let Ok(status) = fs::read_to_string(&status_file) {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "tracer top still running 10 s after q:\n{}",
            tmux.screen().join("\n")
        );
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.trim(), "0", "tracer top's exit status");
    let screen = tmux.screen();
    assert!(
        !screen
            .iter()
            .any(|l| l.contains("wait-for chains now") || l.starts_with("LOCK ")),
        "the full-screen view is still shown after the tracer exited:\n{}",
        screen.join("\n")
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left: Vec<u64> = attached.intersection(&our_prog_ids()).copied().collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "programs {left:?} still loaded after tracer top exited"
        );
        thread::sleep(Duration::from_millis(100));
    }
}
