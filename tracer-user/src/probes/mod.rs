//! The only module that talks to aya: loads the eBPF object built by `build.rs`, attaches
//! the futex hooks (`sched_switch`, `sys_exit`) and the C library's lock uprobes
//! (`--holds`, musl programs), drains the ring buffer and reads counters, stacks and the
//! kernel's totals of waits that never slept.
//!
//! Every attachment is a file-descriptor-based link (BTF raw tracepoints, `uprobe_multi`
//! links, perf-event uprobes), so the kernel detaches them when the process exits by any
//! path, SIGKILL included; dropping [`Probes`] detaches them earlier.
//!
//! With `bpf_log` the programs' `aya-log` diagnostics are turned on (the `DIAGNOSTICS`
//! global) and printed on stderr as they are drained (`bpf_log`); without it the verifier
//! drops the code that sends them.
mod bpf_log;
mod kernel_layout;
mod switch_dispatch;
mod uprobe_multi;

use std::{num::NonZeroU32, path::Path};

use aya::{
    Btf, Ebpf, EbpfError, EbpfLoader,
    maps::{Array, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, RingBuf, StackTraceMap},
    programs::{
        BtfTracePoint, ProgramError, ProgramFd, UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
    },
};
pub use kernel_layout::KernelLayoutError;
use thiserror::Error;
use tracer_common::{
    BriefWaits, COUNTER_SLOTS, Counter, CpuBriefWaits, GLOBAL_DIAGNOSTICS, GLOBAL_GO_GOID_OFFSET,
    GLOBAL_LEAN_WAITS, GLOBAL_TARGET_PIDNS_DEV, GLOBAL_TARGET_PIDNS_INO, GLOBAL_TARGET_TGID,
    GLOBAL_TASK_NVCSW_OFFSET, GLOBAL_TASK_RUNTIME_OFFSET, GLOBAL_WAIT_ENDS_AT_SWITCH_IN,
    LEAN_WAITS_ALL, LEAN_WAITS_NONE, LEAN_WAITS_UNSAMPLED, LockOp, MAP_BRIEF_WAITS, MAP_COUNTERS,
    MAP_CPU_BRIEF_WAITS, MAP_EVENTS, MAP_OPEN_SLEEP_SLOTS, MAP_OPEN_SLEEPS, MAP_OVERFLOW_STACKS,
    MAP_PENDING_LOCKS, MAP_READER_POLLS, MAP_SLEEP_SAMPLING, MAP_STACKS, MAP_SWITCH_OPEN_SLEEPS,
    MAP_SWITCH_PERIODS, MAP_SWITCH_TABLE, OpenSleep, PROG_GO_LOCK_SITE, PROG_LOCK_ENTRY,
    PROG_LOCK_RETURN, PROG_NOOP_SCHED_SWITCH, PROG_NOOP_SYS_EXIT, PROG_NOOP_UPROBE,
    PROG_NOOP_URETPROBE, PROG_PROCESS_EXEC, PROG_SCHED_SWITCH, PROG_SCHED_SWITCH_DRAWN,
    PROG_SCHED_SWITCH_ENDS, PROG_SYS_EXIT, PROG_UNLOCK_ENTRY, PendingLock, StackSlot,
};

/// The eBPF object, built for the BPF target by `build.rs` (aya-build).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer"));

/// The kernel's BTF, for what `Btf::from_sys_fs` does not give: where a member lies.
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// A member of the running kernel's `struct task_struct` that a program reads, found in
/// its BTF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskMember {
    /// `se.sum_exec_runtime`, a thread's CPU time (`GLOBAL_TASK_RUNTIME_OFFSET`).
    Runtime,
    /// `nvcsw`, a thread's count of voluntary switches (`GLOBAL_TASK_NVCSW_OFFSET`).
    VoluntarySwitches,
}

impl TaskMember {
    const fn path(self) -> &'static [&'static str] {
        match self {
            Self::Runtime => &["se", "sum_exec_runtime"],
            Self::VoluntarySwitches => &["nvcsw"],
        }
    }
}

impl std::fmt::Display for TaskMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Runtime => f.write_str("a thread's CPU time (task_struct.se.sum_exec_runtime)"),
            Self::VoluntarySwitches => {
                f.write_str("a thread's count of voluntary switches (task_struct.nvcsw)")
            }
        }
    }
}

/// The offset of `member` (a `u64`) in the running kernel's `struct task_struct`, for
/// the global that gives it to the programs; read from its BTF once.
fn task_member_offset(member: TaskMember) -> Result<u64, ProbeError> {
    static OFFSETS: [std::sync::OnceLock<u64>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    let cell = &OFFSETS[member as usize];
    if let Some(&offset) = cell.get() {
        return Ok(offset);
    }
    let btf = std::fs::read(KERNEL_BTF).map_err(ProbeError::KernelBtfUnreadable)?;
    let offset = kernel_layout::member_offset(&btf, "task_struct", member.path(), 8)
        .map_err(|source| ProbeError::KernelLayout { member, source })?;
    Ok(*cell.get_or_init(|| offset))
}

/// The built eBPF object's bytes (for tests that inspect it).
#[must_use]
pub fn object_bytes() -> &'static [u8] {
    EBPF_OBJECT
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(
        "kernel BTF is unavailable (/sys/kernel/btf/vmlinux): the kernel needs CONFIG_DEBUG_INFO_BTF"
    )]
    Btf(#[source] aya::BtfError),
    #[error("cannot read the kernel's BTF ({KERNEL_BTF})")]
    KernelBtfUnreadable(#[source] std::io::Error),
    #[error("cannot find where the kernel keeps {member}")]
    KernelLayout {
        member: TaskMember,
        #[source]
        source: kernel_layout::KernelLayoutError,
    },
    #[error("cannot load the eBPF programs")]
    Load(#[source] EbpfError),
    #[error("the eBPF object has no program named {0}")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map named {0}")]
    MissingMap(&'static str),
    #[error("cannot load or attach program {name}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("cannot use map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("cannot read the eBPF programs' log")]
    BpfLog(#[source] aya_log::Error),
}

impl ProbeError {
    /// Whether the verifier rejected a program (its log is in the error chain).
    #[must_use]
    pub fn is_verifier_rejection(&self) -> bool {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(err) = source {
            if err.to_string().contains("Verifier output") {
                return true;
            }
            source = err.source();
        }
        false
    }

    /// Whether the kernel refused for lack of privilege (EPERM/EACCES anywhere in the chain).
    #[must_use]
    pub fn is_permission_denied(&self) -> bool {
        // The verifier refuses programs with EACCES too: that is our bug, not the user's
        // missing privilege, and must not be reported as such. EPERM is the kernel's
        // answer for a missing capability, also to `BPF_PROG_LOAD` (a tracing program
        // without CAP_PERFMON), whose error then carries an empty "verifier output".
        let verifier_rejection = self.is_verifier_rejection();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                match io.raw_os_error() {
                    Some(libc::EPERM) => return true,
                    Some(libc::EACCES) if !verifier_rejection => return true,
                    _ => {}
                }
            }
            if !verifier_rejection {
                let text = err.to_string();
                if text.contains("Operation not permitted") || text.contains("Permission denied") {
                    return true;
                }
            }
            source = err.source();
        }
        false
    }
}

/// What to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hooks {
    /// The real tracer: futex hooks, with wait ends timed as `wait_ends` says, and lock
    /// uprobes when `holds` is set; the `sched_switch` program as `switch` says.
    Trace {
        holds: bool,
        wait_ends: WaitEnds,
        switch: SwitchHook,
    },
    /// Empty programs on the same hooks (benchmark floor): futex hooks, and when
    /// `uprobes` is set, empty uprobes on lock entry, lock return and unlock.
    Floor { uprobes: bool, sys_exit: bool },
}

/// How a target's `sched_switch` program is reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SwitchHook {
    /// Attached itself (`tracer attach`: one target).
    #[default]
    Own,
    /// Through the one program all the tracer's targets share (`switch_dispatch`), when
    /// the tracer runs in the host's PID namespace; attached itself elsewhere (`tracer
    /// serve`: every context switch of the host then pays one program, not one per
    /// target).
    Shared,
}

