//! A live attach: the tokio loop that drains the probes in batches, feeds the analysis,
//! confirms deadlock candidates against the live process, prints findings the moment
//! they are confirmed, and prints the summary at the end.
use std::{
    cell::RefCell,
    collections::HashSet,
    io::{self, Write},
    path::Path,
    time::{Duration, Instant},
};

use thiserror::Error;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};
use tracer_common::{
    FUTEX_TID_MASK, FutexCall, FutexWait, SNAPSHOT_LEAD_BYTES, SNAPSHOT_WORDS, STACK_WINDOW_WORDS,
    futex_cmd, syscall,
};

use crate::{
    analysis::{Analysis, WINDOW_ONLY_STACK},
    event::{Record, Snapshot, StackWindow, TraceEvent, WindowRef, decode},
    futex_lock::{MUTEX_OWNER_OFFSET, RWLOCK_WRITER_OFFSET},
    gotrace::{self, GoFinding, GoTracker},
    probes::{CounterTotals, Hooks, ProbeError, Probes},
    procfs::{self, SyscallState},
    realtime::{self, RealtimeGuard},
    report::{self, Deadlock, DeadlockEntry, LockKind, LockRef, LockSummary, Summary},
    symbols::{self, Frame, Symbolizer},
    unwind::{self, CALL_LOOKBEHIND},
    waitgraph::Cycle,
};

/// Shortest time between two drains of the ring buffer: records arriving meanwhile wait
/// and are analysed in one batch. Bounds the report latency of a deadlock (goal: 100 ms)
/// from below.
const DRAIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest the loop sleeps when no record comes (it sleeps only once a drain found none,
/// and has the programs wake it for the next record: `Probes::set_reader_polls`):
/// periodic work (brief-wait totals, rescans, the target's liveness) runs at this pace at
/// the least. Draining every 10 ms regardless cost ~2.5% of a CPU with an
/// idle target, mostly the wakeups themselves on this VM.
const IDLE_INTERVAL: Duration = Duration::from_millis(250);
/// Records drained between checks of the time budget.
const DRAIN_CHUNK: usize = 4096;
/// Longest one drain may run before the loop looks at signals, the deadline and deadlock
/// candidates again.
const DRAIN_BUDGET: Duration = Duration::from_millis(50);
/// How often the whole graph is re-scanned for cycles that closed through a holder update.
const RESCAN_INTERVAL: Duration = Duration::from_millis(250);

/// How long the symbolizer's objects may load ahead of need; the rest load when needed.
const PRELOAD_BUDGET: Duration = Duration::from_secs(2);
/// Locks in the summary that get their top waiting stack symbolized.
const STACKS_IN_SUMMARY: usize = 20;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub pid: u32,
    pub duration: Option<Duration>,
    pub format: Format,
    pub holds: bool,
    /// A Go lock with waiters and no release for this long is reported as stuck.
    pub stuck_after: Duration,
    /// Drain at this `SCHED_FIFO` priority (`crate::realtime`), if any.
    pub realtime: Option<u8>,
    /// Turn on the eBPF programs' diagnostics and print them on stderr (`--bpf-log`).
    pub bpf_log: bool,
}

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("no such process: {pid}")]
    NoSuchProcess { pid: u32 },
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
        source: procfs::ProcError,
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
/// writing findings and the summary to `out`.
///
/// # Errors
/// For bad input (no such process, no privilege, no BTF, target gone during attach);
/// once attached, only a failure to write the report is an error.
pub async fn run(config: Config, out: &mut dyn Write) -> Result<(), SessionError> {
    let pid = config.pid;
    if !procfs::process_alive(pid) {
        return Err(SessionError::NoSuchProcess { pid });
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(SessionError::NoBtf);
    }
    let gone = |source| {
        if procfs::process_alive(pid) {
            SessionError::Proc { pid, source }
        } else {
            SessionError::ExitedDuringAttach { pid }
        }
    };
    let maps = procfs::read_maps(pid).map_err(gone)?;
    let libc = procfs::find_libc(&maps).map(|path| procfs::host_path(pid, &path));
    let symbolizer =
        Symbolizer::for_process(pid).map_err(|_| SessionError::ExitedDuringAttach { pid })?;
    // Test hook for the root tests only: widens the window between reading the target
    // and attaching, so that "the target exits during attach" can be tested for sure.
    if let Some(ms) = std::env::var("TRACER_TEST_ATTACH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let mut notes = Vec::new();
    let go_target = match gotrace::inspect(pid, &maps) {
        Ok(target) => target,
        Err(why) => {
            notes.push(format!(
                "Go lock tracing unavailable, futex mode only: {}",
                crate::error_chain(&why)
            ));
            None
        }
    };
    let attach_started = Instant::now();
    let probes = attach_probes(&config, libc.as_deref(), go_target.as_ref())?;
    if !procfs::process_alive(pid) {
        return Err(SessionError::ExitedDuringAttach { pid });
    }
    if let Some(why) = &probes.summary.go_multi_unavailable {
        notes.push(format!(
            "Go sites attached one by one (uprobe_multi unavailable: {why}): detaching them takes about 0.1 s each"
        ));
    }
    if let Some(target) = &go_target {
        notes.push(target.attach_note(
            probes.summary.go_sites,
            probes.summary.go_sites_refused.len(),
            attach_started.elapsed(),
        ));
    }
    if config.holds {
        if libc.is_none() {
            notes.push(
                "no glibc mapped in the target: lock functions not found, futex mode only"
                    .to_owned(),
            );
        } else if !probes.summary.missing_lock_functions.is_empty() {
            notes.push(format!(
                "lock functions not found in libc, not traced: {}",
                probes.summary.missing_lock_functions.join(", ")
            ));
        }
    }
    for note in &notes {
        eprintln!("tracer: note: {note}");
    }
    let threads = ThreadSet::new(pid);
    let code = CodeCheck::new(pid, &maps);
    let go = go_target.map(|t| GoTracker::new(pid, t, config.stuck_after));
    let mut session = Session {
        go,
        config,
        probes,
        symbolizer,
        analysis: Analysis::new(),
        threads,
        code,
        decode_errors: 0,
        adopted_at: 0,
        preloaded: None,
        target_realtime: procfs::RealtimeThreads::default(),
        dropped_seen: 0,
    };
    // Threads that were already asleep before the hooks were in place send no event:
    // find them, so a process that is already deadlocked is diagnosed at once.
    session.adopt_blocked_threads();
    // Symbol tables and DWARF of the mapped objects load on a thread of their own, so the
    // first deadlock report does not wait for them (a libc debug file alone takes ~0.1 s)
    // and the drain loop is never held up by them.
    let (root, objects) = session.symbolizer.preload_list();
    let (preloaded_tx, preloaded) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = preloaded_tx.send(symbols::preload(&root, objects, PRELOAD_BUDGET));
    });
    session.preloaded = Some(preloaded);
    let started = Instant::now();
    let exited = session.trace_at_priority(out).await?;
    if exited {
        notes.push(format!("process {pid} exited during the trace"));
    }
    session.finish(out, started.elapsed(), notes)
}

