//! Part (e) of `cargo xtask bench`, Go lock trouble already there at the attach (the
//! default mode's snapshots): the time from `tracer attach` starting to its first report,
//! and what one snapshot of the goroutines costs per goroutine.
//!
//! The target is `tracer-user/tests/go_targets/go_parked`: `abba IDLE` deadlocks two
//! goroutines (deferred unlocks) beside IDLE goroutines parked on a channel, `held IDLE
//! READERS` write-holds an `RWMutex` (deferred unlock) with READERS goroutines parked in
//! `RLock` and one writer in `Lock`. It prints its facts (goroutine ids, lock addresses)
//! and `ready` once every goroutine has parked; only then does the tracer start. The
//! report must name what the target printed, or the run fails.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Options, Proc, Tools, go::go_build, json_attach, json_summary, max, median, monotonic_ns,
    verdict,
};

/// Goal: the deadlock reported within this long of the tracer's start, 10 000 goroutines.
const FIRST_REPORT_GOAL: Duration = Duration::from_secs(1);
/// Runs per case at most (fewer when `--rounds` says so): each is a fresh target.
const MAX_RUNS: usize = 5;
/// How long the tracer keeps running after its first report, so that the average cost of
/// a snapshot covers the periodic ones (one a second) and not only the first.
const AFTER_REPORT: Duration = Duration::from_millis(2500);
/// How long a target may take to park its goroutines and print `ready`.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long the first report may take before the run counts as failed.
const REPORT_LIMIT: Duration = Duration::from_secs(20);

/// What the first report of a case is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Report {
    Deadlock,
    Stuck,
}

struct Case {
    mode: &'static str,
    idle: u32,
    /// `held` only: readers parked behind the held lock (the target's default is 300).
    readers: Option<u32>,
    /// `--stuck-after`, when not the default 1 s.
    stuck_after: Option<f64>,
    report: Report,
    /// Whether the first-report goal applies.
    judged: bool,
}

const CASES: [Case; 5] = [
    Case {
        mode: "abba",
        idle: 1_000,
        readers: None,
        stuck_after: None,
        report: Report::Deadlock,
        judged: false,
    },
    Case {
        mode: "abba",
        idle: 10_000,
        readers: None,
        stuck_after: None,
        report: Report::Deadlock,
        judged: true,
    },
    Case {
        mode: "held",
        idle: 10_000,
        readers: None,
        stuck_after: None,
        report: Report::Stuck,
        judged: false,
    },
    Case {
        mode: "held",
        idle: 10_000,
        readers: None,
        stuck_after: Some(0.2),
        report: Report::Stuck,
        judged: false,
    },
    Case {
        mode: "held",
        idle: 0,
        readers: Some(4_000),
        stuck_after: Some(0.2),
        report: Report::Stuck,
        judged: false,
    },
];

impl Case {
    fn args(&self) -> Vec<String> {
        let mut args = vec![self.mode.to_owned(), self.idle.to_string()];
        args.extend(self.readers.map(|r| r.to_string()));
        args
    }

    fn label(&self) -> String {
        let mut label = format!("`go_parked {}`", self.args().join(" "));
        if let Some(after) = self.stuck_after {
            let _ = write!(label, ", `--stuck-after {after}`");
        }
        label
    }
}

/// One run of a case.
struct ParkedRun {
    /// From spawning the tracer to its first report's line arriving on our pipe.
    first_report: Duration,
    /// From the tracer's summary note.
    snapshots: u64,
    ms_per_snapshot: f64,
    goroutines: u64,
    /// The tracer's `VmHWM` just before it was stopped, MB of 10^6 bytes.
    peak_rss_mb: Option<f64>,
}

/// The target's `key=value` facts, read up to its `ready` line.
fn facts(target: &mut Proc) -> anyhow::Result<BTreeMap<String, String>> {
    let mut facts = BTreeMap::new();
    loop {
        let line = target.wait_line(READY_LIMIT, |_| true)?;
        if line.text == "ready" {
            return Ok(facts);
        }
        if let Some((k, v)) = line.text.split_once('=') {
            facts.insert(k.to_owned(), v.to_owned());
        }
    }
}

fn parse_addr(text: &str) -> Option<u64> {
    u64::from_str_radix(text.trim_start_matches("0x"), 16).ok()
}

