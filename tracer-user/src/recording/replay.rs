//! A recorded trace analysed again: the tape (`super::tape`) played through the same
//! native lock analysis the live session ran, in the same order, then named with the
//! names the live session gave. What comes out is what the live session's analysis held
//! at the end of the trace: the lock table with its wait (and hold) distributions, the
//! totals, and the whole run's contention profiles, for `tracer report` to print and
//! export. A tape cut short (the recorder was killed) plays up to its last intact chunk.
//!
//! Pure code: no target, no files, no kernel.

use rustc_hash::FxHashMap;

use super::tape::{NamedStack, StackKey, TapeCounters, TapeItem, TapeNames, TapeSetup};
use crate::{
    assemble::{self, Naming, Stack},
    event::{Record, decode},
    exports::ExportProfiles,
    model::{
        LockRef, LockSummary, OtherLocks,
        profile::{
            BRIEF_WAITS_COMMENT, ContentionProfile, HOLDER_NOT_KNOWN_FRAME, HOLDER_PROFILE_COMMENT,
            ProfileFrame, ProfileSample, STACK_NOT_SAMPLED_FRAME, unknown_profile_frame,
        },
        raw::{RawLockStats, RawStack},
    },
    native::{
        LockLayout,
        analysis::{Analysis, ThreadIds, WINDOW_ONLY_STACK},
        wait_profile::WaitProfile,
    },
};

/// The profile id the replay collects the whole tape's waits under.
const REPLAY_PROFILE: u64 = 1;
/// Records played between two flushes of the analysis's pending waits (the live session
/// flushes after each drained batch, at most 4096 records).
const FLUSH_EVERY: usize = 4096;
/// The frame of a profile sample whose stack the recording has no name for.
const STACK_NOT_RECORDED_FRAME: &str = "[stack not named in the recording]";

/// What playing a tape gives.
#[derive(Debug)]
pub struct Replayed {
    /// The native locks, most waited on first, named.
    pub locks: Vec<LockSummary>,
    /// The locks folded to bound memory, together.
    pub other_locks: Option<OtherLocks>,
    /// Records the analysis counted.
    pub events: u64,
    /// Waits that never slept, on lock words.
    pub brief_lock_waits: u64,
    /// The kernel's counters as last recorded.
    pub counters: Option<TapeCounters>,
    /// How long the trace ran (to its end, or to the last record of a tape cut short).
    pub duration_ns: u64,
    /// Whether the tape reached the end of the trace.
    pub complete: bool,
    /// Records that did not decode.
    pub decode_errors: u64,
    /// Records of the Go lock probes: on the tape, but the Go lock model is not replayed.
    pub go_records: u64,
    /// The whole tape's contention profiles (process `pid`, `comm`).
    pub profiles: ExportProfiles,
}

/// Plays `tape` (set up as `setup`) through the native analysis and names the result
/// with `names`; the profiles are of process `pid` named `comm`, starting at
/// `start_unix_ns`.
#[must_use]
pub fn replay(
    setup: &TapeSetup,
    tape: &[TapeItem],
    names: &TapeNames,
    (pid, comm, start_unix_ns): (u32, &str, u64),
) -> Replayed {
    let layout = if setup.musl {
        LockLayout::Musl
    } else {
        LockLayout::Glibc
    };
    let mut analysis = Analysis::for_target(layout, setup.max_locks);
    analysis.set_rust_std(setup.rust_std);
    analysis.start_profile(REPLAY_PROFILE);
    if setup.lock_uprobes {
        analysis.start_holder_profile(REPLAY_PROFILE);
    }
    let Played {
        ended,
        last_ns,
        counters,
        decode_errors,
        go_records,
    } = play(&mut analysis, tape, setup.started_ns);
    analysis.flush();
    analysis.close_open_waits(ended.unwrap_or(last_ns));
    let mut naming = RecordedNames::new(names);
    let locks = lock_table(&analysis, &mut naming);
    let duration_ns = ended.unwrap_or(last_ns).saturating_sub(setup.started_ns);
    let span = (start_unix_ns, duration_ns);
    let waiters = analysis.finish_profile(REPLAY_PROFILE).unwrap_or_default();
    let mut waiter_profile = profile(
        &analysis,
        waiters,
        &mut naming,
        (pid, comm, span),
        STACK_NOT_SAMPLED_FRAME,
    );
    waiter_profile
        .comments
        .insert(0, BRIEF_WAITS_COMMENT.to_owned());
    let holders = analysis.finish_holder_profile(REPLAY_PROFILE).map(|waits| {
        let mut profile = profile(
            &analysis,
            waits,
            &mut naming,
            (pid, comm, span),
            HOLDER_NOT_KNOWN_FRAME,
        );
        profile.comments.push(HOLDER_PROFILE_COMMENT.to_owned());
        profile
    });
    let folded = analysis.stats().folded();
    Replayed {
        locks,
        other_locks: (folded.locks > 0).then(|| OtherLocks {
            locks: folded.locks,
            contentions: folded.stats.contentions,
            wait_ns: folded.stats.wait(),
            hold_ns: folded.stats.hold(),
        }),
        events: analysis.counts().events,
        brief_lock_waits: analysis.counts().brief_lock_waits,
        counters,
        duration_ns,
        complete: ended.is_some(),
        decode_errors,
        go_records,
        profiles: ExportProfiles {
            waiters: waiter_profile,
            holders,
        },
    }
}