/// Loads and attaches the probes: futex hooks, `--holds` uprobes in `libc`, and the Go
/// sites of `go`.
fn attach_probes(
    config: &Config,
    libc: Option<&Path>,
    go: Option<&gotrace::GoTarget>,
) -> Result<Probes, SessionError> {
    let (pid, holds) = (config.pid, config.holds);
    let go_attach = go.map(gotrace::GoTarget::probe_sites);
    let hooks = Hooks::Trace { holds };
    Probes::attach(pid, hooks, libc, go_attach.as_ref(), config.bpf_log).map_err(|source| {
        if source.is_permission_denied() {
            SessionError::NotPrivileged(source)
        } else if !procfs::process_alive(pid) {
            SessionError::ExitedDuringAttach { pid }
        } else {
            SessionError::Attach { pid, source }
        }
    })
}

struct Session {
    /// Go lock tracking, when the target is a Go program.
    go: Option<GoTracker>,
    config: Config,
    probes: Probes,
    symbolizer: Symbolizer,
    analysis: Analysis,
    threads: ThreadSet,
    code: CodeCheck,
    decode_errors: u64,
    /// Monotonic time given to waits found already blocked at attach.
    adopted_at: u64,
    /// The symbolizer's objects, loading on their own thread until adopted.
    preloaded: Option<std::sync::mpsc::Receiver<symbols::Preloaded>>,
    /// The most real-time threads the target was seen with, read whenever records were
    /// dropped since the last look (the moment they can explain it; a target that exits
    /// has none left to read at the end).
    target_realtime: procfs::RealtimeThreads,
    /// The dropped-records count at the last look.
    dropped_seen: u64,
}

/// Bytes of stack read for a thread found blocked at attach (no kernel event exists for
/// its wait): scanned for return addresses, the first `STACK_WINDOW_WORDS` kept.
const BLOCKED_STACK_SCAN_BYTES: usize = 16 * 1024;