/// Checks that the report names what the target printed.
fn check_report(
    case: &Case,
    report: &serde_json::Value,
    facts: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let fact = |k: &str| {
        facts
            .get(k)
            .with_context(|| format!("go_parked printed no {k}"))
    };
    match case.report {
        Report::Deadlock => {
            let mut reported: Vec<u64> = report["cycle"]
                .as_array()
                .map(|c| c.iter().filter_map(|e| e["goid"].as_u64()).collect())
                .unwrap_or_default();
            let mut expected: Vec<u64> =
                vec![fact("goid.writer")?.parse()?, fact("goid.gc")?.parse()?];
            reported.sort_unstable();
            expected.sort_unstable();
            if reported != expected {
                bail!(
                    "the deadlock names goroutines {reported:?}, the target's are {expected:?}: {report}"
                );
            }
        }
        Report::Stuck => {
            let lock = report["lock"]["addr"].as_str().and_then(parse_addr);
            let expected = parse_addr(fact("lock.registry")?);
            let readers = report["readers_waiting"].as_u64();
            let expected_readers = fact("readers")?.parse::<u64>().ok();
            if lock != expected || readers != expected_readers {
                bail!(
                    "the stuck lock is {lock:x?} with {readers:?} readers waiting, the target's is {expected:x?} with {expected_readers:?}: {report}"
                );
            }
        }
    }
    Ok(())
}

/// The tracer's `VmHWM`, MB.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0 / 1e6)
}

/// `goroutines read from the runtime N times, X ms each on average, G goroutines in the
/// last` → (N, X, G).
fn snapshot_note(summary: &serde_json::Value) -> anyhow::Result<(u64, f64, u64)> {
    let note = summary["notes"]
        .as_array()
        .and_then(|notes| {
            notes
                .iter()
                .filter_map(|n| n.as_str())
                .find(|n| n.starts_with("goroutines read from the runtime"))
        })
        .context("no snapshot note in the tracer's summary")?;
    let numbers: Vec<f64> = note
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .collect();
    match numbers[..] {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "counts printed as integers"
        )]
        [n, ms, g] => Ok((n as u64, ms, g as u64)),
        _ => bail!("unexpected snapshot note: {note}"),
    }
}

fn parked_run(tools: &Tools, target_bin: &Path, case: &Case) -> anyhow::Result<ParkedRun> {
    let mut target = Proc::spawn("go_parked", Command::new(target_bin).args(case.args()))?;
    let facts = facts(&mut target)?;
    let pid = target.pid().to_string();
    let mut cmd = json_attach(tools, &pid, 60);
    if let Some(after) = case.stuck_after {
        cmd.arg("--stuck-after").arg(after.to_string());
    }
    let started_ns = monotonic_ns();
    let mut tracer = Proc::spawn("tracer attach", &mut cmd)?;
    let kind = match case.report {
        Report::Deadlock => r#""kind":"deadlock""#,
        Report::Stuck => r#""kind":"stuck_lock""#,
    };
    let line = tracer.wait_line(REPORT_LIMIT, |l| l.contains(kind))?;
    let first_report = Duration::from_nanos(line.at_ns.saturating_sub(started_ns));
    let report: serde_json::Value =
        serde_json::from_str(&line.text).context("the report is not JSON")?;
    check_report(case, &report, &facts)?;
    let until = Instant::now() + AFTER_REPORT;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let peak_rss_mb = peak_rss_mb(tracer.pid());
    let status = tracer.stop(libc::SIGINT, Duration::from_secs(30))?;
    // 3-5: it found something (README "Exit status"), which the report says.
    if !matches!(status.code(), Some(0 | 3 | 4 | 5)) {
        let err = tracer.stderr_text();
        bail!("tracer attach failed ({status}): {}", err.trim());
    }
    let lines = tracer.remaining_lines();
    let summary = json_summary(&lines, "tracer attach")?;
    let (snapshots, ms_per_snapshot, goroutines) = snapshot_note(&summary)?;
    target.stop(libc::SIGKILL, Duration::from_secs(5))?;
    Ok(ParkedRun {
        first_report,
        snapshots,
        ms_per_snapshot,
        goroutines,
        peak_rss_mb,
    })
}

