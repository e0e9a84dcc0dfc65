//! Part (j) of `cargo xtask bench`: what the lock-order graph (issue 18,
//! `tracer-user/src/lock_order/`) costs. It is built whenever acquisitions are traced
//! (`tracer attach --holds`); `--no-lock-order` keeps the same probes and records but builds
//! no graph, so the difference between the two is the graph's alone.
//!
//! - Cost per traced acquisition: `xtask/bench/nested.c`, 4 threads each taking three
//!   static mutexes nested in one order (two or three of them per iteration) and a pair of
//!   heap `struct account` mutexes (64 instances of one class) in address order. As in
//!   (b), per round one workload process, on which every watch takes a window in turn, the
//!   starting one rotating: untraced, `--holds --no-lock-order`, `--holds`. Figures: the
//!   target's acquisitions per second (its own count of `pthread_mutex_lock` calls), the
//!   paired ratio graph ÷ no graph (goal ≥ [`THROUGHPUT_GOAL`]), and the tracer's CPU time
//!   (every thread's `/proc/PID/task/*/schedstat`) over the window divided by the
//!   acquisitions made in it; graph − no graph, round by round, is the analysis time the
//!   graph adds per acquisition (goal ≤ [`ADDED_CPU_GOAL_NS`]).
//! - Memory at 10^5 instances: the same program with [`MEMORY_OBJECTS`] accounts and no
//!   static locks (random pairs, address order), traced for [`MEMORY_TRACE`] with and
//!   without the graph, in turn on one process per round; the tracer's `VmRSS` and
//!   `VmHWM` at the end of the trace, and their difference round by round: the graph's
//!   memory (goal ≤ [`MEMORY_GOAL_MB`]).
//!
//! Neither program ever takes two locks in both orders: a `lock_order_inversion` line (or
//! a nonzero count in the summary) is a false alarm, and the section says so at its top.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::{
    Options, Proc, Tools,
    idle::cpu_ns,
    idle_note, json_attach, json_summary, max, median, min, observer_secs,
    overhead::{Paired, Workload, paired_difference, paired_ratio},
    serve::{mb, status_kb},
    si, wait_attached,
};

/// Goal: the graph keeps this share of the throughput under `--holds` without it.
const THROUGHPUT_GOAL: f64 = 0.95;
/// Goal: tracer CPU the graph adds per traced acquisition, ns. Kernel lockdep validates a
/// held-lock chain with one hash lookup (its steady state costs a few hundred ns per
/// acquisition); the graph does the same (chain keys), so 1 µs leaves room for the
/// record's trip to user space without letting the graph become the tracer's main cost.
const ADDED_CPU_GOAL_NS: f64 = 1000.0;
/// Goal: the graph's memory at [`MEMORY_OBJECTS`] lock instances, MB (10^6 bytes).
const MEMORY_GOAL_MB: f64 = 32.0;
/// Threads of both workloads: more than the reference machine's 2 cores, as in (b).
const THREADS: u32 = 4;
/// Accounts (instances of one class) of the cost workload.
const COST_OBJECTS: u32 = 64;
/// Spin inside the innermost lock and outside every lock, µs (cost workload).
const COST_CS_US: f64 = 0.2;
const COST_OUT_US: f64 = 1.0;
/// Lock instances of the memory workload, and how long each of its traces lasts.
const MEMORY_OBJECTS: u32 = 100_000;
/// 30 s: under `--holds` the 4 threads make ~40 k acquisitions/s on the reference VM
/// (uprobe traps), ~12 per instance in a trace.
const MEMORY_TRACE: Duration = Duration::from_secs(30);
/// Spin outside the locks of the memory workload, µs (none inside).
const MEMORY_OUT_US: f64 = 0.5;
/// Rounds of the memory workload at most: each is two traces of [`MEMORY_TRACE`].
const MAX_MEMORY_ROUNDS: usize = 3;
/// BPF links that mark a `--holds` attach as done (as in (b)).
const HOLDS_HOOKS: usize = 3;

/// What watches the workload in one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Watch {
    Untraced,
    /// `tracer attach --holds --no-lock-order`: the same probes and records, no graph.
    NoGraph,
    /// `tracer attach --holds`: the graph.
    Graph,
}

