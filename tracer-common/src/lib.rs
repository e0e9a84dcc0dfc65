//! The contract between `tracer-ebpf` (kernel side) and `tracer-user` (userspace).
//!
//! Everything that crosses the boundary lives here: the fixed-size ring-buffer record,
//! the numeric kinds it carries, the counter slots, and the names under which maps,
//! programs and globals appear in the built object. Both sides use these constants, so
//! a rename cannot silently break attachment.
#![no_std]

/// Name of the BPF ring buffer carrying [`Event`] records.
pub const MAP_EVENTS: &str = "EVENTS";
/// Name of the per-CPU `u64` array of [`Counter`] slots.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Name of the stack-trace map filled by `bpf_get_stackid` (user stacks).
pub const MAP_STACKS: &str = "STACKS";
/// Name of the smaller stack-trace map that takes a stack whose bucket in [`MAP_STACKS`]
/// already holds another one. The kernel hashes a stack to one bucket and, unless told
/// to overwrite (which would change the stack behind ids that earlier events carry),
/// refuses a second stack there with `EEXIST`; without this map such a stack was lost,
/// and a deadlock could be reported with only its innermost frames. See [`StackSlot`].
pub const MAP_OVERFLOW_STACKS: &str = "OVERFLOW_STACKS";
/// Entries (and hash buckets) of [`MAP_STACKS`].
pub const STACKS_MAX_ENTRIES: u32 = 16 * 1024;
/// Entries (and hash buckets) of [`MAP_OVERFLOW_STACKS`]. Only stacks that collided in
/// [`MAP_STACKS`] land here, so a stack is lost only if it collides in both.
pub const OVERFLOW_STACKS_MAX_ENTRIES: u32 = 4 * 1024;
/// Name of the LRU hash (TID → [`PendingLock`]) that carries a lock call from its entry
/// uprobe to its return uprobe (only used with `--holds`). A thread keeps its entry
/// between calls ([`PendingLock::op`] is 0 when no call is in flight).
pub const MAP_PENDING_LOCKS: &str = "PENDING_LOCKS";
/// Name of the per-CPU hash (futex word address → [`BriefWaits`]) where waits that never slept
/// are added up in the kernel instead of sent one by one.
pub const MAP_BRIEF_WAITS: &str = "BRIEF_WAITS";
/// Name of the one-entry per-CPU array ([`CpuBriefWaits`]) adding up the waits that never
/// slept on the futex word this CPU saw last; they move to [`MAP_BRIEF_WAITS`] only when
/// a brief wait on another word comes along, so a hot lock costs no hash update per wait.
pub const MAP_CPU_BRIEF_WAITS: &str = "CPU_BRIEF_WAITS";
/// Name of the one-entry per-CPU array ([`StackSampler`]) that decides which sleeping
/// waits carry their stack ([`STACK_SAMPLE_EVERY`]).
pub const MAP_STACK_SAMPLER: &str = "STACK_SAMPLER";
/// Name of the one-entry `u32` array the reader sets to 1 while it drains on its own
/// timer (a busy target) and to 0 before it sleeps until a record comes: records are
/// submitted without waking it while it is 1.
pub const MAP_READER_POLLS: &str = "READER_POLLS";

/// Global (in `.rodata`) holding the target's TGID; set by the loader before load, so
/// every program filters on it before doing any other work.
pub const GLOBAL_TARGET_TGID: &str = "TARGET_TGID";

/// Program on the `sys_exit` BTF raw tracepoint: futex wait ends and wake counts.
pub const PROG_SYS_EXIT: &str = "futex_exit";
/// Program on the `sched_switch` BTF raw tracepoint: a target thread in a futex wait
/// goes to sleep, which is when its wait is seen begin and is sent. (There is no
/// `sys_enter` program: see `tracer-ebpf/src/futex_sleep.rs`.)
pub const PROG_SCHED_SWITCH: &str = "futex_sleep";
/// Uprobe on the entry of every lock-acquiring function (`--holds`).
pub const PROG_LOCK_ENTRY: &str = "lock_entry";
/// Uretprobe on the same functions (`--holds`), emits [`EventKind::LockAcquired`].
pub const PROG_LOCK_RETURN: &str = "lock_return";
/// Uprobe on the entry of unlock functions (`--holds`), emits [`EventKind::LockReleased`].
pub const PROG_UNLOCK_ENTRY: &str = "unlock_entry";

