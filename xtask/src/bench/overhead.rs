//! Parts (b) and (c): the slowdown `tracer attach` (default and `--holds`) inflicts on a
//! lock-heavy C workload, and the floors under it (empty programs on the same hooks,
//! an equivalent bpftrace script).
//!
//! A round is one workload process on which every configuration takes a window in turn
//! (the order rotating from round to round); a configuration's ratio to untraced is taken
//! within each round and summarised by its median and that median's 95% interval.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

use super::{
    ATTACH_QUIET, CRITICAL_SECTION_US, CpuTimes, DEFAULT_MODE_GOAL, OUTSIDE_US, Options, Part,
    Proc, Tools, WORKLOAD_THREADS, json_attach, json_summary, key_values, max, median, min,
    observer_failure, observer_secs, si, wait_attached,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Config {
    Untraced,
    Attach,
    AttachHolds,
    Floor,
    FloorUprobes,
    Bpftrace,
}

impl Config {
    fn label(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::Attach => "tracer attach",
            Self::AttachHolds => "tracer attach --holds",
            Self::Floor => "floor: empty sched_switch/sys_exit",
            Self::FloorUprobes => "floor: + empty lock uprobes",
            Self::Bpftrace => "bpftrace futex_wait.bt",
        }
    }

    fn part(self) -> &'static str {
        match self {
            Self::Untraced => "-",
            Self::Attach | Self::AttachHolds => "b",
            Self::Floor | Self::FloorUprobes | Self::Bpftrace => "c",
        }
    }

    /// What the run needs besides the workload: a command, and how many BPF links or
    /// perf events mark its attach as done.
    fn observer(self, tools: &Tools, pid: u32, seconds: f64) -> Option<(Command, usize)> {
        // Outlive the window: every observer is stopped with SIGINT once it closes.
        let secs = observer_secs(seconds);
        let duration = secs.to_string();
        let pid = pid.to_string();
        let tracer = |args: &[&str]| {
            let mut cmd = Command::new(&tools.tracer);
            cmd.args(args);
            cmd
        };
        Some(match self {
            Self::Untraced => return None,
            Self::Attach => (json_attach(tools, &pid, secs), 2),
            Self::AttachHolds => {
                let mut cmd = json_attach(tools, &pid, secs);
                cmd.arg("--holds");
                (cmd, 3)
            }
            Self::Floor => (
                tracer(&["floor", "--pid", &pid, "--duration", &duration]),
                2,
            ),
            Self::FloorUprobes => (
                tracer(&["floor", "--pid", &pid, "--duration", &duration, "--uprobes"]),
                3,
            ),
            Self::Bpftrace => {
                let mut cmd = Command::new("bpftrace");
                cmd.arg(tools.root.join("xtask/bench/futex_wait.bt"))
                    .arg(&pid);
                (cmd, 2)
            }
        })
    }
}

/// One overhead run's outcome.
#[derive(Clone, Copy, Default)]
struct RunResult {
    ops_per_sec: f64,
    /// The host's steal time over the window, as a share of all CPU time. On a VM the
    /// hypervisor takes the CPUs away now and then; when it preempts the thread holding
    /// the mutex, every other thread waits, so the throughput falls by more than the
    /// stolen share. Kept so that a configuration that drew an unlucky stretch shows it.
    steal: Option<f64>,
    /// From the tracer's JSON summary (attach runs, over its own run time) or
    /// bpftrace's `@waits` and `@wakes`.
    events_per_sec: Option<f64>,
    wakes_per_sec: Option<f64>,
    dropped: Option<u64>,
    /// BPF run time of the observer's programs per lock/unlock pair (cost runs only).
    bpf_ns_per_op: Option<f64>,
}

