//! Root integration tests: the capability set the deployments grant
//! (`deploy/capabilities.txt`) is enough and is needed.
//!
//! The tracer runs as user `nobody` with exactly those capabilities (through `setpriv`
//! from util-linux: ambient capabilities, as the systemd unit gives them), and as uid 0
//! with only those (as the Kubernetes manifests run it), against `abba` running as another
//! user (uid 1, `daemon`), as an app runs beside its tracer. The manifests under
//! `deploy/` are read too, so that they and the file cannot drift apart.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use serde_json::Value;
use tempfile::TempDir;

use crate::{
    common::{
        Edge, Names, Target, Tracer, as_strs, assert_cycle, build_target, build_target_with,
        deadlocks, describe, json_attach_args, json_lines, require_root, summary, tracer_bin,
        u64_field,
    },
    tools,
};

const ABBA: [Edge<'static>; 2] = [
    ("worker_a", "lock_a", "lock_b"),
    ("worker_b", "lock_b", "lock_a"),
];

/// `nobody`, the tracer's uid and gid in the non-root runs.
const TRACER_UID: &str = "65534";
/// `daemon`, the target's uid and gid: neither the tracer's nor root, as an app's.
const TARGET_UID: &str = "1";

/// How long each tracer run traces.
const TRACE_SECS: u64 = 3;

/// The `deploy/` directory of the repository.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The capabilities of `deploy/capabilities.txt` (`CAP_BPF`, ...), in file order: one per
/// line, `#` starts a comment.
fn required_capabilities() -> Vec<String> {
    let path = deploy_dir().join("capabilities.txt");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let caps: Vec<String> = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!caps.is_empty(), "{} lists no capability", path.display());
    for cap in &caps {
        assert!(
            cap.strip_prefix("CAP_")
                .is_some_and(|name| !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')),
            "{}: `{cap}` is not a capability name like CAP_BPF",
            path.display()
        );
    }
    let distinct: BTreeSet<&String> = caps.iter().collect();
    assert_eq!(
        distinct.len(),
        caps.len(),
        "{} repeats a capability",
        path.display()
    );
    caps
}

/// `caps` as `setpriv` takes them: `-all,+bpf,+perfmon`.
fn setpriv_caps(caps: &[String]) -> String {
    let mut list = String::from("-all");
    for cap in caps {
        let name = cap.strip_prefix("CAP_").unwrap_or(cap).to_ascii_lowercase();
        list.push_str(",+");
        list.push_str(&name);
    }
    list
}

/// Fails the test, saying what to install, unless `setpriv` (util-linux) runs.
fn require_setpriv() {
    let out = tools::output(Command::new("setpriv").arg("--version"), "util-linux");
    assert!(
        out.status.success(),
        "setpriv --version failed: {}",
        out.status
    );
}

/// A copy of the tracer that `nobody` can run (the build directory may not be reachable
/// by other users), in a directory that lives as long as the value.
struct TracerCopy {
    _dir: TempDir,
    exe: PathBuf,
}

fn tracer_copy() -> TracerCopy {
    let dir = tempfile::Builder::new()
        .prefix("tracer-it-caps-")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let exe = dir.path().join("tracer");
    fs::copy(tracer_bin(), &exe).expect("copy the tracer");
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod the tracer");
    TracerCopy { _dir: dir, exe }
}

/// Who the tracer runs as.
#[derive(Clone, Copy)]
enum Identity {
    /// `nobody`, with `caps` as ambient capabilities (a systemd unit's
    /// `AmbientCapabilities=`).
    Nobody,
    /// uid 0 whose bounding set is `caps`, with `no_new_privs` (a container's `runAsUser:
    /// 0`, `capabilities: drop: [ALL], add: [...]`, `allowPrivilegeEscalation: false`).
    RootWithOnly,
}

/// Runs `tracer ARGS…` as `who` with exactly the capabilities `caps` (none besides), and
/// returns its output once it exits.
fn run_tracer_with(tracer: &TracerCopy, who: Identity, caps: &[String], args: &[&str]) -> Output {
    let mut setpriv = setpriv_args(who, caps);
    setpriv.push(tracer.exe.to_string_lossy().into_owned());
    setpriv.extend(args.iter().map(ToString::to_string));
    let t = Tracer::spawn_exe(Path::new("setpriv"), &as_strs(&setpriv), |c| {
        c.current_dir("/")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE");
    });
    let out = t.wait(Duration::from_secs(TRACE_SECS) + Duration::from_secs(20));
    eprintln!("{}", describe(&out));
    out
}

