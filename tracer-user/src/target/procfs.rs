//! What `/proc` says about a process: liveness, threads and their names, memory maps,
//! the syscall a thread is blocked in, and its memory. The layer under
//! [`super::LiveProcess`]: the rest of the tracer reads the target through
//! [`super::TargetProcess`], and uses from here only the types and the pure parsers
//! (`parse_maps`, `find_libc`), which the tests below exercise on sample text.
//!
//! Everything here reads the target from the outside and never stops it; callers must
//! expect any answer to be stale (threads come and go, the process may exit) and treat
//! "gone" as a normal outcome rather than a failure.

use std::{
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Failure to read something about the target from `/proc`.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The process (or thread) does not exist, or exited while we were reading it.
    #[error("no such process: {pid}")]
    NoSuchProcess {
        /// The process id that was asked for.
        pid: u32,
    },
    /// Reading a `/proc` file failed for another reason (usually permissions).
    #[error("cannot read {}", path.display())]
    Io {
        /// The file or directory that could not be read.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The executable (`/proc/PID/exe`) could not be read.
    #[error("cannot read the executable {}", path.display())]
    Executable {
        /// The file that could not be read.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// `process_vm_readv(2)` failed for a reason other than the process being gone.
    #[error("cannot read {len} bytes at {addr:#x} in process {pid}")]
    Memory {
        /// The target process.
        pid: u32,
        /// The remote address that was asked for.
        addr: u64,
        /// How many bytes were asked for.
        len: usize,
        /// What the kernel said (`EFAULT` for unmapped memory, `EPERM` without ptrace rights).
        #[source]
        source: io::Error,
    },
    /// A `/proc` file did not hold what the kernel writes there.
    #[error("{} has no {field}", path.display())]
    Malformed {
        /// The file that was read.
        path: PathBuf,
        /// What was looked for.
        field: &'static str,
    },
    /// `sysconf(_SC_CLK_TCK)` gave no clock tick rate, so CPU times in ticks cannot be
    /// converted.
    #[error("the system gives no clock tick rate (sysconf(_SC_CLK_TCK) = {value})")]
    ClockTicks {
        /// What `sysconf` returned.
        value: libc::c_long,
    },
}

/// `/proc/PID`.
#[must_use]
pub(super) fn proc_dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

/// Turns an I/O error on a `/proc/PID/...` path into a [`ProcError`]; "not found" (and
/// `ESRCH`, which some files return once the task is reaped) means the process is gone.
fn io_error(pid: u32, path: PathBuf, source: io::Error) -> ProcError {
    if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH) {
        ProcError::NoSuchProcess { pid }
    } else {
        ProcError::Io { path, source }
    }
}

/// Whether a process (or thread) with this id currently exists (zombies included).
#[must_use]
pub(super) fn process_exists(pid: u32) -> bool {
    // pid 0 is not a process, and `/proc/0` does not exist anyway; checked for clarity.
    pid != 0 && proc_dir(pid).exists()
}

/// Whether a process exists and has not exited: a zombie (exited, not yet reaped by its
/// parent) counts as gone, since it will never run again.
#[must_use]
pub(super) fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(proc_dir(pid).join("stat")) else {
        return false;
    };
    parse_stat_state(&stat).is_some_and(|state| !matches!(state, 'Z' | 'X' | 'x'))
}

/// The state letter of a `/proc/PID/stat` line (after the parenthesised command name,
/// which may itself contain spaces and parentheses).
fn parse_stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Ids of the threads of `pid`, from `/proc/PID/task`, sorted ascending.
///
/// # Errors
/// [`ProcError::NoSuchProcess`] when the process is gone, [`ProcError::Io`] otherwise.
pub(super) fn thread_ids(pid: u32) -> Result<Vec<u32>, ProcError> {
    let path = proc_dir(pid).join("task");
    let entries = fs::read_dir(&path).map_err(|e| io_error(pid, path.clone(), e))?;
    let mut tids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(pid, path.clone(), e))?;
        // Anything that is not a number is not a task; skip rather than fail.
        if let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        {
            tids.push(tid);
        }
    }
    tids.sort_unstable();
    Ok(tids)
}

/// Parses the `NSpid:` line of `/proc/PID/task/TID/status`: the thread's id in the
/// innermost PID namespace it belongs to (the last field; the first is the id as the
/// reader's `/proc` sees it). `None` when the line is missing or malformed (kernels
/// before 4.1 have no such line).
#[must_use]
pub(super) fn parse_innermost_nspid(status: &str) -> Option<u32> {
    let fields = status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?;
    fields.split_whitespace().last()?.parse().ok()
}

/// Whether `pid` is in this process's PID namespace (then its TIDs are the same on both
/// sides and no status file needs reading). `false` when either link cannot be read.
fn shares_pid_namespace(pid: u32) -> bool {
    let ns = |dir: PathBuf| fs::read_link(dir.join("ns/pid")).ok();
    ns(PathBuf::from("/proc/self")).is_some_and(|mine| ns(proc_dir(pid)) == Some(mine))
}

