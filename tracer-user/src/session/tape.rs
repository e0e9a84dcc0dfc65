//! The analysis tape of `tracer record` (`crate::recording::tape`): what the session
//! feeds its native analysis, copied as it feeds it, and the names of what the analysis
//! will be asked about, given while the target and its symbols are still here. Flushed
//! to the sink about once a second, so a recorder killed mid-trace leaves a tape that
//! plays up to its last second.
use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;

use super::{Session, SessionError, monotonic_ns, threads::LiveThreads};
use crate::{
    assemble::{Naming as _, STACKS_IN_SUMMARY},
    event::StackWindow,
    model::raw::RawStack,
    native::{LockLayout, analysis::WINDOW_ONLY_STACK},
    probes::CounterTotals,
    recording::{
        codec::{self, Wire as _},
        tape::{NamedStack, StackKey, TapeChunk, TapeCounters, TapeItem, TapeNames, TapeSetup},
    },
    sinks::Sink,
};

/// How often the tape goes to the sink while the trace runs.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Record bytes that make the tape go to the sink before its interval is up (a busy
/// target's second of records stays a bounded chunk).
const FLUSH_BYTES: usize = 4 << 20;
/// The profile id of the recorder's whole-run profiles (apart from `--pprof`'s and
/// `tracer serve`'s): their stacks are named for the report's exports.
pub(super) const TAPE_PROFILE: u64 = u64::MAX - 1;
/// Locks whose most frequent waiting stack is named at each flush, the most waited on
/// first (the summary names the top [`STACKS_IN_SUMMARY`]; at the end exactly those).
const TOP_STACKS_PER_FLUSH: usize = 2 * STACKS_IN_SUMMARY;

/// The tape being recorded.
pub(super) struct TapeRecorder {
    setup: TapeSetup,
    setup_written: bool,
    /// The items since the last flush, encoded one after the other (`codec`), and how
    /// many.
    encoded: Vec<u8>,
    items: u32,
    /// The reading of the target's threads last put on the tape.
    threads_read: u64,
    named_locks: FxHashSet<u64>,
    named_stacks: FxHashSet<StackKey>,
    flushed_at: Instant,
}

impl TapeRecorder {
    /// A tape of an analysis set up as `setup` says.
    pub(super) fn new(setup: TapeSetup) -> Self {
        Self {
            setup,
            setup_written: false,
            encoded: Vec::new(),
            items: 0,
            threads_read: 0,
            named_locks: FxHashSet::default(),
            named_stacks: FxHashSet::default(),
            flushed_at: Instant::now(),
        }
    }

    /// Puts `item` on the tape.
    pub(super) fn push(&mut self, item: &TapeItem) {
        item.put(&mut self.encoded);
        self.items += 1;
    }

    /// Puts a record the analysis was given on the tape, after the target's threads if
    /// they were read again since the last record.
    pub(super) fn push_record(&mut self, bytes: &[u8], threads: &LiveThreads) {
        self.note_threads(threads);
        codec::put_record_item(bytes, &mut self.encoded);
        self.items += 1;
    }

    /// Puts the target's threads on the tape when this reading of them is not on it yet.
    pub(super) fn note_threads(&mut self, threads: &LiveThreads) {
        if threads.reads() != self.threads_read {
            self.threads_read = threads.reads();
            self.push(&TapeItem::Threads(threads.ids().pairs()));
        }
    }

    fn due(&self) -> bool {
        self.flushed_at.elapsed() >= FLUSH_INTERVAL || self.encoded.len() >= FLUSH_BYTES
    }
}

/// The key a stack kept by the analysis is named under, as the replay will ask for it.
fn stack_key(stack_id: u32, window: &StackWindow) -> StackKey {
    StackKey {
        stack_id: (stack_id != WINDOW_ONLY_STACK).then_some(stack_id),
        window: *window,
    }
}

impl From<CounterTotals> for TapeCounters {
    fn from(c: CounterTotals) -> Self {
        Self {
            dropped: c.dropped,
            futex_wakes: c.futex_wakes,
            futex_waits: c.futex_waits,
            stack_errors: c.stack_errors,
            unmatched_returns: c.unmatched_returns,
            brief_waits_untracked: c.brief_waits_untracked,
        }
    }
}

