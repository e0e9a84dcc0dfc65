//! Threads that were already asleep before the hooks were in place send no event: this
//! finds them, so a process that is already deadlocked is diagnosed at once. Their waits
//! are built from what `/proc` says each thread is blocked in and from the target's
//! memory (the lock's snapshot, the stack), in the shape the kernel sends them.
//!
//! Assumes glibc on x86-64 for the PI-mutex layout (futex word at 0, kind at 16) and for
//! how glibc parks a thread the kernel refused a PI mutex with `EDEADLK`.
use tracer_common::{
    FUTEX_TID_MASK, FutexCall, FutexTimeout, FutexWait, OpenSleep, SNAPSHOT_LEAD_BYTES,
    SNAPSHOT_WORDS, STACK_WINDOW_WORDS, futex_cmd,
};

use super::threads::LiveThreads;
use crate::{
    event::{Snapshot, StackWindow, TraceEvent, WaitTimeout, WindowRef, encode_bytes},
    native::analysis::{Analysis, ThreadIds},
    recording::tape::TapeItem,
    target::{MapEntry, SyscallState, TargetProcess},
};

/// Bytes of stack read from a thread still blocked in a wait of a deadlock, for its
/// report: deep enough for the thread's outermost frame in lock stacks (a CFI walk stops
/// there), where the kernel's window (`STACK_WINDOW_WORDS`) often ends in the middle.
const BLOCKED_STACK_READ_BYTES: usize = 16 * 1024;

/// Turns every thread of `target` blocked in a futex wait right now into a wait event
/// at `now_ns` for `analysis`, built from the system call the thread sleeps in (futex
/// word, op, expected value, user SP and PC) and the target's memory (lock snapshot,
/// stack). Runs after the hooks are attached, so a wait that starts in between is seen
/// by both, which is harmless. `maps` are the target's, as read at attach. Returns what
/// it gave the analysis, as a recording's tape keeps it.
pub(super) fn adopt_blocked_threads(
    target: &dyn TargetProcess,
    maps: &[MapEntry],
    analysis: &mut Analysis,
    threads: &mut LiveThreads,
    now_ns: u64,
) -> Vec<TapeItem> {
    let tids = target.thread_ids().unwrap_or_default();
    let mut parked = Vec::new();
    let mut applied = Vec::new();
    for &tid in &tids {
        let Some(blocked) = blocked_in_futex_wait(target, tid) else {
            continue;
        };
        let FutexWait { addr, cmd, val } = blocked.wait;
        if is_glibc_pi_park(addr, cmd, val, blocked.sp) {
            parked.push((tid, blocked.sp, blocked.pc));
            continue;
        }
        applied.push(apply_blocked_wait(
            target,
            analysis,
            threads,
            (tid, now_ns, 1),
            &blocked,
        ));
    }
    // Second pass, once every other wait is known: threads glibc parked for good
    // after the kernel refused them a PI mutex with EDEADLK.
    for (tid, sp, pc) in parked {
        let Some(mutex) = parked_pi_mutex(target, maps, (&tids, threads.ids()), analysis, tid)
        else {
            continue;
        };
        let window = blocked_stack_window(target, pc, sp);
        let event = TraceEvent::FutexWait {
            tid,
            ts_ns: now_ns,
            addr: mutex,
            cmd: futex_cmd::LOCK_PI2,
            val: 0,
            stack: None,
            snapshot: read_snapshot(target, mutex),
            window: WindowRef::Built(&window),
            // glibc parks it with no timeout: for good.
            timeout: WaitTimeout::Untimed,
            weight: 1,
        };
        threads.apply(analysis, target, &event);
        analysis.mark_parked(tid);
        applied.push(TapeItem::Record(encode_bytes(&event)));
        applied.push(TapeItem::Parked(tid));
    }
    applied
}

