//! A live attach: the tokio loop that drains the probes in batches, feeds the analysis,
//! confirms deadlock candidates against the live process, prints findings the moment
//! they are confirmed, and prints the summary at the end.
//!
//! This module keeps the orchestration (attach, the drain loop, the end of the trace).
//! Every read of the target goes through one [`TargetProcess`], shared with the Go
//! tracker and the return-address check, so the parts that read it are unit-tested
//! against a made-up process: adopting the threads blocked at attach (`adopt`), the
//! confirmation of candidates (`confirm`), and
//! the target's threads as the analysis needs them (`threads`). The target's maps and
//! executable are read once, at attach (the maps again only to find the uretprobe
//! trampoline, which the kernel maps later).
mod adopt;
mod adopted_ends;
mod clock;
mod confirm;
mod exec_watch;
mod export;
mod graph;
mod live;
mod long_sleeps;
mod order;
mod rust_holders;
mod sleep_sampling;
pub use sleep_sampling::SleepSample;
mod tape;
#[cfg(test)]
pub(crate) mod test_support;
mod threads;

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use thiserror::Error;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use self::{
    clock::{monotonic_ns, realtime_ahead_ns},
    confirm::{EntryTimeout, TimedCycles},
    threads::LiveThreads,
};
pub use self::{
    export::ExportRequest,
    live::{LiveLink, LiveRequest},
};
use crate::{
    assemble::{self, Namer, Naming as _},
    event::{Record, StackWindow, TraceEvent, decode},
    go::tracker::{self, GoProbeMode, GoTracker},
    lock_names::LockOwners,
    lockstats,
    model::{
        HolderEvidence, LockKind, LockSummary, OtherLocks, Summary,
        graph::GraphSnapshot,
        live::TargetSnapshot,
        raw::{RawCycleEntry, RawFinding, RawLockStats, RawStack},
    },
    native::{
        self, LockLayout,
        analysis::{Analysis, WINDOW_ONLY_STACK},
        rust_lock,
        waitgraph::Cycle,
    },
    probes::{CounterTotals, GoSites, Hooks, LeanWaits, ProbeError, Probes, SwitchHook, WaitEnds},
    realtime::{self, RealtimeGuard},
    recording,
    sinks::{ReaderWatch, Sink},
    symbols::{self, Symbolizer},
    target::{
        CLibrary, LibcFlavor, LiveProcess, MapEntry, ProcError, RealtimeThreads, TargetProcess,
        Untraceable, identify_c_library,
    },
    unwind::CodeCheck,
};

/// Shortest time between two drains of the ring buffer (`attach`, `top`, `record`):
/// records arriving meanwhile wait and are analysed in one batch. Bounds the report
/// latency of a deadlock (goal: 100 ms) from below.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// `tracer serve`'s: each drain wakes the tracer and its runtime, a cost a sidecar
/// pays for weeks; at 25 ms a busy target costs the serve ~2.5 ms of CPU a second less
/// than at 10 ms (BENCHMARKS.md (i)), its 4 MiB ring buffer still holds ~160 MB/s, and
/// a deadlock is still reported well within 100 ms.
pub const SERVE_DRAIN_INTERVAL: Duration = Duration::from_millis(25);
/// Longest the loop sleeps when no record comes (it sleeps only once a drain found none,
/// and has the programs wake it for the next record: `Probes::set_reader_polls`):
/// periodic work (brief-wait totals, rescans, the target's liveness) runs at this pace at
/// the least, and a quiet target costs the tracer only these wakeups.
const IDLE_INTERVAL: Duration = Duration::from_millis(250);
/// Records drained between checks of the time budget.
const DRAIN_CHUNK: usize = 4096;
/// Longest one drain may run before the loop looks at signals, the deadline and deadlock
/// candidates again.
const DRAIN_BUDGET: Duration = Duration::from_millis(50);
/// Longest the last drain, when the trace stops, may run: a tracer that fell behind
/// reads what it can of the backlog (a stop must stay prompt: the probes still fire
/// meanwhile), and a note says if records were left.
const FINAL_DRAIN_BUDGET: Duration = Duration::from_secs(1);
/// How often the whole graph is re-scanned for cycles that closed through a holder update.
const RESCAN_INTERVAL: Duration = Duration::from_millis(250);

/// How long the symbolizer's objects may load ahead of need; the rest load when needed.
const PRELOAD_BUDGET: Duration = Duration::from_secs(2);

/// What one drain of the ring buffer found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drain {
    /// No record: the target is quiet.
    Empty,
    /// Records, all read.
    CaughtUp,
    /// Records, and it stopped on its time budget with more possibly left (no wakeup
    /// comes for those: the kernel wakes the reader only once it has caught up).
    Backlog,
}

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub pid: u32,
    pub duration: Option<Duration>,
    pub holds: bool,
    /// A Go lock with waiters and no release for this long is reported as stuck.
    pub stuck_after: Duration,
    /// Drain at this `SCHED_FIFO` priority (`crate::realtime`), if any.
    pub realtime: Option<u8>,
    /// Turn on the eBPF programs' diagnostics and print them on stderr (`--bpf-log`).
    pub bpf_log: bool,
    /// Native locks tracked before the coldest are folded (`--max-locks`).
    pub max_locks: usize,
    /// Build the lock-order graph from the traced acquisitions (`--no-lock-order` turns
    /// it off: `crate::lock_order`).
    pub lock_order: bool,
    /// Where separate debug files are looked for (`--debug-dir`).
    pub debug_dirs: symbols::DebugDirs,
    /// Where the kernel side times a futex wait's end (`tracer serve`: at switch-in,
    /// unless `--brief-waits`).
    pub wait_ends: WaitEnds,
    /// How the target's `sched_switch` program is reached (`tracer serve`: through the
    /// one all its targets share).
    pub switch_hook: SwitchHook,
    /// Shortest time between two drains of the ring buffer ([`DRAIN_INTERVAL`], or
    /// [`SERVE_DRAIN_INTERVAL`]).
    pub drain_interval: Duration,
    /// With wait ends timed at switch-in: how the kernel samples the target's sleeps
    /// ([`sleep_sampling`]).
    pub sleep_sample: SleepSample,
}

/// How a trace ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TraceEnd {
    /// The duration ended, or SIGINT/SIGTERM.
    Stopped,
    /// The target exited.
    TargetExited,
    /// Whatever read the output went away: nobody is left to read a report.
    ReaderGone,
}

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("no such process: {pid}")]
    NoSuchProcess { pid: u32 },
    /// The id exists but is not a process the tracer can trace.
    #[error(transparent)]
    Untraceable(Untraceable),
    #[error(
        "not privileged: tracing needs root, or CAP_BPF and CAP_PERFMON (and CAP_SYS_PTRACE to read the target)"
    )]
    NotPrivileged(#[source] ProbeError),
    #[error(
        "kernel BTF is unavailable at /sys/kernel/btf/vmlinux: the kernel needs CONFIG_DEBUG_INFO_BTF"
    )]
    NoBtf,
    #[error("process {pid} exited while the tracer was attaching")]
    ExitedDuringAttach { pid: u32 },
    #[error("cannot attach to process {pid}")]
    Attach {
        pid: u32,
        #[source]
        source: ProbeError,
    },
    #[error("cannot read process {pid}")]
    Proc {
        pid: u32,
        #[source]
        source: ProcError,
    },
    #[error("cannot run at real-time priority {priority} (SCHED_FIFO)")]
    Realtime {
        priority: u8,
        #[source]
        source: io::Error,
    },
    #[error("cannot install signal handlers")]
    Signal(#[source] io::Error),
    #[error("cannot wait on the ring buffer")]
    Poll(#[source] io::Error),
    #[error("cannot write the report")]
    Output(#[source] io::Error),
}

/// Traces `config.pid` until the duration ends, SIGINT/SIGTERM, or the target exits,
/// writing findings and the summary to `out`. When `reader` says the output's reader has
/// gone, the trace ends there, without a summary (nobody would read it).
///
/// # Errors
/// For bad input (no such process, not a traceable process, no privilege, no BTF, target
/// gone during attach); once attached, only a failure to write the report is an error.
pub async fn run(
    config: Config,
    sink: &mut dyn Sink,
    reader: Option<&ReaderWatch>,
) -> Result<(), SessionError> {
    run_with(config, sink, reader, None, None).await.map(|_| ())
}

/// [`run`], also collecting the whole run's contention profiles (waiting stacks, and
/// with `export.holders` holding stacks) for `--pprof`/`--folded`/`--flamegraph`
/// (`crate::exports::write_exports`). `None` when the output's reader went away.
///
/// # Errors
/// As [`run`].
pub async fn run_exporting(
    config: Config,
    sink: &mut dyn Sink,
    reader: Option<&ReaderWatch>,
    export: ExportRequest,
) -> Result<Option<crate::exports::ExportProfiles>, SessionError> {
    run_with(config, sink, reader, None, Some(export))
        .await
        .map(|(_, profiles)| profiles)
}

/// [`run`] for `tracer serve`: the session also answers `link`'s questions (metrics
/// snapshots, contention profiles) while it traces, and returns its last snapshot, for
/// the metrics of a target that went away.
///
/// # Errors
/// As [`run`].
pub async fn run_served(
    config: Config,
    sink: &mut dyn Sink,
    link: LiveLink,
) -> Result<Option<TargetSnapshot>, SessionError> {
    run_with(config, sink, None, Some(link), None)
        .await
        .map(|(last, _)| last)
}

async fn run_with(
    config: Config,
    sink: &mut dyn Sink,
    reader: Option<&ReaderWatch>,
    link: Option<LiveLink>,
    export: Option<ExportRequest>,
) -> Result<
    (
        Option<TargetSnapshot>,
        Option<crate::exports::ExportProfiles>,
    ),
    SessionError,
> {
    let pid = config.pid;
    let target = LiveProcess::new(pid);
    if let Some(why) = target.untraceable() {
        return Err(SessionError::Untraceable(why));
    }
    let (mut session, mut notes) = attach(config, Arc::new(target), sink.wants_tape())?;
    if link.is_some() {
        // Among several targets (`tracer serve`), the log says when each is attached.
        let comm = session.target.thread_name(pid).unwrap_or_default();
        eprintln!("tracer: tracing process {pid} ({comm})");
    }
    session.live = link.map(live::Live::new);
    // A Go target's recording keeps the live run's profiles: its goroutines' waits are
    // not on the tape, so a report cannot make them again.
    let recorded_profiles = export.is_none() && session.tape.is_some() && session.go.is_some();
    if let Some(export) = export {
        session.open_whole_run_profile(export);
    } else if recorded_profiles {
        session.open_whole_run_profile(ExportRequest {
            holders: session.config.holds,
        });
    }
    // Symbol tables of the mapped objects load on a thread of their own, so the first
    // deadlock report does not wait for them and the drain loop is never held up by them
    // (their DWARF is decoded at the first source line asked of each object).
    let (roots, objects) = session.symbolizer.preload_list();
    let (preloaded_tx, preloaded) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = preloaded_tx.send(symbols::preload(&roots, objects, PRELOAD_BUDGET));
    });
    session.preloaded = Some(preloaded);
    let started = Instant::now();
    match session.trace_at_priority(sink, reader).await? {
        TraceEnd::Stopped => {}
        TraceEnd::TargetExited => notes.push(format!("process {pid} exited during the trace")),
        // Detached as the session drops, with nothing more to say.
        TraceEnd::ReaderGone => return Ok((None, None)),
    }
    session.end_live_profiles();
    let last = session.final_snapshot();
    let profiles = session
        .close_whole_run_profile()
        .map(|(profiles, cap_notes)| {
            notes.extend(cap_notes);
            profiles
        });
    if recorded_profiles && let Some(profiles) = &profiles {
        sink.tape(recording::tape::TapeChunk::Profiles(profiles))
            .map_err(SessionError::Output)?;
    }
    session.finish(sink, started.elapsed(), notes)?;
    Ok((last, profiles))
}