/// What playing the items told besides the analysis's state.
struct Played {
    /// When the trace ended, if the tape got there.
    ended: Option<u64>,
    /// The latest time of any item.
    last_ns: u64,
    counters: Option<TapeCounters>,
    decode_errors: u64,
    go_records: u64,
}

/// Gives `analysis` the tape's items, in order.
fn play(analysis: &mut Analysis, tape: &[TapeItem], started_ns: u64) -> Played {
    let mut tids = ThreadIds::default();
    let mut counters = None;
    let mut ended = None;
    let mut last_ns = started_ns;
    let (mut decode_errors, mut go_records, mut played) = (0, 0, 0);
    for item in tape {
        match item {
            TapeItem::Record(bytes) => {
                played += 1;
                match decode(bytes) {
                    Ok(Record::Native(event)) => {
                        last_ns = last_ns.max(event.ts_ns());
                        analysis.on_event(&event, &tids);
                    }
                    Ok(Record::NativeSite {
                        op,
                        tid,
                        ts_ns,
                        addr,
                    }) => {
                        last_ns = last_ns.max(ts_ns);
                        analysis.on_slow_path(tid, ts_ns, addr, op);
                    }
                    // The program the target executed: its locks go on in the same
                    // table, as the live summary merges the programs' tables.
                    Ok(Record::Exec { ts_ns, .. }) => {
                        analysis.close_open_waits(ts_ns);
                    }
                    Ok(Record::Slept(slept)) => {
                        last_ns = last_ns.max(slept.end_ns);
                        let window = slept.window();
                        for event in slept.events(&window) {
                            analysis.on_event(&event, &tids);
                        }
                    }
                    Ok(Record::Go(_)) => go_records += 1,
                    Err(_) => decode_errors += 1,
                }
                if played % FLUSH_EVERY == 0 {
                    analysis.flush();
                }
            }
            TapeItem::Threads(pairs) => {
                tids = ThreadIds::from_namespace_pairs(pairs.iter().copied());
            }
            TapeItem::BriefWaits(totals) => analysis.on_brief_waits(totals),
            TapeItem::Parked(tid) => analysis.mark_parked(*tid),
            TapeItem::Counters(c) => counters = Some(*c),
            TapeItem::End(at_ns) => {
                ended = Some(*at_ns);
                last_ns = last_ns.max(*at_ns);
            }
        }
    }
    Played {
        ended,
        last_ns,
        counters,
        decode_errors,
        go_records,
    }
}

/// The analysis's lock table, named (as the live session's summary builds it).
fn lock_table(analysis: &Analysis, naming: &mut RecordedNames) -> Vec<LockSummary> {
    let locks: Vec<RawLockStats> = analysis
        .stats()
        .iter()
        .map(|(addr, stats)| RawLockStats {
            addr,
            kind: analysis.lock_kind(addr),
            contentions: stats.contentions,
            max_waiters: stats.max_waiters,
            wait_ns: stats.wait(),
            hold_ns: stats.hold(),
        })
        .collect();
    let top_waiter = |addr| match analysis.top_wait_stack(addr) {
        Some((id, window)) => RawStack::Native {
            stack_id: (id != WINDOW_ONLY_STACK).then_some(id),
            window: Box::new(window),
            waiter: None,
        },
        None => RawStack::None,
    };
    assemble::lock_summaries(&locks, &top_waiter, naming)
}