/// A lean wait (`tracer serve`: sent by the kernel only once over) that has slept since
/// `sleep.start_ns` and, by `/proc`, still sleeps in that call: given to `analysis` as the
/// kernel sends a wait at its sleep, built from the target's memory now (the lock's
/// snapshot, the stack), so that the wait-for graph has it while it lasts. Its lean
/// record, when it comes, ends it. `None` (and nothing given) when the thread has left
/// that call. Returns what it gave the analysis, as a recording's tape keeps it.
pub(super) fn adopt_long_sleep(
    target: &dyn TargetProcess,
    analysis: &mut Analysis,
    threads: &mut LiveThreads,
    sleep: &OpenSleep,
) -> Option<TapeItem> {
    // The same sleep: the thread has not left a CPU of its own accord since. (A sleep
    // left in the table by the serve's duty cycle, which detached the hook before its
    // end, can be one the thread has woken from, and slept again since on the same word
    // from the same frame: the checks below cannot tell those apart.)
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the table keeps the lower half of the count"
    )]
    if sleep.voluntary_switches != 0
        && target
            .voluntary_switches(sleep.tid)
            .is_some_and(|now| now as u32 != sleep.voluntary_switches)
    {
        return None;
    }
    let blocked = blocked_in_futex_wait(target, sleep.tid)?;
    // The same call: the same word, from the same frame.
    if blocked.wait.addr != sleep.addr || blocked.sp != sleep.user_sp {
        return None;
    }
    Some(apply_blocked_wait(
        target,
        analysis,
        threads,
        (sleep.tid, sleep.start_ns, sleep.weight.max(1)),
        &blocked,
    ))
}

/// A thread blocked in a futex wait the kernel may have left out while it sampled
/// sleeps, as `/proc` shows it now (for [`super::long_sleeps::UnsampledSleeps`]).
pub(super) struct UnsampledWait {
    blocked: BlockedWait,
    /// The thread's context switches.
    switches: u64,
}

impl UnsampledWait {
    /// Thread `tid`'s futex wait and context switches, when `/proc` shows it blocked in
    /// one.
    pub(super) fn of(target: &dyn TargetProcess, tid: u32) -> Option<Self> {
        Some(Self {
            blocked: blocked_in_futex_wait(target, tid)?,
            switches: target.context_switches(tid)?,
        })
    }

    /// The system call it sleeps in and the thread's context switches: unchanged at a
    /// later look, the thread has slept in that call since.
    pub(super) fn state(&self) -> (SyscallState, u64) {
        let BlockedWait {
            nr, args, sp, pc, ..
        } = self.blocked;
        (SyscallState::InSyscall { nr, args, sp, pc }, self.switches)
    }

    /// Gives `analysis` this wait, which `/proc` has shown thread `tid` asleep in since
    /// `since_ns`, as begun then (the earliest it is known to have slept), built as a
    /// wait found at attach. Returns it as a recording's tape keeps it.
    pub(super) fn adopt(
        &self,
        target: &dyn TargetProcess,
        analysis: &mut Analysis,
        threads: &mut LiveThreads,
        (tid, since_ns): (u32, u64),
    ) -> TapeItem {
        apply_blocked_wait(target, analysis, threads, (tid, since_ns, 1), &self.blocked)
    }
}

/// The futex wait a thread is blocked in, as `/proc` shows its system call.
struct BlockedWait {
    nr: i64,
    args: [u64; 6],
    /// User stack and instruction pointers at the call.
    sp: u64,
    pc: u64,
    wait: FutexWait,
}

/// The futex wait thread `tid` is blocked in right now, if any. `futex_waitv` waits are
/// not read: their words are in the target's memory.
fn blocked_in_futex_wait(target: &dyn TargetProcess, tid: u32) -> Option<BlockedWait> {
    let Some(SyscallState::InSyscall { nr, args, sp, pc }) = target.syscall_state(tid) else {
        return None;
    };
    let [arg0, arg1, arg2, ..] = args;
    let Some(FutexCall::Wait(wait)) = FutexCall::decode(nr, [arg0, arg1, arg2]) else {
        return None;
    };
    Some(BlockedWait {
        nr,
        args,
        sp,
        pc,
        wait,
    })
}

/// Gives `analysis` thread `tid`'s `blocked` wait as begun at `ts_ns`, standing for
/// `weight` waits (see `TraceEvent::FutexWait`), in the shape the kernel sends a wait: with the lock's snapshot, the stack window and the timeout read
/// from the target now. Returns it as a recording's tape keeps it.
fn apply_blocked_wait(
    target: &dyn TargetProcess,
    analysis: &mut Analysis,
    threads: &mut LiveThreads,
    (tid, ts_ns, weight): (u32, u64, u32),
    blocked: &BlockedWait,
) -> TapeItem {
    let FutexWait { addr, cmd, val } = blocked.wait;
    let window = blocked_stack_window(target, blocked.pc, blocked.sp);
    let event = TraceEvent::FutexWait {
        tid,
        ts_ns,
        addr,
        cmd,
        val,
        stack: None,
        snapshot: read_snapshot(target, addr),
        window: WindowRef::Built(&window),
        timeout: read_timeout(target, blocked.nr, blocked.args),
        weight,
    };
    threads.apply(analysis, target, &event);
    TapeItem::Record(encode_bytes(&event))
}

