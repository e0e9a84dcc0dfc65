//! Futex system calls: their numbers, commands, and the one decoder of a call's registers
//! that both the kernel side (`sched_switch` and `sys_exit` hooks) and userspace (threads
//! found blocked at attach, from `/proc/PID/task/TID/syscall`) use.

/// x86-64 syscall numbers the futex hooks care about.
pub mod syscall {
    /// `futex(2)`.
    pub const FUTEX: i64 = 202;
    /// `futex_waitv(2)` (Linux 5.16).
    pub const FUTEX_WAITV: i64 = 449;
    /// `futex_wake(2)` (Linux 6.7).
    pub const FUTEX_WAKE: i64 = 454;
    /// `futex_wait(2)` (Linux 6.7).
    pub const FUTEX_WAIT: i64 = 455;
}

/// `futex(2)` command numbers (the op argument with the private/clock flags masked off).
pub mod futex_cmd {
    /// Mask that keeps the command and drops `FUTEX_PRIVATE_FLAG` and `FUTEX_CLOCK_REALTIME`.
    pub const CMD_MASK: u32 = 0x7f;
    pub const WAIT: u32 = 0;
    pub const WAKE: u32 = 1;
    pub const REQUEUE: u32 = 3;
    pub const CMP_REQUEUE: u32 = 4;
    pub const WAKE_OP: u32 = 5;
    pub const LOCK_PI: u32 = 6;
    pub const UNLOCK_PI: u32 = 7;
    pub const TRYLOCK_PI: u32 = 8;
    pub const WAIT_BITSET: u32 = 9;
    pub const WAKE_BITSET: u32 = 10;
    pub const WAIT_REQUEUE_PI: u32 = 11;
    pub const CMP_REQUEUE_PI: u32 = 12;
    pub const LOCK_PI2: u32 = 13;
    /// Synthetic command for the `futex_waitv` syscall (not a real `futex(2)` op).
    pub const WAITV: u32 = 0x40;
    /// Synthetic command for the `futex_wait` syscall (Linux 6.7).
    pub const WAIT2: u32 = 0x41;

    /// Whether this command puts the caller to sleep (yields a wait event).
    #[must_use]
    pub const fn is_wait(cmd: u32) -> bool {
        matches!(
            cmd,
            WAIT | WAIT_BITSET | LOCK_PI | LOCK_PI2 | WAIT_REQUEUE_PI | WAITV | WAIT2
        )
    }

    /// Whether this command wakes waiters (counted in the kernel, no event).
    #[must_use]
    pub const fn is_wake(cmd: u32) -> bool {
        matches!(
            cmd,
            WAKE | WAKE_BITSET | WAKE_OP | UNLOCK_PI | REQUEUE | CMP_REQUEUE | CMP_REQUEUE_PI
        )
    }
}

/// The owner-TID bits of a PI futex word (`FUTEX_TID_MASK` in `linux/futex.h`); the bits
/// above are `FUTEX_WAITERS` and `FUTEX_OWNER_DIED`.
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// A wait on one futex word: the word, the futex command (see [`futex_cmd`]) and the
/// value the caller expects the word to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FutexWait {
    pub addr: u64,
    pub cmd: u32,
    pub val: u32,
}

impl FutexWait {
    /// The wait a `futex_waitv` call stands for: the first entry of its
    /// `struct futex_waitv` array (`{ u64 val; u64 uaddr; u32 flags; u32 reserved; }`),
    /// given as its first two words.
    #[expect(
        clippy::inline_always,
        reason = "on the eBPF hot path: a BPF-to-BPF call would cost more than the body"
    )]
    #[inline(always)]
    #[must_use]
    pub const fn of_waitv([val, uaddr]: [u64; 2]) -> Self {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "futex_waitv.val holds a u32 value"
        )]
        let val = val as u32;
        Self {
            addr: uaddr,
            cmd: futex_cmd::WAITV,
            val,
        }
    }
}

/// `FUTEX_CLOCK_REALTIME`: the op flag that measures an absolute timeout on
/// `CLOCK_REALTIME` instead of `CLOCK_MONOTONIC`.
pub const FUTEX_CLOCK_REALTIME: u32 = 256;

/// `CLOCK_REALTIME` as the `clockid` argument of `futex_wait(2)` and `futex_waitv(2)`.
const CLOCKID_REALTIME: u64 = 0;

/// How a futex wait's timeout argument (a `struct timespec`) is to be read. The values
/// travel in [`WaitTimeoutArg::clock`](crate::WaitTimeoutArg).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutClock {
    /// A length of time from the call (`FUTEX_WAIT`).
    Relative = 1,
    /// An absolute `CLOCK_MONOTONIC` time.
    Monotonic = 2,
    /// An absolute `CLOCK_REALTIME` time (`FUTEX_CLOCK_REALTIME`, `FUTEX_LOCK_PI`).
    Realtime = 3,
}

