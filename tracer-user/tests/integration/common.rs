//! Shared helpers of the root integration tests (every module behind `root-tests`).
//!
//! The tests build small C programs from `tests/targets/`, start them, read the facts they
//! print (`key=value` lines up to `ready`: pid, thread ids, lock addresses), attach the real
//! `tracer` binary to them and check its report against those facts.
//!
//! Everything here panics with a descriptive message instead of returning errors: a helper
//! that fails is a failed test. Nothing may hang: every wait has a deadline, and every child
//! process is killed and reaped on drop.
use std::{
    collections::{BTreeSet, HashMap},
    fs,
    io::{BufRead, BufReader, Read},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde_json::Value;
use tempfile::TempDir;

use crate::tools;

/// How long a target may take to print `ready`.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack on top of `--duration` before a tracer run is declared hung and killed.
pub(crate) const TRACER_SLACK: Duration = Duration::from_secs(20);
/// `--duration` assumed for runs that do not pass one (used only for the hard timeout).
const DEFAULT_DURATION_SECS: u64 = 30;

/// Kernel names of our eBPF programs (`bpftool prog show` truncates names to 15 chars;
/// all of these are shorter).
pub(crate) const OUR_PROG_NAMES: [&str; 10] = [
    "switch_dispatch",
    "futex_sleep",
    "drawn_sleep",
    "sleep_ends",
    "process_exec",
    "go_lock_site",
    "futex_exit",
    "lock_entry",
    "lock_return",
    "unlock_entry",
];

/// Size of glibc's `pthread_cond_t` on x86-64 / aarch64.
pub(crate) const PTHREAD_COND_SIZE: u64 = 48;
/// Size of glibc's `pthread_rwlock_t` on x86-64 / aarch64.
pub(crate) const PTHREAD_RWLOCK_SIZE: u64 = 56;

/// Path of the tracer binary cargo built for these tests.
pub(crate) fn tracer_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tracer")
}

/// Effective uid of this process, from `/proc/self/status` (no libc needed).
pub(crate) fn euid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid: line in /proc/self/status");
    // Uid: real effective saved fs
    line.split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .expect("effective uid in /proc/self/status")
}

/// Panics unless we run as root: these tests load eBPF programs and attach uprobes.
pub(crate) fn require_root() {
    assert!(
        euid() == 0,
        "the tracer's integration tests must run as root (euid is {}): they attach eBPF \
         probes to live processes; run them with `cargo xtask test` or as root with \
         `cargo test -p tracer-user --features root-tests -- --test-threads=1`",
        euid()
    );
}

// ---------------------------------------------------------------------------------------
// Building targets
// ---------------------------------------------------------------------------------------

/// A C target compiled into its own temporary directory; the directory (and so the binary
/// and any stripped copy of it) lives as long as this value.
pub(crate) struct TargetBinary {
    /// Held for its drop, which deletes the directory and the binaries in it.
    _dir: TempDir,
    path: PathBuf,
}

impl TargetBinary {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A stripped copy of the binary (no symbol table, no DWARF) in the same directory.
    pub(crate) fn strip_copy(&self) -> PathBuf {
        strip_copy(&self.path)
    }
}

fn targets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("targets")
}

/// Compiles `tests/targets/NAME.c` with `gcc -g -O1 -fno-omit-frame-pointer -pthread` (plus
/// `extra_gcc_flags`) into a fresh temporary directory. Without gcc the test fails, saying
/// so (see [`tools::output`]).
pub(crate) fn build_target(name: &str, extra_gcc_flags: &[&str]) -> TargetBinary {
    build_target_with(("gcc", "gcc"), name, extra_gcc_flags)
}