/// The timeout of the futex call `nr` (arguments `args`) a thread found blocked sleeps
/// in, read from the target as the kernel read it when the call began. A relative
/// timeout (`FUTEX_WAIT`) started before the attach, when the call began: counted from
/// the adoption, it gives an upper bound of when the wait gives up.
fn read_timeout(target: &dyn TargetProcess, nr: i64, args: [u64; 6]) -> WaitTimeout {
    let Some(FutexTimeout { addr, clock }) = FutexTimeout::of_call(nr, args) else {
        return WaitTimeout::Untimed;
    };
    let mut bytes = [0u8; 16];
    if !target.read_exact(addr, &mut bytes) {
        return WaitTimeout::Unknown;
    }
    let (sec, nsec) = bytes.split_at(8);
    let word = |b: &[u8]| i64::from_ne_bytes(b.try_into().unwrap_or_default());
    WaitTimeout::of_timespec(clock, [word(sec), word(nsec)])
}

/// Which PI mutex a parked thread (see [`is_glibc_pi_park`]) wanted. The kernel
/// refused it because the mutex's owner waits, directly or through others, for a lock
/// the parked thread holds: so look for a PI mutex owned by a thread that sits in
/// `FUTEX_LOCK_PI` on a lock the parked thread owns. The pointer itself is gone (kept
/// in a register), so the target's writable memory is searched for a futex word that
/// holds that owner's TID in a mutex whose kind says priority inheritance. A wrong
/// guess cannot become a report: the cycle is still confirmed against live memory.
///
/// `tids` are the target's threads (host TIDs), `threads` the TIDs its memory names them
/// with (they differ in a PID namespace), and `maps` its maps, as read for the adoption.
fn parked_pi_mutex(
    target: &dyn TargetProcess,
    maps: &[MapEntry],
    (tids, threads): (&[u32], &ThreadIds),
    analysis: &Analysis,
    parked_tid: u32,
) -> Option<u64> {
    let parked_ns_tid = threads.namespace_tid(parked_tid)?;
    // The owners' TIDs as the futex words hold them.
    let owners: Vec<u32> = tids
        .iter()
        .copied()
        .filter(|&t| t != parked_tid)
        .filter(|&t| {
            analysis.active_wait(t).is_some_and(|w| {
                w.lock
                    .is_some_and(|lock| pi_owner(target, lock) == Some(parked_ns_tid))
            })
        })
        .filter_map(|t| threads.namespace_tid(t))
        .collect();
    let mut budget = PI_SEARCH_BYTES;
    for region in maps.iter().filter(|m| m.read && m.write) {
        // Thread stacks hold no mutexes worth this scan; images, .bss and heaps do.
        if region
            .path
            .as_deref()
            .is_some_and(|p| p.starts_with("[stack"))
        {
            continue;
        }
        let len = usize::try_from(region.end - region.start).ok()?.min(budget);
        budget -= len;
        let mut bytes = vec![0u8; len];
        let Ok(n) = target.read_memory(region.start, &mut bytes) else {
            continue;
        };
        let found = (0..n.saturating_sub(20)).step_by(4).find(|&at| {
            let word = u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            let kind = i32::from_ne_bytes([
                bytes[at + 16],
                bytes[at + 17],
                bytes[at + 18],
                bytes[at + 19],
            ]);
            kind & PTHREAD_MUTEX_PRIO_INHERIT != 0 && owners.contains(&(word & FUTEX_TID_MASK))
        });
        if let Some(at) = found {
            return Some(region.start + at as u64);
        }
        if budget == 0 {
            break;
        }
    }
    None
}

