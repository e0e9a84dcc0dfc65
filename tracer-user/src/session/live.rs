//! A session's answers to live questions while it traces (`tracer serve`, `tracer top`): a
//! snapshot of its locks' counters for metrics, the waits going on now for the live view,
//! and the contention profile of a time window for pprof.
//!
//! Questions come over a channel and are answered from the session's own loop, between two
//! drains: the analysis is never shared with another task, and a question costs nothing
//! until it is asked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashSet;
use tokio::sync::{mpsc, oneshot};

use super::{Session, monotonic_ns};
use crate::{
    assemble::{self, GoRuntimeFutexes, Naming as _},
    go::tracker::{GoHoldNow, GoProfile, GoTracker, GoWaitNow},
    model::{
        LockKind,
        live::{
            LiveThread, LiveWait, LockStacks, MAX_LIVE_WAITS, TargetSnapshot, TopSnapshot,
            UnnamedLiveLock, split_top,
        },
        profile::{
            BRIEF_WAITS_COMMENT, ContentionProfile, ProfileSample, STACK_NOT_SAMPLED_FRAME,
            unknown_profile_frame,
        },
        raw::RawStack,
    },
    native::wait_profile::{ProfileEntry, WaitProfile},
};

/// A question to a live session.
#[derive(Debug)]
pub enum LiveRequest {
    /// Its locks' counters now.
    Snapshot(oneshot::Sender<TargetSnapshot>),
    /// Its locks' counters and the waits going on now (`tracer top`), with the stacks of
    /// the lock at `stacks_for` when given.
    Top {
        stacks_for: Option<u64>,
        reply: oneshot::Sender<TopSnapshot>,
    },
    /// The lock waits that end within `duration` from now, by stack and lock.
    Profile {
        duration: Duration,
        reply: oneshot::Sender<ContentionProfile>,
    },
    /// Stop tracing: detach, write the summary, end (the server is shutting down).
    Stop,
}

/// How a served session is asked questions.
#[derive(Debug)]
pub struct LiveLink {
    /// The questions.
    pub requests: mpsc::UnboundedReceiver<LiveRequest>,
    /// Locks with their own series in a snapshot (the rest are summed per kind).
    pub top_locks: usize,
}

/// A profile being collected.
#[derive(Debug)]
pub(super) struct OpenProfile {
    id: u64,
    /// When it ends, `CLOCK_MONOTONIC` nanoseconds.
    until_ns: u64,
    start_unix_ns: u64,
    started_ns: u64,
    reply: oneshot::Sender<ContentionProfile>,
}

/// The live state of a served session.
#[derive(Debug)]
pub(super) struct Live {
    link: LiveLink,
    open: Vec<OpenProfile>,
    next_id: u64,
    /// Go locks reported stuck (for the gauge of those still stuck).
    stuck_reported: FxHashSet<u64>,
    /// Whether the question channel was closed (the server went away).
    closed: bool,
    /// Whether the server asked the session to stop (or went away).
    pub(super) stop: bool,
}

/// Waiting stacks `tracer top` shows for a lock.
const TOP_STACKS: usize = 3;

/// Profiles collected at once at most: each keeps its own bounded table.
const MAX_OPEN_PROFILES: usize = 4;

impl Live {
    pub(super) fn new(link: LiveLink) -> Self {
        Self {
            link,
            open: Vec::new(),
            next_id: 1,
            stuck_reported: FxHashSet::default(),
            closed: false,
            stop: false,
        }
    }

    /// The next question, waiting for one (never resolves once the channel closed).
    pub(super) async fn next_request(&mut self) -> Option<LiveRequest> {
        if self.closed {
            std::future::pending::<()>().await;
        }
        let request = self.link.requests.recv().await;
        if request.is_none() {
            self.closed = true;
            self.stop = true;
        }
        request
    }

    /// When the first open profile ends, if any (`CLOCK_MONOTONIC` ns).
    pub(super) fn next_due_ns(&self) -> Option<u64> {
        self.open.iter().map(|p| p.until_ns).min()
    }

