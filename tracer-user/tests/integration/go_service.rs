//! Root integration tests: the futex view of Go programs (issue 15, point 7).
//!
//! - A real stripped Go service, Debian's `prometheus` (go1.19), under a light query load:
//!   the runtime's idle sleeps are no locks, runtime locks are named, every frame of the
//!   executable is named from its `.gopclntab`, heap locks are named by the types of the
//!   method receivers that take them or left as addresses, never as offsets into
//!   anonymous memory.
//! - `go_cgo` built stripped: its pthread mutex waits (futex waits inside a Go program)
//!   have their Go frames named with `file:line`.
//! - `go_chan_hot` under `tracer serve`: a runtime lock has the same name in the metrics
//!   as in the summary; under `tracer attach` built with Go ≥ 1.24, whose runtime locks
//!   sleep on their waiters' semaphores, its channel's lock is found from the stacks.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    common::{
        Target, as_strs, assert_success, describe, json_attach_args, json_lines, kind, locks,
        name_of, parse_hex, require_root, run_tracer,
    },
    go_toolchain::build_all,
    tools,
};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A prometheus of its own, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `/usr/bin/prometheus` on a free loopback port with a temporary storage
    /// directory and a config that scrapes itself every second, and waits until it is
    /// ready.
    fn start() -> Self {
        if !Path::new(PROMETHEUS).exists() {
            tools::missing(PROMETHEUS, "Debian package prometheus");
        }
        let dir = tempfile::Builder::new()
            .prefix("tracer-it-prometheus-")
            .tempdir()
            .expect("create temp dir for prometheus");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free loopback port")
            .port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            ),
        )
        .expect("write prometheus config");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let mut prometheus = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(port, "/-/ready").is_none_or(|(status, _)| status != 200) {
            assert!(
                prometheus
                    .child
                    .try_wait()
                    .expect("poll prometheus")
                    .is_none(),
                "prometheus exited before it was ready"
            );
            assert!(Instant::now() < deadline, "prometheus not ready after 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it runs and answers an instant query with `"status":"success"`.
    fn answers(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
            && http_get(self.port, "/api/v1/query?query=up")
                .is_some_and(|(status, body)| status == 200 && body.contains("\"success\""))
    }
}

/// A minimal HTTP/1.0 GET on loopback: the status code and body, `None` on any failure.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

/// Every string of the report but lock locations (a lock in a stripped binary's data is
/// rightly `prometheus+0x…`: no name is left for it): the frames, names and notes.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => map
            .iter()
            .filter(|(key, _)| key.as_str() != "location")
            .for_each(|(_, i)| strings(i, out)),
        _ => {}
    }
}

/// The summary line (Go lock types included, which `common::summary` does not allow).
fn the_summary<'a>(values: &'a [Value], what: &str) -> &'a Value {
    values
        .iter()
        .rfind(|v| kind(v) == "summary")
        .unwrap_or_else(|| panic!("no summary\n{what}"))
}

/// The functions of a `top_waiter_stack` (`"runtime.lock2 (lock_futex.go:107)"`).
fn functions(stack: &Value) -> Vec<&str> {
    stack
        .as_array()
        .map(|frames| {
            frames
                .iter()
                .filter_map(Value::as_str)
                .map(|f| f.split(" (").next().unwrap_or(f))
                .collect()
        })
        .unwrap_or_default()
}

/// The runtime's idle sleeps: a wait in these without the lock implementation is no lock.
const IDLE_SLEEPS: [&str; 6] = [
    "runtime.notesleep",
    "runtime.notetsleep",
    "runtime.notetsleep_internal",
    "runtime.notetsleepg",
    "runtime.stopm",
    "runtime.mPark",
];