/// The stack window of a thread found blocked, in the shape the kernel sends it: the
/// words from its stack pointer upwards, as many as a wait record carries (there is no
/// frame-pointer chain from the kernel for it). Naming unwinds them by CFI, like any
/// window. Empty when the stack cannot be read.
///
/// Not the return addresses found in a longer read, as before: a list of words that
/// passed a call check is no stack a CFI walk can follow, and among them were stale
/// return addresses and, past the thread's outermost frame, `start_routine` in glibc's
/// `struct pthread` (issue 16: `worker_a_main` after `clone3` in `worker_b`'s stack, the
/// end of the function before `worker_b_main` being a call to a noreturn function).
pub(super) fn blocked_stack_window(target: &dyn TargetProcess, pc: u64, sp: u64) -> StackWindow {
    let mut window = StackWindow {
        ip: pc,
        sp,
        len: 0,
        words: [0; STACK_WINDOW_WORDS],
    };
    if let Some(words) = read_stack_words(target, sp, STACK_WINDOW_WORDS * 8) {
        window.words[..words.len()].copy_from_slice(&words);
        window.len = u32::try_from(words.len()).unwrap_or(0);
    }
    window
}

/// Up to `bytes` of the stack from `sp` upwards, as words (fewer where the stack's
/// mapping ends); `None` when nothing can be read.
fn read_stack_words(target: &dyn TargetProcess, sp: u64, bytes: usize) -> Option<Vec<u64>> {
    let mut buf = vec![0u8; bytes];
    let n = target.read_memory(sp, &mut buf).ok()?;
    let words: Vec<u64> = buf[..n]
        .chunks_exact(8)
        .map(|chunk| u64::from_ne_bytes(chunk.try_into().unwrap_or_default()))
        .collect();
    (!words.is_empty()).then_some(words)
}

/// The stack of thread `tid`'s wait at `pc`/`sp` ([`BLOCKED_STACK_READ_BYTES`] from `sp`
/// upwards, as words), read now, when the thread is still blocked in that call (same
/// stack pointer and instruction pointer before and after the read); `None` when it has
/// left it. Its stack above `sp` is then another call's: a timed wait that timed out and
/// backed off (`usleep`) left `clock_nanosleep`'s return addresses there (issue 16:
/// `clock_nanosleep` in a timed-lock wait's stack).
pub(super) fn read_still_blocked_stack(
    target: &dyn TargetProcess,
    tid: u32,
    pc: u64,
    sp: u64,
) -> Option<Vec<u64>> {
    let in_the_wait = || {
        matches!(
            target.syscall_state(tid),
            Some(SyscallState::InSyscall { sp: now_sp, pc: now_pc, .. }) if now_sp == sp && now_pc == pc
        )
    };
    if !in_the_wait() {
        return None;
    }
    let words = read_stack_words(target, sp, BLOCKED_STACK_READ_BYTES)?;
    in_the_wait().then_some(words)
}

/// `PTHREAD_MUTEX_PRIO_INHERIT_NP`, in the kind field (offset 16) of a glibc mutex.
const PTHREAD_MUTEX_PRIO_INHERIT: i32 = 0x20;
/// Most memory searched for the mutex a parked PI waiter wanted.
const PI_SEARCH_BYTES: usize = 64 * 1024 * 1024;

/// Whether a blocked futex call is glibc's park after `EDEADLK` from `FUTEX_LOCK_PI`:
/// a zero-expecting wait on a word of the thread's own stack (`&(unsigned int){0}`).
fn is_glibc_pi_park(addr: u64, cmd: u32, val: u32, sp: u64) -> bool {
    matches!(cmd, futex_cmd::WAIT | futex_cmd::WAIT_BITSET)
        && val == 0
        && addr >= sp
        && addr - sp < 4096
}

/// The owner TID in a PI mutex's futex word, read now.
fn pi_owner(target: &dyn TargetProcess, lock: u64) -> Option<u32> {
    Some(target.read_u32(lock)? & FUTEX_TID_MASK).filter(|&t| t != 0)
}