/// The next question to a served session; never resolves for a session not served.
async fn next_live_request(live: Option<&mut live::Live>) -> Option<LiveRequest> {
    match live {
        Some(live) => live.next_request().await,
        None => std::future::pending().await,
    }
}

/// Attaches to `target`: reads it (its maps once), attaches the probes, prints the notes
/// on the attach, and adopts the threads blocked already. Returns the session, ready to
/// trace, and those notes for the summary.
/// The Go side of the target, probed as `--holds` says; `None` (with a note saying why,
/// when it is a Go program) when it is not traced at the goroutine level.
fn inspect_go(
    target: &dyn TargetProcess,
    maps: &[MapEntry],
    holds: bool,
    notes: &mut Vec<String>,
) -> Option<tracker::GoTarget> {
    let mode = if holds {
        GoProbeMode::Holds
    } else {
        GoProbeMode::Parks
    };
    tracker::inspect(target, maps, mode)
        .map_err(|why| {
            notes.push(format!(
                "Go lock tracing unavailable, futex mode only: {}",
                crate::error_chain(&why)
            ));
        })
        .ok()
        .flatten()
}

#[expect(
    clippy::too_many_lines,
    reason = "one linear sequence of attach steps, each commented; split, it would hide the order they must run in"
)]
fn attach(
    config: Config,
    target: Arc<dyn TargetProcess>,
    tape: bool,
) -> Result<(Session, Vec<String>), SessionError> {
    let pid = config.pid;
    if !target.is_alive() {
        return Err(SessionError::NoSuchProcess { pid });
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(SessionError::NoBtf);
    }
    let gone = |source| {
        if target.is_alive() {
            SessionError::Proc { pid, source }
        } else {
            SessionError::ExitedDuringAttach { pid }
        }
    };
    // The maps, read once: the C library, the symbolizer, the Go executable's load bias,
    // the return-address check and the search for parked PI waiters all take them from
    // here.
    let maps = target.maps().map_err(gone)?;
    let c_library = identify_c_library(&*target, &maps);
    let libc = c_library_object(&*target, &c_library);
    let symbolizer =
        Symbolizer::from_target_maps(maps.clone(), &*target).with_debug_dirs(config.debug_dirs);
    // Test hook for the root tests only: widens the window between reading the target
    // and attaching, so that "the target exits during attach" can be tested for sure.
    if let Some(ms) = std::env::var("TRACER_TEST_ATTACH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let mut notes = Vec::new();
    let go_target = inspect_go(&*target, &maps, config.holds, &mut notes);
    // A Rust program: `std`'s lock waits are its own kinds, `parking_lot`'s slow paths are
    // probed (through the Go sites' program: a Go program is no Rust program).
    let (rust, rust_sites, rust_heap_owners) = if go_target.is_none() {
        RustSites::of(&*target, &maps)
    } else {
        (false, None, None)
    };
    let musl = c_library.flavor() == Some(LibcFlavor::Musl);
    if let Some(note) = c_library_note(&c_library, go_target.is_some(), config.holds) {
        notes.push(note);
    }
    let attach_started = Instant::now();
    // musl's normal mutexes and rwlocks keep no owner: only the lock uprobes name holders.
    let lock_uprobes = config.holds || musl;
    let probes = attach_probes(
        &*target,
        &config,
        (libc.as_deref(), lock_uprobes),
        go_target.as_ref(),
        rust_sites.as_ref(),
    )?;
    if !target.is_alive() {
        return Err(SessionError::ExitedDuringAttach { pid });
    }
    if let Some(why) = &probes.summary.go_multi_unavailable {
        notes.push(format!(
            "Go sites attached one by one (uprobe_multi unavailable: {why}): detaching them takes about 0.1 s each"
        ));
    }
    if let Some(why) = &probes.summary.lock_multi_unavailable {
        notes.push(format!(
            "C library lock functions attached with one perf-event uprobe each (uprobe_multi unavailable: {why})"
        ));
    }
    if let Some(go) = &go_target {
        notes.push(go.attach_note(
            probes.summary.go_sites,
            probes.summary.go_sites_refused.len(),
            attach_started.elapsed(),
        ));
    }
    if lock_uprobes {
        notes.extend(lock_function_note(
            &c_library,
            libc.is_some(),
            &probes.summary.missing_lock_functions,
        ));
    }
    for note in &notes {
        eprintln!("tracer: note: {note}");
    }
    let threads = LiveThreads::read(&*target);
    let code = CodeCheck::new(Arc::clone(&target), &maps);
    let go = go_target.map(|t| {
        let mut tracker =
            GoTracker::new(Arc::clone(&target), t, config.stuck_after, config.max_locks);
        if !config.lock_order {
            tracker.without_lock_order();
        }
        // The goroutines are read after the probes are in place: a wait that begins in
        // between is seen by both, never by neither.
        if let Err(note) = tracker.watch_runtime_goroutines() {
            eprintln!("tracer: note: {note}");
            notes.push(note);
        }
        tracker
    });
    let mut session = Session {
        exec_watch: exec_watch::ExecWatch::new(target.executable_identity()),
        timed_cycles: TimedCycles::default(),
        records_left_unread: false,
        previous: exec_watch::PreviousPrograms::default(),
        holds_libc: lock_uprobes
            .then(|| shared_c_library(&c_library, &maps))
            .flatten(),
        go_sites: go.as_ref().map(|_| probes.summary.go_sites),
        rust_heap_owners: None,
        ns_pid: threads.namespace_pid(target.pid()),
        target,
        go,
        config,
        probes,
        symbolizer,
        analysis: Analysis::for_target(lock_layout(&c_library), config.max_locks),
        order: order::NativeOrder::default(),
        inversions_reported: 0,
        threads,
        code,
        decode_errors: 0,
        adopted_at: 0,
        adopted_ends: adopted_ends::AdoptedEnds::default(),
        long_sleeps: long_sleeps::LongSleeps::default(),
        sleep_sampling: sleep_sampling::SleepSampling::with(
            match config.wait_ends {
                WaitEnds::AtSwitchIn(_) => config.sleep_sample,
                WaitEnds::AtSysExit => SleepSample::UpTo(0),
            },
            monotonic_ns(),
        ),
        unsampled_sleeps: long_sleeps::UnsampledSleeps::default(),
        hook: crate::probes::hook_state(),
        preloaded: None,
        target_realtime: RealtimeThreads::default(),
        dropped_seen: 0,
        live: None,
        whole_run: None,
        tape: None,
    };
    session.analysis.set_rust_std(rust);
    session
        .analysis
        .set_go_semasleep_locks(session.go.as_ref().and_then(GoTracker::semasleep_locks));
    let period = session.sleep_sampling.period();
    if period > 1 {
        session
            .probes
            .set_sleep_sample_period(period, monotonic_ns)
            .map_err(|source| SessionError::Attach {
                pid: config.pid,
                source,
            })?;
    }
    session.rust_heap_owners = rust_heap_owners;
    if let Some(sites) = &rust_sites {
        let note = format!(
            "Rust program: std locks traced from their futex words; {} parking_lot slow path(s) probed",
            sites.sites.len()
        );
        eprintln!("tracer: note: {note}");
        notes.push(note);
    }
    if tape {
        session.start_tape(lock_uprobes);
    }
    // Threads that were already asleep before the hooks were in place send no event:
    // find them, so a process that is already deadlocked is diagnosed at once.
    session.adopt_blocked_threads(&maps);
    Ok((session, notes))
}

/// What the report says about the lock functions the lock uprobes could not attach to
/// in `c_library` (`probed`: whether it had a file to probe), if anything.
fn lock_function_note(c_library: &CLibrary, probed: bool, missing: &[&str]) -> Option<String> {
    if !probed {
        return Some(
            "no C library to probe in the target (none mapped, or a static glibc): lock functions not found, futex mode only"
                .to_owned(),
        );
    }
    // A static program has only the lock functions it calls: none are missing.
    if matches!(c_library, CLibrary::Static { .. }) {
        return None;
    }
    // musl has no `*_clock*` lock functions (glibc 2.30's): not missing there.
    let musl = c_library.flavor() == Some(LibcFlavor::Musl);
    let missing: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|f| !(musl && f.contains("clock")))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "lock functions not found in libc, not traced: {}",
            missing.join(", ")
        )
    })
}

