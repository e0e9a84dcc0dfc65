//! (f) The tracer's own CPU while attached to a quiet target: what a long-lived sidecar
//! costs the machine when the service it watches does nothing.
//!
//! The target is lockbench blocked on its start byte (one thread asleep in `read`), so
//! no event is sent and whatever the tracer spends is its own periodic work: waking up,
//! checking that the target lives, reading the kernel's brief-wait totals, rescanning
//! the target's threads. Its CPU time is the sum of `/proc/PID/task/*/schedstat` (time on
//! CPU in ns, every thread of the tracer) over a fixed window after the attach.
use std::{
    fmt::Write as _,
    fs,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{Options, Proc, Tools, rounds, spawn_json_attach, wait_attached, worst_case_table};

/// Budget for the tracer's own CPU with a quiet target: 1% of one CPU.
const IDLE_GOAL_MS_PER_S: f64 = 10.0;
/// How long each run measures, after the attach has settled.
const WINDOW: Duration = Duration::from_secs(5);

/// CPU time of every thread of process `pid`, in ns (threads that exited meanwhile are
/// not counted: the tracer's threads live as long as it does).
pub(super) fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for task in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let path = task.context("listing tasks")?.path().join("schedstat");
        // A thread that exits between the listing and the read has nothing to add.
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let on_cpu: u64 = text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{}: no CPU time", path.display()))?;
        total += on_cpu;
    }
    Ok(total)
}

/// One run: the tracer's CPU per second of wall time, in ms.
#[allow(clippy::cast_precision_loss)]
fn idle_run(tools: &Tools) -> anyhow::Result<f64> {
    let mut target = Proc::spawn(
        "lockbench",
        Command::new(&tools.lockbench).args(["--wait-stdin", "--threads", "4", "--seconds", "1"]),
    )?;
    target.wait_line(Duration::from_secs(10), |l| l.starts_with("ready pid="))?;
    let pid = target.pid().to_string();
    let mut tracer = spawn_json_attach(tools, "tracer attach", &pid, 600)?;
    wait_attached(&mut tracer, 2)?;
    let (before, started) = (cpu_ns(tracer.pid())?, Instant::now());
    thread::sleep(WINDOW);
    let (after, elapsed) = (cpu_ns(tracer.pid())?, started.elapsed());
    target.stop(libc::SIGKILL, Duration::from_secs(5))?;
    if tracer.wait_exit(Duration::from_secs(5))?.is_none() {
        tracer.stop(libc::SIGINT, Duration::from_secs(5))?;
    }
    Ok(after.saturating_sub(before) as f64 / 1e6 / elapsed.as_secs_f64())
}

pub(super) fn section(tools: &Tools, opts: &Options) -> String {
    let (runs, failures) = rounds(
        opts,
        "f",
        || idle_run(tools),
        |ms| format!("tracer used {ms:.2} ms of CPU per second"),
    );
    let mut s = String::new();
    let _ = writeln!(s, "## (f) The tracer's own CPU with a quiet target\n");
    let _ = writeln!(
        s,
        "`tracer attach` on lockbench blocked before its start (one thread asleep, no events); the tracer's CPU \
         time (sum of `/proc/PID/task/*/schedstat`) over {} s after the attach settled. {} runs.\n",
        WINDOW.as_secs(),
        opts.rounds
    );
    worst_case_table(
        &mut s,
        &[("tracer CPU per second", &runs)],
        (IDLE_GOAL_MS_PER_S, "ms/s", 2),
        &failures,
    );
    s
}