/// Where the kernel side times the end of a futex wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitEnds {
    /// When the call returns (`sys_exit`): every wait, slept or not, with its return value,
    /// and the wake count. Costs a lock-bound workload ~4% (the `sys_exit` hook runs on
    /// every system call of every process: BENCHMARKS.md, "What each futex hook costs").
    #[default]
    AtSysExit,
    /// When the waiting thread is switched back in (worked out at its next switch-out, on
    /// `sched_switch`, from the CPU time it used since), with no `sys_exit` program: only waits that slept are seen (a wait that returned at once, most of a
    /// hot lock's, is not), with no return value (a timed-out wait reads as woken) and no
    /// wake count; an empty program on this hook alone is within noise of untraced
    /// (`tracer serve`'s default). Which waits are sent lean, as one record once over
    /// (no lock memory, no stack, read from userspace only for a wait that sleeps long):
    /// see [`LeanWaits`].
    AtSwitchIn(LeanWaits),
}

/// With wait ends timed at switch-in: which sleeping waits the kernel sends lean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeanWaits {
    /// None: every sleeping wait goes out with its lock memory and stack window.
    None,
    /// All but those the stack sampler takes (the first on a word on each CPU, then one
    /// in `STACK_SAMPLE_EVERY`): `tracer serve`'s default. Reading the lock memory and
    /// stack at each sleep cost a lock-bound workload ~3% (BENCHMARKS.md).
    Unsampled,
    /// All (for tests of long lean waits, read from userspace).
    All,
}

impl LeanWaits {
    /// The value of `GLOBAL_LEAN_WAITS`.
    fn global(self) -> u32 {
        match self {
            Self::None => LEAN_WAITS_NONE,
            Self::Unsampled => LEAN_WAITS_UNSAMPLED,
            Self::All => LEAN_WAITS_ALL,
        }
    }
}

/// The glibc functions the `--holds` uprobes attach to, with the op passed as cookie.
pub const LOCK_FUNCTIONS: [(&str, LockOp); 15] = [
    ("pthread_mutex_lock", LockOp::MutexLock),
    ("pthread_mutex_trylock", LockOp::MutexTryLock),
    ("pthread_mutex_timedlock", LockOp::MutexTimedLock),
    ("pthread_mutex_clocklock", LockOp::MutexTimedLock),
    ("pthread_rwlock_rdlock", LockOp::RwRead),
    ("pthread_rwlock_tryrdlock", LockOp::RwTryRead),
    ("pthread_rwlock_timedrdlock", LockOp::RwTimedRead),
    ("pthread_rwlock_clockrdlock", LockOp::RwTimedRead),
    ("pthread_rwlock_wrlock", LockOp::RwWrite),
    ("pthread_rwlock_trywrlock", LockOp::RwTryWrite),
    ("pthread_rwlock_timedwrlock", LockOp::RwTimedWrite),
    ("pthread_rwlock_clockwrlock", LockOp::RwTimedWrite),
    // Condvar waits release and re-take their mutex inside glibc (see `LockOp::CondWait`).
    ("pthread_cond_wait", LockOp::CondWait),
    ("pthread_cond_timedwait", LockOp::CondWait),
    ("pthread_cond_clockwait", LockOp::CondWait),
];

/// The unlock functions, with their op.
pub const UNLOCK_FUNCTIONS: [(&str, LockOp); 2] = [
    ("pthread_mutex_unlock", LockOp::MutexUnlock),
    ("pthread_rwlock_unlock", LockOp::RwUnlock),
];

/// Go lock probe sites to attach in the target's executable (see `go::probe`).
#[derive(Clone, Debug)]
pub struct GoSites<'a> {
    /// The executable, as a path openable from here (`/proc/PID/exe` works).
    pub exe: &'a Path,
    /// Offset of `goid` in the runtime's `g`.
    pub goid_offset: u64,
    /// (file offset, attach cookie) of each site.
    pub sites: &'a [(u64, u64)],
}

/// What got attached, for the report's notes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachSummary {
    pub lock_functions: Vec<&'static str>,
    pub missing_lock_functions: Vec<&'static str>,
    /// Go sites attached.
    pub go_sites: usize,
    /// File offsets of Go sites the kernel refused (their events are missing; holders
    /// taken there are reported unknown).
    pub go_sites_refused: Vec<u64>,
    /// Why the Go sites are perf-event uprobes (slow to detach) rather than one
    /// `uprobe_multi` link, if they are.
    pub go_multi_unavailable: Option<String>,
    /// Why the lock uprobes are perf-event uprobes (which need `CAP_SYS_ADMIN` on Linux
    /// 6.16+) rather than `uprobe_multi` links, if they are.
    pub lock_multi_unavailable: Option<String>,
}