/// Like [`build_target`], with another compiler driver: `(program, Debian package that
/// has it)`, e.g. `("musl-gcc", "musl-tools")` for a musl program.
pub(crate) fn build_target_with(
    (compiler, package): (&str, &str),
    name: &str,
    extra_gcc_flags: &[&str],
) -> TargetBinary {
    let src = targets_dir().join(format!("{name}.c"));
    assert!(src.is_file(), "no target source {}", src.display());
    let dir = tempfile::Builder::new()
        .prefix(&format!("tracer-it-{name}-"))
        .tempdir()
        .expect("create temp dir for target");
    // Let any user read the binary (the unprivileged-tracer test runs as nobody).
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    let path = dir.path().join(name);
    let out = tools::output(
        Command::new(compiler)
            .args(["-g", "-O1", "-fno-omit-frame-pointer", "-pthread", "-Wall"])
            .args(extra_gcc_flags)
            .arg("-o")
            .arg(&path)
            .arg(&src),
        package,
    );
    assert!(
        out.status.success(),
        "{compiler} failed for {}: {}\n{}",
        src.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    TargetBinary { _dir: dir, path }
}

/// Writes `PATH.stripped`, a copy of `path` without symbol table or debug info, next to it.
pub(crate) fn strip_copy(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .expect("binary has a file name")
        .to_os_string();
    name.push(".stripped");
    let stripped = path.with_file_name(name);
    let out = tools::output(
        Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(&stripped)
            .arg(path),
        "binutils",
    );
    assert!(
        out.status.success(),
        "strip failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Make sure it really has no symbols left (nm says "no symbols").
    let nm = tools::output(Command::new("nm").arg(&stripped), "binutils");
    assert!(
        nm.stdout.is_empty(),
        "stripped copy still has symbols: {}",
        String::from_utf8_lossy(&nm.stdout)
    );
    stripped
}

// ---------------------------------------------------------------------------------------
// Output capture
// ---------------------------------------------------------------------------------------

/// Reads `r` line by line (lines keep their `\n`) and sends each line; ends at EOF.
fn spawn_line_reader<R: Read + Send + 'static>(r: R) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

fn spawn_reader_to_end<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn trim_line(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end_matches(['\n', '\r'])
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------

/// A running target program and the facts it printed before `ready`.
/// Killed (SIGKILL) and reaped on drop.
pub(crate) struct Target {
    child: Child,
    exe: PathBuf,
    facts: HashMap<String, String>,
    /// Lines printed after `ready` (e.g. `done`), received so far.
    later_lines: Vec<String>,
    lines: Receiver<Vec<u8>>,
    status: Option<ExitStatus>,
    /// For a target in its own PID namespace (see [`Target::spawn_in_pid_namespace`]):
    /// its host PID, and the host TID of each TID it printed (it printed the namespace's).
    host: Option<(u32, HashMap<u64, u64>)>,
}

impl Target {
    /// Starts `exe args…` and reads its `key=value` facts until the line `ready`
    /// (panics after [`READY_TIMEOUT`] or if it exits first).
    pub(crate) fn spawn(exe: &Path, args: &[&str]) -> Target {
        let mut command = Command::new(exe);
        command.args(args);
        let target = Self::spawn_command(exe, command);
        let pid = target.pid();
        assert_eq!(
            pid,
            target.child.id(),
            "target's pid= fact differs from the spawned child's pid"
        );
        target
    }

    /// Starts `exe args…` in a new PID namespace (as in a container), under `unshare
    /// --pid --fork --mount-proc --kill-child`, and reads its facts as [`Target::spawn`]
    /// does. The facts it prints are the namespace's ids; [`Target::pid`] and
    /// [`Target::tid`] answer the host's (from `NSpid` in `/proc/PID/task/*/status`),
    /// [`Target::ns_pid`] the namespace's.
    pub(crate) fn spawn_in_pid_namespace(exe: &Path, args: &[&str]) -> Target {
        let mut command = Command::new("unshare");
        command
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(exe)
            .args(args);
        let mut target = Self::spawn_command(exe, command);
        let unshare = target.child.id();
        let children = fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .expect("children of unshare");
        let host_pid: u32 = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unshare {unshare} has no child: {children:?}"));
        let mut ns_to_host = HashMap::new();
        let task = format!("/proc/{host_pid}/task");
        for entry in fs::read_dir(&task).expect("the target's tasks").flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            let status = fs::read_to_string(entry.path().join("status")).unwrap_or_default();
            let ns_tid = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|f| f.split_whitespace().last()?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no NSpid for {task}/{tid}: {status}"));
            ns_to_host.insert(ns_tid, tid);
        }
        let ns_pid = target.ns_pid();
        assert_eq!(
            ns_to_host.get(&u64::from(ns_pid)),
            Some(&u64::from(host_pid)),
            "unshare's child {host_pid} is not the target that printed pid={ns_pid}"
        );
        assert_ne!(
            u64::from(ns_pid),
            u64::from(host_pid),
            "not in a new PID namespace"
        );
        target.host = Some((host_pid, ns_to_host));
        target
    }

    /// Runs `command` (which runs `exe`) and reads the facts it prints until `ready`.
    fn spawn_command(exe: &Path, mut command: Command) -> Target {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start target {}: {e}", exe.display()));
        let lines = spawn_line_reader(child.stdout.take().expect("piped stdout"));
        let mut target = Target {
            child,
            exe: exe.to_path_buf(),
            facts: HashMap::new(),
            later_lines: Vec::new(),
            lines,
            status: None,
            host: None,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match target.lines.recv_timeout(left) {
                Ok(raw) => {
                    let line = trim_line(&raw);
                    if line == "ready" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once('=') {
                        target
                            .facts
                            .insert(k.trim().to_string(), v.trim().to_string());
                    }
                    seen.push(line);
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "target {} printed no `ready` within {READY_TIMEOUT:?}; it printed {seen:?}",
                    exe.display()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = target.child.wait().ok();
                    panic!(
                        "target {} closed stdout before `ready` (exit status {status:?}); it \
                         printed {seen:?}",
                        exe.display()
                    );
                }
            }
        }
        target
    }

    pub(crate) fn exe(&self) -> &Path {
        &self.exe
    }

    pub(crate) fn facts(&self) -> &HashMap<String, String> {
        &self.facts
    }

    /// The raw value of fact `key`; panics if the target did not print it.
    pub(crate) fn fact(&self, key: &str) -> &str {
        self.facts.get(key).unwrap_or_else(|| {
            panic!(
                "target {} printed no fact `{key}` (facts: {:?})",
                self.exe.display(),
                self.facts
            )
        })
    }

    fn fact_u64(&self, key: &str) -> u64 {
        let v = self.fact(key);
        v.parse()
            .unwrap_or_else(|e| panic!("fact {key}={v} is not a number: {e}"))
    }

    /// Its host PID (for a target in its own PID namespace, not the `pid=` it printed).
    pub(crate) fn pid(&self) -> u32 {
        match &self.host {
            Some((host_pid, _)) => *host_pid,
            None => self.ns_pid(),
        }
    }

    /// `pid`: the PID it printed, as its own PID namespace sees it.
    pub(crate) fn ns_pid(&self) -> u32 {
        let v = self.fact("pid");
        v.parse()
            .unwrap_or_else(|e| panic!("fact pid={v} is not a pid: {e}"))
    }

    /// `tid.NAME`: the kernel's (host) tid of thread NAME.
    pub(crate) fn tid(&self, thread: &str) -> u64 {
        let printed = self.fact_u64(&format!("tid.{thread}"));
        match &self.host {
            Some((_, ns_to_host)) => *ns_to_host
                .get(&printed)
                .unwrap_or_else(|| panic!("no host tid for {thread}'s tid {printed}")),
            None => printed,
        }
    }

    /// `lock.NAME`: the address of lock NAME.
    pub(crate) fn lock(&self, name: &str) -> u64 {
        let key = format!("lock.{name}");
        parse_hex(self.fact(&key)).unwrap_or_else(|| panic!("fact {key} is not an address"))
    }

    /// `cond.NAME`: the address of condition variable NAME.
    pub(crate) fn cond(&self, name: &str) -> u64 {
        let key = format!("cond.{name}");
        parse_hex(self.fact(&key)).unwrap_or_else(|| panic!("fact {key} is not an address"))
    }

    /// Lines printed after `ready` so far (drains what has arrived; does not wait).
    pub(crate) fn later_lines(&mut self) -> &[String] {
        while let Ok(raw) = self.lines.try_recv() {
            self.later_lines.push(trim_line(&raw));
        }
        &self.later_lines
    }

    /// Whether the process is still running (a reaped or zombie target is not).
    pub(crate) fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some(st);
                false
            }
            Ok(None) => true,
            Err(e) => panic!("try_wait on target: {e}"),
        }
    }

    /// Waits up to `timeout` for the target to exit and reaps it (so the tracer sees it
    /// gone, not as a zombie). Returns None on timeout.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return self.status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every thread in `tids` sits in the futex syscall (202 on x86-64, 98 on
    /// aarch64), per `/proc/PID/task/TID/syscall`, in the same call (same arguments,
    /// stack and instruction pointers) on two reads 50 ms apart. Used to be sure a
    /// deadlock already exists before the tracer attaches: a thread woken from the
    /// target's start barrier (a futex wait too) reads as in futex for a moment before
    /// it takes its locks, and an attach then could miss the deadlock forming (seen once
    /// with `pi_abba`, whose second locker even leaves `FUTEX_LOCK_PI` for its final
    /// wait).
    pub(crate) fn wait_in_futex(&self, tids: &[u64], timeout: Duration) {
        let futex_nr = if cfg!(target_arch = "aarch64") {
            "98"
        } else {
            "202"
        };
        let deadline = Instant::now() + timeout;
        let mut before: Option<Vec<(u64, String)>> = None;
        loop {
            let states: Vec<(u64, String)> = tids
                .iter()
                .map(|tid| {
                    let p = format!("/proc/{}/task/{tid}/syscall", self.pid());
                    (*tid, fs::read_to_string(&p).unwrap_or_default())
                })
                .collect();
            let in_futex = states
                .iter()
                .all(|(_, s)| s.split_whitespace().next() == Some(futex_nr));
            if in_futex && before.as_ref() == Some(&states) {
                return;
            }
            before = in_futex.then_some(states.clone());
            assert!(
                Instant::now() < deadline,
                "threads of {} not all blocked in one futex call after {timeout:?}: {states:?}",
                self.exe.display()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The tracer
// ---------------------------------------------------------------------------------------

/// `--duration SECS` from tracer args, if any.
fn duration_arg(args: &[&str]) -> Option<u64> {
    let i = args.iter().position(|a| *a == "--duration")?;
    args.get(i + 1)?.parse().ok()
}

/// A running `tracer` process whose stdout is read line by line as it comes.
/// Killed (SIGKILL) and reaped on drop.
pub(crate) struct Tracer {
    child: Option<Child>,
    args: Vec<String>,
    stdout: Receiver<Vec<u8>>,
    /// stdout lines received so far (with their newlines).
    stdout_lines: Vec<Vec<u8>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    started: Instant,
}

impl Tracer {
    /// Starts `tracer ARGS…` as the current user.
    pub(crate) fn spawn(args: &[&str]) -> Tracer {
        Self::spawn_with(args, |_| {})
    }

    /// Starts `tracer ARGS…` after letting `setup` adjust the command (e.g. uid/gid).
    pub(crate) fn spawn_with(args: &[&str], setup: impl FnOnce(&mut Command)) -> Tracer {
        Self::spawn_exe(Path::new(tracer_bin()), args, setup)
    }

    pub(crate) fn spawn_exe(exe: &Path, args: &[&str], setup: impl FnOnce(&mut Command)) -> Tracer {
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        setup(&mut cmd);
        eprintln!("running {} {}", exe.display(), args.join(" "));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start tracer {}: {e}", exe.display()));
        let stdout = spawn_line_reader(child.stdout.take().expect("piped stdout"));
        let stderr = Some(spawn_reader_to_end(
            child.stderr.take().expect("piped stderr"),
        ));
        Tracer {
            child: Some(child),
            args: args.iter().map(ToString::to_string).collect(),
            stdout,
            stdout_lines: Vec::new(),
            stderr,
            started: Instant::now(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("tracer not yet waited").id()
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits up to `timeout` for a stdout line satisfying `pred`; returns it (trimmed).
    /// Lines before it are kept for [`Tracer::wait`].
    pub(crate) fn wait_for_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        // Lines already received count too.
        if let Some(l) = self
            .stdout_lines
            .iter()
            .map(|l| trim_line(l))
            .find(|l| pred(l))
        {
            return Some(l);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(raw) => {
                    let line = trim_line(&raw);
                    self.stdout_lines.push(raw);
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Sends signal `sig` (e.g. "INT", "TERM", "KILL") with kill(1).
    pub(crate) fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -s {sig} {} failed", self.pid());
    }

    /// SIGKILLs the tracer and reaps it.
    pub(crate) fn kill9(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the tracer to exit; then returns everything it printed.
    /// On timeout it is killed and the test fails (the tracer must never hang).
    pub(crate) fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().expect("tracer waited twice");
        let status = loop {
            match child.try_wait().expect("try_wait on tracer") {
                Some(st) => break Some(st),
                None if Instant::now() >= deadline => break None,
                None => thread::sleep(Duration::from_millis(20)),
            }
        };
        let timed_out = status.is_none();
        let status = status.unwrap_or_else(|| {
            let _ = child.kill();
            child.wait().expect("reap killed tracer")
        });
        // The pipes close when the tracer exits; collect what is left.
        while let Ok(raw) = self.stdout.recv_timeout(Duration::from_secs(5)) {
            self.stdout_lines.push(raw);
        }
        let stdout: Vec<u8> = self.stdout_lines.concat();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let out = Output {
            status,
            stdout,
            stderr,
        };
        assert!(
            !timed_out,
            "tracer {:?} did not exit within {timeout:?}; killed it.\n{}",
            self.args,
            describe(&out)
        );
        out
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `tracer ARGS…` to completion and returns its output. Never hangs: after
/// `--duration` (or 30 s) plus [`TRACER_SLACK`] the tracer is killed and the test fails.
pub(crate) fn run_tracer(args: &[&str]) -> Output {
    let secs = duration_arg(args).unwrap_or(DEFAULT_DURATION_SECS);
    let t = Tracer::spawn(args);
    let out = t.wait(Duration::from_secs(secs) + TRACER_SLACK);
    eprintln!("{}", describe(&out));
    out
}

/// Attach args in JSON format: `attach --pid PID --duration SECS --format json EXTRA…`.
pub(crate) fn json_attach_args(pid: u32, duration_secs: u64, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "attach".into(),
        "--pid".into(),
        pid.to_string(),
        "--duration".into(),
        duration_secs.to_string(),
        "--format".into(),
        "json".into(),
    ];
    v.extend(extra.iter().map(ToString::to_string));
    v
}

/// Borrows a `Vec<String>` as the `&[&str]` the helpers take.
pub(crate) fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Exit status, stdout and stderr of a tracer run, for failure messages.
pub(crate) fn describe(out: &Output) -> String {
    format!(
        "tracer exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts a normal run: exit status 0 when nothing was found, else the code for what the
/// report found (README "Exit status"), read from its JSON lines when it has them; a
/// text report must exit 0 or with one of the finding codes. `tracer serve`'s lines (each
/// tagged with its target's `comm`) keep serve's own status: 0 after SIGTERM.
pub(crate) fn assert_success(out: &Output) {
    let code = out.status.code();
    let json: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect();
    if json.iter().any(|line| line.get("comm").is_some()) {
        assert_eq!(code, Some(0), "tracer serve failed\n{}", describe(out));
    } else if json.is_empty() {
        assert!(
            matches!(
                code,
                Some(0 | EXIT_DEADLOCK | EXIT_STUCK_LOCK | EXIT_INVERSION)
            ),
            "tracer failed\n{}",
            describe(out)
        );
    } else {
        assert_eq!(
            code,
            Some(expected_exit_code(&json)),
            "the exit status does not say what the report found\n{}",
            describe(out)
        );
    }
}

/// Exit status: a deadlock was reported.
pub(crate) const EXIT_DEADLOCK: i32 = 3;
/// Exit status: a stuck lock was reported (and no deadlock).
pub(crate) const EXIT_STUCK_LOCK: i32 = 4;
/// Exit status: a lock-order inversion was reported (and no deadlock or stuck lock).
pub(crate) const EXIT_INVERSION: i32 = 5;

/// The exit status a report's JSON lines call for: the most severe finding's code
/// (timed cycles and harmless inversions are not findings for it), else 0.
pub(crate) fn expected_exit_code(values: &[Value]) -> i32 {
    let has = |k: &str, not: &str| {
        values
            .iter()
            .any(|v| v["kind"] == k && v[not].as_bool() != Some(true))
    };
    if has("deadlock", "will_time_out") {
        EXIT_DEADLOCK
    } else if has("stuck_lock", "-") {
        EXIT_STUCK_LOCK
    } else if has("lock_order_inversion", "harmless") {
        EXIT_INVERSION
    } else {
        0
    }
}

// ---------------------------------------------------------------------------------------
// The JSON report
// ---------------------------------------------------------------------------------------

/// Parses newline-delimited JSON; every non-blank line must be a JSON object.
pub(crate) fn json_lines(stdout: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("stdout line is not JSON ({e}): {l}\nall stdout:\n{text}")
            });
            assert!(v.is_object(), "stdout line is not a JSON object: {l}");
            v
        })
        .collect()
}

pub(crate) fn kind(v: &Value) -> &str {
    v.get("kind")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("JSON object without string \"kind\": {v}"))
}

/// The one summary object; it must be the last line, and must have the contract's shape.
pub(crate) fn summary(values: &[Value]) -> &Value {
    let summaries: Vec<usize> = values
        .iter()
        .enumerate()
        .filter(|(_, v)| kind(v) == "summary")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        summaries.len(),
        1,
        "expected exactly one summary object, got {}: {values:#?}",
        summaries.len()
    );
    assert_eq!(
        summaries[0],
        values.len() - 1,
        "the summary must be the last line of the report: {values:#?}"
    );
    let s = &values[summaries[0]];
    check_summary_shape(s);
    s
}

/// All deadlock objects, in output order, each checked for the contract's shape.
pub(crate) fn deadlocks(values: &[Value]) -> Vec<&Value> {
    let d: Vec<&Value> = values.iter().filter(|v| kind(v) == "deadlock").collect();
    for v in &d {
        check_deadlock_shape(v);
    }
    d
}

/// Parses "0x…" (or "0X…") hex.
pub(crate) fn parse_hex(s: &str) -> Option<u64> {
    let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    u64::from_str_radix(h, 16).ok()
}

/// The numeric value of an address field: a string "0x…".
pub(crate) fn addr_of(v: &Value) -> u64 {
    v.as_str()
        .and_then(parse_hex)
        .unwrap_or_else(|| panic!("address is not a \"0x…\" string: {v}"))
}

pub(crate) fn u64_field(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("field \"{key}\" missing or not a non-negative integer in {v}"))
}

/// `name` of a lock reference: Some(name), or None when null or absent.
pub(crate) fn name_of(lock_ref: &Value) -> Option<&str> {
    match lock_ref.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => panic!("lock name is neither a string nor null: {other}"),
    }
}

pub(crate) fn locks(summary: &Value) -> &Vec<Value> {
    summary
        .get("locks")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("summary without \"locks\" array: {summary}"))
}

/// The summary's lock whose address equals `addr` (compared numerically).
pub(crate) fn lock_by_addr(summary: &Value, addr: u64) -> Option<&Value> {
    locks(summary).iter().find(|l| addr_of(&l["addr"]) == addr)
}

fn check_histogram(h: &Value, what: &str) {
    for k in ["count", "p50", "p90", "p99", "max", "total"] {
        u64_field(h, k);
    }
    let (p50, p90, p99, max) = (
        u64_field(h, "p50"),
        u64_field(h, "p90"),
        u64_field(h, "p99"),
        u64_field(h, "max"),
    );
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= max,
        "{what}: percentiles not ordered (p50 <= p90 <= p99 <= max): {h}"
    );
    if u64_field(h, "count") == 0 {
        assert_eq!(
            u64_field(h, "total"),
            0,
            "{what}: empty histogram with a total: {h}"
        );
    }
}

