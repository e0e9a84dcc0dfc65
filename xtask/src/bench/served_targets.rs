//! Part (k) of `cargo xtask bench`: what each process `tracer serve` traces costs every
//! other process of the host (issue 17: a `DaemonSet` serves every pod of a node).
//!
//! The serve's `sched_switch` program runs at every context switch of the host, and each
//! target loads its own copy; for a thread that is not the target's it does one helper
//! call and returns, but that is paid once per target at every switch of every process.
//! The workload is `xtask/bench/switchbench.c`: two threads pinned to one CPU handing a
//! byte back and forth over two pipes, two context switches per round trip and little
//! else, untraced by any serve. Per round, each watch takes a window in turn (starting
//! watch rotating), a fresh switchbench process each: untraced, then `tracer serve` with
//! 1 and with [`MANY_TARGETS`] `--pid` targets, all quiet (lockbench processes blocked
//! before their start). The serve is attached (its `/metrics` shows every target) before
//! the window starts and stopped after it. Paired ratio: the window's round trips per
//! second ÷ the untraced window's of the same round; what the serve adds to each context
//! switch, per target: (1/rate − 1/untraced rate) ÷ 2 switches ÷ targets.
use std::{collections::BTreeMap, fmt::Write as _, process::Command, time::Duration};

use anyhow::{Context as _, bail};

use super::{
    Options, Proc, Tools, median,
    overhead::paired_ratio,
    serve::{start_serve_pids, stop_serve},
    si,
};

/// The larger number of quiet targets served at once: a node with a few pods.
const MANY_TARGETS: usize = 8;

/// A window's configuration: how many quiet targets the serve traces (0: no serve).
const WATCHES: [usize; 3] = [0, 1, MANY_TARGETS];

fn label(targets: usize) -> String {
    match targets {
        0 => "untraced".to_owned(),
        1 => "tracer serve, 1 quiet target".to_owned(),
        n => format!("tracer serve, {n} quiet targets"),
    }
}

/// One switchbench run of `seconds`: its round trips per second.
fn switch_rate(tools: &Tools, seconds: f64) -> anyhow::Result<f64> {
    let mut bench = Proc::spawn(
        "switchbench",
        Command::new(&tools.switchbench).args(["--seconds", &seconds.to_string()]),
    )?;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a window of a few seconds"
    )]
    let limit = Duration::from_secs(seconds.ceil() as u64 + 10);
    let line = bench.wait_line(limit, |l| l.starts_with("round_trips="))?;
    bench.wait_exit(Duration::from_secs(5))?;
    line.text
        .split_whitespace()
        .find_map(|f| f.strip_prefix("rate="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("switchbench printed no rate: {:?}", line.text))
}

/// One window: switchbench under a serve of the first `targets` of `quiet` (none: no
/// serve).
fn window(tools: &Tools, quiet: &[u32], targets: usize, seconds: f64) -> anyhow::Result<f64> {
    if targets == 0 {
        return switch_rate(tools, seconds);
    }
    let (mut serve, _port) = start_serve_pids(tools, &quiet[..targets])?;
    let rate = switch_rate(tools, seconds);
    stop_serve(&mut serve)?;
    rate
}

/// Rates by number of targets (0: untraced) and round, and the failed windows.
type Rates = BTreeMap<usize, BTreeMap<usize, f64>>;

/// Every round's windows.
fn measure(tools: &Tools, opts: &Options) -> anyhow::Result<(Rates, Vec<String>)> {
    let mut quiet = Vec::with_capacity(MANY_TARGETS);
    for _ in 0..MANY_TARGETS {
        let mut target = Proc::spawn(
            "lockbench",
            Command::new(&tools.lockbench).args([
                "--wait-stdin",
                "--threads",
                "4",
                "--seconds",
                "1",
            ]),
        )?;
        target.wait_line(Duration::from_secs(10), |l| l.starts_with("ready pid="))?;
        quiet.push(target);
    }
    let pids: Vec<u32> = quiet.iter().map(Proc::pid).collect();
    let mut rates = Rates::new();
    let mut failures = Vec::new();
    for round in 0..opts.rounds {
        for i in 0..WATCHES.len() {
            let targets = WATCHES[(i + round) % WATCHES.len()];
            match window(tools, &pids, targets, opts.seconds) {
                Ok(rate) => {
                    eprintln!(
                        "bench (k): round {}/{}: {:<32} {:>9} round trips/s",
                        round + 1,
                        opts.rounds,
                        label(targets),
                        si(rate)
                    );
                    rates.entry(targets).or_default().insert(round, rate);
                }
                Err(err) if targets == 0 => {
                    return Err(err.context("the untraced switchbench window failed"));
                }
                Err(err) => {
                    let msg = format!("{}: {err:#}", label(targets));
                    eprintln!(
                        "bench (k): round {}/{}: FAILED: {msg}",
                        round + 1,
                        opts.rounds
                    );
                    failures.push(msg);
                }
            }
        }
    }
    drop(quiet);
    Ok((rates, failures))
}

pub(super) fn section(tools: &Tools, opts: &Options) -> anyhow::Result<String> {
    let (rates, failures) = measure(tools, opts)?;
    let Some(untraced) = rates.get(&0) else {
        bail!("no untraced switchbench window");
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## (k) What each served target costs the host's other processes\n"
    );
    let _ = writeln!(
        s,
        "Workload `xtask/bench/switchbench.c`: two threads pinned to one CPU, a byte back and forth over two \
         pipes (two context switches per round trip), {:.0} s windows; per round each watch takes a window \
         in turn (starting watch rotating), a fresh process each: untraced, `tracer serve` with 1 and with \
         {MANY_TARGETS} quiet `--pid` targets (lockbench blocked before its start), attached before the \
         window and stopped after it. {} rounds. Paired ratio: the window's round trips per second ÷ the \
         untraced window's of the same round. Added per switch and target: (1/rate − 1/untraced rate) ÷ 2 \
         ÷ targets, median over rounds. No goal in issue 17; what it says of a node: the serve's \
         `sched_switch` program runs at every switch of every process once per served target.\n",
        opts.seconds, opts.rounds
    );
    let _ = writeln!(
        s,
        "| watch | round trips/s (median) | paired ratio to untraced | 95% interval | added per context switch, per target |"
    );
    let _ = writeln!(s, "|---|---:|---:|---|---:|");
    for (&targets, by_round) in &rates {
        let values: Vec<f64> = by_round.values().copied().collect();
        let rate = median(&values);
        if targets == 0 {
            let _ = writeln!(s, "| {} | {} | 1 | | |", label(targets), si(rate));
            continue;
        }
        let Some(paired) = paired_ratio(by_round, untraced) else {
            continue;
        };
        #[expect(clippy::cast_precision_loss, reason = "a handful of targets")]
        let per_switch_ns: Vec<f64> = by_round
            .iter()
            .filter_map(|(round, &r)| {
                untraced
                    .get(round)
                    .map(|&u| (1e9 / r - 1e9 / u) / 2.0 / targets as f64)
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {} | {:.0} ns |",
            label(targets),
            si(rate),
            paired.median,
            paired.ci_text(),
            median(&per_switch_ns)
        );
    }
    for failure in &failures {
        let _ = writeln!(s, "\n- failed window: {failure}");
    }
    s.push('\n');
    Ok(s)
}