/// Uprobe on every Go lock probe site (entries, returns and the instruction after each
/// inlined atomic); what it reports comes from the attach cookie ([`go_cookie`]).
pub const PROG_GO_LOCK_SITE: &str = "go_lock_site";

/// Global holding the offset of `goid` in the Go runtime's `g` struct; set by the loader
/// before load (0 when the target is not a Go program: Go sites are then never attached).
pub const GLOBAL_GO_GOID_OFFSET: &str = "GO_GOID_OFFSET";

/// Empty programs on the same hooks, attached only by the benchmark's floor runs.
pub const PROG_NOOP_SYS_EXIT: &str = "noop_sys_exit";
pub const PROG_NOOP_SCHED_SWITCH: &str = "noop_sched_switch";
pub const PROG_NOOP_UPROBE: &str = "noop_uprobe";
pub const PROG_NOOP_URETPROBE: &str = "noop_uretprobe";

/// Every map name, for the test that checks the built object holds each one.
pub const ALL_MAPS: [&str; 9] = [
    MAP_EVENTS,
    MAP_STACK_SAMPLER,
    MAP_READER_POLLS,
    MAP_CPU_BRIEF_WAITS,
    MAP_COUNTERS,
    MAP_STACKS,
    MAP_OVERFLOW_STACKS,
    MAP_PENDING_LOCKS,
    MAP_BRIEF_WAITS,
];
/// Every program name, for the same test.
pub const ALL_PROGRAMS: [&str; 10] = [
    PROG_SCHED_SWITCH,
    PROG_GO_LOCK_SITE,
    PROG_SYS_EXIT,
    PROG_LOCK_ENTRY,
    PROG_LOCK_RETURN,
    PROG_UNLOCK_ENTRY,
    PROG_NOOP_SYS_EXIT,
    PROG_NOOP_SCHED_SWITCH,
    PROG_NOOP_UPROBE,
    PROG_NOOP_URETPROBE,
];

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

/// Which lock function a uprobe event came from (`Event::op` for lock events).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockOp {
    MutexLock = 1,
    MutexTryLock = 2,
    MutexTimedLock = 3,
    MutexUnlock = 4,
    RwRead = 5,
    RwTryRead = 6,
    RwTimedRead = 7,
    RwWrite = 8,
    RwTryWrite = 9,
    RwTimedWrite = 10,
    RwUnlock = 11,
    /// `pthread_cond_*wait(cond, mutex)`: releases `mutex` on entry and holds it again on
    /// return. glibc does both through internal functions no uprobe on the public lock
    /// functions sees, so without this a mutex would look held for the whole condvar wait.
    CondWait = 12,
}

impl LockOp {
    /// Whether the lock is taken shared (an rwlock read side).
    #[must_use]
    pub const fn is_read(self) -> bool {
        matches!(self, Self::RwRead | Self::RwTryRead | Self::RwTimedRead)
    }

    /// Whether the op is on an rwlock rather than a mutex.
    #[must_use]
    pub const fn is_rwlock(self) -> bool {
        !matches!(
            self,
            Self::MutexLock
                | Self::MutexTryLock
                | Self::MutexTimedLock
                | Self::MutexUnlock
                | Self::CondWait
        )
    }
}

impl TryFrom<u32> for LockOp {
    type Error = UnknownValue;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Ok(match value {
            1 => Self::MutexLock,
            2 => Self::MutexTryLock,
            3 => Self::MutexTimedLock,
            4 => Self::MutexUnlock,
            5 => Self::RwRead,
            6 => Self::RwTryRead,
            7 => Self::RwTimedRead,
            8 => Self::RwWrite,
            9 => Self::RwTryWrite,
            10 => Self::RwTimedWrite,
            11 => Self::RwUnlock,
            12 => Self::CondWait,
            other => return Err(UnknownValue(other)),
        })
    }
}

/// A `u32` on the wire that names no known variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownValue(pub u32);