/// Per-CPU counters summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterTotals {
    pub dropped: u64,
    pub futex_wakes: u64,
    pub futex_waits: u64,
    pub stack_errors: u64,
    pub unmatched_returns: u64,
    /// Waits that never slept and found the kernel's per-word totals full.
    pub brief_waits_untracked: u64,
    /// Waits gone to sleep that found the kernel's table of sleeping waits full (wait
    /// ends timed at switch-in): their ends were not sent.
    pub open_sleeps_untracked: u64,
}

/// Where the `sys_exit` program keeps its totals of the waits that never slept.
struct BriefWaitMaps {
    per_word: PerCpuHashMap<MapData, u64, BriefWaits>,
    running: PerCpuArray<MapData, CpuBriefWaits>,
}

/// Loaded and attached programs. Dropping it detaches everything.
pub struct Probes {
    // Field order matters for drop: the dispatcher lets go of the `sched_switch` program
    // first, then the maps go before the object that owns the programs.
    dispatched: Option<switch_dispatch::Dispatched>,
    events: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    stacks: StackTraceMap<MapData>,
    overflow_stacks: StackTraceMap<MapData>,
    /// The totals of waits that never slept, when a `sys_exit` program counts them.
    brief_waits: Option<BriefWaitMaps>,
    reader_polls: Array<MapData, u32>,
    /// The value last written to `reader_polls` (the map starts at 0).
    reader_polls_now: bool,
    sleep_sampling: Array<MapData, u32>,
    /// The sampling period of sleeps last set, and the duty cycle's factor last set
    /// (`serve::hook_duty`): a dispatched process's traced sleeps weigh their product.
    sample_period: u32,
    weight_factor: u32,
    pending_locks: Option<aya::maps::HashMap<MapData, u32, PendingLock>>,
    open_sleeps: aya::maps::HashMap<MapData, u64, OpenSleep>,
    /// The programs' diagnostics, when asked for (`bpf_log`).
    bpf_log: Option<bpf_log::Logger>,
    /// The lock uprobes when attached through `uprobe_multi` links.
    _lock_multi: Option<uprobe_multi::MultiLink>,
    /// The Go sites when attached through one `uprobe_multi` link.
    _go_multi: Option<uprobe_multi::MultiLink>,
    _ebpf: Ebpf,
    pub summary: AttachSummary,
}

impl Probes {
    /// Loads the object for target `pid` and attaches `hooks`. `libc` is the target's own
    /// mapped glibc, as a path openable from here (`/proc/PID/root/...`), if it has one.
    /// With `bpf_log`, the programs' diagnostics are turned on and printed on stderr as
    /// `tracer: bpf: …` whenever the ring buffer is drained.
    ///
    /// # Errors
    /// When BTF is missing, the kernel refuses to load, or a futex hook cannot attach.
    /// A lock function missing from libc is not an error: it is listed in `summary`.
    pub fn attach(
        pid: u32,
        hooks: Hooks,
        libc: Option<&Path>,
        go: Option<&GoSites<'_>>,
        bpf_log: bool,
    ) -> Result<Self, ProbeError> {
        let goid_offset = go.map_or(0, |g| g.goid_offset);
        let (mut ebpf, dispatched) = load_with_futex_hooks(pid, hooks, goid_offset, bpf_log)?;

        let mut summary = AttachSummary::default();
        let uprobe_progs = match hooks {
            Hooks::Trace { holds: true, .. } => {
                Some((PROG_LOCK_ENTRY, PROG_LOCK_RETURN, PROG_UNLOCK_ENTRY))
            }
            Hooks::Floor { uprobes: true, .. } => {
                Some((PROG_NOOP_UPROBE, PROG_NOOP_URETPROBE, PROG_NOOP_UPROBE))
            }
            Hooks::Trace { holds: false, .. } | Hooks::Floor { uprobes: false, .. } => None,
        };
        let mut lock_multi = None;
        if let Some(programs) = uprobe_progs {
            match libc {
                Some(libc) => {
                    lock_multi =
                        attach_lock_functions(&mut ebpf, programs, libc, pid, &mut summary)?;
                }
                None => {
                    summary.missing_lock_functions = LOCK_FUNCTIONS
                        .iter()
                        .chain(&UNLOCK_FUNCTIONS)
                        .map(|&(f, _)| f)
                        .collect();
                }
            }
        }

        let mut go_multi = None;
        let go_program = match hooks {
            Hooks::Trace { .. } => PROG_GO_LOCK_SITE,
            Hooks::Floor { .. } => PROG_NOOP_UPROBE,
        };
        // No sites, nothing to attach: the kernel refuses an empty `uprobe_multi` list
        // (EINVAL), which read as "uprobe_multi unavailable" (issue 16).
        if let Some(go) = go.filter(|go| !go.sites.is_empty()) {
            match uprobe_multi::attach(EBPF_OBJECT, go_program, &ebpf, go.exe, pid, go.sites) {
                Ok(link) => {
                    summary.go_sites = go.sites.len();
                    go_multi = Some(link);
                }
                Err(why) => {
                    summary.go_multi_unavailable = Some(crate::error_chain(&why));
                    attach_go_sites(&mut ebpf, go_program, pid, go, &mut summary)?;
                }
            }
        }

        // Once everything is attached: the `uprobe_multi` loader above finds the programs'
        // log buffer among the maps of `ebpf`, which this takes out. Messages sent before
        // wait in that buffer.
        let bpf_log = bpf_log::start(&mut ebpf, bpf_log)?;
        let events = take_map(&mut ebpf, MAP_EVENTS, RingBuf::try_from)?;
        let counters = take_map(&mut ebpf, MAP_COUNTERS, PerCpuArray::try_from)?;
        let stacks = take_map(&mut ebpf, MAP_STACKS, StackTraceMap::try_from)?;
        let overflow_stacks = take_map(&mut ebpf, MAP_OVERFLOW_STACKS, StackTraceMap::try_from)?;
        // Without a `sys_exit` program nothing writes them: not read every rescan (a
        // hash's iteration walks all its buckets, and the map is left at one entry).
        let brief_waits = if counts_brief_waits(hooks) {
            Some(BriefWaitMaps {
                per_word: take_map(&mut ebpf, MAP_BRIEF_WAITS, PerCpuHashMap::try_from)?,
                running: take_map(&mut ebpf, MAP_CPU_BRIEF_WAITS, PerCpuArray::try_from)?,
            })
        } else {
            None
        };
        let reader_polls = take_map(&mut ebpf, MAP_READER_POLLS, Array::try_from)?;
        let sleep_sampling = take_map(&mut ebpf, MAP_SLEEP_SAMPLING, Array::try_from)?;
        let open_sleeps = take_map(&mut ebpf, MAP_OPEN_SLEEPS, aya::maps::HashMap::try_from)?;
        let pending_locks = match uprobe_progs {
            Some(_) => Some(take_map(
                &mut ebpf,
                MAP_PENDING_LOCKS,
                aya::maps::HashMap::try_from,
            )?),
            None => None,
        };
        Ok(Self {
            dispatched,
            events,
            counters,
            stacks,
            overflow_stacks,
            brief_waits,
            reader_polls,
            reader_polls_now: false,
            sleep_sampling,
            sample_period: 1,
            weight_factor: 1,
            pending_locks,
            open_sleeps,
            bpf_log,
            _lock_multi: lock_multi,
            _go_multi: go_multi,
            _ebpf: ebpf,
            summary,
        })
    }