/// The threads of `pid` as (TID here, TID in its own PID namespace) pairs, ascending:
/// see `TargetProcess::namespace_tids`. A thread whose status cannot be read (it exited
/// meanwhile) is left out; a kernel without `NSpid` lines has no PID namespaces to
/// translate, so such a thread keeps its id.
///
/// # Errors
/// [`ProcError::NoSuchProcess`] when the process is gone, [`ProcError::Io`] otherwise.
pub(super) fn namespace_tids(pid: u32) -> Result<Vec<(u32, u32)>, ProcError> {
    let tids = thread_ids(pid)?;
    if shares_pid_namespace(pid) {
        return Ok(tids.into_iter().map(|tid| (tid, tid)).collect());
    }
    Ok(tids
        .into_iter()
        .filter_map(|tid| {
            let path = proc_dir(pid).join(format!("task/{tid}/status"));
            let status = fs::read_to_string(path).ok()?;
            Some((tid, parse_innermost_nspid(&status).unwrap_or(tid)))
        })
        .collect())
}

/// The name of thread `tid` of `pid` (`/proc/PID/task/TID/comm`, without the newline),
/// or `None` when the thread is gone or unreadable.
#[must_use]
pub(super) fn thread_name(pid: u32, tid: u32) -> Option<String> {
    let text = fs::read_to_string(proc_dir(pid).join(format!("task/{tid}/comm"))).ok()?;
    Some(text.trim_end_matches('\n').to_owned())
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address of the mapping.
    pub end: u64,
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// Offset in the mapped file of `start` (0 for anonymous mappings).
    pub offset: u64,
    /// Inode of the mapped file (0 for anonymous mappings).
    pub inode: u64,
    /// The mapped file, or a pseudo-name such as `[heap]`, `[stack]`, `[vdso]`; `None` for
    /// anonymous mappings. A ` (deleted)` suffix is removed.
    pub path: Option<String>,
}

impl MapEntry {
    /// Whether `addr` lies in `[start, end)`.
    #[must_use]
    pub fn contains(&self, addr: u64) -> bool {
        (self.start..self.end).contains(&addr)
    }

    /// Whether this maps a file (its path is absolute), as opposed to an anonymous or
    /// pseudo mapping like `[heap]`.
    #[must_use]
    pub fn is_file(&self) -> bool {
        self.path.as_deref().is_some_and(|p| p.starts_with('/'))
    }
}

/// Splits off the next whitespace-separated field, returning it and the rest.
fn next_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

fn parse_map_line(line: &str) -> Option<MapEntry> {
    let (range, rest) = next_field(line)?;
    let (perms, rest) = next_field(rest)?;
    let (offset, rest) = next_field(rest)?;
    let (_dev, rest) = next_field(rest)?;
    let (inode, rest) = next_field(rest)?;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end < start {
        return None;
    }
    let perms = perms.as_bytes();
    if perms.len() < 3 {
        return None;
    }
    // The path is everything after the inode column: it may itself contain spaces, so it is
    // not split further, only the column padding before it is dropped.
    let path = rest.trim_start().trim_end_matches(['\n', '\r']);
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    Some(MapEntry {
        start,
        end,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        exec: perms[2] == b'x',
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode: inode.parse().ok()?,
        path: (!path.is_empty()).then(|| path.to_owned()),
    })
}

/// Parses the text of `/proc/PID/maps`. Malformed lines are skipped, so a truncated read
/// still yields the mappings it does contain.
#[must_use]
pub fn parse_maps(text: &str) -> Vec<MapEntry> {
    text.lines().filter_map(parse_map_line).collect()
}

/// Reads and parses `/proc/PID/maps`.
///
/// # Errors
/// [`ProcError::NoSuchProcess`] when the process is gone, [`ProcError::Io`] otherwise.
pub(super) fn read_maps(pid: u32) -> Result<Vec<MapEntry>, ProcError> {
    let path = proc_dir(pid).join("maps");
    let text = fs::read_to_string(&path).map_err(|e| io_error(pid, path.clone(), e))?;
    // A process that exited between the open and the read leaves an empty file behind.
    if text.is_empty() && !process_exists(pid) {
        return Err(ProcError::NoSuchProcess { pid });
    }
    Ok(parse_maps(&text))
}

