//! The report's data model and its JSON and text renderings.
//!
//! The JSON field names are a contract that other tools read: output is newline-delimited
//! JSON, one object per line, each with a `"kind"` (`"deadlock"` or `"summary"`). Fields may be
//! added; existing ones must keep their names and shapes.

use std::fmt::{self, Write as _};

use serde::{Serialize, Serializer};

use crate::{lockstats::Quantiles, units};

/// A lock as the report names it. JSON: `{"addr":"0x7f12ab","name":"lock_a"}` (`name` null
/// when unknown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockRef {
    /// Address of the lock word in the target; JSON as a lowercase `"0x…"` string, because
    /// JSON numbers lose precision above 2^53 in many readers.
    #[serde(serialize_with = "hex")]
    pub addr: u64,
    /// Symbol name of the lock (e.g. a static's name), when known.
    pub name: Option<String>,
    /// Where the lock lies when it has no name: `object+offset` for a lock inside a
    /// mapped file's image (a stripped binary's static), `[heap]+offset`, ... Omitted
    /// from JSON when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Serializes an address as a lowercase `0x…` string.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` passes a reference.
fn hex<S: Serializer>(addr: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{addr:#x}"))
}

impl fmt::Display for LockRef {
    /// `lock_a (0x55d0c0ffee10)` when the name is known, else `0x55d0c0ffee10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name.as_ref().or(self.location.as_ref()) {
            Some(name) => write!(f, "{name} ({:#x})", self.addr),
            None => write!(f, "{:#x}", self.addr),
        }
    }
}

impl LockRef {
    /// The short label for tables: the name when known, else the location, else the
    /// address.
    #[must_use]
    pub fn label(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.location.clone())
            .unwrap_or_else(|| format!("{:#x}", self.addr))
    }
}

/// One thread (or goroutine) of a deadlock cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadlockEntry {
    /// Goroutine id (as in the runtime's own goroutine dump), for a goroutine; omitted
    /// from JSON for native threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goid: Option<u64>,
    /// Kernel thread id; for a goroutine, the thread it last ran on.
    pub tid: u32,
    /// Thread name (`comm`), empty when unknown.
    pub thread: String,
    /// The lock this thread holds that the previous thread of the cycle waits for.
    pub holds: LockRef,
    /// The lock this thread waits for, held by the next thread of the cycle.
    pub waits_for: LockRef,
    /// Function names of the waiting thread's stack, innermost first.
    pub stack: Vec<String>,
    /// The same frames with `file:line`, for the text report only.
    #[serde(skip)]
    pub stack_detail: Vec<String>,
    /// How long this thread had been waiting when the deadlock was reported; `None` when
    /// it was already waiting when the tracer attached (the start is then unknown).
    pub waited_ns: Option<u64>,
    /// Whether the thread was already blocked when the tracer attached.
    pub blocked_before_attach: bool,
    /// How long this thread has held `holds` (known with `--holds`).
    pub held_ns: Option<u64>,
    /// Where this thread took `holds`: function names, innermost first, starting at the
    /// lock call's site (known with `--holds`; empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acquired_at: Vec<String>,
    /// The same frames with `file:line`, for the text report only.
    #[serde(skip)]
    pub acquired_at_detail: Vec<String>,
}

/// A wait-for cycle: the threads are deadlocked.
///
/// JSON: `{"kind":"deadlock","cycle":[…],"detected_after_ns":…}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename = "deadlock")]
pub struct Deadlock {
    /// The threads in wait order: each waits for a lock held by the next, the last waits for
    /// one held by the first.
    pub cycle: Vec<DeadlockEntry>,
    /// How long after the wait that closed the cycle began the tracer detected it, if known.
    pub detected_after_ns: Option<u64>,
}

/// What kind of lock the tracer saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum LockKind {
    /// A plain mutex (e.g. `pthread_mutex_t`).
    #[serde(rename = "mutex")]
    Mutex,
    /// A priority-inheritance mutex (`FUTEX_LOCK_PI`).
    #[serde(rename = "pi_mutex")]
    PiMutex,
    /// A reader-writer lock.
    #[serde(rename = "rwlock")]
    RwLock,
    /// A futex word not recognised as any of the above.
    #[serde(rename = "futex")]
    Futex,
    /// A Go `sync.Mutex`.
    #[serde(rename = "go_mutex")]
    GoMutex,
    /// A Go `sync.RWMutex`.
    #[serde(rename = "go_rwmutex")]
    GoRwMutex,
}