/// Guards issue 15 point 7 on a real stripped Go service: runtime idle sleeps (sysmon's
/// note, parked threads) listed as contended locks, runtime locks shown as
/// `prometheus+0x33a6198`, heap locks as `[anon]+0x…`, and every frame of the executable
/// as a raw `prometheus+0x…` offset although its `.gopclntab` names them; that the
/// service survives the trace (its goroutines read from the runtime, stripped go1.19),
/// and that a healthy service under load gets no finding (no deadlock, no stuck lock).
#[test]
fn a_stripped_go_service_is_reported_in_go_terms() {
    require_root();
    let mut prometheus = Prometheus::start();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, answered, port) = (Arc::clone(&stop), Arc::clone(&answered), prometheus.port);
        std::thread::spawn(move || {
            let queries = [
                "/api/v1/query?query=up",
                "/api/v1/query?query=rate(prometheus_http_requests_total%5B1m%5D)",
                "/api/v1/query?query=sum(go_goroutines)",
            ];
            for query in queries.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if http_get(port, query).is_some_and(|(status, _)| status == 200) {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let out = run_tracer(&as_strs(&json_attach_args(prometheus.pid(), 3, &[])));
    stop.store(true, Ordering::Relaxed);
    load.join().expect("load thread");
    assert_success(&out);
    let what = describe(&out);
    assert!(
        answered.load(Ordering::Relaxed) > 0,
        "no query was answered during the trace\n{what}"
    );
    let values = json_lines(&out.stdout);
    let s = the_summary(&values, &what);
    let findings: Vec<&Value> = values.iter().filter(|v| v["kind"] != "summary").collect();
    assert!(
        findings.is_empty(),
        "a healthy service under load got findings: {findings:?}\n{what}"
    );
    let notes = s["notes"].to_string();
    assert!(
        notes.contains("goroutines read from the runtime"),
        "the service's goroutines were not read: {notes}\n{what}"
    );

    let mut all = Vec::new();
    for v in &values {
        strings(v, &mut all);
    }
    let raw: Vec<&&str> = all.iter().filter(|s| s.contains("prometheus+0x")).collect();
    assert!(
        raw.is_empty(),
        "frames of the Go executable left as raw offsets: {raw:?}\n{what}"
    );
    let frames: Vec<&str> = locks(s)
        .iter()
        .flat_map(|l| functions(&l["top_waiter_stack"]))
        .collect();
    assert!(
        !frames.is_empty(),
        "no lock has a waiter stack: nothing to check the frames on\n{what}"
    );

    for lock in locks(s) {
        let label = name_of(lock).or_else(|| lock.get("location").and_then(Value::as_str));
        assert!(
            !label.is_some_and(|l| l.starts_with("[anon") || l.starts_with("[heap")),
            "a lock is named by an offset into anonymous memory: {lock:#}\n{what}"
        );
        if lock["type"] != "futex" {
            continue;
        }
        let stack = functions(&lock["top_waiter_stack"]);
        let in_lock = stack.contains(&"runtime.lock2");
        assert!(
            in_lock || !stack.iter().any(|f| IDLE_SLEEPS.contains(f)),
            "an idle runtime sleep is listed as a contended lock: {lock:#}\n{what}"
        );
        if in_lock {
            let name = name_of(lock).unwrap_or_default();
            assert!(
                name.contains("lock ("),
                "a runtime lock is not named by what took it: {lock:#}\n{what}"
            );
        }
    }
    // Go functions everywhere in the executable's frames of the runtime's waits.
    assert!(
        frames.iter().any(|f| f.starts_with("runtime.")),
        "no Go runtime frame named in the waiter stacks: {frames:?}\n{what}"
    );
    assert!(
        prometheus.answers(),
        "prometheus does not answer after the trace\n{what}"
    );
}

/// Guards the futex view of a stripped Go program: its native lock waits (a pthread
/// mutex taken in C under cgo) had the frames of the Go executable as raw `go_cgo+0x…`
/// offsets; the pclntab names them, with `file:line`.
#[test]
fn futex_waits_of_a_stripped_go_program_have_go_frames_with_lines() {
    require_root();
    tools::require_gcc();
    let dir = tempfile::Builder::new()
        .prefix("tracer-it-go_cgo-")
        .tempdir()
        .expect("create temp dir for Go target");
    let builds = build_all("go_cgo", dir.path(), true);
    for build in builds.iter().filter(|b| b.stripped) {
        let target = Target::spawn(&build.path, &["4", "1500"]);
        let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 4, &[])));
        assert_success(&out);
        let what = format!("[{}]\n{}", build.label, describe(&out));
        let values = json_lines(&out.stdout);
        let s = the_summary(&values, &what);
        let c_lock = target.lock("c");
        let lock = locks(s)
            .iter()
            .find(|l| parse_hex(l["addr"].as_str().unwrap_or("")) == Some(c_lock))
            .unwrap_or_else(|| panic!("c_lock ({c_lock:#x}) missing\n{what}"));
        let stack: Vec<&str> = lock["top_waiter_stack"]
            .as_array()
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let go_frames: Vec<&&str> = stack
            .iter()
            .filter(|f| f.starts_with("runtime.") || f.starts_with("main."))
            .collect();
        assert!(
            !go_frames.is_empty(),
            "no Go frame in c_lock's waiter stack {stack:?}\n{what}"
        );
        for frame in go_frames {
            // `main.go:42`, `asm_amd64.s:844`, `<autogenerated>:1` (wrappers).
            let line = frame
                .strip_suffix(')')
                .and_then(|f| f.rsplit_once(':'))
                .and_then(|(_, line)| line.parse::<u32>().ok());
            assert!(
                line.is_some_and(|l| l > 0),
                "Go frame without file:line: {frame}\n{what}"
            );
        }
    }
}