impl Session {
    /// Turns every thread blocked in a futex wait right now into a wait event, built
    /// from `/proc/PID/task/TID/syscall` (futex word, op, expected value, user SP and PC)
    /// and the target's memory (lock snapshot, stack). Runs after the hooks are attached,
    /// so a wait that starts in between is seen by both, which is harmless.
    fn adopt_blocked_threads(&mut self) {
        let pid = self.config.pid;
        let now = monotonic_ns();
        self.adopted_at = now;
        let mut parked = Vec::new();
        for tid in procfs::thread_ids(pid).unwrap_or_default() {
            let Some(SyscallState::InSyscall { nr, args, sp, pc }) =
                procfs::syscall_state(pid, tid)
            else {
                continue;
            };
            // `futex_waitv` waits are not adopted: their words are in the target's memory.
            let [arg0, arg1, arg2, ..] = args;
            let Some(FutexCall::Wait(FutexWait { addr, cmd, val })) =
                FutexCall::decode(nr, [arg0, arg1, arg2])
            else {
                continue;
            };
            if is_glibc_pi_park(addr, cmd, val, sp) {
                parked.push((tid, sp, pc));
                continue;
            }
            let window = self.scan_blocked_stack(pc, sp);
            let event = TraceEvent::FutexWait {
                tid,
                ts_ns: now,
                addr,
                cmd,
                val,
                stack: None,
                snapshot: read_snapshot(pid, addr),
                window: WindowRef::Built(&window),
            };
            let threads = &self.threads;
            self.analysis.on_event(&event, &|t| threads.contains(t));
        }
        // Second pass, once every other wait is known: threads glibc parked for good
        // after the kernel refused them a PI mutex with EDEADLK.
        for (tid, sp, pc) in parked {
            let Some(mutex) = self.parked_pi_mutex(tid) else {
                continue;
            };
            let window = self.scan_blocked_stack(pc, sp);
            let event = TraceEvent::FutexWait {
                tid,
                ts_ns: now,
                addr: mutex,
                cmd: futex_cmd::LOCK_PI2,
                val: 0,
                stack: None,
                snapshot: read_snapshot(pid, mutex),
                window: WindowRef::Built(&window),
            };
            let threads = &self.threads;
            self.analysis.on_event(&event, &|t| threads.contains(t));
            self.analysis.mark_parked(tid);
        }
    }

    /// Which PI mutex a parked thread (see [`is_glibc_pi_park`]) wanted. The kernel
    /// refused it because the mutex's owner waits, directly or through others, for a lock
    /// the parked thread holds: so look for a PI mutex owned by a thread that sits in
    /// `FUTEX_LOCK_PI` on a lock the parked thread owns. The pointer itself is gone (kept
    /// in a register), so the target's writable memory is searched for a futex word that
    /// holds that owner's TID in a mutex whose kind says priority inheritance. A wrong
    /// guess cannot become a report: the cycle is still confirmed against live memory.
    fn parked_pi_mutex(&self, parked_tid: u32) -> Option<u64> {
        let pid = self.config.pid;
        let owners: Vec<u32> = procfs::thread_ids(pid)
            .unwrap_or_default()
            .into_iter()
            .filter(|&t| t != parked_tid)
            .filter(|&t| {
                self.analysis.active_wait(t).is_some_and(|w| {
                    w.lock
                        .is_some_and(|lock| pi_owner(pid, lock) == Some(parked_tid))
                })
            })
            .collect();
        let maps = procfs::read_maps(pid).ok()?;
        let mut budget = PI_SEARCH_BYTES;
        for region in maps.iter().filter(|m| m.read && m.write) {
            // Thread stacks hold no mutexes worth this scan; images, .bss and heaps do.
            if region
                .path
                .as_deref()
                .is_some_and(|p| p.starts_with("[stack"))
            {
                continue;
            }
            let len = usize::try_from(region.end - region.start).ok()?.min(budget);
            budget -= len;
            let mut bytes = vec![0u8; len];
            let Ok(n) = procfs::read_memory(pid, region.start, &mut bytes) else {
                continue;
            };
            let found = (0..n.saturating_sub(20)).step_by(4).find(|&at| {
                let word =
                    u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
                let kind = i32::from_ne_bytes([
                    bytes[at + 16],
                    bytes[at + 17],
                    bytes[at + 18],
                    bytes[at + 19],
                ]);
                kind & PTHREAD_MUTEX_PRIO_INHERIT != 0 && owners.contains(&(word & FUTEX_TID_MASK))
            });
            if let Some(at) = found {
                return Some(region.start + at as u64);
            }
            if budget == 0 {
                break;
            }
        }
        None
    }

