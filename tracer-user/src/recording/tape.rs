//! The analysis tape of a recording: everything the live session fed its native lock
//! analysis, in the order it fed it, and the names the live session gave what the
//! analysis will ask named. `tracer report` plays the tape through the same analysis
//! (`super::replay`) to get the summary and the exported profiles again, after the target
//! is gone and on any machine. Pure values; their encoding is in `super::codec`.

use tracer_common::BriefWaits;

use crate::{
    event::StackWindow,
    model::{LockRef, profile::ProfileFrame},
};

/// How the live session set its analysis up: what a replay needs before the first item.
/// Written once, right after the header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts of the recorded session, each a field of the format"
)]
pub struct TapeSetup {
    /// The C library's lock layout: 0 glibc, 1 musl (`crate::native::LockLayout`).
    pub musl: bool,
    /// Whether futex words are read as Rust `std` locks (a Rust program).
    pub rust_std: bool,
    /// Native locks tracked before the coldest are folded (`--max-locks`).
    pub max_locks: usize,
    /// Whether acquisitions and releases were traced (`--holds`, or musl's lock uprobes):
    /// the replay then also collects a holder profile.
    pub lock_uprobes: bool,
    /// Whether the target was a Go program at attach: its goroutine-level lock model reads
    /// the live process's memory, so only its native (futex) side is on the tape.
    pub go: bool,
    /// `CLOCK_MONOTONIC` when the trace started (ns): the zero of the tape's durations.
    pub started_ns: u64,
}

/// The kernel's counters as last read (see `crate::probes::CounterTotals`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapeCounters {
    pub dropped: u64,
    pub futex_wakes: u64,
    pub futex_waits: u64,
    pub stack_errors: u64,
    pub unmatched_returns: u64,
    pub brief_waits_untracked: u64,
}

/// One input of the analysis, in the order the live session applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TapeItem {
    /// A ring-buffer record, as the kernel wrote it (or, for a thread found blocked at
    /// attach, the wait record the session made of it: `crate::event::encode_bytes`).
    Record(Vec<u8>),
    /// The target's threads as the session read them: (host TID, TID in the target's PID
    /// namespace) pairs. Applies to the records after it.
    Threads(Vec<(u32, u32)>),
    /// The kernel's totals of waits that never slept, per futex word, as last read.
    BriefWaits(Vec<(u64, BriefWaits)>),
    /// A thread found blocked at attach that glibc parked for good (a PI mutex refused).
    Parked(u32),
    /// The kernel's counters.
    Counters(TapeCounters),
    /// The trace ended at this `CLOCK_MONOTONIC` time (ns): waits still open end here.
    End(u64),
}

/// A stack as the analysis keeps it (the kernel's stack id, and the window of words the
/// wait record carried): the key of a stack's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub stack_id: Option<u32>,
    pub window: StackWindow,
}

/// A stack named as the live session named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedStack {
    pub names: Vec<String>,
    pub detail: Vec<String>,
    pub frames: Vec<ProfileFrame>,
}

/// Names given since the last chunk of names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapeNames {
    pub locks: Vec<LockRef>,
    pub stacks: Vec<(StackKey, NamedStack)>,
}

impl TapeNames {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty() && self.stacks.is_empty()
    }
}

/// What the session hands a recording sink besides findings and the summary.
#[derive(Clone, Copy, Debug)]
pub enum TapeChunk<'a> {
    /// The analysis's setup: first, once.
    Setup(&'a TapeSetup),
    /// Items since the last chunk: `count` of them, each encoded (`super::codec`) in
    /// `encoded`, one after the other.
    Items { count: u32, encoded: &'a [u8] },
    /// Names given since the last names.
    Names(&'a TapeNames),
    /// The whole run's contention profiles, named, at the end: a Go target's (its
    /// goroutines' waits are not on the tape, so no replay can make them).
    Profiles(&'a crate::exports::ExportProfiles),
}