/// Guards the serve's metrics naming a Go program's runtime lock otherwise than its
/// summary and profile: the `lock` label was the lock's address (`0xc000…`, a heap
/// channel's, or `prometheus+0x33a6198` for the scheduler's), while the summary called it
/// `channel lock (runtime.chanrecv)`, so a series churned with every new channel and told
/// nothing. `go_chan_hot` (stripped) contends one channel's runtime lock only: each
/// futex series of its metrics must be a named runtime lock, one of them the channel's,
/// and the summary must give that same name to a lock inside the `hchan` the target
/// printed. Checked to fail with the live snapshot's naming taken out. Go 1.19 only: from
/// 1.24 a runtime lock's waiters sleep on their own thread's semaphore, not on the lock
/// (README, "Go programs").
#[test]
fn serve_metrics_name_a_go_runtime_lock_as_the_summary_does() {
    require_root();
    let (_dir, builds) = crate::go_attach::go_builds("go_chan_hot", false);
    for build in builds
        .iter()
        .filter(|b| b.stripped && b.label.starts_with("go1.19"))
    {
        let target = Target::spawn(&build.path, &["60"]);
        let pid = target.pid().to_string();
        let chan = parse_hex(target.fact("chan")).expect("chan=0x…");
        let (tracer, port) = crate::serve::serve_attached(&pid, &[]);
        let futex_series = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("tracer_lock_contentions_total{"))
                .filter(|l| l.contains(&format!("pid=\"{pid}\"")) && l.contains("type=\"futex\""))
                .filter_map(|l| {
                    let rest = &l[l.find("lock=\"")? + 6..];
                    Some(rest[..rest.find('"')?].to_owned())
                })
                .collect()
        };
        let metrics = crate::serve::wait_for_metrics(port, Duration::from_secs(20), |t| {
            futex_series(t)
                .iter()
                .any(|l| l.starts_with("channel lock (runtime.chan"))
        });
        let labels = futex_series(&metrics);
        tracer.signal("TERM");
        let out = tracer.wait(Duration::from_secs(15));
        let what = format!(
            "[{}] metrics labels {labels:?}\n{}",
            build.label,
            describe(&out)
        );
        assert!(out.status.success(), "{what}");
        for label in &labels {
            assert!(
                label.contains(" lock (runtime."),
                "a futex series of a Go program that is no named runtime lock: {label}\n{what}"
            );
        }
        let values = json_lines(&out.stdout);
        let s = the_summary(&values, &what);
        let in_chan = lock_inside_channel(s, chan, &what);
        let name = name_of(in_chan).unwrap_or_default();
        assert!(
            name.starts_with("channel lock (runtime.chan") && labels.iter().any(|l| l == name),
            "the channel's lock is called {name:?} in the summary, {labels:?} in the metrics\n{what}"
        );
    }
}

/// Guards a Go ≥ 1.24 program's runtime lock contention going unseen: from 1.24 a runtime
/// lock's waiter sleeps on its own thread's semaphore (`runtime.semasleep`, a futex wait
/// on `m.waitsema`), so the futex word names no lock and the wait was counted as no lock
/// wait at all. `go_chan_hot` contends one channel's runtime lock only: `tracer attach`
/// must report a lock inside the `hchan` the target printed, named as a channel lock,
/// with contentions. Checked to fail with the lock not looked for in the stacks.
#[test]
fn go_runtime_lock_waits_on_a_threads_semaphore_find_the_lock() {
    require_root();
    let (_dir, builds) = crate::go_attach::go_builds("go_chan_hot", false);
    let minor = |label: &str| -> u32 {
        label
            .strip_prefix("go1.")
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    };
    let mut checked = 0;
    for build in builds.iter().filter(|b| minor(&b.label) >= 24) {
        let target = Target::spawn(&build.path, &["60"]);
        let chan = parse_hex(target.fact("chan")).expect("chan=0x…");
        let (values, what) = crate::go_attach::trace(&target, 3, &[], build);
        let s = the_summary(&values, &what);
        let in_chan = lock_inside_channel(s, chan, &what);
        let name = name_of(in_chan).unwrap_or_default();
        assert!(
            name.starts_with("channel lock (runtime."),
            "the channel's lock is called {name:?}: {in_chan:#}\n{what}"
        );
        assert!(
            in_chan["contentions"].as_u64().unwrap_or(0) > 0,
            "the channel's lock has no contention: {in_chan:#}\n{what}"
        );
        checked += 1;
    }
    let labels: Vec<&str> = builds.iter().map(|b| b.label.as_str()).collect();
    assert!(
        checked > 0,
        "no build of go_chan_hot with Go ≥ 1.24 among {labels:?}"
    );
}

/// The lock of summary `s` inside the channel at `chan` (its `hchan`, whose `lock` field
/// the runtime takes); panics with the run's description `what` if there is none.
fn lock_inside_channel<'a>(s: &'a Value, chan: u64, what: &str) -> &'a Value {
    locks(s)
        .iter()
        .find(|l| {
            parse_hex(l["addr"].as_str().unwrap_or(""))
                .is_some_and(|a| (chan..chan + 256).contains(&a))
        })
        .unwrap_or_else(|| panic!("no lock inside the channel at {chan:#x}\n{what}"))
}