/// Whether a file name is one of the names glibc (or musl) gives its C library.
fn is_libc_name(name: &str) -> bool {
    if name == "libc.so.6" || name == "libc.so" {
        return true;
    }
    // Older glibc installs the library as `libc-2.31.so` and only symlinks `libc.so.6`.
    name.strip_prefix("libc-")
        .and_then(|n| n.strip_suffix(".so"))
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// The path of the C library mapped by the process, as the process sees it (open it through
/// [`TargetProcess::host_path`](super::TargetProcess::host_path)). `None` for static
/// binaries.
#[must_use]
pub fn find_libc(maps: &[MapEntry]) -> Option<String> {
    maps.iter()
        .filter(|m| m.is_file())
        .filter_map(|m| m.path.as_deref())
        .find(|p| is_libc_name(p.rsplit('/').next().unwrap_or(p)))
        .map(str::to_owned)
}

/// Where a path of the target's file system is visible from here: `/proc/PID/root/PATH`.
///
/// Going through the target's root makes files of processes in other mount namespaces
/// (containers) open correctly, and is the same file otherwise.
#[must_use]
pub(super) fn host_path(pid: u32, path: &str) -> PathBuf {
    proc_dir(pid)
        .join("root")
        .join(path.trim_start_matches('/'))
}

/// The directory of links to the files the process maps: `/proc/PID/map_files`.
#[must_use]
pub(super) fn map_files_dir(pid: u32) -> PathBuf {
    proc_dir(pid).join("map_files")
}

/// The entry of `map_files_dir` (a `/proc/PID/map_files`) that opens the file the target
/// maps as `path` with inode `inode` (not checked when 0): the file itself, even when it
/// was deleted (the maps say `/path (deleted)`) or never had a name (`/memfd:name`).
/// `None` when no mapping is of that file, or the links cannot be read (they need
/// `CAP_SYS_ADMIN`).
#[must_use]
pub fn mapped_file(map_files_dir: &Path, path: &str, inode: u64) -> Option<PathBuf> {
    let entries = fs::read_dir(map_files_dir).ok()?;
    entries.flatten().map(|e| e.path()).find(|link| {
        let Ok(target) = fs::read_link(link) else {
            return false;
        };
        let target = target.to_string_lossy();
        let named = target.strip_suffix(" (deleted)").unwrap_or(&target) == path;
        named && (inode == 0 || fs::metadata(link).is_ok_and(|m| m.ino() == inode))
    })
}

/// What a thread is doing, from `/proc/PID/task/TID/syscall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallState {
    /// Running on a CPU: the kernel cannot tell what it is doing.
    Running,
    /// Blocked in the kernel but not in a system call (e.g. a page fault).
    NotInSyscall,
    /// Blocked in system call `nr` with these arguments.
    InSyscall {
        /// The system call number.
        nr: i64,
        /// The six argument registers.
        args: [u64; 6],
        /// User stack pointer at the call (where a stack walk starts).
        sp: u64,
        /// User instruction pointer at the call.
        pc: u64,
    },
}

fn parse_hex(s: &str) -> Option<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(digits, 16).ok()
}

/// Parses the text of `/proc/PID/task/TID/syscall`: `running`, `-1 SP PC`, or
/// `NR ARG1 .. ARG6 SP PC` (number in decimal, the rest in `0x` hex). `None` if malformed.
#[must_use]
pub(super) fn parse_syscall(text: &str) -> Option<SyscallState> {
    let mut fields = text.split_whitespace();
    let first = fields.next()?;
    if first == "running" {
        return Some(SyscallState::Running);
    }
    let nr: i64 = first.parse().ok()?;
    let rest = fields.map(parse_hex).collect::<Option<Vec<u64>>>()?;
    if nr < 0 {
        return (rest.len() == 2).then_some(SyscallState::NotInSyscall);
    }
    // Six arguments, then the stack and instruction pointers.
    if rest.len() != 8 {
        return None;
    }
    let mut args = [0u64; 6];
    args.copy_from_slice(&rest[..6]);
    Some(SyscallState::InSyscall {
        nr,
        args,
        sp: rest[6],
        pc: rest[7],
    })
}

/// What thread `tid` of `pid` is doing; `None` when the thread is gone or the file is not
/// readable (it needs ptrace rights over the target).
#[must_use]
pub(super) fn syscall_state(pid: u32, tid: u32) -> Option<SyscallState> {
    let text = fs::read_to_string(proc_dir(pid).join(format!("task/{tid}/syscall"))).ok()?;
    parse_syscall(&text)
}

/// The real-time scheduling of a process's threads: how many run `SCHED_FIFO` or
/// `SCHED_RR`, and the highest priority among them (1–99).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealtimeThreads {
    pub count: usize,
    pub max_priority: u32,
}

impl RealtimeThreads {
    /// Both readings together (threads come and go between them).
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        Self {
            count: self.count.max(other.count),
            max_priority: self.max_priority.max(other.max_priority),
        }
    }
}

/// `SCHED_FIFO` and `SCHED_RR`, as `/proc/PID/task/TID/stat` gives a thread's policy.
const REALTIME_POLICIES: [u32; 2] = [1, 2];

