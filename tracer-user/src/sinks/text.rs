//! The text sink: findings for a human as they come, then the summary table.

use std::{
    fmt::Write as _,
    io::{self, Write},
};

use super::Sink;
use crate::{
    model::{
        Deadlock, Finding, HoldMode, HolderEvidence, LockOrderInversion, LockSummary, Quantiles,
        StuckHolder, StuckLock, Summary,
    },
    units,
};

/// Writes each finding as a block followed by a blank line, and the summary.
pub struct TextSink<'a> {
    out: &'a mut dyn Write,
    /// Locks shown in the summary table (`--top`); `None`: all.
    top_locks: Option<usize>,
}

impl<'a> TextSink<'a> {
    #[must_use]
    pub fn new(out: &'a mut dyn Write) -> Self {
        Self {
            out,
            top_locks: None,
        }
    }

    /// Shows only the `top_locks` first locks of the summary (all with `None`).
    #[must_use]
    pub fn with_top_locks(mut self, top_locks: Option<usize>) -> Self {
        self.top_locks = top_locks;
        self
    }

    fn write(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(text.as_bytes())?;
        self.out.flush()
    }
}

impl Sink for TextSink<'_> {
    fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        let text = match finding {
            Finding::Deadlock(d) => deadlock_text(d),
            Finding::StuckLock(s) => stuck_lock_text(s),
            Finding::LockOrderInversion(i) => lock_order_inversion_text(i),
        };
        self.write(&(text + "\n"))
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        self.write(&summary_text_top(summary, self.top_locks))
    }
}

/// The stuck lock for a human: a headline, the holder and where it took the lock.
#[must_use]
fn stuck_lock_text(s: &StuckLock) -> String {
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
    if s.holders.is_empty() {
        out.push_str("  holder: unknown\n");
    }
    for holder in &s.holders {
        holder_text(&mut out, holder);
    }
    out
}

/// One holder of a stuck lock: who, how it is known, and where it took the lock.
fn holder_text(out: &mut String, holder: &StuckHolder) {
    let state = holder.state.name();
    let evidence = match holder.evidence {
        Some(HolderEvidence::DeferredUnlock) => ", a deferred unlock pending on its stack",
        Some(HolderEvidence::FrameVariable) => ", the lock in a variable of its frame",
        Some(HolderEvidence::TracedAcquire) => ", seen acquiring it",
        Some(HolderEvidence::StackGuard) => ", a guard of the lock on its stack",
        None => "",
    };
    match holder.goid {
        Some(goid) => {
            let _ = writeln!(out, "  holder: goroutine {goid} ({state}{evidence})");
        }
        None => out.push_str("  holder: unknown\n"),
    }
    if let Some(at) = &holder.acquired_at {
        if holder.evidence == Some(HolderEvidence::DeferredUnlock) {
            // The frame whose deferred unlock is pending, where it is now.
            let _ = writeln!(out, "  holds it in {at}");
        } else {
            let _ = writeln!(out, "  took it at {at}");
        }
    }
    let frames = if holder.stack_detail.is_empty() {
        &holder.stack
    } else {
        &holder.stack_detail
    };
    for frame in frames {
        let _ = writeln!(out, "      {frame}");
    }
}

