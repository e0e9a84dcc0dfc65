//! What a futex wait of a Go program is, read from its frames. Pure: works on function
//! names, innermost first, as the pclntab gives them (inlined frames included).
//!
//! The Go runtime sleeps on futexes for two unrelated reasons:
//! - its internal locks (`runtime.mutex`, taken by `runtime.lock` → `runtime.lock2`),
//!   which guard channels, the scheduler, timers, the heap…: real lock contention, kept and
//!   named by what the frames say the lock protects;
//! - notes and the parking of idle threads (`notesleep`, `notetsleep`, `stopm`, …): a
//!   thread with nothing to do, or sysmon between its rounds. Like a condition-variable
//!   wait, nobody holds anything the sleeper needs, so these are not contention.
//!
//! The stack of a wait may carry stale return addresses found in the stack window, so
//! the lock implementation anywhere in the stack wins over an idle function: a lock wait
//! is a lock wait even when an old `notetsleep_internal` return address lies above it.
//!
//! From Go 1.24 a runtime lock's waiter sleeps on its own thread's semaphore, not on the
//! lock: [`SemasleepLocks`] finds the lock in its stack.
use std::ops::Range;

/// What a Go runtime futex wait is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoFutexWait {
    /// A wait for a runtime-internal lock. `caller` is the first function outside the
    /// lock implementation (what took the lock), `guards` what that function says the
    /// lock protects, when it is one whose lock is known.
    RuntimeLock {
        caller: Option<String>,
        guards: Option<Guarded>,
    },
    /// A note sleep or an idle thread parked: not lock contention.
    Idle,
    /// Neither: not recognised as a runtime wait (cgo code, a raw futex, no stack).
    Unknown,
}

/// What a runtime lock protects, as far as the function that took it tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarded {
    Channel,
    Scheduler,
    Timers,
    Heap,
    Semaphores,
    Netpoll,
}

impl Guarded {
    fn label(self) -> &'static str {
        match self {
            Self::Channel => "channel lock",
            Self::Scheduler => "scheduler lock",
            Self::Timers => "timer lock",
            Self::Heap => "heap lock",
            Self::Semaphores => "semaphore table lock",
            Self::Netpoll => "netpoll descriptor lock",
        }
    }
}

/// The runtime's lock implementation, from the futex call out to `runtime.lock` (the
/// outer ones are inlined into the caller in builds without lock ranking).
const LOCK_IMPLEMENTATION: &[&str] = &[
    "runtime.lock2",
    "runtime.lockWithRank",
    "runtime.lock",
    "runtime.lockWithRankMayAcquire",
];

/// Frames below the lock implementation, which say nothing about the wait.
const FUTEX_CALL: &[&str] = &["runtime.futex", "runtime.futexsleep"];

/// Functions in which a thread sleeps with nothing to do: note sleeps (sysmon between
/// rounds, the template thread, an M parked on its `park` note) and idle M parking.
const IDLE: &[&str] = &[
    "runtime.notesleep",
    "runtime.notetsleep",
    "runtime.notetsleep_internal",
    "runtime.notetsleepg",
    "runtime.mPark",
    "runtime.stopm",
    "runtime.stoplockedm",
    "runtime.stopTheWorldGC",
    "runtime.templateThread",
];