/// What an [`Event`] record reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A thread entered a waiting futex op. `addr` = futex word, `op` = command,
    /// `val` = expected value, `snapshot` = memory around the word, `stack_id` = user stack.
    FutexWait = 1,
    /// The same thread left that futex op. `addr`, `op` as at entry; `ret` = syscall result.
    FutexWaitDone = 2,
    /// A lock function returned success (`--holds`); sent as a [`LockRecord`]. `addr` = lock
    /// object, `op` = [`LockOp`], `start_ns` = when the call began, `stack_id` = user stack
    /// at the call.
    LockAcquired = 3,
    /// An unlock function was entered (`--holds`); sent as a [`LockRecord`]. `addr` = lock
    /// object, `op` = [`LockOp`].
    LockReleased = 4,
    /// A Go lock probe site fired; sent as a [`GoEvent`] record, `op` = [`GoOp`].
    GoLock = 5,
}

impl TryFrom<u32> for EventKind {
    type Error = UnknownValue;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Ok(match value {
            1 => Self::FutexWait,
            2 => Self::FutexWaitDone,
            3 => Self::LockAcquired,
            4 => Self::LockReleased,
            5 => Self::GoLock,
            other => return Err(UnknownValue(other)),
        })
    }
}

/// What a Go lock probe site means ([`GoEvent::op`], low byte of the attach cookie).
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
    /// wait (if one is pending) ends with the read lock held.
    SemacquireReturn = 9,
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

/// The record of a Go lock site ([`EventKind::GoLock`]); told apart from [`Event`] and
/// [`WaitRecord`] by its size.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoEvent {
    /// [`EventKind::GoLock`] as `u32`.
    pub kind: u32,
    /// Kernel TID of the thread running the goroutine.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` when the site fired.
    pub ts_ns: u64,
    /// The goroutine's id (`g.goid`), 0 if it could not be read.
    pub goid: u64,
    /// Address of the goroutine's `g` (`R14` in Go's register ABI).
    pub g: u64,
    /// `regs[base] + displacement` from the cookie: the operand of the atomic, or the
    /// receiver at an entry; 0 when the site has no base register.
    pub addr: u64,
    /// The probed instruction (`regs.ip`).
    pub pc: u64,
    /// At entry sites the return address (`[sp]`), which a frame-pointer walk from a
    /// function's first instruction misses; 0 elsewhere.
    pub caller: u64,
    /// The value register from the cookie, sign-extended from 32 bits; 0 if none.
    pub value: i64,
    /// A [`GoOp`] as `u32`.
    pub op: u32,
    /// A stack id ([`StackSlot`]), or a negative errno.
    pub stack_id: i32,
}

/// Size of [`GoEvent`] on the wire.
pub const GO_EVENT_SIZE: usize = 72;
const _: () = assert!(core::mem::size_of::<GoEvent>() == GO_EVENT_SIZE);
const _: () = assert!(GO_EVENT_SIZE != EVENT_SIZE && GO_EVENT_SIZE != WAIT_RECORD_SIZE);

/// Number of 32-bit words of lock memory copied at each futex wait.
pub const SNAPSHOT_WORDS: usize = 16;
/// The snapshot starts this many bytes before the futex word, so that a futex word in
/// the middle of a lock object (glibc rwlocks wait on words at offsets 8 and 12) still
/// has the object's start and owner field inside the copy.
pub const SNAPSHOT_LEAD_BYTES: u64 = 16;

/// One fixed-size ring-buffer record. Fields not used by a kind are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// An [`EventKind`] as `u32`.
    pub kind: u32,
    /// Kernel TID of the thread the event is about.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`) when the event happened.
    pub ts_ns: u64,
    /// Futex word or lock object address in the target's address space.
    pub addr: u64,
    /// For [`EventKind::LockAcquired`]: when the lock call began.
    pub start_ns: u64,
    /// Syscall or function return value, sign-extended.
    pub ret: i64,
    /// Futex command (see [`futex_cmd`]) or [`LockOp`].
    pub op: u32,
    /// Futex expected value (`val` argument).
    pub val: u32,
    /// A stack id ([`StackSlot`]), or a negative errno.
    pub stack_id: i32,
    /// Number of valid bytes in `snapshot` (0 when the copy failed).
    pub snapshot_len: u32,
    /// Address of `snapshot[0]` in the target ([`EventKind::FutexWait`]); for
    /// [`EventKind::LockAcquired`], the call site (return address of the lock call).
    pub snapshot_addr: u64,
    /// Copy of target memory starting at `snapshot_addr`.
    pub snapshot: [u32; SNAPSHOT_WORDS],
}

