//! Root integration test: the tracer's memory stays bounded however many distinct locks a
//! target contends (issue 16).

use std::{
    fs::{self, File},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::common::{
    Target, build_target, json_lines, locks, require_root, summary, tracer_bin, u64_field,
};

/// Distinct mutexes the target contends, one after another.
const MUTEXES: u64 = 100_000;
/// The goal of issue 16 for that many locks over a 15 s trace.
const PEAK_RSS_LIMIT_KB: u64 = 256 * 1024;
/// How long the trace lasts at least (from the start of the contention).
const TRACE: Duration = Duration::from_secs(15);
/// Size of glibc's `pthread_mutex_t` on x86-64 / aarch64.
const PTHREAD_MUTEX_SIZE: u64 = 40;

/// Whether process `pid` holds a BPF link (its probes are attached), from its fdinfo.
fn has_bpf_link(pid: u32) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_to_string(fd.path()).is_ok_and(|info| info.contains("link_id:")))
}

/// Sends `sig` to `pid`.
fn send(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) with a live child's pid; no memory is passed.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// The `VmHWM` (peak resident set, KiB) in `/proc/PID/status`; `None` once the process
/// has exited (a zombie's status has no memory lines).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Reaps child `pid` within `timeout` (SIGKILL and a failed test after it); returns its
/// exit status and peak resident set in KiB: its `VmHWM`, read every 20 ms until it
/// exits (the last read comes after the report is written, while it detaches). Not
/// `ru_maxrss`: a child spawned by `vfork`, as std does, starts from its parent's
/// high-water mark, and this test process may have grown past 256 MB in earlier tests.
fn reap_with_peak_rss(pid: u32, timeout: Duration) -> (libc::c_int, u64) {
    let raw_pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    let deadline = Instant::now() + timeout;
    let mut peak = 0;
    loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        let mut status = 0;
        // SAFETY: a pointer to a live local; `pid` is our own unreaped child.
        let rc = unsafe {
            libc::wait4(
                raw_pid,
                &raw mut status,
                libc::WNOHANG,
                std::ptr::null_mut(),
            )
        };
        if rc == raw_pid {
            assert!(
                peak > 0,
                "no VmHWM read from the tracer's /proc/{pid}/status"
            );
            return (status, peak);
        }
        assert_eq!(rc, 0, "wait4 on the tracer failed");
        if Instant::now() >= deadline {
            send(pid, libc::SIGKILL);
            panic!("the tracer did not exit within {timeout:?} of SIGINT");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Guards against the tracer's memory growing with the number of distinct contended
/// locks (issue 16: ~38 KB per lock, 2.9 GB for a program contending 100 000 mutexes one
/// after another, because each lock had its own histograms and stack tables). The target
/// makes each of its 100 000 mutexes really slept on and says how many it contended; the
/// trace lasts 15 s at least. The tracer's peak RSS (`VmHWM`) must stay within 256 MB,
/// the report must say how many locks were folded into "other locks", and tracked plus
/// folded locks must account for the target's mutexes.
#[test]
fn peak_memory_is_bounded_with_100k_distinct_contended_locks() {
    require_root();
    let bin = build_target("many_locks", &[]);
    let mut target = Target::spawn(bin.path(), &[&MUTEXES.to_string()]);
    let first_lock = crate::common::parse_hex(target.fact("first_lock"))
        .unwrap_or_else(|| panic!("first_lock={} is not an address", target.fact("first_lock")));
    let out_dir = tempfile::tempdir().expect("temp dir for the tracer's output");
    let stdout_path = out_dir.path().join("stdout.json");
    let stderr_path = out_dir.path().join("stderr.txt");
    let tracer = Command::new(tracer_bin())
        .args([
            "attach",
            "--pid",
            &target.pid().to_string(),
            "--format",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("create stdout file"))
        .stderr(File::create(&stderr_path).expect("create stderr file"))
        .spawn()
        .expect("start the tracer");
    let tracer_pid = tracer.id();
    // Reaped by `reap_with_peak_rss`, not through `tracer`.
    drop(tracer);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has_bpf_link(tracer_pid) {
        assert!(
            Instant::now() < deadline,
            "the tracer attached no probe within 30 s"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // The rest of the attach (all links, threads blocked at attach) takes a moment more.
    thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    send(target.pid(), libc::SIGUSR1);
    let deadline = started + Duration::from_mins(2);
    while !target.later_lines().iter().any(|l| l == "done") {
        assert!(
            Instant::now() < deadline,
            "the target did not contend its {MUTEXES} mutexes within 120 s: {:?}",
            target.later_lines()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let contended: u64 = target
        .later_lines()
        .iter()
        .filter_map(|l| l.strip_prefix("contended="))
        .next_back()
        .and_then(|n| n.parse().ok())
        .expect("the target printed contended=N");
    thread::sleep(TRACE.saturating_sub(started.elapsed()));
    send(tracer_pid, libc::SIGINT);
    let (status, peak_kb) = reap_with_peak_rss(tracer_pid, Duration::from_mins(1));
    let stdout = fs::read(&stdout_path).expect("read the tracer's stdout");
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "tracer exit status {status:#x}; stderr: {stderr}"
    );
    check_report(&stdout, first_lock, contended, peak_kb);
}

/// Checks the tracer's peak RSS and its JSON report (`stdout`) against the `contended`
/// mutexes the target said it contended, an array starting at `first_lock`.
fn check_report(stdout: &[u8], first_lock: u64, contended: u64, peak_kb: u64) {
    eprintln!("tracer peak RSS {peak_kb} KiB; target contended {contended} mutexes");
    assert!(
        contended * 10 >= MUTEXES * 9,
        "the target contended only {contended} of its {MUTEXES} mutexes"
    );
    assert!(
        peak_kb <= PEAK_RSS_LIMIT_KB,
        "tracer peak RSS {peak_kb} KiB > {PEAK_RSS_LIMIT_KB} KiB with {contended} distinct contended locks"
    );

    let values = json_lines(stdout);
    let s = summary(&values);
    let array = first_lock..first_lock + MUTEXES * PTHREAD_MUTEX_SIZE;
    let tracked = locks(s)
        .iter()
        .filter(|l| {
            crate::common::parse_hex(l["addr"].as_str().unwrap_or_default())
                .is_some_and(|a| array.contains(&a))
        })
        .count() as u64;
    let other = &s["other_locks"];
    let folded = u64_field(other, "locks");
    let all_tracked = locks(s).len() as u64;
    // Tracked and folded locks are the target's mutexes, plus a few futex words of its
    // own (thread exit, stdout); each mutex is tracked or folded once, being contended once.
    assert!(
        tracked + folded >= contended * 99 / 100 && folded + all_tracked <= contended + 16,
        "{tracked} of the mutexes tracked + {folded} folded do not account for the {contended} contended; {all_tracked} tracked in all, {} events dropped",
        u64_field(s, "dropped")
    );
    assert!(
        all_tracked <= 10_000,
        "{all_tracked} locks tracked, more than the default --max-locks"
    );
    assert!(
        u64_field(other, "contentions") >= folded,
        "each folded lock was contended: {other}"
    );
    let note = s["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str())
        .find(|n| n.contains("folded into \"other locks\""))
        .unwrap_or_else(|| panic!("no note on folded locks: {}", s["notes"]));
    assert!(
        note.starts_with(&format!("{folded} lock(s) folded")),
        "the note's count differs from other_locks.locks = {folded}: {note}"
    );
}