    /// A new descriptor for the ring buffer, readable when records wait (for the
    /// session's event loop to sleep on while the target is quiet).
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated.
    pub fn events_fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::{AsRawFd as _, BorrowedFd};
        // SAFETY: the ring buffer's descriptor is open for as long as `self.events`, which
        // outlives this call; the borrow only lives to duplicate it.
        let fd = unsafe { BorrowedFd::borrow_raw(self.events.as_raw_fd()) };
        fd.try_clone_to_owned()
    }

    /// Tells the programs whether the reader drains on its own timer (`true`: submit
    /// records without waking it) or sleeps until a record comes (`false`: wake it).
    /// Writes the map only when the answer changes. A failed write is retried at the next
    /// change and costs little meanwhile: extra wakeups, or a quiet target's first records
    /// waiting for the reader's idle timeout.
    pub fn set_reader_polls(&mut self, polls: bool) {
        if self.reader_polls_now == polls {
            return;
        }
        if self.reader_polls.set(0, u32::from(polls), 0).is_ok() {
            self.reader_polls_now = polls;
        }
    }

    /// Sets the sampling period of sleeping futex waits (`MAP_SLEEP_SAMPLING`): from now
    /// on, one sleep in `period` on average is traced, standing for `period` (1: every
    /// one). Only the `sched_switch` program of a session that times wait ends at
    /// switch-in reads it. `now_ns` is the session's clock (`CLOCK_MONOTONIC`), read after
    /// the writes: sleeps that began later were drawn under `period`.
    ///
    /// # Errors
    /// When the map cannot be written.
    pub fn set_sleep_sample_period(
        &mut self,
        period: u32,
        now_ns: impl FnOnce() -> u64,
    ) -> Result<(), ProbeError> {
        // Between the two writes (microseconds, at most once a second) a sleep the
        // dispatcher draws under one period weighs as the other.
        self.write_sleep_sampling(period, self.weight_factor)?;
        match &mut self.dispatched {
            Some(dispatched) => dispatched.set_sleep_sample_period(period, now_ns),
            None => Ok(()),
        }
    }

    /// Whether the shared `sched_switch` dispatcher draws this process's sleeps (and the
    /// serve's duty cycle applies to it, `serve::hook_duty`).
    #[must_use]
    pub fn is_dispatched(&self) -> bool {
        self.dispatched.is_some()
    }

    /// The duty cycle's factor the process's traced sleeps are weighed with now.
    #[must_use]
    pub fn weight_factor(&self) -> u32 {
        self.weight_factor
    }

    /// Weighs the sleeps traced from now on `factor` times their sampling period: each
    /// slice of time the dispatcher draws in stands for `factor` (`serve::hook_duty`).
    /// Only for a dispatched process; others keep 1.
    ///
    /// # Errors
    /// When the map cannot be written.
    pub fn set_weight_factor(&mut self, factor: u32) -> Result<(), ProbeError> {
        let factor = if self.dispatched.is_some() {
            factor.max(1)
        } else {
            1
        };
        if factor == self.weight_factor {
            return Ok(());
        }
        self.write_sleep_sampling(self.sample_period, factor)
    }

    /// Writes `SLEEP_SAMPLING`: the period, which is also each traced sleep's weight, or,
    /// for a dispatched process (whose draw the dispatcher makes), only the weight:
    /// `period` × `factor`.
    fn write_sleep_sampling(&mut self, period: u32, factor: u32) -> Result<(), ProbeError> {
        let value = if self.dispatched.is_some() {
            period.max(1).saturating_mul(factor)
        } else {
            period
        };
        self.sleep_sampling
            .set(0, value, 0)
            .map_err(|source| ProbeError::Map {
                name: MAP_SLEEP_SAMPLING,
                source,
            })?;
        self.sample_period = period;
        self.weight_factor = factor;
        Ok(())
    }

    /// After a rise of the sampling period, once every sleep open in the table began
    /// under the new one: stops the dispatcher reading this process's counts of open
    /// sleeps (`tracer_common::SwitchDraw`). Reads the table only while it reads them.
    /// `now_ns` is the session's clock, read before the table.
    ///
    /// # Errors
    /// When the table or the dispatcher's map cannot be read or written: the dispatcher
    /// then goes on reading the counts, which costs time, not correctness.
    pub fn settle_sleep_draw(&mut self, now_ns: impl FnOnce() -> u64) -> Result<(), ProbeError> {
        if !self
            .dispatched
            .as_ref()
            .is_some_and(switch_dispatch::Dispatched::reads_counts)
        {
            return Ok(());
        }
        let read_ns = now_ns();
        let oldest = self
            .open_sleeps()?
            .iter()
            .filter(|sleep| sleep.addr != 0)
            .map(|sleep| sleep.start_ns)
            .min();
        match self.dispatched.as_mut() {
            Some(dispatched) => dispatched.settle(oldest, read_ns),
            None => Ok(()),
        }
    }

    /// Hands up to `max` records from the ring buffer to `sink`; returns how many. Prints
    /// the programs' diagnostics first, if they are on.
    pub fn drain(&mut self, max: usize, mut sink: impl FnMut(&[u8])) -> usize {
        if let Some(log) = &mut self.bpf_log {
            log.flush();
        }
        let mut n = 0;
        while n < max {
            let Some(item) = self.events.next() else {
                break;
            };
            sink(&item);
            n += 1;
        }
        n
    }

    /// Counters summed over all CPUs.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn counters(&self) -> Result<CounterTotals, ProbeError> {
        let mut sums = [0_u64; COUNTER_SLOTS as usize];
        for (slot, sum) in (0..COUNTER_SLOTS).zip(sums.iter_mut()) {
            let values = self
                .counters
                .get(&slot, 0)
                .map_err(|source| ProbeError::Map {
                    name: MAP_COUNTERS,
                    source,
                })?;
            *sum = values.iter().sum();
        }
        Ok(CounterTotals {
            dropped: sums[Counter::Dropped as usize],
            futex_wakes: sums[Counter::FutexWakes as usize],
            futex_waits: sums[Counter::FutexWaits as usize],
            stack_errors: sums[Counter::StackErrors as usize],
            unmatched_returns: sums[Counter::UnmatchedReturns as usize],
            brief_waits_untracked: sums[Counter::BriefWaitsUntracked as usize],
            open_sleeps_untracked: sums[Counter::OpenSleepsUntracked as usize],
        })
    }

    /// Totals of the waits that never slept, per futex word, summed over CPUs, since the
    /// attach; `None` when no program counts them (no `sys_exit` program).
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn brief_waits(&self) -> Result<Option<Vec<(u64, BriefWaits)>>, ProbeError> {
        let Some(maps) = &self.brief_waits else {
            return Ok(None);
        };
        let hash = maps
            .per_word
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| ProbeError::Map {
                name: MAP_BRIEF_WAITS,
                source,
            })?;
        // After the hash: running totals that move into it meanwhile are then missed by
        // this read rather than counted twice (see `event::brief_waits_per_word`).
        let running = maps.running.get(&0, 0).map_err(|source| ProbeError::Map {
            name: MAP_CPU_BRIEF_WAITS,
            source,
        })?;
        Ok(Some(crate::event::brief_waits_per_word(
            hash.iter().map(|(addr, per_cpu)| (*addr, &per_cpu[..])),
            &running,
        )))
    }

    /// The target's threads' last sleeping futex waits, as the kernel keeps them when
    /// wait ends are timed at switch-in (one entry per thread that slept; empty
    /// otherwise). Entries that change while they are read may be missed or stale: the
    /// caller checks a wait against the thread's state in `/proc`.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn open_sleeps(&self) -> Result<Vec<OpenSleep>, ProbeError> {
        let mut sleeps = Vec::new();
        for entry in &self.open_sleeps {
            match entry {
                Ok((_, sleep)) => sleeps.push(sleep),
                // Removed between its key and its value (its thread exited).
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(source) => {
                    return Err(ProbeError::Map {
                        name: MAP_OPEN_SLEEPS,
                        source,
                    });
                }
            }
        }
        Ok(sleeps)
    }

    /// The call site of the lock call thread `tid` is inside right now (`--holds`): the
    /// return address the uretprobe replaced on its stack with the uprobe trampoline.
    #[must_use]
    pub fn pending_call_site(&self, tid: u32) -> Option<u64> {
        let pending = self.pending_locks.as_ref()?.get(&tid, 0).ok()?;
        (pending.caller != 0).then_some(pending.caller)
    }

    /// Instruction pointers of the user stack behind a record's `stack_id`, innermost
    /// first (empty if unknown).
    #[must_use]
    pub fn stack(&self, stack_id: u32) -> Vec<u64> {
        let (map, id) = match StackSlot::from_stack_id(stack_id) {
            Some(StackSlot::Main(id)) => (&self.stacks, id),
            Some(StackSlot::Overflow(id)) => (&self.overflow_stacks, id),
            None => return Vec::new(),
        };
        map.get(&id, 0)
            .map(|trace| trace.frames().iter().map(|f| f.ip).collect())
            .unwrap_or_default()
    }
}