/// Callers whose locks are known, by exact function name. Only functions whose lock is
/// unambiguous are listed: anything else is named by its caller alone.
const GUARDS: &[(&str, Guarded)] = &[
    ("runtime.chanrecv", Guarded::Channel),
    ("runtime.chanrecv1", Guarded::Channel),
    ("runtime.chanrecv2", Guarded::Channel),
    ("runtime.chansend", Guarded::Channel),
    ("runtime.chansend1", Guarded::Channel),
    ("runtime.closechan", Guarded::Channel),
    ("runtime.selectgo", Guarded::Channel),
    ("runtime.sellock", Guarded::Channel),
    ("runtime.selectnbsend", Guarded::Channel),
    ("runtime.selectnbrecv", Guarded::Channel),
    ("runtime.reflect_chansend", Guarded::Channel),
    ("runtime.reflect_chanrecv", Guarded::Channel),
    ("runtime.sysmon", Guarded::Scheduler),
    ("runtime.schedule", Guarded::Scheduler),
    ("runtime.findrunnable", Guarded::Scheduler),
    ("runtime.findRunnable", Guarded::Scheduler),
    ("runtime.startm", Guarded::Scheduler),
    ("runtime.handoffp", Guarded::Scheduler),
    ("runtime.injectglist", Guarded::Scheduler),
    ("runtime.globrunqget", Guarded::Scheduler),
    ("runtime.goschedImpl", Guarded::Scheduler),
    ("runtime.gopreempt_m", Guarded::Scheduler),
    ("runtime.exitsyscall0", Guarded::Scheduler),
    ("runtime.exitsyscallfast_pidle", Guarded::Scheduler),
    ("runtime.entersyscall_sysmon", Guarded::Scheduler),
    ("runtime.entersyscall_gcwait", Guarded::Scheduler),
    ("runtime.entersyscallblock_handoff", Guarded::Scheduler),
    ("runtime.retake", Guarded::Scheduler),
    ("runtime.checkdead", Guarded::Scheduler),
    ("runtime.newm", Guarded::Scheduler),
    ("runtime.allocm", Guarded::Scheduler),
    ("runtime.mexit", Guarded::Scheduler),
    ("runtime.wakep", Guarded::Scheduler),
    ("runtime.stopTheWorldWithSema", Guarded::Scheduler),
    ("runtime.startTheWorldWithSema", Guarded::Scheduler),
    ("runtime.procresize", Guarded::Scheduler),
    ("runtime.gcstopm", Guarded::Scheduler),
    ("runtime.forEachP", Guarded::Scheduler),
    ("runtime.addtimer", Guarded::Timers),
    ("runtime.deltimer", Guarded::Timers),
    ("runtime.modtimer", Guarded::Timers),
    ("runtime.resettimer", Guarded::Timers),
    ("runtime.cleantimers", Guarded::Timers),
    ("runtime.adjusttimers", Guarded::Timers),
    ("runtime.runtimer", Guarded::Timers),
    ("runtime.moveTimers", Guarded::Timers),
    ("runtime.clearDeletedTimers", Guarded::Timers),
    ("runtime.checkTimers", Guarded::Timers),
    ("runtime.(*mheap).alloc", Guarded::Heap),
    ("runtime.(*mheap).allocSpan", Guarded::Heap),
    ("runtime.(*mheap).allocManual", Guarded::Heap),
    ("runtime.(*mheap).freeSpan", Guarded::Heap),
    ("runtime.(*mheap).freeManual", Guarded::Heap),
    ("runtime.(*mheap).grow", Guarded::Heap),
    ("runtime.(*mheap).reclaimChunk", Guarded::Heap),
    ("runtime.(*mheap).scavengeAll", Guarded::Heap),
    ("runtime.semacquire1", Guarded::Semaphores),
    ("runtime.semrelease1", Guarded::Semaphores),
    ("runtime.notifyListAdd", Guarded::Semaphores),
    ("runtime.notifyListWait", Guarded::Semaphores),
    ("runtime.notifyListNotifyAll", Guarded::Semaphores),
    ("runtime.notifyListNotifyOne", Guarded::Semaphores),
    ("runtime.netpollblock", Guarded::Netpoll),
    ("runtime.netpollunblock", Guarded::Netpoll),
    ("runtime.poll_runtime_pollOpen", Guarded::Netpoll),
    ("runtime.poll_runtime_pollClose", Guarded::Netpoll),
    ("internal/poll.runtime_pollOpen", Guarded::Netpoll),
    ("internal/poll.runtime_pollSetDeadline", Guarded::Netpoll),
    ("internal/poll.runtime_pollUnblock", Guarded::Netpoll),
    ("runtime.poll_runtime_pollSetDeadline", Guarded::Netpoll),
    ("runtime.poll_runtime_pollUnblock", Guarded::Netpoll),
];

