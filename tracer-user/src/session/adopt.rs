//! Threads that were already asleep before the hooks were in place send no event: this
//! finds them, so a process that is already deadlocked is diagnosed at once. Their waits
//! are built from what `/proc` says each thread is blocked in and from the target's
//! memory (the lock's snapshot, the stack), in the shape the kernel sends them.
//!
//! Assumes glibc on x86-64 for the PI-mutex layout (futex word at 0, kind at 16) and for
//! how glibc parks a thread the kernel refused a PI mutex with `EDEADLK`.
use tracer_common::{SNAPSHOT_LEAD_BYTES, SNAPSHOT_WORDS, STACK_WINDOW_WORDS, futex_cmd, syscall};

use super::{code_check::CodeCheck, threads::LiveThreads};
use crate::{
    event::{Snapshot, StackWindow, TraceEvent, WindowRef},
    native::analysis::Analysis,
    target::{MapEntry, SyscallState, TargetProcess},
};

/// Bytes of stack read for a thread found blocked at attach (no kernel event exists for
/// its wait): scanned for return addresses, the first `STACK_WINDOW_WORDS` kept.
const BLOCKED_STACK_SCAN_BYTES: usize = 16 * 1024;

/// Turns every thread of `target` blocked in a futex wait right now into a wait event
/// at `now_ns` for `analysis`, built from the system call the thread sleeps in (futex
/// word, op, expected value, user SP and PC) and the target's memory (lock snapshot,
/// stack). Runs after the hooks are attached, so a wait that starts in between is seen
/// by both, which is harmless. `maps` are the target's, as read at attach.
pub(super) fn adopt_blocked_threads(
    target: &dyn TargetProcess,
    maps: &[MapEntry],
    code: &mut CodeCheck,
    analysis: &mut Analysis,
    threads: &mut LiveThreads,
    now_ns: u64,
) {
    let tids = target.thread_ids().unwrap_or_default();
    let mut parked = Vec::new();
    for &tid in &tids {
        let Some(SyscallState::InSyscall { nr, args, sp, pc }) = target.syscall_state(tid) else {
            continue;
        };
        let (addr, cmd, val) = match nr {
            #[expect(
                clippy::cast_possible_truncation,
                reason = "futex op and val are 32-bit ints"
            )]
            syscall::FUTEX => (
                args[0],
                args[1] as u32 & futex_cmd::CMD_MASK,
                args[2] as u32,
            ),
            #[expect(
                clippy::cast_possible_truncation,
                reason = "the expected value is 32-bit"
            )]
            syscall::FUTEX_WAIT => (args[0], futex_cmd::WAIT2, args[1] as u32),
            _ => continue,
        };
        if !futex_cmd::is_wait(cmd) {
            continue;
        }
        if is_glibc_pi_park(addr, cmd, val, sp) {
            parked.push((tid, sp, pc));
            continue;
        }
        let window = scan_blocked_stack(target, code, pc, sp);
        let event = TraceEvent::FutexWait {
            tid,
            ts_ns: now_ns,
            addr,
            cmd,
            val,
            stack: None,
            snapshot: read_snapshot(target, addr),
            window: WindowRef::Built(&window),
        };
        threads.apply(analysis, target, &event);
    }
    // Second pass, once every other wait is known: threads glibc parked for good
    // after the kernel refused them a PI mutex with EDEADLK.
    for (tid, sp, pc) in parked {
        let Some(mutex) = parked_pi_mutex(target, maps, &tids, analysis, tid) else {
            continue;
        };
        let window = scan_blocked_stack(target, code, pc, sp);
        let event = TraceEvent::FutexWait {
            tid,
            ts_ns: now_ns,
            addr: mutex,
            cmd: futex_cmd::LOCK_PI2,
            val: 0,
            stack: None,
            snapshot: read_snapshot(target, mutex),
            window: WindowRef::Built(&window),
        };
        threads.apply(analysis, target, &event);
        analysis.mark_parked(tid);
    }
}

/// Which PI mutex a parked thread (see [`is_glibc_pi_park`]) wanted. The kernel
/// refused it because the mutex's owner waits, directly or through others, for a lock
/// the parked thread holds: so look for a PI mutex owned by a thread that sits in
/// `FUTEX_LOCK_PI` on a lock the parked thread owns. The pointer itself is gone (kept
/// in a register), so the target's writable memory is searched for a futex word that
/// holds that owner's TID in a mutex whose kind says priority inheritance. A wrong
/// guess cannot become a report: the cycle is still confirmed against live memory.
///
/// `tids` are the target's threads and `maps` its maps, as read for the adoption.
fn parked_pi_mutex(
    target: &dyn TargetProcess,
    maps: &[MapEntry],
    tids: &[u32],
    analysis: &Analysis,
    parked_tid: u32,
) -> Option<u64> {
    let owners: Vec<u32> = tids
        .iter()
        .copied()
        .filter(|&t| t != parked_tid)
        .filter(|&t| {
            analysis.active_wait(t).is_some_and(|w| {
                w.lock
                    .is_some_and(|lock| pi_owner(target, lock) == Some(parked_tid))
            })
        })
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

/// A stack window for a thread found blocked: the return addresses found in the top
/// of its stack (there is no frame-pointer chain from the kernel for it).
pub(super) fn scan_blocked_stack(
    target: &dyn TargetProcess,
    code: &mut CodeCheck,
    pc: u64,
    sp: u64,
) -> StackWindow {
    let mut window = StackWindow {
        ip: pc,
        sp,
        len: 0,
        words: [0; STACK_WINDOW_WORDS],
    };
    let mut bytes = vec![0u8; BLOCKED_STACK_SCAN_BYTES];
    let Ok(n) = target.read_memory(sp, &mut bytes) else {
        return window;
    };
    let mut len = 0;
    for chunk in bytes[..n].chunks_exact(8) {
        let word = u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
        if len < STACK_WINDOW_WORDS && code.is_return_address(word) {
            window.words[len] = word;
            len += 1;
        }
    }
    window.len = u32::try_from(len).unwrap_or(0);
    window
}

/// `PTHREAD_MUTEX_PRIO_INHERIT_NP`, in the kind field (offset 16) of a glibc mutex.
const PTHREAD_MUTEX_PRIO_INHERIT: i32 = 0x20;
/// The owner-TID bits of a PI futex word.
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
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