/// The lock layout of `c_library`: musl's for musl, else glibc's (whose owner fields
/// are only believed where they name a thread of the target).
fn lock_layout(c_library: &CLibrary) -> LockLayout {
    if c_library.flavor() == Some(LibcFlavor::Musl) {
        LockLayout::Musl
    } else {
        LockLayout::Glibc
    }
}

/// The file the lock uprobes go in for `c_library`, as a path openable from here: the
/// shared library, or a static musl program's executable (a static glibc's lock
/// functions are not probed: its mutexes name their owners in memory).
fn c_library_object(target: &dyn TargetProcess, c_library: &CLibrary) -> Option<PathBuf> {
    match c_library {
        CLibrary::Shared { path, .. } => Some(target.host_path(path)),
        CLibrary::Static {
            flavor: LibcFlavor::Musl,
        } => target.executable().ok().map(|exe| exe.open_path),
        CLibrary::Static {
            flavor: LibcFlavor::Glibc,
        }
        | CLibrary::Unrecognised(_) => None,
    }
}

/// What the report says about the target's C library, if anything: that musl's locks
/// are traced through the lock uprobes (when `--holds` did not ask for them), or that no
/// known lock layout applies (not for Go programs, whose locks are the runtime's).
fn c_library_note(c_library: &CLibrary, go: bool, holds: bool) -> Option<String> {
    match c_library {
        CLibrary::Shared {
            flavor: LibcFlavor::Musl,
            ..
        }
        | CLibrary::Static {
            flavor: LibcFlavor::Musl,
        } if !holds => Some(
            "musl C library: its normal mutexes and rwlocks keep no owner in memory, so the lock uprobes of --holds are on to name their holders (every pthread lock call passes a uprobe)"
                .to_owned(),
        ),
        CLibrary::Unrecognised(why) if !go => Some(format!(
            "C library not recognised as glibc or musl ({why}): futex-only mode, waits counted per futex word, with lock types and holders only where glibc's lock layout is found in memory"
        )),
        _ => None,
    }
}

/// The shared C library `c_library` in `maps` (path as the target names it, inode):
/// where the lock uprobes go, to tell after an `exec` whether they still apply.
fn shared_c_library(c_library: &CLibrary, maps: &[MapEntry]) -> Option<(String, u64)> {
    let CLibrary::Shared { path, .. } = c_library else {
        return None;
    };
    let path = path.clone();
    let inode = maps
        .iter()
        .find(|m| m.path.as_deref() == Some(&path))?
        .inode;
    Some((path, inode))
}

/// Loads and attaches the probes: futex hooks, `--holds` uprobes in `libc`, and the Go
/// sites of `go`.
fn attach_probes(
    target: &dyn TargetProcess,
    config: &Config,
    (libc, lock_uprobes): (Option<&Path>, bool),
    go: Option<&tracker::GoTarget>,
    rust_sites: Option<&RustSites>,
) -> Result<Probes, SessionError> {
    let pid = target.pid();
    // A Rust program's `parking_lot` slow paths go through the Go sites' program (a Go
    // program has none).
    let go_attach = go
        .map(tracker::GoTarget::probe_sites)
        .or_else(|| rust_sites.map(RustSites::probe_sites));
    let hooks = Hooks::Trace {
        holds: lock_uprobes,
        wait_ends: config.wait_ends,
        switch: config.switch_hook,
    };
    Probes::attach(pid, hooks, libc, go_attach.as_ref(), config.bpf_log).map_err(|source| {
        if source.is_permission_denied() {
            SessionError::NotPrivileged(source)
        } else if !target.is_alive() {
            SessionError::ExitedDuringAttach { pid }
        } else {
            SessionError::Attach { pid, source }
        }
    })
}

/// The `Type.field` names of a Rust program's `std` locks in heap objects, by the return
/// address of the slow-path call that waits for them (`lock_names::rust`); or of a C or
/// C++ program's locks, by the return address of the lock call (`lock_names::c`).
struct RustHeapOwners {
    owners: LockOwners,
    /// Runtime address minus file virtual address of the executable.
    bias: u64,
}

/// A Rust program's `parking_lot` slow paths, to probe in its executable.
struct RustSites {
    exe: PathBuf,
    /// (file offset, attach cookie) of each slow path's entry.
    sites: Vec<(u64, u64)>,
}

impl RustSites {
    /// Whether `target` runs a Rust program; if so, its slow paths (if it has any) and
    /// the names of its heap locks (if its DWARF gives any).
    fn of(
        target: &dyn TargetProcess,
        maps: &[MapEntry],
    ) -> (bool, Option<Self>, Option<RustHeapOwners>) {
        let Ok(exe) = target.executable() else {
            return (false, None, None);
        };
        if !rust_lock::is_rust_program(&exe.data) {
            // A C or C++ program (a Go one is not asked): its heap locks by lock call.
            let owners = LockOwners::c(&exe.data);
            let heap_owners = (!owners.is_empty()).then(|| RustHeapOwners {
                owners,
                bias: tracker::load_bias(&exe.data, exe.path.as_deref(), maps),
            });
            return (false, None, heap_owners);
        }
        let owners = LockOwners::rust(&exe.data);
        let heap_owners = (!owners.is_empty()).then(|| RustHeapOwners {
            owners,
            bias: tracker::load_bias(&exe.data, exe.path.as_deref(), maps),
        });
        let sites: Vec<(u64, u64)> = rust_lock::parking_lot_sites(&exe.data)
            .into_iter()
            .map(|(offset, op)| (offset, rust_site_cookie(op)))
            .collect();
        let sites = (!sites.is_empty()).then_some(Self {
            exe: exe.open_path,
            sites,
        });
        (true, sites, heap_owners)
    }

    fn probe_sites(&self) -> GoSites<'_> {
        GoSites {
            exe: &self.exe,
            goid_offset: 0,
            sites: &self.sites,
        }
    }
}

/// The attach cookie of a native site: its op, the lock in `RDI` (the first argument).
fn rust_site_cookie(op: tracer_common::NativeSiteOp) -> u64 {
    use tracer_common::{go_cookie, pt_reg};
    go_cookie::pack_native(op, pt_reg::RDI, pt_reg::NONE, 0)
}

struct Session {
    /// The traced process, as everything here reads it (shared with the Go tracker and
    /// the return-address check).
    target: Arc<dyn TargetProcess>,
    /// Go lock tracking, when the target is a Go program.
    go: Option<GoTracker>,
    config: Config,
    probes: Probes,
    symbolizer: Symbolizer,
    analysis: Analysis,
    /// The native lock-order graph (acquisitions are traced: `--holds`, musl).
    order: order::NativeOrder,
    /// Lock-order inversions reported, not counting harmless ones.
    inversions_reported: usize,
    threads: LiveThreads,
    /// The target's PID in its own PID namespace, when that differs from its host PID.
    ns_pid: Option<u32>,
    code: CodeCheck,
    decode_errors: u64,
    /// Monotonic time given to waits found already blocked at attach.
    adopted_at: u64,
    /// Those waits, while the session itself must see them end (wait ends timed at
    /// switch-in: [`adopted_ends`]).
    adopted_ends: adopted_ends::AdoptedEnds,
    /// The lean waits that slept long, already given to the analysis ([`long_sleeps`]).
    long_sleeps: long_sleeps::LongSleeps,
    /// How many of the target's sleeps the kernel traces ([`sleep_sampling`]).
    sleep_sampling: sleep_sampling::SleepSampling,
    /// The threads asleep in a wait the kernel may have left out while it sampled.
    unsampled_sleeps: long_sleeps::UnsampledSleeps,
    /// The serve's duty cycle of the shared `sched_switch` hook, as the last rescan saw
    /// it (`serve::hook_duty`).
    hook: crate::probes::HookState,
    /// The symbolizer's objects, loading on their own thread until adopted.
    preloaded: Option<std::sync::mpsc::Receiver<symbols::Preloaded>>,
    /// The most real-time threads the target was seen with, read whenever records were
    /// dropped since the last look (the moment they can explain it; a target that exits
    /// has none left to read at the end).
    target_realtime: RealtimeThreads,
    /// The dropped-records count at the last look.
    dropped_seen: u64,
    /// Whether the trace stopped with ring-buffer records it did not read.
    records_left_unread: bool,
    /// The target's executable, to notice an `exec` whose record was lost.
    exec_watch: exec_watch::ExecWatch,
    /// Cycles of timed waits reported (each once; they are no deadlocks).
    timed_cycles: TimedCycles,
    /// The lock tables of the programs the target ran before its last `exec`.
    previous: exec_watch::PreviousPrograms,
    /// With `--holds`: the C library (path as the target names it, inode) the lock
    /// uprobes are attached to.
    holds_libc: Option<(String, u64)>,
    /// Go lock sites attached, when the target was a Go program at attach.
    go_sites: Option<usize>,
    /// The names of a Rust program's heap locks by slow-path call, when the program the
    /// target ran at attach is one and its DWARF gives any.
    rust_heap_owners: Option<RustHeapOwners>,
    /// `tracer serve`'s questions to this session, and its open profiles.
    live: Option<live::Live>,
    /// The whole run's profile window (`attach --pprof` and the other exports).
    whole_run: Option<export::WholeRun>,
    /// The analysis tape, when the sink keeps one (`tracer record`).
    tape: Option<tape::TapeRecorder>,
}

impl Session {
    /// Turns the threads blocked before the hooks were in place into waits
    /// ([`adopt::adopt_blocked_threads`]), stamped with the time of the adoption. `maps`
    /// are the target's, as read at attach.
    fn adopt_blocked_threads(&mut self, maps: &[MapEntry]) {
        let now = monotonic_ns();
        self.adopted_at = now;
        let applied = adopt::adopt_blocked_threads(
            &*self.target,
            maps,
            &mut self.analysis,
            &mut self.threads,
            now,
        );
        if let Some(tape) = self.tape.as_mut() {
            tape.note_threads(&self.threads);
        }
        self.put_on_tape(&applied);
        if matches!(self.config.wait_ends, WaitEnds::AtSwitchIn(_)) {
            self.adopted_ends =
                adopted_ends::AdoptedEnds::of_adoption(&self.analysis, &*self.target, now);
        }
    }