/// The arguments of `setpriv` that run a program (the ones that follow) as `who` with
/// exactly the capabilities `caps`, ending with `--`.
fn setpriv_args(who: Identity, caps: &[String]) -> Vec<String> {
    let caps = setpriv_caps(caps);
    let mut setpriv: Vec<String> = match who {
        Identity::Nobody => vec![
            format!("--reuid={TRACER_UID}"),
            format!("--regid={TRACER_UID}"),
            "--clear-groups".into(),
            format!("--inh-caps={caps}"),
            format!("--ambient-caps={caps}"),
        ],
        Identity::RootWithOnly => vec!["--inh-caps=-all".into(), "--no-new-privs".into()],
    };
    // The bounding set too: nothing else can be gained afterwards.
    setpriv.push(format!("--bounding-set={caps}"));
    setpriv.push("--".into());
    setpriv
}

/// Starts `bin ARGS…` as user `daemon` (uid 1), as an app runs beside its tracer.
fn start_as_another_user(bin: &Path, args: &[String]) -> Target {
    let mut setpriv = vec![
        format!("--reuid={TARGET_UID}"),
        format!("--regid={TARGET_UID}"),
        "--clear-groups".to_owned(),
        "--".to_owned(),
        bin.to_string_lossy().into_owned(),
    ];
    setpriv.extend_from_slice(args);
    let target = Target::spawn(Path::new("setpriv"), &as_strs(&setpriv));
    let status = fs::read_to_string(format!("/proc/{}/status", target.pid())).expect("status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some(TARGET_UID)),
        "the target should run as uid {TARGET_UID}: {status}"
    );
    target
}

/// Starts `abba` as user `daemon` (uid 1); with `delay_ms`, its workers take their second
/// locks that long after `ready`, else the deadlock exists before the tracer attaches.
fn start_abba_as_another_user(bin: &Path, delay_ms: Option<u64>) -> Target {
    let args: Vec<String> = delay_ms.map(|d| d.to_string()).into_iter().collect();
    let target = start_as_another_user(bin, &args);
    if delay_ms.is_none() {
        let tids = [target.tid("worker_a"), target.tid("worker_b")];
        target.wait_in_futex(&tids, Duration::from_secs(5));
    }
    target
}

/// Asserts a run that reported exactly the ABBA cycle of `target` (its own tids and lock
/// addresses, names from its symbols) and exited 3 (a deadlock); returns the deadlock.
fn assert_abba_reported(target: &Target, out: &Output) -> Value {
    assert_cycle_reported(target, out, &ABBA)
}

/// Asserts a run that reported exactly one deadlock, the cycle `edges` of `target` (its
/// own tids and lock addresses, names from its symbols), and exited 3 (a deadlock);
/// returns the deadlock.
fn assert_cycle_reported(target: &Target, out: &Output, edges: &[Edge<'_>]) -> Value {
    crate::common::assert_success(out);
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one deadlock\n{}",
        describe(out)
    );
    assert_cycle(target, found[0], edges, Names::Symbols);
    let s = summary(&values);
    assert_eq!(u64_field(s, "deadlocks"), 1, "summary.deadlocks: {s:#}");
    found[0].clone()
}

/// Guards against: the deployed capability set being too small for the tracer to read
/// another user's process (its `/proc` entries, its memory), which reports nothing; with
/// the deadlock already formed at the attach, its threads are found through
/// `/proc/PID/task/TID/syscall` and the lock words in its memory.
#[test]
fn deployed_capabilities_find_a_deadlock_formed_before_the_attach() {
    require_root();
    require_setpriv();
    let caps = required_capabilities();
    let tracer = tracer_copy();
    let bin = build_target("abba", &[]);
    let target = start_abba_as_another_user(bin.path(), None);
    let args = json_attach_args(target.pid(), TRACE_SECS, &[]);
    let out = run_tracer_with(&tracer, Identity::Nobody, &caps, &as_strs(&args));
    assert_abba_reported(&target, &out);
}

