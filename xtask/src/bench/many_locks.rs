//! Part (h) of `cargo xtask bench`: the tracer's memory with many distinct contended
//! locks (issue 16).
//!
//! The target is the root test's `many_locks.c` (`tracer-user/tests/targets/`): a holder
//! and a waiter thread contend N distinct mutexes one after another, each really slept on,
//! starting on SIGUSR1 (sent once the tracer has attached). `tracer attach --format json`
//! traces it until it has contended them all (and at least a set time), then gets SIGINT;
//! its peak resident set is its `VmHWM`, read every 10 ms until it exits (report
//! included; not `ru_maxrss`, see [`trace`]).
//!
//! - Bytes per tracked lock: two runs with `--max-locks` above N (nothing folded), at
//!   [`SMALL`] and [`LARGE`] locks; the slope of peak RSS between them, divided by the
//!   locks tracked, is what one more lock costs (compact stats, stack sample, table
//!   entries, its report row), without the fixed part (ring buffer, code).
//! - Peak RSS with [`MANY`] locks under the default cap, over a 15 s trace.
use std::{
    fmt::Write as _,
    io::Read as _,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{Options, Proc, Tools, json_summary, worst_case_table};

/// Goal: bytes per tracked lock.
const PER_LOCK_GOAL_BYTES: f64 = 2048.0;
/// Goal: peak RSS with [`MANY`] distinct contended locks over [`MANY_TRACE`], in MB.
const PEAK_GOAL_MB: f64 = 256.0;
/// Locks of the two slope runs.
const SMALL: u64 = 10_000;
const LARGE: u64 = 50_000;
/// Locks of the capped run, and how long it traces at least.
const MANY: u64 = 100_000;
const MANY_TRACE: Duration = Duration::from_secs(15);
/// Runs per measure: each is a full trace of up to MANY locks.
const MAX_RUNS: usize = 3;

fn build_target(tools: &Tools) -> anyhow::Result<std::path::PathBuf> {
    let src = tools.root.join("tracer-user/tests/targets/many_locks.c");
    let bin = tools.root.join("target/bench/many_locks");
    let status = Command::new("gcc")
        .args(["-O1", "-g", "-Wall", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .context("running gcc (is it installed?)")?;
    if !status.success() {
        bail!("gcc failed on {}", src.display());
    }
    Ok(bin)
}

/// Whether process `pid` holds a BPF link (its probes are attached).
fn has_bpf_link(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo")).is_ok_and(|fds| {
        fds.flatten().any(|fd| {
            std::fs::read_to_string(fd.path()).is_ok_and(|info| info.contains("link_id:"))
        })
    })
}

/// Reads the `VmHWM` of `pid` every 10 ms until it has exited; returns the last (largest)
/// value, in KiB. The last read comes after the report is written, while the tracer
/// detaches, so it misses no allocation of the trace or the report.
fn watch_hwm(pid: u32) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let path = format!("/proc/{pid}/status");
        let mut peak = 0;
        // A zombie's status has no VmHWM line: the loop ends when the tracer exits.
        while let Ok(status) = std::fs::read_to_string(&path) {
            let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            else {
                break;
            };
            peak = peak.max(kib);
            thread::sleep(Duration::from_millis(10));
        }
        peak
    })
}

/// One trace of `locks` distinct locks: the tracer's peak RSS in bytes, the locks it
/// tracked and folded, and the locks the target contended.
struct Run {
    peak_bytes: f64,
    tracked: u64,
    folded: u64,
    contended: u64,
}