    /// Gives the analysis the ends of the adopted waits that are over, when nothing in
    /// the kernel sees them ([`adopted_ends`]).
    fn end_adopted_waits(&mut self) {
        if self.adopted_ends.is_empty() {
            return;
        }
        let applied = self.adopted_ends.check(
            &mut self.analysis,
            &mut self.threads,
            &*self.target,
            monotonic_ns(),
        );
        self.put_on_tape(&applied);
    }

    /// Gives the analysis the lean waits (sent by the kernel only once over) that have
    /// slept long, read from the kernel's table and the target ([`long_sleeps`]).
    fn adopt_long_sleeps(&mut self) {
        if !matches!(
            self.config.wait_ends,
            WaitEnds::AtSwitchIn(LeanWaits::Unsampled | LeanWaits::All)
        ) {
            return;
        }
        // A failed read only delays these waits to the next rescan.
        let Ok(table) = self.probes.open_sleeps() else {
            return;
        };
        let due = self.long_sleeps.due(&table, monotonic_ns());
        let watch_ends = self.hook_leaves_out();
        let mut applied = Vec::new();
        for sleep in &due {
            let Some(item) = adopt::adopt_long_sleep(
                &*self.target,
                &mut self.analysis,
                &mut self.threads,
                sleep,
            ) else {
                continue;
            };
            applied.push(item);
            // Its end may come at a switch-out the detached hook does not see: watched
            // from `/proc` too (whichever sees it first ends it).
            if watch_ends
                && let (Some(call), Some(switches)) = (
                    self.target.syscall_state(sleep.tid),
                    self.target.context_switches(sleep.tid),
                )
            {
                self.adopted_ends
                    .push(&self.analysis, sleep.tid, (call, switches));
            }
        }
        if !applied.is_empty()
            && let Some(tape) = self.tape.as_mut()
        {
            tape.note_threads(&self.threads);
        }
        self.put_on_tape(&applied);
    }

    /// What the main loop does every [`RESCAN_INTERVAL`]: folds in the kernel's totals,
    /// gives the analysis the waits no record told of yet, chooses how many sleeps the
    /// kernel traces, and looks for cycles again.
    fn rescan(&mut self) {
        self.follow_hook_duty();
        self.fold_brief_waits();
        self.adopt_long_sleeps();
        self.adopt_unsampled_sleeps();
        self.sample_sleeps();
        self.find_rust_guard_holders();
        self.analysis.rescan();
    }

    /// Follows the serve's duty cycle of the shared `sched_switch` hook
    /// (`serve::hook_duty`): weighs the sleeps traced from now on by its factor, and
    /// restarts the count of sleeps seen when the hook has not drawn all along since the
    /// last rescan.
    fn follow_hook_duty(&mut self) {
        if !self.probes.is_dispatched() {
            return;
        }
        let hook = crate::probes::hook_state();
        if self.probes.set_weight_factor(hook.factor).is_err() {
            eprintln!(
                "tracer: note: could not weigh the traced sleeps by the hook's duty cycle ({})",
                hook.factor
            );
        }
        if hook.epoch != self.hook.epoch || !hook.drawing {
            self.sleep_sampling.restart(monotonic_ns());
        }
        self.hook = hook;
    }

    /// Whether the serve's duty cycle leaves sleeps out (its hook detached at times): a
    /// sleep that lasts may then be in no table, and a long one's end may go unseen.
    fn hook_leaves_out(&self) -> bool {
        self.probes.is_dispatched()
            && (self.hook.factor > 1 || !self.hook.attached || !self.hook.drawing)
    }

    /// Chooses the kernel's sampling period of sleeps again from the rate of sleeps seen
    /// ([`sleep_sampling`]: it may rise at any rescan, and fall once a second).
    fn sample_sleeps(&mut self) {
        // Only over time the hook drew sleeps in all along (`follow_hook_duty`).
        let decided = if self.hook.drawing {
            self.sleep_sampling.decide(monotonic_ns())
        } else {
            None
        };
        if let Some(period) = decided
            && self
                .probes
                .set_sleep_sample_period(period, monotonic_ns)
                .is_err()
        {
            // The kernel keeps the old period: the weights it sends stay right either way.
            eprintln!("tracer: note: could not set the sampling period of sleeps to {period}");
        }
        // A failure leaves the dispatcher reading the counts of open sleeps: slower, as
        // right, and tried again at the next rescan.
        let _ = self.probes.settle_sleep_draw(monotonic_ns);
    }

    /// Gives the analysis the waits the kernel left out while it sampled sleeps that
    /// have lasted, found from `/proc` ([`long_sleeps::UnsampledSleeps`]), and watches
    /// them for their end ([`adopted_ends`]).
    fn adopt_unsampled_sleeps(&mut self) {
        let now = monotonic_ns();
        if !self.sleep_sampling.left_out_lately(now) && !self.hook_leaves_out() {
            self.unsampled_sleeps.clear();
            return;
        }
        let tids = self.target.thread_ids().unwrap_or_default();
        let mut applied = Vec::new();
        for tid in self.unsampled_sleeps.turn(&tids) {
            let asleep = if self.analysis.active_wait(tid).is_some() {
                None
            } else {
                adopt::UnsampledWait::of(&*self.target, tid)
            };
            let state = asleep.as_ref().map(adopt::UnsampledWait::state);
            let (Some(wait), Some(since_ns)) =
                (asleep, self.unsampled_sleeps.observe(tid, now, state))
            else {
                continue;
            };
            applied.push(wait.adopt(
                &*self.target,
                &mut self.analysis,
                &mut self.threads,
                (tid, since_ns),
            ));
            self.adopted_ends.push(&self.analysis, tid, wait.state());
        }
        if !applied.is_empty()
            && let Some(tape) = self.tape.as_mut()
        {
            tape.note_threads(&self.threads);
        }
        self.put_on_tape(&applied);
    }

    /// Puts `items`, given to the analysis outside the ring buffer, on the recording's
    /// tape, if there is one.
    fn put_on_tape(&mut self, items: &[recording::tape::TapeItem]) {
        if let Some(tape) = self.tape.as_mut() {
            for item in items {
                tape.push(item);
            }
        }
    }

    /// For a musl program, at the end of the trace: a note on the threads that already
    /// waited for a mutex or rwlock at attach, still wait for it, and whose holder
    /// nothing names. musl's normal mutexes and rwlocks keep no owner, and the lock
    /// uprobes only see acquisitions made after the attach, so a deadlock among such
    /// locks that formed before the attach cannot be found.
    fn ownerless_adopted_waits_note(&self) -> Option<String> {
        if self.analysis.layout() != LockLayout::Musl {
            return None;
        }
        let tids = self.target.thread_ids().unwrap_or_default();
        let ownerless = tids
            .iter()
            .filter_map(|&tid| self.analysis.active_wait(tid))
            .filter(|wait| wait.start_ns == self.adopted_at)
            .filter_map(|wait| wait.lock.filter(|_| wait.holder.is_none()))
            .filter(|&lock| {
                matches!(
                    self.analysis.lock_kind(lock),
                    LockKind::Mutex | LockKind::RwLock
                ) && self.analysis.graph().holders(lock).next().is_none()
            })
            .count();
        (ownerless > 0).then(|| {
            format!(
                "{ownerless} thread(s) waited, from before the attach to the end, for a musl mutex or rwlock held by a thread nothing names: musl's normal mutexes and rwlocks keep no owner in memory, so a deadlock among them that formed before the attach cannot be reported (one that forms after the attach is, from the lock uprobes)"
            )
        })
    }

    /// The stack of thread `tid` while still blocked in its wait at `pc`/`sp`
    /// ([`adopt::read_still_blocked_stack`]).
    fn read_still_blocked_stack(&self, tid: u32, pc: u64, sp: u64) -> Option<Vec<u64>> {
        adopt::read_still_blocked_stack(&*self.target, tid, pc, sp)
    }

    /// Whether a candidate cycle still holds in the live process ([`confirm::confirm`]).
    fn confirm(&mut self, cycle: &Cycle) -> bool {
        // A holder known only from the uprobes may have started since the threads were
        // read: its TID inside the target's PID namespace is needed to check owner fields.
        let tids: Vec<u32> = cycle.edges.iter().map(|edge| edge.tid).collect();
        self.threads.cover(&*self.target, &tids);
        confirm::confirm(&*self.target, &self.analysis, self.threads.ids(), cycle)
    }

    /// [`Session::trace`], at the `SCHED_FIFO` priority of `--realtime` if given. Only the
    /// drain loop runs real-time: the symbol loading started before it as a normal thread,
    /// and the final report is built at normal priority again.
    async fn trace_at_priority(
        &mut self,
        sink: &mut dyn Sink,
        reader: Option<&ReaderWatch>,
    ) -> Result<TraceEnd, SessionError> {
        let realtime = self
            .config
            .realtime
            .map(|priority| {
                RealtimeGuard::enter(priority)
                    .map_err(|source| SessionError::Realtime { priority, source })
            })
            .transpose()?;
        let end = self.trace(sink, reader).await;
        drop(realtime);
        end
    }