impl Event {
    /// An all-zero record, for filling in field by field.
    pub const ZERO: Self = Self {
        kind: 0,
        tid: 0,
        ts_ns: 0,
        addr: 0,
        start_ns: 0,
        ret: 0,
        op: 0,
        val: 0,
        stack_id: 0,
        snapshot_len: 0,
        snapshot_addr: 0,
        snapshot: [0; SNAPSHOT_WORDS],
    };
}

/// Size of [`Event`] on the wire; both sides assert it.
pub const EVENT_SIZE: usize = 128;
const _: () = assert!(core::mem::size_of::<Event>() == EVENT_SIZE);
const _: () = assert!(core::mem::align_of::<Event>() == 8);

/// The record of a `--holds` lock event ([`EventKind::LockAcquired`] or
/// [`EventKind::LockReleased`]); told apart from the other records by its size.
///
/// Its own record rather than an [`Event`] because these are the most frequent records of
/// a `--holds` trace (two per lock/unlock pair, written while the lock is held): 56 bytes
/// in the ring buffer with its header instead of 136 is half the copy and fewer cache
/// lines for the kernel to write and the reader to read.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockRecord {
    /// [`EventKind::LockAcquired`] or [`EventKind::LockReleased`] as `u32`.
    pub kind: u32,
    /// Kernel TID of the thread that took or released the lock.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` when the lock call returned (acquired) or the unlock began.
    pub ts_ns: u64,
    /// The lock object's address in the target.
    pub addr: u64,
    /// Acquired: when the lock call began. Released: 0.
    pub start_ns: u64,
    /// Acquired: the call site (return address of the lock call). Released: 0.
    pub call_site: u64,
    /// A [`LockOp`] as `u32`.
    pub op: u32,
    /// Acquired: a stack id ([`StackSlot`]) or a negative errno.
    /// Released: 0.
    pub stack_id: i32,
}

impl LockRecord {
    /// An all-zero record, for filling in field by field.
    pub const ZERO: Self = Self {
        kind: 0,
        tid: 0,
        ts_ns: 0,
        addr: 0,
        start_ns: 0,
        call_site: 0,
        op: 0,
        stack_id: 0,
    };
}

/// `LockRecord::stack_id` when no stack was taken because the lock call's caller keeps no
/// frame pointer (`rbp` does not point into the stack just above the stack pointer): the
/// kernel's walk would have found only garbage, and `call_site` locates the call.
/// A negative errno (`ENOENT`) like the other "no stack" values.
pub const STACK_ID_NO_FRAME_CHAIN: i32 = -2;

/// Size of [`LockRecord`] on the wire.
pub const LOCK_RECORD_SIZE: usize = 48;
const _: () = assert!(core::mem::size_of::<LockRecord>() == LOCK_RECORD_SIZE);
const _: () = assert!(
    LOCK_RECORD_SIZE != EVENT_SIZE
        && LOCK_RECORD_SIZE != GO_EVENT_SIZE
        && LOCK_RECORD_SIZE != WAIT_RECORD_SIZE
);

/// The record of an [`EventKind::FutexWaitDone`]: a futex wait returned. One goes out
/// per sleeping wait (and per wait woken before it slept), so it is kept to the fields an
/// end needs: 48 bytes in the ring buffer with its header instead of 136, fewer cache
/// lines for `sys_exit` to write and the reader to read.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitEndRecord {
    /// [`EventKind::FutexWaitDone`] as `u32`.
    pub kind: u32,
    /// Kernel TID of the thread whose wait ended.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` when the call returned.
    pub ts_ns: u64,
    /// The futex word (for `futex_waitv`, the first word waited on).
    pub addr: u64,
    /// The call's return value, sign-extended.
    pub ret: i64,
    /// Futex command (see [`futex_cmd`]) and expected value.
    pub op: u32,
    pub val: u32,
}