    /// Remembers a stuck lock reported, for the gauge.
    pub(super) fn stuck_reported(&mut self, addr: u64) {
        self.stuck_reported.insert(addr);
    }
}

impl Session {
    /// Answers the questions asked since the last call, and sends the profiles whose
    /// window ended. `pending` is a question taken while the loop slept.
    pub(super) fn serve_live(&mut self, pending: Option<LiveRequest>) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        let mut requests: Vec<LiveRequest> = pending.into_iter().collect();
        loop {
            match live.link.requests.try_recv() {
                Ok(request) => requests.push(request),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    live.stop = true;
                    break;
                }
            }
        }
        for request in requests {
            match request {
                LiveRequest::Stop => live.stop = true,
                LiveRequest::Snapshot(reply) => {
                    let snapshot = self.live_snapshot(&live, true);
                    let _ = reply.send(snapshot);
                }
                LiveRequest::Top { stacks_for, reply } => {
                    let target = self.live_snapshot(&live, true);
                    let _ = reply.send(self.top_snapshot(target, stacks_for));
                }
                LiveRequest::Profile { duration, reply } => {
                    if live.open.len() >= MAX_OPEN_PROFILES {
                        // Dropping the sender tells the asker no profile is coming.
                        continue;
                    }
                    let id = live.next_id;
                    live.next_id += 1;
                    let now = monotonic_ns();
                    self.analysis.start_profile(id);
                    if let Some(go) = self.go.as_mut() {
                        go.start_profile(id);
                    }
                    live.open.push(OpenProfile {
                        id,
                        until_ns: now
                            .saturating_add(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)),
                        start_unix_ns: unix_now_ns(),
                        started_ns: now,
                        reply,
                    });
                }
            }
        }
        let now = monotonic_ns();
        let (due, open): (Vec<_>, Vec<_>) = live.open.drain(..).partition(|p| p.until_ns <= now);
        live.open = open;
        for profile in due {
            self.send_profile(profile, now);
        }
        self.live = Some(live);
    }

    /// Ends the open profiles now (the trace stops), sending what they have.
    pub(super) fn end_live_profiles(&mut self) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        let now = monotonic_ns();
        for profile in live.open.drain(..) {
            self.send_profile(profile, now);
        }
        self.live = Some(live);
    }

    /// The final snapshot of a served session, once it stopped tracing.
    pub(super) fn final_snapshot(&mut self) -> Option<TargetSnapshot> {
        let live = self.live.take()?;
        let snapshot = self.live_snapshot(&live, false);
        self.live = Some(live);
        Some(snapshot)
    }

    fn send_profile(&mut self, open: OpenProfile, now_ns: u64) {
        let Some(waits) = self.analysis.finish_profile(open.id) else {
            return;
        };
        // A Go side replaced since the start (an exec) has no such profile: no Go waits.
        let go_waits = self
            .go
            .as_mut()
            .and_then(|go| go.finish_profile(open.id))
            .unwrap_or_default();
        let profile = self.contention_profile(
            (waits, go_waits),
            (open.start_unix_ns, now_ns.saturating_sub(open.started_ns)),
            STACK_NOT_SAMPLED_FRAME,
        );
        let _ = open.reply.send(profile);
    }

    /// A window's native and Go waits (`(start, duration)` in ns) named as a contention
    /// profile; `unknown_frame` is the frame of waits with no stack.
    pub(super) fn contention_profile(
        &mut self,
        (waits, go_waits): (WaitProfile, GoProfile),
        (start_unix_ns, duration_ns): (u64, u64),
        unknown_frame: &str,
    ) -> ContentionProfile {
        let mut comments = vec![BRIEF_WAITS_COMMENT.to_owned()];
        if waits.overflowed > 0 {
            comments.push(format!(
                "{} waits left out: the window had {} distinct (lock, stack) pairs already",
                waits.overflowed,
                crate::native::wait_profile::MAX_PROFILE_ENTRIES
            ));
        }
        if go_waits.overflowed > 0 {
            comments.push(format!(
                "{} goroutine waits left out: the window had {} distinct (Go lock, stack) pairs already",
                go_waits.overflowed,
                crate::go::lock_model::MAX_GO_PROFILE_ENTRIES
            ));
        }
        let pid = self.config.pid;
        let comm = self.target.thread_name(pid).unwrap_or_default();
        let mut samples = self.native_samples(waits, (pid, &comm), &mut comments, unknown_frame);
        let mut namer = self.namer();
        for wait in go_waits.waits {
            let unknown = matches!(wait.stack, RawStack::Go { pc: 0, .. });
            samples.push(ProfileSample {
                frames: if unknown {
                    vec![unknown_profile_frame(unknown_frame)]
                } else {
                    namer.stack(&wait.stack).frames
                },
                lock: namer.lock(wait.lock).label(),
                lock_addr: wait.lock,
                lock_kind: wait.kind.as_str(),
                pid,
                comm: comm.clone(),
                contentions: wait.count,
                delay_ns: wait.delay_ns,
            });
        }
        ContentionProfile {
            start_unix_ns,
            duration_ns,
            samples,
            comments,
        }
    }

    /// The samples of a window's native lock waits in process `pid` named `comm`. In a Go
    /// program, the futex words where the runtime's threads only sleep idle are no locks
    /// (as in the metrics and the summary): left out, or they would swamp the goroutines'
    /// waits, with a comment in `comments`; the runtime's own locks get the name their
    /// frames give.
    fn native_samples(
        &mut self,
        waits: WaitProfile,
        (pid, comm): (u32, &str),
        comments: &mut Vec<String>,
        unknown_frame: &str,
    ) -> Vec<ProfileSample> {
        let mut waits: Vec<_> = waits
            .spread_unsampled()
            .into_iter()
            .map(|(lock, stack, entry)| (lock, stack, entry, self.analysis.lock_kind(lock)))
            .collect();
        let runtime = if self.go.is_some() {
            let mut words: Vec<u64> = waits
                .iter()
                .filter(|w| w.3 == LockKind::Futex)
                .map(|w| w.0)
                .collect();
            words.sort_unstable();
            words.dedup();
            self.go_runtime_futexes(&words)
        } else {
            GoRuntimeFutexes::default()
        };
        if !runtime.idle.is_empty() {
            let left_out = leave_out_words(&mut waits, &runtime.idle);
            comments.push(format!(
                "{left_out} idle sleeps of the Go runtime's threads on {} futex word(s) are left out (not lock waits)",
                runtime.idle.len()
            ));
        }
        self.learn_rust_heap_names(&[]);
        let mut namer = self.namer();
        waits
            .into_iter()
            .map(|(lock, stack, entry, kind)| {
                let frames = match stack {
                    Some(stack_id) => {
                        // `spread_unsampled` gives window-only stacks no id already.
                        let raw = RawStack::Native {
                            stack_id,
                            window: entry.window,
                            waiter: None,
                        };
                        namer.stack(&raw).frames
                    }
                    None => vec![unknown_profile_frame(unknown_frame)],
                };
                let mut lock_ref = namer.lock(lock);
                runtime.name_lock(&mut lock_ref);
                ProfileSample {
                    frames,
                    lock: lock_ref.label(),
                    lock_addr: lock,
                    lock_kind: kind.as_str(),
                    pid,
                    comm: comm.to_owned(),
                    contentions: entry.count,
                    delay_ns: entry.delay_ns,
                }
            })
            .collect()
    }

    /// The target's locks now: the `top_locks` most waited on, named, and the rest
    /// summed per kind.
    fn live_snapshot(&mut self, live: &Live, attached: bool) -> TargetSnapshot {
        self.fold_brief_waits();
        let mut locks: Vec<UnnamedLiveLock> = self
            .analysis
            .stats()
            .iter()
            .map(|(addr, stats)| UnnamedLiveLock {
                addr,
                kind: self.analysis.lock_kind(addr),
                contentions: stats.contentions,
                wait: stats.wait_buckets(),
                hold: stats.hold_buckets(),
                locks: 1,
            })
            .collect();
        let folded = self.analysis.stats().folded();
        if folded.locks > 0 {
            locks.push(UnnamedLiveLock {
                addr: 0,
                kind: LockKind::Futex,
                contentions: folded.stats.contentions,
                wait: folded.stats.wait_buckets(),
                hold: folded.stats.hold_buckets(),
                locks: folded.locks,
            });
        }
        // In a Go program, the runtime's idle sleeps are no locks and its own locks are
        // named by what took them, as in the summary and the profile.
        let runtime = if self.go.is_some() {
            let words: Vec<u64> = locks
                .iter()
                .filter(|l| l.kind == LockKind::Futex && l.locks == 1)
                .map(|l| l.addr)
                .collect();
            let runtime = self.go_runtime_futexes(&words);
            locks.retain(|l| !runtime.idle.contains(&l.addr));
            runtime
        } else {
            GoRuntimeFutexes::default()
        };
        if let Some(go) = &self.go {
            locks.extend(go.live_locks());
        }
        let (top, other) = split_top(locks, live.link.top_locks);
        let now = monotonic_ns();
        let stuck_locks = self.go.as_ref().map_or(0, |go| {
            live.stuck_reported
                .iter()
                .filter(|&&addr| go.still_stuck(addr, now))
                .count()
        });
        let counters = self.probes.counters().unwrap_or_default();
        let events = self.analysis.counts().events + self.go.as_ref().map_or(0, GoTracker::events);
        let deadlocks =
            self.analysis.deadlocks_reported() + self.go.as_ref().map_or(0, GoTracker::deadlocks);
        let pid = self.config.pid;
        let comm = self.target.thread_name(pid).unwrap_or_default();
        self.learn_rust_heap_names(&[]);
        let mut namer = self.namer();
        let locks = top
            .into_iter()
            .map(|l| crate::model::live::LiveLock {
                lock: {
                    let mut lock = namer.lock(l.addr);
                    runtime.name_lock(&mut lock);
                    lock
                },
                kind: l.kind,
                contentions: l.contentions,
                wait: l.wait,
                hold: l.hold,
            })
            .collect();
        TargetSnapshot {
            pid,
            comm,
            attached,
            locks,
            other,
            deadlocks: u64::try_from(deadlocks).unwrap_or(u64::MAX),
            lock_order_inversions: u64::try_from(self.inversions_reported).unwrap_or(u64::MAX),
            stuck_locks: u64::try_from(stuck_locks).unwrap_or(u64::MAX),
            events,
            dropped: counters.dropped,
            sleep_sample_period: self.sleep_sampling.period(),
        }
    }

    /// The native threads waiting for a lock at `now`, longest first, at most
    /// [`MAX_LIVE_WAITS`]: (thread, lock, waited so far, the lock's holders known), and
    /// how many were left out.
    fn native_waits_now(&self, now: u64) -> (Vec<NativeWaitNow>, usize) {
        let mut waiting: Vec<(u32, u64, u64)> = self
            .analysis
            .active_waits()
            .filter_map(|(tid, wait)| {
                wait.lock
                    .map(|lock| (tid, lock, now.saturating_sub(wait.start_ns)))
            })
            .collect();
        // Longest waiting first: the waits that matter survive the cap.
        waiting.sort_unstable_by_key(|&(tid, _, waited)| (std::cmp::Reverse(waited), tid));
        let left_out = waiting.len().saturating_sub(MAX_LIVE_WAITS);
        waiting.truncate(MAX_LIVE_WAITS);
        let waits = waiting
            .into_iter()
            .map(|(tid, lock, waited)| {
                let holders = self.analysis.graph().holders(lock).collect();
                (tid, lock, waited, holders)
            })
            .collect();
        (waits, left_out)
    }

    /// `target` with the native waits going on now, named, and `stacks_for`'s stacks.
    fn top_snapshot(&mut self, target: TargetSnapshot, stacks_for: Option<u64>) -> TopSnapshot {
        let now = monotonic_ns();
        let (with_holders, waits_left_out) = self.native_waits_now(now);
        let holders_of = |analysis: &crate::native::analysis::Analysis, lock: u64| -> Vec<u32> {
            analysis.graph().holders(lock).collect()
        };
        let held_stacks: Vec<(u32, Option<u32>)> = stacks_for
            .map(|lock| {
                holders_of(&self.analysis, lock)
                    .into_iter()
                    .map(|tid| (tid, self.analysis.held(tid, lock).and_then(|h| h.stack)))
                    .collect()
            })
            .unwrap_or_default();
        let lock_holders: Vec<(u64, u32)> = target
            .locks
            .iter()
            .filter_map(|l| {
                self.analysis
                    .graph()
                    .holders(l.lock.addr)
                    .next()
                    .map(|tid| (l.lock.addr, tid))
            })
            .collect();
        let wait_stacks = stacks_for
            .map(|lock| self.analysis.wait_stacks(lock, TOP_STACKS))
            .unwrap_or_default();
        let (go_waits, go_holds) = self
            .go
            .as_ref()
            .map(GoTracker::waits_now)
            .unwrap_or_default();
        let mut namer = self.namer();
        let mut thread = |tid: u32| LiveThread::native(tid, namer.thread_name(tid));
        let mut waits = Vec::with_capacity(with_holders.len() + go_waits.len());
        for (tid, lock, waited_ns, holders) in with_holders {
            let waiter = thread(tid);
            let holders = holders.into_iter().map(&mut thread).collect();
            waits.push((waiter, lock, waited_ns, holders));
        }
        let mut lock_holders: Vec<(u64, LiveThread)> = lock_holders
            .into_iter()
            .map(|(addr, tid)| (addr, thread(tid)))
            .collect();
        let go_waits_left_out = add_goroutines(
            &mut waits,
            &mut lock_holders,
            (&go_waits, &go_holds),
            (&target, now),
        );
        let waits_left_out = waits_left_out + go_waits_left_out;
        let holders: Vec<(LiveThread, Option<u32>)> = held_stacks
            .into_iter()
            .map(|(tid, stack)| (thread(tid), stack))
            .collect();
        let waits = waits
            .into_iter()
            .map(|(waiter, lock, waited_ns, holders)| LiveWait {
                waiter,
                lock: namer.lock(lock),
                waited_ns,
                holders,
            })
            .collect();
        let stacks = stacks_for.map(|addr| LockStacks {
            addr,
            waiters: wait_stacks
                .into_iter()
                .map(|(stack_id, window)| native_frames(&mut namer, stack_id, Box::new(window)))
                .collect(),
            holders: holders
                .into_iter()
                .map(|(holder, stack)| {
                    let frames = stack.map_or_else(Vec::new, |stack_id| {
                        native_frames(
                            &mut namer,
                            stack_id,
                            Box::new(crate::event::StackWindow::EMPTY),
                        )
                    });
                    (holder, frames)
                })
                .collect(),
        });
        TopSnapshot {
            target,
            waits,
            waits_left_out,
            stacks,
            holders: lock_holders,
        }
    }

    /// In a Go program, what the frames of the waits on the futex words `words` say of
    /// them: where the runtime's threads only slept idle (no locks, as the summary leaves
    /// them out), and the names of the runtime's own locks.
    fn go_runtime_futexes(&mut self, words: &[u64]) -> GoRuntimeFutexes {
        if self.go.is_none() || words.is_empty() {
            return GoRuntimeFutexes::default();
        }
        let analysis = &self.analysis;
        let stacks_of = |addr| super::go_futex_stacks(analysis, addr);
        let mut namer = super::Namer {
            target: &*self.target,
            symbolizer: &mut self.symbolizer,
            code: &mut self.code,
            stacks: &self.probes,
            go: self.go.as_ref().map(GoTracker::names),
            rust_heap_names: None,
        };
        assemble::go_runtime_futex_words(words.iter().copied(), &stacks_of, &mut namer)
    }
}