    /// The main loop. Returns how the trace ended.
    async fn trace(
        &mut self,
        sink: &mut dyn Sink,
        reader: Option<&ReaderWatch>,
    ) -> Result<TraceEnd, SessionError> {
        let mut interrupt = signal(SignalKind::interrupt()).map_err(SessionError::Signal)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(SessionError::Signal)?;
        let fd = self.probes.events_fd().map_err(SessionError::Poll)?;
        // SAFETY: `fd` is an owned descriptor, moved into the `AsyncFd`: it stays open and
        // refers to the ring buffer for the `AsyncFd`'s whole life.
        let records = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|err| SessionError::Poll(err.into_parts().1))?;
        let deadline = self.config.duration.map(|d| Instant::now() + d);
        let mut last_rescan = Instant::now();
        let mut last_alive_check = Instant::now();
        // What the last drain found. The loop starts with one.
        let mut last = Drain::Backlog;
        loop {
            // A batching pause, not listening for records: a busy target's records wait
            // and are analysed together.
            tokio::select! {
                () = tokio::time::sleep(self.config.drain_interval) => {}
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
            }
            let pending =
                self.analysis.has_pending() || self.go.as_ref().is_some_and(GoTracker::has_pending);
            last = if last == Drain::Empty && !pending {
                // Quiet: ask the programs to wake us, then look once more for records they
                // submitted without a wakeup before they saw the change.
                self.probes.set_reader_polls(false);
                match self.pump() {
                    Drain::Empty => {
                        // Sleep until a record comes, the periodic work is due, or the
                        // deadline.
                        let mut wake_at = tokio::time::Instant::now() + IDLE_INTERVAL;
                        if let Some(d) = deadline {
                            wake_at = wake_at.min(tokio::time::Instant::from_std(d));
                        }
                        if let Some(due) = self.live.as_ref().and_then(live::Live::next_due_ns) {
                            let left = Duration::from_nanos(due.saturating_sub(monotonic_ns()));
                            wake_at = wake_at.min(tokio::time::Instant::now() + left);
                        }
                        let mut asked = None;
                        tokio::select! {
                            ready = records.readable() => {
                                // Cleared before the drain: a record committed after it
                                // wakes us.
                                if let Ok(mut guard) = ready {
                                    guard.clear_ready();
                                }
                            }
                            () = tokio::time::sleep_until(wake_at) => {}
                            request = next_live_request(self.live.as_mut()) => asked = request,
                            _ = interrupt.recv() => break,
                            _ = terminate.recv() => break,
                        }
                        let drain = self.pump();
                        self.serve_live(asked);
                        drain
                    }
                    busy => busy,
                }
            } else {
                self.pump()
            };
            if last != Drain::Empty {
                // Busy: we drain on our own timer, so records need not wake us.
                self.probes.set_reader_polls(true);
            }
            if let Some(preloaded) = &self.preloaded
                && let Ok(objects) = preloaded.try_recv()
            {
                self.symbolizer.adopt(objects);
                self.preloaded = None;
            }
            if last_rescan.elapsed() >= RESCAN_INTERVAL {
                self.rescan();
                last_rescan = Instant::now();
            }
            self.report_confirmed_deadlocks(sink)?;
            self.report_go_findings(sink)?;
            self.report_inversions(sink)?;
            self.flush_tape(sink, false)?;
            self.serve_live(None);
            if deadline.is_some_and(|d| Instant::now() >= d)
                || self.live.as_ref().is_some_and(|live| live.stop)
            {
                break;
            }
            if last_alive_check.elapsed() >= RESCAN_INTERVAL {
                if let Ok(counters) = self.probes.counters() {
                    self.look_for_realtime_threads_if_dropping(counters.dropped);
                }
                if !self.target.is_alive() {
                    self.drain_before_stop();
                    return Ok(TraceEnd::TargetExited);
                }
                // Seen here, not at the next write: a trace may have nothing more to
                // write (`| head -1` after a deadlock line).
                if reader.is_some_and(ReaderWatch::reader_gone) {
                    return Ok(TraceEnd::ReaderGone);
                }
                self.notice_late_exec();
                self.end_adopted_waits();
                last_alive_check = Instant::now();
            }
        }
        self.drain_before_stop();
        self.report_confirmed_deadlocks(sink)?;
        self.report_go_findings(sink)?;
        self.report_inversions(sink)?;
        Ok(TraceEnd::Stopped)
    }

    /// Reads the ring buffer's backlog when the trace stops, for at most
    /// [`FINAL_DRAIN_BUDGET`]; remembers whether records were left unread (one drain
    /// stops on its own budget, and a tracer that fell behind a busy target would
    /// otherwise leave its backlog silently: a SIGINT at 50 000 locks once showed 24 576).
    fn drain_before_stop(&mut self) {
        let started = Instant::now();
        while self.pump() == Drain::Backlog {
            if started.elapsed() >= FINAL_DRAIN_BUDGET {
                self.records_left_unread = true;
                return;
            }
        }
    }

    /// Reads the target's real-time threads when records were dropped since the last
    /// look: the moment they can explain it (see `realtime::starvation_note`). Reading
    /// every thread's `stat` is left for then, not done at every tick.
    fn look_for_realtime_threads_if_dropping(&mut self, dropped: u64) {
        if dropped > self.dropped_seen {
            self.dropped_seen = dropped;
            self.target_realtime = self.target_realtime.max(self.target.realtime_threads());
        }
    }

    /// Adds the kernel's totals of waits that never slept to the lock statistics.
    fn fold_brief_waits(&mut self) {
        // A failed read only delays these totals to the next one (they are cumulative).
        if let Ok(Some(totals)) = self.probes.brief_waits() {
            self.analysis.on_brief_waits(&totals);
            if let Some(tape) = self.tape.as_mut() {
                tape.push(&recording::tape::TapeItem::BriefWaits(totals));
            }
        }
    }

    /// Drains the ring buffer into the analysis.
    fn pump(&mut self) -> Drain {
        let Self {
            target,
            probes,
            analysis,
            threads,
            decode_errors,
            go,
            order,
            symbolizer,
            config,
            rust_heap_owners,
            tape,
            sleep_sampling,
            ..
        } = self;
        let target = &**target;
        // Traced sleeps weigh the duty cycle's factor too; the sampling's rate is per
        // slice of time drawn in (`follow_hook_duty`).
        let weight_factor = probes.weight_factor().max(1);
        // Programs the target left by an `exec` in this drain: their lock state, Go
        // tracker, and when.
        let mut left: Vec<(Analysis, Option<GoTracker>, u64)> = Vec::new();
        // Bounded, so that a target producing events faster than we analyse them cannot
        // keep the loop from signals, the deadline and deadlock reports: what we cannot
        // keep up with is dropped (and counted) by the kernel instead.
        let started = Instant::now();
        let mut total = 0;
        loop {
            let n = probes.drain(DRAIN_CHUNK, |bytes| {
                // By reference: binding the decoded event by value copied it once more.
                match decode(bytes) {
                    Ok(Record::Native(ref event)) => {
                        if let TraceEvent::FutexWait { weight, .. } = *event {
                            sleep_sampling.on_traced(weight / weight_factor);
                        }
                        threads.apply(analysis, target, event);
                        // A C heap lock's `Type.field`, from the call that took it.
                        let site_name = match (event, rust_heap_owners.as_ref()) {
                            (
                                TraceEvent::LockAcquired {
                                    addr, call_site, ..
                                },
                                Some(heap),
                            ) => {
                                let name = heap.owners.name_at(call_site.wrapping_sub(heap.bias));
                                if let Some(name) = name {
                                    analysis.rust_mut().heap_name_seen(*addr, name);
                                }
                                name
                            }
                            _ => None,
                        };
                        if config.lock_order
                            && matches!(
                                event,
                                TraceEvent::LockAcquired { .. } | TraceEvent::LockReleased { .. }
                            )
                        {
                            order.on_event(event, symbolizer, site_name);
                        }
                    }
                    Ok(Record::Slept(slept)) => {
                        sleep_sampling.on_traced(slept.weight / weight_factor);
                        let window = slept.window();
                        for event in slept.events(&window) {
                            threads.apply(analysis, target, &event);
                        }
                    }
                    Ok(Record::Go(ref event)) => match go.as_mut() {
                        Some(go) => go.on_event(event),
                        // The Go program's sites, after it executed another program.
                        None if !left.is_empty() => {}
                        // Go sites are only attached in Go targets.
                        None => *decode_errors += 1,
                    },
                    Ok(Record::NativeSite {
                        op,
                        tid,
                        ts_ns,
                        addr,
                    }) => analysis.on_slow_path(tid, ts_ns, addr, op),
                    Ok(Record::Exec { ts_ns, .. }) => {
                        // Everything before this record was the old program's, everything
                        // after it is the new one's.
                        let next = analysis.successor();
                        left.push((std::mem::replace(analysis, next), go.take(), ts_ns));
                    }
                    Err(_) => *decode_errors += 1,
                }
                if let Some(tape) = tape.as_mut() {
                    tape.push_record(bytes, threads);
                }
            });
            total += n;
            let drain = if n < DRAIN_CHUNK {
                self.exec_watch.caught_up(monotonic_ns());
                if total == 0 {
                    Drain::Empty
                } else {
                    Drain::CaughtUp
                }
            } else if started.elapsed() >= DRAIN_BUDGET {
                Drain::Backlog
            } else {
                continue;
            };
            for (analysis, go, ts_ns) in left {
                self.switch_program(analysis, go, ts_ns);
            }
            return drain;
        }
    }

    /// Switches to the program the target executed at `exec_ns`: keeps the lock table of
    /// the one it left (`analysis` and `go`, named now with that program's symbols, the
    /// symbolizer's until now), then reloads the symbols and the return-address check
    /// from the new program's maps, and notes it (see `exec_watch`).
    fn switch_program(&mut self, mut analysis: Analysis, mut go: Option<GoTracker>, exec_ns: u64) {
        // Its threads are gone: waits still open ended with the exec.
        analysis.close_open_waits(exec_ns);
        // Its code is no longer in the target's memory: return addresses are checked
        // against its files.
        self.code.detach_from_memory();
        if self.previous.has_room() {
            let table = program_table(
                &analysis,
                go.as_mut(),
                exec_ns,
                Namer {
                    target: &*self.target,
                    symbolizer: &mut self.symbolizer,
                    code: &mut self.code,
                    stacks: &self.probes,
                    go: None,
                    rust_heap_names: None,
                },
            );
            self.previous.keep(table);
        } else {
            self.previous.left_out += 1;
        }
        let go_sites = go.map(|_| self.go_sites.unwrap_or(0));
        self.reload_program(exec_watch::SwitchPoint::Exact, exec_ns, go_sites);
    }

    /// The fallback for an exec whose record was lost: when the target's executable is
    /// another one than before, reloads the symbols (only: the lock state may hold the new
    /// program's waits already). Also checked before findings are named.
    fn notice_late_exec(&mut self) {
        let now = monotonic_ns();
        if !self
            .exec_watch
            .observe(self.target.executable_identity(), now)
        {
            return;
        }
        let go_sites = self.go.as_ref().map(|_| self.go_sites.unwrap_or(0));
        // The Go side is the previous program's for sure (its goroutines and sites): its
        // locks are kept like those of a program left at an exec record.
        if let Some(mut go) = self.go.take()
            && self.previous.has_room()
        {
            self.code.detach_from_memory();
            let table = program_table(
                &Analysis::new(),
                Some(&mut go),
                now,
                Namer {
                    target: &*self.target,
                    symbolizer: &mut self.symbolizer,
                    code: &mut self.code,
                    stacks: &self.probes,
                    go: None,
                    rust_heap_names: None,
                },
            );
            self.previous.keep(table);
        }
        self.reload_program(exec_watch::SwitchPoint::Late, now, go_sites);
    }

    /// Reloads what is read from the target's program: its maps, for the symbolizer and
    /// the return-address check; and notes the exec.
    fn reload_program(
        &mut self,
        point: exec_watch::SwitchPoint,
        exec_ns: u64,
        go_sites: Option<usize>,
    ) {
        self.exec_watch.rebase(self.target.executable_identity());
        // The previous program's code: its calls say nothing of the new one's locks.
        self.rust_heap_owners = None;
        // Objects still loading for the previous program would be taken for the new one's.
        self.preloaded = None;
        let maps = self.target.maps().ok();
        // Unreadable (the new program exited already): nothing named rather than named
        // from the previous program.
        let new_maps = maps.clone().unwrap_or_default();
        // The new program's C library may lay its locks out otherwise (events decoded
        // between the exec and here were classified with the previous one's).
        if maps.is_some() {
            let c_library = identify_c_library(&*self.target, &new_maps);
            self.analysis.set_layout(lock_layout(&c_library));
        }
        self.code = CodeCheck::new(Arc::clone(&self.target), &new_maps);
        self.symbolizer = Symbolizer::from_target_maps(new_maps, &*self.target)
            .with_debug_dirs(self.config.debug_dirs);
        let program = maps
            .as_deref()
            .and_then(|maps| maps.iter().filter(|m| m.is_file()).min_by_key(|m| m.start))
            .and_then(|m| m.path.clone());
        let holds_libc = self.holds_libc.as_ref().map(|(path, inode)| {
            let still_mapped = maps.as_deref().is_some_and(|maps| {
                maps.iter()
                    .any(|m| m.path.as_deref() == Some(path) && m.inode == *inode)
            });
            (path.as_str(), still_mapped)
        });
        #[expect(
            clippy::cast_precision_loss,
            reason = "seconds for a note, shown with 2 decimals"
        )]
        let at_s = exec_ns.saturating_sub(self.adopted_at) as f64 / 1e9;
        let note = exec_watch::ExecNote {
            program: program.as_deref(),
            at_s,
            point,
            holds_libc,
            go_sites,
        }
        .text();
        eprintln!("tracer: note: {note}");
        self.previous.notes.push(note);
    }

    /// Prints Go deadlocks confirmed since the last call and stuck locks now due.
    fn report_go_findings(&mut self, sink: &mut dyn Sink) -> Result<(), SessionError> {
        let Some(go) = self.go.as_mut() else {
            return Ok(());
        };
        let now = monotonic_ns();
        let findings = go.findings(now, &self.probes);
        for raw in &findings {
            if let (RawFinding::StuckLock(stuck), Some(live)) = (raw, self.live.as_mut()) {
                live.stuck_reported(stuck.addr);
            }
            let finding = assemble::finding(raw, now, &mut self.namer());
            self.count_inversion(&finding);
            sink.finding(&finding).map_err(SessionError::Output)?;
            match &finding {
                crate::model::Finding::Deadlock(d) => {
                    self.draw_go_wait_for(sink, GraphSnapshot::deadlock_title(d), Some(d))?;
                }
                _ => Self::draw_finding(sink, &finding)?,
            }
        }
        Ok(())
    }

    /// Prints the native lock-order inversions found since the last call.
    fn report_inversions(&mut self, sink: &mut dyn Sink) -> Result<(), SessionError> {
        for raw in self.order.take_found() {
            let finding = assemble::finding(
                &RawFinding::LockOrderInversion(raw),
                monotonic_ns(),
                &mut self.namer(),
            );
            self.count_inversion(&finding);
            sink.finding(&finding).map_err(SessionError::Output)?;
            Self::draw_finding(sink, &finding)?;
        }
        Ok(())
    }

    /// Counts a lock-order inversion for the summary (harmless ones are not counted).
    fn count_inversion(&mut self, finding: &crate::model::Finding) {
        if let crate::model::Finding::LockOrderInversion(inversion) = finding
            && !inversion.harmless
        {
            self.inversions_reported += 1;
        }
    }

    /// In a Rust program, the holders of the `std` mutexes threads have waited for a
    /// while, from the guards on the blocked threads' stacks (`rust_holders`): those
    /// mutexes keep no owner.
    fn find_rust_guard_holders(&mut self) {
        if !self.analysis.rust_std() {
            return;
        }
        let tids = self.target.thread_ids().unwrap_or_default();
        rust_holders::find_guard_holders(&*self.target, &mut self.analysis, &tids, monotonic_ns());
    }

    fn report_confirmed_deadlocks(&mut self, sink: &mut dyn Sink) -> Result<(), SessionError> {
        for cycle in self.analysis.candidates() {
            if !self.confirm(&cycle) {
                continue;
            }
            let timeouts = confirm::entry_timeouts(&self.analysis, &cycle, realtime_ahead_ns());
            if confirm::timing_out(&timeouts, monotonic_ns()) {
                // Breaking up: the wait's end drops the candidate.
                continue;
            }
            // Named from the program the target runs now, even when its exec record was
            // lost (the check costs one `stat`, and only per confirmed deadlock).
            self.notice_late_exec();
            if confirm::will_time_out(&timeouts) {
                self.analysis.drop_candidate(&cycle);
                if !self.timed_cycles.first_report(&cycle) {
                    continue;
                }
            } else {
                self.analysis.mark_reported(&cycle);
            }
            let entries = self.raw_deadlock(&cycle, &timeouts);
            let waits: Vec<(u64, &RawStack)> =
                entries.iter().map(|e| (e.waits_for, &e.waiting)).collect();
            self.learn_rust_heap_names(&waits);
            let raw = RawFinding::Deadlock(entries);
            let deadlock = assemble::finding(&raw, monotonic_ns(), &mut self.namer());
            sink.finding(&deadlock).map_err(SessionError::Output)?;
            if let crate::model::Finding::Deadlock(d) = &deadlock {
                self.draw_wait_for(sink, GraphSnapshot::deadlock_title(d))?;
            }
        }
        Ok(())
    }

    /// Gives `sink` the native wait-for graph as it stands, when it draws graphs.
    fn draw_wait_for(&mut self, sink: &mut dyn Sink, title: String) -> Result<(), SessionError> {
        if !sink.wants_graphs() {
            return Ok(());
        }
        let mut namer = Namer {
            target: &*self.target,
            symbolizer: &mut self.symbolizer,
            code: &mut self.code,
            stacks: &self.probes,
            go: self.go.as_ref().map(GoTracker::names),
            rust_heap_names: Some(self.analysis.rust().heap_names()),
        };
        let snapshot = graph::wait_for(title, self.analysis.graph(), &mut namer);
        sink.graph(&snapshot).map_err(SessionError::Output)
    }

    /// Gives `sink` the Go wait-for graph as it stands (the goroutines' waits and traced
    /// holds), with `deadlock`'s cycle added when given, when it draws graphs.
    fn draw_go_wait_for(
        &mut self,
        sink: &mut dyn Sink,
        title: String,
        deadlock: Option<&crate::model::Deadlock>,
    ) -> Result<(), SessionError> {
        let Some(go) = self.go.as_ref() else {
            return Ok(());
        };
        if !sink.wants_graphs() {
            return Ok(());
        }
        let edges = go.wait_edges();
        let mut namer = Namer {
            target: &*self.target,
            symbolizer: &mut self.symbolizer,
            code: &mut self.code,
            stacks: &self.probes,
            go: Some(go.names()),
            rust_heap_names: None,
        };
        let mut snapshot = graph::go_wait_for(title, &edges.waits, &edges.holds, &mut namer);
        if let Some(deadlock) = deadlock {
            snapshot.add_deadlock(deadlock);
        }
        sink.graph(&snapshot).map_err(SessionError::Output)
    }

    /// Gives `sink` the picture of a finding that is its own graph (a Go deadlock's
    /// cycle, an inversion's orders, a stuck lock's holder and waiters), when it draws
    /// graphs.
    fn draw_finding(
        sink: &mut dyn Sink,
        finding: &crate::model::Finding,
    ) -> Result<(), SessionError> {
        if !sink.wants_graphs() {
            return Ok(());
        }
        let snapshot = match finding {
            crate::model::Finding::Deadlock(d) => {
                GraphSnapshot::of_deadlock(GraphSnapshot::deadlock_title(d), d)
            }
            crate::model::Finding::LockOrderInversion(inversion) => {
                GraphSnapshot::of_inversion("lock-order inversion", inversion)
            }
            crate::model::Finding::StuckLock(stuck) => {
                GraphSnapshot::of_stuck_lock(GraphSnapshot::stuck_title(stuck), stuck)
            }
        };
        sink.graph(&snapshot).map_err(SessionError::Output)
    }

    /// Gives `sink` the graphs as they stand at the end (the native wait-for graph and,
    /// with `--holds`, the lock-order graph), when it draws graphs.
    fn draw_end_graphs(&mut self, sink: &mut dyn Sink) -> Result<(), SessionError> {
        if !sink.wants_graphs() {
            return Ok(());
        }
        // A Go program's locks are in its Go graph: its native one is drawn only when
        // some thread waits on a native lock (cgo, the runtime's own futexes).
        if self.go.is_none() || self.analysis.graph().waiting_threads() > 0 {
            self.draw_wait_for(sink, "wait-for graph at the end".to_owned())?;
        }
        if self.go.is_some() {
            self.draw_go_wait_for(sink, "Go wait-for graph at the end".to_owned(), None)?;
        }
        if self.config.holds && self.config.lock_order {
            let edges = self.order.order_edges();
            let snapshot = graph::lock_order(
                "lock-order graph at the end".to_owned(),
                &edges,
                &mut self.namer(),
            );
            sink.graph(&snapshot).map_err(SessionError::Output)?;
        }
        Ok(())
    }

    /// In a Rust program, names the `std` locks in heap objects (`app::Store.hits`) that
    /// threads waited for and that have no name yet, from the slow-path call on their
    /// waiters' stacks (`lock_names::rust`): the stacks the analysis kept for each lock,
    /// and `found` (lock, the stack a thread waits for it with). Each lock's kept stacks
    /// are searched once.
    fn learn_rust_heap_names(&mut self, found: &[(u64, &RawStack)]) {
        let Some(heap) = &self.rust_heap_owners else {
            return;
        };
        let rust = self.analysis.rust();
        let mut wanted: Vec<(u64, Vec<RawStack>)> = self
            .analysis
            .stats()
            .iter()
            .map(|(addr, _)| addr)
            .filter(|&addr| {
                matches!(
                    self.analysis.lock_kind(addr),
                    LockKind::RustMutex | LockKind::RustRwLock | LockKind::Mutex | LockKind::RwLock
                ) && rust.needs_name_search(addr)
            })
            .map(|addr| {
                (
                    addr,
                    lock_wait_stacks(&self.analysis, addr, STACKS_PER_RUST_NAME),
                )
            })
            .collect();
        for &(lock, stack) in found {
            if !rust.heap_names().contains_key(&lock) {
                wanted.push((lock, vec![stack.clone()]));
            }
        }
        if wanted.is_empty() {
            return;
        }
        let mut namer = Namer {
            target: &*self.target,
            symbolizer: &mut self.symbolizer,
            code: &mut self.code,
            stacks: &self.probes,
            go: None,
            rust_heap_names: None,
        };
        let learnt: Vec<(u64, Option<Arc<str>>)> = wanted
            .into_iter()
            .map(|(lock, stacks)| {
                let name = stacks.iter().find_map(|stack| {
                    namer.stack(stack).frames.iter().find_map(|frame| {
                        heap.owners
                            .name_at(frame.address.wrapping_sub(heap.bias))
                            .cloned()
                    })
                });
                (lock, name)
            })
            .collect();
        for (lock, name) in learnt {
            self.analysis.rust_mut().name_searched(lock, name);
        }
    }

    /// The naming of this session's findings (see `crate::assemble`).
    fn namer(&mut self) -> Namer<'_> {
        Namer {
            target: &*self.target,
            symbolizer: &mut self.symbolizer,
            code: &mut self.code,
            stacks: &self.probes,
            go: self.go.as_ref().map(GoTracker::names),
            rust_heap_names: Some(self.analysis.rust().heap_names()),
        }
    }

    /// A confirmed cycle in raw terms: each thread's wait and stack, and where it took the
    /// lock it holds (with `--holds`).
    fn raw_deadlock(&mut self, cycle: &Cycle, timeouts: &[EntryTimeout]) -> Vec<RawCycleEntry> {
        let mut entries = Vec::with_capacity(cycle.edges.len());
        for (i, edge) in cycle.edges.iter().enumerate() {
            let timeout = timeouts.get(i).copied().unwrap_or(EntryTimeout {
                timed: false,
                gives_up_at_ns: None,
            });
            let wait = self.analysis.active_wait(edge.tid).copied();
            // Waits adopted at attach carry the attach time, not their real start.
            let before_attach = wait.is_some_and(|w| w.start_ns == self.adopted_at);
            let waiting = match wait {
                Some(w) => {
                    let window = *self.analysis.window(&w);
                    // The stack as it is now, deeper than the kernel's window (which ends
                    // in the middle of most lock stacks, and musl's lock functions alone
                    // fill it: the program's call sits ~264 bytes above the wait), and
                    // for a wait sent without its stack (`STACK_SAMPLE_EVERY`) the only
                    // one; read only while the thread is still in this wait.
                    let now = (window.sp != 0)
                        .then(|| self.read_still_blocked_stack(edge.tid, window.ip, window.sp))
                        .flatten();
                    match now {
                        Some(words) => RawStack::NativeRead {
                            stack_id: w.stack,
                            ip: window.ip,
                            sp: window.sp,
                            words,
                            waiter: edge.tid,
                        },
                        None => RawStack::Native {
                            stack_id: w.stack,
                            window: Box::new(window),
                            waiter: Some(edge.tid),
                        },
                    }
                }
                None => RawStack::None,
            };
            let held = self.analysis.held(edge.tid, edge.holds).copied();
            entries.push(RawCycleEntry {
                goid: None,
                tid: edge.tid,
                holds: edge.holds,
                waits_for: edge.waits_for,
                waiting,
                waiting_since_ns: wait.filter(|_| !before_attach).map(|w| w.start_ns),
                blocked_before_attach: before_attach,
                timed: timeout.timed,
                gives_up_at_ns: timeout.gives_up_at_ns,
                holding_since_ns: held.map(|h| h.since_ns),
                holder_evidence: self
                    .analysis
                    .found_holder(edge.tid, edge.holds)
                    .then_some(HolderEvidence::StackGuard),
                acquired: held.map_or(RawStack::None, |h| RawStack::Native {
                    stack_id: h.stack,
                    window: Box::new(StackWindow {
                        ip: h.call_site,
                        ..StackWindow::EMPTY
                    }),
                    waiter: None,
                }),
            });
        }
        entries
    }

    fn finish(
        mut self,
        sink: &mut dyn Sink,
        elapsed: Duration,
        mut notes: Vec<String>,
    ) -> Result<(), SessionError> {
        // Before the open waits are closed: a deadlock still in place is in the picture.
        self.draw_end_graphs(sink)?;
        let counters = self.probes.counters().unwrap_or_default();
        if let Some(tape) = self.tape.as_mut() {
            tape.push(&recording::tape::TapeItem::Counters(counters.into()));
        }
        self.fold_brief_waits();
        notes.extend(self.ownerless_adopted_waits_note());
        let ended_ns = monotonic_ns();
        if let Some(tape) = self.tape.as_mut() {
            tape.push(&recording::tape::TapeItem::End(ended_ns));
        }
        let still_waiting = self.analysis.close_open_waits(ended_ns);
        if still_waiting > 0 {
            notes.push(format!(
                "{still_waiting} thread(s) were still waiting for a lock when the trace ended; their waits count up to the end"
            ));
        }
        notes.extend(counter_notes(&counters, self.decode_errors));
        if self.records_left_unread {
            notes.push(format!(
                "the trace stopped with records still unread: the tracer was behind the target and read its backlog for {} s only (neither analysed nor counted as dropped)",
                FINAL_DRAIN_BUDGET.as_secs()
            ));
        }
        notes.extend(self.previous.summary_notes());
        notes.extend(self.timed_cycles.note());
        self.look_for_realtime_threads_if_dropping(counters.dropped);
        notes.extend(realtime::starvation_note(
            counters.dropped,
            self.target_realtime,
            self.config.realtime,
        ));
        notes.extend(memory_notes(MemoryBounds::of(
            &self.analysis,
            self.go.as_ref(),
        )));
        let other_locks = other_locks(&self.analysis, self.go.as_ref());
        self.learn_rust_heap_names(&[]);
        let now = monotonic_ns();
        let go_names_source = self.go.as_mut();
        let table = program_table(
            &self.analysis,
            go_names_source,
            now,
            Namer {
                target: &*self.target,
                symbolizer: &mut self.symbolizer,
                code: &mut self.code,
                stacks: &self.probes,
                go: None,
                rust_heap_names: None,
            },
        );
        notes.extend(table.notes);
        notes.extend(self.order.note());
        let previous = std::mem::take(&mut self.previous);
        let summary = Summary {
            pid: self.config.pid,
            ns_pid: self.ns_pid,
            duration_ns: u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            events: table.events + previous.events,
            dropped: counters.dropped,
            futex_wakes: counters.futex_wakes,
            futex_waits: counters.futex_waits,
            brief_lock_waits: table.brief_lock_waits + previous.brief_lock_waits,
            deadlocks: table.deadlocks + previous.deadlocks,
            timed_cycles: self.timed_cycles.reported(),
            lock_order_inversions: self.inversions_reported,
            locks: exec_watch::merge_lock_tables(previous.locks, table.locks),
            other_locks,
            filtered_out: None,
            notes,
        };
        // The tape's last chunk and names, before the summary that ends the recording.
        self.flush_tape(sink, true)?;
        sink.summary(&summary).map_err(SessionError::Output)
    }
}