impl LockKind {
    /// The name used in both JSON and text.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutex => "mutex",
            Self::PiMutex => "pi_mutex",
            Self::RwLock => "rwlock",
            Self::Futex => "futex",
            Self::GoMutex => "go_mutex",
            Self::GoRwMutex => "go_rwmutex",
        }
    }
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a stuck lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldMode {
    /// Exclusively (a mutex, or an `RWMutex`'s write side).
    Write,
    /// Shared (an `RWMutex`'s readers).
    Read,
}

/// What the goroutine holding a stuck lock is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HolderState {
    /// Runnable, running or in a system call.
    Running,
    /// Parked (on a lock, a channel, a timer, I/O, …).
    Blocked,
    /// The goroutine has exited: the lock can never be released by it.
    Exited,
    /// The holder is not known, or its state could not be read.
    Unknown,
}

/// The goroutine holding a stuck lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StuckHolder {
    /// Goroutine id, `None` when the holder is unknown (it took the lock before the
    /// tracer attached, or at a site that could not be probed).
    pub goid: Option<u64>,
    /// What it is doing now.
    pub state: HolderState,
    /// Where it took the lock: the first frame outside the `sync` package, with
    /// `file:line`; `None` when unknown.
    pub acquired_at: Option<String>,
    /// Its stack when it took the lock, function names innermost first.
    pub stack: Vec<String>,
    /// The same frames with `file:line`, for the text report only.
    #[serde(skip)]
    pub stack_detail: Vec<String>,
}

/// A lock with waiters and no release for longer than the threshold.
///
/// JSON: `{"kind":"stuck_lock","lock":{…},"mode":"write"|"read","held_ns":…,"holder":{…},
/// "waiters":…,"readers_waiting":…,"writers_waiting":…}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename = "stuck_lock")]
pub struct StuckLock {
    /// The lock.
    pub lock: LockRef,
    /// How it is held.
    pub mode: HoldMode,
    /// How long it has been held: since the holder took it when known, else at least
    /// since the last release the tracer saw.
    pub held_ns: u64,
    /// Who holds it.
    pub holder: StuckHolder,
    /// Goroutines waiting for it now.
    pub waiters: usize,
    /// Of those, waiting to read.
    pub readers_waiting: usize,
    /// Of those, waiting to write.
    pub writers_waiting: usize,
}

/// The stuck lock as one JSON line, without a trailing newline.
#[must_use]
pub fn stuck_lock_json(s: &StuckLock) -> String {
    json_line(s)
}

/// The stuck lock for a human: a headline, the holder and where it took the lock.
#[must_use]
pub fn stuck_lock_text(s: &StuckLock) -> String {
    let mode = match s.mode {
        HoldMode::Write => "write",
        HoldMode::Read => "read",
    };
    let mut out = format!(
        "STUCK LOCK: {} {mode}-held for {}, {} waiting ({} readers, {} writers)\n",
        s.lock,
        units::duration_ns(s.held_ns),
        s.waiters,
        s.readers_waiting,
        s.writers_waiting
    );
    let state = match s.holder.state {
        HolderState::Running => "running",
        HolderState::Blocked => "blocked",
        HolderState::Exited => "exited",
        HolderState::Unknown => "unknown",
    };
    match s.holder.goid {
        Some(goid) => {
            let _ = writeln!(out, "  holder: goroutine {goid} ({state})");
        }
        None => out.push_str("  holder: unknown\n"),
    }
    if let Some(at) = &s.holder.acquired_at {
        let _ = writeln!(out, "  took it at {at}");
    }
    let frames = if s.holder.stack_detail.is_empty() {
        &s.holder.stack
    } else {
        &s.holder.stack_detail
    };
    for frame in frames {
        let _ = writeln!(out, "      {frame}");
    }
    out
}

