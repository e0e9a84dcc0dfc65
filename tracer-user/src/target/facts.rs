//! Facts about a process and its host that a recording keeps to say what was traced
//! (`crate::recording`): when the process started, which kernel ran it.

use std::fs;

use super::procfs::proc_dir;

/// When process `pid` started, in seconds since the Unix epoch: its start in clock ticks
/// after boot (`/proc/PID/stat`, field 22) plus the boot time (`btime` of `/proc/stat`).
/// `None` when either is unreadable.
#[must_use]
pub fn process_started_at_s(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(proc_dir(pid).join("stat")).ok()?;
    let boot = fs::read_to_string("/proc/stat").ok()?;
    // SAFETY: sysconf only reads a configuration value; it takes and returns no pointers.
    let ticks_per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&t| t > 0)?;
    Some(boot_time_s(&boot)? + start_ticks(&stat)? / ticks_per_second)
}

/// The kernel release (`uname -r`), empty when unreadable.
#[must_use]
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Field 22 (`starttime`) of a `/proc/PID/stat` line; the name (field 2) may hold spaces
/// and parentheses, so fields are counted after its last `)`.
fn start_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 is the first after the name: field 22 is the 20th.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// `btime` of `/proc/stat`.
fn boot_time_s(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the start time against a process name with spaces and parentheses, which a
    /// naive split would shift by a field.
    #[test]
    fn start_ticks_after_a_tricky_name() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(start_ticks(stat), Some(98_765));
        assert_eq!(
            boot_time_s("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(start_ticks("garbage"), None);
        let own = process_started_at_s(std::process::id()).expect("own start");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(own <= now + 1 && own + 3600 > now, "{own} vs {now}");
    }
}