impl Session {
    /// Starts the tape of this session (right after the probes are in place, before the
    /// threads blocked already are adopted): its setup, and the threads as read at attach.
    pub(super) fn start_tape(&mut self, lock_uprobes: bool) {
        let mut tape = TapeRecorder::new(TapeSetup {
            musl: self.analysis.layout() == LockLayout::Musl,
            rust_std: self.analysis.rust_std(),
            max_locks: self.config.max_locks,
            lock_uprobes,
            go: self.go.is_some(),
            started_ns: monotonic_ns(),
        });
        tape.note_threads(&self.threads);
        self.analysis.start_profile(TAPE_PROFILE);
        if lock_uprobes {
            self.analysis.start_holder_profile(TAPE_PROFILE);
        }
        self.tape = Some(tape);
    }

    /// Sends the tape to `sink` when it is due (`last`: it is the end of the trace, and
    /// everything the summary and the exports will name is named now).
    pub(super) fn flush_tape(
        &mut self,
        sink: &mut dyn Sink,
        last: bool,
    ) -> Result<(), SessionError> {
        if !self.tape.as_ref().is_some_and(|t| last || t.due()) {
            return Ok(());
        }
        // The end's counters are the summary's, put on the tape by `Session::finish`.
        if !last
            && let Ok(counters) = self.probes.counters()
            && let Some(tape) = self.tape.as_mut()
        {
            tape.push(&TapeItem::Counters(counters.into()));
        }
        let names = self.name_for_tape(last);
        let Some(tape) = self.tape.as_mut() else {
            return Ok(());
        };
        if !tape.setup_written {
            sink.tape(TapeChunk::Setup(&tape.setup))
                .map_err(SessionError::Output)?;
            tape.setup_written = true;
        }
        if tape.items > 0 {
            sink.tape(TapeChunk::Items {
                count: tape.items,
                encoded: &tape.encoded,
            })
            .map_err(SessionError::Output)?;
            tape.encoded.clear();
            tape.items = 0;
        }
        if !names.is_empty() {
            sink.tape(TapeChunk::Names(&names))
                .map_err(SessionError::Output)?;
        }
        tape.flushed_at = Instant::now();
        Ok(())
    }

    /// Names what the analysis holds that the tape has no name for yet: every lock, the
    /// most frequent waiting stack of the most waited-on locks and, at the end (`last`),
    /// every stack of the recorder's profiles.
    fn name_for_tape(&mut self, last: bool) -> TapeNames {
        let Some(tape) = self.tape.as_ref() else {
            return TapeNames::default();
        };
        let mut by_wait: Vec<(u64, u64)> = self
            .analysis
            .stats()
            .iter()
            .map(|(addr, stats)| (addr, stats.wait().total))
            .collect();
        let new_locks: Vec<u64> = by_wait
            .iter()
            .map(|&(addr, _)| addr)
            .filter(|addr| !tape.named_locks.contains(addr))
            .collect();
        by_wait.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top = if last {
            STACKS_IN_SUMMARY
        } else {
            TOP_STACKS_PER_FLUSH
        };
        let mut keys: Vec<StackKey> = by_wait
            .iter()
            .take(top)
            .filter_map(|&(addr, _)| self.analysis.top_wait_stack(addr))
            .map(|(id, window)| stack_key(id, &window))
            .collect();
        if last {
            let (waiters, holders) = self.analysis.profiles(TAPE_PROFILE);
            for profile in [waiters, holders].into_iter().flatten() {
                keys.extend(profile.stacks().map(|(id, window)| StackKey {
                    stack_id: id,
                    window: *window,
                }));
            }
        }
        let mut seen = FxHashSet::default();
        keys.retain(|key| !tape.named_stacks.contains(key) && seen.insert(*key));
        if new_locks.is_empty() && keys.is_empty() {
            return TapeNames::default();
        }
        self.learn_rust_heap_names(&[]);
        let mut namer = self.namer();
        let locks: Vec<_> = new_locks.iter().map(|&addr| namer.lock(addr)).collect();
        let stacks: Vec<(StackKey, NamedStack)> = keys
            .into_iter()
            .map(|key| {
                let stack = namer.stack(&RawStack::Native {
                    stack_id: key.stack_id,
                    window: Box::new(key.window),
                    waiter: None,
                });
                (
                    key,
                    NamedStack {
                        names: stack.names,
                        detail: stack.detail,
                        frames: stack.frames,
                    },
                )
            })
            .collect();
        if let Some(tape) = self.tape.as_mut() {
            tape.named_locks.extend(new_locks);
            tape.named_stacks.extend(stacks.iter().map(|(key, _)| *key));
        }
        TapeNames { locks, stacks }
    }
}