/// Contention summary of one lock.
///
/// JSON: `{"addr":"0x…","name":…,"type":"mutex","contentions":…,"max_waiters":…,
/// "wait_ns":{…},"hold_ns":{…}|null,"top_waiter_stack":[…]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockSummary {
    /// The lock; flattened into `addr` and `name` in JSON.
    #[serde(flatten)]
    pub lock: LockRef,
    /// Lock kind, JSON field `type`.
    #[serde(rename = "type")]
    pub kind: LockKind,
    /// Number of waits that began on this lock.
    pub contentions: u64,
    /// Largest number of simultaneous waiters.
    pub max_waiters: u32,
    /// Wait time distribution.
    pub wait_ns: Quantiles,
    /// Hold time distribution, when hold times were measured.
    pub hold_ns: Option<Quantiles>,
    /// Function names of the stack that waited longest in total, innermost first.
    pub top_waiter_stack: Vec<String>,
}

/// The end-of-run summary.
///
/// JSON: `{"kind":"summary","pid":…,"duration_ns":…,"events":…,"dropped":…,"futex_wakes":…,
/// "futex_waits":…,"brief_lock_waits":…,"deadlocks":…,"locks":[…],"notes":[…]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename = "summary")]
pub struct Summary {
    /// The traced process.
    pub pid: u32,
    /// How long it was traced.
    pub duration_ns: u64,
    /// Events received from the kernel.
    pub events: u64,
    /// Events lost before reaching user space; nonzero means the results are incomplete.
    pub dropped: u64,
    /// Futex wake calls seen.
    pub futex_wakes: u64,
    /// Futex wait calls seen (lock waits and others, such as condition variables).
    pub futex_waits: u64,
    /// Of the lock waits, those that returned without sleeping (the lock was released
    /// while the waiter entered the kernel). The kernel adds these up instead of sending
    /// each; they are included in the locks' `contentions` and `wait_ns`.
    pub brief_lock_waits: u64,
    /// Number of deadlocks reported during the run.
    pub deadlocks: usize,
    /// Contended locks, in report order (see [`Summary::sort_locks`]).
    pub locks: Vec<LockSummary>,
    /// Remarks for the reader (limits hit, probes that could not attach, …).
    pub notes: Vec<String>,
}

impl Summary {
    /// Sorts the locks by total wait time, largest first; ties by address, so the order is
    /// deterministic.
    pub fn sort_locks(&mut self) {
        self.locks.sort_by(|a, b| {
            b.wait_ns
                .total
                .cmp(&a.wait_ns.total)
                .then(a.lock.addr.cmp(&b.lock.addr))
        });
    }
}

/// Serializes to one JSON line (no trailing newline).
///
/// Our types always serialize (string keys, no fallible `Serialize` impls), but rather than
/// panic on the impossible, emit a JSON line that says what went wrong so consumers still get
/// valid NDJSON.
fn json_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|err| {
        serde_json::json!({ "kind": "error", "error": err.to_string() }).to_string()
    })
}

/// The deadlock as one JSON line, without a trailing newline.
#[must_use]
pub fn deadlock_json(d: &Deadlock) -> String {
    json_line(d)
}

/// The summary as one JSON line, without a trailing newline.
#[must_use]
pub fn summary_json(s: &Summary) -> String {
    json_line(s)
}