/// Guards against: the deployed capability set being too small for the kernel programs
/// (the `tp_btf` futex hooks must load and report the waits, and the deadlock must be
/// confirmed against the live process), here with the deadlock forming ~2 s after the
/// target is ready, so after the attach.
#[test]
fn deployed_capabilities_find_a_deadlock_formed_while_attached() {
    require_root();
    require_setpriv();
    let caps = required_capabilities();
    let tracer = tracer_copy();
    let bin = build_target("abba", &[]);
    let target = start_abba_as_another_user(bin.path(), Some(2000));
    let args = json_attach_args(target.pid(), TRACE_SECS + 2, &[]);
    let out = run_tracer_with(&tracer, Identity::Nobody, &caps, &as_strs(&args));
    let deadlock = assert_abba_reported(&target, &out);
    for entry in deadlock["cycle"].as_array().expect("cycle") {
        assert_eq!(
            entry["blocked_before_attach"],
            Value::Bool(false),
            "the deadlock should have formed after the attach (seen by the kernel \
             programs): {deadlock:#}"
        );
    }
}

/// Guards against: `tracer serve` needing more than the deployed capabilities (its HTTP
/// listener, its discovery of processes, one session per target): run as `nobody` with
/// only them, stopped by SIGTERM after a few seconds, it reports the deadlock that formed
/// while it served, as an NDJSON line with the target's PID, and exits 0.
#[test]
fn deployed_capabilities_serve_a_deadlock_formed_while_attached() {
    require_root();
    require_setpriv();
    let caps = required_capabilities();
    let tracer = tracer_copy();
    let bin = build_target("abba", &[]);
    let target = start_abba_as_another_user(bin.path(), Some(1500));
    let pid = target.pid().to_string();
    let exe = tracer.exe.to_string_lossy().into_owned();
    let secs = (TRACE_SECS + 2).to_string();
    let mut args = setpriv_args(Identity::Nobody, &caps);
    args.extend(
        [
            // SIGTERM after `secs`, with the tracer's own exit status.
            "timeout",
            "--preserve-status",
            "-s",
            "TERM",
            &secs,
            &exe,
            "serve",
            "--pid",
            &pid,
            "--listen",
            "127.0.0.1:0",
        ]
        .map(ToString::to_string),
    );
    let t = Tracer::spawn_exe(Path::new("setpriv"), &as_strs(&args), |c| {
        c.current_dir("/");
    });
    let out = t.wait(Duration::from_secs(TRACE_SECS + 2) + Duration::from_secs(20));
    eprintln!("{}", describe(&out));
    let deadlock = assert_abba_reported(&target, &out);
    assert_eq!(deadlock["pid"].to_string(), pid, "{deadlock}");
}

/// Guards against: the Kubernetes manifests' shape (uid 0 with every capability dropped
/// but the deployed ones, and `no_new_privs`) not being enough: uid 0 without
/// `CAP_DAC_OVERRIDE` does not own the `/proc` files of an app running as another user.
#[test]
fn uid_0_with_only_the_deployed_capabilities_finds_the_deadlock() {
    require_root();
    require_setpriv();
    let caps = required_capabilities();
    let tracer = tracer_copy();
    let bin = build_target("abba", &[]);
    let target = start_abba_as_another_user(bin.path(), None);
    let args = json_attach_args(target.pid(), TRACE_SECS, &[]);
    let out = run_tracer_with(&tracer, Identity::RootWithOnly, &caps, &as_strs(&args));
    assert_abba_reported(&target, &out);
}

/// Guards against: a capability in the deployed set that is not needed (the set must be
/// minimal), and a missing one giving an empty report and exit 0 or a confusing failure
/// instead of one line that names it: without each one in turn, the tracer must fail
/// with exactly one `tracer: error: not privileged…` line naming that capability.
#[test]
fn each_deployed_capability_is_needed() {
    require_root();
    require_setpriv();
    let caps = required_capabilities();
    let tracer = tracer_copy();
    let bin = build_target("abba", &[]);
    let target = start_abba_as_another_user(bin.path(), None);
    let args = json_attach_args(target.pid(), TRACE_SECS, &[]);
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let out = run_tracer_with(&tracer, Identity::Nobody, &fewer, &as_strs(&args));
        assert!(
            !out.status.success(),
            "without {missing} the tracer should fail\n{}",
            describe(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "without {missing}: nothing may be printed on stdout\n{}",
            describe(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "without {missing}: exactly one line on stderr\n{}",
            describe(&out)
        );
        assert!(
            lines[0].starts_with("tracer: error: not privileged")
                && lines[0].contains(missing.as_str()),
            "without {missing}: the line should say the tracer is not privileged and name \
             {missing}: {}",
            lines[0]
        );
    }
}

// ---------------------------------------------------------------------------------------
// The manifests
// ---------------------------------------------------------------------------------------

/// Every file under `deploy/` (recursively), sorted.
fn deploy_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&deploy_dir(), &mut files);
    files.sort();
    files
}