/// The native and Go locks folded to bound memory, together; `None` when none was.
fn other_locks(analysis: &Analysis, go: Option<&GoTracker>) -> Option<OtherLocks> {
    let mut folded = analysis.stats().folded().clone();
    if let Some(go) = go {
        folded.absorb(go.folded());
    }
    (folded.locks > 0).then(|| OtherLocks {
        locks: folded.locks,
        contentions: folded.stats.contentions,
        wait_ns: folded.stats.wait(),
        hold_ns: folded.stats.hold(),
    })
}

/// The memory bounds a trace hit (see `crate::lockstats`), for its notes.
#[derive(Clone, Copy, Debug, Default)]
struct MemoryBounds {
    /// Locks folded into "other locks", native and Go.
    folded: u64,
    /// The cap that folded them (`--max-locks`).
    max_locks: usize,
    /// Locks with values enough for a full histogram that got none.
    kept_compact: usize,
    /// Sampled waits not counted among their lock's stacks.
    stacks_not_counted: u64,
}

impl MemoryBounds {
    fn of(analysis: &Analysis, go: Option<&GoTracker>) -> Self {
        Self {
            folded: analysis.stats().folded().locks + go.map_or(0, |g| g.folded().locks),
            max_locks: analysis.stats().max_locks(),
            kept_compact: analysis.stats().kept_compact(),
            stacks_not_counted: analysis.stacks_not_counted(),
        }
    }
}