/// The function names of native stack `stack_id` (with a stack `window` seen with it).
fn native_frames(
    namer: &mut super::Namer<'_>,
    stack_id: u32,
    window: Box<crate::event::StackWindow>,
) -> Vec<String> {
    let raw = RawStack::Native {
        stack_id: Some(stack_id),
        window,
        waiter: None,
    };
    namer.stack(&raw).names
}

/// Leaves the waits on the futex words `words` out of a window's native `waits` (lock,
/// stack, entry, kind); returns how many waits that was.
fn leave_out_words<S>(
    waits: &mut Vec<(u64, S, ProfileEntry, LockKind)>,
    words: &FxHashSet<u64>,
) -> u64 {
    let mut left_out = 0;
    waits.retain(|(lock, _, entry, _)| {
        let leave = words.contains(lock);
        if leave {
            left_out += entry.count;
        }
        !leave
    });
    left_out
}

pub(super) fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A native thread waiting now: (thread, lock, waited so far, the lock's holders known).
type NativeWaitNow = (u32, u64, u64, Vec<u32>);

/// A Go program's goroutines, for `tracer top`: their `sync` lock waits now (`go_waits`,
/// at most [`MAX_LIVE_WAITS`]) added to `waits` with the holders the probes saw
/// (`go_holds`), and a goroutine holder for each lock of `target` with none yet in
/// `lock_holders`; then all the waits, longest first, cut to [`MAX_LIVE_WAITS`].
/// Returns the waits left out.
fn add_goroutines(
    waits: &mut Vec<(LiveThread, u64, u64, Vec<LiveThread>)>,
    lock_holders: &mut Vec<(u64, LiveThread)>,
    (go_waits, go_holds): (&[GoWaitNow], &[GoHoldNow]),
    (target, now): (&TargetSnapshot, u64),
) -> usize {
    let goroutine = |goid: u64, tid: u32| LiveThread {
        tid,
        name: String::new(),
        goid: Some(goid),
    };
    for &(goid, tid, lock, since) in go_waits.iter().take(MAX_LIVE_WAITS) {
        let holders = go_holds
            .iter()
            .filter(|h| h.0 == lock)
            .map(|&(_, goid, tid)| goroutine(goid, tid))
            .collect();
        waits.push((
            goroutine(goid, tid),
            lock,
            now.saturating_sub(since),
            holders,
        ));
    }
    for l in &target.locks {
        if !lock_holders.iter().any(|(addr, _)| *addr == l.lock.addr)
            && let Some(&(_, goid, tid)) = go_holds.iter().find(|h| h.0 == l.lock.addr)
        {
            lock_holders.push((l.lock.addr, goroutine(goid, tid)));
        }
    }
    // Longest waiting first, native and Go together, within the cap.
    waits.sort_by_key(|w| (std::cmp::Reverse(w.2), w.0.key()));
    let left_out =
        go_waits.len().saturating_sub(MAX_LIVE_WAITS) + waits.len().saturating_sub(MAX_LIVE_WAITS);
    waits.truncate(MAX_LIVE_WAITS);
    left_out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StackWindow;

    fn entry(count: u64) -> ProfileEntry {
        ProfileEntry {
            count,
            delay_ns: count * 10,
            window: Box::new(StackWindow::EMPTY),
        }
    }

    /// Guards the Go runtime's idle sleeps left out of a profile: every pair of the idle
    /// words goes (other words stay, in order), and the comment counts their waits, not
    /// their pairs.
    #[test]
    fn idle_words_leave_the_profile_with_their_waits_counted() {
        let (idle, lock) = (0x10, 0x20);
        let mut waits = vec![
            (idle, 1, entry(3), LockKind::Futex),
            (lock, 2, entry(1), LockKind::Futex),
            (idle, 3, entry(4), LockKind::Futex),
            (lock, 4, entry(2), LockKind::Mutex),
        ];
        let words: FxHashSet<u64> = [idle].into_iter().collect();
        assert_eq!(leave_out_words(&mut waits, &words), 3 + 4);
        let kept: Vec<(u64, i32)> = waits.iter().map(|w| (w.0, w.1)).collect();
        assert_eq!(kept, vec![(lock, 2), (lock, 4)]);
    }
}