/// Checks the summary object against the contract: fields, types, lock entries, and that
/// locks are sorted by `wait_ns.total`, largest first.
pub(crate) fn check_summary_shape(s: &Value) {
    for k in [
        "pid",
        "duration_ns",
        "events",
        "dropped",
        "futex_wakes",
        "deadlocks",
    ] {
        u64_field(s, k);
    }
    let mut prev_total = u64::MAX;
    for l in locks(s) {
        addr_of(&l["addr"]);
        name_of(l);
        let ty = l.get("type").and_then(Value::as_str);
        assert!(
            matches!(
                ty,
                Some(
                    "mutex"
                        | "rwlock"
                        | "pi_mutex"
                        | "futex"
                        | "rust_mutex"
                        | "rust_rwlock"
                        | "parking_lot_mutex"
                        | "parking_lot_rwlock"
                )
            ),
            "lock type must be mutex|rwlock|pi_mutex|futex|rust_mutex|rust_rwlock|parking_lot_mutex|parking_lot_rwlock: {l}"
        );
        u64_field(l, "contentions");
        u64_field(l, "max_waiters");
        let wait = l
            .get("wait_ns")
            .unwrap_or_else(|| panic!("lock without wait_ns: {l}"));
        check_histogram(wait, "wait_ns");
        match l.get("hold_ns") {
            None | Some(Value::Null) => {}
            Some(h) => check_histogram(h, "hold_ns"),
        }
        let total = u64_field(wait, "total");
        assert!(
            total <= prev_total,
            "summary.locks not sorted by wait_ns.total (largest first): {s:#}"
        );
        prev_total = total;
    }
}