/// The documents of the YAML file `path`, as JSON values, parsed by `PyYAML` (Debian's
/// python3-yaml, which `cargo xtask setup` installs).
fn yaml_documents(path: &Path) -> Vec<Value> {
    const LOAD: &str = "import json, sys\n\
        try:\n    import yaml\nexcept ImportError:\n    sys.exit(3)\n\
        with open(sys.argv[1]) as f:\n    print(json.dumps(list(yaml.safe_load_all(f))))\n";
    let out = tools::output(
        Command::new("/usr/bin/python3")
            .args(["-c", LOAD])
            .arg(path),
        "python3",
    );
    if out.status.code() == Some(3) {
        tools::missing(
            "PyYAML (python3 -c 'import yaml')",
            "Debian package python3-yaml",
        );
    }
    assert!(
        out.status.success(),
        "{} is not valid YAML: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Value = serde_json::from_slice(&out.stdout).expect("PyYAML's JSON");
    docs.as_array().cloned().unwrap_or_default()
}

/// Every `capabilities:` mapping anywhere in `value` (a container's securityContext).
fn capability_blocks<'v>(value: &'v Value, out: &mut Vec<&'v Value>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "capabilities" {
                    out.push(inner);
                }
                capability_blocks(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| capability_blocks(item, out)),
        _ => {}
    }
}

/// The names of a YAML list of capabilities (`[BPF, PERFMON]`), as the kernel spells them
/// (`CAP_BPF`), which is how Kubernetes also accepts them.
fn kubernetes_caps(list: &Value, what: &str) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("{what} is not a list: {list}"))
        .iter()
        .map(|cap| {
            let name = cap
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {cap} is not a string"));
            if name == "ALL" || name.starts_with("CAP_") {
                name.to_owned()
            } else {
                format!("CAP_{name}")
            }
        })
        .collect()
}

/// The capabilities a systemd unit's `KEY=` lines give (all of them, space-separated).
fn unit_caps(unit: &str, key: &str) -> Option<BTreeSet<String>> {
    let mut lines = unit
        .lines()
        .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .peekable();
    lines.peek()?;
    Some(
        lines
            .flat_map(str::split_whitespace)
            .map(str::to_owned)
            .collect(),
    )
}

/// Guards against: the manifests under `deploy/` and `deploy/capabilities.txt` (which the
/// tests above prove sufficient and minimal) drifting apart, a manifest that is not valid
/// YAML, and a container that keeps the runtime's default capabilities or is privileged.
/// Each Kubernetes container with a security context must drop ALL and add exactly the
/// file's set; each systemd unit must give exactly that set as ambient and bounding set.
#[test]
fn every_manifest_grants_exactly_the_deployed_capabilities() {
    let caps: BTreeSet<String> = required_capabilities().into_iter().collect();
    let mut granted_by = Vec::new();
    for path in deploy_files() {
        let name = path
            .strip_prefix(deploy_dir())
            .unwrap_or(&path)
            .display()
            .to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => {
                let docs = yaml_documents(&path);
                assert!(!docs.is_empty(), "{name} holds no YAML document");
                let mut blocks = Vec::new();
                for doc in &docs {
                    capability_blocks(doc, &mut blocks);
                }
                for block in blocks {
                    let drop =
                        kubernetes_caps(&block["drop"], &format!("{name}: capabilities.drop"));
                    let add = kubernetes_caps(&block["add"], &format!("{name}: capabilities.add"));
                    assert_eq!(
                        drop,
                        BTreeSet::from(["ALL".to_owned()]),
                        "{name} must drop ALL"
                    );
                    assert_eq!(add, caps, "{name} must add exactly deploy/capabilities.txt");
                    granted_by.push(name.clone());
                }
                for doc in &docs {
                    let mut contexts = Vec::new();
                    security_contexts(doc, &mut contexts);
                    for context in contexts {
                        assert_eq!(
                            context["privileged"],
                            Value::Bool(false),
                            "{name}: privileged"
                        );
                        assert_eq!(
                            context["allowPrivilegeEscalation"],
                            Value::Bool(false),
                            "{name}: allowPrivilegeEscalation"
                        );
                    }
                }
            }
            Some("service") => {
                let unit = fs::read_to_string(&path).expect("read the unit");
                for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
                    let given =
                        unit_caps(&unit, key).unwrap_or_else(|| panic!("{name} has no {key}="));
                    assert_eq!(
                        given, caps,
                        "{name}: {key}= must be exactly deploy/capabilities.txt"
                    );
                }
                granted_by.push(name);
            }
            _ => {}
        }
    }
    for manifest in [
        "kubernetes/sidecar.yaml",
        "kubernetes/daemonset.yaml",
        "systemd/tracer.service",
    ] {
        assert!(
            granted_by.iter().any(|g| g == manifest),
            "{manifest} should grant the tracer's capabilities (found them in {granted_by:?})"
        );
    }
}