    /// A stack window for a thread found blocked: the return addresses found in the top
    /// of its stack (there is no frame-pointer chain from the kernel for it).
    fn scan_blocked_stack(&mut self, pc: u64, sp: u64) -> StackWindow {
        let mut window = StackWindow {
            ip: pc,
            sp,
            len: 0,
            words: [0; STACK_WINDOW_WORDS],
        };
        let mut bytes = vec![0u8; BLOCKED_STACK_SCAN_BYTES];
        let Ok(n) = procfs::read_memory(self.config.pid, sp, &mut bytes) else {
            return window;
        };
        let mut len = 0;
        for chunk in bytes[..n].chunks_exact(8) {
            let word = u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
            if len < STACK_WINDOW_WORDS && self.code.is_return_address(word) {
                window.words[len] = word;
                len += 1;
            }
        }
        window.len = u32::try_from(len).unwrap_or(0);
        window
    }

    /// [`Session::trace`], at the `SCHED_FIFO` priority of `--realtime` if given. Only the
    /// drain loop runs real-time: the symbol loading started before it as a normal thread,
    /// and the final report is built at normal priority again.
    async fn trace_at_priority(&mut self, out: &mut dyn Write) -> Result<bool, SessionError> {
        let realtime = self
            .config
            .realtime
            .map(|priority| {
                RealtimeGuard::enter(priority)
                    .map_err(|source| SessionError::Realtime { priority, source })
            })
            .transpose()?;
        let exited = self.trace(out).await;
        drop(realtime);
        exited
    }