fn record(summary: &mut AttachSummary, function: &'static str, attached: bool) {
    if attached {
        summary.lock_functions.push(function);
    } else {
        summary.missing_lock_functions.push(function);
    }
}

/// Size of the ring buffer of the sessions loaded from now on, in bytes (a power of two
/// of pages); the object's own (16 MiB) until [`set_events_ring_bytes`] says otherwise.
static EVENTS_RING_BYTES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Makes the sessions loaded from now on use a ring buffer of `bytes` (a power of two,
/// at least a page, as the kernel requires). For `tracer serve`, which
/// runs one session per target: a session's resident memory is mostly its ring buffer's
/// pages (mapped twice for the wrap-around, and touched as they are read), and a reader
/// that drains every 10 ms needs far less than the 16 MiB one `attach` keeps as slack.
pub fn set_events_ring_bytes(bytes: u32) {
    EVENTS_RING_BYTES.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

pub use switch_dispatch::HookState;

/// What the serve's duty cycle has made of the shared `sched_switch` hook
/// (`serve::hook_duty`).
#[must_use]
pub fn hook_state() -> HookState {
    switch_dispatch::hook_state()
}

/// Takes a step of the serve's duty cycle on the shared `sched_switch` hook.
///
/// # Errors
/// When the dispatcher's map or attachment cannot be changed.
pub fn step_hook(step: crate::serve::hook_duty::Step) -> Result<(), ProbeError> {
    switch_dispatch::step_hook(step)
}

/// Makes the serve's `sched_switch` dispatcher, when it loads from now on, take only
/// `slots` processes (at least one): the others attach their own program, as processes
/// beyond its `SWITCH_SLOTS` do. For tests of that path (`tracer serve --dispatch-slots`,
/// hidden).
pub fn set_dispatch_slots(slots: u32) {
    switch_dispatch::limit_slots(slots);
}

/// The lock uprobes: `entry` and `ret` on each of [`LOCK_FUNCTIONS`], `unlock` on each
/// of [`UNLOCK_FUNCTIONS`] in `libc`, for process `pid`, with the op as cookie. Through
/// `uprobe_multi` links (returned) when the kernel has them, else one perf-event uprobe
/// each (held by `ebpf`'s programs; they need `CAP_SYS_ADMIN` on Linux 6.16+). A
/// function `libc` does not define is not an error: it is listed in `summary`.
fn attach_lock_functions(
    ebpf: &mut Ebpf,
    (entry, ret, unlock): (&'static str, &'static str, &'static str),
    libc: &Path,
    pid: u32,
    summary: &mut AttachSummary,
) -> Result<Option<uprobe_multi::MultiLink>, ProbeError> {
    let names: Vec<&str> = LOCK_FUNCTIONS
        .iter()
        .chain(&UNLOCK_FUNCTIONS)
        .map(|&(f, _)| f)
        .collect();
    // An unreadable library defines nothing: every function is then listed as missing.
    let offsets = crate::target::FileBytes::open(libc).map_or_else(
        |_| vec![None; names.len()],
        |bytes| crate::symbols::function_file_offsets(&bytes, &names),
    );
    let (lock_offsets, unlock_offsets) = offsets.split_at(LOCK_FUNCTIONS.len());
    let sites = |functions: &[(&str, LockOp)], offsets: &[Option<u64>]| -> Vec<(u64, u64)> {
        functions
            .iter()
            .zip(offsets)
            .filter_map(|(&(_, op), offset)| Some(((*offset)?, op as u64)))
            .collect()
    };
    let lock_sites = sites(&LOCK_FUNCTIONS, lock_offsets);
    let unlock_sites = sites(&UNLOCK_FUNCTIONS, unlock_offsets);
    // Releases first: an acquisition seen before its release could be would stay held
    // forever (wrong holders, hold times and, in the lock-order graph, orders from a lock
    // nobody holds; the gap is milliseconds, hundreds of lock/unlock pairs of a busy
    // thread). Then returns right after entries, as the perf-event uprobes below are
    // attached: a link creates its uprobes (milliseconds), so with the returns first every
    // call made meanwhile would return without its entry (counted, and reported as lost
    // acquisitions); the returns' link follows within microseconds.
    let specs = [
        uprobe_multi::LinkSpec {
            program: unlock,
            probe: uprobe_multi::Probe::Entry,
            sites: &unlock_sites,
        },
        uprobe_multi::LinkSpec {
            program: entry,
            probe: uprobe_multi::Probe::Entry,
            sites: &lock_sites,
        },
        uprobe_multi::LinkSpec {
            program: ret,
            probe: uprobe_multi::Probe::Return,
            sites: &lock_sites,
        },
    ];
    let multi = match uprobe_multi::attach_all(EBPF_OBJECT, ebpf, libc, pid, &specs) {
        Ok(links) => Some(links),
        Err(why) => {
            summary.lock_multi_unavailable = Some(crate::error_chain(&why));
            let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).unwrap_or(NonZeroU32::MIN));
            for prog in [entry, ret, unlock] {
                load_uprobe(ebpf, prog)?;
            }
            // Releases first, as above.
            for (&(_, op), offset) in UNLOCK_FUNCTIONS.iter().zip(unlock_offsets) {
                if let Some(offset) = *offset {
                    attach_uprobe(ebpf, unlock, offset, op, libc, scope)?;
                }
            }
            for (&(_, op), offset) in LOCK_FUNCTIONS.iter().zip(lock_offsets) {
                if let Some(offset) = *offset {
                    attach_uprobe(ebpf, entry, offset, op, libc, scope)?;
                    attach_uprobe(ebpf, ret, offset, op, libc, scope)?;
                }
            }
            None
        }
    };
    for (&function, offset) in names.iter().zip(&offsets) {
        record(summary, function, offset.is_some());
    }
    Ok(multi)
}

/// Whether `hooks` attach a `sys_exit` program. Ends timed at switch-in come from the
/// `sched_switch` program itself, without one.
fn has_sys_exit(hooks: Hooks) -> bool {
    match hooks {
        Hooks::Trace { wait_ends, .. } => wait_ends == WaitEnds::AtSysExit,
        Hooks::Floor { sys_exit, .. } => sys_exit,
    }
}

/// Whether `hooks` count the waits that never slept (`BRIEF_WAITS`): the real `sys_exit`
/// program does; the empty one of a floor does not.
fn counts_brief_waits(hooks: Hooks) -> bool {
    matches!(hooks, Hooks::Trace { .. }) && has_sys_exit(hooks)
}

/// Loads the programs for `pid` and attaches the futex hooks of `hooks`, the two that
/// need the kernel's BTF; with the `sched_switch` program's registration with the shared
/// dispatcher, when it went there.
fn load_with_futex_hooks(
    pid: u32,
    hooks: Hooks,
    goid_offset: u64,
    bpf_log: bool,
) -> Result<(Ebpf, Option<switch_dispatch::Dispatched>), ProbeError> {
    let sys_exit = has_sys_exit(hooks);
    let wait_ends = match hooks {
        Hooks::Trace { wait_ends, .. } => wait_ends,
        Hooks::Floor { .. } => WaitEnds::AtSysExit,
    };
    let lean_waits = match wait_ends {
        WaitEnds::AtSwitchIn(lean) => lean,
        WaitEnds::AtSysExit => LeanWaits::None,
    };
    let btf = Btf::from_sys_fs().map_err(ProbeError::Btf)?;
    let runtime_offset = match wait_ends {
        WaitEnds::AtSwitchIn(_) => task_member_offset(TaskMember::Runtime)?,
        WaitEnds::AtSysExit => 0,
    };
    // In a container's PID namespace (a sidecar), `pid` is that namespace's: the programs
    // filter with its ids.
    let (pidns_dev, pidns_ino) = crate::target::discovery::own_pid_namespace().unwrap_or((0, 0));
    // The dispatcher finds a process by its host TGID: only from the host's namespace.
    let shared_switch = matches!(
        hooks,
        Hooks::Trace {
            switch: SwitchHook::Shared,
            ..
        }
    ) && (pidns_dev, pidns_ino) == (0, 0);
    // Only a dispatched process's sleeps can outlast the dispatcher's attachment (its
    // duty cycle): the count of voluntary switches tells those stale
    // (`tracer_common::sleep_is_stale`).
    let nvcsw_offset = if shared_switch && matches!(wait_ends, WaitEnds::AtSwitchIn(_)) {
        task_member_offset(TaskMember::VoluntarySwitches)?
    } else {
        0
    };
    let mut loader = EbpfLoader::new();
    // The dispatcher's maps, which this copy does not use, at their smallest.
    for map in [MAP_SWITCH_TABLE, MAP_SWITCH_PERIODS, MAP_SWITCH_OPEN_SLEEPS] {
        loader.map_max_entries(map, 1);
    }
    if !counts_brief_waits(hooks) {
        // Written only by the `sys_exit` program (16 Ki entries on each CPU otherwise).
        loader.map_max_entries(MAP_BRIEF_WAITS, 1);
    }
    if wait_ends == WaitEnds::AtSysExit && !shared_switch {
        // Only the ends timed at switch-in count open sleeps (32 KiB otherwise). A
        // dispatched process's map keeps its size even so (it then counts none): the
        // dispatcher's array of maps takes only maps of one shape.
        loader.map_max_entries(MAP_OPEN_SLEEP_SLOTS, 1);
    }
    let ring_bytes = EVENTS_RING_BYTES.load(std::sync::atomic::Ordering::Relaxed);
    if ring_bytes != 0 {
        loader.map_max_entries(MAP_EVENTS, ring_bytes);
    }
    let mut ebpf = loader
        .btf(Some(&btf))
        .override_global(GLOBAL_TARGET_TGID, &pid, true)
        .override_global(GLOBAL_TARGET_PIDNS_DEV, &pidns_dev, true)
        .override_global(GLOBAL_TARGET_PIDNS_INO, &pidns_ino, true)
        .override_global(GLOBAL_GO_GOID_OFFSET, &goid_offset, true)
        .override_global(GLOBAL_DIAGNOSTICS, &u32::from(bpf_log), true)
        .override_global(
            GLOBAL_WAIT_ENDS_AT_SWITCH_IN,
            &u32::from(matches!(wait_ends, WaitEnds::AtSwitchIn(_))),
            true,
        )
        .override_global(GLOBAL_LEAN_WAITS, &lean_waits.global(), true)
        .override_global(GLOBAL_TASK_RUNTIME_OFFSET, &runtime_offset, true)
        .override_global(GLOBAL_TASK_NVCSW_OFFSET, &nvcsw_offset, true)
        .load(EBPF_OBJECT)
        .map_err(ProbeError::Load)?;
    let (sleep, exit) = match hooks {
        Hooks::Trace { .. } => (PROG_SCHED_SWITCH, PROG_SYS_EXIT),
        Hooks::Floor { .. } => (PROG_NOOP_SCHED_SWITCH, PROG_NOOP_SYS_EXIT),
    };
    // Where a wait ends attaches before where it is seen begin: a wait sent before
    // its `sys_exit` program ran would stay open for good. (Waits already asleep are
    // found by the session's scan of the target's threads.)
    if sys_exit {
        attach_tp_btf(&mut ebpf, exit, "sys_exit", &btf)?;
    }
    let dispatched = if shared_switch {
        register_with_dispatcher(&mut ebpf, pid, &btf)?
    } else {
        None
    };
    if dispatched.is_none() {
        attach_tp_btf(&mut ebpf, sleep, "sched_switch", &btf)?;
    }
    if matches!(hooks, Hooks::Trace { .. }) {
        // The point where the target replaces its program, for the reader to switch
        // symbols and lock state there (`session`).
        attach_tp_btf(&mut ebpf, PROG_PROCESS_EXEC, "sched_process_exec", &btf)?;
    }
    // The kernel's BTF, parsed, is ~30 MB of small allocations, needed only by the two
    // hooks above: free it, and give the memory back to the system before the ring
    // buffer's 2 × 16 MiB mapping (the kernel maps its data pages twice) adds to it.
    drop(btf);
    release_freed_heap();
    Ok((ebpf, dispatched))
}

/// Loads the two programs the dispatcher hands `pid`'s switch-outs to, and registers
/// them with its map of open sleeps; `None` (and the two unloaded) when the dispatcher
/// has no slot left.
fn register_with_dispatcher(
    ebpf: &mut Ebpf,
    pid: u32,
    btf: &Btf,
) -> Result<Option<switch_dispatch::Dispatched>, ProbeError> {
    let names = [PROG_SCHED_SWITCH_DRAWN, PROG_SCHED_SWITCH_ENDS];
    for name in names {
        load_tp_btf(ebpf, name, "sched_switch", btf)?;
    }
    let program_fd = |name: &'static str| -> Result<&ProgramFd, ProbeError> {
        let program: &BtfTracePoint = ebpf
            .program(name)
            .ok_or(ProbeError::MissingProgram(name))?
            .try_into()
            .map_err(|source| ProbeError::Program { name, source })?;
        program
            .fd()
            .map_err(|source| ProbeError::Program { name, source })
    };
    let Some(Map::Array(open_sleep_slots)) = ebpf.map(MAP_OPEN_SLEEP_SLOTS) else {
        return Err(ProbeError::MissingMap(MAP_OPEN_SLEEP_SLOTS));
    };
    let programs = switch_dispatch::DispatchedPrograms {
        drawn: program_fd(PROG_SCHED_SWITCH_DRAWN)?,
        ends: program_fd(PROG_SCHED_SWITCH_ENDS)?,
        open_sleep_slots,
    };
    let dispatched = switch_dispatch::register(pid, &programs, btf)?;
    if dispatched.is_none() {
        for name in names {
            let program: Option<&mut BtfTracePoint> =
                ebpf.program_mut(name).and_then(|p| p.try_into().ok());
            if let Some(program) = program {
                let _ = program.unload();
            }
        }
    }
    Ok(dispatched)
}

