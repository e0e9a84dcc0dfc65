//! Go lock probe sites: what a site means ([`GoOp`]) and the attach cookie
//! ([`go_cookie`]) that tells the one Go program which registers to read there.
use crate::UnknownValue;

/// What a Go lock probe site means ([`GoEvent::op`](crate::GoEvent::op), low byte of the
/// attach cookie).
///
/// Sites after an atomic fire once the atomic has run: uprobes refuse `lock`-prefixed
/// instructions, and only afterwards is the outcome (`ZF`, the old value) known.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GoOp {
    /// After the `lock cmpxchg` of an inlined or out-of-line `Mutex.Lock`/`TryLock`:
    /// the kernel emits only when `ZF` says the swap succeeded (the mutex is now held).
    MutexLockFast = 1,
    /// After the `lock xadd` of `Mutex.Unlock`: the mutex was released.
    MutexUnlock = 2,
    /// As [`GoOp::MutexLockFast`], on `rw.w` inside `RWMutex.Lock`: the write side of an
    /// `RWMutex` (same address: `w` is its first field).
    RwLockFast = 3,
    /// As [`GoOp::MutexUnlock`], on `rw.w` inside `RWMutex.Unlock`.
    RwUnlock = 4,
    /// After the `lock xadd` of `RWMutex.RLock` on `readerCount`: `value` holds the old
    /// count; old + 1 < 0 means a writer holds or waits and the reader now blocks.
    RLockFast = 5,
    /// After the `lock xadd` of `RWMutex.RUnlock` on `readerCount`: a read hold ended.
    RUnlock = 6,
    /// Entry of `Mutex.lockSlow` (`addr` = receiver, from `AX`): the goroutine waits.
    LockSlowEnter = 7,
    /// A `ret` of `Mutex.lockSlow`: the mutex the goroutine waited for is now held.
    LockSlowReturn = 8,
    /// A `ret` of the runtime semaphore acquire used by mutexes and readers: a reader's
    /// wait (if one is pending) ends with the read lock held; in the default mode (waits
    /// only) any pending wait ends.
    SemacquireReturn = 9,
    /// Entry of a `sync` semaphore acquire (`sync.runtime_SemacquireMutex`, `…RWMutexR`,
    /// `…RWMutex`; `addr` = the semaphore, from `AX`; `caller` = the `sync` code that
    /// waits, which says which lock and side): the goroutine is about to park.
    SemacquireEnter = 10,
    /// Entry of `sync.runtime_Semrelease` (`addr` = the semaphore, `caller` as above): a
    /// lock is handed to, or released for, goroutines parked on it.
    SemreleaseEnter = 11,
}

impl TryFrom<u32> for GoOp {
    type Error = UnknownValue;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Ok(match value {
            1 => Self::MutexLockFast,
            2 => Self::MutexUnlock,
            3 => Self::RwLockFast,
            4 => Self::RwUnlock,
            5 => Self::RLockFast,
            6 => Self::RUnlock,
            7 => Self::LockSlowEnter,
            8 => Self::LockSlowReturn,
            9 => Self::SemacquireReturn,
            10 => Self::SemacquireEnter,
            11 => Self::SemreleaseEnter,
            other => return Err(UnknownValue(other)),
        })
    }
}

/// What a native (non-Go) site of the same program means: the low byte of its attach
/// cookie, as for [`GoOp`], from a range no `GoOp` uses, so the one site program serves
/// both and the reader tells them apart by value.
///
/// Rust's `parking_lot` parks threads on words of their own, not on the lock: the lock
/// is only seen at the entry of its slow paths (`addr` = the lock, from `RDI`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NativeSiteOp {
    /// Entry of `parking_lot::RawMutex::lock_slow`.
    ParkingLotLock = 64,
    /// Entry of `parking_lot::RawRwLock::lock_exclusive_slow`.
    ParkingLotWrite = 65,
    /// Entry of `parking_lot::RawRwLock::lock_shared_slow`.
    ParkingLotRead = 66,
}

impl TryFrom<u32> for NativeSiteOp {
    type Error = UnknownValue;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Ok(match value {
            64 => Self::ParkingLotLock,
            65 => Self::ParkingLotWrite,
            66 => Self::ParkingLotRead,
            other => return Err(UnknownValue(other)),
        })
    }
}