impl WaitEndRecord {
    /// An all-zero record, for filling in field by field.
    pub const ZERO: Self = Self {
        kind: 0,
        tid: 0,
        ts_ns: 0,
        addr: 0,
        ret: 0,
        op: 0,
        val: 0,
    };
}

/// Size of [`WaitEndRecord`] on the wire.
pub const WAIT_END_RECORD_SIZE: usize = 40;
const _: () = assert!(core::mem::size_of::<WaitEndRecord>() == WAIT_END_RECORD_SIZE);
const _: () = assert!(
    WAIT_END_RECORD_SIZE != EVENT_SIZE
        && WAIT_END_RECORD_SIZE != GO_EVENT_SIZE
        && WAIT_END_RECORD_SIZE != LOCK_RECORD_SIZE
        && WAIT_END_RECORD_SIZE != WAIT_RECORD_SIZE
);

/// Number of 64-bit words of user stack copied from the stack pointer at each futex wait.
///
/// glibc is built without frame pointers, so a frame-pointer walk from inside a futex
/// call skips `pthread_mutex_lock` and, worse, the application function that called it.
/// Those return addresses sit within a few dozen bytes of the user stack pointer, so
/// userspace recovers them by scanning this window for addresses that follow a call
/// instruction, then continues with the frame-pointer chain.
pub const STACK_WINDOW_WORDS: usize = 32;

/// The record of an [`EventKind::FutexWait`]: the common fields plus the top of the user
/// stack. Each kind goes out in a record of its own size ([`WaitEndRecord`],
/// [`LockRecord`], [`GoEvent`]), which is how the reader tells them apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitRecord {
    pub event: Event,
    /// User stack pointer at the syscall.
    pub user_sp: u64,
    /// User instruction pointer at the syscall.
    pub user_ip: u64,
    /// Number of valid words in `window`.
    pub window_words: u32,
    /// Explicit padding, always zero.
    pub pad: u32,
    /// User stack from `user_sp` upwards.
    pub window: [u64; STACK_WINDOW_WORDS],
}

/// Size of [`WaitRecord`] on the wire.
pub const WAIT_RECORD_SIZE: usize = EVENT_SIZE + 24 + STACK_WINDOW_WORDS * 8;
const _: () = assert!(core::mem::size_of::<WaitRecord>() == WAIT_RECORD_SIZE);
const _: () = assert!(WAIT_RECORD_SIZE != EVENT_SIZE);

/// A thread's lock call in flight between its entry and return uprobes (`--holds`), or
/// its last call once returned (`op` and `caller` are then 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLock {
    pub addr: u64,
    pub start_ns: u64,
    /// Return address of the lock call (read at `[sp]` on entry): the exact call site,
    /// which a frame-pointer walk from a function's first instruction would miss.
    pub caller: u64,
    /// The [`LockOp`] of the call in flight; 0 once its return was seen.
    pub op: u32,
    pub stack_id: i32,
}
const _: () = assert!(core::mem::size_of::<PendingLock>() == 32);

/// Waits on one futex word that returned without sleeping (`EAGAIN`: the word changed
/// while the waiter entered the kernel), added up on one CPU since the attach
/// ([`MAP_BRIEF_WAITS`]). Userspace sums the CPUs and folds the growth into the lock's
/// statistics. Counted, not timed: timing them needs a hook on every system call's entry
/// (see `tracer-ebpf/src/futex_sleep.rs`), and each lasts about one system call.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BriefWaits {
    pub count: u64,
    /// Futex command and expected value of the latest such wait, for classifying the word.
    pub op: u32,
    pub val: u32,
}
const _: () = assert!(core::mem::size_of::<BriefWaits>() == 16);

impl BriefWaits {
    /// No waits.
    pub const ZERO: Self = Self {
        count: 0,
        op: 0,
        val: 0,
    };
}

/// This CPU's running [`BriefWaits`] for futex word `addr` ([`MAP_CPU_BRIEF_WAITS`]): not
/// yet moved to the word's entry in [`MAP_BRIEF_WAITS`]. Userspace reads it after the
/// hash and adds it to the word's totals; `waits.count == 0` means empty.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuBriefWaits {
    pub addr: u64,
    pub waits: BriefWaits,
}
const _: () = assert!(core::mem::size_of::<CpuBriefWaits>() == 24);