/// Returns the heap's free memory to the system (glibc keeps what was freed inside its
/// heap for reuse, resident). `tracer serve` calls it when a session ends.
pub fn release_freed_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `malloc_trim` only walks and shrinks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps glibc's threshold for serving an allocation from its own mapping at 128 KiB, its
/// starting value. By default glibc raises the threshold to the size of each such block
/// freed (up to 32 MiB), and the blocks of that size allocated after it then come from
/// the heap, where what is freed stays resident: the inflated DWARF sections a symbolizer
/// reads and copies (megabytes each) left ~5 MB resident per session that way, in a
/// process that runs for weeks. Called once, at start.
pub fn keep_large_allocations_mapped() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `mallopt` only sets the allocator's parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn take_map<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, MapError>,
) -> Result<T, ProbeError> {
    let map = ebpf.take_map(name).ok_or(ProbeError::MissingMap(name))?;
    convert(map).map_err(|source| ProbeError::Map { name, source })
}

/// Loads program `name` for BTF raw tracepoint `tracepoint` (if not loaded yet), and
/// attaches it.
fn attach_tp_btf(
    ebpf: &mut Ebpf,
    name: &'static str,
    tracepoint: &str,
    btf: &Btf,
) -> Result<(), ProbeError> {
    load_tp_btf(ebpf, name, tracepoint, btf)?
        .attach()
        .map_err(|source| ProbeError::Program { name, source })?;
    Ok(())
}

