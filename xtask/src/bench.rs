//! `cargo xtask bench`: the numbers behind BENCHMARKS.md.
//!
//! - (a) the userspace pipeline alone (decode + analysis) on synthetic records, one core;
//! - (b) the slowdown `tracer attach` (default and `--holds`) inflicts on a lock-heavy C
//!   workload, against the same workload untraced;
//! - (c) the floors: the same workload under empty eBPF programs on the same hooks
//!   (`tracer floor`, with and without uprobes) and under an equivalent bpftrace script;
//! - (d) the delay between an ABBA deadlock closing and the tracer printing it;
//! - (e) Go targets: overhead (default and `--holds`) on a contended `sync.Mutex`
//!   workload, time to the first report and snapshot cost with 10 000 parked goroutines
//!   (see `bench/go_parked.rs`), and attach time on a large real Go binary (see
//!   `bench/go.rs`);
//! - (f) the tracer's own CPU while attached to a quiet target (see `bench/idle.rs`).
//! - (g) the tracer's peak memory attached to large Go binaries (see `bench/memory.rs`).
//! - (h) the tracer's memory per tracked lock and with 100 000 distinct contended locks
//!   (see `bench/many_locks.rs`).
//! - (i) `tracer serve`: throughput under the serve while it is scraped, its CPU with a
//!   quiet target, its resident memory (see `bench/serve.rs`).
//! - (j) the lock-order graph (issue 18): the tracer CPU it adds per traced acquisition,
//!   the throughput it keeps against `--holds` without it, and its memory at 10^5 lock
//!   instances (see `bench/lock_order.rs`).
//!
//! Overhead windows are interleaved round-robin (every configuration once per round, on
//! one workload process per round, the starting configuration rotating), so drift in the
//! machine (thermal, noisy neighbours on a VM) spreads over all configurations instead of
//! biasing whichever ran last; each configuration is summarised by its median, and ratios
//! are taken within a round or against the untraced median of the same invocation, never
//! against numbers from another run or machine (see `bench/overhead.rs`).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Read, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

mod go;
mod go_parked;
mod idle;
mod lock_order;
mod many_locks;
mod memory;
mod overhead;
mod serve;
mod served_targets;

/// Lock-heavy workload shape: more threads than the 2 cores of the reference machine, a
/// ~1 µs critical section and a shorter stretch outside it, so the lock is demanded more
/// than 100% of the time and most acquisitions go through the futex slow path.
const WORKLOAD_THREADS: u32 = 4;
const CRITICAL_SECTION_US: f64 = 1.0;
const OUTSIDE_US: f64 = 0.5;
/// Goal (a): events per second through decode + analysis on one core.
const PIPELINE_GOAL: f64 = 5_000_000.0;
/// Goal (d): deadlock report latency.
const LATENCY_GOAL_MS: f64 = 100.0;
/// Pipeline benchmark repetitions; its own loop already runs 10 M events per repetition.
const PIPELINE_REPEATS: usize = 3;
/// An attach counts as complete when the tracer's set of file descriptors (maps,
/// programs, links, perf events) has not changed for this long.
/// Goal (b): the default mode keeps at least this share of the untraced throughput.
const DEFAULT_MODE_GOAL: f64 = 0.95;
const ATTACH_QUIET: Duration = Duration::from_millis(400);
const ATTACH_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Pipeline,
    Overhead,
    Floors,
    Latency,
    Go,
    Idle,
    Memory,
    ManyLocks,
    Serve,
    LockOrder,
    ServedTargets,
}

struct Options {
    rounds: usize,
    seconds: f64,
    /// The parts to run (`--only b,c`); `None` runs every part.
    only: Option<Vec<Part>>,
    /// Use the tracer binary already in target/release (when the tree does not build).
    no_build: bool,
}

impl Options {
    fn wants(&self, part: Part) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(&part))
    }
}