    /// The main loop. Returns whether the target exited.
    async fn trace(&mut self, out: &mut dyn Write) -> Result<bool, SessionError> {
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
                () = tokio::time::sleep(DRAIN_INTERVAL) => {}
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
                        tokio::select! {
                            ready = records.readable() => {
                                // Cleared before the drain: a record committed after it
                                // wakes us.
                                if let Ok(mut guard) = ready {
                                    guard.clear_ready();
                                }
                            }
                            () = tokio::time::sleep_until(wake_at) => {}
                            _ = interrupt.recv() => break,
                            _ = terminate.recv() => break,
                        }
                        self.pump()
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
                self.fold_brief_waits();
                self.analysis.rescan();
                last_rescan = Instant::now();
            }
            self.report_confirmed_deadlocks(out)?;
            self.report_go_findings(out)?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if last_alive_check.elapsed() >= RESCAN_INTERVAL {
                if let Ok(counters) = self.probes.counters() {
                    self.look_for_realtime_threads_if_dropping(counters.dropped);
                }
                if !procfs::process_alive(self.config.pid) {
                    self.pump();
                    return Ok(true);
                }
                last_alive_check = Instant::now();
            }
        }
        self.pump();
        self.report_confirmed_deadlocks(out)?;
        self.report_go_findings(out)?;
        Ok(false)
    }

    /// Reads the target's real-time threads when records were dropped since the last
    /// look: the moment they can explain it (see `realtime::starvation_note`). Reading
    /// every thread's `stat` is left for then, not done at every tick.
    fn look_for_realtime_threads_if_dropping(&mut self, dropped: u64) {
        if dropped > self.dropped_seen {
            self.dropped_seen = dropped;
            self.target_realtime = self
                .target_realtime
                .max(procfs::realtime_threads(self.config.pid));
        }
    }

    /// Adds the kernel's totals of waits that never slept to the lock statistics.
    fn fold_brief_waits(&mut self) {
        // A failed read only delays these totals to the next one (they are cumulative).
        if let Ok(totals) = self.probes.brief_waits() {
            let threads = &self.threads;
            self.analysis
                .on_brief_waits(&totals, &|tid| threads.contains(tid));
        }
    }

    /// Drains the ring buffer into the analysis.
    fn pump(&mut self) -> Drain {
        let Self {
            probes,
            analysis,
            threads,
            decode_errors,
            go,
            ..
        } = self;
        let is_thread = |tid| threads.contains(tid);
        // Bounded, so that a target producing events faster than we analyse them cannot
        // keep the loop from signals, the deadline and deadlock reports: what we cannot
        // keep up with is dropped (and counted) by the kernel instead.
        let started = Instant::now();
        let mut total = 0;
        loop {
            let n = probes.drain(DRAIN_CHUNK, |bytes| {
                // By reference: binding the decoded event by value copied it once more.
                match decode(bytes) {
                    Ok(Record::Native(ref event)) => analysis.on_event(event, &is_thread),
                    Ok(Record::Go(ref event)) => match go.as_mut() {
                        Some(go) => go.on_event(event),
                        // Go sites are only attached in Go targets.
                        None => *decode_errors += 1,
                    },
                    Err(_) => *decode_errors += 1,
                }
            });
            total += n;
            if n < DRAIN_CHUNK {
                return if total == 0 {
                    Drain::Empty
                } else {
                    Drain::CaughtUp
                };
            }
            if started.elapsed() >= DRAIN_BUDGET {
                return Drain::Backlog;
            }
        }
    }

    /// Prints Go deadlocks confirmed since the last call and stuck locks now due.
    fn report_go_findings(&mut self, out: &mut dyn Write) -> Result<(), SessionError> {
        let Some(go) = self.go.as_mut() else {
            return Ok(());
        };
        let probes = &self.probes;
        let stacks = |id: u32| probes.stack(id);
        let findings = go.findings(monotonic_ns(), &stacks, &mut self.symbolizer);
        for finding in findings {
            let text = match (finding, self.config.format) {
                (GoFinding::Deadlock(d), Format::Json) => report::deadlock_json(&d) + "\n",
                (GoFinding::Deadlock(d), Format::Text) => report::deadlock_text(&d) + "\n",
                (GoFinding::Stuck(s), Format::Json) => report::stuck_lock_json(&s) + "\n",
                (GoFinding::Stuck(s), Format::Text) => report::stuck_lock_text(&s) + "\n",
            };
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(SessionError::Output)?;
        }
        Ok(())
    }

    fn report_confirmed_deadlocks(&mut self, out: &mut dyn Write) -> Result<(), SessionError> {
        for cycle in self.analysis.candidates() {
            if !self.confirm(&cycle) {
                continue;
            }
            self.analysis.mark_reported(&cycle);
            let deadlock = self.deadlock(&cycle);
            let text = match self.config.format {
                Format::Json => report::deadlock_json(&deadlock) + "\n",
                Format::Text => report::deadlock_text(&deadlock) + "\n",
            };
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(SessionError::Output)?;
        }
        Ok(())
    }

    /// Checks a candidate cycle against the live process, so a cycle assembled from
    /// events that raced (a wake not yet seen) is never reported: every thread must still
    /// sleep in a futex call on the word it waits on, and every lock's owner field, read
    /// now, must still name the next thread of the cycle.
    ///
    /// Those reads are made one after another, so each thread's context-switch count is
    /// read before and after them all and must not move: otherwise a thread could be seen
    /// asleep on a lock and, a moment later, as its owner, after it woke and took it (a
    /// false self-deadlock on a busy mutex, seen once in CI). A deadlocked thread does not
    /// run, so a real cycle always passes.
    fn confirm(&self, cycle: &Cycle) -> bool {
        let pid = self.config.pid;
        let switches = || -> Option<Vec<u64>> {
            cycle
                .edges
                .iter()
                .map(|edge| procfs::context_switches(pid, edge.tid))
                .collect()
        };
        let Some(before) = switches() else {
            return false;
        };
        self.cycle_state_holds(cycle) && switches().is_some_and(|after| after == before)
    }

    /// Whether every thread of `cycle` sleeps in a futex call on the word it waits on and
    /// every lock's owner field names the next thread (see [`Session::confirm`]).
    fn cycle_state_holds(&self, cycle: &Cycle) -> bool {
        let pid = self.config.pid;
        let n = cycle.edges.len();
        cycle.edges.iter().enumerate().all(|(i, edge)| {
            let Some(wait) = self.analysis.active_wait(edge.tid) else {
                return false;
            };
            if wait.lock != Some(edge.waits_for) {
                return false;
            }
            let blocked_here = match procfs::syscall_state(pid, edge.tid) {
                Some(SyscallState::InSyscall { nr, args, .. }) => match nr {
                    // Parked after EDEADLK: asleep for good, on a word of its own.
                    syscall::FUTEX | syscall::FUTEX_WAIT if wait.parked => true,
                    syscall::FUTEX | syscall::FUTEX_WAIT => args[0] == wait.futex,
                    syscall::FUTEX_WAITV => true,
                    _ => false,
                },
                _ => false,
            };
            let next = cycle.edges[(i + 1) % n].tid;
            blocked_here && self.owner_still(edge.waits_for, next)
        })
    }

    /// Whether the lock's owner field still names `tid` (true when the lock has no owner
    /// field to check and the holder came from the acquire uprobes).
    fn owner_still(&self, lock: u64, tid: u32) -> bool {
        let pid = self.config.pid;
        let read_i32 = |addr: u64| {
            let mut buf = [0u8; 4];
            procfs::read_memory(pid, addr, &mut buf)
                .ok()
                .filter(|&n| n == 4)
                .map(|_| i32::from_ne_bytes(buf))
        };
        let expect = i32::try_from(tid).unwrap_or(-1);
        match self.analysis.lock_kind(lock) {
            LockKind::Mutex => read_i32(lock + MUTEX_OWNER_OFFSET) == Some(expect),
            LockKind::PiMutex => {
                read_i32(lock).is_some_and(|w| w.cast_unsigned() & FUTEX_TID_MASK == tid)
            }
            LockKind::RwLock => match read_i32(lock + RWLOCK_WRITER_OFFSET) {
                // Readers are not recorded in the lock; only the uprobes know them.
                Some(0) => self.analysis.held(tid, lock).is_some(),
                writer => writer == Some(expect),
            },
            LockKind::Futex | LockKind::GoMutex | LockKind::GoRwMutex => {
                self.analysis.held(tid, lock).is_some()
            }
        }
    }

    fn lock_ref(&mut self, addr: u64) -> LockRef {
        self.symbolizer.lock_ref(addr)
    }

    /// Function names (innermost first) and detailed lines for a wait's stack: the kernel's
    /// frame-pointer chain merged with the return addresses found in the stack window.
    ///
    /// `tid` is the waiting thread, when the stack is a wait's: with `--holds` its window
    /// may hold the uretprobe trampoline in place of the lock call's return address.
    fn stack(
        &mut self,
        id: Option<u32>,
        window: &StackWindow,
        tid: Option<u32>,
    ) -> (Vec<String>, Vec<String>) {
        let fp_chain = id.map(|id| self.probes.stack(id)).unwrap_or_default();
        let mut words = window.words().to_vec();
        if let Some(site) = tid.and_then(|tid| self.probes.pending_call_site(tid)) {
            for word in &mut words {
                if self.code.is_uprobe_trampoline(*word) {
                    *word = site;
                }
            }
        }
        let code = &mut self.code;
        let ips = unwind::merge_frames(window.ip, &words, &fp_chain, &mut |addr| {
            code.is_return_address(addr)
        });
        let frames: Vec<_> = ips
            .iter()
            .enumerate()
            // Return addresses point after the call; look up the call itself for its line.
            .map(|(i, &ip)| {
                let mut frame =
                    self.symbolizer
                        .frame(if i == 0 { ip } else { ip.saturating_sub(1) });
                if i > 0 {
                    frame.offset += 1;
                    frame.addr = ip;
                }
                frame
            })
            .collect();
        (
            frames.iter().map(Frame::function_name).collect(),
            frames.iter().map(Frame::display).collect(),
        )
    }

    fn deadlock(&mut self, cycle: &Cycle) -> Deadlock {
        let now = monotonic_ns();
        let mut closed_at = 0;
        let mut entries = Vec::with_capacity(cycle.edges.len());
        for edge in &cycle.edges {
            let wait = self.analysis.active_wait(edge.tid).copied();
            // Waits adopted at attach carry the attach time, not their real start.
            let before_attach = wait.is_some_and(|w| w.start_ns == self.adopted_at);
            if !before_attach {
                closed_at = closed_at.max(wait.map_or(0, |w| w.start_ns));
            }
            let (stack, stack_detail) = match wait {
                Some(w) => {
                    let mut window = *self.analysis.window(&w);
                    if w.stack.is_none() && window.len == 0 && window.sp != 0 {
                        // Sent without its stack (`STACK_SAMPLE_EVERY`): the thread is
                        // still blocked in this wait, so its stack is still in place.
                        window = self.scan_blocked_stack(window.ip, window.sp);
                    }
                    self.stack(w.stack, &window, Some(edge.tid))
                }
                None => (Vec::new(), Vec::new()),
            };
            let held = self.analysis.held(edge.tid, edge.holds).copied();
            let (acquired_at, acquired_at_detail) = match held {
                Some(h) => {
                    let window = StackWindow {
                        ip: h.call_site,
                        ..StackWindow::EMPTY
                    };
                    self.stack(h.stack, &window, None)
                }
                None => (Vec::new(), Vec::new()),
            };
            entries.push(DeadlockEntry {
                goid: None,
                tid: edge.tid,
                thread: procfs::thread_name(self.config.pid, edge.tid).unwrap_or_default(),
                holds: self.lock_ref(edge.holds),
                waits_for: self.lock_ref(edge.waits_for),
                stack,
                stack_detail,
                waited_ns: wait
                    .filter(|_| !before_attach)
                    .map(|w| now.saturating_sub(w.start_ns)),
                blocked_before_attach: before_attach,
                held_ns: held.map(|h| now.saturating_sub(h.since_ns)),
                acquired_at,
                acquired_at_detail,
            });
        }
        Deadlock {
            cycle: entries,
            detected_after_ns: (closed_at > 0).then(|| now.saturating_sub(closed_at)),
        }
    }

    fn finish(
        mut self,
        out: &mut dyn Write,
        elapsed: Duration,
        mut notes: Vec<String>,
    ) -> Result<(), SessionError> {
        let counters = self.probes.counters().unwrap_or_default();
        self.fold_brief_waits();
        let still_waiting = self.analysis.close_open_waits(monotonic_ns());
        if still_waiting > 0 {
            notes.push(format!(
                "{still_waiting} thread(s) were still waiting for a lock when the trace ended; their waits count up to the end"
            ));
        }
        notes.extend(counter_notes(&counters, self.decode_errors));
        self.look_for_realtime_threads_if_dropping(counters.dropped);
        notes.extend(realtime::starvation_note(
            counters.dropped,
            self.target_realtime,
            self.config.realtime,
        ));
        let mut locks: Vec<LockSummary> = self
            .analysis
            .stats()
            .iter()
            .map(|(addr, stats)| LockSummary {
                lock: LockRef {
                    addr,
                    name: None,
                    location: None,
                },
                kind: self.analysis.lock_kind(addr),
                contentions: stats.contentions,
                max_waiters: stats.max_waiters,
                wait_ns: stats.wait(),
                hold_ns: stats.hold(),
                top_waiter_stack: Vec::new(),
            })
            .collect();
        let mut go_events = 0;
        let mut go_deadlocks = 0;
        if let Some(go) = self.go.as_mut() {
            go_events = go.events();
            go_deadlocks = go.deadlocks();
            locks.extend(go.finish(monotonic_ns(), &mut self.symbolizer));
        }
        let mut summary = Summary {
            pid: self.config.pid,
            duration_ns: u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            events: self.analysis.counts().events + go_events,
            dropped: counters.dropped,
            futex_wakes: counters.futex_wakes,
            futex_waits: counters.futex_waits,
            brief_lock_waits: self.analysis.counts().brief_lock_waits,
            deadlocks: self.analysis.deadlocks_reported() + go_deadlocks,
            locks: Vec::new(),
            notes,
        };
        locks.sort_by(|a, b| {
            b.wait_ns
                .total
                .cmp(&a.wait_ns.total)
                .then(a.lock.addr.cmp(&b.lock.addr))
        });
        for (i, lock) in locks.iter_mut().enumerate() {
            if lock.lock.name.is_none() && lock.lock.location.is_none() {
                lock.lock = self.lock_ref(lock.lock.addr);
            }
            if i < STACKS_IN_SUMMARY
                && let Some((id, window)) = self.analysis.top_wait_stack(lock.lock.addr)
            {
                let id = (id != WINDOW_ONLY_STACK).then_some(id);
                lock.top_waiter_stack = self.stack(id, &window, None).1;
            }
        }
        summary.locks = locks;
        summary.sort_locks();
        let text = match self.config.format {
            Format::Json => report::summary_json(&summary) + "\n",
            Format::Text => report::summary_text(&summary),
        };
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(SessionError::Output)
    }
}