/// Slots of the x86-64 `struct pt_regs` (its field order), as used in [`go_cookie`].
pub mod pt_reg {
    pub const R15: u8 = 0;
    pub const R14: u8 = 1;
    pub const R13: u8 = 2;
    pub const R12: u8 = 3;
    pub const RBP: u8 = 4;
    pub const RBX: u8 = 5;
    pub const R11: u8 = 6;
    pub const R10: u8 = 7;
    pub const R9: u8 = 8;
    pub const R8: u8 = 9;
    pub const RAX: u8 = 10;
    pub const RCX: u8 = 11;
    pub const RDX: u8 = 12;
    pub const RSI: u8 = 13;
    pub const RDI: u8 = 14;
    /// The probed instruction's address (uprobes set it before running handlers), for
    /// RIP-relative operands: displacement = target − probe address.
    pub const RIP: u8 = 16;
    pub const RSP: u8 = 19;
    /// No register: the site carries no address or value.
    pub const NONE: u8 = 0xff;
}

/// The attach cookie of a Go lock site: everything the kernel needs to turn registers
/// into an event, so one program serves every site with no map lookup.
///
/// Bits 0–7 [`GoOp`], 8–15 base register ([`pt_reg`] slot), 16–23 value register,
/// 32–63 signed displacement: `addr = regs[base] + displacement`.
pub mod go_cookie {
    use super::GoOp;

    /// Packs a site's op, address operand and value register.
    #[must_use]
    pub const fn pack(op: GoOp, base: u8, value: u8, displacement: i32) -> u64 {
        (op as u64)
            | ((base as u64) << 8)
            | ((value as u64) << 16)
            | ((displacement.cast_unsigned() as u64) << 32)
    }

    /// Packs a native site's op and address operand, as [`pack`] does a Go site's.
    #[must_use]
    pub const fn pack_native(
        op: super::NativeSiteOp,
        base: u8,
        value: u8,
        displacement: i32,
    ) -> u64 {
        (op as u64)
            | ((base as u64) << 8)
            | ((value as u64) << 16)
            | ((displacement.cast_unsigned() as u64) << 32)
    }

    /// The raw op (checked with `GoOp::try_from` by whoever needs the enum).
    #[must_use]
    pub const fn op(cookie: u64) -> u32 {
        (cookie & 0xff) as u32
    }

    /// The base register slot.
    #[must_use]
    pub const fn base(cookie: u64) -> u8 {
        ((cookie >> 8) & 0xff) as u8
    }

    /// The value register slot.
    #[must_use]
    pub const fn value(cookie: u64) -> u8 {
        ((cookie >> 16) & 0xff) as u8
    }

    /// The displacement added to the base register.
    #[must_use]
    pub const fn displacement(cookie: u64) -> i32 {
        ((cookie >> 32) as u32).cast_signed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_ops_round_trip() {
        for raw in 1..=11 {
            let op = GoOp::try_from(raw).expect("known op");
            assert_eq!(op as u32, raw);
        }
        assert!(GoOp::try_from(0).is_err());
        assert!(GoOp::try_from(12).is_err());
        for raw in 64..=66 {
            let op = NativeSiteOp::try_from(raw).expect("known native op");
            assert_eq!(op as u32, raw);
            assert!(GoOp::try_from(raw).is_err(), "the two ranges must not meet");
        }
        assert!(NativeSiteOp::try_from(67).is_err());
    }

    #[test]
    fn go_cookie_round_trips_negative_displacements() {
        let cookie = go_cookie::pack(GoOp::RLockFast, pt_reg::RIP, pt_reg::RCX, -0x1234);
        assert_eq!(go_cookie::op(cookie), GoOp::RLockFast as u32);
        assert_eq!(go_cookie::base(cookie), pt_reg::RIP);
        assert_eq!(go_cookie::value(cookie), pt_reg::RCX);
        assert_eq!(go_cookie::displacement(cookie), -0x1234);
        let max = go_cookie::pack(GoOp::SemacquireReturn, pt_reg::NONE, pt_reg::NONE, i32::MAX);
        assert_eq!(go_cookie::displacement(max), i32::MAX);
        assert_eq!(go_cookie::base(max), pt_reg::NONE);
    }
}