/// Parses the real-time priority of `/proc/PID/task/TID/stat`: `Some(priority)` for a
/// `SCHED_FIFO` or `SCHED_RR` thread, `None` for any other policy or a malformed line.
/// `rt_priority` and `policy` are fields 40 and 41, counted from the pid; the command
/// name before them may hold spaces and parentheses, so fields are counted from its
/// closing `)`.
#[must_use]
pub(super) fn parse_realtime_priority(stat: &str) -> Option<u32> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // The first field after the command name is field 3 (the state).
    let mut fields = after_comm.split_whitespace().skip(40 - 3);
    let priority = fields.next()?.parse::<u32>().ok()?;
    let policy = fields.next()?.parse::<u32>().ok()?;
    REALTIME_POLICIES.contains(&policy).then_some(priority)
}

/// The real-time priority of thread `tid` of `pid` (see [`parse_realtime_priority`]);
/// `None` for other policies, or when the thread is gone.
#[must_use]
pub(super) fn realtime_priority(pid: u32, tid: u32) -> Option<u32> {
    let stat = fs::read_to_string(proc_dir(pid).join(format!("task/{tid}/stat"))).ok()?;
    parse_realtime_priority(&stat)
}

/// Parses the context-switch counts of `/proc/PID/task/TID/status`: voluntary plus
/// involuntary switches so far. `None` if either line is missing or malformed.
#[must_use]
pub(super) fn parse_context_switches(status: &str) -> Option<u64> {
    let count = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.trim().parse::<u64>().ok())
    };
    Some(count("voluntary_ctxt_switches:")? + count("nonvoluntary_ctxt_switches:")?)
}

/// Parses the voluntary context switches of `/proc/PID/task/TID/status` (the kernel's
/// `nvcsw`). `None` if the line is missing or malformed.
#[must_use]
pub(super) fn parse_voluntary_switches(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|rest| rest.trim().parse::<u64>().ok())
}

/// How many times thread `tid` of `pid` has left a CPU of its own accord (slept) so far;
/// `None` when it is gone.
#[must_use]
pub(super) fn voluntary_switches(pid: u32, tid: u32) -> Option<u64> {
    let text = fs::read_to_string(proc_dir(pid).join(format!("task/{tid}/status"))).ok()?;
    parse_voluntary_switches(&text)
}

/// Parses the host's context switches so far, all CPUs, from `/proc/stat`'s `ctxt`
/// line. `None` if it is missing or malformed.
#[must_use]
pub(super) fn parse_host_context_switches(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("ctxt "))
        .and_then(|rest| rest.trim().parse::<u64>().ok())
}

/// Parses the number of the host's CPUs that `/proc/stat` lists (`cpuN` lines: those
/// online). `None` if it lists none.
#[must_use]
pub(super) fn parse_host_cpus(stat: &str) -> Option<u64> {
    let cpus = stat
        .lines()
        .filter(|line| {
            line.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count();
    (cpus > 0).then(|| u64::try_from(cpus).unwrap_or(u64::MAX))
}

/// The number of the host's online CPUs (`/proc/stat`); `None` if unreadable.
#[must_use]
pub(super) fn host_cpus() -> Option<u64> {
    parse_host_cpus(&fs::read_to_string("/proc/stat").ok()?)
}

/// The host's context switches so far, all CPUs (`/proc/stat`); `None` if unreadable.
#[must_use]
pub(super) fn host_context_switches() -> Option<u64> {
    parse_host_context_switches(&fs::read_to_string("/proc/stat").ok()?)
}

/// How many times thread `tid` of `pid` has left a CPU so far; `None` when it is gone.
///
/// A thread that stays asleep keeps this number: two equal reads around a check of the
/// thread's state prove it did not run in between, so the state read is one moment's.
#[must_use]
pub(super) fn context_switches(pid: u32, tid: u32) -> Option<u64> {
    let text = fs::read_to_string(proc_dir(pid).join(format!("task/{tid}/status"))).ok()?;
    parse_context_switches(&text)
}

/// The tracer's own use of the machine, as its metrics export it
/// (`process_cpu_seconds_total`, `process_resident_memory_bytes`): what a tracer costs
/// the host it watches is part of what it reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfUsage {
    /// CPU time used so far, user and system, by all its threads, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory now, in bytes.
    pub resident_bytes: u64,
}

/// Parses the CPU time of a `/proc/PID/stat` line: `utime` plus `stime` (fields 14 and
/// 15, counted from the pid), in clock ticks. For a process (not a single thread) these
/// add up all its threads, exited ones included. The command name before them may hold
/// spaces and parentheses, so fields are counted from its closing `)`. `None` if malformed.
#[must_use]
pub(super) fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // The first field after the command name is field 3 (the state).
    let mut fields = after_comm.split_whitespace().skip(14 - 3);
    let utime = fields.next()?.parse::<u64>().ok()?;
    let stime = fields.next()?.parse::<u64>().ok()?;
    utime.checked_add(stime)
}