/// The target's threads, refreshed from `/proc` when an unknown TID shows up (at most
/// once per drain interval, so a burst of bogus owner fields costs one directory read).
struct ThreadSet {
    pid: u32,
    inner: RefCell<(HashSet<u32>, Instant)>,
}

impl ThreadSet {
    fn new(pid: u32) -> Self {
        let tids = procfs::thread_ids(pid)
            .unwrap_or_default()
            .into_iter()
            .collect();
        Self {
            pid,
            inner: RefCell::new((tids, Instant::now())),
        }
    }

    fn contains(&self, tid: u32) -> bool {
        let mut inner = self.inner.borrow_mut();
        if inner.0.contains(&tid) {
            return true;
        }
        if inner.1.elapsed() >= DRAIN_INTERVAL {
            inner.0 = procfs::thread_ids(self.pid)
                .unwrap_or_default()
                .into_iter()
                .collect();
            inner.1 = Instant::now();
        }
        inner.0.contains(&tid)
    }
}

/// `PTHREAD_MUTEX_PRIO_INHERIT_NP`, in the kind field (offset 16) of a glibc mutex.
const PTHREAD_MUTEX_PRIO_INHERIT: i32 = 0x20;
/// Most memory searched for the mutex a parked PI waiter wanted.
const PI_SEARCH_BYTES: usize = 64 * 1024 * 1024;

