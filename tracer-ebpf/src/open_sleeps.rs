//! The table of the target's sleeping futex waits (`OPEN_SLEEPS`), for `futex_sleep`
//! when wait ends are timed at switch-in (`WAIT_ENDS_AT_SWITCH_IN`: no `sys_exit`
//! program).
//!
//! Nothing is done when the waiting thread is switched back in: that is on the lock's
//! hand-over path (the woken waiter cannot run before the program returns), and the
//! program would have to look every thread of the host up there, since `sched_switch`
//! does not say whose the thread switched in is (each served target's program set once
//! more). Instead, at the thread's next switch-out (it ran, then sleeps again, is
//! preempted or exits), the switch-in is worked out from the CPU time the thread used
//! since (`se.sum_exec_runtime`, read at `TASK_RUNTIME_OFFSET` and kept at the sleep):
//! now, less that time. The end then goes out, late by as long as the thread ran, and
//! timed right to within the interrupt and steal time of that run (the scheduler does not
//! count them as the thread's). Entries are rewritten in place, never freed and allocated
//! per wait; a thread's entry is removed at its last switch-out, when it exits.
//!
//! Most switch-outs of a target thread have no open sleep to end: its last sleep ended
//! at an earlier switch-out, or was left out by sampling. So that those skip the table,
//! `OPEN_SLEEP_SLOTS` counts the open sleeps by slot of the thread's host TID ([`Slot`]);
//! the table is looked up only when the thread's slot counts one.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel};
use tracer_common::{
    Counter, EventKind, FutexWait, OPEN_SLEEP_SLOTS_LEN, OpenSleep, SleptRecord, SwitchOut,
    WaitEndRecord, sleep_is_stale,
};

use crate::{
    helpers::{count, emit_slept, emit_wait_end},
    maps::{OPEN_SLEEP_SLOTS, OPEN_SLEEPS, TASK_NVCSW_OFFSET, TASK_RUNTIME_OFFSET},
};

/// The counter of open sleeps (`OPEN_SLEEP_SLOTS`) for the slot of a thread's host TID.
/// Only the CPU switching a thread out changes its sleep, so each thread's own changes
/// to the count are ordered; other threads of the slot change it at the same time on
/// other CPUs, hence atomic adds.
#[derive(Clone, Copy)]
pub(crate) struct Slot(*mut u64);

impl Slot {
    /// No slot: wait ends are not timed at switch-in, and nothing is noted.
    pub(crate) const UNUSED: Self = Self(core::ptr::null_mut());

    /// The slot of `current`, the thread being switched out (by its host TID, which every
    /// PID namespace's view of it shares).
    #[inline(always)]
    pub(crate) fn of_current() -> Self {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the lower half is the TID, a u32 by definition"
        )]
        let host_tid = bpf_get_current_pid_tgid() as u32;
        let index = host_tid & (OPEN_SLEEP_SLOTS_LEN - 1);
        Self(
            OPEN_SLEEP_SLOTS
                .get_ptr_mut(index)
                .unwrap_or(core::ptr::null_mut()),
        )
    }

    /// Whether a thread of this slot may have an open sleep (true if the slot is unknown).
    #[inline(always)]
    fn any_open(self) -> bool {
        if self.0.is_null() {
            return true;
        }
        // SAFETY: a non-null pointer is the map's element, a live, aligned `u64`. A
        // volatile read, as the kernel's `READ_ONCE`: the BPF instruction set has no
        // atomic load besides a plain one, which LLVM will not select for an `AtomicU64`.
        unsafe { core::ptr::read_volatile(self.0) != 0 }
    }

    /// A thread of the slot has a sleep open.
    #[inline(always)]
    fn opened(self) {
        self.add(1);
    }

    /// A thread of the slot had its open sleep ended.
    #[inline(always)]
    fn closed(self) {
        self.add(u64::MAX);
    }

    /// Adds `n` (wrapping) to the counter, atomically; its old value unused, so that the
    /// compiler emits a plain atomic add (a fetching one needs a newer BPF instruction
    /// set).
    #[inline(always)]
    fn add(self, n: u64) {
        if self.0.is_null() {
            return;
        }
        // SAFETY: as in `any_open`; every write to it is this atomic add (userspace never
        // writes it).
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(self.0, n) };
    }
}

/// A thread's clock at one of its switch-outs.
#[derive(Clone, Copy)]
pub(crate) struct SwitchOutClock {
    /// Now (`bpf_ktime_get_ns`); 0 if not read.
    pub(crate) now_ns: u64,
    /// The thread's CPU time so far, in nanoseconds; 0 if it could not be read.
    pub(crate) runtime_ns: u64,
}