/// Every container `securityContext` in `value` (one with `capabilities`).
fn security_contexts<'v>(value: &'v Value, out: &mut Vec<&'v Value>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "securityContext" && inner.get("capabilities").is_some() {
                    out.push(inner);
                }
                security_contexts(inner, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| security_contexts(item, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// The C library's lock uprobes (`--holds`, musl programs)
// ---------------------------------------------------------------------------------------

const LATE_ABBA: [Edge<'static>; 2] = [
    ("late_a", "first_lock", "second_lock"),
    ("late_b", "second_lock", "first_lock"),
];

/// Runs `late_abba` (built as `bin`) as another user, its locks all taken 2 s after it
/// is ready, so while the tracer is attached; runs `tracer attach --holds` as `nobody`
/// with only the deployed capabilities; and checks the one cycle, with where and how long
/// each thread has held its lock: what only the lock uprobes see (the acquisitions).
fn check_lock_uprobes_with_deployed_capabilities(bin: &Path) {
    let caps = required_capabilities();
    let tracer = tracer_copy();
    let target = start_as_another_user(bin, &["2000".to_owned()]);
    let args = json_attach_args(target.pid(), TRACE_SECS + 2, &["--holds"]);
    let out = run_tracer_with(&tracer, Identity::Nobody, &caps, &as_strs(&args));
    let deadlock = assert_cycle_reported(&target, &out, &LATE_ABBA);
    for entry in deadlock["cycle"].as_array().expect("cycle") {
        let taken: Vec<&str> = entry["acquired_at"]
            .as_array()
            .map(|frames| frames.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            taken
                .iter()
                .any(|f| ["run", "late_worker_a", "late_worker_b"].contains(f)),
            "acquired_at should name the program's code that took the lock: {deadlock:#}"
        );
        let held = entry["held_ns"].as_u64().unwrap_or(0);
        assert!(
            held > 0 && held < 60_000_000_000,
            "held_ns out of range: {deadlock:#}"
        );
    }
}

/// Guards against: `--holds` on a glibc program needing `CAP_SYS_ADMIN` (Linux 6.16+
/// refuses uprobes created through `perf_event_open` without it, kernel commit
/// ba677dbe77af): with only the deployed capabilities, the lock uprobes must attach (as
/// `uprobe_multi` links) and report the deadlock with each lock's holder, where it took
/// the lock and for how long.
#[test]
fn deployed_capabilities_trace_holds_on_a_glibc_program() {
    require_root();
    require_setpriv();
    let bin = build_target("late_abba", &[]);
    check_lock_uprobes_with_deployed_capabilities(bin.path());
}

/// Guards against: musl programs (Alpine images) needing `CAP_SYS_ADMIN`: their lock
/// uprobes are always on (musl's normal mutexes keep no owner in memory, so only the
/// uprobes name holders), so with only the deployed capabilities they must attach and
/// the deadlock be reported with its holders.
#[test]
fn deployed_capabilities_trace_a_musl_program() {
    require_root();
    require_setpriv();
    let bin = build_target_with(("musl-gcc", "musl-tools"), "late_abba", &[]);
    check_lock_uprobes_with_deployed_capabilities(bin.path());
}