/// The memory around a futex word, read now, in the same shape the kernel sends.
fn read_snapshot(target: &dyn TargetProcess, addr: u64) -> Snapshot {
    let mut snapshot = Snapshot {
        addr: 0,
        len: 0,
        words: [0; SNAPSHOT_WORDS],
    };
    let mut bytes = [0u8; SNAPSHOT_WORDS * 4];
    for start in [addr.wrapping_sub(SNAPSHOT_LEAD_BYTES), addr] {
        if target.read_exact(start, &mut bytes) {
            for (word, chunk) in snapshot.words.iter_mut().zip(bytes.chunks_exact(4)) {
                *word = u32::from_ne_bytes(chunk.try_into().unwrap_or_default());
            }
            snapshot.addr = start;
            snapshot.len = u32::try_from(bytes.len()).unwrap_or(0);
            break;
        }
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tracer_common::syscall;

    use super::*;
    use crate::{
        session::test_support::{AFTER_CALL, CODE, FUTEX_PRIVATE, code, locked_mutex},
        target::fake::{FakeProcess, FakeThread},
    };

    const HEAP: u64 = 0x10_0000;
    const STACK: u64 = 0x7ff0_0000;
    /// Where the waiting threads' user stacks are.
    const SP: u64 = STACK + 0x100;
    const PC: u64 = CODE + 0x80;
    const NOW: u64 = 1_234_567;

    /// A target with code, a heap of `heap` bytes, and a stack at [`SP`] holding a
    /// return address, a word of data, and an address in code after no call.
    fn target(heap: usize) -> FakeProcess {
        let mut stack = vec![0u8; 0x1000];
        for (i, word) in [AFTER_CALL, 0x1234, CODE + 0x30].iter().enumerate() {
            let at = 0x100 + i * 8;
            stack[at..at + 8].copy_from_slice(&word.to_ne_bytes());
        }
        FakeProcess::new(100)
            .thread(100, FakeThread::running("main"))
            .region(CODE, code(), "r-xp", Some("/bin/prog"))
            .region(HEAP, vec![0; heap], "rw-p", Some("[heap]"))
            .region(STACK, stack, "rw-p", Some("[stack]"))
    }

    /// A thread asleep in `futex(addr, op | FUTEX_PRIVATE_FLAG, val)`.
    fn in_futex(name: &str, addr: u64, op: u32, val: u32) -> FakeThread {
        let args = [addr, u64::from(op) | FUTEX_PRIVATE, u64::from(val), 0, 0, 0];
        FakeThread::in_syscall(name, syscall::FUTEX, args, SP, PC)
    }

    /// Adopts the blocked threads of `target` into a fresh analysis.
    fn adopt(target: FakeProcess) -> Analysis {
        let maps = target.maps().expect("maps");
        let target = Arc::new(target);
        let mut threads = LiveThreads::read(&*target);
        let mut analysis = Analysis::new();
        adopt_blocked_threads(&*target, &maps, &mut analysis, &mut threads, NOW);
        analysis
    }

    /// Guards the diagnosis of a process blocked before the attach: a thread asleep in
    /// `FUTEX_WAIT_PRIVATE` on a glibc mutex becomes a wait on that mutex, held by the
    /// owner its memory names, with the top of its stack; threads in other
    /// system calls or futex ops that do not sleep are left alone.
    #[test]
    fn a_thread_asleep_on_a_mutex_becomes_a_wait() {
        let lock = HEAP + 0x100;
        let target = locked_mutex(target(0x1000), lock, 100)
            .thread(101, in_futex("waiter", lock, futex_cmd::WAIT, 2))
            .thread(
                102,
                FakeThread::in_syscall("reader", 0, [3, 0, 0, 0, 0, 0], SP, PC),
            )
            .thread(103, in_futex("waker", lock, futex_cmd::WAKE, 1));
        let analysis = adopt(target);
        let wait = analysis.active_wait(101).copied().expect("adopted");
        assert_eq!(wait.lock, Some(lock));
        assert_eq!(wait.holder, Some(100));
        assert_eq!(wait.start_ns, NOW);
        assert!(!wait.parked);
        let window = analysis.window(&wait);
        assert_eq!((window.ip, window.sp), (PC, SP));
        assert_eq!(window.words()[..3], [AFTER_CALL, 0x1234, CODE + 0x30]);
        assert!(analysis.active_wait(102).is_none());
        assert!(analysis.active_wait(103).is_none());
        assert_eq!(analysis.counts().events, 1);
    }

    /// Guards the timeouts of waits found blocked at attach (a timed-lock cycle that
    /// formed before the attach): read from the call's arguments and the target's memory
    /// as the kernel read them, on the clock the op names; a wait without one is untimed,
    /// and one whose `timespec` cannot be read is timed with an unknown timeout.
    #[test]
    fn adopted_waits_keep_their_timeouts() {
        let lock = HEAP + 0x100;
        let timespec = HEAP + 0x800;
        let mut bytes = 5i64.to_ne_bytes().to_vec();
        bytes.extend(250_000_000i64.to_ne_bytes());
        // pthread_mutex_timedlock: FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, timeout in r10.
        let op = u64::from(futex_cmd::WAIT_BITSET | tracer_common::FUTEX_CLOCK_REALTIME);
        let timed = |timeout| {
            let args = [lock, op | FUTEX_PRIVATE, 2, timeout, 0, u64::from(u32::MAX)];
            FakeThread::in_syscall("timed", syscall::FUTEX, args, SP, PC)
        };
        let target = locked_mutex(target(0x1000), lock, 100)
            .poke(timespec, &bytes)
            .thread(101, timed(timespec))
            .thread(102, in_futex("untimed", lock, futex_cmd::WAIT, 2))
            .thread(103, timed(0x10));
        let analysis = adopt(target);
        let timeout = |tid| analysis.active_wait(tid).expect("adopted").timeout;
        assert_eq!(timeout(101), WaitTimeout::AtRealtime(5_250_000_000));
        assert_eq!(timeout(102), WaitTimeout::Untimed);
        assert_eq!(timeout(103), WaitTimeout::Unknown, "unreadable timespec");
    }

    /// Guards `futex_wait(2)` (Linux 6.7), whose arguments are laid out differently.
    #[test]
    fn a_thread_in_futex_wait_syscall_becomes_a_wait() {
        let lock = HEAP + 0x100;
        let args = [lock, 2, 0, 0, 0, 0];
        let target = locked_mutex(target(0x1000), lock, 100).thread(
            101,
            FakeThread::in_syscall("waiter", syscall::FUTEX_WAIT, args, SP, PC),
        );
        let analysis = adopt(target);
        let wait = analysis.active_wait(101).copied().expect("adopted");
        assert_eq!((wait.lock, wait.holder), (Some(lock), Some(100)));
    }

    /// Guards PI deadlocks the kernel refused with `EDEADLK` before the attach: glibc
    /// parks the refused thread on a word of its own stack, and the mutex it wanted is
    /// found in memory (a PI mutex owned by the thread that waits for the parked one's
    /// mutex), so the cycle closes.
    #[test]
    fn a_parked_pi_waiter_waits_for_the_mutex_found_in_memory() {
        const WAITERS: u32 = 0x8000_0000;
        let (parked_tid, pi_tid): (u32, u32) = (201, 202);
        let (held_by_parked, wanted) = (HEAP + 0x100, HEAP + 0x200);
        let pi_kind = PTHREAD_MUTEX_PRIO_INHERIT.to_ne_bytes();
        let target = target(0x1000)
            .poke(held_by_parked, &(parked_tid | WAITERS).to_ne_bytes())
            .poke(held_by_parked + 16, &pi_kind)
            .poke(wanted, &(pi_tid | WAITERS).to_ne_bytes())
            .poke(wanted + 16, &pi_kind)
            .thread(201, in_futex("parked", SP + 0x40, futex_cmd::WAIT, 0))
            .thread(202, in_futex("pi", held_by_parked, futex_cmd::LOCK_PI, 0));
        let mut analysis = adopt(target);
        let parked = analysis.active_wait(201).copied().expect("adopted");
        assert_eq!(parked.lock, Some(wanted));
        assert_eq!(parked.holder, Some(202));
        assert!(parked.parked);
        let other = analysis.active_wait(202).copied().expect("adopted");
        assert_eq!(
            (other.lock, other.holder),
            (Some(held_by_parked), Some(201))
        );
        assert_eq!(analysis.candidates().len(), 1);
    }

    /// Guards the search for the wanted PI mutex: nothing is made up when no PI mutex
    /// in memory is owned by a thread waiting for the parked one.
    #[test]
    fn a_parked_thread_without_its_mutex_in_memory_is_left_alone() {
        let held_by_parked = HEAP + 0x100;
        let target = target(0x1000)
            .poke(held_by_parked, &201u32.to_ne_bytes())
            .thread(201, in_futex("parked", SP + 0x40, futex_cmd::WAIT, 0))
            .thread(202, in_futex("pi", held_by_parked, futex_cmd::LOCK_PI, 0));
        let analysis = adopt(target);
        assert!(analysis.active_wait(201).is_none());
        assert!(analysis.active_wait(202).is_some());
    }

    /// Guards the glibc park test: a zero-expecting plain wait on the thread's own stack.
    #[test]
    fn glibc_pi_park_is_a_zero_wait_near_the_stack_pointer() {
        assert!(is_glibc_pi_park(SP + 0x40, futex_cmd::WAIT, 0, SP));
        assert!(is_glibc_pi_park(SP, futex_cmd::WAIT_BITSET, 0, SP));
        assert!(!is_glibc_pi_park(SP + 0x40, futex_cmd::WAIT, 2, SP));
        assert!(!is_glibc_pi_park(SP - 8, futex_cmd::WAIT, 0, SP));
        assert!(!is_glibc_pi_park(SP + 4096, futex_cmd::WAIT, 0, SP));
        assert!(!is_glibc_pi_park(SP + 0x40, futex_cmd::LOCK_PI, 0, SP));
    }

    /// Guards the snapshot of an adopted wait, which must look like the kernel's: it
    /// starts `SNAPSHOT_LEAD_BYTES` before the word, or at the word when the memory
    /// before it cannot be read, and is empty when the word cannot be read either.
    #[test]
    fn read_snapshot_leads_the_word_when_it_can() {
        let target =
            locked_mutex(target(0x1000), HEAP + 0x100, 100).poke(HEAP, &7u32.to_ne_bytes());
        let snapshot = read_snapshot(&target, HEAP + 0x100);
        assert_eq!(snapshot.addr, HEAP + 0x100 - SNAPSHOT_LEAD_BYTES);
        assert_eq!(snapshot.u32_at(HEAP + 0x100), Some(2));
        assert_eq!(snapshot.i32_at(HEAP + 0x108), Some(100));
        let at_start = read_snapshot(&target, HEAP);
        assert_eq!((at_start.addr, at_start.u32_at(HEAP)), (HEAP, Some(7)));
        assert_eq!(read_snapshot(&target, 0x9999_0000).len, 0);
    }

    /// Guards issue 16's `clock_nanosleep` frames in a timed-lock wait: a wait's stack is
    /// read later (a deadlock report) only while the thread is still in that very call;
    /// once it left it (here: asleep in `clock_nanosleep` at another stack pointer, or
    /// running), its stack is another call's. Checked to fail with the stack read
    /// unconditionally.
    #[test]
    fn a_stack_is_read_later_only_while_still_in_the_wait() {
        let still = Arc::new(target(0x100).thread(7, in_futex("w", HEAP, 0, 0)));
        let words = read_still_blocked_stack(&*still, 7, PC, SP).expect("in the wait");
        assert_eq!(words[..3], [AFTER_CALL, 0x1234, CODE + 0x30]);
        assert_eq!(
            words.len(),
            usize::try_from((STACK + 0x1000 - SP) / 8).unwrap(),
            "to the stack's end"
        );
        let asleep = Arc::new(target(0x100).thread(
            7,
            FakeThread::in_syscall("w", 230, [0; 6], SP - 0x40, PC + 0x10),
        ));
        assert!(read_still_blocked_stack(&*asleep, 7, PC, SP).is_none());
        let running = Arc::new(target(0x100).thread(7, FakeThread::running("w")));
        assert!(read_still_blocked_stack(&*running, 7, PC, SP).is_none());
    }

    /// Guards the stack window of an adopted wait: the stack's words from the stack
    /// pointer, as the kernel would have sent them (every word, not only those that look
    /// like return addresses: the CFI walk reads the slots it needs), fewer at the end of
    /// the stack, none when the stack cannot be read.
    #[test]
    fn an_adopted_window_is_the_top_of_the_stack() {
        let target = target(0x100);
        let window = blocked_stack_window(&target, PC, SP);
        assert_eq!((window.ip, window.sp), (PC, SP));
        assert_eq!(window.words().len(), STACK_WINDOW_WORDS);
        assert_eq!(window.words()[..3], [AFTER_CALL, 0x1234, CODE + 0x30]);
        let near_end = blocked_stack_window(&target, PC, STACK + 0x1000 - 16);
        assert_eq!(near_end.words().len(), 2);
        assert!(blocked_stack_window(&target, PC, 0x10).words().is_empty());
    }
}