/// A profile of `waits`, named; a stack the waits came without is `unknown_frame`.
fn profile(
    analysis: &Analysis,
    waits: WaitProfile,
    naming: &mut RecordedNames,
    (pid, comm, (start_unix_ns, duration_ns)): (u32, &str, (u64, u64)),
    unknown_frame: &str,
) -> ContentionProfile {
    let mut comments = Vec::new();
    if waits.overflowed > 0 {
        comments.push(format!(
            "{} waits left out: the window had {} distinct (lock, stack) pairs already",
            waits.overflowed,
            crate::native::wait_profile::MAX_PROFILE_ENTRIES
        ));
    }
    let samples = waits
        .spread_unsampled()
        .into_iter()
        .map(|(lock, stack, entry)| {
            let frames = match stack {
                Some(stack_id) => {
                    let frames = naming.named_frames(&StackKey {
                        stack_id,
                        window: *entry.window,
                    });
                    if frames.is_empty() {
                        vec![unknown_profile_frame(STACK_NOT_RECORDED_FRAME)]
                    } else {
                        frames
                    }
                }
                None => vec![unknown_profile_frame(unknown_frame)],
            };
            ProfileSample {
                frames,
                lock: naming.lock(lock).label(),
                lock_addr: lock,
                lock_kind: analysis.lock_kind(lock).as_str(),
                pid,
                comm: comm.to_owned(),
                contentions: entry.count,
                delay_ns: entry.delay_ns,
            }
        })
        .collect();
    ContentionProfile {
        start_unix_ns,
        duration_ns,
        samples,
        comments,
    }
}

/// The names the live session gave, as a [`Naming`]: what it did not name stays an
/// address (a lock) or empty (a stack).
struct RecordedNames {
    locks: FxHashMap<u64, LockRef>,
    stacks: FxHashMap<StackKey, NamedStack>,
}

impl RecordedNames {
    fn new(names: &TapeNames) -> Self {
        Self {
            locks: names.locks.iter().map(|l| (l.addr, l.clone())).collect(),
            stacks: names.stacks.iter().cloned().collect(),
        }
    }

    fn named_frames(&self, key: &StackKey) -> Vec<ProfileFrame> {
        self.stacks
            .get(key)
            .map(|s| s.frames.clone())
            .unwrap_or_default()
    }
}

impl Naming for RecordedNames {
    fn lock(&mut self, addr: u64) -> LockRef {
        self.locks.get(&addr).cloned().unwrap_or(LockRef {
            addr,
            name: None,
            location: None,
            name_source: None,
        })
    }

    fn stack(&mut self, stack: &RawStack) -> Stack {
        let RawStack::Native {
            stack_id, window, ..
        } = stack
        else {
            return Stack::default();
        };
        let key = StackKey {
            stack_id: *stack_id,
            window: **window,
        };
        self.stacks
            .get(&key)
            .map(|s| Stack {
                names: s.names.clone(),
                detail: s.detail.clone(),
                frames: s.frames.clone(),
            })
            .unwrap_or_default()
    }

    fn thread_name(&mut self, _tid: u32) -> String {
        String::new()
    }

    /// Only asked when naming findings, which the recording keeps named already.
    fn is_lock_internal(&self, _function: &str) -> bool {
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use tracer_common::futex_cmd;

    use super::*;
    use crate::{
        event::{StackWindow, TraceEvent, encode_bytes},
        recording::{codec, tape::TapeCounters},
        session::test_support::mutex_wait,
    };

    const LOCK: u64 = 0x5000;

    fn wait_done(tid: u32, ts_ns: u64) -> TraceEvent<'static> {
        TraceEvent::FutexWaitDone {
            tid,
            ts_ns,
            addr: LOCK,
            cmd: futex_cmd::WAIT,
            val: 2,
            ret: 0,
        }
    }