/// Loads program `name` for BTF raw tracepoint `tracepoint` (if not loaded yet).
fn load_tp_btf<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
    tracepoint: &str,
    btf: &Btf,
) -> Result<&'a mut BtfTracePoint, ProbeError> {
    let program = tp_btf_program(ebpf, name)?;
    if program.fd().is_err() {
        program
            .load(tracepoint, btf)
            .map_err(|source| ProbeError::Program { name, source })?;
    }
    Ok(program)
}

/// BTF raw tracepoint program `name` of `ebpf`, loaded or not.
fn tp_btf_program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut BtfTracePoint, ProbeError> {
    ebpf.program_mut(name)
        .ok_or(ProbeError::MissingProgram(name))?
        .try_into()
        .map_err(|source| ProbeError::Program { name, source })
}

fn load_uprobe(ebpf: &mut Ebpf, name: &'static str) -> Result<(), ProbeError> {
    let program: &mut UProbe = ebpf
        .program_mut(name)
        .ok_or(ProbeError::MissingProgram(name))?
        .try_into()
        .map_err(|source| ProbeError::Program { name, source })?;
    if program.fd().is_err() {
        program
            .load()
            .map_err(|source| ProbeError::Program { name, source })?;
    }
    Ok(())
}

/// Attaches the Go site program at every site. A site the kernel refuses is recorded
/// and skipped: losing one site's events makes some holders unknown, never wrong.
fn attach_go_sites(
    ebpf: &mut Ebpf,
    name: &'static str,
    pid: u32,
    go: &GoSites<'_>,
    summary: &mut AttachSummary,
) -> Result<(), ProbeError> {
    load_uprobe(ebpf, name)?;
    let program: &mut UProbe = ebpf
        .program_mut(name)
        .ok_or(ProbeError::MissingProgram(name))?
        .try_into()
        .map_err(|source| ProbeError::Program { name, source })?;
    let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).unwrap_or(NonZeroU32::MIN));
    for &(offset, cookie) in go.sites {
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(offset),
            cookie: Some(cookie),
        };
        match program.attach(point, go.exe, scope) {
            Ok(_) => summary.go_sites += 1,
            Err(err) => {
                let denied = ProbeError::Program { name, source: err };
                // Privilege problems and a vanished target fail the whole attach; a
                // single instruction the kernel will not probe does not.
                if denied.is_permission_denied() || summary.go_sites == 0 && go.sites.len() == 1 {
                    return Err(denied);
                }
                summary.go_sites_refused.push(offset);
            }
        }
    }
    Ok(())
}