fn parse_options(args: &[String]) -> anyhow::Result<Options> {
    let mut opts = Options {
        rounds: 9,
        seconds: 3.0,
        only: None,
        no_build: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .with_context(|| format!("{name} needs a value"))
        };
        match name {
            "--rounds" => {
                opts.rounds = value()?.parse().context("--rounds: not a number")?;
                if opts.rounds == 0 {
                    bail!("--rounds must be at least 1");
                }
            }
            "--seconds" => {
                opts.seconds = value()?.parse().context("--seconds: not a number")?;
                if !(opts.seconds.is_finite() && opts.seconds > 0.0) {
                    bail!("--seconds must be positive");
                }
            }
            "--only" => {
                // A comma list, so that b and c (tracer and floors) can run interleaved
                // in one invocation and be compared against the same untraced runs.
                let parts = value()?
                    .split(',')
                    .map(|part| {
                        Ok(match part.trim() {
                            "a" => Part::Pipeline,
                            "b" => Part::Overhead,
                            "c" => Part::Floors,
                            "d" => Part::Latency,
                            "e" => Part::Go,
                            "f" => Part::Idle,
                            "g" => Part::Memory,
                            "h" => Part::ManyLocks,
                            "i" => Part::Serve,
                            "j" => Part::LockOrder,
                            "k" => Part::ServedTargets,
                            other => bail!("--only takes a to k, not {other:?}"),
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                opts.only = Some(parts);
            }
            "--no-build" => opts.no_build = true,
            "-h" | "--help" => {
                println!(
                    "cargo xtask bench [--rounds N (9)] [--seconds S (3)] [--only a|b|c|d|e|f|g|h|i|j|k[,...]] [--no-build]\n\
                     a: userspace pipeline events/s; b: overhead of tracer attach (default, --holds);\n\
                     c: floors (empty programs, empty uprobes, bpftrace); d: deadlock report latency;\n\
                     e: Go targets (overhead on a sync.Mutex workload, first report and snapshot cost with\n\
                     parked goroutines, attach time on a large Go binary);\n\
                     f: the tracer's own CPU while attached to a quiet target;\n\
                     g: the tracer's peak memory attached to large Go binaries (prometheus, kubectl, cmd/compile);\n\
                     h: the tracer's memory per tracked lock and with 100 000 distinct contended locks;\n\
                     i: tracer serve: throughput while scraped every second (C and Go workloads), CPU with a\n\
                     quiet target scraped every 15 s, resident memory;\n\
                     j: the lock-order graph: tracer CPU added per traced acquisition and throughput against\n\
                     --holds --no-lock-order, its memory at 100 000 lock instances;\n\
                     k: tracer serve: what each served target adds to every context switch of the host.\n\
                     Needs root (b to k). Writes bench-results/latest.md."
                );
                return Ok(Options {
                    only: None,
                    rounds: 0,
                    seconds: 0.0,
                    no_build: false,
                });
            }
            other => bail!("unknown bench option {other:?} (try --help)"),
        }
    }
    Ok(opts)
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let opts = parse_options(args)?;
    if opts.rounds == 0 {
        return Ok(()); // --help
    }
    let root = workspace_root()?;
    // Held to the end: the old value comes back when the bench is done.
    let stats_were_on = overhead::BpfStats::disable_if_on()
        .context("kernel.bpf_stats_enabled must be 0 for the throughput windows")?;
    let mut report = header(&root, &opts);
    if stats_were_on.is_some() {
        let _ = writeln!(
            report,
            "- `kernel.bpf_stats_enabled` was 1: set to 0 for this run (every BPF program's \
             runs are timed while it is on), and back to 1 after\n"
        );
    }

    if opts.wants(Part::Pipeline) {
        report.push_str(&pipeline(&root)?);
    }
    let overhead = opts.wants(Part::Overhead) || opts.wants(Part::Floors);
    let latency = opts.wants(Part::Latency);
    let go = opts.wants(Part::Go);
    let idle = opts.wants(Part::Idle);
    let memory = opts.wants(Part::Memory);
    let many_locks = opts.wants(Part::ManyLocks);
    let serve = opts.wants(Part::Serve);
    let lock_order = opts.wants(Part::LockOrder);
    let served_targets = opts.wants(Part::ServedTargets);
    let needs_tools = overhead
        || latency
        || go
        || idle
        || memory
        || many_locks
        || serve
        || lock_order
        || served_targets;
    if needs_tools {
        let tools = Tools::build(&root, opts.no_build)?;
        if overhead {
            report.push_str(&overhead::section(&tools, &opts)?);
            let _ = writeln!(report, "- {}\n", idle_note("after the overhead runs"));
        }
        if latency {
            report.push_str(&latency_section(&tools, &opts));
        }
        if go {
            report.push_str(&go::section(&tools, &opts)?);
        }
        if idle {
            report.push_str(&idle::section(&tools, &opts));
        }
        if memory {
            report.push_str(&memory::section(&tools, &opts)?);
        }
        if many_locks {
            report.push_str(&many_locks::section(&tools, &opts)?);
        }
        if serve {
            report.push_str(&serve::section(&tools, &opts)?);
        }
        if lock_order {
            report.push_str(&lock_order::section(&tools, &opts)?);
        }
        if served_targets {
            report.push_str(&served_targets::section(&tools, &opts)?);
        }
    }

    let dir = root.join("bench-results");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("latest.md");
    fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    println!("{report}");
    eprintln!("bench: results written to {}", path.display());
    Ok(())
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Output of a short command, trimmed; `None` when it cannot run (only used for the
/// descriptive header, where a missing tool is not an error).
fn command_output(program: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn header(root: &Path, opts: &Options) -> String {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".to_owned(), |s| s.trim().to_owned());
    let cpus = thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned());
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"], root)
        .unwrap_or_else(|| "?".to_owned());
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"], root)
        .unwrap_or_else(|| "?".to_owned());
    let dirty =
        command_output("git", &["status", "--porcelain"], root).is_some_and(|s| !s.is_empty());
    let bpftrace = command_output("bpftrace", &["--version"], root)
        .unwrap_or_else(|| "not installed".to_owned());
    let mut s = String::new();
    let _ = writeln!(s, "# tracer benchmark results\n");
    let _ = writeln!(s, "- date: {date}");
    let _ = writeln!(s, "- machine: Linux {kernel}, {cpus} CPUs, {cpu_model}");
    let _ = writeln!(
        s,
        "- tracer: commit {commit}{}",
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        }
    );
    let _ = writeln!(s, "- {bpftrace}");
    let _ = writeln!(
        s,
        "- settings: {} rounds, {} s per overhead window",
        opts.rounds, opts.seconds
    );
    let _ = writeln!(s, "- {}\n", idle_note("at start"));
    s
}

/// The machine's CPU time so far, in clock ticks summed over CPUs, from the first line of
/// `/proc/stat` (user nice system idle iowait irq softirq steal ...).
#[derive(Clone, Copy)]
struct CpuTimes {
    /// Idle and iowait.
    idle: u64,
    /// Time the hypervisor ran something else while a CPU of ours wanted to run.
    steal: u64,
    /// The first eight fields together.
    total: u64,
}

impl CpuTimes {
    fn now() -> Option<Self> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        Some(Self {
            idle: ticks.get(3)? + ticks.get(4).copied().unwrap_or(0),
            steal: ticks.get(7).copied().unwrap_or(0),
            total: ticks.iter().take(8).sum(),
        })
    }

    /// The share of the CPU time between `earlier` and `self` that `part` picks out.
    fn share_since(self, earlier: Self, part: fn(Self) -> u64) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total).filter(|&t| t > 0)?;
        #[allow(clippy::cast_precision_loss)]
        Some(part(self).saturating_sub(part(earlier)) as f64 / total as f64)
    }
}

/// Share of CPU time idle over one second, from `/proc/stat`: the benchmark compares
/// runs against each other, and another job on the machine (a build) makes every number
/// noisy, so the report says how quiet the machine was.
fn idle_percent() -> Option<f64> {
    let before = CpuTimes::now()?;
    thread::sleep(Duration::from_secs(1));
    CpuTimes::now()?
        .share_since(before, |t| t.idle)
        .map(|share| share * 100.0)
}

fn idle_note(when: &str) -> String {
    match idle_percent() {
        Some(p) if p < 90.0 => format!(
            "CPU idle {when}: {p:.0}% — the machine was busy with something else, expect noise"
        ),
        Some(p) => format!("CPU idle {when}: {p:.0}%"),
        None => format!("CPU idle {when}: unknown"),
    }
}

// ---------------------------------------------------------------------------------------
// (a) pipeline

fn pipeline(root: &Path) -> anyhow::Result<String> {
    eprintln!(
        "bench (a): building and running the pipeline benchmark ({PIPELINE_REPEATS} repetitions)"
    );
    let mut default_rates = Vec::new();
    let mut holds_rates = Vec::new();
    let mut last = BTreeMap::new();
    for i in 0..PIPELINE_REPEATS {
        let out = Command::new(cargo())
            .args([
                "run",
                "--quiet",
                "--release",
                "-p",
                "tracer-user",
                "--example",
                "pipeline_bench",
            ])
            .current_dir(root)
            .stderr(Stdio::inherit())
            .output()
            .context("running cargo run --example pipeline_bench")?;
        if !out.status.success() {
            bail!("pipeline_bench failed ({})", out.status);
        }
        let values = key_values(&String::from_utf8_lossy(&out.stdout));
        let rate = |key: &str| -> anyhow::Result<f64> {
            values
                .get(key)
                .with_context(|| format!("pipeline_bench printed no {key}"))?
                .parse()
                .with_context(|| format!("{key}: not a number"))
        };
        default_rates.push(rate("events_per_sec")?);
        holds_rates.push(rate("holds_events_per_sec")?);
        eprintln!(
            "bench (a): repetition {}: {} events/s default stream, {} events/s holds stream",
            i + 1,
            si(rate("events_per_sec")?),
            si(rate("holds_events_per_sec")?)
        );
        last = values;
    }
    let get = |key: &str| last.get(key).cloned().unwrap_or_else(|| "?".to_owned());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## (a) Userspace pipeline (decode + analysis, one thread)\n"
    );
    let _ = writeln!(
        s,
        "Synthetic stream: 64 threads, 256 mutexes (skewed), wait/wait-end pairs, 10% condvar waits; \
         {} records of {} bytes replayed {} times per repetition, median of {PIPELINE_REPEATS} repetitions.\n",
        get("stream_events"),
        get("record_bytes"),
        get("events")
            .parse::<f64>()
            .ok()
            .zip(get("stream_events").parse::<f64>().ok())
            .map_or_else(|| "?".to_owned(), |(e, n)| format!("{:.0}", e / n)),
    );
    let _ = writeln!(
        s,
        "| stream | events/s (median) | min – max | goal | verdict |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (name, rates) in [
        ("default mode (futex waits)", &default_rates),
        ("--holds (waits + acquire/release)", &holds_rates),
    ] {
        let med = median(rates);
        let _ = writeln!(
            s,
            "| {name} | {} | {} – {} | ≥ {} | {} |",
            si(med),
            si(min(rates)),
            si(max(rates)),
            si(PIPELINE_GOAL),
            verdict(
                med >= PIPELINE_GOAL,
                &format!("{:.2}× the goal", med / PIPELINE_GOAL)
            ),
        );
    }
    s.push('\n');
    Ok(s)
}

fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// tools

struct Tools {
    root: PathBuf,
    tracer: PathBuf,
    lockbench: PathBuf,
    deadlock: PathBuf,
    switchbench: PathBuf,
}

impl Tools {
    fn build(root: &Path, no_build: bool) -> anyhow::Result<Self> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            bail!("bench parts b to k attach eBPF programs: run as root (or use --only a)");
        }
        let tracer = root.join("target/release/tracer");
        if no_build {
            if !tracer.exists() {
                bail!("--no-build: {} does not exist", tracer.display());
            }
        } else {
            eprintln!("bench: building the tracer (cargo build --release -p tracer-user)");
            let status = Command::new(cargo())
                .args(["build", "--release", "-p", "tracer-user"])
                .current_dir(root)
                .status()
                .context("running cargo build")?;
            if !status.success() {
                bail!("cargo build --release -p tracer-user failed ({status})");
            }
        }
        let out_dir = root.join("target/bench");
        fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
        let compile = |name: &str| -> anyhow::Result<PathBuf> {
            let src = root.join("xtask/bench").join(format!("{name}.c"));
            let bin = out_dir.join(name);
            let status = Command::new("gcc")
                .args(["-O2", "-g", "-Wall", "-Wextra", "-pthread", "-o"])
                .arg(&bin)
                .arg(&src)
                .status()
                .context("running gcc (is it installed?)")?;
            if !status.success() {
                bail!("gcc failed on {}", src.display());
            }
            Ok(bin)
        };
        let lockbench = compile("lockbench")?;
        let deadlock = compile("deadlock")?;
        let switchbench = compile("switchbench")?;
        Ok(Self {
            root: root.to_path_buf(),
            tracer,
            lockbench,
            deadlock,
            switchbench,
        })
    }
}

