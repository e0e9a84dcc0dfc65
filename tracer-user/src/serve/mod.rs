//! `tracer serve`: the production sidecar. It traces every process its selectors match
//! (`--pid`, `--exe`, `--cgroup`), now and later, each in a session of its own (the same
//! session `tracer attach` runs), writes their findings as NDJSON on stdout, and serves
//! metrics and contention profiles over HTTP (`http`).
//!
//! Everything runs on one thread: the sessions, the discovery scans and the HTTP
//! connections are tasks of one `LocalSet`, so the shared state is a `RefCell` and no
//! lock is ever taken. A session's questions (a metrics snapshot, a profile window) go to
//! it over a channel and are answered from its own loop (see `session::live`).

pub mod hook_duty;
mod http;
pub mod targets;

use std::{
    cell::RefCell,
    io,
    net::SocketAddr,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use thiserror::Error;
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    task::{JoinHandle, LocalSet},
};

use self::targets::{ProcessKey, Targets};
use crate::{
    session::{self, Config, LiveLink, LiveRequest, SessionError},
    sinks::JsonSink,
    target::{ProcError, discovery},
};

/// Address `--listen` binds by default: loopback only; anything wider must be asked for.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// How often the selectors are matched against the processes: a new process is traced
/// within this (plus its attach time).
const SCAN_INTERVAL: Duration = Duration::from_millis(250);

/// Ring buffer of each target's session: 4 MiB, a quarter of `attach`'s. At 100 000
/// sleeping waits a second (432-byte records) a 10 ms drain reads ~0.4 MiB, so it still
/// leaves ~90 ms of slack before records are dropped (and counted), and a target costs
/// ~8 MiB resident instead of ~32 MiB (see `probes::set_events_ring_bytes`).
const EVENTS_RING_BYTES: u32 = 4 * 1024 * 1024;

/// How long the sessions get to detach and write their summaries after SIGTERM.
const STOP_BUDGET: Duration = Duration::from_secs(5);

