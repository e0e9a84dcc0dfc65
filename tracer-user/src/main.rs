//! `tracer`: lock contention and deadlock tracing for unmodified Linux processes.
use std::{
    io::{self, IsTerminal as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tracer_user::{
    exports,
    go::tracker,
    lockstats,
    probes::{Hooks, LeanWaits, Probes, SwitchHook, WaitEnds},
    recording, serve,
    session::{self, Config, SleepSample},
    sinks::{self, Format},
    symbols,
    target::{LiveProcess, TargetProcess as _, find_libc},
};

#[derive(Parser)]
#[command(
    name = "tracer",
    version,
    about = "Lock contention and deadlock tracer for running processes (eBPF)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to a running process: report deadlocks as they form, then a per-lock summary.
    Attach {
        /// Process to trace.
        #[arg(long)]
        pid: u32,
        /// Stop after this many seconds (default: until Ctrl-C, SIGTERM or the target exits).
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
        /// Output format: human-readable text, or newline-delimited JSON.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Also trace every lock acquisition and release (uprobes on glibc's lock
        /// functions): hold times and each thread's held locks, at a higher cost.
        #[arg(long)]
        holds: bool,
        /// Build no lock-order graph from the traced acquisitions: no lock-order
        /// inversions are reported (to measure what the graph costs).
        #[arg(long)]
        no_lock_order: bool,
        /// Report a lock as stuck when it has waiters and no release for this long (Go
        /// targets).
        #[arg(long, value_name = "SECS", default_value_t = 1.0)]
        stuck_after: f64,
        /// Drain events at this real-time priority (1-99), like `perf record --realtime`:
        /// for targets whose real-time threads would otherwise keep the tracer off the CPU.
        #[arg(long, value_name = "PRIO", value_parser = clap::value_parser!(u8).range(1..=99))]
        realtime: Option<u8>,
        /// Print the eBPF programs' diagnostics on stderr (`tracer: bpf: …`): the paths
        /// they should not take (a full ring buffer, unreadable target memory, a stack the
        /// kernel would not record…). Off, the kernel drops the code that sends them.
        #[arg(long)]
        bpf_log: bool,
        /// Locks tracked at most: past that, the least waited on are folded into one
        /// "other locks" aggregate, so the tracer's memory stays bounded.
        #[arg(long, value_name = "N",
              default_value_t = u32::try_from(lockstats::DEFAULT_MAX_LOCKS).unwrap_or(u32::MAX),
              value_parser = clap::value_parser!(u32).range(1..))]
        max_locks: u32,
        /// Text output: show the N most waited-on locks in the summary table.
        #[arg(long, value_name = "N", default_value_t = sinks::DEFAULT_TOP_LOCKS)]
        top: usize,
        /// Text output: show every tracked lock in the summary table (overrides --top).
        #[arg(long)]
        all_locks: bool,
        /// Look for separate debug files (by build id, `DIR/.build-id/xx/rest.debug`, and
        /// by `.gnu_debuglink`) in DIR instead of /usr/lib/debug (repeatable).
        #[arg(long = "debug-dir", value_name = "DIR")]
        debug_dirs: Vec<PathBuf>,
        #[command(flatten)]
        filters: FilterArgs,
        /// Draw the wait-for graph at each finding and at the end (with --holds, also the
        /// lock-order graph) as Graphviz DOT in FILE, one digraph each, rendered to
        /// FILE.N.svg when Graphviz is installed.
        #[arg(long, value_name = "FILE")]
        graph: Option<PathBuf>,
        #[command(flatten)]
        exports: ExportArgs,
    },
    /// Trace like `attach`, but keep the findings and the summary in FILE (with the
    /// target's identity) for `tracer report`, instead of printing them.
    Record(RecordArgs),
    /// Report a recording made by `tracer record`: the same findings and summary as the
    /// live run, without the target.
    Report {
        /// The recording.
        file: PathBuf,
        /// Output format: human-readable text, or newline-delimited JSON.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// Text output: show the N most waited-on locks in the summary table.
        #[arg(long, value_name = "N", default_value_t = sinks::DEFAULT_TOP_LOCKS)]
        top: usize,
        /// Text output: show every recorded lock in the summary table (overrides --top).
        #[arg(long)]
        all_locks: bool,
        #[command(flatten)]
        filters: FilterArgs,
        /// Draw the graphs the live run had as Graphviz DOT in FILE: the wait-for graph
        /// at each finding and at the end, the lock-order graph with --holds (a
        /// recording by an older tracer: each deadlock's cycle and inversion's orders).
        #[arg(long, value_name = "FILE")]
        graph: Option<PathBuf>,
        /// The recorded run's profiles, analysed again from the recording's tape
        /// (a native target's): the same files `attach` writes.
        #[command(flatten)]
        exports: ExportArgs,
    },
    /// Run as a sidecar: trace every process the selectors match, now and later, until
    /// SIGTERM; findings as NDJSON on stdout, Prometheus metrics and pprof contention
    /// profiles over HTTP.
    Serve(ServeArgs),
    /// A live full-screen view of a process's locks, refreshed every second: locks ranked
    /// by wait time over a sliding window, the wait-for chains now, findings as banners.
    /// Keys: s cycles the sort (or w wait, c contentions/s, p p99, m max, n waiters now),
    /// / filters by name, Enter or o opens the selected lock's waiter and holder stacks,
    /// q or Ctrl-C quits (every probe detached). Percentiles are bucket bounds ("<2.50ms":
    /// at most) from the histogram differences over the window; waiters, holders and
    /// chains are native threads'. `NO_COLOR` or `TERM=dumb`: no colours.
    Top(TopArgs),
    /// Benchmark support: attach empty programs on the same hooks (the cost floor).
    #[command(hide = true)]
    Floor {
        #[arg(long)]
        pid: u32,
        /// Also empty uprobes on lock entry, lock return and unlock.
        #[arg(long)]
        uprobes: bool,
        /// Also an empty program on every Go lock site (Go targets).
        #[arg(long)]
        go: bool,
        /// Leave `sys_exit` out: the floor of a hook set that times wait ends at
        /// `sched_switch` alone.
        #[arg(long)]
        no_sys_exit: bool,
        #[arg(long, value_name = "SECS")]
        duration: f64,
    },
}