// ---------------------------------------------------------------------------------------
// processes

/// `CLOCK_MONOTONIC` in ns: the clock the targets print and `bpf_ktime_get_ns` uses, so
/// times taken here compare directly with theirs.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass; CLOCK_MONOTONIC exists on
    // every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// A line of a child's stdout and the monotonic time it was read.
struct Line {
    at_ns: u64,
    text: String,
}

/// A child process whose stdout is read line by line on a thread (so a chatty child never
/// blocks on a full pipe) and whose stderr is collected for error messages. Dropping it
/// kills the child, so an early error return leaves no stray tracer or workload behind.
struct Proc {
    name: String,
    child: Child,
    lines: Receiver<Line>,
    stderr: Option<JoinHandle<String>>,
    status: Option<ExitStatus>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let mut stderr = child.stderr.take().context("child stderr")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for text in BufReader::new(stdout).lines() {
                let Ok(text) = text else { break };
                if tx
                    .send(Line {
                        at_ns: monotonic_ns(),
                        text,
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            lines,
            stderr: Some(stderr),
            status: None,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Skips stdout lines until one matches, or fails after `timeout` or at EOF.
    fn wait_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Line> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line.text) => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => bail!(
                    "{}: expected output did not arrive within {timeout:?}",
                    self.name
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let err = self.stderr_text();
                    bail!(
                        "{}: exited before the expected output; stderr: {}",
                        self.name,
                        err.trim()
                    );
                }
            }
        }
    }

    /// Writes one line to the child's stdin, keeping it open.
    fn send_line(&mut self, text: &str) -> anyhow::Result<()> {
        let stdin = self
            .child
            .stdin
            .as_mut()
            .with_context(|| format!("{}: stdin already closed", self.name))?;
        writeln!(stdin, "{text}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("{}: writing to its stdin", self.name))
    }

    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    fn send_start(&mut self) -> anyhow::Result<()> {
        let mut stdin = self
            .child
            .stdin
            .take()
            .with_context(|| format!("{}: stdin already used", self.name))?;
        stdin
            .write_all(b"\n")
            .with_context(|| format!("{}: writing the start byte", self.name))
    }

    fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .with_context(|| format!("waiting for {}", self.name))?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for the child to exit on its own.
    fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if self.status.is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.pid()) {
            // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped
            // child, so it cannot have been recycled for another process.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// Asks the child to stop with `sig` (if still running) and waits; SIGKILL after
    /// `grace`. Returns the exit status.
    fn stop(&mut self, sig: libc::c_int, grace: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(sig);
        if let Some(status) = self.wait_exit(grace)? {
            return Ok(status);
        }
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(5))?
            .with_context(|| format!("{} does not die", self.name))
    }

    /// Everything left on stdout, once the child has exited.
    fn remaining_lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            out.push(line.text);
        }
        out
    }

    fn stderr_text(&mut self) -> String {
        if self.status.is_none() {
            // The stderr thread ends at EOF, which only comes once the child is gone.
            return String::new();
        }
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last JSON summary line of a tracer's output.
fn json_summary(lines: &[String], who: &str) -> anyhow::Result<serde_json::Value> {
    lines
        .iter()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v["kind"] == "summary")
        })
        .with_context(|| format!("{who}: no JSON summary in its output"))
}

