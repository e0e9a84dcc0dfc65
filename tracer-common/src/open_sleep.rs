//! [`OpenSleep`]: a target thread's last futex wait that went to sleep, kept by the kernel
//! side when wait ends are timed at `sched_switch`
//! ([`GLOBAL_WAIT_ENDS_AT_SWITCH_IN`](crate::GLOBAL_WAIT_ENDS_AT_SWITCH_IN)).

/// The value of [`MAP_OPEN_SLEEPS`](crate::MAP_OPEN_SLEEPS), keyed by the thread's `struct
/// task_struct` address (the one id `sched_switch` gives of the thread it switches out
/// and of an exiting one, without reading the kernel's structures). One entry per
/// thread, rewritten in place from one sleep to the next and removed when the thread
/// exits. A wait is over once its thread has been switched out again (the entry then
/// holds the next sleep, or `addr` 0): the table cannot tell a thread still asleep from
/// one woken that has run since without leaving its CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenSleep {
    /// The futex word (for `futex_waitv`, the first word waited on); 0 once the wait's
    /// end has been sent.
    pub addr: u64,
    /// When the thread went to sleep in the wait.
    pub start_ns: u64,
    /// The thread's CPU time (`se.sum_exec_runtime`) when it went to sleep: at its next
    /// switch-out, that moment less the CPU time used since is when it was switched back
    /// in, the wait's end.
    pub runtime_ns: u64,
    /// User stack pointer and instruction pointer at the system call.
    pub user_sp: u64,
    pub user_ip: u64,
    /// TID of the waiting thread, as the wait record named it.
    pub tid: u32,
    /// Futex command (see [`futex_cmd`](crate::futex_cmd)) and expected value.
    pub op: u32,
    pub val: u32,
    /// 1 if the wait went out as no [`WaitRecord`](crate::WaitRecord): its end is then a
    /// [`SleptRecord`](crate::SleptRecord) (see [`LEAN_WAITS_UNSAMPLED`](crate::LEAN_WAITS_UNSAMPLED)),
    /// and userspace reads the wait from here while it sleeps long.
    pub lean: u32,
    /// How many sleeping waits this one stands for: the sampling period it was taken
    /// under ([`MAP_SLEEP_SAMPLING`](crate::MAP_SLEEP_SAMPLING)).
    pub weight: u32,
    /// The lower half of the thread's count of voluntary switches (`task_struct.nvcsw`)
    /// at the sleep, which the kernel counted before `sched_switch`; 0 when not read
    /// ([`sleep_is_stale`]).
    pub voluntary_switches: u32,
}
const _: () = assert!(core::mem::size_of::<OpenSleep>() == 64);

/// Most threads [`MAP_OPEN_SLEEPS`](crate::MAP_OPEN_SLEEPS) keeps, per target; a
/// thread beyond it is counted
/// ([`Counter::OpenSleepsUntracked`](crate::Counter::OpenSleepsUntracked)) at each of its
/// sleeps, whose ends are not sent.
pub const OPEN_SLEEPS_MAX_ENTRIES: u32 = 16 * 1024;

/// Whether an open sleep whose thread had `at_sleep` voluntary switches (the lower half,
/// [`OpenSleep::voluntary_switches`]) at the sleep is stale at a switch-out of the thread
/// with `now` of them, `voluntary` if the kernel counted this switch-out as one (a sleep
/// or an exit; not a preemption): the thread has switched out voluntarily since at a
/// switch-out nothing saw (the serve's `sched_switch` program was detached then: `tracer
/// serve`'s duty cycle), so the sleep ended there. Its end cannot be worked out any more
/// and must not be sent. While the program is attached the thread's next switch-out
/// after a sleep ends it, with the same count (preempted) or one more (a voluntary
/// switch-out, counted before `sched_switch`), so a sleep is never stale. `at_sleep` 0
/// means not read: never stale.
#[must_use]
#[inline]
pub const fn sleep_is_stale(at_sleep: u32, now: u64, voluntary: bool) -> bool {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the lower halves are compared, wrapping"
    )]
    let now = now as u32;
    let since = now.wrapping_sub(at_sleep);
    at_sleep != 0 && if voluntary { since >= 2 } else { since >= 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_is_stale_only_after_a_voluntary_switch_nothing_saw() {
        // A voluntary switch-out (counted already) right after the sleep, or a preemption
        // with the sleep's own count: the sleep's end.
        assert!(!sleep_is_stale(7, 8, true));
        assert!(!sleep_is_stale(7, 7, false));
        // A voluntary switch-out came between, unseen: over there.
        assert!(sleep_is_stale(7, 9, true));
        assert!(sleep_is_stale(7, 8, false));
        assert!(sleep_is_stale(7, 1_000, true));
        // The lower halves wrap.
        assert!(!sleep_is_stale(u32::MAX, 1 << 32, true));
        assert!(sleep_is_stale(u32::MAX, (1 << 32) + 1, true));
        assert!(sleep_is_stale(u32::MAX, 1 << 32, false));
        // Not read at the sleep: never stale.
        assert!(!sleep_is_stale(0, 1_000, true));
    }
}