impl TimeoutClock {
    /// The clock of `futex_wait(2)`'s and `futex_waitv(2)`'s `clockid` argument (the
    /// kernel accepts only `CLOCK_MONOTONIC` and `CLOCK_REALTIME`).
    #[expect(clippy::inline_always, reason = "as for FutexTimeout::of_call")]
    #[inline(always)]
    #[must_use]
    pub const fn of_clockid(clockid: u64) -> Self {
        if clockid & 0xffff_ffff == CLOCKID_REALTIME {
            Self::Realtime
        } else {
            Self::Monotonic
        }
    }
}

/// Where a waiting futex call keeps its timeout, and how to read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FutexTimeout {
    /// Address of the `struct timespec` in the caller's memory (never 0).
    pub addr: u64,
    pub clock: TimeoutClock,
}

impl FutexTimeout {
    /// The timeout of waiting system call `nr`, from all six of its arguments (`rdi`,
    /// `rsi`, `rdx`, `r10`, `r8`, `r9`); `None` for a call that waits without one (a
    /// NULL pointer), and for calls that do not wait.
    ///
    /// Per the kernel (`futex_init_timeout`, `do_futex`): `FUTEX_WAIT`'s timeout is
    /// relative; `FUTEX_LOCK_PI`'s is absolute on `CLOCK_REALTIME` whatever the flags;
    /// `FUTEX_WAIT_BITSET`, `FUTEX_WAIT_REQUEUE_PI` and `FUTEX_LOCK_PI2` take an absolute
    /// time on `CLOCK_REALTIME` with `FUTEX_CLOCK_REALTIME`, else `CLOCK_MONOTONIC`.
    /// `futex_wait(2)` (timeout in the fifth argument) and `futex_waitv(2)` (fourth) take
    /// an absolute time on the clock their next argument names.
    #[expect(
        clippy::inline_always,
        reason = "on the eBPF sleep path: a BPF-to-BPF call would cost more than the body"
    )]
    #[inline(always)]
    #[must_use]
    pub const fn of_call(nr: i64, [_, arg1, _, arg3, arg4, arg5]: [u64; 6]) -> Option<Self> {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the futex op is a 32-bit int"
        )]
        let op = arg1 as u32;
        let by_flag = if op & FUTEX_CLOCK_REALTIME == 0 {
            TimeoutClock::Monotonic
        } else {
            TimeoutClock::Realtime
        };
        let (addr, clock) = match nr {
            syscall::FUTEX => match op & futex_cmd::CMD_MASK {
                futex_cmd::WAIT => (arg3, TimeoutClock::Relative),
                futex_cmd::LOCK_PI => (arg3, TimeoutClock::Realtime),
                futex_cmd::WAIT_BITSET | futex_cmd::WAIT_REQUEUE_PI | futex_cmd::LOCK_PI2 => {
                    (arg3, by_flag)
                }
                _ => return None,
            },
            syscall::FUTEX_WAIT => (arg4, TimeoutClock::of_clockid(arg5)),
            syscall::FUTEX_WAITV => (arg3, TimeoutClock::of_clockid(arg4)),
            _ => return None,
        };
        if addr == 0 {
            None
        } else {
            Some(Self { addr, clock })
        }
    }
}

/// A futex system call, as far as the tracer cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexCall {
    /// A call that waits on one futex word: `futex(2)` with a waiting command, or
    /// `futex_wait(2)`.
    Wait(FutexWait),
    /// `futex_waitv(2)`: a wait on several words, listed in the caller's memory at
    /// `waiters`. The first of them stands for the call: read two words there and give
    /// them to [`FutexWait::of_waitv`].
    WaitV { waiters: u64 },
    /// A call that wakes waiters: `futex(2)` with a waking command, or `futex_wake(2)`.
    Wake,
}