fn trace(
    tools: &Tools,
    bin: &std::path::Path,
    locks: u64,
    extra: &[&str],
    at_least: Duration,
) -> anyhow::Result<Run> {
    let mut target = Proc::spawn("many_locks", Command::new(bin).arg(locks.to_string()))?;
    let pid: u32 = target
        .wait_line(Duration::from_secs(10), |l| l.starts_with("pid="))?
        .text["pid=".len()..]
        .parse()
        .context("many_locks printed a bad pid")?;
    target.wait_line(Duration::from_secs(10), |l| l == "ready")?;
    let mut child = Command::new(&tools.tracer)
        .args([
            "attach",
            "--pid",
            &pid.to_string(),
            "--format",
            "json",
            "--duration",
            "300",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tracer attach")?;
    let mut stdout = child.stdout.take().context("tracer stdout")?;
    let mut stderr = child.stderr.take().context("tracer stderr")?;
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let tracer = libc::pid_t::try_from(child.id()).context("tracer pid")?;
    let hwm = watch_hwm(child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has_bpf_link(child.id()) {
        if Instant::now() > deadline {
            // SAFETY: our own unreaped child.
            unsafe { libc::kill(tracer, libc::SIGKILL) };
            bail!("the tracer attached nothing within 30 s");
        }
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    target.signal(libc::SIGUSR1);
    // The target's count comes just before its `done`.
    let contended = std::cell::Cell::new(0);
    target.wait_line(Duration::from_mins(3), |l| {
        if let Some(n) = l.strip_prefix("contended=") {
            contended.set(n.parse().unwrap_or(0));
        }
        l == "done"
    })?;
    thread::sleep(at_least.saturating_sub(started.elapsed()));
    // SAFETY: our own unreaped child.
    unsafe { libc::kill(tracer, libc::SIGINT) };
    let mut status = 0;
    loop {
        // SAFETY: wait4 writes only the status we pass; the pid is our own unreaped child
        // (std's `Child` is not waited on after this).
        let reaped = unsafe { libc::wait4(tracer, &raw mut status, 0, std::ptr::null_mut()) };
        if reaped == tracer {
            break;
        }
        let why = std::io::Error::last_os_error();
        if why.kind() != std::io::ErrorKind::Interrupted {
            return Err(why).context("waiting for the tracer");
        }
    }
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    target.stop(libc::SIGKILL, Duration::from_secs(5))?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!(
            "tracer attach failed (wait status {status:#x}): {}",
            err.trim()
        );
    }
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    let summary = json_summary(&lines, "tracer attach")?;
    let tracked = summary["locks"].as_array().map_or(0, Vec::len) as u64;
    let folded = summary["other_locks"]["locks"].as_u64().unwrap_or(0);
    // Not `ru_maxrss`: the child of a `vfork` (how std spawns) starts with its parent's
    // high-water mark, and this process's grew past 100 MB parsing a 50 000-lock report.
    let peak_kib = hwm.join().unwrap_or(0);
    if peak_kib == 0 {
        bail!("no VmHWM read from the tracer's /proc/PID/status");
    }
    #[expect(clippy::cast_precision_loss, reason = "a few hundred MB at most")]
    let peak_bytes = peak_kib as f64 * 1024.0;

    Ok(Run {
        peak_bytes,
        tracked,
        folded,
        contended: contended.get(),
    })
}

/// The markdown of part (h).
pub(super) fn section(tools: &Tools, opts: &Options) -> anyhow::Result<String> {
    let runs = opts.rounds.min(MAX_RUNS);
    let bin = build_target(tools)?;
    let no_cap = (LARGE * 2).to_string();
    let uncapped = ["--max-locks", no_cap.as_str()];
    let (mut per_lock, mut peaks, mut failures, mut details) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let small = trace(tools, &bin, SMALL, &uncapped, Duration::ZERO);
        let large = trace(tools, &bin, LARGE, &uncapped, Duration::ZERO);
        match (small, large) {
            (Ok(small), Ok(large)) if large.tracked > small.tracked => {
                #[expect(clippy::cast_precision_loss, reason = "tens of thousands of locks")]
                let bytes =
                    (large.peak_bytes - small.peak_bytes) / (large.tracked - small.tracked) as f64;
                eprintln!("bench (h): run {run}/{runs}: {bytes:.0} bytes per tracked lock");
                details.push(format!(
                    "run {run}: {} locks tracked ({} contended): peak {:.1} MB; {} tracked ({} contended): peak {:.1} MB",
                    small.tracked,
                    small.contended,
                    small.peak_bytes / 1e6,
                    large.tracked,
                    large.contended,
                    large.peak_bytes / 1e6
                ));
                per_lock.push(bytes);
            }
            (Ok(_), Ok(_)) => failures.push(format!(
                "run {run}: no more locks tracked at {LARGE} than at {SMALL}"
            )),
            (Err(err), _) | (_, Err(err)) => failures.push(format!("per-lock run {run}: {err:#}")),
        }
        match trace(tools, &bin, MANY, &[], MANY_TRACE) {
            Ok(r) => {
                eprintln!(
                    "bench (h): run {run}/{runs}: peak RSS {:.1} MB with {MANY} locks",
                    r.peak_bytes / 1e6
                );
                details.push(format!(
                    "run {run}, {MANY} locks: {} contended, {} tracked, {} folded, peak {:.1} MB",
                    r.contended,
                    r.tracked,
                    r.folded,
                    r.peak_bytes / 1e6
                ));
                peaks.push(r.peak_bytes / 1e6);
            }
            Err(err) => failures.push(format!("{MANY}-lock run {run}: {err:#}")),
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## (h) The tracer's memory with many distinct contended locks
"
    );
    let _ = writeln!(
        s,
        "`many_locks` (the root test's target) contends N distinct mutexes one after another, each slept on; \
         `tracer attach --format json` traces it until it has contended them all, then gets SIGINT; peak RSS \
         is the tracer's `VmHWM` read every 10 ms until it exits (not `ru_maxrss`: a child spawned by `vfork` starts from its parent's high-water mark). Per tracked lock: the peak's slope between {SMALL} and {LARGE} \
         locks with `--max-locks {no_cap}` (nothing folded). {runs} runs.\n"
    );
    worst_case_table(
        &mut s,
        &[("bytes per tracked lock", per_lock.as_slice())],
        (PER_LOCK_GOAL_BYTES, "bytes", 0),
        &[],
    );
    worst_case_table(
        &mut s,
        &[(
            &format!(
                "peak RSS, {MANY} distinct locks, trace of {} s or more, default --max-locks",
                MANY_TRACE.as_secs()
            ),
            peaks.as_slice(),
        )],
        (PEAK_GOAL_MB, "MB", 1),
        &failures,
    );
    for d in details {
        let _ = writeln!(s, "- {d}");
    }
    s.push('\n');
    Ok(s)
}
