//! The target replacing its program (`execve`) during the trace.
//!
//! Symbols, the return-address check, Go sites and lock state were read from the program
//! the target ran at attach; after an `exec` they describe a program that is gone. The
//! kernel says exactly when (`tracer-ebpf/src/process_exec.rs`: every record before its
//! exec record is the old program's, every record after it the new one's), and the
//! session then switches programs there (`Session::switch_program`): the old program's
//! locks and stacks are named with its own symbols, its lock table is kept for the
//! summary, and symbols are reloaded from the new program. As a fallback, for an exec
//! record lost to a full ring buffer, the identity (device and inode) of the target's
//! executable is compared at each liveness check and before each finding is named;
//! another executable is taken for a lost exec only once the ring buffer was read to its
//! end a moment after it was first seen, with no exec record (the kernel names the new
//! executable before it reports the exec).
//!
//! What cannot follow the new program is said in the notes: uprobes are attached to
//! files (the C library's lock functions with `--holds`, a Go program's lock sites), so
//! those of a file the new program does not map no longer fire.

use std::fmt::Write as _;

use crate::model::LockSummary;

/// The identity of a file: its device and inode.
pub(crate) type FileIdentity = (u64, u64);

/// Most programs whose lock tables are kept: an exec loop must not grow the report (and
/// the tracer's memory) without bound. Later programs are counted in a note.
pub(crate) const MAX_PROGRAMS_KEPT: usize = 8;

/// How long after another executable is first seen its exec record may still be on its
/// way: the kernel names the new executable (`begin_new_exec`) before it has loaded the
/// program and reported the exec (`sched_process_exec`).
pub(crate) const EXEC_RECORD_GRACE_NS: u64 = 50_000_000;

/// Remembers the target's current executable and says when another one is seen whose
/// exec record was lost.
#[derive(Debug)]
pub(crate) struct ExecWatch {
    current: Option<FileIdentity>,
    /// Another executable seen, and when it was first seen: an exec whose record is
    /// not read yet, or was lost.
    suspect: Option<(FileIdentity, u64)>,
    /// When the ring buffer was last read to its end.
    caught_up_ns: u64,
}

impl ExecWatch {
    /// Starts from the executable seen at attach (`None`: unreadable, nothing is watched).
    pub(crate) fn new(at_attach: Option<FileIdentity>) -> Self {
        Self {
            current: at_attach,
            suspect: None,
            caught_up_ns: 0,
        }
    }

    /// The ring buffer was read to its end at `now_ns`: every record written before then
    /// has been seen.
    pub(crate) fn caught_up(&mut self, now_ns: u64) {
        self.caught_up_ns = now_ns;
    }

    /// Takes the executable seen at `now_ns` (`None`: unreadable, e.g. the target just
    /// exited, which says nothing about an `exec`). True when it is another one than
    /// before and its exec record is lost: the ring buffer was read to its end at least
    /// [`EXEC_RECORD_GRACE_NS`] after it was first seen, and no exec record came
    /// ([`ExecWatch::rebase`]). It then becomes the current one.
    ///
    /// Until then it is only suspected: taking it for a lost exec at once would reload
    /// the symbols before the exec record is read, and the previous program's locks would
    /// then be named from the new one.
    pub(crate) fn observe(&mut self, now: Option<FileIdentity>, now_ns: u64) -> bool {
        let Some(now) = now else {
            return false;
        };
        let Some(current) = self.current else {
            self.current = Some(now);
            return false;
        };
        if now == current {
            self.suspect = None;
            return false;
        }
        match self.suspect {
            Some((suspect, since)) if suspect == now => {
                if self.caught_up_ns < since.saturating_add(EXEC_RECORD_GRACE_NS) {
                    return false;
                }
                self.current = Some(now);
                self.suspect = None;
                true
            }
            _ => {
                self.suspect = Some((now, now_ns));
                false
            }
        }
    }

    /// Takes the executable seen right after an exec the kernel reported (so the check
    /// that follows does not report it a second time). Unreadable then (`None`), the
    /// next one read is the new baseline: the previous one is gone either way.
    pub(crate) fn rebase(&mut self, now: Option<FileIdentity>) {
        self.current = now;
        self.suspect = None;
    }
}

/// How the switch to a new program was placed in the stream of records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SwitchPoint {
    /// At the kernel's exec record: exact.
    Exact,
    /// When another executable was seen (the exec record was lost): only the symbols
    /// are reloaded, since the lock state may already hold the new program's waits.
    Late,
}

/// The note on one exec: which program, when, that symbols were reloaded, and what no
/// longer applies.
pub(crate) struct ExecNote<'a> {
    /// The new program as the target's maps name it (`None`: its maps were unreadable).
    pub program: Option<&'a str>,
    /// Seconds into the trace.
    pub at_s: f64,
    pub point: SwitchPoint,
    /// With `--holds`: the C library the lock uprobes are attached to, and whether the
    /// new program maps that same file.
    pub holds_libc: Option<(&'a str, bool)>,
    /// Go lock sites attached in the previous program (`None`: not a Go program).
    pub go_sites: Option<usize>,
}