impl Watch {
    const ALL: [Self; 3] = [Self::Untraced, Self::NoGraph, Self::Graph];
    const TRACED: [Self; 2] = [Self::NoGraph, Self::Graph];

    fn label(self) -> &'static str {
        match self {
            Self::Untraced => "untraced",
            Self::NoGraph => "tracer attach --holds --no-lock-order",
            Self::Graph => "tracer attach --holds (graph)",
        }
    }
}

/// One window's figures.
#[derive(Clone, Debug, Default)]
struct Window {
    /// Acquisitions made in the window.
    acquisitions: u64,
    acquisitions_per_sec: f64,
    /// The tracer's CPU time over the window per acquisition made in it, ns.
    cpu_ns_per_acquisition: Option<f64>,
    /// The tracer's resident set and high-water mark at the end of the window, KiB.
    rss_kb: Option<u64>,
    hwm_kb: Option<u64>,
    /// `lock_order_inversion` lines printed, and the summary's count: both must be 0.
    inversion_lines: usize,
    /// The locks of the first inversion printed, by name.
    first_inversion: Option<String>,
    inversions_counted: u64,
    dropped: Option<u64>,
    /// The summary's notes about the lock order (the graph's caps).
    order_notes: Vec<String>,
}

/// How many of a tracer's JSON output lines report a lock-order inversion, and the locks
/// of the first one (`name@addr`, in the line's order), to tell what went wrong.
fn inversion_lines(lines: &[String]) -> (usize, Option<String>) {
    let inversions: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "lock_order_inversion")
        .collect();
    let first = inversions.first().map(|v| {
        v["locks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|lock| {
                format!(
                    "{}@{}",
                    lock["name"].as_str().unwrap_or("?"),
                    lock["addr"].as_str().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    });
    (inversions.len(), first)
}

fn build_target(tools: &Tools) -> anyhow::Result<PathBuf> {
    let src = tools.root.join("xtask/bench/nested.c");
    let bin = tools.root.join("target/bench/nested");
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
}

/// The two workload shapes.
#[derive(Clone, Copy)]
enum Shape {
    /// Part 1: static locks nested in one order, plus pairs of 64 accounts.
    Cost,
    /// Part 2: pairs of 10^5 accounts, nothing else.
    Memory,
}

fn start_workload(bin: &Path, shape: Shape) -> anyhow::Result<Workload> {
    let mut cmd = Command::new(bin);
    cmd.args(["--control", "--threads", &THREADS.to_string()]);
    match shape {
        Shape::Cost => cmd.args([
            "--objects",
            &COST_OBJECTS.to_string(),
            "--cs-us",
            &COST_CS_US.to_string(),
            "--out-us",
            &COST_OUT_US.to_string(),
        ]),
        Shape::Memory => cmd.args([
            "--no-outer",
            "--objects",
            &MEMORY_OBJECTS.to_string(),
            "--cs-us",
            "0",
            "--out-us",
            &MEMORY_OUT_US.to_string(),
        ]),
    };
    Workload::spawn("nested", &mut cmd)
}

/// One window of `seconds` on a running workload: start the watch and wait until it has
/// attached, read the workload's count and the tracer's CPU time, wait, read both again
/// and the tracer's memory, stop the tracer and read its summary.
fn window(
    tools: &Tools,
    workload: &mut Workload,
    watch: Watch,
    seconds: f64,
) -> anyhow::Result<Window> {
    let mut tracer = match watch {
        Watch::Untraced => None,
        Watch::NoGraph | Watch::Graph => {
            let mut cmd = json_attach(tools, &workload.pid().to_string(), observer_secs(seconds));
            cmd.arg("--holds");
            if watch == Watch::NoGraph {
                cmd.arg("--no-lock-order");
            }
            let mut proc = Proc::spawn(watch.label(), &mut cmd)?;
            wait_attached(&mut proc, HOLDS_HOOKS)?;
            Some(proc)
        }
    };
    let cpu_before = tracer.as_ref().map(|t| cpu_ns(t.pid())).transpose()?;
    let start = workload.mark()?;
    thread::sleep(Duration::from_secs_f64(seconds));
    let end = workload.mark()?;
    let cpu_after = tracer.as_ref().map(|t| cpu_ns(t.pid())).transpose()?;
    let acquisitions = end.ops.saturating_sub(start.ops);
    #[expect(clippy::cast_precision_loss, reason = "counts and ns far below 2^52")]
    let mut result = Window {
        acquisitions,
        acquisitions_per_sec: acquisitions as f64
            / (end.at_ns.saturating_sub(start.at_ns) as f64 / 1e9),
        cpu_ns_per_acquisition: cpu_before
            .zip(cpu_after)
            .filter(|_| acquisitions > 0)
            .map(|(before, after)| after.saturating_sub(before) as f64 / acquisitions as f64),
        ..Window::default()
    };
    let Some(tracer) = tracer.as_mut() else {
        return Ok(result);
    };
    result.rss_kb = Some(status_kb(tracer.pid(), "VmRSS")?);
    result.hwm_kb = Some(status_kb(tracer.pid(), "VmHWM")?);
    let status = tracer.stop(libc::SIGINT, Duration::from_secs(30))?;
    let lines = tracer.remaining_lines();
    // 3-5: it found something (README "Exit status"), which the report says.
    if !matches!(status.code(), Some(0 | 3 | 4 | 5)) {
        let err = tracer.stderr_text();
        bail!("{} failed ({status}): {}", watch.label(), err.trim());
    }
    let summary = json_summary(&lines, watch.label())?;
    (result.inversion_lines, result.first_inversion) = inversion_lines(&lines);
    result.inversions_counted = summary["lock_order_inversions"].as_u64().unwrap_or(0);
    result.dropped = summary["dropped"].as_u64();
    result.order_notes = summary["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .filter(|n| n.starts_with("lock order"))
        .map(str::to_owned)
        .collect();
    Ok(result)
}

/// Every window, by watch and round.
type Windows = BTreeMap<Watch, BTreeMap<usize, Window>>;

/// Runs `rounds` rounds of `watches` on one `shape` process each, windows of `seconds`,
/// the starting watch rotating; returns the windows and the failures' messages.
fn run_rounds(
    tools: &Tools,
    bin: &Path,
    (shape, part): (Shape, &str),
    watches: &[Watch],
    (rounds, seconds): (usize, f64),
) -> anyhow::Result<(Windows, Vec<String>)> {
    let mut windows = Windows::new();
    let mut failures = Vec::new();
    for round in 0..rounds {
        let mut workload = start_workload(bin, shape).context("starting nested")?;
        for i in 0..watches.len() {
            let watch = watches[(i + round) % watches.len()];
            match window(tools, &mut workload, watch, seconds) {
                Ok(w) => {
                    eprintln!(
                        "bench (j): {part} round {}/{rounds}: {:<38} {:>9} acquisitions/s{}{}{}",
                        round + 1,
                        watch.label(),
                        si(w.acquisitions_per_sec),
                        w.cpu_ns_per_acquisition
                            .map_or_else(String::new, |ns| format!(", tracer {ns:.0} ns CPU each")),
                        w.rss_kb.map_or_else(String::new, |kb| format!(
                            ", RSS {:.1} MB, HWM {:.1} MB",
                            mb(kb),
                            mb(w.hwm_kb.unwrap_or(0))
                        )),
                        if w.inversion_lines > 0 || w.inversions_counted > 0 {
                            format!(
                                ", FALSE ALARM: {} lock_order_inversion lines",
                                w.inversion_lines
                            )
                        } else {
                            String::new()
                        }
                    );
                    windows.entry(watch).or_default().insert(round, w);
                }
                Err(err) => {
                    if watch == Watch::Untraced {
                        return Err(err.context("the untraced baseline window failed"));
                    }
                    let msg = format!("{part}, {}: {err:#}", watch.label());
                    eprintln!("bench (j): round {}/{rounds}: FAILED: {msg}", round + 1);
                    failures.push(msg);
                }
            }
        }
        workload.finish()?;
    }
    Ok((windows, failures))
}

/// One figure of every window of `watch`, by round.
fn by_round(
    windows: &Windows,
    watch: Watch,
    figure: impl Fn(&Window) -> Option<f64>,
) -> BTreeMap<usize, f64> {
    windows
        .get(&watch)
        .into_iter()
        .flatten()
        .filter_map(|(&round, w)| figure(w).map(|v| (round, v)))
        .collect()
}

/// The false alarms among `windows`, one line each: a graph that reports an inversion in a
/// program that has none.
fn false_alarms(windows: &Windows, part: &str) -> Vec<String> {
    windows
        .iter()
        .flat_map(|(watch, rounds)| rounds.iter().map(move |(round, w)| (watch, round, w)))
        .filter(|(_, _, w)| w.inversion_lines > 0 || w.inversions_counted > 0)
        .map(|(watch, round, w)| {
            format!(
                "{part}, round {}, {}: {} `lock_order_inversion` lines, {} in the summary{}",
                round + 1,
                watch.label(),
                w.inversion_lines,
                w.inversions_counted,
                w.first_inversion
                    .as_ref()
                    .map_or_else(String::new, |locks| format!("; the first between {locks}"))
            )
        })
        .collect()
}

fn values(map: &BTreeMap<usize, f64>) -> Vec<f64> {
    map.values().copied().collect()
}

fn cost_tables(s: &mut String, windows: &Windows) {
    let _ = writeln!(
        s,
        "| watch | acquisitions/s (median) | paired ratio to untraced | 95% interval | tracer CPU per acquisition (median) | min – max | dropped (total) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---|---:|---|---:|");
    let rates = |watch| by_round(windows, watch, |w| Some(w.acquisitions_per_sec));
    let cpu = |watch| by_round(windows, watch, |w| w.cpu_ns_per_acquisition);
    let untraced = rates(Watch::Untraced);
    for watch in Watch::ALL {
        let ops = values(&rates(watch));
        if ops.is_empty() {
            let _ = writeln!(s, "| {} | no data | | | | | |", watch.label());
            continue;
        }
        let paired = (watch != Watch::Untraced)
            .then(|| paired_ratio(&rates(watch), &untraced))
            .flatten();
        let cpu = values(&cpu(watch));
        let dropped: Option<u64> = windows
            .get(&watch)
            .into_iter()
            .flatten()
            .map(|(_, w)| w.dropped)
            .sum();
        let _ = writeln!(
            s,
            "| {} | {} ({} – {}) | {} | {} | {} | {} | {} |",
            watch.label(),
            si(median(&ops)),
            si(min(&ops)),
            si(max(&ops)),
            paired.map_or_else(|| "1".to_owned(), |p| format!("{:.3}", p.median)),
            paired.map_or_else(String::new, Paired::ci_text),
            if cpu.is_empty() {
                String::new()
            } else {
                format!("{:.0} ns", median(&cpu))
            },
            if cpu.is_empty() {
                String::new()
            } else {
                format!("{:.0} – {:.0} ns", min(&cpu), max(&cpu))
            },
            dropped.map_or_else(String::new, |d| d.to_string()),
        );
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "| measure (graph against no graph, round by round) | median | 95% interval | goal | verdict |"
    );
    let _ = writeln!(s, "|---|---:|---|---|---|");
    match paired_ratio(&rates(Watch::Graph), &rates(Watch::NoGraph)) {
        Some(ratio) => {
            let (goal, verdict) = ratio.goal_columns(THROUGHPUT_GOAL);
            let _ = writeln!(
                s,
                "| throughput, graph ÷ no graph | {:.3} | {} | {goal} | {verdict} |",
                ratio.median,
                ratio.ci_text()
            );
        }
        None => {
            let _ = writeln!(
                s,
                "| throughput, graph ÷ no graph | no data | | ≥ {THROUGHPUT_GOAL} | |"
            );
        }
    }
    match paired_difference(&cpu(Watch::Graph), &cpu(Watch::NoGraph)) {
        Some(added) => {
            let (goal, verdict) = added.goal_columns_at_most(ADDED_CPU_GOAL_NS, "ns");
            let _ = writeln!(
                s,
                "| tracer CPU added per acquisition, graph − no graph | {:.0} ns | {} | {goal} | {verdict} |",
                added.median,
                added.ci95.map_or_else(
                    || "–".to_owned(),
                    |(lo, hi)| format!("{lo:.0} – {hi:.0} ns")
                )
            );
        }
        None => {
            let _ = writeln!(
                s,
                "| tracer CPU added per acquisition, graph − no graph | no data | | ≤ {ADDED_CPU_GOAL_NS} ns | |"
            );
        }
    }
    s.push('\n');
}

fn memory_table(s: &mut String, windows: &Windows) {
    let _ = writeln!(
        s,
        "| measure | with the graph (median) | without (median) | difference, round by round (median) | largest difference | goal | verdict |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---|---|");
    for (name, field) in [
        (
            "`VmRSS` at the end of the trace",
            (|w: &Window| w.rss_kb) as fn(&Window) -> Option<u64>,
        ),
        ("`VmHWM` at the end of the trace", |w: &Window| w.hwm_kb),
    ] {
        let figure = |w: &Window| field(w).map(mb);
        let (graph, no_graph) = (
            by_round(windows, Watch::Graph, figure),
            by_round(windows, Watch::NoGraph, figure),
        );
        let differences: Vec<f64> = graph
            .iter()
            .filter_map(|(round, g)| no_graph.get(round).map(|n| g - n))
            .collect();
        if differences.is_empty() {
            let _ = writeln!(s, "| {name} | no data | | | | ≤ {MEMORY_GOAL_MB} MB | |");
            continue;
        }
        let worst = max(&differences);
        let _ = writeln!(
            s,
            "| {name} | {:.1} MB | {:.1} MB | {:+.1} MB | {worst:+.1} MB | ≤ {MEMORY_GOAL_MB} MB | {} |",
            median(&values(&graph)),
            median(&values(&no_graph)),
            median(&differences),
            super::verdict(
                worst <= MEMORY_GOAL_MB,
                &format!("worst {:.2}× the goal", worst / MEMORY_GOAL_MB)
            )
        );
    }
    s.push('\n');
    let acquisitions: Vec<f64> = windows
        .values()
        .flat_map(BTreeMap::values)
        .map(|w| {
            #[expect(clippy::cast_precision_loss, reason = "a count far below 2^52")]
            let n = w.acquisitions as f64;
            n
        })
        .collect();
    if !acquisitions.is_empty() {
        let _ = writeln!(
            s,
            "- acquisitions per trace: {} (median; {} – {}), {:.0} per instance",
            si(median(&acquisitions)),
            si(min(&acquisitions)),
            si(max(&acquisitions)),
            median(&acquisitions) / f64::from(MEMORY_OBJECTS)
        );
    }
    for watch in Watch::TRACED {
        let cpu = values(&by_round(windows, watch, |w| w.cpu_ns_per_acquisition));
        if !cpu.is_empty() {
            let _ = writeln!(
                s,
                "- {}: tracer CPU {:.0} ns per acquisition (median; {:.0} – {:.0})",
                watch.label(),
                median(&cpu),
                min(&cpu),
                max(&cpu)
            );
        }
    }
}

/// The notes of the graph's windows about its caps, each with its round.
fn order_notes(windows: &Windows, part: &str) -> Vec<String> {
    windows
        .values()
        .flat_map(|rounds| rounds.iter())
        .flat_map(|(round, w)| {
            w.order_notes
                .iter()
                .map(move |note| format!("{part}, round {}: {note}", round + 1))
        })
        .collect()
}

/// The markdown of part (j).
pub(super) fn section(tools: &Tools, opts: &Options) -> anyhow::Result<String> {
    let bin = build_target(tools)?;
    let idle_before = idle_note("before the lock-order rounds");
    let (cost, mut failures) = run_rounds(
        tools,
        &bin,
        (Shape::Cost, "cost"),
        &Watch::ALL,
        (opts.rounds, opts.seconds),
    )?;
    let memory_rounds = opts.rounds.min(MAX_MEMORY_ROUNDS);
    let (memory, memory_failures) = run_rounds(
        tools,
        &bin,
        (Shape::Memory, "memory"),
        &Watch::TRACED,
        (memory_rounds, MEMORY_TRACE.as_secs_f64()),
    )?;
    failures.extend(memory_failures);
    let idle_after = idle_note("after them");

    let mut alarms = false_alarms(&cost, "cost workload");
    alarms.extend(false_alarms(
        &memory,
        &format!("{MEMORY_OBJECTS} instances"),
    ));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## (j) The lock-order graph: cost per traced acquisition and memory\n"
    );
    if alarms.is_empty() {
        let _ = writeln!(
            s,
            "No false alarm: no `lock_order_inversion` line and a zero count in every summary (neither program \
             ever takes two locks in both orders).\n"
        );
    } else {
        eprintln!(
            "bench (j): FALSE ALARM: the tracer reported lock-order inversions in programs that have none"
        );
        let _ = writeln!(
            s,
            "**FALSE ALARM: the tracer reported lock-order inversions in programs that take every pair of \
             locks in one order only:**\n"
        );
        for alarm in &alarms {
            let _ = writeln!(s, "- **{alarm}**");
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "Cost per traced acquisition: `xtask/bench/nested.c`, {THREADS} threads, each iteration taking \
         `config_lock` → `stats_lock` (→ `journal_lock` every other time) with a {COST_CS_US} µs spin inside, \
         then two of {COST_OBJECTS} heap `struct account` mutexes (one class) lower address first, {COST_OUT_US} µs \
         outside; throughput = the target's `pthread_mutex_lock` calls per second. {} rounds, each one process on \
         which the watches take a {} s window in turn (rotating order). Tracer CPU per acquisition: its CPU time \
         over the window (sum of `/proc/PID/task/*/schedstat`) ÷ the acquisitions the target made in it. Goals \
         (issue 18): with the graph ≥ {THROUGHPUT_GOAL}× the throughput without it, and ≤ {ADDED_CPU_GOAL_NS} ns \
         of tracer CPU added per acquisition; judged on the 95% interval of the round-by-round median.\n",
        opts.rounds, opts.seconds
    );
    let _ = writeln!(s, "- {idle_before}\n- {idle_after}\n");
    cost_tables(&mut s, &cost);
    let _ = writeln!(
        s,
        "Memory at {MEMORY_OBJECTS} lock instances: the same program with {MEMORY_OBJECTS} heap accounts (one \
         `malloc` each) and no static locks, threads taking random pairs lower address first, no spin inside, \
         {MEMORY_OUT_US} µs outside; {memory_rounds} rounds, each one process traced {} s with the graph and {} s \
         without (rotating order). The tracer's `VmRSS` and `VmHWM` (`/proc/PID/status`) at the end of the trace, \
         before SIGINT; the difference, round by round, is the graph's memory (`VmHWM` also holds the attach's \
         peak, the kernel BTF, in both). MB of 10^6 bytes.\n",
        MEMORY_TRACE.as_secs(),
        MEMORY_TRACE.as_secs()
    );
    memory_table(&mut s, &memory);
    for note in order_notes(&cost, "cost workload")
        .into_iter()
        .chain(order_notes(&memory, &format!("{MEMORY_OBJECTS} instances")))
    {
        let _ = writeln!(s, "- tracer's note: {note}");
    }
    for msg in failures {
        let _ = writeln!(s, "- failed window: {msg}");
    }
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inversion_lines_counts_only_inversion_records() {
        let lines: Vec<String> = [
            r#"{"kind":"lock_order_inversion","locks":[{"addr":"0x10","name":"stats_lock"},{"addr":"0x20","name":"config_lock"}],"edges":[],"harmless":false,"gate":null}"#,
            r#"{"kind":"deadlock","cycle":[]}"#,
            "not json, mentioning lock_order_inversion",
            r#"{"kind":"summary","lock_order_inversions":0}"#,
            r#"{"kind":"lock_order_inversion","locks":[],"edges":[],"harmless":true,"gate":null}"#,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let (count, first) = inversion_lines(&lines);
        assert_eq!(count, 2);
        assert_eq!(
            first.as_deref(),
            Some("stats_lock@0x10, config_lock@0x20"),
            "the first inversion's locks, in order"
        );
        assert_eq!(inversion_lines(&lines[1..4]), (0, None));
    }

    #[test]
    fn false_alarms_name_the_windows_that_reported_one() {
        let clean = Window::default();
        let alarmed = Window {
            inversions_counted: 1,
            first_inversion: Some("a@0x1, b@0x2".to_owned()),
            ..Window::default()
        };
        let mut windows = Windows::new();
        windows
            .entry(Watch::Graph)
            .or_default()
            .extend([(0, clean.clone()), (2, alarmed)]);
        windows.entry(Watch::NoGraph).or_default().insert(0, clean);
        let alarms = false_alarms(&windows, "cost");
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert!(
            alarms[0].starts_with("cost, round 3, tracer attach --holds (graph)")
                && alarms[0].ends_with("the first between a@0x1, b@0x2"),
            "{alarms:?}"
        );
    }
}