/// The deadlock for a human: a headline, then per thread what it holds and waits for, with
/// its stack indented below.
#[must_use]
pub fn deadlock_text(d: &Deadlock) -> String {
    let n = d.cycle.len();
    // A cycle over goroutines is told in goroutines: their threads move on.
    let who = if d.cycle.iter().all(|e| e.goid.is_some()) {
        "goroutine"
    } else {
        "thread"
    };
    let mut out = if n == 1 {
        format!("DEADLOCK: 1 {who} waits for a lock it already holds")
    } else {
        format!("DEADLOCK: {n} {who}s in a wait-for cycle")
    };
    if let Some(after) = d.detected_after_ns {
        let _ = write!(out, " (detected after {})", units::duration_ns(after));
    }
    out.push('\n');
    for entry in &d.cycle {
        if let Some(goid) = entry.goid {
            let _ = write!(out, "  goroutine {goid} (last on thread {})", entry.tid);
        } else {
            let _ = write!(out, "  thread {}", entry.tid);
        }
        if entry.goid.is_none() && !entry.thread.is_empty() {
            let _ = write!(out, " ({})", entry.thread);
        }
        let _ = writeln!(
            out,
            " holds {} and waits for {}",
            entry.holds, entry.waits_for
        );
        let frames = if entry.stack_detail.is_empty() {
            &entry.stack
        } else {
            &entry.stack_detail
        };
        if frames.is_empty() {
            out.push_str("      (no stack)\n");
        }
        for frame in frames {
            let _ = writeln!(out, "      {frame}");
        }
        if entry.blocked_before_attach {
            out.push_str("      (already waiting when the tracer attached)\n");
        }
        let taken = if entry.acquired_at_detail.is_empty() {
            &entry.acquired_at
        } else {
            &entry.acquired_at_detail
        };
        if !taken.is_empty() {
            let _ = write!(out, "    took {}", entry.holds);
            if let Some(held) = entry.held_ns {
                let _ = write!(out, " {} ago", units::duration_ns(held));
            }
            out.push_str(" at:\n");
            for frame in taken {
                let _ = writeln!(out, "      {frame}");
            }
        }
    }
    out
}

/// How many locks' top waiter stacks the text summary shows; JSON has them all.
const TEXT_STACKS: usize = 5;

/// Column alignment in the text table.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

const COLUMNS: [(&str, Align); 11] = [
    ("LOCK", Align::Left),
    ("TYPE", Align::Left),
    ("CONTENDED", Align::Right),
    ("MAX WAITERS", Align::Right),
    ("WAIT p50", Align::Right),
    ("WAIT p99", Align::Right),
    ("WAIT max", Align::Right),
    ("WAIT total", Align::Right),
    ("HOLD p50", Align::Right),
    ("HOLD p99", Align::Right),
    ("HOLD max", Align::Right),
];

/// Column separator of the text table.
const GAP: &str = "  ";

fn table_row(lock: &LockSummary) -> [String; COLUMNS.len()] {
    // "-" rather than "0 ns" for distributions with no values: a lock whose waiters never got
    // it (a deadlock) has contentions but no finished wait, and "0 ns" would read as "fast".
    let cells = |q: Option<Quantiles>| match q {
        Some(q) if q.count > 0 => [q.p50, q.p99, q.max, q.total].map(units::duration_ns),
        _ => std::array::from_fn(|_| "-".to_owned()),
    };
    let [wait_p50, wait_p99, wait_max, wait_total] = cells(Some(lock.wait_ns));
    let [hold_p50, hold_p99, hold_max, _] = cells(lock.hold_ns);
    [
        lock.lock.label(),
        lock.kind.as_str().to_owned(),
        units::count(lock.contentions),
        units::count(u64::from(lock.max_waiters)),
        wait_p50,
        wait_p99,
        wait_max,
        wait_total,
        hold_p50,
        hold_p99,
        hold_max,
    ]
}