/// The markdown of the parked-goroutine measures of part (e).
pub(super) fn section(tools: &Tools, opts: &Options) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Lock trouble formed before the attach (default mode)\n"
    );
    let dir = tools.root.join("tracer-user/tests/go_targets/go_parked");
    let target_bin = match go_build(&tools.root, &dir, ".", "go_parked") {
        Ok(bin) => bin,
        Err(err) => {
            let _ = writeln!(s, "FAILED to build go_parked: {err:#}\n");
            return s;
        }
    };
    let runs = opts.rounds.min(MAX_RUNS);
    let _ = writeln!(
        s,
        "Target `tracer-user/tests/go_targets/go_parked`, {runs} runs per case, each on a fresh target once it printed \
         `ready`. First report: from spawning `tracer attach --format json` to its first `deadlock` / `stuck_lock` line \
         arriving on the bench's pipe (checked against the goroutine ids and lock address the target printed). \
         Snapshot cost: the tracer's note (average over the snapshots of the run: the one at attach and the periodic ones \
         up to {:.1} s after the report) divided by the goroutines in the last snapshot. Peak RSS: the tracer's `VmHWM` \
         just before SIGINT.\n",
        AFTER_REPORT.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| case | first report (median) | max | goal | verdict | snapshots | ms per snapshot | goroutines | µs per goroutine | peak RSS |"
    );
    let _ = writeln!(s, "|---|---:|---:|---|---|---:|---:|---:|---:|---:|");
    let mut failures = Vec::new();
    for case in &CASES {
        let mut done = Vec::new();
        for run in 1..=runs {
            match parked_run(tools, &target_bin, case) {
                Ok(r) => {
                    eprintln!(
                        "bench (e): {} run {run}/{runs}: first report after {} ms, {} snapshots of {:.1} ms, {} goroutines",
                        case.label(),
                        r.first_report.as_millis(),
                        r.snapshots,
                        r.ms_per_snapshot,
                        r.goroutines
                    );
                    done.push(r);
                }
                Err(err) => {
                    eprintln!(
                        "bench (e): {} run {run}/{runs} FAILED: {err:#}",
                        case.label()
                    );
                    failures.push(format!("{}: {err:#}", case.label()));
                }
            }
        }
        if done.is_empty() {
            let _ = writeln!(s, "| {} | no data | | | | | | | | |", case.label());
            continue;
        }
        s.push_str(&case_row(case, &done));
    }
    for msg in failures {
        let _ = writeln!(s, "\n- failed run: {msg}");
    }
    s.push('\n');
    s
}

/// The table row of `case` over its successful runs.
fn case_row(case: &Case, done: &[ParkedRun]) -> String {
    let ms = |f: fn(&ParkedRun) -> f64| done.iter().map(f).collect::<Vec<_>>();
    let report_ms = ms(|r| r.first_report.as_secs_f64() * 1e3);
    #[expect(clippy::cast_precision_loss, reason = "goroutine counts")]
    let per_goroutine_us = ms(|r| r.ms_per_snapshot * 1e3 / r.goroutines.max(1) as f64);
    #[expect(clippy::cast_precision_loss, reason = "counts")]
    let snapshots = ms(|r| r.snapshots as f64);
    #[expect(clippy::cast_precision_loss, reason = "counts")]
    let goroutines = ms(|r| r.goroutines as f64);
    let rss: Vec<f64> = done.iter().filter_map(|r| r.peak_rss_mb).collect();
    let worst = max(&report_ms);
    let goal_ms = FIRST_REPORT_GOAL.as_secs_f64() * 1e3;
    let (goal, verdict_text) = if case.judged {
        (
            format!("≤ {goal_ms:.0} ms"),
            verdict(worst <= goal_ms, &format!("worst {worst:.0} ms")),
        )
    } else if case.report == Report::Stuck {
        let after = case.stuck_after.unwrap_or(1.0);
        (
            format!("none (≥ the {after} s `--stuck-after` by design)"),
            String::new(),
        )
    } else {
        ("none".to_owned(), String::new())
    };
    format!(
        "| {} | {:.0} ms | {worst:.0} ms | {goal} | {verdict_text} | {:.0} | {:.1} | {:.0} | {:.2} | {} |\n",
        case.label(),
        median(&report_ms),
        median(&snapshots),
        median(&ms(|r| r.ms_per_snapshot)),
        median(&goroutines),
        median(&per_goroutine_us),
        if rss.is_empty() {
            "?".to_owned()
        } else {
            format!("{:.1} MB", max(&rss))
        },
    )
}