/// BPF run time, in ns, of the programs a process holds descriptors to: the sum of the
/// `run_time_ns` lines in `/proc/PID/fdinfo` of its program descriptors (counted only
/// while `kernel.bpf_stats_enabled` is 1).
fn bpf_run_time_ns(pid: u32) -> u64 {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| fs::read_to_string(entry.path()).ok())
        .filter(|info| info.lines().any(|l| l.starts_with("prog_id:")))
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("run_time_ns:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Sets `kernel.bpf_stats_enabled` for its lifetime (restoring the old value).
pub(super) struct BpfStats {
    previous: String,
}

impl BpfStats {
    const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";

    /// On, for the cost windows.
    fn enable() -> anyhow::Result<Self> {
        Self::set("1")
    }

    /// Off for the whole bench, if something left it on: with it on, every run of every
    /// BPF program on the host reads the clock twice more, which the throughput windows
    /// would count against the tracer. `Ok(None)` when it was off already.
    pub(super) fn disable_if_on() -> anyhow::Result<Option<Self>> {
        let now =
            fs::read_to_string(Self::PATH).with_context(|| format!("reading {}", Self::PATH))?;
        if now.trim() == "0" {
            return Ok(None);
        }
        Self::set("0").map(Some)
    }

    fn set(value: &str) -> anyhow::Result<Self> {
        let previous =
            fs::read_to_string(Self::PATH).with_context(|| format!("reading {}", Self::PATH))?;
        fs::write(Self::PATH, value).with_context(|| format!("writing {}", Self::PATH))?;
        Ok(Self { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(Self::PATH, self.previous.trim());
    }
}

/// A lockbench process started with `--control` (or `go_lockbench`): its
/// threads run from the start until its stdin closes, and [`Workload::mark`] reads how
/// many lock/unlock pairs they have made so far. Every configuration of a round takes
/// its turn on one such process, so a round's ratios compare windows seconds apart in
/// the same process: differences between processes (thread placement, which the
/// scheduler settles once) stay out.
pub(super) struct Workload {
    proc: Proc,
}

/// A workload's running count of lock/unlock pairs, and when it was read.
#[derive(Clone, Copy)]
pub(super) struct Mark {
    pub(super) ops: u64,
    pub(super) at_ns: u64,
}

impl Workload {
    pub(super) fn start(tools: &Tools) -> anyhow::Result<Self> {
        Self::spawn(
            "lockbench",
            Command::new(&tools.lockbench).args([
                "--control",
                "--threads",
                &WORKLOAD_THREADS.to_string(),
                "--cs-us",
                &CRITICAL_SECTION_US.to_string(),
                "--out-us",
                &OUTSIDE_US.to_string(),
            ]),
        )
    }

    /// Starts `cmd`, a workload in control mode, and waits for its `ready pid=` line.
    pub(super) fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Self> {
        let mut proc = Proc::spawn(name, cmd)?;
        proc.wait_line(Duration::from_secs(10), |l| l.starts_with("ready pid="))?;
        Ok(Self { proc })
    }

    pub(super) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub(super) fn mark(&mut self) -> anyhow::Result<Mark> {
        self.proc.send_line("mark")?;
        let line = self
            .proc
            .wait_line(Duration::from_secs(5), |l| l.starts_with("mark "))?;
        let fields = key_values(&line.text.replace(' ', "\n"));
        let field = |name: &str| -> anyhow::Result<u64> {
            fields
                .get(name)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{}: no {name} in {:?}", self.proc.name, line.text))
        };
        Ok(Mark {
            ops: field("ops")?,
            at_ns: field("t_ns")?,
        })
    }

    /// Closes its stdin, which ends the loop, and checks that it exited cleanly.
    pub(super) fn finish(mut self) -> anyhow::Result<()> {
        self.proc.close_stdin();
        let name = self.proc.name.clone();
        let status = self
            .proc
            .wait_exit(Duration::from_secs(10))?
            .with_context(|| format!("{name} still running 10 s after its stdin closed"))?;
        if !status.success() {
            let err = self.proc.stderr_text();
            bail!("{name} failed ({status}): {}", err.trim());
        }
        Ok(())
    }
}

/// One configuration's window on a running workload: start its observer and wait until
/// it has attached, read the workload's count, wait `seconds`, read it again, stop the
/// observer. With `bpf_cost`, the BPF run time of the observer's programs over the
/// window is read from its descriptors too (this needs `kernel.bpf_stats_enabled`,
/// which slows every program, so such windows are kept out of the throughput medians).
fn window(
    tools: &Tools,
    workload: &mut Workload,
    config: Config,
    seconds: f64,
    bpf_cost: bool,
) -> anyhow::Result<RunResult> {
    let mut observer = match config.observer(tools, workload.pid(), seconds) {
        Some((mut cmd, min_hooks)) => {
            let mut proc = Proc::spawn(config.label(), &mut cmd)?;
            wait_attached(&mut proc, min_hooks)?;
            Some(proc)
        }
        None => None,
    };
    // wait_attached returns once the observer's descriptors have been still for
    // ATTACH_QUIET: its hooks went live that long ago.
    let attached = Instant::now().checked_sub(ATTACH_QUIET);
    let bpf_before = observer.as_ref().map(|o| bpf_run_time_ns(o.pid()));
    let cpu_before = CpuTimes::now();
    let start = workload.mark()?;
    thread::sleep(Duration::from_secs_f64(seconds));
    let end = workload.mark()?;
    let cpu_after = CpuTimes::now();
    let bpf_spent = observer
        .as_ref()
        .zip(bpf_before)
        .map(|(o, before)| bpf_run_time_ns(o.pid()).saturating_sub(before));

    let ops = end.ops.saturating_sub(start.ops);
    #[allow(clippy::cast_precision_loss)]
    let (ops_f, window_s) = (
        ops as f64,
        end.at_ns.saturating_sub(start.at_ns) as f64 / 1e9,
    );
    let mut result = RunResult {
        ops_per_sec: ops_f / window_s,
        steal: cpu_before
            .zip(cpu_after)
            .and_then(|(before, after)| after.share_since(before, |t| t.steal)),
        ..RunResult::default()
    };
    if bpf_cost && ops > 0 {
        #[allow(clippy::cast_precision_loss)]
        {
            result.bpf_ns_per_op = bpf_spent.map(|ns| ns as f64 / ops_f);
        }
    }
    let Some(observer) = observer.as_mut() else {
        return Ok(result);
    };
    let status = observer.stop(libc::SIGINT, Duration::from_secs(10))?;
    let out = observer.remaining_lines();
    if !status.success() {
        let err = observer.stderr_text();
        bail!("{}", observer_failure(config.label(), status, &err, &out));
    }
    match config {
        Config::Attach | Config::AttachHolds => {
            let summary = json_summary(&out, config.label())?;
            #[allow(clippy::cast_precision_loss)]
            let traced_s = summary["duration_ns"].as_u64().map(|ns| ns as f64 / 1e9);
            let per_sec = |v: &serde_json::Value| {
                #[allow(clippy::cast_precision_loss)]
                v.as_u64().zip(traced_s).map(|(n, s)| n as f64 / s)
            };
            result.events_per_sec = per_sec(&summary["events"]);
            result.wakes_per_sec = per_sec(&summary["futex_wakes"]);
            result.dropped = summary["dropped"].as_u64();
        }
        Config::Bpftrace => {
            let count = |name: &str| {
                out.iter().find_map(|l| {
                    l.strip_prefix(name)
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
            };
            // bpftrace counts from its attach to its exit.
            let live_s = attached.map_or(window_s, |at| at.elapsed().as_secs_f64());
            #[allow(clippy::cast_precision_loss)]
            let per_sec = |n: u64| n as f64 / live_s;
            result.events_per_sec = count("@waits:").map(per_sec);
            result.wakes_per_sec = count("@wakes:").map(per_sec);
        }
        _ => {}
    }
    Ok(result)
}

pub(super) fn section(tools: &Tools, opts: &Options) -> anyhow::Result<String> {
    let mut configs = vec![Config::Untraced];
    if opts.wants(Part::Overhead) {
        configs.extend([Config::Attach, Config::AttachHolds]);
    }
    if opts.wants(Part::Floors) {
        configs.extend([Config::Floor, Config::FloorUprobes, Config::Bpftrace]);
    }
    let mut results: BTreeMap<Config, Vec<RunResult>> = BTreeMap::new();
    // Each run's round, in the order of `results`: ratios are also taken within a round.
    let mut rounds_of: BTreeMap<Config, Vec<usize>> = BTreeMap::new();
    let mut failures: BTreeMap<Config, Vec<String>> = BTreeMap::new();
    for round in 0..opts.rounds {
        let mut workload = Workload::start(tools).context("starting lockbench")?;
        for i in 0..configs.len() {
            // Rotate the order each round so no configuration always runs first or
            // right after the most expensive one.
            let config = configs[(i + round) % configs.len()];
            match window(tools, &mut workload, config, opts.seconds, false) {
                Ok(r) => {
                    eprintln!(
                        "bench (b/c): round {}/{}: {:<34} {:>9} ops/s{}{}{}",
                        round + 1,
                        opts.rounds,
                        config.label(),
                        si(r.ops_per_sec),
                        r.steal
                            .map_or_else(String::new, |s| format!(", steal {:.1}%", s * 100.0)),
                        r.events_per_sec
                            .map_or_else(String::new, |e| format!(", {} events/s", si(e))),
                        r.dropped
                            .map_or_else(String::new, |d| format!(", {d} dropped")),
                    );
                    results.entry(config).or_default().push(r);
                    rounds_of.entry(config).or_default().push(round);
                }
                Err(err) => {
                    let msg = format!("{err:#}");
                    eprintln!(
                        "bench (b/c): round {}/{}: {} FAILED: {msg}",
                        round + 1,
                        opts.rounds,
                        config.label()
                    );
                    if config == Config::Untraced {
                        return Err(err.context("the untraced baseline window failed"));
                    }
                    failures.entry(config).or_default().push(msg);
                }
            }
        }
        workload.finish()?;
    }
    let base = results
        .get(&Config::Untraced)
        .map(|r| median(&r.iter().map(|r| r.ops_per_sec).collect::<Vec<_>>()))
        .ok_or_else(|| anyhow!("no untraced run"))?;
    let costs = bpf_costs(tools, opts, &configs);
    let by_round = |config: Config| -> BTreeMap<usize, f64> {
        rounds_of
            .get(&config)
            .into_iter()
            .flatten()
            .zip(results.get(&config).into_iter().flatten())
            .map(|(&round, r)| (round, r.ops_per_sec))
            .collect()
    };
    let untraced = by_round(Config::Untraced);
    let paired: BTreeMap<Config, Paired> = configs
        .iter()
        .filter_map(|&c| paired_ratio(&by_round(c), &untraced).map(|r| (c, r)))
        .collect();
    let figures = Figures {
        base,
        costs,
        paired,
    };
    let mut table = overhead_table(opts, &configs, &results, &failures, &figures);
    for (traced, floor) in [
        (Config::Attach, Config::Floor),
        (Config::AttachHolds, Config::FloorUprobes),
    ] {
        if let Some(ratio) = paired_ratio(&by_round(traced), &by_round(floor)) {
            let _ = writeln!(
                table,
                "- {} ÷ {}, round by round: median {:.3}, 95% CI {}",
                traced.label(),
                floor.label(),
                ratio.median,
                ratio.ci_text()
            );
        }
    }
    if let Some(&ratio) = figures.paired.get(&Config::Attach) {
        let _ = writeln!(
            table,
            "- goal (b), default mode ≥ {DEFAULT_MODE_GOAL} × untraced, paired: median {:.3}, 95% CI {}: {}",
            ratio.median,
            ratio.ci_text(),
            ratio.verdict(DEFAULT_MODE_GOAL)
        );
    }
    table.push('\n');
    Ok(table)
}

/// Median over the rounds both ran in of `ops[round] / base[round]`, with its 95%
/// confidence interval when there are rounds enough: each ratio compares windows of one
/// process a few seconds apart, so drift of the machine's speed over an invocation
/// cancels out.
pub(super) fn paired_ratio(
    ops: &BTreeMap<usize, f64>,
    base: &BTreeMap<usize, f64>,
) -> Option<Paired> {
    let ratios: Vec<f64> = ops
        .iter()
        .filter_map(|(round, &v)| base.get(round).map(|&b| v / b))
        .collect();
    (!ratios.is_empty()).then(|| Paired {
        median: median(&ratios),
        ci95: median_ci95(&ratios),
    })
}

/// Median over the rounds both ran in of `values[round] − base[round]`, with its 95%
/// confidence interval when there are rounds enough: what one configuration adds to
/// another in a measure that is a cost (CPU per event, memory), paired by round as
/// [`paired_ratio`] pairs throughputs.
pub(super) fn paired_difference(
    values: &BTreeMap<usize, f64>,
    base: &BTreeMap<usize, f64>,
) -> Option<Paired> {
    let differences: Vec<f64> = values
        .iter()
        .filter_map(|(round, &v)| base.get(round).map(|&b| v - b))
        .collect();
    (!differences.is_empty()).then(|| Paired {
        median: median(&differences),
        ci95: median_ci95(&differences),
    })
}

/// A round-paired ratio (or difference): its median and, from 6 rounds on, a 95%
/// confidence interval of that median.
#[derive(Clone, Copy, Debug)]
pub(super) struct Paired {
    pub(super) median: f64,
    pub(super) ci95: Option<(f64, f64)>,
}

impl Paired {
    pub(super) fn ci_text(self) -> String {
        self.ci95
            .map_or_else(|| "–".to_owned(), |(lo, hi)| format!("{lo:.3} – {hi:.3}"))
    }

    /// Whether a goal of at least `goal` is met, missed or left open by this run.
    pub(super) fn verdict(self, goal: f64) -> &'static str {
        match self.ci95 {
            Some((lo, _)) if lo >= goal => "met: the whole interval is above it",
            Some((_, hi)) if hi < goal => "missed: the whole interval is below it",
            Some(_) => "not settled by this run: the interval contains it",
            None => "not settled by this run: too few rounds for an interval",
        }
    }

    /// Whether a goal of at most `goal` (a cost) is met, missed or left open by this run.
    pub(super) fn verdict_at_most(self, goal: f64) -> &'static str {
        match self.ci95 {
            Some((_, hi)) if hi <= goal => "met: the whole interval is below it",
            Some((lo, _)) if lo > goal => "missed: the whole interval is above it",
            Some(_) => "not settled by this run: the interval contains it",
            None => "not settled by this run: too few rounds for an interval",
        }
    }

    /// The goal and verdict columns for a goal of at most `goal` `unit`: `≤ goal unit`,
    /// and what the median and the interval say of it.
    pub(super) fn goal_columns_at_most(self, goal: f64, unit: &str) -> (String, String) {
        let median_says = if self.median <= goal {
            "median meets it"
        } else {
            "median misses it"
        };
        (
            format!("≤ {goal} {unit}"),
            format!("{median_says}; {}", self.verdict_at_most(goal)),
        )
    }

    /// The goal and verdict columns of a results table for a goal of at least `goal`:
    /// `≥ goal`, and what the median and the interval say of it.
    pub(super) fn goal_columns(self, goal: f64) -> (String, String) {
        let median_says = if self.median >= goal {
            "median meets it"
        } else {
            "median misses it"
        };
        (
            format!("≥ {goal}"),
            format!("{median_says}; {}", self.verdict(goal)),
        )
    }
}

/// A distribution-free 95% confidence interval for the median of `values`: the
/// order statistics `k` and `n + 1 − k` for the largest `k` with
/// `2 · P(Binomial(n, ½) < k) ≤ 0.05` (each value falls on either side of the true
/// median with probability ½, whatever the distribution). `None` below 6 values, where
/// even the full range covers the median with less than 95% probability.
pub(super) fn median_ci95(values: &[f64]) -> Option<(f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // P(Binomial(n, ½) = j) term by term, from ½ⁿ at j = 0.
    let mut term = (0..n).fold(1.0_f64, |p, _| p * 0.5);
    let mut below = 0.0_f64;
    let mut k = 0;
    for j in 0..n / 2 {
        below += term;
        if 2.0 * below > 0.05 {
            break;
        }
        k = j + 1;
        #[allow(clippy::cast_precision_loss)]
        {
            term = term * (n - j) as f64 / (j + 1) as f64;
        }
    }
    (k >= 1).then(|| (v[k - 1], v[n - k]))
}

/// Cost windows: BPF time per lock/unlock pair of each traced configuration, median of up
/// to three windows with `kernel.bpf_stats_enabled` on. Deterministic where throughput is not
/// (the workload's throughput swings between runs by ±15%). Empty when the stats cannot
/// be enabled.
fn bpf_costs(tools: &Tools, opts: &Options, configs: &[Config]) -> BTreeMap<Config, f64> {
    let mut costs = BTreeMap::new();
    let Ok(_stats) = BpfStats::enable() else {
        eprintln!("bench (b/c): kernel.bpf_stats_enabled cannot be set; no BPF cost column");
        return costs;
    };
    let mut per_op: BTreeMap<Config, Vec<f64>> = BTreeMap::new();
    for run in 0..opts.rounds.clamp(1, 3) {
        let Ok(mut workload) = Workload::start(tools) else {
            continue;
        };
        for i in 0..configs.len() {
            let config = configs[(i + run) % configs.len()];
            if config == Config::Untraced {
                continue;
            }
            if let Some(ns) = window(tools, &mut workload, config, opts.seconds, true)
                .ok()
                .and_then(|r| r.bpf_ns_per_op)
            {
                per_op.entry(config).or_default().push(ns);
            }
        }
        let _ = workload.finish();
    }
    for (config, values) in per_op {
        let cost = median(&values);
        eprintln!(
            "bench (b/c): BPF cost: {:<34} {cost:.0} ns per lock/unlock pair",
            config.label()
        );
        costs.insert(config, cost);
    }
    costs
}

/// The host's steal time over a configuration's windows: median and largest, in percent.
fn steal_text(runs: &[RunResult]) -> String {
    let steal: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.steal)
        .map(|s| s * 100.0)
        .collect();
    if steal.is_empty() {
        "–".to_owned()
    } else {
        format!("{:.1}% (max {:.1}%)", median(&steal), max(&steal))
    }
}

/// What parts b and c compare against: the untraced median, the BPF cost per
/// configuration and its round-paired ratio to untraced.
struct Figures {
    base: f64,
    costs: BTreeMap<Config, f64>,
    paired: BTreeMap<Config, Paired>,
}

/// What the columns of the (b)/(c) table mean.
const OVERHEAD_NOTES: &str = "\nTraced events/s: records the tracer analysed (futex wait starts and ends; with \
    --holds also acquire/release) per second it was attached, or bpftrace's `@waits`. Futex wakes are counted in \
    the kernel, no record each. Paired ratio: median over rounds of the window's throughput / the untraced \
    window's of the same round (the same process, seconds apart); its 95% CI is distribution-free (order \
    statistics of the paired ratios; none below 6 rounds). Slowdown = 1 − ratio. BPF ns per op: run time of the \
    observer's BPF programs (`run_time_ns` in `/proc/PID/fdinfo`, with `kernel.bpf_stats_enabled` on) over a \
    window, divided by the lock/unlock pairs made in it; median of up to 3 extra windows kept out of the \
    throughput figures, since the statistics themselves slow every program. Host steal: the share of CPU time \
    the hypervisor took during the windows (`/proc/stat`), median and largest: a stolen slice that catches the \
    mutex's holder stalls every thread, so a window with much steal can read low whatever the observer.\n\n";

/// The markdown for parts b and c: one row per configuration, `figures.base` being the
/// untraced median the ratios are taken against.
fn overhead_table(
    opts: &Options,
    configs: &[Config],
    results: &BTreeMap<Config, Vec<RunResult>>,
    failures: &BTreeMap<Config, Vec<String>>,
    figures: &Figures,
) -> String {
    let Figures {
        base,
        costs,
        paired,
    } = figures;
    let base = *base;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## (b) Overhead and (c) floors on a lock-heavy workload\n"
    );
    let _ = writeln!(
        s,
        "Workload `xtask/bench/lockbench.c`: {WORKLOAD_THREADS} threads, one pthread mutex, {CRITICAL_SECTION_US} µs \
         critical section, {OUTSIDE_US} µs outside (spins timed by CLOCK_MONOTONIC); throughput = \
         lock/unlock pairs per second. {} rounds, each one workload process on which the {} configurations take a \
         {} s window in turn (rotating order; an observer attaches, and has been still for {} ms, before its window \
         opens, and detaches after it); median per configuration; ratio = median / untraced median of this \
         invocation.\n",
        opts.rounds,
        configs.len(),
        opts.seconds,
        ATTACH_QUIET.as_millis()
    );
    let _ = writeln!(
        s,
        "| part | configuration | median ops/s | min – max | ratio to untraced | paired ratio | paired 95% CI | slowdown | BPF ns per op | traced events/s | futex wakes/s | dropped (total) | host steal |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &config in configs {
        let runs = results.get(&config).map_or(&[][..], Vec::as_slice);
        let failed = failures.get(&config).map_or(0, Vec::len);
        if runs.is_empty() {
            let _ = writeln!(
                s,
                "| {} | {} | all {failed} windows failed | | | | | | | | | | |",
                config.part(),
                config.label()
            );
            continue;
        }
        let throughputs: Vec<f64> = runs.iter().map(|r| r.ops_per_sec).collect();
        let med = median(&throughputs);
        let per_sec = |f: fn(&RunResult) -> Option<f64>| {
            let rates: Vec<f64> = runs.iter().filter_map(f).collect();
            if rates.is_empty() {
                "–".to_owned()
            } else {
                si(median(&rates))
            }
        };
        let dropped: Option<u64> = runs.iter().map(|r| r.dropped).sum();
        let _ = writeln!(
            s,
            "| {} | {}{} | {} | {} – {} | {:.3} | {} | {} | {:+.1}% | {} | {} | {} | {} | {} |",
            config.part(),
            config.label(),
            if failed > 0 {
                format!(" ({failed} windows failed)")
            } else {
                String::new()
            },
            si(med),
            si(min(&throughputs)),
            si(max(&throughputs)),
            med / base,
            paired
                .get(&config)
                .map_or_else(|| "–".to_owned(), |r| format!("{:.3}", r.median)),
            paired
                .get(&config)
                .filter(|_| config != Config::Untraced)
                .map_or_else(|| "–".to_owned(), |r| r.ci_text()),
            (1.0 - med / base) * 100.0,
            costs
                .get(&config)
                .map_or_else(|| "–".to_owned(), |ns| format!("{ns:.0}")),
            per_sec(|r| r.events_per_sec),
            per_sec(|r| r.wakes_per_sec),
            dropped.map_or_else(|| "–".to_owned(), |d| d.to_string()),
            steal_text(runs),
        );
    }
    s.push_str(OVERHEAD_NOTES);
    for (config, msgs) in failures {
        for msg in msgs {
            let _ = writeln!(s, "- failed run, {}: {msg}", config.label());
        }
    }
    if !failures.is_empty() {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_ci95_uses_the_binomial_order_statistics() {
        // Below 6 values no interval reaches 95%.
        assert!(median_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]).is_none());
        // n = 6: P(B <= 0) = 1/64, doubled 0.031 <= 0.05, so k = 1: the full range.
        assert_eq!(
            median_ci95(&[6.0, 1.0, 5.0, 2.0, 4.0, 3.0]),
            Some((1.0, 6.0))
        );
        // n = 9: P(B <= 1) = 10/512, doubled 0.039, so k = 2; P(B <= 2) = 46/512 is too
        // much.
        let nine: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(median_ci95(&nine), Some((2.0, 8.0)));
        // n = 20: the textbook interval is the 6th to the 15th value.
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median_ci95(&twenty), Some((6.0, 15.0)));
    }

    #[test]
    fn verdict_needs_the_whole_interval_on_one_side() {
        let p = |lo, hi| Paired {
            median: f64::midpoint(lo, hi),
            ci95: Some((lo, hi)),
        };
        assert!(p(0.96, 0.99).verdict(0.95).starts_with("met"));
        assert!(p(0.90, 0.94).verdict(0.95).starts_with("missed"));
        assert!(p(0.94, 0.97).verdict(0.95).starts_with("not settled"));
    }

    #[test]
    fn at_most_verdict_needs_the_whole_interval_below_the_goal() {
        let p = |lo, hi| Paired {
            median: f64::midpoint(lo, hi),
            ci95: Some((lo, hi)),
        };
        assert!(p(200.0, 900.0).verdict_at_most(1000.0).starts_with("met"));
        assert!(
            p(1100.0, 1500.0)
                .verdict_at_most(1000.0)
                .starts_with("missed")
        );
        assert!(
            p(800.0, 1200.0)
                .verdict_at_most(1000.0)
                .starts_with("not settled")
        );
        let (goal, verdict) = p(800.0, 1300.0).goal_columns_at_most(1000.0, "ns");
        assert_eq!(goal, "≤ 1000 ns");
        assert!(
            verdict.starts_with("median misses it; not settled"),
            "{verdict}"
        );
        let few = Paired {
            median: 10.0,
            ci95: None,
        };
        assert!(
            few.goal_columns_at_most(32.0, "MB")
                .1
                .starts_with("median meets it; not settled")
        );
    }

    #[test]
    fn paired_difference_subtracts_round_by_round() {
        // Round 2 has no base and round 0 no value: only rounds 1 and 3 pair, giving 30
        // and 10, whose median is 20 (not the 40 − 15 the medians of each side would give).
        let values = BTreeMap::from([(1, 130.0), (2, 500.0), (3, 60.0)]);
        let base = BTreeMap::from([(0, 1.0), (1, 100.0), (3, 50.0)]);
        let diff = paired_difference(&values, &base).unwrap();
        assert!((diff.median - 20.0).abs() < 1e-9, "{}", diff.median);
        assert!(diff.ci95.is_none());
        let six: BTreeMap<usize, f64> = (0..6).zip([15.0, 10.0, 14.0, 11.0, 13.0, 12.0]).collect();
        let zero: BTreeMap<usize, f64> = (0..6).map(|r| (r, 0.0)).collect();
        assert_eq!(
            paired_difference(&six, &zero).unwrap().ci95,
            Some((10.0, 15.0))
        );
        assert!(paired_difference(&BTreeMap::new(), &base).is_none());
    }

    #[test]
    fn paired_ratio_uses_rounds_both_ran_in() {
        let ops = BTreeMap::from([(0, 90.0), (1, 50.0), (3, 80.0)]);
        let base = BTreeMap::from([(0, 100.0), (1, 100.0), (2, 100.0)]);
        // Rounds 0 and 1 pair (0.9, 0.5); round 3 has no untraced run.
        let ratio = paired_ratio(&ops, &base).unwrap().median;
        assert!((ratio - 0.7).abs() < 1e-9, "{ratio}");
        assert!(paired_ratio(&BTreeMap::new(), &base).is_none());
    }
}