impl FutexCall {
    /// Decodes system call `nr` from its first three arguments (`rdi`, `rsi`, `rdx`: all
    /// that tells a futex call's word, command and expected value). `None` for any other
    /// system call, and for futex commands that neither wait nor wake.
    ///
    /// The futex command is masked ([`futex_cmd::CMD_MASK`]); `futex_wait(2)` and
    /// `futex_waitv(2)` get the synthetic commands [`futex_cmd::WAIT2`] and
    /// [`futex_cmd::WAITV`].
    #[expect(
        clippy::inline_always,
        reason = "runs in the sys_exit hook for every system call of the target: a BPF-to-BPF call would cost more than the body"
    )]
    #[inline(always)]
    #[must_use]
    pub const fn decode(nr: i64, [arg0, arg1, arg2]: [u64; 3]) -> Option<Self> {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "futex op and val are 32-bit ints"
        )]
        let (op, val) = (arg1 as u32, arg2 as u32);
        match nr {
            syscall::FUTEX => {
                let cmd = op & futex_cmd::CMD_MASK;
                if futex_cmd::is_wait(cmd) {
                    Some(Self::Wait(FutexWait {
                        addr: arg0,
                        cmd,
                        val,
                    }))
                } else if futex_cmd::is_wake(cmd) {
                    Some(Self::Wake)
                } else {
                    None
                }
            }
            // futex_wait(uaddr, val, mask, flags, timeout, clockid).
            syscall::FUTEX_WAIT => Some(Self::Wait(FutexWait {
                addr: arg0,
                cmd: futex_cmd::WAIT2,
                val: op,
            })),
            syscall::FUTEX_WAITV => Some(Self::WaitV { waiters: arg0 }),
            syscall::FUTEX_WAKE => Some(Self::Wake),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: u64 = 128;
    const CLOCK_REALTIME: u64 = 256;

    fn wait(addr: u64, cmd: u32, val: u32) -> FutexCall {
        FutexCall::Wait(FutexWait { addr, cmd, val })
    }

    #[test]
    fn futex_waits_keep_word_masked_command_and_value() {
        assert_eq!(
            FutexCall::decode(syscall::FUTEX, [0x1000, PRIVATE, 2]),
            Some(wait(0x1000, futex_cmd::WAIT, 2))
        );
        assert_eq!(
            FutexCall::decode(
                syscall::FUTEX,
                [
                    0x2000,
                    u64::from(futex_cmd::WAIT_BITSET) | PRIVATE | CLOCK_REALTIME,
                    0
                ]
            ),
            Some(wait(0x2000, futex_cmd::WAIT_BITSET, 0))
        );
        assert_eq!(
            FutexCall::decode(syscall::FUTEX, [0x3000, u64::from(futex_cmd::LOCK_PI2), 0]),
            Some(wait(0x3000, futex_cmd::LOCK_PI2, 0))
        );
        // The registers' upper halves are not part of the 32-bit op and val.
        assert_eq!(
            FutexCall::decode(
                syscall::FUTEX,
                [0x4000, 0xdead_0000_0000_0080, 0xffff_ffff_0000_0007]
            ),
            Some(wait(0x4000, futex_cmd::WAIT, 7))
        );
    }

    #[test]
    fn futex_wakes_and_other_commands() {
        for cmd in [
            futex_cmd::WAKE,
            futex_cmd::WAKE_OP,
            futex_cmd::UNLOCK_PI,
            futex_cmd::CMP_REQUEUE_PI,
        ] {
            assert_eq!(
                FutexCall::decode(syscall::FUTEX, [0x1000, u64::from(cmd) | PRIVATE, 1]),
                Some(FutexCall::Wake),
                "{cmd}"
            );
        }
        // FUTEX_FD (2) and FUTEX_TRYLOCK_PI neither wait nor wake.
        assert_eq!(FutexCall::decode(syscall::FUTEX, [0x1000, 2, 0]), None);
        assert_eq!(
            FutexCall::decode(
                syscall::FUTEX,
                [0x1000, u64::from(futex_cmd::TRYLOCK_PI), 0]
            ),
            None
        );
    }

    #[test]
    fn newer_futex_calls_get_their_synthetic_commands() {
        assert_eq!(
            FutexCall::decode(syscall::FUTEX_WAIT, [0x5000, 3, u64::MAX]),
            Some(wait(0x5000, futex_cmd::WAIT2, 3))
        );
        assert_eq!(
            FutexCall::decode(syscall::FUTEX_WAKE, [0x5000, 1, 0]),
            Some(FutexCall::Wake)
        );
        assert_eq!(
            FutexCall::decode(syscall::FUTEX_WAITV, [0x7fff_0000, 2, 0]),
            Some(FutexCall::WaitV {
                waiters: 0x7fff_0000
            })
        );
        assert_eq!(
            FutexWait::of_waitv([0xffff_ffff_0000_0005, 0x6000]),
            FutexWait {
                addr: 0x6000,
                cmd: futex_cmd::WAITV,
                val: 5
            }
        );
        // Every wait the decoder makes has a waiting command.
        assert!(futex_cmd::is_wait(futex_cmd::WAIT2) && futex_cmd::is_wait(futex_cmd::WAITV));
    }

    const NO_ARGS: [u64; 6] = [0; 6];

    fn args(arg1: u64, arg3: u64, arg4: u64, arg5: u64) -> [u64; 6] {
        [0x1000, arg1, 2, arg3, arg4, arg5]
    }

    /// Guards the reading of a wait's timeout: which argument holds it and on which clock
    /// it counts, per command and flag, so a timed wait is never taken for a permanent one
    /// (or the other way round) and its deadline is read on the right clock.
    #[test]
    fn timeouts_come_from_the_right_argument_on_the_right_clock() {
        let futex = |op: u32, timeout: u64| {
            FutexTimeout::of_call(syscall::FUTEX, args(u64::from(op), timeout, 0, 0))
        };
        let at = |addr, clock| Some(FutexTimeout { addr, clock });
        let private = 128;
        assert_eq!(
            futex(futex_cmd::WAIT | private, 0x7000),
            at(0x7000, TimeoutClock::Relative)
        );
        // FUTEX_CLOCK_REALTIME does not make FUTEX_WAIT's timeout absolute.
        assert_eq!(
            futex(futex_cmd::WAIT | FUTEX_CLOCK_REALTIME, 0x7000),
            at(0x7000, TimeoutClock::Relative)
        );
        // pthread_mutex_timedlock: FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME | private.
        assert_eq!(
            futex(
                futex_cmd::WAIT_BITSET | FUTEX_CLOCK_REALTIME | private,
                0x7100
            ),
            at(0x7100, TimeoutClock::Realtime)
        );
        // pthread_mutex_clocklock(CLOCK_MONOTONIC): no flag.
        assert_eq!(
            futex(futex_cmd::WAIT_BITSET | private, 0x7100),
            at(0x7100, TimeoutClock::Monotonic)
        );
        // FUTEX_LOCK_PI is always on CLOCK_REALTIME; FUTEX_LOCK_PI2 follows the flag.
        assert_eq!(
            futex(futex_cmd::LOCK_PI, 0x7200),
            at(0x7200, TimeoutClock::Realtime)
        );
        assert_eq!(
            futex(futex_cmd::LOCK_PI2, 0x7200),
            at(0x7200, TimeoutClock::Monotonic)
        );
        assert_eq!(
            futex(futex_cmd::LOCK_PI2 | FUTEX_CLOCK_REALTIME, 0x7200),
            at(0x7200, TimeoutClock::Realtime)
        );
        // No timeout: a NULL pointer, or a command that does not wait.
        assert_eq!(futex(futex_cmd::WAIT_BITSET, 0), None);
        assert_eq!(futex(futex_cmd::WAKE, 0x7000), None);
        assert_eq!(FutexTimeout::of_call(syscall::FUTEX, NO_ARGS), None);
        // futex_wait(uaddr, val, mask, flags, timeout, clockid).
        assert_eq!(
            FutexTimeout::of_call(syscall::FUTEX_WAIT, args(2, u64::MAX, 0x7300, 1)),
            at(0x7300, TimeoutClock::Monotonic)
        );
        assert_eq!(
            FutexTimeout::of_call(syscall::FUTEX_WAIT, args(2, u64::MAX, 0x7300, 0)),
            at(0x7300, TimeoutClock::Realtime)
        );
        // futex_waitv(waiters, nr, flags, timeout, clockid).
        assert_eq!(
            FutexTimeout::of_call(syscall::FUTEX_WAITV, args(2, 0x7400, 1, 0)),
            at(0x7400, TimeoutClock::Monotonic)
        );
        assert_eq!(
            FutexTimeout::of_call(syscall::FUTEX_WAITV, args(2, 0x7400, 0, 0)),
            at(0x7400, TimeoutClock::Realtime)
        );
        assert_eq!(
            FutexTimeout::of_call(syscall::FUTEX_WAKE, args(1, 0x7400, 0, 0)),
            None
        );
        assert_eq!(FutexTimeout::of_call(0, args(0, 0x7400, 0, 0)), None);
    }

    #[test]
    fn other_system_calls_are_not_futex_calls() {
        for nr in [0, 1, 7, 201, 203, 448, 450, 456, -1] {
            assert_eq!(FutexCall::decode(nr, [0x1000, 0, 0]), None, "{nr}");
        }
    }

    #[test]
    fn tid_mask_drops_waiters_and_owner_died_bits() {
        assert_eq!(0x8000_1234 & FUTEX_TID_MASK, 0x1234);
        assert_eq!(0x4000_1234 & FUTEX_TID_MASK, 0x1234);
        assert_eq!(FUTEX_TID_MASK & 0xc000_0000, 0);
    }

    #[test]
    fn wait_and_wake_commands_are_disjoint() {
        for cmd in 0..0x80 {
            assert!(
                !(futex_cmd::is_wait(cmd) && futex_cmd::is_wake(cmd)),
                "{cmd}"
            );
        }
        assert!(futex_cmd::is_wait(futex_cmd::LOCK_PI2));
        assert!(futex_cmd::is_wake(futex_cmd::WAKE_BITSET));
    }
}