/// Notes on the memory bounds hit: locks folded, percentiles kept coarse, stacks not
/// counted.
fn memory_notes(bounds: MemoryBounds) -> Vec<String> {
    let mut notes = Vec::new();
    if bounds.folded > 0 {
        notes.push(format!(
            "{} lock(s) folded into \"other locks\" to bound the tracer's memory: at most {} are tracked (--max-locks), and past that the least waited on are folded, their counts added to other_locks (a folded lock contended again starts afresh; locks being waited for or held and locks of findings are never folded)",
            bounds.folded, bounds.max_locks
        ));
    }
    if bounds.kept_compact > 0 {
        notes.push(format!(
            "{} lock(s) have percentiles to a power of two only: the tracer's {} full histograms were in use",
            bounds.kept_compact,
            lockstats::MAX_HISTOGRAMS
        ));
    }
    if bounds.stacks_not_counted > 0 {
        notes.push(format!(
            "{} sampled wait(s) were not counted among their lock's stacks: the lock had waited from {} distinct stacks already",
            bounds.stacks_not_counted,
            native::analysis::MAX_STACKS_PER_LOCK
        ));
    }
    notes
}

impl exec_watch::PreviousPrograms {
    /// Keeps the lock table and totals of a program the target left.
    fn keep(&mut self, table: ProgramTable) {
        self.kept += 1;
        self.locks.extend(table.locks);
        self.events += table.events;
        self.brief_lock_waits += table.brief_lock_waits;
        self.deadlocks += table.deadlocks;
        self.notes.extend(table.notes);
    }
}

