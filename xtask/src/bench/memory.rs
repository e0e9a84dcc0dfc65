//! Part (g) of `cargo xtask bench`: the tracer's peak memory on large Go binaries, for a
//! sidecar that must fit in 64 MB.
//!
//! Each target is a large real Go program kept alive and blocked: Debian's `prometheus`
//! (~50 MB, stripped; `cargo xtask setup` installs it) serving on a loopback port with a
//! throw-away data directory, `kubectl` when installed (~57 MB, stripped) waiting on a
//! silent socket, and the Go compiler built here with DWARF (`cmd/compile`, blocked
//! reading its stdin), which adds the DWARF work. `tracer attach --duration 5 --format
//! json` runs on it to its end in the default mode, and its peak resident set is what the
//! kernel reports when it is reaped (`ru_maxrss` from `wait4`: the high-water mark of
//! `VmHWM`, file-backed pages included: the ring buffer's mapping, the mapped executable).
use std::{
    fmt::Write as _,
    io::Read as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::{
    Options, Proc, Tools,
    go::{LARGE_GO_BINARIES, SilentServer, go_build},
    json_attach, json_summary, worst_case_table,
};

/// Goal: the tracer's peak RSS attached to a large Go binary, in MB (10^6 bytes).
const MEMORY_GOAL_MB: f64 = 64.0;
/// How long each attach traces.
const TRACE_SECS: u32 = 5;
/// Runs per target: the figure moves by a few hundred KB between runs, not more.
const MAX_RUNS: usize = 3;
/// Debian's package (installed by `cargo xtask setup`).
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A running target: what it is, and what keeps it blocked (dropped after the runs).
struct Target {
    label: String,
    binary: PathBuf,
    process: Proc,
    _keep: Option<Box<dyn std::any::Any>>,
}

/// Deletes a temporary directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_prometheus() -> anyhow::Result<Target> {
    if !Path::new(PROMETHEUS).exists() {
        bail!("{PROMETHEUS} not found: run `cargo xtask setup` (Debian package prometheus)");
    }
    let dir = std::env::temp_dir().join(format!("tracer-bench-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = TempDir(dir);
    let config = dir.0.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n")
        .with_context(|| format!("writing {}", config.display()))?;
    // A free loopback port: taken from the kernel, then released for prometheus.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free local port")?
        .port();
    let mut cmd = Command::new(PROMETHEUS);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    let process = Proc::spawn("prometheus", &mut cmd)?;
    Ok(Target {
        label: "prometheus (Debian, stripped)".to_owned(),
        binary: PROMETHEUS.into(),
        process,
        _keep: Some(Box::new(dir)),
    })
}

fn start_kubectl() -> anyhow::Result<Option<Target>> {
    let Some(kubectl) = LARGE_GO_BINARIES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        return Ok(None);
    };
    let server = SilentServer::start()?;
    let url = format!("http://127.0.0.1:{}", server.port);
    let process = Proc::spawn(
        "kubectl",
        Command::new(&kubectl).args(["get", "pods", "--server", &url, "--request-timeout=0"]),
    )?;
    Ok(Some(Target {
        label: "kubectl (stripped)".to_owned(),
        binary: kubectl,
        process,
        _keep: Some(Box::new(server)),
    }))
}

fn start_compiler(root: &Path) -> anyhow::Result<Target> {
    let compile = go_build(root, root, "cmd/compile", "go-compile-dwarf")?;
    let process = Proc::spawn(
        "go-compile-dwarf",
        Command::new(&compile).args(["-p", "main", "-o", "/dev/null", "/dev/stdin"]),
    )?;
    Ok(Target {
        label: "cmd/compile (with DWARF)".to_owned(),
        binary: compile,
        process,
        _keep: None,
    })
}

/// Runs the tracer on `pid` to its end; returns its peak RSS in MB and its Go note.
fn peak_rss(tools: &Tools, pid: u32) -> anyhow::Result<(f64, String)> {
    let mut child = json_attach(tools, &pid.to_string(), TRACE_SECS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tracer attach")?;
    let mut stdout = child.stdout.take().context("tracer stdout")?;
    let mut stderr = child.stderr.take().context("tracer stderr")?;
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let tracer = libc::pid_t::try_from(child.id()).context("tracer pid")?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 writes only the status and rusage we pass; the pid is our own
        // unreaped child (std's `Child` is not waited on after this).
        let reaped = unsafe { libc::wait4(tracer, &raw mut status, 0, &raw mut usage) };
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
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!(
            "tracer attach failed (wait status {status:#x}): {}",
            err.trim()
        );
    }
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    let summary = json_summary(&lines, "tracer attach")?;
    let note = super::go::go_attach_note(&summary)
        .context("no Go note in the summary: the target was not traced as a Go program")?
        .to_owned();
    // ru_maxrss is in KiB.
    #[expect(clippy::cast_precision_loss, reason = "a few hundred MB at most")]
    let mb = usage.ru_maxrss as f64 * 1024.0 / 1e6;
    Ok((mb, note))
}

/// The markdown of part (g).
pub(super) fn section(tools: &Tools, opts: &Options) -> anyhow::Result<String> {
    let runs = opts.rounds.min(MAX_RUNS);
    let mut targets = Vec::new();
    let mut failures = Vec::new();
    match start_prometheus() {
        Ok(t) => targets.push(t),
        Err(err) => failures.push(format!("prometheus: {err:#}")),
    }
    match start_kubectl() {
        Ok(Some(t)) => targets.push(t),
        Ok(None) => {}
        Err(err) => failures.push(format!("kubectl: {err:#}")),
    }
    match start_compiler(&tools.root) {
        Ok(t) => targets.push(t),
        Err(err) => failures.push(format!("cmd/compile: {err:#}")),
    }
    // Let them start their goroutines and block.
    std::thread::sleep(Duration::from_secs(2));
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    let mut notes = Vec::new();
    for target in &mut targets {
        if target.process.exited()?.is_some() {
            failures.push(format!(
                "{}: exited at once: {}",
                target.label,
                target.process.stderr_text().trim()
            ));
            continue;
        }
        let size = std::fs::metadata(&target.binary).map_or(0, |m| m.len());
        let name = format!(
            "{}, `{}` ({} MB)",
            target.label,
            target.binary.display(),
            size / 1_000_000
        );
        let mut peaks = Vec::new();
        for run in 1..=runs {
            match peak_rss(tools, target.process.pid()) {
                Ok((mb, note)) => {
                    eprintln!(
                        "bench (g): {}: run {run}/{runs}: peak RSS {mb:.1} MB",
                        target.label
                    );
                    if run == 1 {
                        notes.push(format!("{}: {note}", target.label));
                    }
                    peaks.push(mb);
                }
                Err(err) => failures.push(format!("{}: {err:#}", target.label)),
            }
        }
        rows.push((name, peaks));
    }
    for target in &mut targets {
        target.process.stop(libc::SIGKILL, Duration::from_secs(5))?;
    }
    let mut s = String::new();
    let _ = writeln!(s, "## (g) The tracer's peak memory on large Go binaries\n");
    let _ = writeln!(
        s,
        "`tracer attach --duration {TRACE_SECS} --format json` (default mode) on each target, {runs} runs; \
         peak RSS is the reaped tracer's `ru_maxrss` (its `VmHWM`: heap, the ring buffer's mapping, the \
         mapped parts of the executable), in MB of 10^6 bytes.\n"
    );
    let table_rows: Vec<(&str, &[f64])> = rows
        .iter()
        .map(|(name, peaks)| (name.as_str(), peaks.as_slice()))
        .collect();
    worst_case_table(&mut s, &table_rows, (MEMORY_GOAL_MB, "MB", 1), &failures);
    for note in notes {
        let _ = writeln!(s, "- tracer's note, {note}");
    }
    s.push('\n');
    Ok(s)
}