/// The deadlock for a human: a headline, then per thread what it holds and waits for, with
/// its stack indented below.
#[must_use]
fn deadlock_text(d: &Deadlock) -> String {
    let n = d.cycle.len();
    // A cycle over goroutines is told in goroutines: their threads move on.
    let who = if d.cycle.iter().all(|e| e.goid.is_some()) {
        "goroutine"
    } else {
        "thread"
    };
    // Every wait has a timeout: the cycle breaks when the first gives up.
    let headline = if d.will_time_out {
        "LOCK CYCLE (will time out)"
    } else {
        "DEADLOCK"
    };
    let mut out = if n == 1 {
        format!("{headline}: 1 {who} waits for a lock it already holds")
    } else {
        format!("{headline}: {n} {who}s in a wait-for cycle")
    };
    if let Some(after) = d.detected_after_ns {
        let _ = write!(out, " (detected after {})", units::duration_ns(after));
    }
    out.push('\n');
    for entry in &d.cycle {
        if let Some(goid) = entry.goid {
            if entry.tid == 0 {
                // Read from its parked state: no probe saw which thread it last ran on.
                let _ = write!(out, "  goroutine {goid}");
            } else {
                let _ = write!(out, "  goroutine {goid} (last on thread {})", entry.tid);
            }
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
        match (entry.timed, entry.timeout_ns) {
            (true, Some(left)) => {
                let _ = writeln!(
                    out,
                    "      (timed wait: gives up in {})",
                    units::duration_ns(left)
                );
            }
            (true, None) => out.push_str("      (timed wait: gives up at an unknown time)\n"),
            (false, _) => {}
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

/// A lock-order inversion for a human: the locks of the cycle, then each order with who
/// took it and where.
#[must_use]
fn lock_order_inversion_text(inv: &LockOrderInversion) -> String {
    let locks: Vec<String> = inv.locks.iter().map(ToString::to_string).collect();
    let mut out = match &inv.gate {
        Some(gate) => format!(
            "LOCK ORDER INVERSION (harmless: every order is taken under {gate}): {}\n",
            locks.join(" -> ")
        ),
        None => format!(
            "LOCK ORDER INVERSION (potential deadlock, none happened): {}\n",
            locks.join(" -> ")
        ),
    };
    for edge in &inv.edges {
        if let Some(goid) = edge.goid {
            let _ = write!(out, "  goroutine {goid}");
        } else {
            let _ = write!(out, "  thread {}", edge.tid);
            if !edge.thread.is_empty() {
                let _ = write!(out, " ({})", edge.thread);
            }
        }
        let _ = writeln!(out, " took {} while holding {}", edge.to, edge.from);
        for (what, names, detail) in [
            (&edge.from, &edge.from_stack, &edge.from_stack_detail),
            (&edge.to, &edge.to_stack, &edge.to_stack_detail),
        ] {
            let frames = if detail.is_empty() { names } else { detail };
            let _ = writeln!(out, "    took {what} at:");
            if frames.is_empty() {
                out.push_str("      (no stack)\n");
            }
            for frame in frames {
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

/// The lines after the table: how many tracked locks it leaves out, and the locks folded
/// into one aggregate to bound the tracer's memory.
fn hidden_and_folded(out: &mut String, s: &Summary, shown: usize) {
    let hidden = s.locks.len() - shown;
    if hidden > 0 {
        let _ = writeln!(
            out,
            "... {} more lock{} not shown (--top N or --all-locks to show them)",
            units::count(hidden as u64),
            if hidden == 1 { "" } else { "s" }
        );
    }
    if let Some(other) = &s.other_locks {
        let w = &other.wait_ns;
        let _ = writeln!(
            out,
            "other locks: {} folded to bound memory (--max-locks), {} contentions, wait p50 {} / p99 {} / max {} / total {}",
            units::count(other.locks),
            units::count(other.contentions),
            units::duration_ns(w.p50),
            units::duration_ns(w.p99),
            units::duration_ns(w.max),
            units::duration_ns(w.total),
        );
    }
    if let Some(filtered) = &s.filtered_out {
        let _ = writeln!(
            out,
            "filtered out (--lock, --type, --min-wait): {} lock{}, {} contentions, wait max {} / total {}",
            units::count(filtered.locks),
            if filtered.locks == 1 { "" } else { "s" },
            units::count(filtered.contentions),
            units::duration_ns(filtered.wait_max_ns),
            units::duration_ns(filtered.wait_total_ns),
        );
    }
}

/// The summary for a human: a header, a warning when events were dropped, a table of the
/// locks in their current order (call [`Summary::sort_locks`] first), the top waiter stacks of
/// the first locks, then the notes.
#[must_use]
#[cfg(test)]
fn summary_text(s: &Summary) -> String {
    summary_text_top(s, None)
}

/// [`summary_text`] with only the first `top` locks in the table and their stacks (all
/// with `None`), followed by how many were not shown and the folded aggregate.
#[must_use]
fn summary_text_top(s: &Summary, top: Option<usize>) -> String {
    let in_namespace = s
        .ns_pid
        .map(|ns_pid| format!(" (pid {ns_pid} in its PID namespace)"))
        .unwrap_or_default();
    let mut out = format!(
        "pid {}{in_namespace}: traced for {}, {} events, {} dropped, {} futex waits ({} lock waits that did not sleep), {} futex wakes, {} deadlock{}\n",
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
    if s.lock_order_inversions > 0 {
        let _ = writeln!(
            out,
            "{} lock-order inversion{} (potential deadlocks: locks taken in orders that can deadlock)",
            s.lock_order_inversions,
            if s.lock_order_inversions == 1 {
                ""
            } else {
                "s"
            },
        );
    }
    if s.timed_cycles > 0 {
        let _ = writeln!(
            out,
            "{} cycle{} of timed lock waits (no deadlock: each breaks when a wait times out)",
            s.timed_cycles,
            if s.timed_cycles == 1 { "" } else { "s" },
        );
    }
    if s.dropped > 0 {
        let _ = writeln!(
            out,
            "WARNING: {} events were dropped, so these results are INCOMPLETE: \
             contention may be undercounted and deadlocks may have been missed.",
            s.dropped
        );
    }
    out.push('\n');
    let shown = top.unwrap_or(usize::MAX).min(s.locks.len());
    if s.locks.is_empty() && s.other_locks.is_none() {
        out.push_str(if s.filtered_out.is_some_and(|f| f.locks > 0) {
            "no contended locks pass the filters\n"
        } else {
            "no contended locks observed\n"
        });
        hidden_and_folded(&mut out, s, 0);
    } else {
        let rows: Vec<_> = s.locks.iter().take(shown).map(table_row).collect();
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
        hidden_and_folded(&mut out, s, shown);
    }

    let with_stacks: Vec<&LockSummary> = s
        .locks
        .iter()
        .take(shown)
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
mod tests {
    use super::*;
    use crate::model::{
        DeadlockEntry, LockRef,
        fixtures::{deadlock, lock, summary},
    };

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

    /// Guards issue 16's timed-lock cycle in text: a cycle whose waits all have timeouts
    /// is a "LOCK CYCLE (will time out)", never a DEADLOCK, and each timed wait says when
    /// it gives up; with one untimed wait it stays a DEADLOCK, the timed entry still
    /// saying when it gives up.
    #[test]
    fn timed_cycles_are_not_deadlocks_in_text() {
        let mut d = deadlock();
        d.will_time_out = true;
        d.cycle[0].timed = true;
        d.cycle[0].timeout_ns = Some(150_000_000);
        d.cycle[1].timed = true;
        let text = deadlock_text(&d);
        assert!(
            text.starts_with("LOCK CYCLE (will time out): 2 threads in a wait-for cycle"),
            "{text}"
        );
        assert!(!text.contains("DEADLOCK"), "{text}");
        assert!(
            text.contains("      (timed wait: gives up in 150 ms)\n"),
            "{text}"
        );
        assert!(
            text.contains("      (timed wait: gives up at an unknown time)\n"),
            "{text}"
        );
        d.will_time_out = false;
        d.cycle[1].timed = false;
        let text = deadlock_text(&d);
        assert!(text.starts_with("DEADLOCK: 2 threads"), "{text}");
        assert!(text.contains("gives up in 150 ms"), "{text}");
        assert!(!text.contains("unknown time"), "{text}");
        let mut s = summary();
        s.timed_cycles = 1;
        assert!(summary_text(&s).contains("1 cycle of timed lock waits (no deadlock"));
        s.timed_cycles = 0;
        assert!(!summary_text(&s).contains("timed lock waits"));
    }

    /// A cycle over goroutines is counted in goroutines, not in the threads that last ran
    /// them; a self-deadlock likewise.

    #[test]
    fn lock_order_inversion_text_tells_each_order_and_where() {
        let mut inversion = crate::model::fixtures::inversion();
        let text = lock_order_inversion_text(&inversion);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "LOCK ORDER INVERSION (potential deadlock, none happened): lock_a (0x55d0aa00) -> lock_b (0x55d0bb00)"
        );
        assert_eq!(
            lines[1],
            "  thread 1234 (worker-a) took lock_b (0x55d0bb00) while holding lock_a (0x55d0aa00)"
        );
        assert_eq!(lines[2], "    took lock_a (0x55d0aa00) at:");
        // Detail (file:line) when there is some, else the names.
        assert_eq!(lines[3], "      take_ab (src/order.c:10)");
        assert_eq!(lines[4], "    took lock_b (0x55d0bb00) at:");
        assert_eq!(lines[5], "      take_ab");
        assert!(
            text.contains("  thread 1235 (worker-b) took lock_a (0x55d0aa00) while holding lock_b")
        );
        inversion.gate = Some(lock(0x6000, Some("gate")));
        inversion.harmless = true;
        inversion.edges[0].goid = Some(9);
        let text = lock_order_inversion_text(&inversion);
        assert!(text.starts_with(
            "LOCK ORDER INVERSION (harmless: every order is taken under gate (0x6000)):"
        ));
        assert!(text.contains("\n  goroutine 9 took lock_b"));
    }

    #[test]
    fn summary_counts_lock_order_inversions() {
        let mut s = summary();
        assert!(!summary_text_top(&s, Some(20)).contains("lock-order inversion"));
        s.lock_order_inversions = 2;
        assert!(
            summary_text_top(&s, Some(20)).contains("2 lock-order inversions (potential deadlocks")
        );
    }

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
            name_source: None,
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
                timed: false,
                timeout_ns: None,
                held_ns: None,
                holder_evidence: None,
                acquired_at: Vec::new(),
                acquired_at_detail: Vec::new(),
            }],
            will_time_out: false,
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

    /// Guards the header of a target in a container: both its host PID and the PID it
    /// knows itself by.
    #[test]
    fn summary_text_names_the_pid_inside_a_namespace() {
        let mut s = summary();
        assert!(summary_text(&s).starts_with("pid 4242: traced"));
        s.ns_pid = Some(7);
        assert!(summary_text(&s).starts_with("pid 4242 (pid 7 in its PID namespace): traced"));
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

    /// Guards the text output through the sink: each finding is its block and a blank
    /// line, the summary follows as rendered.
    #[test]
    fn the_sink_writes_findings_then_the_summary() {
        let mut out = Vec::new();
        let mut sink = TextSink::new(&mut out);
        sink.finding(&Finding::Deadlock(deadlock())).unwrap();
        sink.summary(&summary()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            deadlock_text(&deadlock()) + "\n" + &summary_text(&summary())
        );
    }

    /// Guards issue 16's text report: with many locks the table shows the top ones, says
    /// how many it left out and how many were folded to bound memory.
    #[test]
    fn summary_text_shows_the_top_locks_and_the_folded_ones() {
        let mut s = summary();
        s.sort_locks();
        s.other_locks = Some(crate::model::OtherLocks {
            locks: 91_234,
            contentions: 95_000,
            wait_ns: Quantiles {
                count: 90_000,
                p50: 40_000,
                p90: 60_000,
                p99: 100_000,
                max: 2_000_000,
                total: 4_000_000_000,
            },
            hold_ns: None,
        });
        let text = summary_text_top(&s, Some(1));
        let first = s.locks[0].lock.label();
        assert!(text.contains(&first), "{text}");
        assert!(!text.contains("a_rather_long_lock_name"), "{text}");
        assert!(
            text.contains("... 2 more locks not shown (--top N or --all-locks"),
            "{text}"
        );
        assert!(
            text.contains(
                "other locks: 91.2k folded to bound memory (--max-locks), 95.0k contentions"
            ),
            "{text}"
        );
        let all = summary_text_top(&s, None);
        assert!(all.contains("a_rather_long_lock_name") && !all.contains("not shown"));
        // Only folded locks: still a table line for them, not "no contended locks".
        s.locks.clear();
        assert!(!summary_text(&s).contains("no contended locks observed"));
    }
}