/// What `tracer serve` was asked to do.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// `--pid`: these processes (not followed once they exit).
    pub pids: Vec<u32>,
    /// `--exe`: every process whose executable's file name is one of these.
    pub exes: Vec<String>,
    /// `--cgroup`: every process in these cgroup v2 directories or below them.
    pub cgroups: Vec<String>,
    /// `--listen`.
    pub listen: SocketAddr,
    /// `--top-locks`: locks per target with their own metric series.
    pub top_locks: usize,
    /// `--grace`: how long an ended target's series are kept.
    pub grace: Duration,
    /// The sessions' settings (its `pid` is replaced per target).
    pub session: Config,
    /// Hidden `--dispatch-slots`: how many targets the shared `sched_switch` program
    /// takes before the others attach their own (for tests of that path).
    pub dispatch_slots: Option<u32>,
    /// `--max-switches-per-cpu`: the duty cycle of the shared `sched_switch` hook
    /// (`hook_duty`); 0 keeps it attached.
    pub max_switches_per_cpu: u64,
    /// Hidden `--switch-duty-factor`: a duty cycle of this factor whatever the host's
    /// rate (for tests).
    pub switch_duty_factor: Option<u32>,
}

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("nothing to trace: give --pid, --exe or --cgroup")]
    NoSelector,
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("--cgroup {arg}")]
    Cgroup {
        arg: String,
        #[source]
        source: ProcError,
    },
    #[error("--pid {pid}: no such process")]
    NoSuchProcess { pid: u32 },
    #[error("cannot read the process list")]
    Scan(#[source] ProcError),
    #[error("cannot install signal handlers")]
    Signal(#[source] io::Error),
}

/// What the tracer serves from: the targets, and its own counters.
#[derive(Debug)]
struct ServeState {
    targets: Targets,
    started: Instant,
    /// Sessions started.
    attaches: u64,
    /// Targets the tracer was not allowed or able to trace.
    refused: u64,
}

/// Runs `tracer serve` until SIGINT or SIGTERM.
///
/// # Errors
/// For bad input at start (no selector, a `--pid` that does not exist, a `--cgroup` that
/// is no cgroup, a port in use); once serving, a target that cannot be traced is a line
/// in the log and a metric, not an error.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    if config.pids.is_empty() && config.exes.is_empty() && config.cgroups.is_empty() {
        return Err(ServeError::NoSelector);
    }
    if let Some(&pid) = config
        .pids
        .iter()
        .find(|&&pid| discovery::start_time(pid).is_none())
    {
        return Err(ServeError::NoSuchProcess { pid });
    }
    let cgroups: Vec<PathBuf> = config
        .cgroups
        .iter()
        .map(|arg| {
            discovery::cgroup_dir(arg).map_err(|source| ServeError::Cgroup {
                arg: arg.clone(),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    crate::probes::set_events_ring_bytes(EVENTS_RING_BYTES);
    if let Some(slots) = config.dispatch_slots {
        crate::probes::set_dispatch_slots(slots);
    }
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    eprintln!(
        "tracer: serving metrics on http://{}/metrics",
        listener.local_addr().unwrap_or(config.listen)
    );
    let state = Rc::new(RefCell::new(ServeState {
        targets: Targets::default(),
        started: Instant::now(),
        attaches: 0,
        refused: 0,
    }));
    let local = LocalSet::new();
    local
        .run_until(async {
            let server = tokio::task::spawn_local(http::serve(listener, Rc::clone(&state)));
            // In a container's PID namespace each target attaches its own `sched_switch`
            // program (`probes`): there is no shared hook to take turns with.
            let shared_hook = discovery::own_pid_namespace().is_none();
            let duty = match config.switch_duty_factor {
                Some(factor) => Some(hook_duty::HookDuty::fixed(factor, 0)),
                None => (config.max_switches_per_cpu > 0).then(|| {
                    let cpus = discovery::host_cpus().unwrap_or(1);
                    hook_duty::HookDuty::new(config.max_switches_per_cpu.saturating_mul(cpus), 0)
                }),
            }
            .filter(|_| shared_hook)
            .map(|duty| tokio::task::spawn_local(run_hook_duty(duty)));
            let mut sessions: Vec<JoinHandle<()>> = Vec::new();
            let mut scanner = Scanner::default();
            let mut scans = tokio::time::interval(SCAN_INTERVAL);
            scans.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = scans.tick() => {}
                    _ = interrupt.recv() => break,
                    _ = terminate.recv() => break,
                }
                let matching = scanner.matching(&config, &cgroups);
                let new = state.borrow().targets.new_ones(&matching);
                for key in new {
                    sessions.push(start_session(&config, key, &state));
                }
                sessions.retain(|s| !s.is_finished());
                let mut shared = state.borrow_mut();
                let now = shared.started.elapsed();
                shared.targets.expire(now, config.grace, &|(pid, start)| {
                    discovery::start_time(pid) == Some(start)
                });
            }
            if let Some(duty) = duty {
                duty.abort();
            }
            stop_sessions(&state, sessions).await;
            server.abort();
        })
        .await;
    Ok(())
}

/// Runs the duty cycle of the shared `sched_switch` hook ([`hook_duty`]) until aborted.
async fn run_hook_duty(mut duty: hook_duty::HookDuty) {
    let start = tokio::time::Instant::now();
    duty.count_from(0, discovery::host_context_switches());
    loop {
        tokio::time::sleep_until(start + Duration::from_nanos(duty.until_ns())).await;
        let now_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let Some(step) = duty.step(now_ns, discovery::host_context_switches()) else {
            continue;
        };
        if let Err(err) = crate::probes::step_hook(step) {
            eprintln!(
                "tracer: note: the sched_switch hook's duty cycle: {}",
                crate::error_chain(&err)
            );
        }
    }
}

/// Matches the selectors against the processes, cheaply enough to run every
/// [`SCAN_INTERVAL`]: a process's executable is read when it first appears, and again
/// every [`EXE_RECHECK_SCANS`] scans for the processes that did not match (an entrypoint
/// script that `exec`s the service keeps its PID); start times are read once per process.
#[derive(Debug, Default)]
struct Scanner {
    /// Every process of the last listing, with whether its executable matched `--exe`.
    exe_matches: rustc_hash::FxHashMap<u32, bool>,
    /// Start times of the processes seen, by PID (dropped with the process).
    start_times: rustc_hash::FxHashMap<u32, u64>,
    scans: u64,
}

/// Scans between two reads of the executables of processes that did not match `--exe`.
const EXE_RECHECK_SCANS: u64 = 4;

impl Scanner {
    /// The processes the selectors match now, each with its start time; never the
    /// tracer itself.
    fn matching(&mut self, config: &ServeConfig, cgroups: &[PathBuf]) -> Vec<ProcessKey> {
        self.scans += 1;
        let recheck = self.scans.is_multiple_of(EXE_RECHECK_SCANS);
        let mut pids: Vec<u32> = config.pids.clone();
        // Only `--exe` needs every process: listing `/proc` four times a second cost a
        // quiet `--pid` serve ~0.8 of its 3 ms of CPU a second (BENCHMARKS.md (i)).
        let listing = if config.exes.is_empty() {
            None
        } else {
            Some(discovery::all_pids().unwrap_or_default())
        };
        if let Some(listing) = &listing {
            let mut next = rustc_hash::FxHashMap::default();
            for &pid in listing {
                let matched = match self.exe_matches.get(&pid) {
                    Some(&known) if known || !recheck => known,
                    _ => discovery::executable_name(pid)
                        .is_some_and(|name| config.exes.contains(&name)),
                };
                next.insert(pid, matched);
                if matched {
                    pids.push(pid);
                }
            }
            self.exe_matches = next;
        }
        for dir in cgroups {
            // A cgroup removed meanwhile has no processes.
            pids.extend(discovery::cgroup_pids(dir).unwrap_or_default());
        }
        let me = std::process::id();
        pids.sort_unstable();
        pids.dedup();
        // Start times of processes gone are forgotten (memory stays bounded).
        match listing {
            Some(listing) if !listing.is_empty() => {
                let alive: rustc_hash::FxHashSet<u32> = listing.into_iter().collect();
                self.start_times.retain(|pid, _| alive.contains(pid));
            }
            Some(_) => {}
            // Only candidates have start times: those still candidates and alive stay.
            None => self
                .start_times
                .retain(|pid, _| pids.binary_search(pid).is_ok() && discovery::is_alive(*pid)),
        }
        let start_times = &mut self.start_times;
        pids.into_iter()
            .filter(|&pid| pid != me)
            .filter_map(|pid| {
                if let Some(&start) = start_times.get(&pid) {
                    return Some((pid, start));
                }
                let start = discovery::start_time(pid)?;
                start_times.insert(pid, start);
                Some((pid, start))
            })
            .collect()
    }
}

/// Starts tracing `key` in a session of its own, registered in `state` at once (so the
/// next scan does not start another); the session's end is recorded there too.
fn start_session(
    config: &ServeConfig,
    key: ProcessKey,
    state: &Rc<RefCell<ServeState>>,
) -> JoinHandle<()> {
    let (pid, _) = key;
    let comm = crate::target::discovery::process_name(pid).unwrap_or_default();
    let (requests, receiver) = mpsc::unbounded_channel();
    {
        let mut shared = state.borrow_mut();
        shared.targets.traced(key, comm.clone(), requests);
        shared.attaches += 1;
    }
    let session_config = Config {
        pid,
        duration: None,
        ..config.session
    };
    let link = LiveLink {
        requests: receiver,
        top_locks: config.top_locks,
    };
    let state = Rc::clone(state);
    tokio::task::spawn_local(async move {
        let mut out = io::stdout();
        let mut sink = JsonSink::for_target(&mut out, pid, comm.clone());
        let result = session::run_served(session_config, &mut sink, link).await;
        // The session's memory (its report's DWARF, the kernel BTF parsed at attach) is
        // free now, but glibc would keep it resident for reuse: tens of MB held for good
        // by a sidecar whose target has gone.
        crate::probes::release_freed_heap();
        let mut shared = state.borrow_mut();
        let now = shared.started.elapsed();
        match result {
            Ok(last) => {
                eprintln!("tracer: process {pid} ({comm}): trace ended");
                shared.targets.ended(key, now, last);
            }
            // Gone before it could be traced: a short-lived process, nothing to say.
            Err(SessionError::NoSuchProcess { .. } | SessionError::ExitedDuringAttach { .. }) => {
                shared.targets.ended(key, now, None);
            }
            Err(err) => {
                let why = crate::error_chain(&err);
                // One line; most refusals name the process already.
                if why.starts_with(&format!("process {pid} ")) {
                    eprintln!("tracer: not traced: {why}");
                } else {
                    eprintln!("tracer: process {pid} ({comm}) not traced: {why}");
                }
                shared.refused += 1;
                shared.targets.refused(key);
            }
        }
    })
}

/// Asks every session to stop, and waits (at most [`STOP_BUDGET`]) for them to detach and
/// write their summaries; a session still attaching then is dropped, which detaches it.
async fn stop_sessions(state: &Rc<RefCell<ServeState>>, sessions: Vec<JoinHandle<()>>) {
    for (_, _, requests) in state.borrow().targets.traced_now() {
        let _ = requests.send(LiveRequest::Stop);
    }
    let all = async {
        for session in sessions {
            let _ = session.await;
        }
    };
    let _ = tokio::time::timeout(STOP_BUDGET, all).await;
}