/// `tracer record`'s arguments.
#[derive(clap::Args)]
struct RecordArgs {
    /// Process to trace.
    #[arg(long)]
    pid: u32,
    /// Stop after this many seconds (default: until Ctrl-C, SIGTERM or the target exits).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Also trace every lock acquisition and release (see `attach --holds`).
    #[arg(long)]
    holds: bool,
    /// Report a Go lock as stuck when it has waiters and no release for this long.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    stuck_after: f64,
    /// Where to write the recording (replaced if it exists).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Also print the report on stdout as the trace goes, in this format (as `attach`
    /// would).
    #[arg(long, value_enum, value_name = "FORMAT")]
    print: Option<OutputFormat>,
}

/// `tracer record`: a session whose sink is the recording. A session that fails to
/// start leaves no file behind.
fn record(
    runtime: &tokio::runtime::Runtime,
    args: &RecordArgs,
    found: &mut sinks::Outcome,
) -> anyhow::Result<()> {
    let config = Config {
        pid: args.pid,
        duration: duration(args.duration)?,
        holds: args.holds,
        stuck_after: positive_secs(args.stuck_after, "--stuck-after")?,
        realtime: None,
        bpf_log: false,
        max_locks: lockstats::DEFAULT_MAX_LOCKS,
        lock_order: true,
        debug_dirs: debug_dirs(&[])?,
        wait_ends: WaitEnds::AtSysExit,
        switch_hook: SwitchHook::Own,
        drain_interval: session::DRAIN_INTERVAL,
        sleep_sample: SleepSample::UpTo(0),
    };
    let target = LiveProcess::new(args.pid);
    if !target.exists() {
        anyhow::bail!("no such process: {}", args.pid);
    }
    let header = recording::header_of(&target, args.holds);
    let shown = args.output.display();
    let mut sink = recording::RecordingSink::create(&args.output, &header)
        .with_context(|| format!("cannot write {shown}"))?;
    let traced = {
        let mut stdout = io::stdout().lock();
        let mut printed = args.print.map(|format| {
            sinks::for_format(
                sink_format(format),
                Some(sinks::DEFAULT_TOP_LOCKS),
                &mut stdout,
            )
        });
        let mut both = recording::Tee {
            first: &mut sink,
            second: printed.as_deref_mut(),
        };
        let reader = args.print.and_then(|_| sinks::ReaderWatch::stdout());
        let mut counted = sinks::OutcomeSink::new(&mut both, found);
        runtime.block_on(session::run(config, &mut counted, reader.as_ref()))
    };
    if let Err(err) = traced {
        drop(sink);
        let _ = std::fs::remove_file(&args.output);
        return Err(err.into());
    }
    eprintln!(
        "tracer: recorded {} finding(s) and the summary to {shown}",
        sink.findings()
    );
    Ok(())
}