/// Attaches a loaded uprobe program at file offset `offset` of `object`, with `op` as
/// its cookie.
fn attach_uprobe(
    ebpf: &mut Ebpf,
    name: &'static str,
    offset: u64,
    op: LockOp,
    object: &Path,
    scope: UProbeScope,
) -> Result<(), ProbeError> {
    let program: &mut UProbe = ebpf
        .program_mut(name)
        .ok_or(ProbeError::MissingProgram(name))?
        .try_into()
        .map_err(|source| ProbeError::Program { name, source })?;
    let point = UProbeAttachPoint {
        location: UProbeAttachLocation::AbsoluteOffset(offset),
        cookie: Some(op as u64),
    };
    program
        .attach(point, object, scope)
        .map(drop)
        .map_err(|source| ProbeError::Program { name, source })
}

impl crate::assemble::StackSource for Probes {
    fn user_stack(&self, stack_id: u32) -> Vec<u64> {
        self.stack(stack_id)
    }

    fn pending_call_site(&self, tid: u32) -> Option<u64> {
        Probes::pending_call_site(self, tid)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    use tracer_common::{ALL_GLOBALS, ALL_MAPS, ALL_PROGRAMS};

    use super::*;

    /// A program load refused with `errno` and the verifier log `log`.
    fn load_error(errno: i32, log: &str) -> ProbeError {
        ProbeError::Program {
            name: PROG_SYS_EXIT,
            source: ProgramError::LoadError {
                io_error: std::io::Error::from_raw_os_error(errno),
                verifier_log: aya_obj::VerifierLog::new(log.to_owned()),
            },
        }
    }

    /// Guards against reporting a missing `CAP_PERFMON` (`BPF_PROG_LOAD` answers EPERM, with
    /// an empty verifier log) as a failure to attach instead of a missing privilege, and
    /// against reporting the verifier's rejection of a program (EACCES, with its log) as
    /// a missing privilege.
    #[test]
    fn a_program_load_refused_with_eperm_is_a_missing_privilege() {
        assert!(load_error(libc::EPERM, "").is_permission_denied());
        let rejected = load_error(libc::EACCES, "0: R1 invalid mem access 'scalar'\n");
        assert!(rejected.is_verifier_rejection());
        assert!(!rejected.is_permission_denied());
        assert!(!load_error(libc::EINVAL, "").is_permission_denied());
    }

    /// Guards against a rename on one side of the kernel/user boundary: every map,
    /// program and global name userspace asks for must exist in the built object.
    #[test]
    fn built_object_holds_every_shared_name() {
        let file = object::File::parse(object_bytes()).expect("the built eBPF object parses");
        let symbols: Vec<String> = file
            .symbols()
            .filter_map(|s| s.name().ok().map(str::to_owned))
            .collect();
        for name in ALL_MAPS.iter().chain(&ALL_PROGRAMS).chain(&ALL_GLOBALS) {
            assert!(
                symbols.iter().any(|s| s == name),
                "{name} missing from the eBPF object"
            );
        }
        assert!(file.sections().any(|s| s.name() == Ok("tp_btf/sys_exit")));
        assert!(
            file.sections()
                .any(|s| s.name() == Ok("tp_btf/sched_switch"))
        );
        assert!(
            !file.sections().any(|s| s.name() == Ok("tp_btf/sys_enter")),
            "no program may hook every system call's entry (see futex_sleep.rs)"
        );
        assert!(file.sections().any(|s| s.name() == Ok("uretprobe")));
    }
}