impl SwitchOutClock {
    /// Not read.
    pub(crate) const UNREAD: Self = Self {
        now_ns: 0,
        runtime_ns: 0,
    };

    /// Reads the clock of `task`, the thread being switched out.
    #[inline(always)]
    pub(crate) fn read(task: u64) -> Self {
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        let now_ns = unsafe { bpf_ktime_get_ns() };
        Self {
            now_ns,
            runtime_ns: task_runtime_ns(task),
        }
    }

    /// When the thread, which went to sleep in `sleep`, was switched back in: now less the
    /// CPU time it used since (now itself if its CPU time could not be read).
    #[inline(always)]
    fn switched_in_ns(&self, sleep: &OpenSleep) -> u64 {
        let ran = self.runtime_ns.saturating_sub(sleep.runtime_ns);
        self.now_ns.saturating_sub(ran).max(sleep.start_ns)
    }
}

/// The CPU time of `task` (`se.sum_exec_runtime`), 0 if it cannot be read.
#[inline(always)]
pub(crate) fn task_runtime_ns(task: u64) -> u64 {
    let field = task.wrapping_add(TASK_RUNTIME_OFFSET.load()) as *const u64;
    // SAFETY: bpf_probe_read_kernel checks the address itself and fails cleanly; `task`
    // is a `struct task_struct *` from `sched_switch`, and the offset that of a `u64`
    // member of it in the running kernel's BTF.
    unsafe { bpf_probe_read_kernel(field) }.unwrap_or(0)
}

/// The lower half of `task`'s count of voluntary switches (`nvcsw`), 0 if it cannot be
/// read or its offset was not given (then no sleep is ever found stale).
#[inline(always)]
fn task_voluntary_switches(task: u64) -> u32 {
    let offset = TASK_NVCSW_OFFSET.load();
    if offset == 0 {
        return 0;
    }
    let field = task.wrapping_add(offset) as *const u64;
    // SAFETY: as in `task_runtime_ns`: a checked read of an `unsigned long` member.
    let count = unsafe { bpf_probe_read_kernel(field) }.unwrap_or(0);
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the lower half, compared wrapping (`tracer_common::sleep_is_stale`)"
    )]
    let low = count as u32;
    low
}

/// For thread `task`, switched out now: sends the end of its last wait if it is still
/// open (it slept, and has been switched in since, or it would not be switched out now).
/// Only the target's threads have entries: another thread finds none. Returns its entry
/// (null if it has none), for [`note_sleep`] on the same switch-out (one lookup per
/// switch-out, not two), and the clock if it read it
/// ([`SwitchOutClock::UNREAD`] otherwise). A raw pointer, not an `Option`: the compiler
/// leaves an `Option`'s payload unset on the `None` path, which the verifier refuses to
/// see spilled and read back. Null too when the thread's `slot` counts no open sleep: the
/// table is not looked up then.
#[inline(always)]
pub(crate) fn switched_out(
    task: u64,
    slot: Slot,
    out: SwitchOut,
) -> (*mut OpenSleep, SwitchOutClock) {
    if !slot.any_open() {
        return (core::ptr::null_mut(), SwitchOutClock::UNREAD);
    }
    let Some(sleep) = OPEN_SLEEPS.get_ptr_mut(task) else {
        return (core::ptr::null_mut(), SwitchOutClock::UNREAD);
    };
    (sleep, send_end(sleep, task, slot, out))
}

/// For thread `task`, switched out for the last time (it exited): sends the end of its
/// last wait if it is still open, and forgets the thread.
///
/// Done for every exiting thread, before the target's filter: in a PID namespace other
/// than the host's (a sidecar) the thread has no ids there any more by now, and a removal
/// behind that filter would never happen: every thread the target ever ran would keep
/// its entry. The table is looked up whatever the slot counts: an entry stays after its
/// sleep ended, until this.
#[inline(always)]
pub(crate) fn forget_exited(task: u64) {
    if let Some(sleep) = OPEN_SLEEPS.get_ptr_mut(task) {
        send_end(sleep, task, Slot::of_current(), SwitchOut::Exits);
        let _ = OPEN_SLEEPS.remove(task);
    }
}