/// Classifies one futex wait of a Go program from its frames (function names, innermost
/// first).
#[must_use]
pub fn classify<S: AsRef<str>>(frames: &[S]) -> GoFutexWait {
    let names: Vec<&str> = frames.iter().map(AsRef::as_ref).collect();
    if let Some(last_lock_frame) = names
        .iter()
        .rposition(|name| LOCK_IMPLEMENTATION.contains(name))
    {
        let caller = names[last_lock_frame + 1..]
            .iter()
            .find(|name| !FUTEX_CALL.contains(name) && !LOCK_IMPLEMENTATION.contains(name));
        // Only the function that took the lock says what it guards: an outer frame may
        // be anything (a lock taken in `schedule` under a goroutine's `selectgo`).
        let guards = caller.and_then(|caller| {
            GUARDS
                .iter()
                .find(|(function, _)| function == caller)
                .map(|&(_, guarded)| guarded)
        });
        return GoFutexWait::RuntimeLock {
            caller: caller.map(|c| (*c).to_owned()),
            guards,
        };
    }
    if names.iter().any(|name| IDLE.contains(name)) {
        return GoFutexWait::Idle;
    }
    GoFutexWait::Unknown
}

/// What the report says of a futex word of a Go program, from all the waits on it that
/// carry a stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoFutexVerdict {
    /// Every classified wait on it was an idle sleep: leave it out of the locks, like a
    /// condition variable.
    Idle,
    /// A runtime lock, with the name to show for it.
    RuntimeLock(String),
    /// Nothing known (no stack, or frames that are neither): keep it as it is.
    Unknown,
}

/// The verdict for a futex word from the classes of the waits on it: a single runtime
/// lock wait makes it a lock (contention was seen), idle sleeps alone leave it out.
#[must_use]
pub fn verdict(waits: &[GoFutexWait]) -> GoFutexVerdict {
    let lock = waits.iter().find_map(|w| match w {
        GoFutexWait::RuntimeLock { caller, guards } => Some((caller, guards)),
        _ => None,
    });
    if let Some((caller, guards)) = lock {
        return GoFutexVerdict::RuntimeLock(lock_name(caller.as_deref(), *guards));
    }
    if !waits.is_empty() && waits.iter().all(|w| *w == GoFutexWait::Idle) {
        return GoFutexVerdict::Idle;
    }
    GoFutexVerdict::Unknown
}

/// `channel lock (runtime.chanrecv)`, `runtime lock (runtime.gcStart)` when the caller
/// says nothing more, `runtime lock` when no caller is known.
fn lock_name(caller: Option<&str>, guards: Option<Guarded>) -> String {
    let what = guards.map_or("runtime lock", Guarded::label);
    match caller {
        Some(caller) => format!("{what} ({caller})"),
        None => what.to_owned(),
    }
}

/// Where the Go runtime's own locks put their waiters to sleep from Go 1.24 on: `lock2`
/// (`lock_spinbit.go`) parks a waiting thread on its M's semaphore (`semasleep`, a futex
/// wait on `m.waitsema`), not on the lock's word as before. The futex word then says
/// nothing of the lock; the waiter's stack does: `lock2`'s first argument, the lock,
/// sits in its argument spill slot, two words above the frame pointer `lock2` saved
/// (Go's register ABI spills arguments to the caller's frame, right above the return
/// address), and `semasleep`'s frame holds that frame pointer next to its return address
/// into `lock2`. Both come from the window of stack words the kernel copies at the wait.
///
/// Addresses are the running program's (the load bias applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SemasleepLocks {
    lock2: Range<u64>,
    semasleep: Range<u64>,
}

impl SemasleepLocks {
    /// The code of `runtime.lock2` and of `runtime.semasleep` (which Linux builds have
    /// only from Go 1.24, where `lock2` sleeps through it).
    #[must_use]
    pub fn new(lock2: Range<u64>, semasleep: Range<u64>) -> Self {
        Self { lock2, semasleep }
    }

