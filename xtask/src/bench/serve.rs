//! Part (i) of `cargo xtask bench`: `tracer serve`, the sidecar, and what it costs over
//! time (issue 17).
//!
//! - Throughput: the lock-heavy C workload of part (b) and the service-like Go workload of
//!   part (e) (20 µs of work outside the lock), untraced, under `tracer attach` and under
//!   `tracer serve --pid PID` while a scraper fetches `/metrics` every second (a plain
//!   HTTP/1.1 GET over `std::net::TcpStream`, one connection per scrape, as Prometheus
//!   makes them). As in (b) and (e), per round and workload one process, on which every
//!   watch takes a window in turn, the starting one rotating; a watch runs [`SETTLE`]
//!   after it attached before its window opens, and the next window waits
//!   [`AFTER_STOP`] after it stopped (as `hook_floors.py`); the serve's paired ratio to
//!   untraced is judged against its goal, and its ratio to `tracer attach` in the same
//!   rounds says what serving (the HTTP endpoint, the snapshots, the scans) adds to
//!   tracing.
//! - CPU with a quiet target: `tracer serve --pid` on lockbench blocked before its start
//!   (as in (f)), scraped every 15 s; the serve's CPU time (every thread's
//!   `/proc/PID/task/*/schedstat`) over each 15 s interval, one scrape in each.
//! - Memory: the serve's `VmRSS` and `VmHWM` (`/proc/PID/status`) at the end of each of
//!   its throughput windows, again after it answered one contention profile (which names
//!   the waiters' frames, file and line included), at the end of the quiet run, and once
//!   the quiet target has exited; and with several C workloads served at once, after one
//!   profile of them all (each session names its own frames; the C library's DWARF is
//!   read once for all).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::Command,
    sync::mpsc,
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Options, Proc, Tools,
    idle::cpu_ns,
    idle_note, json_attach, json_summary, max, median, min, observer_secs,
    overhead::{Workload, paired_ratio},
    si, wait_attached, worst_case_table,
};

/// Goal: the serve keeps this share of the untraced throughput (issue 17).
const THROUGHPUT_GOAL: f64 = 0.99;
/// How often the scraper fetches `/metrics` during a throughput window: a fast scrape
/// interval, the worst case for the serve.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);
/// How often the quiet target's serve is scraped: a common Prometheus scrape interval.
const QUIET_SCRAPE_EVERY: Duration = Duration::from_secs(15);
/// Goal: the serve's own CPU with a quiet target, as part (f)'s: 1% of one CPU.
const QUIET_GOAL_MS_PER_S: f64 = 10.0;
/// Goal: the serve's resident memory with one typical target, in MB (10^6 bytes): a
/// sidecar's memory limit, as part (g)'s.
const MEMORY_GOAL_MB: f64 = 64.0;
/// How long the serve may take to detach and exit after SIGTERM (its own budget is 5 s).
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// How long a watch runs after it attached before its window opens: a sidecar runs for
/// weeks, so the window measures the serve as it runs, not its first fraction of a
/// second (choosing its sampling period, loading symbols), as `hook_floors.py` does.
const SETTLE: Duration = Duration::from_secs(1);
/// How long a serve runs after it attached before its window opens: past its
/// `sched_switch` hook's first slice and the detach that follows (2 s + 0.1 s + 1 s,
/// `serve::hook_duty`), after which it runs its duty cycle as it will for weeks.
const SERVE_SETTLE: Duration = Duration::from_secs(4);
/// One slice of the serve's duty cycle (`serve::hook_duty::ON_NS`): a serve window lasts
/// whole cycles (the factor's slices), so that it holds the hook's attached and detached
/// times in their true shares, whatever the phase it opens at.
const DUTY_SLICE_SECONDS: f64 = 2.0;

/// How long after a watch stopped the next window may start: its detach (programs,
/// maps and uprobes freed in the kernel's own time) is not the next window's cost.
const AFTER_STOP: Duration = Duration::from_millis(300);
/// How long a scrape may take before it counts as failed.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The window of the contention profile asked after each serve window, seconds.
const PROFILE_SECONDS: u64 = 1;
/// How many C workloads one serve traces in the memory runs with several targets.
const SEVERAL_TARGETS: usize = 3;
/// How many such runs.
const SEVERAL_TARGETS_RUNS: usize = 3;