impl ExecNote<'_> {
    /// The note's text.
    pub(crate) fn text(&self) -> String {
        let before = match self.point {
            SwitchPoint::Exact => {
                "locks and stacks before that are named from the previous program"
            }
            SwitchPoint::Late => {
                "its exec record was lost, so locks and stacks before that may be named from the new program"
            }
        };
        let mut note = match self.program {
            Some(program) => format!(
                "the target executed {program} at {:.2} s; symbols were reloaded from it ({before})",
                self.at_s
            ),
            None => format!(
                "the target executed another program at {:.2} s, whose memory maps could not be read: its locks and frames are shown by address",
                self.at_s
            ),
        };
        match self.holds_libc {
            Some((libc, true)) => {
                let _ = write!(
                    note,
                    "; the --holds lock probes in {libc} still apply (the new program maps the same file)"
                );
            }
            Some((libc, false)) => {
                let _ = write!(
                    note,
                    "; the --holds lock probes in {libc} no longer apply (the new program does not map it): no holders or hold times after that"
                );
            }
            None => {}
        }
        if let Some(sites) = self.go_sites {
            let _ = write!(
                note,
                "; the {sites} Go lock sites and goroutine snapshots of the previous program no longer apply: futex mode only after that"
            );
        }
        note
    }
}

/// The lock tables of the programs the target ran before its last exec, each named with
/// that program's symbols, and what they add to the summary's totals.
#[derive(Debug, Default)]
pub(crate) struct PreviousPrograms {
    pub locks: Vec<LockSummary>,
    pub events: u64,
    pub brief_lock_waits: u64,
    pub deadlocks: usize,
    pub notes: Vec<String>,
    /// Programs kept so far.
    pub kept: usize,
    /// Programs past [`MAX_PROGRAMS_KEPT`], whose lock tables were left out.
    pub left_out: usize,
}

impl PreviousPrograms {
    /// Whether the table of one more program may be kept.
    pub(crate) fn has_room(&self) -> bool {
        self.kept < MAX_PROGRAMS_KEPT
    }

    /// The notes for the summary, with one for the programs left out.
    pub(crate) fn summary_notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        if self.left_out > 0 {
            notes.push(format!(
                "the target executed {} more program(s) after the first {MAX_PROGRAMS_KEPT}: their locks are left out of the summary",
                self.left_out
            ));
        }
        notes
    }
}