/// Whether a blocked futex call is glibc's park after `EDEADLK` from `FUTEX_LOCK_PI`:
/// a zero-expecting wait on a word of the thread's own stack (`&(unsigned int){0}`).
fn is_glibc_pi_park(addr: u64, cmd: u32, val: u32, sp: u64) -> bool {
    matches!(cmd, futex_cmd::WAIT | futex_cmd::WAIT_BITSET)
        && val == 0
        && addr >= sp
        && addr - sp < 4096
}

/// The owner TID in a PI mutex's futex word, read now.
fn pi_owner(pid: u32, lock: u64) -> Option<u32> {
    let mut word = [0u8; 4];
    procfs::read_memory(pid, lock, &mut word)
        .ok()
        .filter(|&n| n == 4)?;
    Some(u32::from_ne_bytes(word) & FUTEX_TID_MASK).filter(|&t| t != 0)
}

/// The memory around a futex word, read now, in the same shape the kernel sends.
fn read_snapshot(pid: u32, addr: u64) -> Snapshot {
    let mut snapshot = Snapshot {
        addr: 0,
        len: 0,
        words: [0; SNAPSHOT_WORDS],
    };
    let mut bytes = [0u8; SNAPSHOT_WORDS * 4];
    for start in [addr.wrapping_sub(SNAPSHOT_LEAD_BYTES), addr] {
        if procfs::read_memory(pid, start, &mut bytes).is_ok_and(|n| n == bytes.len()) {
            for (word, chunk) in snapshot.words.iter_mut().zip(bytes.chunks_exact(4)) {
                *word = u32::from_ne_bytes(chunk.try_into().unwrap_or_default());
            }
            snapshot.addr = start;
            snapshot.len = u32::try_from(bytes.len()).unwrap_or(0);
            break;
        }
    }
    snapshot
}