/// Starts `tracer attach --pid PID --duration SECS --format json` under `label`.
fn spawn_json_attach(tools: &Tools, label: &str, pid: &str, secs: u32) -> anyhow::Result<Proc> {
    Proc::spawn(label, &mut json_attach(tools, pid, secs))
}

/// `tracer attach --pid PID --duration SECS --format json`, not started yet.
fn json_attach(tools: &Tools, pid: &str, secs: u32) -> Command {
    let mut cmd = Command::new(&tools.tracer);
    cmd.args(["attach", "--pid", pid, "--duration", &secs.to_string()])
        .args(["--format", "json"]);
    cmd
}

/// Most of a failed observer's stdout the report keeps: its first lines (with `--format
/// json`, the findings), each cut to this many characters.
const FAILED_STDOUT_LINES: usize = 3;
const FAILED_STDOUT_LINE_CHARS: usize = 1500;

/// Why an observer failed, for the report: its status, its stderr, and the first lines of
/// its stdout. A tracer that exits non-zero for a finding (status 3 or 4: a deadlock or a
/// stuck lock) says what it found only on stdout, and a finding where the workload has
/// none is a bug to look into from the report alone (it may not happen again for a
/// hundred windows).
fn observer_failure(label: &str, status: ExitStatus, stderr: &str, stdout: &[String]) -> String {
    let mut text = format!("{label} failed ({status}): {}", stderr.trim());
    let shown: Vec<String> = stdout
        .iter()
        .filter(|line| !line.trim().is_empty())
        .take(FAILED_STDOUT_LINES)
        .map(|line| line.chars().take(FAILED_STDOUT_LINE_CHARS).collect())
        .collect();
    if !shown.is_empty() {
        let _ = write!(text, "; stdout: {}", shown.join(" | "));
    }
    text
}