/// Parses the resident memory of `/proc/PID/status` (`VmRSS:`, which the kernel writes in
/// `kB`, meaning KiB), in bytes. `None` when the line is missing or malformed (kernel
/// threads have none).
#[must_use]
pub(super) fn parse_status_resident_bytes(status: &str) -> Option<u64> {
    let rest = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?;
    let mut parts = rest.split_whitespace();
    let kib = parts.next()?.parse::<u64>().ok()?;
    if parts.next()? != "kB" {
        return None;
    }
    kib.checked_mul(1024)
}

/// Clock ticks as seconds, at `ticks_per_second` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
#[expect(
    clippy::cast_precision_loss,
    reason = "tick counts stay far below 2^53 (28 million years at 100 Hz)"
)]
fn ticks_to_seconds(ticks: u64, ticks_per_second: u64) -> f64 {
    ticks as f64 / ticks_per_second as f64
}

/// The kernel's clock tick rate, the unit of the CPU times in `/proc/PID/stat`.
fn clock_ticks_per_second() -> Result<u64, ProcError> {
    // SAFETY: sysconf only reads a configuration value; it takes and returns no pointers.
    let value = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(value)
        .ok()
        .filter(|&rate| rate > 0)
        .ok_or(ProcError::ClockTicks { value })
}