/// Sends the end of `sleep`'s wait if it is open, its thread `task` being switched out
/// now: a `SleptRecord` (the whole wait) for a lean one, else the end of the wait already
/// sent, and counts it closed in `slot` (`task`'s); `task` leaves its CPU as `out`.
/// Returns the clock if it read it.
#[inline(always)]
fn send_end(sleep: *mut OpenSleep, task: u64, slot: Slot, out: SwitchOut) -> SwitchOutClock {
    // SAFETY: `sleep` points at the map's value for `task`, sized and aligned for
    // `OpenSleep`; only the CPU switching `task` out writes it, and the value stays the
    // task's for this whole run (only the task's own last switch-out removes it).
    unsafe {
        if (*sleep).addr == 0 {
            return SwitchOutClock::UNREAD;
        }
        // Ended at a switch-out nothing saw (the serve's dispatcher was detached): its
        // end is unknown now, and userspace finds such a wait from `/proc` if it lasted.
        if sleep_is_stale(
            (*sleep).voluntary_switches,
            u64::from(task_voluntary_switches(task)),
            out != SwitchOut::Runnable,
        ) {
            (*sleep).addr = 0;
            slot.closed();
            return SwitchOutClock::UNREAD;
        }
        let clock = SwitchOutClock::read(task);
        let end_ns = clock.switched_in_ns(&*sleep);
        if (*sleep).lean != 0 {
            emit_slept(&SleptRecord {
                kind: EventKind::FutexSlept as u32,
                tid: (*sleep).tid,
                start_ns: (*sleep).start_ns,
                end_ns,
                addr: (*sleep).addr,
                user_sp: (*sleep).user_sp,
                user_ip: (*sleep).user_ip,
                op: (*sleep).op,
                val: (*sleep).val,
                weight: (*sleep).weight,
                pad: 0,
            });
        } else {
            emit_wait_end(&WaitEndRecord {
                kind: EventKind::FutexWaitDone as u32,
                tid: (*sleep).tid,
                ts_ns: end_ns,
                addr: (*sleep).addr,
                // Woken, timed out or interrupted: only `sys_exit` could tell which.
                ret: 0,
                op: (*sleep).op,
                val: (*sleep).val,
            });
        }
        (*sleep).addr = 0;
        slot.closed();
        clock
    }
}

/// A target thread going to sleep in a futex wait: what [`note_sleep`] keeps of it.
pub(crate) struct Sleep {
    /// The thread's `task_struct` address (the table's key) and TID.
    pub(crate) task: u64,
    pub(crate) tid: u32,
    /// When it went to sleep, and its CPU time then.
    pub(crate) clock: SwitchOutClock,
    /// User stack and instruction pointers at the system call.
    pub(crate) sp: u64,
    pub(crate) ip: u64,
    /// How many sleeping waits it stands for (the sampling period it was taken under).
    pub(crate) weight: u32,
}

/// Keeps `sleep`, whose entry [`switched_out`] returned as `entry` (null: none yet, or
/// not looked up), as asleep in `wait` from now, and counts it open in `slot`; `lean` if
/// the wait went out as no record (its end is then a `SleptRecord`).
#[inline(always)]
pub(crate) fn note_sleep(
    entry: *mut OpenSleep,
    slot: Slot,
    sleep: &Sleep,
    wait: &FutexWait,
    lean: bool,
) {
    let lean = u32::from(lean);
    let voluntary_switches = task_voluntary_switches(sleep.task);
    if !entry.is_null() {
        // SAFETY: as in `send_end`; `switched_out` sent the end of the entry's last wait.
        unsafe {
            (*entry).start_ns = sleep.clock.now_ns;
            (*entry).runtime_ns = sleep.clock.runtime_ns;
            (*entry).user_sp = sleep.sp;
            (*entry).user_ip = sleep.ip;
            (*entry).tid = sleep.tid;
            (*entry).op = wait.cmd;
            (*entry).val = wait.val;
            (*entry).lean = lean;
            (*entry).weight = sleep.weight;
            (*entry).voluntary_switches = voluntary_switches;
            (*entry).addr = wait.addr;
        }
        slot.opened();
        return;
    }
    let value = OpenSleep {
        addr: wait.addr,
        start_ns: sleep.clock.now_ns,
        runtime_ns: sleep.clock.runtime_ns,
        user_sp: sleep.sp,
        user_ip: sleep.ip,
        tid: sleep.tid,
        op: wait.cmd,
        val: wait.val,
        lean,
        weight: sleep.weight,
        voluntary_switches,
    };
    // Replaces the thread's entry if it has one that was not looked up (its sleep ended).
    if OPEN_SLEEPS.insert(sleep.task, value, 0).is_err() {
        count(Counter::OpenSleepsUntracked);
    } else {
        slot.opened();
    }
}
