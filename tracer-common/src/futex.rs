//! Futex system calls: their numbers and commands.

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

#[cfg(test)]
mod tests {
    use super::*;

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