/// Renders rows under the headers, each column as wide as its widest cell. Widths count
/// characters, not bytes, since "µs" is two bytes but one column.
/// Only the first `shown` columns are printed (the HOLD columns need `--holds`).
fn render_table(out: &mut String, rows: &[[String; COLUMNS.len()]], shown: usize) {
    let mut widths = COLUMNS.map(|(header, _)| header.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let headers = COLUMNS.map(|(header, _)| header.to_owned());
    for row in std::iter::once(&headers).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate().take(shown) {
            if i > 0 {
                line.push_str(GAP);
            }
            let width = widths[i];
            let _ = match COLUMNS[i].1 {
                Align::Left => write!(line, "{cell:<width$}"),
                Align::Right => write!(line, "{cell:>width$}"),
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// The summary for a human: a header, a warning when events were dropped, a table of the
/// locks in their current order (call [`Summary::sort_locks`] first), the top waiter stacks of
/// the first locks, then the notes.
#[must_use]
pub fn summary_text(s: &Summary) -> String {
    let mut out = format!(
        "pid {}: traced for {}, {} events, {} dropped, {} futex waits ({} lock waits that did not sleep), {} futex wakes, {} deadlock{}\n",
        s.pid,
        units::duration_ns(s.duration_ns),
        units::count(s.events),
        units::count(s.dropped),
        units::count(s.futex_waits),
        units::count(s.brief_lock_waits),
        units::count(s.futex_wakes),
        s.deadlocks,
        if s.deadlocks == 1 { "" } else { "s" },
    );
    if s.dropped > 0 {
        let _ = writeln!(
            out,
            "WARNING: {} events were dropped, so these results are INCOMPLETE: \
             contention may be undercounted and deadlocks may have been missed.",
            s.dropped
        );
    }
    out.push('\n');
    if s.locks.is_empty() {
        out.push_str("no contended locks observed\n");
    } else {
        let rows: Vec<_> = s.locks.iter().map(table_row).collect();
        // Hold times exist only with --holds; without them the HOLD columns would be all "-".
        let with_holds = s.locks.iter().any(|l| l.hold_ns.is_some());
        render_table(
            &mut out,
            &rows,
            if with_holds {
                COLUMNS.len()
            } else {
                COLUMNS.len() - 3
            },
        );
    }

    let with_stacks: Vec<&LockSummary> = s
        .locks
        .iter()
        .filter(|l| !l.top_waiter_stack.is_empty())
        .take(TEXT_STACKS)
        .collect();
    if !with_stacks.is_empty() {
        out.push_str("\ntop waiter stacks:\n");
        for lock in with_stacks {
            let _ = writeln!(out, "  {}:", lock.lock);
            for frame in &lock.top_waiter_stack {
                let _ = writeln!(out, "      {frame}");
            }
        }
    }

    if !s.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for note in &s.notes {
            let _ = writeln!(out, "  - {note}");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use serde_json::Value;

    use super::*;

    fn lock(addr: u64, name: Option<&str>) -> LockRef {
        LockRef {
            location: None,
            addr,
            name: name.map(str::to_owned),
        }
    }

    fn quantiles(p50: u64, total: u64) -> Quantiles {
        Quantiles {
            count: 10,
            p50,
            p90: p50 * 2,
            p99: p50 * 3,
            max: p50 * 4,
            total,
        }
    }

    fn deadlock() -> Deadlock {
        Deadlock {
            cycle: vec![
                DeadlockEntry {
                    goid: None,
                    tid: 1234,
                    thread: "worker-a".into(),
                    holds: lock(0x55d0_aa00, Some("lock_a")),
                    waits_for: lock(0x55d0_bb00, Some("lock_b")),
                    stack: vec!["pthread_mutex_lock".into(), "worker_a".into()],
                    stack_detail: vec![
                        "pthread_mutex_lock".into(),
                        "worker_a (src/abba.c:12)".into(),
                    ],
                    waited_ns: Some(5_000),
                    blocked_before_attach: false,
                    held_ns: Some(2_000_000_000),
                    acquired_at: vec!["worker_a".into()],
                    acquired_at_detail: vec!["worker_a+0x1c (src/abba.c:10)".into()],
                },
                DeadlockEntry {
                    goid: None,
                    tid: 1235,
                    thread: "worker-b".into(),
                    holds: lock(0x55d0_bb00, Some("lock_b")),
                    waits_for: lock(0x55d0_aa00, Some("lock_a")),
                    stack: vec!["pthread_mutex_lock".into(), "worker_b".into()],
                    stack_detail: Vec::new(),
                    waited_ns: None,
                    blocked_before_attach: true,
                    held_ns: None,
                    acquired_at: Vec::new(),
                    acquired_at_detail: Vec::new(),
                },
            ],
            detected_after_ns: Some(1_500_000),
        }
    }

    fn summary() -> Summary {
        Summary {
            pid: 4242,
            duration_ns: 12_300_000_000,
            events: 45_600,
            dropped: 0,
            futex_wakes: 17,
            futex_waits: 30,
            brief_lock_waits: 20,
            deadlocks: 1,
            locks: vec![
                LockSummary {
                    lock: lock(0x20, Some("a_rather_long_lock_name")),
                    kind: LockKind::RwLock,
                    contentions: 5,
                    max_waiters: 2,
                    wait_ns: quantiles(1_000, 50_000),
                    hold_ns: None,
                    top_waiter_stack: vec!["rd".into(), "main".into()],
                },
                LockSummary {
                    lock: lock(0x7f12_ab00, None),
                    kind: LockKind::PiMutex,
                    contentions: 12_345,
                    max_waiters: 9,
                    wait_ns: quantiles(2_500_000, 90_000_000_000),
                    hold_ns: Some(quantiles(999, 9_990)),
                    top_waiter_stack: Vec::new(),
                },
                LockSummary {
                    lock: lock(0x10, Some("m")),
                    kind: LockKind::Mutex,
                    contentions: 1,
                    max_waiters: 1,
                    wait_ns: quantiles(850, 50_000),
                    hold_ns: Some(quantiles(10, 100)),
                    top_waiter_stack: Vec::new(),
                },
            ],
            notes: vec!["2 uprobes could not attach".into()],
        }
    }

    fn parse(line: &str) -> Value {
        assert!(!line.contains('\n'), "JSON must be one line: {line:?}");
        serde_json::from_str(line).expect("valid JSON")
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        k.sort_unstable();
        k
    }

    fn assert_quantiles(v: &Value) {
        assert_eq!(keys(v), ["count", "max", "p50", "p90", "p99", "total"]);
        for k in keys(v) {
            assert!(v[k].is_u64(), "{k} is not an integer: {v}");
        }
    }

    #[test]
    fn deadlock_json_shape() {
        let v = parse(&deadlock_json(&deadlock()));
        assert_eq!(v["kind"], "deadlock");
        assert_eq!(v["detected_after_ns"], 1_500_000);
        let cycle = v["cycle"].as_array().expect("cycle is an array");
        assert_eq!(cycle.len(), 2);
        let first = &cycle[0];
        assert_eq!(
            keys(first),
            [
                "acquired_at",
                "blocked_before_attach",
                "held_ns",
                "holds",
                "stack",
                "thread",
                "tid",
                "waited_ns",
                "waits_for"
            ]
        );
        assert_eq!(first["tid"], 1234);
        assert_eq!(first["thread"], "worker-a");
        assert_eq!(first["holds"]["addr"], "0x55d0aa00");
        assert_eq!(first["holds"]["name"], "lock_a");
        assert_eq!(first["waits_for"]["addr"], "0x55d0bb00");
        assert_eq!(keys(&first["waits_for"]), ["addr", "name"]);
        // Function names only: file:line detail stays out of JSON.
        assert_eq!(
            first["stack"],
            serde_json::json!(["pthread_mutex_lock", "worker_a"])
        );
        assert_eq!(cycle[1]["waited_ns"], Value::Null);
        assert_eq!(cycle[1]["blocked_before_attach"], true);
        assert!(
            cycle[1].get("acquired_at").is_none(),
            "empty acquisition stacks are left out"
        );
        assert_eq!(first["acquired_at"], serde_json::json!(["worker_a"]));
    }

    #[test]
    fn lock_name_null_when_unknown() {
        let v = serde_json::to_value(lock(0xABC, None)).expect("serializes");
        assert_eq!(v, serde_json::json!({"addr": "0xabc", "name": null}));
    }

    #[test]
    fn summary_json_shape() {
        let mut s = summary();
        s.sort_locks();
        let v = parse(&summary_json(&s));
        assert_eq!(
            keys(&v),
            [
                "brief_lock_waits",
                "deadlocks",
                "dropped",
                "duration_ns",
                "events",
                "futex_waits",
                "futex_wakes",
                "kind",
                "locks",
                "notes",
                "pid"
            ]
        );
        assert_eq!(v["kind"], "summary");
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["duration_ns"], 12_300_000_000_u64);
        assert_eq!(v["events"], 45_600);
        assert_eq!(v["dropped"], 0);
        assert_eq!(v["notes"][0], "2 uprobes could not attach");
        let locks = v["locks"].as_array().expect("locks is an array");
        assert_eq!(locks.len(), 3);
        for l in locks {
            assert_eq!(
                keys(l),
                [
                    "addr",
                    "contentions",
                    "hold_ns",
                    "max_waiters",
                    "name",
                    "top_waiter_stack",
                    "type",
                    "wait_ns"
                ]
            );
            let addr = l["addr"].as_str().expect("addr is a string");
            assert!(addr.starts_with("0x"));
            assert!(
                addr[2..]
                    .chars()
                    .all(|c| matches!(c, '0'..='9' | 'a'..='f'))
            );
            assert!(l["contentions"].is_u64() && l["max_waiters"].is_u64());
            assert_quantiles(&l["wait_ns"]);
        }
        let pi = &locks[0];
        assert_eq!(pi["addr"], "0x7f12ab00");
        assert_eq!(pi["name"], Value::Null);
        assert_eq!(pi["type"], "pi_mutex");
        assert_eq!(pi["wait_ns"]["total"], 90_000_000_000_u64);
        assert_quantiles(&pi["hold_ns"]);
        assert_eq!(locks[1]["type"], "mutex");
        assert_eq!(locks[2]["type"], "rwlock");
        assert_eq!(locks[2]["name"], "a_rather_long_lock_name");
        assert_eq!(locks[2]["hold_ns"], Value::Null);
    }

    #[test]
    fn lock_kind_names() {
        for (kind, name) in [
            (LockKind::Mutex, "mutex"),
            (LockKind::PiMutex, "pi_mutex"),
            (LockKind::RwLock, "rwlock"),
            (LockKind::Futex, "futex"),
        ] {
            assert_eq!(serde_json::to_value(kind).expect("serializes"), name);
            assert_eq!(kind.to_string(), name);
        }
    }

    #[test]
    fn sort_by_total_wait_then_addr() {
        let mut s = summary();
        s.sort_locks();
        let addrs: Vec<u64> = s.locks.iter().map(|l| l.lock.addr).collect();
        // 0x7f12ab00 waited longest; 0x10 and 0x20 tie on total, so by address.
        assert_eq!(addrs, vec![0x7f12_ab00, 0x10, 0x20]);
    }

    #[test]
    fn deadlock_text_names_threads_and_locks() {
        let text = deadlock_text(&deadlock());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "DEADLOCK: 2 threads in a wait-for cycle (detected after 1.50 ms)"
        );
        assert_eq!(
            lines[1],
            "  thread 1234 (worker-a) holds lock_a (0x55d0aa00) and waits for lock_b (0x55d0bb00)"
        );
        // stack_detail wins over stack when present ...
        assert_eq!(lines[3], "      worker_a (src/abba.c:12)");
        assert!(text.contains("thread 1235 (worker-b) holds lock_b (0x55d0bb00)"));
        // ... and stack is the fallback.
        let n = lines.len();
        assert_eq!(lines[n - 2], "      worker_b");
        assert_eq!(
            lines[n - 1],
            "      (already waiting when the tracer attached)"
        );
        // Where the held lock was taken, and since when (from --holds).
        assert_eq!(lines[4], "    took lock_a (0x55d0aa00) 2.00 s ago at:");
        assert_eq!(lines[5], "      worker_a+0x1c (src/abba.c:10)");
    }

    /// A cycle over goroutines is counted in goroutines, not in the threads that last ran
    /// them; a self-deadlock likewise.
    #[test]
    fn deadlock_text_counts_goroutines() {
        let mut d = deadlock();
        for (i, e) in d.cycle.iter_mut().enumerate() {
            e.goid = Some(6 + i as u64);
        }
        let text = deadlock_text(&d);
        assert!(
            text.starts_with("DEADLOCK: 2 goroutines in a wait-for cycle"),
            "{text}"
        );
        d.cycle.truncate(1);
        assert!(
            deadlock_text(&d)
                .starts_with("DEADLOCK: 1 goroutine waits for a lock it already holds")
        );
    }

    #[test]
    fn unnamed_lock_shows_its_location() {
        let stripped = LockRef {
            addr: 0x5555_4040,
            name: None,
            location: Some("abba+0x4040".into()),
        };
        let v = serde_json::to_value(&stripped).expect("serializes");
        assert_eq!(
            v,
            serde_json::json!({"addr": "0x55554040", "name": null, "location": "abba+0x4040"})
        );
        assert_eq!(stripped.label(), "abba+0x4040");
        assert_eq!(stripped.to_string(), "abba+0x4040 (0x55554040)");
    }

    #[test]
    fn hold_columns_only_with_hold_data() {
        let mut s = summary();
        assert!(
            s.locks.iter().any(|l| l.hold_ns.is_some()),
            "fixture has hold data"
        );
        assert!(summary_text(&s).contains("HOLD p50"));
        for lock in &mut s.locks {
            lock.hold_ns = None;
        }
        let text = summary_text(&s);
        assert!(
            !text.contains("HOLD"),
            "no --holds, no HOLD columns:\n{text}"
        );
        assert!(text.contains("WAIT total"));
    }

    #[test]
    fn deadlock_text_self_wait_and_unknowns() {
        let d = Deadlock {
            cycle: vec![DeadlockEntry {
                goid: None,
                tid: 7,
                thread: String::new(),
                holds: lock(0xa, None),
                waits_for: lock(0xa, None),
                stack: Vec::new(),
                stack_detail: Vec::new(),
                waited_ns: None,
                blocked_before_attach: false,
                held_ns: None,
                acquired_at: Vec::new(),
                acquired_at_detail: Vec::new(),
            }],
            detected_after_ns: None,
        };
        assert_eq!(
            deadlock_text(&d),
            "DEADLOCK: 1 thread waits for a lock it already holds\n  \
             thread 7 holds 0xa and waits for 0xa\n      (no stack)\n"
        );
    }

    #[test]
    fn summary_text_table_is_aligned() {
        let mut s = summary();
        s.sort_locks();
        let text = summary_text(&s);
        assert!(text.starts_with("pid 4242: traced for 12.3 s, 45.6k events, 0 dropped"));
        assert!(!text.contains("WARNING"));
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("LOCK"))
            .take(4)
            .collect();
        assert_eq!(table.len(), 4, "{text}");
        let col = |line: &str, needle: &str| {
            let byte = line.find(needle).expect("cell present");
            line[..byte].chars().count()
        };
        let type_col = col(table[0], "TYPE");
        assert_eq!(col(table[1], "pi_mutex"), type_col);
        assert_eq!(col(table[2], "mutex"), type_col);
        assert_eq!(col(table[3], "rwlock"), type_col);
        // The last column is right-aligned, so every row ends at the same character.
        let width = table[0].chars().count();
        for row in &table {
            assert_eq!(row.chars().count(), width, "{text}");
        }
        assert!(table[1].starts_with("0x7f12ab00"));
        assert!(table[2].starts_with("m "));
        assert!(table[3].starts_with("a_rather_long_lock_name"));
        // Units, and "-" for locks without hold times.
        assert!(table[1].contains("12.3k") && table[1].contains("2.50 ms"));
        assert!(table[1].ends_with("4.00 µs"));
        assert!(table[3].ends_with('-'));
        assert!(text.contains("top waiter stacks:\n  a_rather_long_lock_name (0x20):\n      rd\n"));
        assert!(text.ends_with("notes:\n  - 2 uprobes could not attach\n"));
    }

    #[test]
    fn summary_text_warns_about_drops_and_empty_tables() {
        let mut s = summary();
        s.dropped = 12;
        s.locks.clear();
        s.notes.clear();
        let text = summary_text(&s);
        assert!(text.contains("12 dropped"));
        assert!(text.contains("WARNING: 12 events were dropped"));
        assert!(text.contains("INCOMPLETE"));
        assert!(text.contains("no contended locks observed"));
        assert!(!text.contains("notes:"));
        assert!(!text.contains("LOCK"));
    }

    #[test]
    fn summary_text_dashes_for_empty_distributions() {
        let mut s = summary();
        s.locks.truncate(1);
        s.locks[0].wait_ns = Quantiles::default();
        s.locks[0].hold_ns = Some(Quantiles::default());
        let text = summary_text(&s);
        let row = text
            .lines()
            .find(|l| l.starts_with("a_rather_long_lock_name"))
            .expect("row present");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[2..4], ["5", "2"]);
        assert_eq!(cells[4..], ["-"; 7]);
        assert!(!text.contains("0 ns"));
    }
}