/// One program's part of the summary.
struct ProgramTable {
    locks: Vec<LockSummary>,
    events: u64,
    brief_lock_waits: u64,
    deadlocks: usize,
    notes: Vec<String>,
}

/// The lock table of the program `analysis` (and `go`, for a Go program) traced, named by
/// `namer` (whose Go names are taken from `go`), with its totals; Go waits still open
/// count until `now_ns`. Used at the end of the trace, and at an `exec` for the program
/// the target left, while the symbolizer still holds that program's symbols.
fn program_table(
    analysis: &Analysis,
    mut go: Option<&mut GoTracker>,
    now_ns: u64,
    namer: Namer<'_>,
) -> ProgramTable {
    let mut notes = Vec::new();
    let mut locks: Vec<RawLockStats> = analysis
        .stats()
        .iter()
        .map(|(addr, stats)| RawLockStats {
            addr,
            kind: analysis.lock_kind(addr),
            contentions: stats.contentions,
            max_waiters: stats.max_waiters,
            wait_ns: stats.wait(),
            hold_ns: stats.hold(),
        })
        .collect();
    let mut go_events = 0;
    let mut go_deadlocks = 0;
    if let Some(go) = go.as_deref_mut() {
        go_events = go.events();
        go_deadlocks = go.deadlocks();
        notes.extend(go.notes());
        locks.extend(go.finish(now_ns));
    }
    let top_waiter = |addr| match analysis.top_wait_stack(addr) {
        Some((id, window)) => RawStack::Native {
            stack_id: (id != WINDOW_ONLY_STACK).then_some(id),
            window: Box::new(window),
            waiter: None,
        },
        None => RawStack::None,
    };
    let go = go.map(|go| &*go);
    let mut namer = Namer {
        go: go.map(GoTracker::names),
        rust_heap_names: Some(analysis.rust().heap_names()),
        ..namer
    };
    // In a Go program, the runtime's futex words say from their frames what they are:
    // idle sleeps leave the table, runtime locks get a name.
    let go_runtime = if go.is_some() {
        let stacks_of = |addr| go_futex_stacks(analysis, addr);
        assemble::go_runtime_futexes(&locks, &stacks_of, &mut namer)
    } else {
        assemble::GoRuntimeFutexes::default()
    };
    if !go_runtime.idle.is_empty() {
        locks.retain(|l| !go_runtime.idle.contains(&l.addr));
        notes.push(format!(
            "{} futex word(s) where Go runtime threads only slept idle (notes, parked threads) are left out of the locks",
            go_runtime.idle.len()
        ));
    }
    let mut lock_summaries = assemble::lock_summaries(&locks, &top_waiter, &mut namer);
    go_runtime.name(&mut lock_summaries);
    // Last: the objects the table's names (and the findings' before it) came from.
    notes.extend(namer.symbolizer.name_notes());
    ProgramTable {
        locks: lock_summaries,
        events: analysis.counts().events + go_events,
        brief_lock_waits: analysis.counts().brief_lock_waits,
        deadlocks: analysis.deadlocks_reported() + go_deadlocks,
        notes,
    }
}

/// The stacks that waited on the futex word `addr` most often, as many as telling a Go
/// runtime lock from an idle sleep takes (`assemble::go_runtime_futexes`).
fn go_futex_stacks(analysis: &Analysis, addr: u64) -> Vec<RawStack> {
    lock_wait_stacks(analysis, addr, assemble::STACKS_PER_GO_FUTEX)
}

/// How many of a Rust lock's most frequent waiting stacks are searched for its name.
const STACKS_PER_RUST_NAME: usize = 4;

/// Up to `limit` of the stacks that waited on the futex word `addr`, most frequent first.
fn lock_wait_stacks(analysis: &Analysis, addr: u64, limit: usize) -> Vec<RawStack> {
    analysis
        .wait_stacks(addr, limit)
        .into_iter()
        .map(|(id, window)| RawStack::Native {
            stack_id: (id != WINDOW_ONLY_STACK).then_some(id),
            window: Box::new(window),
            waiter: None,
        })
        .collect()
}

/// Notes on what the kernel or the decoder could not deliver.
#[must_use]
fn counter_notes(counters: &CounterTotals, decode_errors: u64) -> Vec<String> {
    let mut notes = Vec::new();
    if counters.dropped > 0 {
        notes.push(format!(
            "{} events dropped (ring buffer full): results are incomplete",
            counters.dropped
        ));
    }
    if decode_errors > 0 {
        notes.push(format!("{decode_errors} records could not be decoded"));
    }
    if counters.brief_waits_untracked > 0 {
        notes.push(format!(
            "{} futex waits that did not sleep were not counted (the kernel's table of futex words was full)",
            counters.brief_waits_untracked
        ));
    }
    if counters.open_sleeps_untracked > 0 {
        notes.push(format!(
            "{} futex waits that slept were not timed (the kernel's table of sleeping threads was full)",
            counters.open_sleeps_untracked
        ));
    }
    if counters.stack_errors > 0 {
        notes.push(format!(
            "{} stacks could not be recorded",
            counters.stack_errors
        ));
    }
    if counters.unmatched_returns > 0 {
        notes.push(format!(
            "{} lock calls returned without their entry being seen: their acquisitions are missing",
            counters.unmatched_returns
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the notes on the target's C library: a program on a C library that is
    /// neither glibc nor musl is told it gets futex-only mode and why (it used to get
    /// nothing: `"locks": []` and no note); a musl program is told the lock uprobes are
    /// on; a Go program (no C library needed) is told nothing.
    #[test]
    fn c_library_notes_say_what_mode_and_why() {
        use crate::target::UnrecognisedLibc;
        let unknown =
            CLibrary::Unrecognised(UnrecognisedLibc::OtherShared("/opt/x/libc.so".to_owned()));
        let note = c_library_note(&unknown, false, false).expect("a note");
        assert!(note.contains("futex-only mode"), "{note}");
        assert!(
            note.contains("/opt/x/libc.so is neither glibc nor musl"),
            "{note}"
        );
        let stripped = CLibrary::Unrecognised(UnrecognisedLibc::StaticWithoutSymbols);
        assert!(
            c_library_note(&stripped, false, true)
                .unwrap()
                .contains("no symbol table")
        );
        assert_eq!(c_library_note(&stripped, true, false), None);
        let musl = CLibrary::Static {
            flavor: LibcFlavor::Musl,
        };
        assert!(
            c_library_note(&musl, false, false)
                .unwrap()
                .contains("lock uprobes")
        );
        // With --holds the uprobes were asked for: nothing to explain.
        assert_eq!(c_library_note(&musl, false, true), None);
        let glibc = CLibrary::Shared {
            flavor: LibcFlavor::Glibc,
            path: "/lib/libc.so.6".to_owned(),
        };
        assert_eq!(c_library_note(&glibc, false, false), None);
    }

    /// Guards the report against silently undercounting: each kind of loss the kernel
    /// counts gets its note, and none appears when nothing was lost.
    #[test]
    fn every_counted_loss_gets_a_note() {
        assert!(counter_notes(&CounterTotals::default(), 0).is_empty());
        let counters = CounterTotals {
            dropped: 1,
            stack_errors: 2,
            brief_waits_untracked: 3,
            unmatched_returns: 5,
            open_sleeps_untracked: 6,
            ..CounterTotals::default()
        };
        let notes = counter_notes(&counters, 4);
        assert_eq!(notes.len(), 6, "{notes:?}");
        for needle in [
            "1 events dropped",
            "2 stacks",
            "3 futex waits that did not sleep",
            "4 records",
            "5 lock calls",
            "6 futex waits that slept",
        ] {
            assert!(
                notes.iter().any(|n| n.starts_with(needle)),
                "{needle}: {notes:?}"
            );
        }
    }

    /// Guards issue 16's notes: a trace that hit no memory bound says nothing; one that
    /// did says how many locks were folded and under which cap, how many locks have coarse
    /// percentiles, and how many waits were not counted among stacks.
    #[test]
    fn memory_notes_say_which_bounds_were_hit() {
        assert!(memory_notes(MemoryBounds::default()).is_empty());
        let notes = memory_notes(MemoryBounds {
            folded: 91_115,
            max_locks: 10_000,
            kept_compact: 3,
            stacks_not_counted: 7,
        });
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes[0].starts_with("91115 lock(s) folded into \"other locks\"")
                && notes[0].contains("at most 10000 are tracked (--max-locks)"),
            "{notes:?}"
        );
        assert!(notes[1].starts_with("3 lock(s) have percentiles to a power of two only"));
        assert!(notes[2].starts_with("7 sampled wait(s) were not counted"));
        let only_folded = memory_notes(MemoryBounds {
            folded: 1,
            max_locks: 1,
            ..MemoryBounds::default()
        });
        assert_eq!(only_folded.len(), 1);
    }
}