/// Of the sleeping futex waits a CPU sees in a row on one futex word, one in this many
/// carries its stack (stack window and frame-pointer walk); the first wait on a word
/// always does. Copying the window was ~1.5% of the bench workload's throughput, paid
/// on the lock's hand-over path; a hot lock needs a sample of its waiters' stacks, not
/// every one. A wait sent without a stack whose stack is wanted later (a deadlock) has
/// it read from the target's memory then: the thread is still blocked in the wait.
pub const STACK_SAMPLE_EVERY: u32 = 8;

/// `stack_id` of a sleeping wait sent without its stack ([`STACK_SAMPLE_EVERY`]); a
/// negative errno (`ENODATA`) like the other "no stack" values.
pub const STACK_ID_SAMPLED_OUT: i32 = -61;

/// This CPU's run of sleeping waits on one futex word ([`MAP_STACK_SAMPLER`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackSampler {
    /// The futex word of the last sleeping wait on this CPU.
    pub addr: u64,
    /// Waits on `addr` sent without a stack since the last one sent with it.
    pub skipped: u32,
    /// Explicit padding, always zero.
    pub pad: u32,
}
const _: () = assert!(core::mem::size_of::<StackSampler>() == 16);

impl StackSampler {
    /// Whether the next sleeping wait, on futex word `addr`, carries its stack; updates
    /// the run. Plain logic shared by the kernel side and its unit test.
    #[inline]
    #[must_use]
    pub fn take(&mut self, addr: u64) -> bool {
        if self.addr == addr && self.skipped + 1 < STACK_SAMPLE_EVERY {
            self.skipped += 1;
            return false;
        }
        self.addr = addr;
        self.skipped = 0;
        true
    }
}

/// Slots of the per-CPU [`MAP_COUNTERS`] array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Ring-buffer reservations that failed: events dropped, never blocked on.
    Dropped = 0,
    /// Futex wake-type calls by the target (aggregated here, no event per call).
    FutexWakes = 1,
    /// Futex wait-type calls by the target.
    FutexWaits = 2,
    /// Stacks that neither stack map took (not recorded; the event still goes out).
    StackErrors = 3,
    /// Lock calls whose return was seen without a matching entry (`--holds`).
    UnmatchedReturns = 4,
    /// Waits that never slept but found [`MAP_BRIEF_WAITS`] full: counted nowhere else.
    BriefWaitsUntracked = 5,
}

/// Number of slots in [`MAP_COUNTERS`].
pub const COUNTER_SLOTS: u32 = 6;

/// Where the stack behind a non-negative `stack_id` of a record is kept: ids below
/// [`STACKS_MAX_ENTRIES`] are ids in [`MAP_STACKS`]; an id in [`MAP_OVERFLOW_STACKS`] is
/// sent as `STACKS_MAX_ENTRIES` plus that id, so every record keeps one `i32` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackSlot {
    /// An id in [`MAP_STACKS`].
    Main(u32),
    /// An id in [`MAP_OVERFLOW_STACKS`].
    Overflow(u32),
}

impl StackSlot {
    /// The `stack_id` a record carries for an id in [`MAP_OVERFLOW_STACKS`].
    #[must_use]
    pub const fn overflow_stack_id(id: u32) -> u32 {
        STACKS_MAX_ENTRIES + id
    }