/// The summary's lock table: the previous programs' and the current one's, sorted by
/// total wait time (largest first, ties by address), as `assemble::lock_summaries` sorts
/// one program's.
pub(crate) fn merge_lock_tables(
    previous: Vec<LockSummary>,
    current: Vec<LockSummary>,
) -> Vec<LockSummary> {
    if previous.is_empty() {
        return current;
    }
    let mut all = previous;
    all.extend(current);
    all.sort_by(|a, b| {
        b.wait_ns
            .total
            .cmp(&a.wait_ns.total)
            .then(a.lock.addr.cmp(&b.lock.addr))
    });
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards issue 16: a target that `exec`s another program mid-trace lost its names
    /// without a word. Another executable identity must be reported once (and become the
    /// current one), the same one or an unreadable one must not. Checked to fail with
    /// `observe` always false.
    #[test]
    fn another_executable_is_seen_once() {
        // Seen twice, the second time after a drain to the end past the grace: lost.
        let lost = |watch: &mut ExecWatch, id, at: u64| {
            let first = watch.observe(Some(id), at);
            watch.caught_up(at + EXEC_RECORD_GRACE_NS);
            first || watch.observe(Some(id), at + EXEC_RECORD_GRACE_NS + 1)
        };
        let mut watch = ExecWatch::new(Some((8, 100)));
        assert!(!lost(&mut watch, (8, 100), 0));
        assert!(!watch.observe(None, 1));
        assert!(lost(&mut watch, (8, 101), 10));
        assert!(!lost(&mut watch, (8, 101), 1_000_000_000));
        // Back to the first program is another exec.
        assert!(lost(&mut watch, (8, 100), 2_000_000_000));
        // Same inode on another device is another file.
        assert!(lost(&mut watch, (9, 100), 3_000_000_000));
        // Nothing read at attach: the first identity read is the baseline.
        let mut watch = ExecWatch::new(None);
        assert!(!lost(&mut watch, (8, 100), 0));
        assert!(lost(&mut watch, (8, 101), 10));
        // An exec the kernel reported is not reported again by the check.
        let mut watch = ExecWatch::new(Some((8, 100)));
        watch.rebase(Some((8, 102)));
        assert!(!lost(&mut watch, (8, 102), 0));
        // Nor when the executable could not be read right after it: the next one read
        // is the baseline.
        let mut watch = ExecWatch::new(Some((8, 100)));
        assert!(!watch.observe(Some((8, 103)), 0));
        watch.rebase(None);
        assert!(!lost(&mut watch, (8, 103), EXEC_RECORD_GRACE_NS));
        assert!(lost(&mut watch, (8, 104), 3 * EXEC_RECORD_GRACE_NS));
    }

    /// Guards the CI failure of stop 35: the liveness check saw the new executable a
    /// moment before the drain read the exec record, took the exec for a lost one and
    /// reloaded the symbols, so the previous program's locks were then named from the
    /// new program (`first_lock` unnamed in `exec_reloads_symbols_...`). Another
    /// executable is only a lost exec once the ring buffer was read to its end at least
    /// the grace after it was first seen; the exec record read meanwhile settles it.
    /// Checked to fail with `observe` true at the first sight.
    #[test]
    fn another_executable_waits_for_its_exec_record() {
        let mut watch = ExecWatch::new(Some((8, 100)));
        let seen_at = 1_000_000_000;
        assert!(!watch.observe(Some((8, 101)), seen_at));
        // Seen again, but the ring buffer was not read to its end since the grace.
        watch.caught_up(seen_at + EXEC_RECORD_GRACE_NS - 1);
        assert!(!watch.observe(Some((8, 101)), seen_at + 2 * EXEC_RECORD_GRACE_NS));
        // The exec record was read: not a lost exec.
        watch.rebase(Some((8, 101)));
        watch.caught_up(seen_at + 3 * EXEC_RECORD_GRACE_NS);
        assert!(!watch.observe(Some((8, 101)), seen_at + 4 * EXEC_RECORD_GRACE_NS));
        // Another exec, whose record never comes: lost once the drain caught up past the
        // grace.
        let seen_at = 2_000_000_000;
        assert!(!watch.observe(Some((8, 102)), seen_at));
        watch.caught_up(seen_at + EXEC_RECORD_GRACE_NS);
        assert!(watch.observe(Some((8, 102)), seen_at + EXEC_RECORD_GRACE_NS));
        // Another executable seen between two sightings restarts the wait.
        assert!(!watch.observe(Some((8, 103)), seen_at + 2 * EXEC_RECORD_GRACE_NS));
        assert!(!watch.observe(Some((8, 104)), seen_at + 3 * EXEC_RECORD_GRACE_NS));
        watch.caught_up(seen_at + 3 * EXEC_RECORD_GRACE_NS + 1);
        assert!(!watch.observe(Some((8, 104)), seen_at + 4 * EXEC_RECORD_GRACE_NS));
        watch.caught_up(seen_at + 4 * EXEC_RECORD_GRACE_NS);
        assert!(watch.observe(Some((8, 104)), seen_at + 4 * EXEC_RECORD_GRACE_NS));
    }

    /// Guards the exec note: it names the new program and says what no longer applies
    /// (the lock probes of a C library the new program does not map, Go sites).
    #[test]
    fn exec_note_says_what_no_longer_applies() {
        let mut note = ExecNote {
            program: Some("/usr/bin/second"),
            at_s: 1.5,
            point: SwitchPoint::Exact,
            holds_libc: None,
            go_sites: None,
        };
        let text = note.text();
        assert!(
            text.starts_with(
                "the target executed /usr/bin/second at 1.50 s; symbols were reloaded from it"
            ),
            "{text}"
        );
        assert!(!text.contains("probes") && !text.contains("lost"), "{text}");
        note.holds_libc = Some(("/lib/libc.so.6", true));
        assert!(note.text().contains("probes in /lib/libc.so.6 still apply"));
        note.holds_libc = Some(("/lib/libc.so.6", false));
        note.go_sites = Some(12);
        note.point = SwitchPoint::Late;
        let text = note.text();
        assert!(
            text.contains("no longer apply (the new program does not map it)"),
            "{text}"
        );
        assert!(text.contains("the 12 Go lock sites"), "{text}");
        assert!(text.contains("exec record was lost"), "{text}");
        note.program = None;
        assert!(
            note.text()
                .contains("could not be read: its locks and frames are shown by address")
        );
    }

    fn lock(addr: u64, total: u64) -> LockSummary {
        LockSummary {
            lock: crate::model::LockRef {
                addr,
                name: None,
                location: None,
                name_source: None,
            },
            kind: crate::model::LockKind::Mutex,
            contentions: 1,
            max_waiters: 1,
            wait_ns: crate::model::Quantiles {
                total,
                ..crate::model::Quantiles::default()
            },
            hold_ns: None,
            top_waiter_stack: Vec::new(),
        }
    }

    /// The merged table is one table sorted by total wait, whatever program a lock was in.
    #[test]
    fn lock_tables_merge_by_total_wait() {
        let merged =
            merge_lock_tables(vec![lock(1, 10), lock(2, 5)], vec![lock(3, 7), lock(4, 50)]);
        let order: Vec<u64> = merged.iter().map(|l| l.lock.addr).collect();
        assert_eq!(order, [4, 1, 3, 2]);
        let previous = PreviousPrograms {
            left_out: 2,
            ..PreviousPrograms::default()
        };
        assert!(previous.has_room());
        assert!(previous.summary_notes()[0].contains("2 more program(s)"));
    }
}