    fn record(event: &TraceEvent<'_>) -> TapeItem {
        TapeItem::Record(encode_bytes(event))
    }

    fn setup() -> TapeSetup {
        TapeSetup {
            max_locks: 100,
            started_ns: 1_000,
            ..TapeSetup::default()
        }
    }

    /// Three waits of 10, 20 and 30 µs on one mutex held by thread 102, then the end.
    fn tape() -> Vec<TapeItem> {
        let mut tape = vec![TapeItem::Threads(vec![(100, 100), (101, 101), (102, 102)])];
        for (i, micros) in [10_u64, 20, 30].into_iter().enumerate() {
            let start = 10_000 + 100_000 * i as u64;
            tape.push(record(&mutex_wait(101, start, LOCK, 102)));
            tape.push(record(&wait_done(101, start + micros * 1000)));
        }
        tape.push(TapeItem::Counters(TapeCounters {
            dropped: 3,
            futex_wakes: 7,
            ..TapeCounters::default()
        }));
        tape.push(TapeItem::End(1_000_000));
        tape
    }

    /// Guards the replay of a tape: the analysis it runs gets the lock's waits, their
    /// distribution and the kernel's counters from the items, and names the lock with the
    /// recorded name; a tape without its end still gives the waits before the cut.
    #[test]
    fn a_tape_replays_into_the_lock_table_and_profiles() {
        let names = TapeNames {
            locks: vec![LockRef {
                addr: LOCK,
                name: Some("table_lock".to_owned()),
                location: None,
                name_source: None,
            }],
            stacks: Vec::new(),
        };
        let replayed = replay(&setup(), &tape(), &names, (100, "t", 0));
        assert!(replayed.complete);
        assert_eq!(replayed.duration_ns, 999_000);
        assert_eq!(replayed.counters.map(|c| c.dropped), Some(3));
        assert_eq!(replayed.locks.len(), 1);
        let lock = &replayed.locks[0];
        assert_eq!(lock.lock.name.as_deref(), Some("table_lock"));
        assert_eq!(lock.contentions, 3);
        assert_eq!(lock.wait_ns.count, 3);
        assert!(
            (59_000..=61_000).contains(&lock.wait_ns.total),
            "{:?}",
            lock.wait_ns
        );
        let samples = &replayed.profiles.waiters.samples;
        assert_eq!(samples.iter().map(|s| s.contentions).sum::<u64>(), 3);
        assert_eq!(samples[0].lock, "table_lock");

        let mut cut = tape();
        cut.truncate(5);
        let replayed = replay(&setup(), &cut, &names, (100, "t", 0));
        assert!(!replayed.complete);
        assert_eq!(replayed.locks[0].contentions, 2, "the waits before the cut");
    }

    /// Guards the tape's encoding: every kind of item, a stack key and its named stack
    /// read back as written.
    #[test]
    fn tape_items_and_names_round_trip() {
        let mut items = tape();
        items.push(TapeItem::Parked(9));
        items.push(TapeItem::BriefWaits(vec![(
            LOCK,
            tracer_common::BriefWaits {
                count: 4,
                op: 128,
                val: 2,
            },
        )]));
        let bytes = codec::encode_list(&items);
        assert_eq!(codec::decode::<Vec<TapeItem>>(&bytes).unwrap(), items);
        let mut window = StackWindow {
            ip: 0x40_1000,
            sp: 0x7ff0_0000,
            len: 2,
            ..StackWindow::EMPTY
        };
        window.words[0] = 0x40_2000;
        window.words[1] = 0x40_3000;
        let names = TapeNames {
            locks: Vec::new(),
            stacks: vec![(
                StackKey {
                    stack_id: Some(7),
                    window,
                },
                NamedStack {
                    names: vec!["worker".to_owned()],
                    detail: vec!["worker (w.c:3)".to_owned()],
                    frames: vec![ProfileFrame {
                        function: "worker".to_owned(),
                        file: Some("w.c".to_owned()),
                        line: Some(3),
                        object: None,
                        address: 0x40_1000,
                    }],
                },
            )],
        };
        let bytes = codec::encode(&names);
        assert_eq!(codec::decode::<TapeNames>(&bytes).unwrap(), names);
    }
}