/// The workloads, as in (b) and (e).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Load {
    /// `lockbench`, part (b)'s shape: lock-bound.
    C,
    /// `go_lockbench` with 20 µs outside the lock, part (e)'s service-like shape.
    Go,
}

impl Load {
    const ALL: [Self; 2] = [Self::C, Self::Go];

    fn label(self) -> &'static str {
        match self {
            Self::C => "C `lockbench` (b)",
            Self::Go => "Go `go_lockbench`, 20 µs outside (e)",
        }
    }

    /// BPF links or perf events that mark an attach to it as done (as in (b) and (e)).
    fn min_hooks(self) -> usize {
        match self {
            Self::C => 2,
            Self::Go => 3,
        }
    }
}

/// What watches the workload in one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Watch {
    Untraced,
    Attach,
    Serve,
}

impl Watch {
    const ALL: [Self; 3] = [Self::Untraced, Self::Attach, Self::Serve];

    fn label(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Attach => "tracer attach",
            Self::Serve => "tracer serve, scraped every 1 s",
        }
    }
}

/// What the scraper saw.
#[derive(Default)]
struct Scrapes {
    ok: usize,
    failed: Vec<String>,
    latency_ms: Vec<f64>,
    /// Size of the last exposition, bytes.
    bytes: usize,
}

/// Fetches `/metrics` every `every` on a thread of its own until [`Scraper::finish`].
struct Scraper {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Scrapes>,
}

impl Scraper {
    fn start(port: u16, every: Duration) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            let mut seen = Scrapes::default();
            loop {
                let started = Instant::now();
                match http_get(port, "/metrics") {
                    Ok((200, body)) => {
                        seen.ok += 1;
                        seen.latency_ms.push(started.elapsed().as_secs_f64() * 1e3);
                        seen.bytes = body.len();
                    }
                    Ok((status, _)) => seen.failed.push(format!("HTTP {status}")),
                    Err(err) => seen.failed.push(format!("{err:#}")),
                }
                let left = every.saturating_sub(started.elapsed());
                if !matches!(
                    stopped.recv_timeout(left),
                    Err(mpsc::RecvTimeoutError::Timeout)
                ) {
                    return seen;
                }
            }
        });
        Self { stop, thread }
    }

    fn finish(self) -> Scrapes {
        drop(self.stop);
        self.thread.join().unwrap_or_default()
    }
}

/// `GET path` on `127.0.0.1:port` over a connection of its own: status and body.
fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .context("sending the request")?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .context("reading the response")?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the response's headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status in the response")?;
    Ok((status, raw[split + 4..].to_vec()))
}