/// Reads a file of this process's `/proc` entry and parses `field` out of it.
fn read_own<T>(
    file: &str,
    field: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, ProcError> {
    let path = PathBuf::from("/proc/self").join(file);
    let text = fs::read_to_string(&path).map_err(|source| ProcError::Io {
        path: path.clone(),
        source,
    })?;
    parse(&text).ok_or(ProcError::Malformed { path, field })
}

/// The tracer's own CPU time and resident memory, from `/proc/self/stat` and
/// `/proc/self/status`.
///
/// # Errors
/// [`ProcError::Io`] when a file cannot be read (no `/proc` mounted),
/// [`ProcError::Malformed`] when it lacks the field, [`ProcError::ClockTicks`] when the
/// system gives no tick rate.
pub fn self_usage() -> Result<SelfUsage, ProcError> {
    let ticks = read_own("stat", "utime and stime", parse_stat_cpu_ticks)?;
    let resident_bytes = read_own("status", "VmRSS line", parse_status_resident_bytes)?;
    Ok(SelfUsage {
        cpu_seconds: ticks_to_seconds(ticks, clock_ticks_per_second()?),
        resident_bytes,
    })
}

/// Reads `buf.len()` bytes at `addr` in process `pid` with `process_vm_readv(2)`; returns how
/// many bytes were read (fewer than asked when the range runs into unmapped memory).
///
/// Used to re-read a lock's owner field when confirming a deadlock: unlike `/proc/PID/mem`
/// it needs no open file, and unlike ptrace it does not stop the target.
///
/// # Errors
/// [`ProcError::NoSuchProcess`] when the process is gone, [`ProcError::Memory`] otherwise
/// (`EFAULT` when nothing at `addr` is mapped, `EPERM` without ptrace rights).
pub(super) fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> Result<usize, ProcError> {
    if buf.is_empty() {
        return Ok(0);
    }
    let len = buf.len();
    let memory_error = |source| ProcError::Memory {
        pid,
        addr,
        len,
        source,
    };
    let Ok(remote_pid) = libc::pid_t::try_from(pid) else {
        return Err(ProcError::NoSuchProcess { pid });
    };
    let Ok(remote_base) = usize::try_from(addr) else {
        return Err(memory_error(io::Error::from_raw_os_error(libc::EFAULT)));
    };
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: remote_base as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` describes `buf`, which is valid for writes of `buf.len()` bytes and
    // exclusively borrowed for the duration of the call; the remote iovec is only
    // interpreted by the kernel in the other address space, never dereferenced here.
    let n =
        unsafe { libc::process_vm_readv(remote_pid, &raw const local, 1, &raw const remote, 1, 0) };
    if let Ok(n) = usize::try_from(n) {
        return Ok(n);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Err(ProcError::NoSuchProcess { pid })
    } else {
        Err(memory_error(err))
    }
}

/// Whether the ELF file at `path` has no `.symtab` (only exported symbols, so static
/// variables and functions will have no names). `false` when the file cannot be read or is
/// not ELF, because then there is nothing useful to warn about.
#[must_use]
pub fn is_elf_stripped(path: &Path) -> bool {
    use object::{Object, ObjectSection};
    let Ok(data) = fs::read(path) else {
        return false;
    };
    match object::File::parse(&*data) {
        Ok(file) if matches!(file.format(), object::BinaryFormat::Elf) => {
            !file.sections().any(|s| s.name() == Ok(".symtab"))
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    /// A `stat` line with the given command name, `rt_priority` and `policy`.
    fn stat_line(comm: &str, priority: u32, policy: u32) -> String {
        // Fields 3..=39, then rt_priority (40), policy (41), and the rest.
        let middle: Vec<String> = (3..=39)
            .map(|i| if i == 3 { "R".into() } else { i.to_string() })
            .collect();
        format!(
            "4242 ({comm}) {} {priority} {policy} 0 0 0 0",
            middle.join(" ")
        )
    }

    #[test]
    fn realtime_priority_is_read_after_the_command_name() {
        assert_eq!(parse_realtime_priority(&stat_line("worker", 7, 1)), Some(7));
        assert_eq!(parse_realtime_priority(&stat_line("rr", 99, 2)), Some(99));
        // A command name with spaces and a parenthesis does not shift the fields.
        assert_eq!(
            parse_realtime_priority(&stat_line("a b) 3 4", 5, 1)),
            Some(5)
        );
        // SCHED_OTHER, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE: not real-time priorities.
        for policy in [0, 3, 5, 6] {
            assert_eq!(parse_realtime_priority(&stat_line("x", 0, policy)), None);
        }
        assert_eq!(parse_realtime_priority("4242 (short) R 1 2 3"), None);
        assert_eq!(parse_realtime_priority(""), None);
    }

    /// Guards the fields counted after the command name: utime and stime are fields 14
    /// and 15 even when the name holds spaces and parentheses.
    #[test]
    fn stat_cpu_ticks_are_utime_plus_stime() {
        let stat = "14665 (tracer) R 14660 14660 31075 0 -1 4194304 101 0 0 0 1234 56 7 8 20 0 \
                    3 0 4853310 3133440 397 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(1234 + 56));
        let odd_name = stat.replace("(tracer)", "(a) b) 9 9)");
        assert_eq!(parse_stat_cpu_ticks(&odd_name), Some(1234 + 56));
        assert_eq!(parse_stat_cpu_ticks("14665 (tracer) R 1 2 3"), None);
        assert_eq!(parse_stat_cpu_ticks("14665 tracer R"), None);
        assert_eq!(
            parse_stat_cpu_ticks(&stat.replace(" 1234 ", " x ")),
            None,
            "a field that is not a number"
        );
    }

    /// Guards the unit: `VmRSS` is in KiB, exported in bytes.
    #[test]
    fn status_resident_memory_is_in_bytes() {
        let status =
            "Name:\ttracer\nVmPeak:\t   20000 kB\nVmRSS:\t    2124 kB\nRssAnon:\t     100 kB\n";
        assert_eq!(parse_status_resident_bytes(status), Some(2124 * 1024));
        assert_eq!(
            parse_status_resident_bytes("Name:\tkthreadd\nThreads:\t1\n"),
            None
        );
        assert_eq!(parse_status_resident_bytes("VmRSS:\t 12 MB\n"), None);
        assert_eq!(parse_status_resident_bytes("VmRSS:\n"), None);
    }

    /// Guards the reader on this very process: it reads, the memory is plausible, and the
    /// CPU time grows while the process computes (so the ticks are found and converted).
    #[test]
    fn self_usage_reads_this_process() {
        let start = self_usage().unwrap();
        assert!(
            (1 << 20..1 << 40).contains(&start.resident_bytes),
            "{start:?}"
        );
        let began = std::time::Instant::now();
        let mut spin = 0u64;
        loop {
            for i in 0..1_000_000u64 {
                spin = std::hint::black_box(spin.wrapping_mul(31).wrapping_add(i));
            }
            let now = self_usage().unwrap();
            if now.cpu_seconds > start.cpu_seconds {
                break;
            }
            assert!(
                began.elapsed() < std::time::Duration::from_secs(30),
                "CPU time stayed at {} s while computing",
                start.cpu_seconds
            );
        }
    }

    #[test]
    fn realtime_readings_combine_by_their_largest() {
        let a = RealtimeThreads {
            count: 3,
            max_priority: 1,
        };
        let b = RealtimeThreads {
            count: 1,
            max_priority: 50,
        };
        assert_eq!(
            a.max(b),
            RealtimeThreads {
                count: 3,
                max_priority: 50
            }
        );
    }

    const MAPS: &str = "\
55d5c4a00000-55d5c4a01000 r--p 00000000 fd:01 1234567                    /usr/bin/prog
55d5c4a01000-55d5c4a02000 r-xp 00001000 fd:01 1234567                    /usr/bin/prog
55d5c4a03000-55d5c4a04000 rw-p 00002000 fd:01 1234567                    /usr/bin/prog
55d5c4a04000-55d5c4a05000 rw-p 00000000 00:00 0 
55d5c5000000-55d5c5021000 rw-p 00000000 00:00 0                          [heap]
7f1e2a000000-7f1e2a028000 r--p 00000000 fd:01 2222                       /usr/lib/x86_64-linux-gnu/libc.so.6
7f1e2a100000-7f1e2a101000 r-xp 00000000 fd:01 3333                       /tmp/my lib.so (deleted)
this is not a maps line
7ffd1a000000-7ffd1a021000 rw-p 00000000 00:00 0                          [stack]
7ffd1a1f0000-7ffd1a1f2000 r-xp 00000000 00:00 0                          [vdso]
";

    #[test]
    fn parse_maps_fields() {
        let maps = parse_maps(MAPS);
        assert_eq!(maps.len(), 9);
        assert_eq!(
            maps[1],
            MapEntry {
                start: 0x55d5_c4a0_1000,
                end: 0x55d5_c4a0_2000,
                read: true,
                write: false,
                exec: true,
                offset: 0x1000,
                inode: 1_234_567,
                path: Some("/usr/bin/prog".into()),
            }
        );
        assert_eq!(maps[3].path, None);
        assert!(maps[3].write && !maps[3].exec);
        assert_eq!(maps[4].path.as_deref(), Some("[heap]"));
        assert_eq!(maps[6].path.as_deref(), Some("/tmp/my lib.so"));
        assert_eq!(maps[7].path.as_deref(), Some("[stack]"));
        assert_eq!(maps[8].path.as_deref(), Some("[vdso]"));
        assert!(maps[0].is_file() && !maps[4].is_file() && !maps[3].is_file());
        assert!(maps[0].contains(0x55d5_c4a0_0fff) && !maps[0].contains(0x55d5_c4a0_1000));
    }

    #[test]
    fn parse_maps_skips_malformed() {
        let text = "zzzz-1000 r--p 0 00:00 0\n2000-1000 r--p 0 00:00 0\n1000-2000 r\n\n1000-2000 r--p 0 00:00 0";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 1);
        assert_eq!(
            (maps[0].start, maps[0].end, maps[0].path.clone()),
            (0x1000, 0x2000, None)
        );
    }

    #[test]
    fn find_libc_by_name() {
        let maps = parse_maps(MAPS);
        assert_eq!(
            find_libc(&maps).as_deref(),
            Some("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        let old = parse_maps("1000-2000 r-xp 0 08:01 7 /lib/x86_64-linux-gnu/libc-2.31.so\n");
        assert_eq!(
            find_libc(&old).as_deref(),
            Some("/lib/x86_64-linux-gnu/libc-2.31.so")
        );
        let musl = parse_maps("1000-2000 r-xp 0 08:01 7 /usr/lib/musl/lib/libc.so\n");
        assert_eq!(
            find_libc(&musl).as_deref(),
            Some("/usr/lib/musl/lib/libc.so")
        );
        let none = parse_maps(
            "1000-2000 r-xp 0 08:01 7 /usr/lib/libcrypt.so.1\n1000-2000 r-xp 0 08:01 7 /x/libc-client.so\n",
        );
        assert_eq!(find_libc(&none), None);
    }

    #[test]
    fn host_path_goes_through_proc_root() {
        assert_eq!(
            host_path(42, "/usr/lib/libc.so.6"),
            PathBuf::from("/proc/42/root/usr/lib/libc.so.6")
        );
    }

    #[test]
    fn stat_state_and_liveness() {
        assert_eq!(parse_stat_state("42 (a) b) c) S 1 2 3"), Some('S'));
        assert_eq!(parse_stat_state("42 (zombie) Z 1 2"), Some('Z'));
        assert_eq!(parse_stat_state("garbage"), None);
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX - 1));
        // A child that exited but is not reaped yet is a zombie: not alive, but present.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while process_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            !process_alive(pid) && process_exists(pid),
            "an unreaped child is a zombie"
        );
        child.wait().unwrap();
    }

    /// Guards the translation of TIDs inside a PID namespace (a container): the id a
    /// target's memory holds is the last `NSpid` field, not the first.
    #[test]
    fn innermost_nspid_is_the_last_field() {
        let status = "Name:\tabba\nTgid:\t4242\nNSpid:\t4243\t7\t3\nPPid:\t1\n";
        assert_eq!(parse_innermost_nspid(status), Some(3));
        assert_eq!(parse_innermost_nspid("NSpid:\t4243\n"), Some(4243));
        assert_eq!(parse_innermost_nspid("Name:\tx\n"), None);
        assert_eq!(parse_innermost_nspid("NSpid:\t\n"), None);
        let me = std::process::id();
        let own = namespace_tids(me).expect("own threads");
        assert!(
            own.contains(&(me, me)),
            "this process shares its own namespace"
        );
    }

    #[test]
    fn voluntary_switches_and_the_hosts_switches_are_read_alone() {
        let status =
            "Name:\tworker\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_voluntary_switches(status), Some(120));
        assert_eq!(
            parse_voluntary_switches("nonvoluntary_ctxt_switches:\t7\n"),
            None
        );
        let stat = "cpu  1 2 3\ncpu0 1 1 1\ncpu1 0 1 2\nintr 5 6\nctxt 987654321\nbtime 1\n";
        assert_eq!(parse_host_context_switches(stat), Some(987_654_321));
        assert_eq!(parse_host_cpus(stat), Some(2));
        assert_eq!(parse_host_cpus("cpu  1 2 3\n"), None);
        assert!(host_cpus().is_some_and(|n| n > 0));
        assert_eq!(parse_host_context_switches("cpu 1\n"), None);
        let own = std::process::id();
        assert!(voluntary_switches(own, own).is_some());
        assert!(host_context_switches().is_some_and(|n| n > 0));
    }

    #[test]
    fn context_switches_add_both_kinds() {
        let status = "Name:\tworker\nState:\tS (sleeping)\n\
                      voluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_context_switches(status), Some(127));
        assert_eq!(
            parse_context_switches("voluntary_ctxt_switches:\t1\n"),
            None
        );
        assert_eq!(
            parse_context_switches("voluntary_ctxt_switches:\tx\nnonvoluntary_ctxt_switches:\t1\n"),
            None
        );
        let own = context_switches(std::process::id(), std::process::id());
        assert!(own.is_some(), "this process's own main thread has a status");
    }

    #[test]
    fn parse_syscall_forms() {
        assert_eq!(parse_syscall("running\n"), Some(SyscallState::Running));
        assert_eq!(
            parse_syscall("-1 0x7ffd1a020e38 0x7f1e2a0c1d2b\n"),
            Some(SyscallState::NotInSyscall)
        );
        assert_eq!(
            parse_syscall(
                "202 0x55d5c4a03010 0x80 0x2 0x0 0x0 0xffffffff 0x7ffd1a020e38 0x7f1e2a0c1d2b\n"
            ),
            Some(SyscallState::InSyscall {
                nr: 202,
                args: [0x55d5_c4a0_3010, 0x80, 2, 0, 0, 0xffff_ffff],
                sp: 0x7ffd_1a02_0e38,
                pc: 0x7f1e_2a0c_1d2b,
            })
        );
        assert_eq!(parse_syscall(""), None);
        assert_eq!(parse_syscall("202 0x1 0x2"), None);
        assert_eq!(parse_syscall("abc 0x1 0x2"), None);
        assert_eq!(parse_syscall("202 0x1 0x2 0x3 0x4 0x5 0xzz 0x7 0x8"), None);
    }

    #[test]
    fn own_threads_and_names() {
        let pid = std::process::id();
        assert!(process_exists(pid));
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("procfs-probe".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                tid_tx.send(u32::try_from(tid).unwrap()).unwrap();
                let _ = stop_rx.recv();
            })
            .unwrap();
        let tid = tid_rx.recv().unwrap();
        let tids = thread_ids(pid).unwrap();
        assert!(tids.contains(&pid) && tids.contains(&tid), "{tids:?}");
        assert!(tids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(thread_name(pid, tid).as_deref(), Some("procfs-probe"));
        // Blocked in futex (or, rarely, still running); either way the file parses when readable.
        if let Some(state) = syscall_state(pid, tid) {
            assert!(matches!(
                state,
                SyscallState::InSyscall { .. } | SyscallState::Running | SyscallState::NotInSyscall
            ));
        }
        stop_tx.send(()).unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn missing_process() {
        // Larger than any pid_max the kernel allows (4M), so it can never exist.
        let pid = 0x7fff_fff0;
        assert!(!process_exists(pid));
        assert!(matches!(thread_ids(pid), Err(ProcError::NoSuchProcess { pid: p }) if p == pid));
        assert!(matches!(
            read_maps(pid),
            Err(ProcError::NoSuchProcess { .. })
        ));
        assert_eq!(thread_name(pid, pid), None);
        let mut buf = [0u8; 8];
        assert!(matches!(
            read_memory(pid, 0x1000, &mut buf),
            Err(ProcError::NoSuchProcess { .. })
        ));
    }

    #[test]
    fn read_own_memory() {
        let value: u64 = 0x1122_3344_5566_7788;
        let addr = &raw const value as u64;
        let mut buf = [0u8; 8];
        let n = read_memory(std::process::id(), addr, &mut buf).unwrap();
        assert_eq!(n, 8);
        assert_eq!(u64::from_ne_bytes(buf), value);
        assert_eq!(read_memory(std::process::id(), addr, &mut []).unwrap(), 0);
        // Page 0 is never mapped.
        assert!(matches!(
            read_memory(std::process::id(), 8, &mut buf),
            Err(ProcError::Memory { .. })
        ));
    }

    #[test]
    fn read_own_maps() {
        let maps = read_maps(std::process::id()).unwrap();
        let here = read_own_maps as fn() as usize as u64;
        assert!(
            maps.iter()
                .any(|m| m.contains(here) && m.exec && m.is_file())
        );
    }

    #[test]
    fn stripped_detection() {
        let exe = std::env::current_exe().unwrap();
        // Test binaries are built with symbols.
        assert!(!is_elf_stripped(&exe));
        assert!(!is_elf_stripped(Path::new("/nonexistent/file")));
    }
}