    /// The map and id behind a record's non-negative `stack_id`; `None` for ids outside
    /// both maps.
    #[must_use]
    pub const fn from_stack_id(stack_id: u32) -> Option<Self> {
        if stack_id < STACKS_MAX_ENTRIES {
            Some(Self::Main(stack_id))
        } else if stack_id - STACKS_MAX_ENTRIES < OVERFLOW_STACKS_MAX_ENTRIES {
            Some(Self::Overflow(stack_id - STACKS_MAX_ENTRIES))
        } else {
            None
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `Event` is `repr(C)`, has no padding (the size assert above pins every
    // field's place), and every bit pattern is a valid value of each field.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above: `repr(C)`, 32 bytes with no padding, plain integers.
    unsafe impl aya::Pod for super::PendingLock {}
    // SAFETY: `repr(C)`, 16 bytes pinned by an assert, no padding, plain integers.
    unsafe impl aya::Pod for super::BriefWaits {}
    // SAFETY: `repr(C)`, 24 bytes pinned by an assert, no padding, plain integers.
    unsafe impl aya::Pod for super::CpuBriefWaits {}
    // SAFETY: `repr(C)`, size pinned by an assert (explicit `_pad`, no implicit padding),
    // plain integers only.
    unsafe impl aya::Pod for super::WaitRecord {}
    // SAFETY: `repr(C)`, 72 bytes pinned by an assert, no padding, plain integers only.
    unsafe impl aya::Pod for super::GoEvent {}
    // SAFETY: `repr(C)`, 40 bytes pinned by an assert, no padding, plain integers only.
    unsafe impl aya::Pod for super::WaitEndRecord {}
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn stack_ids_of_both_maps_round_trip_and_others_are_refused() {
        assert_eq!(StackSlot::from_stack_id(0), Some(StackSlot::Main(0)));
        assert_eq!(
            StackSlot::from_stack_id(STACKS_MAX_ENTRIES - 1),
            Some(StackSlot::Main(STACKS_MAX_ENTRIES - 1))
        );
        for id in [0, 1, OVERFLOW_STACKS_MAX_ENTRIES - 1] {
            assert_eq!(
                StackSlot::from_stack_id(StackSlot::overflow_stack_id(id)),
                Some(StackSlot::Overflow(id))
            );
        }
        assert_eq!(
            StackSlot::from_stack_id(STACKS_MAX_ENTRIES + OVERFLOW_STACKS_MAX_ENTRIES),
            None
        );
        assert_eq!(StackSlot::from_stack_id(u32::MAX), None);
        // Every id fits the records' `i32` field.
        assert!(
            i32::try_from(StackSlot::overflow_stack_id(
                OVERFLOW_STACKS_MAX_ENTRIES - 1
            ))
            .is_ok()
        );
    }

    #[test]
    fn stack_sampler_takes_the_first_wait_on_a_word_then_one_in_every() {
        let mut sampler = StackSampler {
            addr: 0,
            skipped: 0,
            pad: 0,
        };
        let taken: usize = (0..STACK_SAMPLE_EVERY * 3)
            .filter(|_| sampler.take(0x1000))
            .count();
        assert_eq!(taken, 3, "one in {STACK_SAMPLE_EVERY} on a hot word");
        assert!(sampler.take(0x1000), "the run restarts after a taken wait");
        // A wait on another word, even in the middle of a run, is always taken, and so is
        // the next one back on the hot word.
        assert!(sampler.take(0x2000));
        assert!(sampler.take(0x1000));
        assert!(!sampler.take(0x1000));
    }

    #[test]
    fn kinds_round_trip_and_reject_unknown() {
        for kind in [
            EventKind::FutexWait,
            EventKind::FutexWaitDone,
            EventKind::LockAcquired,
            EventKind::LockReleased,
            EventKind::GoLock,
        ] {
            assert_eq!(EventKind::try_from(kind as u32), Ok(kind));
        }
        assert_eq!(EventKind::try_from(0), Err(UnknownValue(0)));
        assert_eq!(EventKind::try_from(99), Err(UnknownValue(99)));
    }

    #[test]
    fn lock_ops_round_trip() {
        for raw in 1..=12 {
            let op = LockOp::try_from(raw).expect("known op");
            assert_eq!(op as u32, raw);
        }
        assert!(LockOp::try_from(13).is_err());
        assert!(LockOp::RwRead.is_read() && LockOp::RwRead.is_rwlock());
        assert!(!LockOp::MutexLock.is_rwlock());
    }

    #[test]
    fn go_ops_round_trip() {
        for raw in 1..=9 {
            let op = GoOp::try_from(raw).expect("known op");
            assert_eq!(op as u32, raw);
        }
        assert!(GoOp::try_from(0).is_err());
        assert!(GoOp::try_from(10).is_err());
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