    /// The runtime lock a futex wait waits for, if it is `lock2`'s sleep in `semasleep`:
    /// `words` are the waiter's stack from `sp` upwards. `None` for any other wait, and
    /// when the window does not reach `lock2`'s argument.
    #[must_use]
    pub fn lock_of(&self, sp: u64, words: &[u64]) -> Option<u64> {
        let index_of = |addr: u64| -> Option<usize> {
            let offset = addr.checked_sub(sp)?;
            let index = usize::try_from(offset / 8).ok()?;
            (offset % 8 == 0 && index < words.len()).then_some(index)
        };
        // `futexsleep`'s return address into `semasleep`, then `semasleep`'s saved frame
        // pointer (`lock2`'s) and return address into `lock2`, in that order upwards.
        let in_semasleep = words.iter().position(|w| self.semasleep.contains(w))?;
        let (saved, _) = words
            .windows(2)
            .enumerate()
            .skip(in_semasleep + 1)
            .find(|(_, pair)| self.lock2.contains(&pair[1]))?;
        let frame = index_of(words[saved])?;
        // A caller's frame lies above its callee's.
        if frame <= saved + 1 {
            return None;
        }
        let lock = *words.get(frame + 2)?;
        (lock != 0 && lock % 8 == 0).then_some(lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stack the issue reported on prometheus 2.42 (go1.19.8), as the pclntab names
    /// it: sysmon taking `sched.lock`, with stale `notetsleep_internal` and
    /// `sigprocmask` return addresses from the stack window among the real frames.
    const SYSMON_SCHED_LOCK: &[&str] = &[
        "runtime.futex",
        "runtime.futexsleep",
        "runtime.notetsleep_internal",
        "runtime.lock2",
        "runtime.lockWithRank",
        "runtime.lock",
        "runtime.sysmon",
        "runtime.sigprocmask",
        "runtime.mstart1",
        "runtime.mstart0",
        "runtime.mstart",
    ];

    #[test]
    fn a_runtime_lock_under_sysmon_is_the_scheduler_lock_despite_stale_note_frames() {
        let class = classify(SYSMON_SCHED_LOCK);
        assert_eq!(
            class,
            GoFutexWait::RuntimeLock {
                caller: Some("runtime.sysmon".into()),
                guards: Some(Guarded::Scheduler)
            }
        );
        assert_eq!(
            verdict(&[class]),
            GoFutexVerdict::RuntimeLock("scheduler lock (runtime.sysmon)".into())
        );
    }

    #[test]
    fn a_channel_lock_is_named_by_the_channel_operation() {
        let frames = [
            "runtime.futex",
            "runtime.futexsleep",
            "runtime.lock2",
            "runtime.lockWithRank",
            "runtime.lock",
            "runtime.chanrecv",
            "runtime.chanrecv2",
            "main.consumer",
        ];
        assert_eq!(
            verdict(&[classify(&frames)]),
            GoFutexVerdict::RuntimeLock("channel lock (runtime.chanrecv)".into())
        );
        let select = [
            "runtime.futex",
            "runtime.lock2",
            "runtime.lock",
            "runtime.sellock",
            "runtime.selectgo",
            "main.loop",
        ];
        assert_eq!(
            verdict(&[classify(&select)]),
            GoFutexVerdict::RuntimeLock("channel lock (runtime.sellock)".into())
        );
    }

    #[test]
    fn an_unknown_caller_gives_a_plain_runtime_lock() {
        let frames = ["runtime.futex", "runtime.lock2", "runtime.gcStart"];
        assert_eq!(
            verdict(&[classify(&frames)]),
            GoFutexVerdict::RuntimeLock("runtime lock (runtime.gcStart)".into())
        );
        assert_eq!(
            verdict(&[classify(&["runtime.futex", "runtime.lock2"])]),
            GoFutexVerdict::RuntimeLock("runtime lock".into())
        );
        // An outer channel operation says nothing of a lock taken further in.
        let nested = [
            "runtime.futex",
            "runtime.lock2",
            "runtime.lock",
            "runtime.(*mheap).alloc",
            "runtime.mallocgc",
            "runtime.chanrecv",
        ];
        assert_eq!(
            verdict(&[classify(&nested)]),
            GoFutexVerdict::RuntimeLock("heap lock (runtime.(*mheap).alloc)".into())
        );
        let unknown_inner = ["runtime.lock2", "runtime.gcStart", "runtime.chanrecv"];
        assert_eq!(
            verdict(&[classify(&unknown_inner)]),
            GoFutexVerdict::RuntimeLock("runtime lock (runtime.gcStart)".into())
        );
    }

    #[test]
    fn note_sleeps_and_idle_parking_are_not_locks() {
        let sysmon_sleep = [
            "runtime.futex",
            "runtime.futexsleep",
            "runtime.notetsleep_internal",
            "runtime.notetsleep",
            "runtime.sysmon",
            "runtime.mstart1",
        ];
        let idle_m = [
            "runtime.futex",
            "runtime.futexsleep",
            "runtime.notesleep",
            "runtime.mPark",
            "runtime.stopm",
            "runtime.findrunnable",
            "runtime.schedule",
        ];
        assert_eq!(classify(&sysmon_sleep), GoFutexWait::Idle);
        assert_eq!(classify(&idle_m), GoFutexWait::Idle);
        assert_eq!(
            verdict(&[classify(&sysmon_sleep), classify(&idle_m)]),
            GoFutexVerdict::Idle
        );
    }

    /// A word where one wait was a lock wait is a lock, whatever else slept on it; and a
    /// word with no classified wait keeps its place in the report.
    #[test]
    fn one_lock_wait_makes_a_lock_and_nothing_known_changes_nothing() {
        let idle = classify(&["runtime.futex", "runtime.notesleep", "runtime.stopm"]);
        let lock = classify(SYSMON_SCHED_LOCK);
        assert!(matches!(
            verdict(&[idle.clone(), lock]),
            GoFutexVerdict::RuntimeLock(_)
        ));
        assert_eq!(verdict(&[]), GoFutexVerdict::Unknown);
        let cgo = classify(&["__lll_lock_wait", "pthread_mutex_lock", "main._Cfunc_f"]);
        assert_eq!(cgo, GoFutexWait::Unknown);
        assert_eq!(verdict(&[idle, cgo]), GoFutexVerdict::Unknown);
    }
    /// A waiter's stack as Go 1.25 lays it out at the futex call (`futexsleep` 0x40,
    /// `semasleep` 0x20 and `lock2` 0x50 bytes of frame): the lock is `lock2`'s spilled
    /// argument, found through `semasleep`'s saved frame pointer.
    fn go125_window(sp: u64, lock: u64) -> Vec<u64> {
        let mut w = vec![0xdead_0000_u64; 32];
        let at = |i: usize| sp + 8 * i as u64;
        w[0] = 0x40_1010; // return address into futexsleep
        w[7] = at(12); // futexsleep's saved frame pointer: semasleep's
        w[8] = 0x40_2020; // return address into semasleep
        w[12] = at(22); // semasleep's saved frame pointer: lock2's
        w[13] = 0x40_3030; // return address into lock2
        w[22] = at(31); // lock2's saved frame pointer
        w[23] = 0x40_4040; // return address into chansend
        w[24] = lock; // lock2's argument, spilled
        w
    }

    fn finder() -> SemasleepLocks {
        SemasleepLocks::new(0x40_3000..0x40_3100, 0x40_2000..0x40_2100)
    }

    #[test]
    fn a_semasleep_under_lock2_waits_for_lock2s_argument() {
        let sp = 0xc000_1000;
        let lock = 0xc000_8048;
        assert_eq!(finder().lock_of(sp, &go125_window(sp, lock)), Some(lock));
    }

    /// Guards against taking any sleep for a runtime lock wait, or reading past the
    /// window or at a frame pointer that is not one.
    #[test]
    fn other_sleeps_and_broken_frames_name_no_lock() {
        let sp = 0xc000_1000;
        let lock = 0xc000_8048;
        let f = finder();
        // A note sleep: no return address into semasleep.
        let mut note = go125_window(sp, lock);
        note[8] = 0x40_9999;
        assert_eq!(f.lock_of(sp, &note), None);
        // semasleep not called from lock2 (another user of the M's semaphore).
        let mut other = go125_window(sp, lock);
        other[13] = 0x40_9999;
        assert_eq!(f.lock_of(sp, &other), None);
        // lock2's frame pointer outside the window, below it, or not aligned.
        for bad in [sp + 8 * 40, sp - 8, sp + 8 * 22 + 4, sp + 8 * 12] {
            let mut w = go125_window(sp, lock);
            w[12] = bad;
            assert_eq!(f.lock_of(sp, &w), None, "{bad:#x}");
        }
        // The window ends before the argument.
        let w = go125_window(sp, lock);
        assert_eq!(f.lock_of(sp, &w[..24]), None);
        // A null or misaligned argument is no lock.
        assert_eq!(f.lock_of(sp, &go125_window(sp, 0)), None);
        assert_eq!(f.lock_of(sp, &go125_window(sp, lock + 1)), None);
        assert_eq!(f.lock_of(sp, &[]), None);
    }
}