/// `tracer report`: the recording's findings and summary on stdout, its notes on stderr.
fn report(
    file: &std::path::Path,
    (format, top): (OutputFormat, Option<usize>),
    (filters, exports): (&FilterArgs, &ExportArgs),
    graph: Option<&std::path::Path>,
    found: &mut sinks::Outcome,
) -> anyhow::Result<()> {
    let recorded = recording::open(file)?;
    let mut stdout = io::stdout().lock();
    let mut sink = sinks::for_format(sink_format(format), top, &mut stdout);
    let dot = graph_sink(graph)?;
    // The graphs the live run drew, when it recorded them; else each finding's own.
    let mut drawn = if recorded.graphs.is_empty() {
        sinks::WithGraphs::from_findings(sink.as_mut(), dot)
    } else {
        sinks::WithGraphs::new(sink.as_mut(), dot)
    };
    let mut filtered = sinks::FilterSink::new(&mut drawn, filters.filter());
    let mut counted = sinks::OutcomeSink::new(&mut filtered, found);
    let reported = recording::report_recording(file, &recorded, &mut counted)?;
    for note in &reported.notes {
        eprintln!("tracer: note: {note}");
    }
    let paths = exports.paths(reported.holds)?;
    if !paths.is_empty() {
        let Some(profiles) = reported.profiles else {
            anyhow::bail!(
                "{}: no profile to export: the recording has no analysis tape of a native target (a Go target's, or one made by an older tracer)",
                file.display()
            );
        };
        for path in exports::write_exports(&paths, &profiles)? {
            eprintln!("tracer: wrote {}", path.display());
        }
    }
    Ok(())
}

fn sink_format(format: OutputFormat) -> Format {
    match format {
        OutputFormat::Text => Format::Text,
        OutputFormat::Json => Format::Json,
    }
}

/// `tracer top`'s arguments.
#[derive(clap::Args)]
struct TopArgs {
    /// Process to trace.
    #[arg(long)]
    pid: u32,
    /// Also trace every lock acquisition and release: holders of every lock, their
    /// stacks, lock-order inversions, at a higher cost.
    #[arg(long)]
    holds: bool,
    /// The sliding window rates and percentiles are computed over, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    window: u64,
    /// Report a Go lock as stuck when it has waiters and no release for this long.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    stuck_after: f64,
}

