//! What a run found, for the exit status (`tracer attach`, `tracer report`): a sink
//! wrapper that counts the findings it passes on, and the documented exit codes.
//!
//! The codes let a health check or a CI job branch on the result of
//! `tracer attach --pid N --duration 2`: 0 nothing found, 1 an error, 2 bad usage (clap's),
//! 3 a deadlock, 4 a stuck lock, 5 a lock-order inversion. When several kinds were found,
//! the most severe wins: a deadlock (threads hang now) over a stuck lock (a lock nobody
//! releases: probably a hang) over an inversion (a deadlock that can happen).

use std::io;

use super::Sink;
use crate::{
    model::{Finding, Summary, graph::GraphSnapshot},
    recording::tape::TapeChunk,
};

/// Exit code: nothing was found.
pub const EXIT_NOTHING_FOUND: u8 = 0;
/// Exit code: an error (the one-line `tracer: error: …`).
pub const EXIT_ERROR: u8 = 1;
/// Exit code: bad command-line usage (clap's own).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: a deadlock was reported (a wait-for cycle that does not time out).
pub const EXIT_DEADLOCK: u8 = 3;
/// Exit code: a stuck lock was reported (and no deadlock).
pub const EXIT_STUCK_LOCK: u8 = 4;
/// Exit code: a lock-order inversion was reported (and no deadlock or stuck lock).
pub const EXIT_LOCK_ORDER_INVERSION: u8 = 5;

/// How many findings of each kind a run reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Deadlocks, not counting cycles of timed waits (`will_time_out`): those resolve.
    pub deadlocks: u64,
    /// Stuck locks.
    pub stuck_locks: u64,
    /// Lock-order inversions, not counting harmless ones (all orders under one gate).
    pub inversions: u64,
}

impl Outcome {
    /// Counts `finding`.
    pub fn count(&mut self, finding: &Finding) {
        match finding {
            Finding::Deadlock(d) if !d.will_time_out => self.deadlocks += 1,
            Finding::StuckLock(_) => self.stuck_locks += 1,
            Finding::LockOrderInversion(i) if !i.harmless => self.inversions += 1,
            Finding::Deadlock(_) | Finding::LockOrderInversion(_) => {}
        }
    }

    /// The exit code that says what was found: the most severe kind's.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        if self.deadlocks > 0 {
            EXIT_DEADLOCK
        } else if self.stuck_locks > 0 {
            EXIT_STUCK_LOCK
        } else if self.inversions > 0 {
            EXIT_LOCK_ORDER_INVERSION
        } else {
            EXIT_NOTHING_FOUND
        }
    }
}

/// Passes everything on to `inner`, counting the findings into `outcome`. A finding is
/// counted before it is written, so a run whose reader went away after the first
/// deadlock (`tracer attach … | head -1`) still exits with the deadlock's code.
pub struct OutcomeSink<'a> {
    inner: &'a mut dyn Sink,
    outcome: &'a mut Outcome,
}

impl<'a> OutcomeSink<'a> {
    /// Counts into `outcome` what goes to `inner`.
    pub fn new(inner: &'a mut dyn Sink, outcome: &'a mut Outcome) -> Self {
        Self { inner, outcome }
    }
}

impl Sink for OutcomeSink<'_> {
    fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        self.outcome.count(finding);
        self.inner.finding(finding)
    }

    fn wants_graphs(&self) -> bool {
        self.inner.wants_graphs()
    }

    fn graph(&mut self, graph: &GraphSnapshot) -> io::Result<()> {
        self.inner.graph(graph)
    }

    fn wants_tape(&self) -> bool {
        self.inner.wants_tape()
    }

    fn tape(&mut self, chunk: TapeChunk<'_>) -> io::Result<()> {
        self.inner.tape(chunk)
    }

    fn summary(&mut self, summary: &Summary) -> io::Result<()> {
        self.inner.summary(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HoldMode, HolderState, StuckHolder, StuckLock, fixtures};

    fn stuck_lock() -> Finding {
        let holder = StuckHolder {
            goid: Some(7),
            state: HolderState::Blocked,
            evidence: None,
            acquired_at: None,
            stack: Vec::new(),
            stack_detail: Vec::new(),
        };
        Finding::StuckLock(StuckLock {
            lock: fixtures::lock(0x40, Some("main.mu")),
            mode: HoldMode::Read,
            held_ns: 2_000_000_000,
            holder: holder.clone(),
            holders: vec![holder],
            waiters: 1,
            readers_waiting: 0,
            writers_waiting: 1,
        })
    }

    #[test]
    fn most_severe_kind_wins() {
        let deadlock = Finding::Deadlock(fixtures::deadlock());
        let stuck = stuck_lock();
        let inversion = Finding::LockOrderInversion(fixtures::inversion());
        let code = |findings: &[&Finding]| {
            let mut outcome = Outcome::default();
            for f in findings {
                outcome.count(f);
            }
            outcome.exit_code()
        };
        assert_eq!(code(&[]), EXIT_NOTHING_FOUND);
        assert_eq!(code(&[&inversion]), EXIT_LOCK_ORDER_INVERSION);
        assert_eq!(code(&[&inversion, &stuck]), EXIT_STUCK_LOCK);
        assert_eq!(code(&[&stuck, &deadlock, &inversion]), EXIT_DEADLOCK);
        assert_eq!(code(&[&deadlock]), EXIT_DEADLOCK);
    }

    #[test]
    fn timed_cycles_and_harmless_inversions_are_not_findings_for_the_code() {
        let mut timed = fixtures::deadlock();
        timed.will_time_out = true;
        let mut harmless = fixtures::inversion();
        harmless.harmless = true;
        let mut outcome = Outcome::default();
        outcome.count(&Finding::Deadlock(timed));
        outcome.count(&Finding::LockOrderInversion(harmless));
        assert_eq!(outcome, Outcome::default());
        assert_eq!(outcome.exit_code(), EXIT_NOTHING_FOUND);
    }

    #[test]
    fn codes_are_distinct_and_clear_of_error_and_usage() {
        let codes = [
            EXIT_NOTHING_FOUND,
            EXIT_ERROR,
            EXIT_USAGE,
            EXIT_DEADLOCK,
            EXIT_STUCK_LOCK,
            EXIT_LOCK_ORDER_INVERSION,
        ];
        let distinct: std::collections::BTreeSet<u8> = codes.into_iter().collect();
        assert_eq!(distinct.len(), codes.len());
    }

    #[test]
    fn counts_what_it_passes_on() {
        let mut json = Vec::new();
        let mut inner = super::super::JsonSink::new(&mut json);
        let mut outcome = Outcome::default();
        {
            let mut sink = OutcomeSink::new(&mut inner, &mut outcome);
            sink.finding(&stuck_lock()).unwrap();
            sink.summary(&fixtures::summary()).unwrap();
        }
        assert_eq!(outcome.stuck_locks, 1);
        assert_eq!(outcome.exit_code(), EXIT_STUCK_LOCK);
        drop(inner);
        assert_eq!(String::from_utf8(json).unwrap().lines().count(), 2);
    }
}