fn check_lock_ref(r: &Value, what: &str) {
    assert!(r.is_object(), "{what} is not an object: {r}");
    addr_of(&r["addr"]);
    name_of(r);
}

/// Checks a deadlock object against the contract.
pub(crate) fn check_deadlock_shape(d: &Value) {
    let cycle = d
        .get("cycle")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("deadlock without \"cycle\" array: {d}"));
    assert!(!cycle.is_empty(), "empty deadlock cycle: {d}");
    for e in cycle {
        u64_field(e, "tid");
        assert!(
            e.get("thread").is_some_and(Value::is_string),
            "entry without thread name: {e}"
        );
        check_lock_ref(&e["holds"], "holds");
        check_lock_ref(&e["waits_for"], "waits_for");
        let stack = e
            .get("stack")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("entry without \"stack\" array: {e}"));
        assert!(
            stack.iter().all(Value::is_string),
            "stack frames must be strings: {e}"
        );
    }
}

/// How lock names are expected in a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Names {
    /// The binary has a symbol table: every lock is named after its global.
    Symbols,
    /// Stripped binary: `name` is null or absent.
    Absent,
}

/// One expected cycle entry: (thread name, lock it holds, lock it waits for), names as in
/// the target's facts (`tid.THREAD`, `lock.LOCK`).
pub(crate) type Edge<'a> = (&'a str, &'a str, &'a str);