/// `tracer serve`'s arguments.
#[derive(clap::Args)]
struct ServeArgs {
    /// A process to trace (repeatable); not followed once it exits.
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Trace every process whose executable's file name is NAME, now and later
    /// (repeatable): a restarted service is followed under its new PID.
    #[arg(long = "exe", value_name = "NAME")]
    exes: Vec<String>,
    /// Trace every process in this cgroup v2 directory or below it, now and later
    /// (repeatable): a pod's, a systemd unit's (`system.slice/nginx.service`).
    #[arg(long = "cgroup", value_name = "PATH")]
    cgroups: Vec<String>,
    /// Where to serve /metrics, /debug/pprof/contention and /healthz.
    #[arg(long, value_name = "ADDR", default_value = tracer_user::serve::DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
    /// Locks per target with their own metric series (the most waited on); the
    /// rest are summed under lock="other".
    #[arg(long, value_name = "N", default_value_t = 20)]
    top_locks: usize,
    /// How long the series of a target that exited are kept, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    grace: f64,
    /// Also trace every lock acquisition and release (hold times), at a higher cost.
    #[arg(long)]
    holds: bool,
    /// Also count the waits that return without sleeping (most contentions of a hot
    /// lock), futex wakes and timeouts, as `attach` does, by hooking every system call's
    /// return: ~4% of a lock-bound workload's throughput instead of ~0.
    #[arg(long)]
    brief_waits: bool,
    /// Sleeping futex waits a second, per target, traced one by one. Beyond that the
    /// kernel traces one in P, drawn by a hash of the thread and its switch count (P a
    /// power of two, chosen again each second) and each counts for P in the metrics and
    /// profiles, as Go's mutex profile scales its samples; deadlocks and stuck locks are
    /// still found (a wait left out that lasts is read from /proc). 0 traces every one: a target that sleeps tens of thousands
    /// of times a second then pays ~2% of its throughput.
    #[arg(long, value_name = "N", default_value_t = 2000)]
    max_sleeps_per_second: u32,
    /// Context switches a second, per CPU of the host, that the `sched_switch` hook may run
    /// on. It runs on every switch of the host, traced or not, so beyond that (on a busy
    /// host) it is attached one slice of 2 s in D (D a power of two, up to 64, chosen
    /// again each slice) and detached the rest of the time; each wait traced then counts
    /// for D more. Deadlocks and stuck locks are still found (from /proc). 0 keeps it
    /// attached. Only in the default mode (not with --holds or --brief-waits).
    #[arg(long, value_name = "N",
          default_value_t = tracer_user::serve::hook_duty::DEFAULT_MAX_SWITCHES_PER_CPU)]
    max_switches_per_cpu: u64,
    /// Detach the `sched_switch` hook for all but one slice in D, whatever the host's
    /// rate: for tests of the duty cycle.
    #[arg(long, hide = true, value_name = "D", conflicts_with_all = ["holds", "brief_waits"],
          value_parser = clap::value_parser!(u32).range(1..=64))]
    switch_duty_factor: Option<u32>,
    /// Trace one sleeping wait in P, always (for tests of what sampling leaves out).
    #[arg(long, hide = true, value_name = "P", conflicts_with = "brief_waits",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(tracer_common::MAX_SLEEP_SAMPLE_PERIOD)))]
    sleep_sample_period: Option<u32>,
    /// Send every sleeping wait lean (no lock memory or stack at the sleep; read from
    /// userspace when it sleeps long), not only the unsampled ones: for tests.
    #[arg(long, hide = true, conflicts_with = "brief_waits")]
    all_waits_lean: bool,
    /// Served processes the shared `sched_switch` program takes; the others attach their
    /// own (as beyond its 1024): for tests of that path.
    #[arg(long, hide = true, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(tracer_common::SWITCH_SLOTS)))]
    dispatch_slots: Option<u32>,
    /// Report a Go lock as stuck when it has waiters and no release for this long.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    stuck_after: f64,
    /// Locks tracked at most per target (see `attach --max-locks`).
    #[arg(long, value_name = "N",
          default_value_t = u32::try_from(lockstats::DEFAULT_MAX_LOCKS).unwrap_or(u32::MAX),
          value_parser = clap::value_parser!(u32).range(1..))]
    max_locks: u32,
    /// Where to look for separate debug files (see `attach --debug-dir`; repeatable).
    #[arg(long = "debug-dir", value_name = "DIR")]
    debug_dirs: Vec<PathBuf>,
}

/// The summary's filters and thresholds (`attach`, and `report` on a recording).
#[derive(clap::Args)]
struct FilterArgs {
    /// Report only this lock in the summary's table: its name, or its address `0x…`
    /// (repeatable: any of them). Findings are never filtered.
    #[arg(long = "lock", value_name = "NAME|ADDR", value_parser = clap::value_parser!(sinks::filter::LockSelector))]
    locks: Vec<sinks::filter::LockSelector>,
    /// Report only locks of this type in the summary's table (repeatable): `mutex`,
    /// `rwlock`, `pi_mutex`, `futex`, `go_mutex`, `go_rwmutex`, `rust_mutex`, …
    #[arg(long = "type", value_name = "TYPE", value_parser = sinks::filter::parse_kind)]
    kinds: Vec<tracer_user::model::LockKind>,
    /// Leave out of the table (and its stacks) the locks whose waits were all shorter
    /// than this (`50us`, `2ms`): they are counted in the summary, not reported.
    #[arg(long, value_name = "DURATION", value_parser = sinks::filter::parse_duration)]
    min_wait: Option<Duration>,
}