/// How long an observer is told to run for a window or run of `seconds`: 30 s more, so
/// that it is always stopped by us (SIGINT) or by the target's exit, never by its clock.
fn observer_secs(seconds: f64) -> u32 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let secs = (seconds + 30.0).ceil().min(f64::from(u32::MAX)) as u32;
    secs
}

/// Waits until the tracer (or bpftrace) has finished attaching: at least `min_events`
/// BPF links or perf events among its file descriptors, and its descriptor set unchanged
/// for [`ATTACH_QUIET`]. The tracer prints nothing when attached, and both it and
/// bpftrace open their last descriptors when they attach the last program, so a quiet
/// descriptor table means the hooks are live.
fn wait_attached(tracer: &mut Proc, min_events: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let fd_dir = PathBuf::from(format!("/proc/{}/fd", tracer.pid()));
    let mut last: Vec<String> = Vec::new();
    let mut quiet_since = Instant::now();
    loop {
        if let Some(status) = tracer.exited()? {
            let err = tracer.stderr_text();
            bail!(
                "{} exited while attaching ({status}): {}",
                tracer.name,
                err.trim()
            );
        }
        let mut fds: Vec<String> = fs::read_dir(&fd_dir)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter_map(|e| fs::read_link(e.path()).ok())
                    .map(|t| t.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        fds.sort();
        if fds != last {
            last = fds;
            quiet_since = Instant::now();
        }
        let hooks = last
            .iter()
            .filter(|t| t.contains("bpf_link") || t.contains("perf_event"))
            .count();
        if hooks >= min_events && quiet_since.elapsed() >= ATTACH_QUIET {
            return Ok(started.elapsed());
        }
        if started.elapsed() > ATTACH_TIMEOUT {
            bail!(
                "{} did not finish attaching within {ATTACH_TIMEOUT:?} ({hooks} hooks seen)",
                tracer.name
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// (d) deadlock report latency

struct Latency {
    /// From the target's `closed_ns` to the deadlock line arriving on our pipe.
    external_ms: f64,
    /// The tracer's own `detected_after_ns` (from the last wait start it saw to the report).
    reported_ms: Option<f64>,
}

#[allow(clippy::cast_precision_loss)]
fn latency_run(tools: &Tools) -> anyhow::Result<Latency> {
    let mut target = Proc::spawn("deadlock", &mut Command::new(&tools.deadlock))?;
    target.wait_line(Duration::from_secs(10), |l| l.starts_with("ready pid="))?;
    let pid = target.pid().to_string();
    let mut tracer = spawn_json_attach(tools, "tracer attach", &pid, 60)?;
    wait_attached(&mut tracer, 2)?;
    target.send_start()?;
    let closed = target.wait_line(Duration::from_secs(10), |l| l.starts_with("closed_ns="))?;
    let closed_ns: u64 = closed.text["closed_ns=".len()..]
        .trim()
        .parse()
        .context("closed_ns: not a number")?;
    let line = tracer.wait_line(Duration::from_secs(10), |l| {
        l.contains(r#""kind":"deadlock""#)
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&line.text).context("deadlock line is not JSON")?;
    let cycle_len = value["cycle"].as_array().map_or(0, Vec::len);
    if cycle_len != 2 {
        bail!(
            "expected a cycle of 2 threads, got {cycle_len}: {}",
            line.text
        );
    }
    // The target will never finish: kill it, then the tracer sees it gone and exits.
    target.stop(libc::SIGKILL, Duration::from_secs(5))?;
    if tracer.wait_exit(Duration::from_secs(5))?.is_none() {
        tracer.stop(libc::SIGINT, Duration::from_secs(5))?;
    }
    Ok(Latency {
        external_ms: line.at_ns.saturating_sub(closed_ns) as f64 / 1e6,
        reported_ms: value["detected_after_ns"].as_u64().map(|n| n as f64 / 1e6),
    })
}

fn latency_section(tools: &Tools, opts: &Options) -> String {
    let (runs, failures) = rounds(
        opts,
        "d",
        || latency_run(tools),
        |l| {
            format!(
                "deadlock line {:.1} ms after the cycle closed (tracer says {})",
                l.external_ms,
                l.reported_ms
                    .map_or_else(|| "nothing".to_owned(), |r| format!("{r:.1} ms"))
            )
        },
    );
    let external: Vec<f64> = runs.iter().map(|l| l.external_ms).collect();
    let reported: Vec<f64> = runs.iter().filter_map(|l| l.reported_ms).collect();
    let mut s = String::new();
    let _ = writeln!(s, "## (d) Deadlock report latency\n");
    let _ = writeln!(
        s,
        "Target `xtask/bench/deadlock.c` (ABBA, two threads) prints CLOCK_MONOTONIC right before the lock call that \
         closes the cycle; the bench timestamps (CLOCK_MONOTONIC) the tracer's JSON deadlock line as it arrives on the \
         pipe. {} runs.\n",
        opts.rounds
    );
    worst_case_table(
        &mut s,
        &[
            ("external: cycle closed → line read", &external),
            ("tracer's detected_after_ns", &reported),
        ],
        (LATENCY_GOAL_MS, "ms", 1),
        &failures,
    );
    s
}

/// Runs `run` once per round, logging each outcome (`bench (part): run i/n: …`, with
/// `describe` for a success); returns the successes and the failures' messages.
fn rounds<T>(
    opts: &Options,
    part: &str,
    mut run: impl FnMut() -> anyhow::Result<T>,
    describe: impl Fn(&T) -> String,
) -> (Vec<T>, Vec<String>) {
    let (mut done, mut failures) = (Vec::new(), Vec::new());
    for round in 1..=opts.rounds {
        match run() {
            Ok(result) => {
                eprintln!(
                    "bench ({part}): run {round}/{}: {}",
                    opts.rounds,
                    describe(&result)
                );
                done.push(result);
            }
            Err(err) => {
                eprintln!(
                    "bench ({part}): run {round}/{} FAILED: {err:#}",
                    opts.rounds
                );
                failures.push(format!("{err:#}"));
            }
        }
    }
    (done, failures)
}

/// Appends a table of measures judged by their worst run against an upper bound
/// (`goal` in `unit`, values printed with `decimals`), then the failed runs' messages.
fn worst_case_table(
    s: &mut String,
    rows: &[(&str, &[f64])],
    (goal, unit, decimals): (f64, &str, usize),
    failures: &[String],
) {
    let _ = writeln!(s, "| measure | median | max | goal | verdict |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for &(name, values) in rows {
        if values.is_empty() {
            let _ = writeln!(s, "| {name} | no data | | ≤ {goal} {unit} | |");
            continue;
        }
        let (med, worst) = (median(values), max(values));
        let _ = writeln!(
            s,
            "| {name} | {med:.decimals$} {unit} | {worst:.decimals$} {unit} | ≤ {goal} {unit} | {} |",
            verdict(
                worst <= goal,
                &format!("worst {:.1}× the goal", worst / goal)
            )
        );
    }
    for msg in failures {
        let _ = writeln!(s, "\n- failed run: {msg}");
    }
    s.push('\n');
}

// ---------------------------------------------------------------------------------------
// numbers

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => f64::midpoint(v[n / 2 - 1], v[n / 2]),
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// 1234567 → "1.23 M": three significant digits are all a benchmark can stand behind.
fn si(value: f64) -> String {
    let (scaled, unit) = if value >= 1e9 {
        (value / 1e9, " G")
    } else if value >= 1e6 {
        (value / 1e6, " M")
    } else if value >= 1e3 {
        (value / 1e3, " k")
    } else {
        (value, "")
    };
    let digits = if scaled >= 100.0 {
        0
    } else if scaled >= 10.0 {
        1
    } else {
        2
    };
    format!("{scaled:.digits$}{unit}")
}

fn verdict(met: bool, detail: &str) -> String {
    if met {
        format!("met ({detail})")
    } else {
        format!("**missed** ({detail})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_shares_are_taken_over_the_interval() {
        let at = |idle, steal, total| CpuTimes { idle, steal, total };
        let (before, after) = (at(100, 10, 1000), at(150, 40, 1200));
        let steal = after.share_since(before, |t| t.steal).unwrap();
        assert!((steal - 0.15).abs() < 1e-9, "{steal}");
        let idle = after.share_since(before, |t| t.idle).unwrap();
        assert!((idle - 0.25).abs() < 1e-9, "{idle}");
        // No time passed (or the counters went back): no share.
        assert!(before.share_since(before, |t| t.idle).is_none());
        assert!(before.share_since(after, |t| t.idle).is_none());
    }

    /// Guards the report of a failed window keeping what the tracer found: a false
    /// stuck lock in one window of a hundred was reported with its status and stderr
    /// only, and could not be looked into.
    #[test]
    fn a_failed_observer_is_reported_with_the_first_lines_it_printed() {
        use std::os::unix::process::ExitStatusExt as _;

        let status = ExitStatus::from_raw(4 << 8);
        let long = "x".repeat(FAILED_STDOUT_LINE_CHARS + 10);
        let stdout: Vec<String> = ["{\"kind\":\"stuck_lock\"}", "", &long, "third", "fourth"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let text = observer_failure("tracer attach", status, "tracer: note\n", &stdout);
        assert!(
            text.starts_with("tracer attach failed (exit status: 4): tracer: note; stdout: "),
            "{text}"
        );
        assert!(text.contains("{\"kind\":\"stuck_lock\"} | "), "{text}");
        assert!(text.contains(&format!("{} | third", "x".repeat(FAILED_STDOUT_LINE_CHARS))));
        assert!(!text.contains("fourth"), "{text}");
        assert!(!text.contains(&long), "{text}");
        // Nothing on stdout: the status and stderr alone.
        assert_eq!(
            observer_failure("serve", status, "gone", &[]),
            "serve failed (exit status: 4): gone"
        );
    }

    #[test]
    fn median_and_si() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
        assert_eq!(si(5_123_456.0), "5.12 M");
        assert_eq!(si(123_456.0), "123 k");
        assert_eq!(si(12.5), "12.5");
        assert_eq!(si(1.5), "1.50");
    }

    #[test]
    fn options_parse() {
        let args: Vec<String> = ["--rounds", "2", "--seconds=1.5", "--only", "c"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let opts = parse_options(&args).expect("valid options");
        assert_eq!((opts.rounds, opts.only), (2, Some(vec![Part::Floors])));
        assert!((opts.seconds - 1.5).abs() < f64::EPSILON);
        assert!(parse_options(&["--only".to_owned(), "x".to_owned()]).is_err());
        let both = parse_options(&["--only".to_owned(), "b,c".to_owned()]).expect("b,c");
        assert!(both.wants(Part::Overhead) && both.wants(Part::Floors));
        assert!(!both.wants(Part::Pipeline));
        let idle = parse_options(&["--only".to_owned(), "f".to_owned()]).expect("f");
        assert_eq!(idle.only, Some(vec![Part::Idle]));
        let memory = parse_options(&["--only".to_owned(), "g".to_owned()]).expect("g");
        assert_eq!(memory.only, Some(vec![Part::Memory]));
        let many = parse_options(&["--only".to_owned(), "h".to_owned()]).expect("h");
        assert_eq!(many.only, Some(vec![Part::ManyLocks]));
        let serve = parse_options(&["--only".to_owned(), "i".to_owned()]).expect("i");
        assert_eq!(serve.only, Some(vec![Part::Serve]));
        let order = parse_options(&["--only".to_owned(), "j".to_owned()]).expect("j");
        assert_eq!(order.only, Some(vec![Part::LockOrder]));
        let targets = parse_options(&["--only".to_owned(), "k".to_owned()]).expect("k");
        assert_eq!(targets.only, Some(vec![Part::ServedTargets]));
        assert!(parse_options(&["--only".to_owned(), "l".to_owned()]).is_err());
    }
}