/// Asserts that `deadlock` is exactly the cycle `expected`: same set of tids, each entry's
/// thread name, held and awaited lock addresses (and names per `names`), a non-empty stack,
/// and that what each entry waits for is held by an entry of the cycle.
pub(crate) fn assert_cycle(target: &Target, deadlock: &Value, expected: &[Edge<'_>], names: Names) {
    let cycle = deadlock["cycle"].as_array().expect("cycle array");
    assert_eq!(
        cycle.len(),
        expected.len(),
        "cycle should have {} entries: {deadlock:#}",
        expected.len()
    );
    let got_tids: BTreeSet<u64> = cycle.iter().map(|e| u64_field(e, "tid")).collect();
    let want_tids: BTreeSet<u64> = expected.iter().map(|(t, _, _)| target.tid(t)).collect();
    assert_eq!(
        got_tids, want_tids,
        "cycle tids differ from the target's: {deadlock:#}"
    );
    for (thread, held, wanted) in expected {
        let tid = target.tid(thread);
        let e = cycle
            .iter()
            .find(|e| u64_field(e, "tid") == tid)
            .expect("entry for tid");
        assert_eq!(
            e["thread"].as_str(),
            Some(*thread),
            "thread name of tid {tid}: {e:#}"
        );
        assert_eq!(
            addr_of(&e["holds"]["addr"]),
            target.lock(held),
            "{thread} should hold {held} ({:#x}): {e:#}",
            target.lock(held)
        );
        assert_eq!(
            addr_of(&e["waits_for"]["addr"]),
            target.lock(wanted),
            "{thread} should wait for {wanted} ({:#x}): {e:#}",
            target.lock(wanted)
        );
        match names {
            Names::Symbols => {
                assert_eq!(
                    name_of(&e["holds"]),
                    Some(*held),
                    "name of held lock: {e:#}"
                );
                assert_eq!(
                    name_of(&e["waits_for"]),
                    Some(*wanted),
                    "name of awaited lock: {e:#}"
                );
            }
            Names::Absent => {
                assert_eq!(
                    name_of(&e["holds"]),
                    None,
                    "stripped binary, yet a name: {e:#}"
                );
                assert_eq!(
                    name_of(&e["waits_for"]),
                    None,
                    "stripped binary, yet a name: {e:#}"
                );
            }
        }
        let stack = e["stack"].as_array().expect("stack array");
        assert!(!stack.is_empty(), "empty stack for {thread}: {e:#}");
    }
    let held: BTreeSet<u64> = cycle.iter().map(|e| addr_of(&e["holds"]["addr"])).collect();
    for e in cycle {
        assert!(
            held.contains(&addr_of(&e["waits_for"]["addr"])),
            "entry waits for a lock no cycle member holds: {deadlock:#}"
        );
    }
}

/// The stack frames of the cycle entry of thread `tid`.
pub(crate) fn stack_of(deadlock: &Value, tid: u64) -> Vec<String> {
    deadlock["cycle"]
        .as_array()
        .expect("cycle array")
        .iter()
        .find(|e| u64_field(e, "tid") == tid)
        .and_then(|e| e["stack"].as_array())
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(ToString::to_string)
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Kernel state: eBPF programs, links, uprobe events
// ---------------------------------------------------------------------------------------

pub(crate) fn bpftool_json(args: &[&str]) -> Value {
    let out = tools::output(Command::new("bpftool").arg("-j").args(args), "bpftool");
    assert!(
        out.status.success(),
        "bpftool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bpftool {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Loaded eBPF programs as (id, name).
pub(crate) fn bpf_progs() -> Vec<(u64, String)> {
    bpftool_json(&["prog", "show"])
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["id"].as_u64().unwrap_or(0),
                        p["name"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Ids of loaded programs that carry one of our names.
pub(crate) fn our_prog_ids() -> BTreeSet<u64> {
    bpf_progs()
        .into_iter()
        .filter(|(_, name)| OUR_PROG_NAMES.contains(&name.as_str()))
        .map(|(id, _)| id)
        .collect()
}

/// BPF links as JSON objects (`bpftool link show`).
pub(crate) fn bpf_links() -> Vec<Value> {
    bpftool_json(&["link", "show"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The tracefs directory, mounting tracefs at /sys/kernel/tracing if needed.
pub(crate) fn tracefs() -> PathBuf {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(dir).join("uprobe_events").exists() {
            return PathBuf::from(dir);
        }
    }
    let st = Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .status()
        .expect("run mount");
    assert!(
        st.success(),
        "could not mount tracefs at /sys/kernel/tracing"
    );
    let dir = PathBuf::from("/sys/kernel/tracing");
    assert!(
        dir.join("uprobe_events").exists(),
        "tracefs mounted but no uprobe_events"
    );
    dir
}

/// Lines of `uprobe_events`.
pub(crate) fn uprobe_events() -> Vec<String> {
    let path = tracefs().join("uprobe_events");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(ToString::to_string)
        .collect()
}