/// The value of the first series `name{…}` (or `name`) in an exposition whose labels
/// include every `pairs` entry.
fn metric(text: &str, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            pairs
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A field of `/proc/PID/status` given in kB (`VmRSS`, `VmHWM`).
pub(super) fn status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// kB (KiB, as `/proc` counts them) in MB of 10^6 bytes.
#[expect(clippy::cast_precision_loss, reason = "a process's memory in KiB")]
pub(super) fn mb(kb: u64) -> f64 {
    kb as f64 * 1024.0 / 1e6
}

/// `tracer serve --pid PID` on a free loopback port, once it traces the target: its
/// descriptors hold the hooks and have been still (as for `tracer attach`), and its own
/// `/metrics` says the target is attached (the session answered from its loop).
fn start_serve(tools: &Tools, pid: u32, min_hooks: usize) -> anyhow::Result<(Proc, u16)> {
    start_serve_with(tools, &[pid], min_hooks)
}

/// Starts `tracer serve --pid P` for each of `pids` and waits until its `/metrics` shows
/// every one attached.
pub(super) fn start_serve_pids(tools: &Tools, pids: &[u32]) -> anyhow::Result<(Proc, u16)> {
    start_serve_with(tools, pids, pids.len())
}

fn start_serve_with(tools: &Tools, pids: &[u32], min_hooks: usize) -> anyhow::Result<(Proc, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free local port")?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new(&tools.tracer);
    command.arg("serve");
    for pid in pids {
        command.args(["--pid", &pid.to_string()]);
    }
    let mut proc = Proc::spawn("tracer serve", command.args(["--listen", &listen]))?;
    wait_attached(&mut proc, min_hooks)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((200, body)) = http_get(port, "/metrics") {
            let text = String::from_utf8_lossy(&body);
            let attached = |pid: &u32| {
                metric(
                    &text,
                    "tracer_target_attached",
                    &[("pid", &pid.to_string())],
                ) == Some(1.0)
            };
            if pids.iter().all(attached) {
                return Ok((proc, port));
            }
        }
        if Instant::now() > deadline {
            bail!("tracer serve: /metrics never showed processes {pids:?} attached");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERMs the serve and checks that it exits 0; returns its stdout.
pub(super) fn stop_serve(serve: &mut Proc) -> anyhow::Result<Vec<String>> {
    let status = serve.stop(libc::SIGTERM, STOP_LIMIT)?;
    let lines = serve.remaining_lines();
    if !status.success() {
        let err = serve.stderr_text();
        bail!("tracer serve failed ({status}): {}", err.trim());
    }
    Ok(lines)
}

/// What a serve window measured besides the throughput.
struct ServeWindow {
    scrapes: Scrapes,
    rss_kb: u64,
    hwm_kb: u64,
    /// The same once the serve answered a contention profile after the window.
    profiled_rss_kb: u64,
    profiled_hwm_kb: u64,
    /// From the target's NDJSON summary, written on SIGTERM.
    dropped: Option<u64>,
}

/// One window on a running workload: start the watch and wait until it has attached,
/// read the count, wait `seconds` (scraping the serve meanwhile), read it again, stop the
/// watch. Returns lock/unlock pairs per second, and for the serve what it measured.
fn window(
    tools: &Tools,
    workload: &mut Workload,
    (load, watch): (Load, Watch),
    seconds: f64,
) -> anyhow::Result<(f64, Option<ServeWindow>)> {
    let pid = workload.pid();
    let mut attach = None;
    let mut serve = None;
    match watch {
        Watch::Untraced => {}
        Watch::Attach => {
            let mut proc = Proc::spawn(
                watch.label(),
                &mut json_attach(tools, &pid.to_string(), observer_secs(seconds)),
            )?;
            wait_attached(&mut proc, load.min_hooks())?;
            attach = Some(proc);
        }
        Watch::Serve => {
            let (proc, port) = start_serve(tools, pid, load.min_hooks())?;
            serve = Some((proc, port, Scraper::start(port, SCRAPE_EVERY)));
        }
    }
    let seconds = match &serve {
        Some((_, port, _)) => {
            thread::sleep(SERVE_SETTLE);
            let factor = serve_duty_factor(*port)?;
            let cycle = DUTY_SLICE_SECONDS * factor;
            if factor > 1.0 {
                (seconds / cycle).ceil() * cycle
            } else {
                seconds
            }
        }
        None if watch == Watch::Untraced => seconds,
        None => {
            thread::sleep(SETTLE);
            seconds
        }
    };
    let start = workload.mark()?;
    thread::sleep(Duration::from_secs_f64(seconds));
    let end = workload.mark()?;
    #[expect(clippy::cast_precision_loss, reason = "counts and ns far below 2^52")]
    let rate = end.ops.saturating_sub(start.ops) as f64
        / (end.at_ns.saturating_sub(start.at_ns) as f64 / 1e9);
    if let Some(mut proc) = attach {
        let status = proc.stop(libc::SIGINT, STOP_LIMIT)?;
        thread::sleep(AFTER_STOP);
        if !status.success() {
            let err = proc.stderr_text();
            bail!("{} failed ({status}): {}", watch.label(), err.trim());
        }
    }
    let Some((mut proc, port, running)) = serve else {
        return Ok((rate, None));
    };
    let scrapes = running.finish();
    let (rss_kb, hwm_kb) = (
        status_kb(proc.pid(), "VmRSS")?,
        status_kb(proc.pid(), "VmHWM")?,
    );
    // Outside the window: what answering a profile (naming every sampled frame) costs.
    let (status, _) = http_get(
        port,
        &format!("/debug/pprof/contention?seconds={PROFILE_SECONDS}"),
    )
    .context("fetching a contention profile")?;
    if status != 200 {
        bail!("tracer serve: the contention profile failed (HTTP {status})");
    }
    let (profiled_rss_kb, profiled_hwm_kb) = (
        status_kb(proc.pid(), "VmRSS")?,
        status_kb(proc.pid(), "VmHWM")?,
    );
    let lines = stop_serve(&mut proc)?;
    thread::sleep(AFTER_STOP);
    let dropped = json_summary(&lines, "tracer serve")
        .ok()
        .and_then(|s| s["dropped"].as_u64());
    Ok((
        rate,
        Some(ServeWindow {
            scrapes,
            rss_kb,
            hwm_kb,
            profiled_rss_kb,
            profiled_hwm_kb,
            dropped,
        }),
    ))
}

/// The duty cycle's factor of the serve's `sched_switch` hook, from its `/metrics`.
fn serve_duty_factor(port: u16) -> anyhow::Result<f64> {
    let (status, body) = http_get(port, "/metrics").context("fetching /metrics")?;
    if status != 200 {
        bail!("tracer serve: /metrics failed (HTTP {status})");
    }
    metric(
        &String::from_utf8_lossy(&body),
        "tracer_sched_switch_duty_factor",
        &[],
    )
    .context("tracer serve: no tracer_sched_switch_duty_factor in /metrics")
}

/// Every window's throughput, by workload and watch, keyed by round.
type Rates = BTreeMap<(Load, Watch), BTreeMap<usize, f64>>;

/// The throughput rounds' results.
struct Rounds {
    rates: Rates,
    serve: Vec<(Load, ServeWindow)>,
    failures: Vec<String>,
}

fn throughput_rounds(tools: &Tools, opts: &Options, go: &Path) -> anyhow::Result<Rounds> {
    let mut out = Rounds {
        rates: BTreeMap::new(),
        serve: Vec::new(),
        failures: Vec::new(),
    };
    for round in 0..opts.rounds {
        for load in Load::ALL {
            let mut workload = match load {
                Load::C => Workload::start(tools).context("starting lockbench")?,
                Load::Go => super::go::start_workload(go, super::go::OUTSIDE_US[1])?,
            };
            for i in 0..Watch::ALL.len() {
                let watch = Watch::ALL[(i + round) % Watch::ALL.len()];
                match window(tools, &mut workload, (load, watch), opts.seconds) {
                    Ok((rate, serve)) => {
                        let extra = serve.as_ref().map_or_else(String::new, |s| {
                            format!(
                                ", {} scrapes ({} failed), RSS {:.1} MB",
                                s.scrapes.ok,
                                s.scrapes.failed.len(),
                                mb(s.rss_kb)
                            )
                        });
                        eprintln!(
                            "bench (i): round {}/{}: {:<38} {:<32} {:>9} ops/s{extra}",
                            round + 1,
                            opts.rounds,
                            load.label(),
                            watch.label(),
                            si(rate)
                        );
                        out.rates
                            .entry((load, watch))
                            .or_default()
                            .insert(round, rate);
                        out.serve.extend(serve.map(|s| (load, s)));
                    }
                    Err(err) => {
                        if watch == Watch::Untraced {
                            return Err(err.context("the untraced baseline window failed"));
                        }
                        let msg = format!("{}, {}: {err:#}", load.label(), watch.label());
                        eprintln!(
                            "bench (i): round {}/{}: FAILED: {msg}",
                            round + 1,
                            opts.rounds
                        );
                        out.failures.push(msg);
                    }
                }
            }
            workload.finish()?;
        }
    }
    Ok(out)
}

/// The quiet run's results.
struct Quiet {
    ms_per_s: Vec<f64>,
    rss_start_kb: u64,
    rss_end_kb: u64,
    hwm_kb: u64,
    /// Once the target exited and its session ended.
    rss_after_exit_kb: u64,
    served: Duration,
    scrapes_failed: Vec<String>,
}

/// `tracer serve --pid` on lockbench blocked before its start (one thread asleep in
/// `read`, no events), scraped every [`QUIET_SCRAPE_EVERY`]; the serve's CPU over each
/// interval, `intervals` of them.
fn quiet_run(tools: &Tools, intervals: usize) -> anyhow::Result<Quiet> {
    let mut target = Proc::spawn(
        "lockbench",
        Command::new(&tools.lockbench).args(["--wait-stdin", "--threads", "4", "--seconds", "1"]),
    )?;
    target.wait_line(Duration::from_secs(10), |l| l.starts_with("ready pid="))?;
    let (mut serve, port) = start_serve(tools, target.pid(), 2)?;
    let began = Instant::now();
    let rss_start_kb = status_kb(serve.pid(), "VmRSS")?;
    let mut ms_per_s = Vec::new();
    let mut scrapes_failed = Vec::new();
    let (mut before, mut at) = (cpu_ns(serve.pid())?, Instant::now());
    for _ in 0..intervals {
        match http_get(port, "/metrics") {
            Ok((200, _)) => {}
            Ok((status, _)) => scrapes_failed.push(format!("HTTP {status}")),
            Err(err) => scrapes_failed.push(format!("{err:#}")),
        }
        thread::sleep((at + QUIET_SCRAPE_EVERY).saturating_duration_since(Instant::now()));
        let (after, now) = (cpu_ns(serve.pid())?, Instant::now());
        #[expect(clippy::cast_precision_loss, reason = "ns of CPU time")]
        ms_per_s.push(after.saturating_sub(before) as f64 / 1e6 / (now - at).as_secs_f64());
        (before, at) = (after, now);
    }
    let rss_end_kb = status_kb(serve.pid(), "VmRSS")?;
    let hwm_kb = status_kb(serve.pid(), "VmHWM")?;
    let served = began.elapsed();
    // The target goes away; the serve stays, as for a service that stopped.
    target.stop(libc::SIGKILL, Duration::from_secs(5))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok((200, body)) = http_get(port, "/metrics")
            && metric(&String::from_utf8_lossy(&body), "tracer_targets", &[]) == Some(0.0)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("tracer serve: still tracing 10 s after its target was killed");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let rss_after_exit_kb = status_kb(serve.pid(), "VmRSS")?;
    stop_serve(&mut serve)?;
    Ok(Quiet {
        ms_per_s,
        rss_start_kb,
        rss_end_kb,
        hwm_kb,
        rss_after_exit_kb,
        served,
        scrapes_failed,
    })
}

/// Memory with [`SEVERAL_TARGETS`] C workloads served at once: `VmRSS` and `VmHWM` in kB
/// once the serve has traced them for `seconds` and answered one contention profile.
fn several_targets(tools: &Tools, seconds: f64) -> anyhow::Result<(u64, u64)> {
    let mut workloads = (0..SEVERAL_TARGETS)
        .map(|_| Workload::start(tools).context("starting lockbench"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pids: Vec<u32> = workloads.iter().map(Workload::pid).collect();
    let (mut serve, port) = start_serve_pids(tools, &pids)?;
    thread::sleep(Duration::from_secs_f64(seconds));
    let (status, body) = http_get(
        port,
        &format!("/debug/pprof/contention?seconds={PROFILE_SECONDS}"),
    )
    .context("fetching a contention profile")?;
    if status != 200 || body.is_empty() {
        bail!("tracer serve: the contention profile failed (HTTP {status})");
    }
    let kb = (
        status_kb(serve.pid(), "VmRSS")?,
        status_kb(serve.pid(), "VmHWM")?,
    );
    stop_serve(&mut serve)?;
    for workload in workloads.drain(..) {
        workload.finish()?;
    }
    Ok(kb)
}

/// The throughput table: per workload and watch, the median throughput and the paired
/// ratio to the untraced window of the same round, the serve's judged against its goal.
fn throughput_table(s: &mut String, rates: &Rates) {
    let _ = writeln!(
        s,
        "| workload | watch | ops/s (median) | paired ratio to untraced | 95% interval | min – max | goal | verdict |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---|---|---|---|");
    let empty = BTreeMap::new();
    for load in Load::ALL {
        let by_round = |watch| rates.get(&(load, watch)).unwrap_or(&empty);
        let base = by_round(Watch::Untraced);
        for watch in Watch::ALL {
            let values: Vec<f64> = by_round(watch).values().copied().collect();
            let ops = si(median(&values));
            if watch == Watch::Untraced {
                let _ = writeln!(
                    s,
                    "| {} | {} | {ops} ({} – {}) | 1 | | | | |",
                    load.label(),
                    watch.label(),
                    si(min(&values)),
                    si(max(&values))
                );
                continue;
            }
            let Some(paired) = paired_ratio(by_round(watch), base) else {
                let _ = writeln!(
                    s,
                    "| {} | {} | {ops} | no data | | | | |",
                    load.label(),
                    watch.label()
                );
                continue;
            };
            let ratios: Vec<f64> = by_round(watch)
                .iter()
                .filter_map(|(round, &v)| base.get(round).map(|&b| v / b))
                .collect();
            let (goal, verdict) = if watch == Watch::Serve {
                paired.goal_columns(THROUGHPUT_GOAL)
            } else {
                ("none (see (b), (e))".to_owned(), String::new())
            };
            let _ = writeln!(
                s,
                "| {} | {} | {ops} | {:.3} | {} | {:.3} – {:.3} | {goal} | {verdict} |",
                load.label(),
                watch.label(),
                paired.median,
                paired.ci_text(),
                min(&ratios),
                max(&ratios),
            );
        }
    }
    s.push('\n');
    for load in Load::ALL {
        let by_round = |watch| rates.get(&(load, watch)).unwrap_or(&empty);
        if let Some(r) = paired_ratio(by_round(Watch::Serve), by_round(Watch::Attach)) {
            let _ = writeln!(
                s,
                "- {}: serve ÷ attach, round by round: median {:.3} (95% interval {})",
                load.label(),
                r.median,
                r.ci_text()
            );
        }
    }
}

/// The scrapes of the serve windows, per workload: how many, how long they took.
fn scrape_notes(s: &mut String, serve: &[(Load, ServeWindow)]) {
    for load in Load::ALL {
        let windows: Vec<&ServeWindow> = serve
            .iter()
            .filter(|(l, _)| *l == load)
            .map(|(_, w)| w)
            .collect();
        if windows.is_empty() {
            continue;
        }
        let ok: usize = windows.iter().map(|w| w.scrapes.ok).sum();
        let failed: Vec<&String> = windows.iter().flat_map(|w| &w.scrapes.failed).collect();
        let latency: Vec<f64> = windows
            .iter()
            .flat_map(|w| w.scrapes.latency_ms.iter().copied())
            .collect();
        let dropped: Option<u64> = windows.iter().map(|w| w.dropped).sum();
        let bytes = windows.last().map_or(0, |w| w.scrapes.bytes);
        let _ = writeln!(
            s,
            "- {}: {ok} scrapes, {} failed{}; a scrape took {:.1} ms (median, max {:.1} ms), {bytes} bytes of \
             exposition; records dropped (the target's summary): {}",
            load.label(),
            failed.len(),
            failed
                .first()
                .map_or_else(String::new, |f| format!(" (first: {f})")),
            median(&latency),
            max(&latency),
            dropped.map_or_else(|| "unknown".to_owned(), |d| d.to_string()),
        );
    }
    s.push('\n');
}

/// The markdown of part (i).
pub(super) fn section(tools: &Tools, opts: &Options) -> anyhow::Result<String> {
    let go = super::go::build_workload(&tools.root)?;
    let idle_before = idle_note("before the serve's throughput rounds");
    let rounds = throughput_rounds(tools, opts, &go)?;
    let idle_after = idle_note("after them");
    let quiet = quiet_run(tools, opts.rounds);
    let several: Vec<anyhow::Result<(u64, u64)>> = (0..SEVERAL_TARGETS_RUNS)
        .map(|_| several_targets(tools, opts.seconds))
        .collect();
    let mut s = String::new();
    let _ = writeln!(s, "## (i) `tracer serve`: throughput, quiet CPU, memory\n");
    let _ = writeln!(
        s,
        "Throughput: per round and workload one process, on which each watch takes a {} s window in turn \
         (starting watch rotating), {} rounds: untraced, `tracer attach`, and `tracer serve --pid PID` \
         (default mode) with a scraper fetching `/metrics` every {} s through the window (HTTP/1.1 GET, a \
         connection each). An observer attaches (descriptors still for 400 ms; for the serve also its own \
         `/metrics` showing the target attached) and runs {} s more before its window opens (a sidecar runs \
         for weeks: the window measures it as it runs), and stops after it; the next window starts {} ms \
         after that stop. The serve runs {} s before its window (past its `sched_switch` hook's first \
         slice and the detach after it), and its window lasts whole cycles of the hook's duty cycle \
         (`tracer_sched_switch_duty_factor` × {} s, at least the window above), so that it holds the \
         hook's attached and detached times in their shares whatever the phase it opens at. Paired ratio: \
         median over rounds of the window's throughput ÷ the untraced window's of the same process; 95% \
         interval of that median (from 6 rounds). Goal: the serve keeps ≥ {THROUGHPUT_GOAL}× of the untraced \
         throughput; \"met\" only if the whole interval is at or above it.\n",
        opts.seconds,
        opts.rounds,
        SCRAPE_EVERY.as_secs(),
        SETTLE.as_secs(),
        AFTER_STOP.as_millis(),
        SERVE_SETTLE.as_secs(),
        DUTY_SLICE_SECONDS
    );
    let _ = writeln!(s, "- {idle_before}\n- {idle_after}\n");
    throughput_table(&mut s, &rounds.rates);
    scrape_notes(&mut s, &rounds.serve);
    for failure in &rounds.failures {
        let _ = writeln!(s, "- failed window: {failure}");
    }
    if !rounds.failures.is_empty() {
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "Quiet target: `tracer serve --pid` on lockbench blocked before its start (one thread asleep, no \
         events), scraped every {} s; the serve's CPU time (sum of `/proc/PID/task/*/schedstat`) over each \
         {} s interval (one scrape in each), {} intervals.\n",
        QUIET_SCRAPE_EVERY.as_secs(),
        QUIET_SCRAPE_EVERY.as_secs(),
        opts.rounds
    );
    let mut memory_rows: Vec<(String, Vec<f64>)> = Vec::new();
    for load in Load::ALL {
        let windows = rounds.serve.iter().filter(|(l, _)| *l == load);
        let pick = |f: fn(&ServeWindow) -> u64| -> Vec<f64> {
            windows.clone().map(|(_, w)| mb(f(w))).collect()
        };
        memory_rows.extend([
            (
                format!("VmRSS at the end of a serve window, {}", load.label()),
                pick(|w| w.rss_kb),
            ),
            (
                format!("VmHWM at the end of a serve window, {}", load.label()),
                pick(|w| w.hwm_kb),
            ),
            (
                format!("VmRSS after one contention profile, {}", load.label()),
                pick(|w| w.profiled_rss_kb),
            ),
            (
                format!("VmHWM after one contention profile, {}", load.label()),
                pick(|w| w.profiled_hwm_kb),
            ),
        ]);
    }
    match &quiet {
        Ok(q) => {
            worst_case_table(
                &mut s,
                &[("serve CPU per second, quiet target", &q.ms_per_s)],
                (QUIET_GOAL_MS_PER_S, "ms/s", 2),
                &q.scrapes_failed,
            );
            let served = q.served.as_secs();
            memory_rows.push((
                format!("VmRSS, quiet target, after {served} s served"),
                vec![mb(q.rss_end_kb)],
            ));
            memory_rows.push((
                format!("VmHWM, quiet target, after {served} s served"),
                vec![mb(q.hwm_kb)],
            ));
        }
        Err(err) => {
            let _ = writeln!(s, "Quiet target: FAILED: {err:#}\n");
        }
    }
    let several_kb: Vec<(u64, u64)> = several
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .copied()
        .collect();
    if !several_kb.is_empty() {
        memory_rows.push((
            format!("VmRSS after one contention profile, {SEVERAL_TARGETS} C `lockbench` processes served at once"),
            several_kb.iter().map(|&(rss, _)| mb(rss)).collect(),
        ));
        memory_rows.push((
            format!("VmHWM after one contention profile, {SEVERAL_TARGETS} C `lockbench` processes served at once"),
            several_kb.iter().map(|&(_, hwm)| mb(hwm)).collect(),
        ));
    }
    let _ = writeln!(
        s,
        "Memory: the serve's `VmRSS` (resident now) and `VmHWM` (its high-water mark since it started, the \
         attach included) from `/proc/PID/status`, read at the end of each serve window above (after its \
         settling and its whole cycles of tracing and scraping), again once it answered `/debug/pprof/contention?seconds={PROFILE_SECONDS}` \
         (outside the window), and at the end of the quiet run; and in {SEVERAL_TARGETS_RUNS} runs of one \
         `tracer serve --pid A --pid B …` on {SEVERAL_TARGETS} C workloads (b) at once, after {} s and one \
         profile of them all; MB of 10^6 bytes.\n",
        opts.seconds
    );
    for err in several.iter().filter_map(|r| r.as_ref().err()) {
        let _ = writeln!(s, "- several targets: FAILED: {err:#}");
    }
    let rows: Vec<(&str, &[f64])> = memory_rows
        .iter()
        .map(|(name, values)| (name.as_str(), values.as_slice()))
        .collect();
    worst_case_table(&mut s, &rows, (MEMORY_GOAL_MB, "MB", 1), &[]);
    if let Ok(q) = &quiet {
        let _ = writeln!(
            s,
            "- quiet target: VmRSS {:.1} MB once attached, {:.1} MB after {} s; {:.1} MB once the target \
             exited and its session ended (the serve still running)\n",
            mb(q.rss_start_kb),
            mb(q.rss_end_kb),
            q.served.as_secs(),
            mb(q.rss_after_exit_kb)
        );
    }
    Ok(s)
}
