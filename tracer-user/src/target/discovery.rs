//! Finding processes to trace (`tracer serve`): every process, its executable's file name
//! and start time, and the processes of a cgroup v2 directory and its descendants.

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::ProcError;

/// Where cgroup v2 is mounted on most systems (`/sys/fs/cgroup/unified` on hybrid ones).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Cgroup directories walked at most under one `--cgroup` (a node's whole hierarchy has a
/// few thousand): bounds the cost of a scan.
const MAX_CGROUP_DIRS: usize = 10_000;

/// The host's context switches so far, all CPUs (`/proc/stat`'s `ctxt`): how often the
/// `sched_switch` hook runs (`tracer serve`'s duty cycle). `None` if unreadable.
#[must_use]
pub fn host_context_switches() -> Option<u64> {
    super::procfs::host_context_switches()
}

/// The number of the host's online CPUs (`/proc/stat`): what the `sched_switch` hook's
/// cost is spread over. `None` if unreadable.
#[must_use]
pub fn host_cpus() -> Option<u64> {
    super::procfs::host_cpus()
}

/// The PIDs of every process now (thread-group leaders: `/proc` lists no other thread).
///
/// # Errors
/// When `/proc` cannot be read.
pub fn all_pids() -> Result<Vec<u32>, ProcError> {
    let entries = fs::read_dir("/proc").map_err(|source| ProcError::Io {
        path: PathBuf::from("/proc"),
        source,
    })?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect())
}

/// Whether process `pid` exists (or a thread of that TID: `/proc` answers for both).
#[must_use]
pub fn is_alive(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

/// The file name of process `pid`'s executable (`/proc/PID/exe`), without the
/// ` (deleted)` the kernel adds once the file was replaced (a service upgraded in place
/// keeps its name); `None` for kernel threads and processes gone or unreadable.
#[must_use]
pub fn executable_name(pid: u32) -> Option<String> {
    let link = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    executable_name_of(&link.to_string_lossy())
}

/// The file name in an `exe` link's target.
#[must_use]
pub fn executable_name_of(link: &str) -> Option<String> {
    let path = link.strip_suffix(" (deleted)").unwrap_or(link);
    let name = path.rsplit('/').next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// Process `pid`'s name (`/proc/PID/comm`), `None` once it is gone.
#[must_use]
pub fn process_name(pid: u32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_owned())
}

/// Inode of the host's (the initial) PID namespace (`PROC_PID_INIT_INO`).
const INITIAL_PID_NAMESPACE_INO: u64 = 0xEFFF_FFFC;

/// The device and inode of the tracer's own PID namespace (`/proc/self/ns/pid`), `None`
/// when it is the host's (or unreadable: then the host's is assumed, as before).
#[must_use]
pub fn own_pid_namespace() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let ns = fs::metadata("/proc/self/ns/pid").ok()?;
    (ns.ino() != INITIAL_PID_NAMESPACE_INO).then(|| (ns.dev(), ns.ino()))
}

/// The inode of process `pid`'s PID namespace, `None` when unreadable.
#[must_use]
pub fn pid_namespace_of(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat` field 22):
/// with the PID, it names one process even after the PID is reused.
#[must_use]
pub fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of a `stat` line. The name (field 2) may hold spaces and parentheses: the
/// fields after it are counted from its last `)`.
#[must_use]
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    // Field 3 (state) is the first after the name: field 22 is the 20th.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Where cgroup v2 is mounted here: from `/proc/self/mounts`, else [`CGROUP_ROOT`].
#[must_use]
pub fn cgroup2_mount() -> PathBuf {
    fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|mounts| cgroup2_mount_in(&mounts))
        .unwrap_or_else(|| PathBuf::from(CGROUP_ROOT))
}

/// The first cgroup2 mount point in a `mounts` table.
#[must_use]
pub fn cgroup2_mount_in(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, point, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(point))
    })
}

/// A `--cgroup` argument as a directory: a cgroup directory as given (absolute), else
/// relative to the cgroup v2 mount (`system.slice/nginx.service`, or
/// `/kubepods.slice/...` as `/proc/PID/cgroup` writes it).
///
/// # Errors
/// When no such cgroup directory exists.
pub fn cgroup_dir(arg: &str) -> Result<PathBuf, ProcError> {
    let given = Path::new(arg);
    let candidates = [
        given.to_path_buf(),
        cgroup2_mount().join(arg.trim_start_matches('/')),
    ];
    candidates
        .into_iter()
        .find(|dir| dir.is_absolute() && dir.join("cgroup.procs").is_file())
        .ok_or_else(|| ProcError::Io {
            path: given.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "not a cgroup directory (no cgroup.procs there, nor under {})",
                    cgroup2_mount().display()
                ),
            ),
        })
}

/// The processes in cgroup `dir` and the cgroups below it (a pod's processes are in its
/// containers' cgroups). A directory gone meanwhile is skipped.
///
/// # Errors
/// When `dir` itself cannot be read.
pub fn cgroup_pids(dir: &Path) -> Result<Vec<u32>, ProcError> {
    let read = |path: &Path| {
        fs::read_to_string(path.join("cgroup.procs")).map_err(|source| ProcError::Io {
            path: path.join("cgroup.procs"),
            source,
        })
    };
    let mut pids = parse_cgroup_procs(&read(dir)?);
    let mut stack = vec![dir.to_path_buf()];
    let mut walked = 0;
    while let Some(current) = stack.pop() {
        walked += 1;
        if walked > MAX_CGROUP_DIRS {
            break;
        }
        let Ok(entries) = fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let child = entry.path();
                if let Ok(text) = read(&child) {
                    pids.extend(parse_cgroup_procs(&text));
                }
                stack.push(child);
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// The PIDs of a `cgroup.procs` file, one per line.
#[must_use]
pub fn parse_cgroup_procs(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards `--exe` matching of a service whose binary was replaced on disk (the
    /// kernel's ` (deleted)` suffix) and of plain paths.
    #[test]
    fn executable_names_drop_the_deleted_suffix() {
        assert_eq!(
            executable_name_of("/usr/bin/prometheus (deleted)").as_deref(),
            Some("prometheus")
        );
        assert_eq!(executable_name_of("/opt/app/api").as_deref(), Some("api"));
        assert_eq!(executable_name_of("/"), None);
    }

    /// Guards the start time read past a process name with spaces and parentheses.
    #[test]
    fn start_time_is_counted_after_the_name() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 4 0 987654 123456 789";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
    }

    /// Guards `--cgroup` on hybrid hierarchies, where cgroup v2 is not at
    /// `/sys/fs/cgroup` but at `/sys/fs/cgroup/unified`.
    #[test]
    fn the_cgroup2_mount_comes_from_the_mount_table() {
        let mounts = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            cgroup2_mount_in(mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_mount_in("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn cgroup_procs_lists_one_pid_per_line() {
        assert_eq!(parse_cgroup_procs("12\n345\n\n"), vec![12, 345]);
    }
}