impl FilterArgs {
    fn filter(&self) -> sinks::LockFilter {
        sinks::LockFilter {
            locks: self.locks.clone(),
            kinds: self.kinds.clone(),
            min_wait: self.min_wait.unwrap_or_default(),
        }
    }
}

/// The `--graph FILE` sink, created (truncated) before the trace so a bad path fails at
/// once (`attach`, and `report`).
fn graph_sink(path: Option<&std::path::Path>) -> anyhow::Result<Option<sinks::DotSink>> {
    path.map(|p| {
        sinks::DotSink::create(p).with_context(|| format!("--graph {}: cannot create", p.display()))
    })
    .transpose()
}

/// The exit status that says what a run found (`tracer attach`, `tracer report`), as
/// the README's "Exit status" documents: 0 nothing, 3 a deadlock, 4 a stuck lock, 5 a
/// lock-order inversion, the most severe when several were found (1 is an error, 2 bad
/// usage).
fn exit_status(found: &sinks::Outcome) -> ExitCode {
    ExitCode::from(found.exit_code())
}

/// Files written at the end of a run from its lock waits.
#[derive(clap::Args)]
struct ExportArgs {
    /// Write the run's lock waits by waiting stack as a gzipped pprof profile (Go's
    /// mutex-profile sample types, lock names as labels): `go tool pprof FILE`. With
    /// --holds, also the waits by the stack that held the lock, to FILE with `.holders`
    /// before its extensions (see --pprof-holders).
    #[arg(long, value_name = "FILE")]
    pprof: Option<PathBuf>,
    /// With --holds: where the holders' pprof profile goes.
    #[arg(long, value_name = "FILE")]
    pprof_holders: Option<PathBuf>,
    /// Write folded stacks: `lock;outermost;...;innermost N`, N the total wait in
    /// nanoseconds, one line per lock and stack (flame-graph tools read them).
    #[arg(long, value_name = "FILE")]
    folded: Option<PathBuf>,
    /// Write an SVG flame graph of the lock waits (widths in wait time, locks at the root).
    #[arg(long, value_name = "FILE")]
    flamegraph: Option<PathBuf>,
}