/// Decides whether a stack word is a return address: it must point into an executable
/// mapping of the target, right after a call instruction. Answers are cached; when the
/// target is gone and its code can no longer be read, a word inside executable code is
/// accepted as is.
struct CodeCheck {
    pid: u32,
    exec: Vec<(u64, u64)>,
    /// The kernel's `[uprobes]` page (uretprobe trampoline), mapped on the first
    /// uretprobe hit, so looked up again while missing.
    trampoline: Option<(u64, u64)>,
    cache: std::collections::HashMap<u64, bool>,
}

impl CodeCheck {
    fn new(pid: u32, maps: &[procfs::MapEntry]) -> Self {
        let exec = maps
            .iter()
            .filter(|m| m.exec)
            .map(|m| (m.start, m.end))
            .collect();
        Self {
            pid,
            exec,
            trampoline: None,
            cache: std::collections::HashMap::new(),
        }
    }

    fn is_uprobe_trampoline(&mut self, addr: u64) -> bool {
        if self.trampoline.is_none() {
            self.trampoline = procfs::read_maps(self.pid).ok().and_then(|maps| {
                maps.iter()
                    .find(|m| m.path.as_deref() == Some("[uprobes]"))
                    .map(|m| (m.start, m.end))
            });
        }
        self.trampoline
            .is_some_and(|(start, end)| (start..end).contains(&addr))
    }

    fn is_return_address(&mut self, addr: u64) -> bool {
        let lookbehind = CALL_LOOKBEHIND as u64;
        if !self
            .exec
            .iter()
            .any(|&(start, end)| addr >= start + lookbehind && addr < end)
        {
            return false;
        }
        let pid = self.pid;
        *self.cache.entry(addr).or_insert_with(|| {
            let mut code = [0u8; CALL_LOOKBEHIND];
            match procfs::read_memory(pid, addr - lookbehind, &mut code) {
                Ok(n) if n == code.len() => unwind::ends_with_call(&code),
                _ => true,
            }
        })
    }
}

/// `CLOCK_MONOTONIC` in ns: the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec we pass; CLOCK_MONOTONIC
    // always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
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
            ..CounterTotals::default()
        };
        let notes = counter_notes(&counters, 4);
        assert_eq!(notes.len(), 5, "{notes:?}");
        for needle in [
            "1 events dropped",
            "2 stacks",
            "3 futex waits that did not sleep",
            "4 records",
            "5 lock calls",
        ] {
            assert!(
                notes.iter().any(|n| n.starts_with(needle)),
                "{needle}: {notes:?}"
            );
        }
    }
}
