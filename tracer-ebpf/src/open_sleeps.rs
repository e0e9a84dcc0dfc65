//! The table of the target's sleeping futex waits (`OPEN_SLEEPS`), for `futex_sleep`
//! when wait ends are timed at switch-in (`WAIT_ENDS_AT_SWITCH_IN`: no `sys_exit`
//! program).
//!
//! The switch-in is on the lock's hand-over path (the woken waiter cannot run before the
//! program returns), so it does the least it can: one lookup and, for a thread that slept
//! in a wait, one store of the time. The end record goes out at the thread's next
//! switch-out (it runs, then sleeps again, is preempted or exits), off that path; an end
//! is therefore sent late by as long as the thread ran, and timed right. Entries are
//! rewritten in place, never freed and allocated per wait; a thread's entry is removed
//! at its last switch-out, when it exits.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use tracer_common::{Counter, EventKind, FutexWait, OpenSleep, SleptRecord, WaitEndRecord};

use crate::{
    helpers::{count, emit_slept, emit_wait_end},
    maps::OPEN_SLEEPS,
};

/// `TASK_DEAD` in `sched_switch`'s `prev_state`: the thread's last switch-out.
const TASK_DEAD: u64 = 0x80;

/// Times the end of the wait of `task`, switched in now, if it was asleep in one.
#[inline(always)]
pub(crate) fn mark_resumed(task: u64) {
    let Some(sleep) = OPEN_SLEEPS.get_ptr_mut(task) else {
        return;
    };
    // SAFETY: `sleep` points at the map's value for `task`, sized and aligned for
    // `OpenSleep`; only the CPU switching `task` in or out writes it, and the scheduler
    // never does both at once for one task.
    unsafe {
        if (*sleep).addr != 0 && (*sleep).ended_ns == 0 {
            (*sleep).ended_ns = bpf_ktime_get_ns();
        }
    }
}

/// Whether `prev_state` (`sched_switch`'s) is a thread's last switch-out: it exited.
#[inline(always)]
pub(crate) fn is_exit(prev_state: u64) -> bool {
    prev_state & TASK_DEAD != 0
}

/// For target thread `task`, switched out now: sends the end of its last wait if it has
/// been switched in since. Returns its entry (null if it has none), for [`note_sleep`] on
/// the same switch-out (one lookup per switch-out, not two). A raw pointer, not an
/// `Option`: the compiler leaves an `Option`'s payload unset on the `None` path, which the
/// verifier refuses to see spilled and read back.
#[inline(always)]
pub(crate) fn switched_out(task: u64) -> *mut OpenSleep {
    let Some(sleep) = OPEN_SLEEPS.get_ptr_mut(task) else {
        return core::ptr::null_mut();
    };
    send_resumed_end(sleep);
    sleep
}

/// For thread `task`, switched out for the last time (it exited): sends the end of its
/// last wait if it has been switched in since, and forgets the thread.
///
/// Done for every exiting thread, before the target's filter: in a PID namespace other
/// than the host's (a sidecar) the thread has no ids there any more by now, and a removal
/// behind that filter would never happen: every thread the target ever ran would keep
/// its entry.
#[inline(always)]
pub(crate) fn forget_exited(task: u64) {
    if let Some(sleep) = OPEN_SLEEPS.get_ptr_mut(task) {
        send_resumed_end(sleep);
        let _ = OPEN_SLEEPS.remove(task);
    }
}

/// Sends the end of `sleep`'s wait if its thread has been switched in since: a
/// `SleptRecord` (the whole wait) for a lean one, else the end of the wait already sent.
#[inline(always)]
fn send_resumed_end(sleep: *mut OpenSleep) {
    // SAFETY: `sleep` is the map's value for a task being switched out on this CPU, as
    // in `mark_resumed`.
    unsafe {
        if (*sleep).addr == 0 || (*sleep).ended_ns == 0 {
            return;
        }
        if (*sleep).lean != 0 {
            emit_slept(&SleptRecord {
                kind: EventKind::FutexSlept as u32,
                tid: (*sleep).tid,
                start_ns: (*sleep).start_ns,
                end_ns: (*sleep).ended_ns,
                addr: (*sleep).addr,
                user_sp: (*sleep).user_sp,
                user_ip: (*sleep).user_ip,
                op: (*sleep).op,
                val: (*sleep).val,
            });
        } else {
            emit_wait_end(&WaitEndRecord {
                kind: EventKind::FutexWaitDone as u32,
                tid: (*sleep).tid,
                ts_ns: (*sleep).ended_ns,
                addr: (*sleep).addr,
                // Woken, timed out or interrupted: only `sys_exit` could tell which.
                ret: 0,
                op: (*sleep).op,
                val: (*sleep).val,
            });
        }
        (*sleep).addr = 0;
    }
}

/// A target thread going to sleep in a futex wait: what [`note_sleep`] keeps of it.
pub(crate) struct Sleep {
    /// The thread's `task_struct` address (the table's key) and TID.
    pub(crate) task: u64,
    pub(crate) tid: u32,
    /// When it went to sleep.
    pub(crate) start_ns: u64,
    /// User stack and instruction pointers at the system call.
    pub(crate) sp: u64,
    pub(crate) ip: u64,
}

/// Keeps `sleep`, whose entry [`switched_out`] returned as `entry` (null: none yet), as
/// asleep in `wait` from now; `lean` if the wait went out as no record (its end is then a
/// `SleptRecord`).
#[inline(always)]
pub(crate) fn note_sleep(entry: *mut OpenSleep, sleep: &Sleep, wait: &FutexWait, lean: bool) {
    let lean = u32::from(lean);
    if !entry.is_null() {
        // SAFETY: as in `mark_resumed`; the value stays the task's for this whole run (only
        // the task's own last switch-out removes it), and `switched_out` sent its end.
        unsafe {
            (*entry).start_ns = sleep.start_ns;
            (*entry).ended_ns = 0;
            (*entry).user_sp = sleep.sp;
            (*entry).user_ip = sleep.ip;
            (*entry).tid = sleep.tid;
            (*entry).op = wait.cmd;
            (*entry).val = wait.val;
            (*entry).lean = lean;
            (*entry).addr = wait.addr;
        }
        return;
    }
    let value = OpenSleep {
        addr: wait.addr,
        start_ns: sleep.start_ns,
        ended_ns: 0,
        user_sp: sleep.sp,
        user_ip: sleep.ip,
        tid: sleep.tid,
        op: wait.cmd,
        val: wait.val,
        lean,
    };
    if OPEN_SLEEPS.insert(sleep.task, value, 0).is_err() {
        count(Counter::OpenSleepsUntracked);
    }
}