impl ExportArgs {
    fn paths(&self, holds: bool) -> anyhow::Result<exports::ExportPaths> {
        Ok(exports::ExportPaths::from_flags(
            self.pprof.clone(),
            self.pprof_holders.clone(),
            self.folded.clone(),
            self.flamegraph.clone(),
            holds,
        )?)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

fn duration(secs: Option<f64>) -> anyhow::Result<Option<Duration>> {
    secs.map(|s| {
        Duration::try_from_secs_f64(s)
            .context("--duration must be a non-negative number of seconds")
    })
    .transpose()
}

/// The serve's configuration from its arguments.
fn serve_config(args: &ServeArgs) -> anyhow::Result<serve::ServeConfig> {
    let stuck_after = positive_secs(args.stuck_after, "--stuck-after")?;
    let grace = Duration::try_from_secs_f64(args.grace)
        .context("--grace must be a non-negative number of seconds")?;
    Ok(serve::ServeConfig {
        pids: args.pids.clone(),
        exes: args.exes.clone(),
        cgroups: args.cgroups.clone(),
        listen: args.listen,
        top_locks: args.top_locks,
        grace,
        session: Config {
            pid: 0,
            duration: None,
            holds: args.holds,
            stuck_after,
            realtime: None,
            bpf_log: false,
            max_locks: usize::try_from(args.max_locks).unwrap_or(usize::MAX),
            lock_order: true,
            debug_dirs: debug_dirs(&args.debug_dirs)?,
            wait_ends: if args.brief_waits {
                WaitEnds::AtSysExit
            } else if args.all_waits_lean {
                WaitEnds::AtSwitchIn(LeanWaits::All)
            } else {
                WaitEnds::AtSwitchIn(LeanWaits::Unsampled)
            },
            switch_hook: SwitchHook::Shared,
            drain_interval: session::SERVE_DRAIN_INTERVAL,
            sleep_sample: match args.sleep_sample_period {
                Some(period) => SleepSample::Fixed(period),
                None => SleepSample::UpTo(args.max_sleeps_per_second),
            },
        },
        dispatch_slots: args.dispatch_slots,
        max_switches_per_cpu: if args.holds || args.brief_waits {
            0
        } else {
            args.max_switches_per_cpu
        },
        switch_duty_factor: args.switch_duty_factor,
    })
}

/// The `--debug-dir` directories, each checked to be one (a mistyped path would only
/// make names silently go missing).
fn debug_dirs(dirs: &[PathBuf]) -> anyhow::Result<symbols::DebugDirs> {
    if let Some(bad) = dirs.iter().find(|d| !d.is_dir()) {
        anyhow::bail!("--debug-dir {}: not a directory", bad.display());
    }
    Ok(symbols::DebugDirs::given(dirs.to_vec()))
}

/// `secs` as a positive duration, or an error naming `flag`.
fn positive_secs(secs: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds"))
}

fn main() -> ExitCode {
    tracer_user::probes::keep_large_allocations_mapped();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let mut found = sinks::Outcome::default();
    match run(&cli, &mut found) {
        Ok(()) => exit_status(&found),
        // `tracer … | head -1`: the reader has what it wanted and closed the pipe, which
        // is how a pipeline stops its producer, not a failure. The session has ended
        // and detached (as on any exit), so there is nothing more to say but what the
        // run found (a deadlock piped to `head -1` still exits 3).
        Err(err) if is_broken_pipe(&err) => exit_status(&found),
        Err(err) => {
            // One line: the error and its causes.
            let mut line = format!("tracer: error: {err}");
            for cause in err.chain().skip(1) {
                line.push_str(": ");
                line.push_str(&cause.to_string());
            }
            eprintln!("{line}");
            ExitCode::FAILURE
        }
    }
}

/// `tracer top`: the session on this thread, the view on its own; returns once both
/// ended (the view quit and the session detached, or the session ended).
fn top(runtime: &tokio::runtime::Runtime, args: &TopArgs) -> anyhow::Result<()> {
    use tracer_user::top::{self, TopSettings, sink::TopSink, terminal};
    if args.window == 0 {
        anyhow::bail!("--window must be a positive number of seconds");
    }
    // Checked before the attach: a view with nowhere to draw would trace for nothing.
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        anyhow::bail!(
            "tracer top draws on a terminal: its standard input and output must be one (use `tracer attach` for a report)"
        );
    }
    let config = Config {
        pid: args.pid,
        duration: None,
        holds: args.holds,
        stuck_after: positive_secs(args.stuck_after, "--stuck-after")?,
        realtime: None,
        bpf_log: false,
        max_locks: lockstats::DEFAULT_MAX_LOCKS,
        lock_order: true,
        debug_dirs: symbols::DebugDirs::given(Vec::new()),
        wait_ends: WaitEnds::AtSysExit,
        switch_hook: SwitchHook::Own,
        drain_interval: session::DRAIN_INTERVAL,
        sleep_sample: SleepSample::UpTo(0),
    };
    let settings = TopSettings {
        window: Duration::from_secs(args.window),
        colour: top::colour_allowed(
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
        ),
    };
    let (requests, link_requests) = tokio::sync::mpsc::unbounded_channel();
    let (alerts, alerts_received) = std::sync::mpsc::channel();
    let view = std::thread::Builder::new()
        .name("tracer-top".to_owned())
        .spawn(move || terminal::run_view(&requests, &alerts_received, &settings))?;
    let mut sink = TopSink::new(alerts);
    let link = session::LiveLink {
        requests: link_requests,
        top_locks: top::TOP_SNAPSHOT_LOCKS,
    };
    let traced = runtime.block_on(session::run_served(config, &mut sink, link));
    let viewed = view
        .join()
        .map_err(|_| anyhow::anyhow!("the view's thread panicked"))?;
    traced?;
    if viewed? == terminal::ViewEnd::SessionEnded {
        for note in &sink.notes {
            eprintln!("tracer: {note}");
        }
    }
    Ok(())
}

/// Whether `err` comes from writing to a pipe whose reader has gone.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// `tracer attach` with exports: the trace, then the files written from its profiles.
async fn attach_exporting(
    config: Config,
    sink: &mut dyn sinks::Sink,
    reader: Option<&sinks::ReaderWatch>,
    exports: &exports::ExportPaths,
) -> anyhow::Result<()> {
    let request = session::ExportRequest {
        holders: exports.pprof_holders.is_some(),
    };
    let profiles = session::run_exporting(config, sink, reader, request).await?;
    if let Some(profiles) = profiles {
        for path in exports::write_exports(exports, &profiles)? {
            eprintln!("tracer: wrote {}", path.display());
        }
    }
    Ok(())
}

/// Runs the command; what the findings were goes into `found`, for the exit status.
fn run(cli: &Cli, found: &mut sinks::Outcome) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Attach {
            pid,
            duration: secs,
            format,
            holds,
            no_lock_order,
            stuck_after,
            realtime,
            bpf_log,
            max_locks,
            top,
            all_locks,
            ref debug_dirs,
            ref filters,
            ref graph,
            ref exports,
        } => {
            let exports = exports.paths(holds)?;
            let stuck_after = positive_secs(stuck_after, "--stuck-after")?;
            let config = Config {
                pid,
                duration: duration(secs)?,
                holds,
                stuck_after,
                realtime,
                bpf_log,
                max_locks: usize::try_from(max_locks).unwrap_or(usize::MAX),
                lock_order: !no_lock_order,
                debug_dirs: self::debug_dirs(debug_dirs)?,
                wait_ends: WaitEnds::AtSysExit,
                switch_hook: SwitchHook::Own,
                drain_interval: session::DRAIN_INTERVAL,
                sleep_sample: SleepSample::UpTo(0),
            };
            let reader = sinks::ReaderWatch::stdout();
            let mut stdout = io::stdout().lock();
            let mut sink = sinks::for_format(
                match format {
                    OutputFormat::Text => Format::Text,
                    OutputFormat::Json => Format::Json,
                },
                (!all_locks).then_some(top),
                &mut stdout,
            );
            let dot = graph_sink(graph.as_deref())?;
            let mut drawn = sinks::WithGraphs::new(sink.as_mut(), dot);
            let mut filtered = sinks::FilterSink::new(&mut drawn, filters.filter());
            let mut counted = sinks::OutcomeSink::new(&mut filtered, found);
            if exports.is_empty() {
                runtime.block_on(session::run(config, &mut counted, reader.as_ref()))?;
                return Ok(());
            }
            runtime.block_on(attach_exporting(
                config,
                &mut counted,
                reader.as_ref(),
                &exports,
            ))
        }
        Command::Record(ref args) => record(&runtime, args, found),
        Command::Report {
            ref file,
            format,
            top,
            all_locks,
            ref filters,
            ref graph,
            ref exports,
        } => report(
            file,
            (format, (!all_locks).then_some(top)),
            (filters, exports),
            graph.as_deref(),
            found,
        ),
        Command::Top(ref args) => top(&runtime, args),
        Command::Serve(ref args) => runtime
            .block_on(serve::serve(serve_config(args)?))
            .map_err(Into::into),
        Command::Floor {
            pid,
            uprobes,
            go,
            no_sys_exit,
            duration: secs,
        } => floor(&runtime, pid, (uprobes, go, !no_sys_exit), secs),
    }
}

/// The hidden `tracer floor`: empty programs on the tracer's hooks, for the benchmark.
fn floor(
    runtime: &tokio::runtime::Runtime,
    pid: u32,
    (uprobes, go, sys_exit): (bool, bool, bool),
    secs: f64,
) -> anyhow::Result<()> {
    let target = LiveProcess::new(pid);
    if !target.exists() {
        anyhow::bail!("no such process: {pid}");
    }
    let maps = target.maps()?;
    let libc: Option<PathBuf> = find_libc(&maps).map(|p| target.host_path(&p));
    let go_target = if go {
        Some(
            tracker::inspect(&target, &maps, tracker::GoProbeMode::Holds)?
                .context("--go: not a Go program")?,
        )
    } else {
        None
    };
    let go_attach = go_target.as_ref().map(tracker::GoTarget::probe_sites);
    let probes = Probes::attach(
        pid,
        Hooks::Floor { uprobes, sys_exit },
        libc.as_deref(),
        go_attach.as_ref(),
        false,
    )?;
    let wait = duration(Some(secs))?.unwrap_or_default();
    runtime.block_on(async {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
    drop(probes);
    writeln!(io::stdout(), "floor: detached")?;
    Ok(())
}
