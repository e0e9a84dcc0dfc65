//! Decoding of raw ring-buffer records into typed events: [`decode`] is the one place
//! that reads a record's bytes, for every record layout the programs send. No I/O.
use std::mem::size_of;

use aya::Pod;
use thiserror::Error;
use tracer_common::{
    BriefWaits, CpuBriefWaits, EVENT_SIZE, EXEC_RECORD_SIZE, Event, EventKind, ExecRecord,
    GO_EVENT_SIZE, GoEvent, LOCK_RECORD_SIZE, LockOp, LockRecord, NativeSiteOp, SLEPT_RECORD_SIZE,
    SLEPT_RECORD_SIZE_UNWEIGHTED, SNAPSHOT_WORDS, STACK_WINDOW_WORDS, SleptRecord, TIMEOUT_NONE,
    TIMEOUT_UNREADABLE, TimeoutClock, UnknownValue, WAIT_END_RECORD_SIZE, WAIT_RECORD_SIZE,
    WaitEndRecord, WaitRecord, WaitTimeoutArg,
};

use crate::go::lock_model::GoLockEvent;

/// A record that could not be decoded. Counted and skipped, never fatal: a newer or
/// corrupted record must not stop the trace.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error(
        "record of {len} bytes, expected {WAIT_END_RECORD_SIZE}, {LOCK_RECORD_SIZE}, {GO_EVENT_SIZE}, {WAIT_RECORD_SIZE}, {EXEC_RECORD_SIZE} or {SLEPT_RECORD_SIZE}"
    )]
    Size { len: usize },
    #[error("a {WAIT_RECORD_SIZE}-byte record that is not a futex wait")]
    WaitRecordKind,
    #[error("a {WAIT_END_RECORD_SIZE}-byte record that is not a futex wait end")]
    WaitEndRecordKind,
    #[error("a {LOCK_RECORD_SIZE}-byte record that is not a lock acquire or release")]
    LockRecordKind,
    #[error("a {GO_EVENT_SIZE}-byte record that is not a go lock site")]
    GoRecordKind,
    #[error("a {EXEC_RECORD_SIZE}-byte record that is not an exec")]
    ExecRecordKind,
    #[error("a {SLEPT_RECORD_SIZE}-byte record that is not a lean futex wait")]
    SleptRecordKind,
    #[error("unknown event kind {}", .0.0)]
    Kind(UnknownValue),
    #[error("unknown lock op {}", .0.0)]
    LockOp(UnknownValue),
    #[error("unknown go lock op {}", .0.0)]
    GoOp(UnknownValue),
}

/// Target memory copied around a futex word at the moment the wait began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Target address of `words[0]`.
    pub addr: u64,
    /// Number of valid bytes.
    pub len: u32,
    pub words: [u32; SNAPSHOT_WORDS],
}

impl Snapshot {
    /// No memory copied (waits the kernel only counted).
    pub const EMPTY: Self = Self {
        addr: 0,
        len: 0,
        words: [0; SNAPSHOT_WORDS],
    };

    /// The 32-bit word at target address `addr`, if the copy covers it.
    #[must_use]
    pub fn u32_at(&self, addr: u64) -> Option<u32> {
        let offset = addr.checked_sub(self.addr)?;
        if offset % 4 != 0 || offset + 4 > u64::from(self.len) {
            return None;
        }
        self.words.get(usize::try_from(offset / 4).ok()?).copied()
    }

    /// The 32-bit signed word at `addr` (glibc stores TIDs as `int`).
    #[must_use]
    pub fn i32_at(&self, addr: u64) -> Option<i32> {
        self.u32_at(addr)
            .map(|w| i32::from_ne_bytes(w.to_ne_bytes()))
    }

    /// The 64-bit word at `addr` (two consecutive 32-bit words, little-endian).
    #[must_use]
    pub fn u64_at(&self, addr: u64) -> Option<u64> {
        let lo = self.u32_at(addr)?;
        let hi = self.u32_at(addr.checked_add(4)?)?;
        Some(u64::from(lo) | (u64::from(hi) << 32))
    }
}

/// A futex wait's timeout, as the call gave it (its `struct timespec` and clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitTimeout {
    /// No timeout: the wait lasts until it is woken.
    #[default]
    Untimed,
    /// Gives up this many ns after the call began (`FUTEX_WAIT`).
    After(u64),
    /// Gives up when `CLOCK_MONOTONIC` reaches this many ns.
    AtMonotonic(u64),
    /// Gives up when `CLOCK_REALTIME` reaches this many ns (`pthread_mutex_timedlock`).
    AtRealtime(u64),
    /// Has a timeout that could not be read.
    Unknown,
}

impl WaitTimeout {
    /// The timeout a `struct timespec` `[sec, nsec]` on `clock` stands for. Times before
    /// the clock's epoch are 0 (the wait gives up at once, as the kernel does).
    #[must_use]
    pub fn of_timespec(clock: TimeoutClock, [sec, nsec]: [i64; 2]) -> Self {
        let ns = i128::from(sec) * 1_000_000_000 + i128::from(nsec);
        let ns = u64::try_from(ns.max(0)).unwrap_or(u64::MAX);
        match clock {
            TimeoutClock::Relative => Self::After(ns),
            TimeoutClock::Monotonic => Self::AtMonotonic(ns),
            TimeoutClock::Realtime => Self::AtRealtime(ns),
        }
    }

    /// The timeout a wait record carries.
    #[must_use]
    pub fn of_arg(arg: &WaitTimeoutArg) -> Self {
        let timespec = [arg.sec, arg.nsec];
        match arg.clock {
            TIMEOUT_NONE => Self::Untimed,
            c if c == TimeoutClock::Relative as u32 => {
                Self::of_timespec(TimeoutClock::Relative, timespec)
            }
            c if c == TimeoutClock::Monotonic as u32 => {
                Self::of_timespec(TimeoutClock::Monotonic, timespec)
            }
            c if c == TimeoutClock::Realtime as u32 => {
                Self::of_timespec(TimeoutClock::Realtime, timespec)
            }
            // TIMEOUT_UNREADABLE, or a value from a newer kernel side: timed all the same.
            _ => Self::Unknown,
        }
    }

    /// The wait record's field for this timeout (the inverse of [`WaitTimeout::of_arg`]).
    #[must_use]
    pub fn to_arg(self) -> WaitTimeoutArg {
        let (clock, ns) = match self {
            Self::Untimed => return WaitTimeoutArg::NONE,
            Self::Unknown => {
                return WaitTimeoutArg {
                    clock: TIMEOUT_UNREADABLE,
                    ..WaitTimeoutArg::NONE
                };
            }
            Self::After(ns) => (TimeoutClock::Relative, ns),
            Self::AtMonotonic(ns) => (TimeoutClock::Monotonic, ns),
            Self::AtRealtime(ns) => (TimeoutClock::Realtime, ns),
        };
        WaitTimeoutArg {
            clock: clock as u32,
            pad: 0,
            sec: i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
            nsec: i64::try_from(ns % 1_000_000_000).unwrap_or(0),
        }
    }

    /// Whether the wait gives up by itself at some point.
    #[must_use]
    pub const fn is_timed(self) -> bool {
        !matches!(self, Self::Untimed)
    }

    /// The `CLOCK_MONOTONIC` time (ns) at which a wait that began at `start_ns`
    /// (`CLOCK_MONOTONIC`) gives up, when `CLOCK_REALTIME` is `realtime_ahead_ns` ahead of
    /// `CLOCK_MONOTONIC`; `None` for an untimed wait or an unknown timeout.
    #[must_use]
    pub fn deadline_ns(self, start_ns: u64, realtime_ahead_ns: i128) -> Option<u64> {
        match self {
            Self::Untimed | Self::Unknown => None,
            Self::After(ns) => Some(start_ns.saturating_add(ns)),
            Self::AtMonotonic(ns) => Some(ns),
            Self::AtRealtime(ns) => {
                let monotonic = (i128::from(ns) - realtime_ahead_ns).max(0);
                Some(u64::try_from(monotonic).unwrap_or(u64::MAX))
            }
        }
    }
}

/// Bytes of a wait record's timeout, between its [`Event`] header and its stack part.
const TIMEOUT_PART_BYTES: usize = size_of::<WaitTimeoutArg>();

/// The top of a user stack at a wait: registers and the words above the stack pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StackWindow {
    pub ip: u64,
    pub sp: u64,
    /// Number of valid words.
    pub len: u32,
    pub words: [u64; STACK_WINDOW_WORDS],
}

impl StackWindow {
    /// An empty window (no stack known).
    pub const EMPTY: Self = Self {
        ip: 0,
        sp: 0,
        len: 0,
        words: [0; STACK_WINDOW_WORDS],
    };

    /// The valid words, from the stack pointer upwards.
    #[must_use]
    pub fn words(&self) -> &[u64] {
        let len = usize::try_from(self.len)
            .unwrap_or(0)
            .min(STACK_WINDOW_WORDS);
        &self.words[..len]
    }
}

/// [`STACK_WINDOW_WORDS`] as the type of `window_words`.
#[expect(clippy::cast_possible_truncation, reason = "a 32-word constant")]
const STACK_WINDOW_WORDS_U32: u32 = STACK_WINDOW_WORDS as u32;

/// Bytes of a wait record after its [`Event`] header and its timeout: `user_sp`,
/// `user_ip`, `window_words`, padding, then the window's words.
const WINDOW_PART_BYTES: usize = WAIT_RECORD_SIZE - EVENT_SIZE - TIMEOUT_PART_BYTES;

/// The stack window of a futex wait event, borrowed: still in the record's bytes (read
/// only when the analysis keeps it, straight into its own storage) or already built (a
/// thread found blocked at attach, tests).
///
/// Borrowing keeps [`TraceEvent`] small: with the ~280-byte window inline, every move of
/// a decoded event (out of [`decode`], into the match that dispatches it) copied it, and
/// those copies were a visible share of the event pipeline.
#[derive(Clone, Copy, Debug)]
pub enum WindowRef<'a> {
    /// The window part of a wait record, as the kernel wrote it (no alignment).
    Raw(&'a [u8; WINDOW_PART_BYTES]),
    Built(&'a StackWindow),
}

impl WindowRef<'_> {
    /// No window (no stack known).
    pub const EMPTY: WindowRef<'static> = WindowRef::Built(&StackWindow::EMPTY);

    /// Writes the window into `out` (one copy, whatever the source).
    pub fn write_to(&self, out: &mut StackWindow) {
        match *self {
            Self::Built(window) => *out = *window,
            Self::Raw(bytes) => {
                const SP: usize = 0;
                const IP: usize = 8;
                const WORDS: usize = 24;
                let u64_at = |at: usize| {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(&bytes[at..at + 8]);
                    u64::from_ne_bytes(word)
                };
                out.sp = u64_at(SP);
                out.ip = u64_at(IP);
                out.len = Self::raw_len(bytes);
                // Only the valid words: the kernel leaves the rest of the record unwritten
                // (all of it for a wait sent without its stack), and reading it would
                // only pull those cache lines in.
                let len = out.words().len();
                let (valid, rest) = out.words.split_at_mut(len);
                for (i, word) in valid.iter_mut().enumerate() {
                    *word = u64_at(WORDS + i * 8);
                }
                rest.fill(0);
            }
        }
    }

    /// The waiting thread's user stack pointer (0 when unknown).
    #[must_use]
    pub fn sp(&self) -> u64 {
        match *self {
            Self::Built(window) => window.sp,
            Self::Raw(bytes) => {
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes[..8]);
                u64::from_ne_bytes(word)
            }
        }
    }

    /// Number of valid words (0: no window, as for a wait sent without its stack).
    #[must_use]
    pub fn len(&self) -> u32 {
        match *self {
            Self::Built(window) => window.len,
            Self::Raw(bytes) => Self::raw_len(bytes),
        }
    }

    /// Whether the window has no words.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `window_words` of a raw window, capped at the window's size.
    fn raw_len(bytes: &[u8; WINDOW_PART_BYTES]) -> u32 {
        const LEN: usize = 16;
        let mut len = [0u8; 4];
        len.copy_from_slice(&bytes[LEN..LEN + 4]);
        u32::from_ne_bytes(len).min(STACK_WINDOW_WORDS_U32)
    }

    /// The window, copied out.
    #[must_use]
    pub fn to_window(&self) -> StackWindow {
        match *self {
            Self::Built(window) => *window,
            Self::Raw(_) => {
                let mut window = StackWindow::EMPTY;
                self.write_to(&mut window);
                window
            }
        }
    }
}

impl PartialEq for WindowRef<'_> {
    /// Same window, wherever each one is stored.
    fn eq(&self, other: &Self) -> bool {
        self.to_window() == other.to_window()
    }
}

impl Eq for WindowRef<'_> {}

/// A kernel user-stack id, absent when `bpf_get_stackid` failed.
pub type StackId = Option<u32>;

fn stack_id(raw: i32) -> StackId {
    u32::try_from(raw).ok()
}

/// A decoded futex or `--holds` lock record ([`Record::Native`]); a futex wait's stack
/// window stays in the record's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEvent<'a> {
    FutexWait {
        tid: u32,
        ts_ns: u64,
        addr: u64,
        cmd: u32,
        val: u32,
        stack: StackId,
        snapshot: Snapshot,
        window: WindowRef<'a>,
        /// The call's timeout.
        timeout: WaitTimeout,
        /// How many sleeping waits it stands for: the period the kernel sampled sleeps
        /// with (`tracer_common::MAP_SLEEP_SAMPLING`), 1 when every one is traced.
        weight: u32,
    },
    /// A futex wait returned (any result but `EAGAIN`, which the kernel only counts).
    /// `val` is the call's expected value, which classifies the word when no record of
    /// the wait's start came (it was woken before it slept).
    FutexWaitDone {
        tid: u32,
        ts_ns: u64,
        addr: u64,
        cmd: u32,
        val: u32,
        ret: i64,
    },
    LockAcquired {
        tid: u32,
        ts_ns: u64,
        start_ns: u64,
        addr: u64,
        op: LockOp,
        stack: StackId,
        call_site: u64,
    },
    LockReleased {
        tid: u32,
        ts_ns: u64,
        addr: u64,
        op: LockOp,
    },
}

impl TraceEvent<'_> {
    /// TID of the thread the event is about.
    #[must_use]
    pub const fn tid(&self) -> u32 {
        match *self {
            Self::FutexWait { tid, .. }
            | Self::FutexWaitDone { tid, .. }
            | Self::LockAcquired { tid, .. }
            | Self::LockReleased { tid, .. } => tid,
        }
    }

    /// When it happened (`CLOCK_MONOTONIC` ns).
    #[must_use]
    pub const fn ts_ns(&self) -> u64 {
        match *self {
            Self::FutexWait { ts_ns, .. }
            | Self::FutexWaitDone { ts_ns, .. }
            | Self::LockAcquired { ts_ns, .. }
            | Self::LockReleased { ts_ns, .. } => ts_ns,
        }
    }
}

/// A decoded ring-buffer record, whatever its layout: what [`decode`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A futex wait, its end, or a `--holds` lock event: for the analysis.
    Native(TraceEvent<'a>),
    /// A Go lock probe site: for the Go lock model.
    Go(GoLockEvent),
    /// A native site of a Rust program (the entry of a `parking_lot` slow path): thread
    /// `tid` is about to wait for the lock at `addr`.
    NativeSite {
        op: NativeSiteOp,
        tid: u32,
        ts_ns: u64,
        addr: u64,
    },
    /// The target executed another program: records before this one are the old
    /// program's, records after it the new one's.
    Exec { tid: u32, ts_ns: u64 },
    /// A futex wait that slept, sent lean once over (`tracer serve`): for the analysis, as
    /// the wait and its end ([`Slept::events`]).
    Slept(Slept),
}

/// A futex wait that slept and was sent lean, once over ([`SleptRecord`]): no lock
/// memory, no stack, no timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slept {
    pub tid: u32,
    /// When the thread went to sleep, and when it was switched back in.
    pub start_ns: u64,
    pub end_ns: u64,
    pub addr: u64,
    pub cmd: u32,
    pub val: u32,
    /// User stack and instruction pointers at the call.
    pub sp: u64,
    pub ip: u64,
    /// How many sleeping waits it stands for (see [`TraceEvent::FutexWait`]).
    pub weight: u32,
}

impl Slept {
    /// Its stack window: the registers at the call, no words (as a wait the stack sampler
    /// left out).
    #[must_use]
    pub fn window(&self) -> StackWindow {
        StackWindow {
            ip: self.ip,
            sp: self.sp,
            ..StackWindow::EMPTY
        }
    }

    /// The wait and its end, as the analysis takes them: the wait carries no lock memory
    /// (the lock is classified from the futex command and value and from what is known of
    /// the word), `window` is [`Slept::window`]. A wait userspace already gave the
    /// analysis while it slept long (read from the kernel's table) is the same call: the
    /// analysis keeps that one and ends it.
    #[must_use]
    pub fn events(self, window: &StackWindow) -> [TraceEvent<'_>; 2] {
        [
            TraceEvent::FutexWait {
                tid: self.tid,
                ts_ns: self.start_ns,
                addr: self.addr,
                cmd: self.cmd,
                val: self.val,
                stack: None,
                snapshot: Snapshot::EMPTY,
                window: WindowRef::Built(window),
                timeout: WaitTimeout::Untimed,
                weight: self.weight,
            },
            TraceEvent::FutexWaitDone {
                tid: self.tid,
                ts_ns: self.end_ns,
                addr: self.addr,
                cmd: self.cmd,
                val: self.val,
                // Woken, timed out or interrupted: only `sys_exit` could tell which.
                ret: 0,
            },
        ]
    }

    /// The record the kernel sends for it.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        bytes_of(&SleptRecord {
            kind: EventKind::FutexSlept as u32,
            tid: self.tid,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            addr: self.addr,
            user_sp: self.sp,
            user_ip: self.ip,
            op: self.cmd,
            val: self.val,
            weight: self.weight,
            pad: 0,
        })
    }
}

/// Decodes a record from ring-buffer bytes (which carry no alignment guarantee). The
/// layouts are told apart by size (`tracer_common::RECORD_SIZES`), then by kind.
///
/// # Errors
/// When the length or a discriminant is not one this build knows.
pub fn decode(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    match bytes.len() {
        WAIT_END_RECORD_SIZE => decode_wait_end(&read(bytes)?).map(Record::Native),
        LOCK_RECORD_SIZE => decode_lock(&read(bytes)?).map(Record::Native),
        WAIT_RECORD_SIZE => decode_wait(bytes).map(Record::Native),
        GO_EVENT_SIZE => decode_site(&read(bytes)?),
        EXEC_RECORD_SIZE => decode_exec(&read(bytes)?),
        SLEPT_RECORD_SIZE => decode_slept(&read(bytes)?),
        SLEPT_RECORD_SIZE_UNWEIGHTED => {
            // An older build's record: the same fields without `weight` and `pad`.
            let mut full = [0u8; SLEPT_RECORD_SIZE];
            full[..SLEPT_RECORD_SIZE_UNWEIGHTED].copy_from_slice(bytes);
            decode_slept(&read(&full)?)
        }
        len => Err(DecodeError::Size { len }),
    }
}

/// Copies a `T` out of `bytes`, which must hold exactly one (as the ring buffer hands
/// records over: no alignment guarantee).
fn read<T: Pod>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() != size_of::<T>() {
        return Err(DecodeError::Size { len: bytes.len() });
    }
    // SAFETY: `bytes` holds exactly `size_of::<T>()` initialised bytes (checked above),
    // `read_unaligned` copes with any alignment, and `T: Pod` (tracer-common implements it
    // for its `repr(C)` records: no padding, plain integers only) makes any bit pattern a
    // valid `T`.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

/// Converts an exec record.
fn decode_exec(raw: &ExecRecord) -> Result<Record<'static>, DecodeError> {
    match EventKind::try_from(raw.kind).map_err(DecodeError::Kind)? {
        EventKind::Exec => Ok(Record::Exec {
            tid: raw.tid,
            ts_ns: raw.ts_ns,
        }),
        _ => Err(DecodeError::ExecRecordKind),
    }
}

/// Converts a lean futex wait's record.
fn decode_slept(raw: &SleptRecord) -> Result<Record<'static>, DecodeError> {
    match EventKind::try_from(raw.kind).map_err(DecodeError::Kind)? {
        EventKind::FutexSlept => Ok(Record::Slept(Slept {
            tid: raw.tid,
            start_ns: raw.start_ns,
            end_ns: raw.end_ns,
            addr: raw.addr,
            cmd: raw.op,
            val: raw.val,
            sp: raw.user_sp,
            ip: raw.user_ip,
            weight: raw.weight.max(1),
        })),
        _ => Err(DecodeError::SleptRecordKind),
    }
}

/// Converts a futex wait's end record into a typed event.
fn decode_wait_end(raw: &WaitEndRecord) -> Result<TraceEvent<'static>, DecodeError> {
    match EventKind::try_from(raw.kind).map_err(DecodeError::Kind)? {
        EventKind::FutexWaitDone => Ok(TraceEvent::FutexWaitDone {
            tid: raw.tid,
            ts_ns: raw.ts_ns,
            addr: raw.addr,
            cmd: raw.op,
            val: raw.val,
            ret: raw.ret,
        }),
        _ => Err(DecodeError::WaitEndRecordKind),
    }
}

/// Converts a `--holds` lock record into a typed event.
fn decode_lock(raw: &LockRecord) -> Result<TraceEvent<'static>, DecodeError> {
    let op = || LockOp::try_from(raw.op).map_err(DecodeError::LockOp);
    match EventKind::try_from(raw.kind).map_err(DecodeError::Kind)? {
        EventKind::LockAcquired => Ok(TraceEvent::LockAcquired {
            tid: raw.tid,
            ts_ns: raw.ts_ns,
            start_ns: raw.start_ns,
            addr: raw.addr,
            op: op()?,
            stack: stack_id(raw.stack_id),
            call_site: raw.call_site,
        }),
        EventKind::LockReleased => Ok(TraceEvent::LockReleased {
            tid: raw.tid,
            ts_ns: raw.ts_ns,
            addr: raw.addr,
            op: op()?,
        }),
        EventKind::FutexWait
        | EventKind::FutexWaitDone
        | EventKind::GoLock
        | EventKind::Exec
        | EventKind::FutexSlept => Err(DecodeError::LockRecordKind),
    }
}

/// Decodes a wait record: its [`Event`] header copied out, and the stack window left in
/// the bytes for whoever keeps it.
fn decode_wait(bytes: &[u8]) -> Result<TraceEvent<'_>, DecodeError> {
    let size = || DecodeError::Size { len: bytes.len() };
    let (header, rest) = bytes.split_at_checked(EVENT_SIZE).ok_or_else(size)?;
    let (timeout, window) = rest.split_at_checked(TIMEOUT_PART_BYTES).ok_or_else(size)?;
    let raw: Event = read(header)?;
    let timeout: WaitTimeoutArg = read(timeout)?;
    // After `user_sp`, `user_ip` and `window_words`; 0 (older builds) is 1.
    let weight = window
        .get(20..24)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(1, |b| u32::from_ne_bytes(b).max(1));
    if EventKind::try_from(raw.kind).map_err(DecodeError::Kind)? != EventKind::FutexWait {
        return Err(DecodeError::WaitRecordKind);
    }
    Ok(TraceEvent::FutexWait {
        tid: raw.tid,
        ts_ns: raw.ts_ns,
        addr: raw.addr,
        cmd: raw.op,
        val: raw.val,
        stack: stack_id(raw.stack_id),
        snapshot: Snapshot {
            addr: raw.snapshot_addr,
            len: raw.snapshot_len,
            words: raw.snapshot,
        },
        window: WindowRef::Raw(window.try_into().map_err(|_| size())?),
        timeout: WaitTimeout::of_arg(&timeout),
        weight,
    })
}

/// Converts a lock site's record: a native site's ([`NativeSiteOp`], from the same
/// program as the Go sites), else a Go site's.
fn decode_site(raw: &GoEvent) -> Result<Record<'static>, DecodeError> {
    match NativeSiteOp::try_from(raw.op) {
        Ok(op) if EventKind::try_from(raw.kind) == Ok(EventKind::GoLock) => {
            Ok(Record::NativeSite {
                op,
                tid: raw.tid,
                ts_ns: raw.ts_ns,
                addr: raw.addr,
            })
        }
        _ => decode_go(raw).map(Record::Go),
    }
}

/// Converts a Go lock site's record into the Go lock model's event.
fn decode_go(raw: &GoEvent) -> Result<GoLockEvent, DecodeError> {
    if EventKind::try_from(raw.kind).map_err(DecodeError::Kind)? != EventKind::GoLock {
        return Err(DecodeError::GoRecordKind);
    }
    GoLockEvent::try_from(raw).map_err(DecodeError::GoOp)
}

/// The bytes of a record as the kernel writes it into the ring buffer.
fn bytes_of<T: Pod>(record: &T) -> Vec<u8> {
    // SAFETY: `T: Pod` records are `repr(C)` without padding, so all `size_of::<T>()`
    // bytes behind the reference are initialised; `u8` has no alignment requirement.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(record).cast::<u8>(), size_of::<T>()) }
        .to_vec()
}

/// Encodes a typed event into the bytes the kernel would send: the inverse of [`decode`],
/// used by tests and the pipeline benchmark to make synthetic input.
#[must_use]
pub fn encode_bytes(event: &TraceEvent) -> Vec<u8> {
    match *event {
        TraceEvent::FutexWait {
            tid,
            ts_ns,
            addr,
            cmd,
            val,
            stack,
            snapshot,
            window,
            timeout,
            weight,
        } => {
            let window = window.to_window();
            bytes_of(&WaitRecord {
                event: Event {
                    kind: EventKind::FutexWait as u32,
                    tid,
                    ts_ns,
                    addr,
                    op: cmd,
                    val,
                    stack_id: raw_stack_id(stack),
                    snapshot_len: snapshot.len,
                    snapshot_addr: snapshot.addr,
                    snapshot: snapshot.words,
                    ..Event::ZERO
                },
                timeout: timeout.to_arg(),
                user_sp: window.sp,
                user_ip: window.ip,
                window_words: window.len,
                weight,
                window: window.words,
            })
        }
        TraceEvent::FutexWaitDone {
            tid,
            ts_ns,
            addr,
            cmd,
            val,
            ret,
        } => bytes_of(&WaitEndRecord {
            kind: EventKind::FutexWaitDone as u32,
            tid,
            ts_ns,
            addr,
            ret,
            op: cmd,
            val,
        }),
        TraceEvent::LockAcquired {
            tid,
            ts_ns,
            start_ns,
            addr,
            op,
            stack,
            call_site,
        } => bytes_of(&LockRecord {
            kind: EventKind::LockAcquired as u32,
            tid,
            ts_ns,
            addr,
            start_ns,
            call_site,
            op: op as u32,
            stack_id: raw_stack_id(stack),
        }),
        TraceEvent::LockReleased {
            tid,
            ts_ns,
            addr,
            op,
        } => bytes_of(&LockRecord {
            kind: EventKind::LockReleased as u32,
            tid,
            ts_ns,
            addr,
            op: op as u32,
            ..LockRecord::ZERO
        }),
    }
}

/// The `stack_id` a record carries for `stack` (`-EFAULT` for none, as the kernel's
/// `bpf_get_stackid` reports a failed walk).
fn raw_stack_id(stack: StackId) -> i32 {
    stack.and_then(|s| i32::try_from(s).ok()).unwrap_or(-14)
}

/// Adds one CPU's brief-wait totals for a word to the sum of the others. The latest
/// `op`/`val` of any CPU that saw one is kept: they classify the word, and a word is
/// waited on the same way everywhere.
fn add_brief(sum: BriefWaits, cpu: &BriefWaits) -> BriefWaits {
    BriefWaits {
        count: sum.count + cpu.count,
        op: if cpu.count > 0 { cpu.op } else { sum.op },
        val: if cpu.count > 0 { cpu.val } else { sum.val },
    }
}

/// Each futex word's brief-wait totals since the attach, from the kernel's two places
/// for them: the per-CPU hash (`hash`: each word with its per-CPU values) and each CPU's
/// running totals for the word it saw last (`running`, read after the hash).
///
/// A word's running totals move into the hash while userspace reads, so one read can
/// miss them or, rarely, see them twice; the caller keeps the largest totals it has seen
/// per word, which the next read corrects (see `Analysis::on_brief_waits`).
#[must_use]
pub fn brief_waits_per_word<'a>(
    hash: impl IntoIterator<Item = (u64, &'a [BriefWaits])>,
    running: &[CpuBriefWaits],
) -> Vec<(u64, BriefWaits)> {
    let mut words: Vec<(u64, BriefWaits)> = hash
        .into_iter()
        .map(|(addr, per_cpu)| (addr, per_cpu.iter().fold(BriefWaits::ZERO, add_brief)))
        .collect();
    for cpu in running.iter().filter(|cpu| cpu.waits.count > 0) {
        match words.iter_mut().find(|(addr, _)| *addr == cpu.addr) {
            Some((_, sum)) => *sum = add_brief(*sum, &cpu.waits),
            None => words.push((cpu.addr, cpu.waits)),
        }
    }
    words
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use tracer_common::{GoOp, futex_cmd};

    use super::*;

    /// The futex or lock event a record decodes to; panics on anything else.
    fn native(bytes: &[u8]) -> TraceEvent<'_> {
        match decode(bytes) {
            Ok(Record::Native(event)) => event,
            other => panic!("not a futex or lock event: {other:?}"),
        }
    }

    fn window_words() -> [u64; STACK_WINDOW_WORDS] {
        let mut words = [0; STACK_WINDOW_WORDS];
        words[0] = 0x7f00_1234;
        words[1] = 0x5555_0042;
        words
    }

    #[test]
    fn stack_window_exposes_only_valid_words() {
        let window = StackWindow {
            ip: 1,
            sp: 2,
            len: 2,
            words: window_words(),
        };
        assert_eq!(window.words(), &[0x7f00_1234, 0x5555_0042]);
        assert!(StackWindow::EMPTY.words().is_empty());
        let bogus = StackWindow { len: 999, ..window };
        assert_eq!(bogus.words().len(), STACK_WINDOW_WORDS);
    }

    /// Guards against reading (or keeping) the words of a wait record the kernel did
    /// not write: only `window_words` of them are valid, none for a wait sent without its
    /// stack, and the rest of the record is whatever the ring buffer held before.
    #[test]
    fn raw_windows_take_only_their_valid_words() {
        let window = StackWindow {
            ip: 0x7f00,
            sp: 0x7ffe_0000,
            len: 2,
            words: window_words(),
        };
        let wait = |window| TraceEvent::FutexWait {
            tid: 7,
            ts_ns: 10,
            addr: 0x1010,
            cmd: futex_cmd::WAIT,
            val: 2,
            stack: None,
            snapshot: snapshot(),
            window: WindowRef::Built(window),
            timeout: WaitTimeout::Untimed,
            weight: 1,
        };
        let mut bytes = encode_bytes(&wait(&window));
        // Stale ring-buffer contents after the two valid words.
        let third_word = EVENT_SIZE + TIMEOUT_PART_BYTES + 24 + 2 * 8;
        bytes[third_word..].fill(0xee);
        let TraceEvent::FutexWait { window: raw, .. } = native(&bytes) else {
            panic!("not a wait");
        };
        assert_eq!(raw.len(), 2);
        let mut out = StackWindow {
            len: 9,
            words: [0xdd; STACK_WINDOW_WORDS],
            ..StackWindow::EMPTY
        };
        raw.write_to(&mut out);
        assert_eq!(out, window, "stale words neither read nor left behind");

        let sampled_out = StackWindow {
            len: 0,
            words: [0; STACK_WINDOW_WORDS],
            ..window
        };
        let mut bytes = encode_bytes(&wait(&sampled_out));
        bytes[EVENT_SIZE + TIMEOUT_PART_BYTES + 24..].fill(0xee);
        let TraceEvent::FutexWait { window: raw, .. } = native(&bytes) else {
            panic!("not a wait");
        };
        assert!(raw.is_empty());
        let kept = raw.to_window();
        assert_eq!(
            (kept.ip, kept.sp, kept.words()),
            (0x7f00, 0x7ffe_0000, &[][..])
        );
        assert_eq!(kept, sampled_out);
    }

    fn snapshot() -> Snapshot {
        let mut words = [0; SNAPSHOT_WORDS];
        words[4] = 2; // the futex word
        words[6] = 4242; // glibc mutex owner, 8 bytes after the word
        words[7] = 0xffff_ffff;
        Snapshot {
            addr: 0x1000,
            len: 64,
            words,
        }
    }

    #[test]
    fn round_trips_every_kind_through_bytes() {
        let window = StackWindow {
            ip: 0x7f00,
            sp: 0x7ffe_0000,
            len: 2,
            words: window_words(),
        };
        let events = [
            TraceEvent::FutexWait {
                tid: 7,
                ts_ns: 10,
                addr: 0x1010,
                cmd: futex_cmd::WAIT,
                val: 2,
                stack: Some(3),
                snapshot: snapshot(),
                window: WindowRef::Built(&window),
                timeout: WaitTimeout::Untimed,
                weight: 1,
            },
            TraceEvent::FutexWaitDone {
                tid: 7,
                ts_ns: 20,
                addr: 0x1010,
                cmd: futex_cmd::WAIT,
                val: 2,
                ret: -110,
            },
            TraceEvent::LockAcquired {
                tid: 8,
                ts_ns: 30,
                start_ns: 25,
                addr: 0x2000,
                op: LockOp::RwWrite,
                stack: None,
                call_site: 0x5555_1234,
            },
            TraceEvent::LockReleased {
                tid: 8,
                ts_ns: 40,
                addr: 0x2000,
                op: LockOp::RwUnlock,
            },
        ];
        for event in events {
            let bytes = encode_bytes(&event);
            assert_eq!(decode(&bytes), Ok(Record::Native(event)));
        }
        // The window of a decoded wait is read from the record's bytes.
        let bytes = encode_bytes(&events[0]);
        let TraceEvent::FutexWait {
            window: raw @ WindowRef::Raw(_),
            ..
        } = native(&bytes)
        else {
            panic!("a wait record decodes to a wait with its window in the bytes");
        };
        let mut out = StackWindow::EMPTY;
        raw.write_to(&mut out);
        assert_eq!((out, raw.to_window()), (window, window));
        assert_ne!(raw, WindowRef::EMPTY);
        // Each kind travels in its own record.
        assert_eq!(encode_bytes(&events[0]).len(), WAIT_RECORD_SIZE);
        assert_eq!(encode_bytes(&events[1]).len(), WAIT_END_RECORD_SIZE);
        assert_eq!(encode_bytes(&events[2]).len(), LOCK_RECORD_SIZE);
        assert_eq!(encode_bytes(&events[3]).len(), LOCK_RECORD_SIZE);
        // An exec record decodes; its size with another kind inside is rejected.
        let exec = ExecRecord {
            kind: EventKind::Exec as u32,
            tid: 77,
            ts_ns: 5,
        };
        let mut bytes = bytes_of(&exec);
        assert_eq!(decode(&bytes), Ok(Record::Exec { tid: 77, ts_ns: 5 }));
        bytes[..4].copy_from_slice(&(EventKind::FutexWait as u32).to_ne_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::ExecRecordKind));
        // A wait end's size with another kind inside is rejected.
        let mut bytes = encode_bytes(&events[1]);
        bytes[..4].copy_from_slice(&(EventKind::FutexWait as u32).to_ne_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::WaitEndRecordKind));
        // A wait record's size with another kind inside is rejected.
        let mut bytes = encode_bytes(&events[0]);
        bytes[..4].copy_from_slice(&(EventKind::LockReleased as u32).to_ne_bytes());
        assert!(decode(&bytes).is_err());
        // And so is a lock record's size with a futex kind inside.
        let mut bytes = encode_bytes(&events[3]);
        bytes[..4].copy_from_slice(&(EventKind::FutexWaitDone as u32).to_ne_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::LockRecordKind));
    }

    /// A lean wait of thread 9 on word 0x1010, from 100 to 250 ns, standing for `weight`.
    fn lean_wait(weight: u32) -> Slept {
        Slept {
            tid: 9,
            start_ns: 100,
            end_ns: 250,
            addr: 0x1010,
            cmd: futex_cmd::WAIT,
            val: 2,
            sp: 0x7ffe_0000,
            ip: 0x7f00,
            weight,
        }
    }

    /// Guards the decoding of serve's lean wait record: it decodes whole, into a wait
    /// with no lock memory nor stack words (its registers kept) and that wait's end; its
    /// size with another kind inside is rejected.
    #[test]
    fn a_lean_wait_record_decodes_into_a_wait_and_its_end() {
        let slept = lean_wait(16);
        let mut bytes = slept.encode();
        assert_eq!(bytes.len(), tracer_common::SLEPT_RECORD_SIZE);
        assert_eq!(decode(&bytes), Ok(Record::Slept(slept)));
        let window = slept.window();
        let [wait, end] = slept.events(&window);
        assert!(matches!(
            wait,
            TraceEvent::FutexWait { tid: 9, ts_ns: 100, addr: 0x1010, snapshot, weight: 16, .. }
                if snapshot == Snapshot::EMPTY
        ));
        assert!(matches!(
            end,
            TraceEvent::FutexWaitDone {
                tid: 9,
                ts_ns: 250,
                addr: 0x1010,
                ..
            }
        ));
        assert_eq!((window.sp, window.ip, window.len), (0x7ffe_0000, 0x7f00, 0));
        bytes[..4].copy_from_slice(&(EventKind::FutexWaitDone as u32).to_ne_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::SleptRecordKind));
    }

    /// Guards the sampling weight on the wire: a wait record's weight survives the trip
    /// through its bytes (in the word after `window_words`), and the records of builds
    /// before sampling (a wait record's zero there, a lean record 8 bytes shorter, as
    /// recordings keep them) read as a weight of 1.
    #[test]
    fn sampling_weights_round_trip_and_older_records_weigh_one() {
        let window = StackWindow {
            ip: 0x7f00,
            sp: 0x7ffe_0000,
            len: 2,
            ..StackWindow::EMPTY
        };
        let wait = |weight| TraceEvent::FutexWait {
            tid: 3,
            ts_ns: 10,
            addr: 0x1000,
            cmd: futex_cmd::WAIT,
            val: 2,
            stack: None,
            snapshot: Snapshot::EMPTY,
            window: WindowRef::Built(&window),
            timeout: WaitTimeout::Untimed,
            weight,
        };
        let bytes = encode_bytes(&wait(64));
        assert_eq!(decode(&bytes), Ok(Record::Native(wait(64))));
        let mut older = bytes;
        older[EVENT_SIZE + TIMEOUT_PART_BYTES + 20..][..4].fill(0);
        assert_eq!(decode(&older), Ok(Record::Native(wait(1))));
        let slept = lean_wait(8);
        let bytes = slept.encode();
        let older = &bytes[..tracer_common::SLEPT_RECORD_SIZE_UNWEIGHTED];
        assert_eq!(
            decode(older),
            Ok(Record::Slept(Slept { weight: 1, ..slept }))
        );
    }

    /// Guards the timeout a wait record carries: each clock and "none" survive the trip
    /// through the record's bytes, an unreadable or unknown clock value is a timed wait
    /// with an unknown timeout (never taken for an untimed one), and the timeout sits
    /// between the header and the stack part without disturbing the window.
    #[test]
    fn wait_timeouts_round_trip_through_records() {
        let window = StackWindow {
            ip: 0x7f00,
            sp: 0x7ffe_0000,
            len: 2,
            words: window_words(),
        };
        for timeout in [
            WaitTimeout::Untimed,
            WaitTimeout::After(200_000_000),
            WaitTimeout::AtMonotonic(1_000_000_000_123),
            WaitTimeout::AtRealtime(1_700_000_000_000_000_001),
            WaitTimeout::Unknown,
        ] {
            let wait = TraceEvent::FutexWait {
                tid: 7,
                ts_ns: 10,
                addr: 0x1010,
                cmd: futex_cmd::WAIT_BITSET,
                val: 2,
                stack: None,
                snapshot: snapshot(),
                window: WindowRef::Built(&window),
                timeout,
                weight: 1,
            };
            let bytes = encode_bytes(&wait);
            assert_eq!(decode(&bytes), Ok(Record::Native(wait)), "{timeout:?}");
        }
        let arg = |clock| WaitTimeoutArg {
            clock,
            pad: 0,
            sec: 1,
            nsec: 2,
        };
        assert_eq!(
            WaitTimeout::of_arg(&arg(TIMEOUT_UNREADABLE)),
            WaitTimeout::Unknown
        );
        assert_eq!(WaitTimeout::of_arg(&arg(77)), WaitTimeout::Unknown);
        assert_eq!(
            WaitTimeout::of_arg(&arg(TIMEOUT_NONE)),
            WaitTimeout::Untimed
        );
        assert_eq!(
            WaitTimeout::of_arg(&arg(TimeoutClock::Relative as u32)),
            WaitTimeout::After(1_000_000_002)
        );
        // A time before the epoch gives up at once, as in the kernel.
        assert_eq!(
            WaitTimeout::of_timespec(TimeoutClock::Monotonic, [-5, 0]),
            WaitTimeout::AtMonotonic(0)
        );
    }

    /// Guards the conversion of a wait's timeout to the events' clock: a relative one
    /// counts from the wait's start, a `CLOCK_REALTIME` deadline moves by the clocks'
    /// offset, and untimed or unknown timeouts have no deadline.
    #[test]
    fn deadlines_are_on_the_monotonic_clock() {
        let start = 5_000;
        let ahead = 1_000_000;
        assert_eq!(
            WaitTimeout::After(300).deadline_ns(start, ahead),
            Some(5_300)
        );
        assert_eq!(
            WaitTimeout::AtMonotonic(9_000).deadline_ns(start, ahead),
            Some(9_000)
        );
        assert_eq!(
            WaitTimeout::AtRealtime(1_009_000).deadline_ns(start, ahead),
            Some(9_000)
        );
        // Realtime behind monotonic (a clock set back to before boot) works too.
        assert_eq!(
            WaitTimeout::AtRealtime(9_000).deadline_ns(start, -1_000),
            Some(10_000)
        );
        assert_eq!(
            WaitTimeout::AtRealtime(10).deadline_ns(start, ahead),
            Some(0)
        );
        assert_eq!(WaitTimeout::Untimed.deadline_ns(start, ahead), None);
        assert_eq!(WaitTimeout::Unknown.deadline_ns(start, ahead), None);
        assert!(WaitTimeout::Unknown.is_timed() && !WaitTimeout::Untimed.is_timed());
    }

    #[test]
    fn rejects_wrong_size_and_unknown_discriminants() {
        assert_eq!(decode(&[0; 12]), Err(DecodeError::Size { len: 12 }));
        // A bare `Event` header is no record the kernel sends.
        assert_eq!(
            decode(&[0; EVENT_SIZE]),
            Err(DecodeError::Size { len: EVENT_SIZE })
        );
        let released = TraceEvent::LockReleased {
            tid: 1,
            ts_ns: 2,
            addr: 3,
            op: LockOp::MutexUnlock,
        };
        let mut bytes = encode_bytes(&released);
        bytes[..4].copy_from_slice(&77u32.to_ne_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::Kind(UnknownValue(77))));
        let mut record = LockRecord {
            kind: EventKind::LockAcquired as u32,
            op: 99,
            ..LockRecord::ZERO
        };
        assert_eq!(
            decode(&bytes_of(&record)),
            Err(DecodeError::LockOp(UnknownValue(99)))
        );
        record.kind = EventKind::LockReleased as u32;
        record.op = 0;
        assert_eq!(
            decode(&bytes_of(&record)),
            Err(DecodeError::LockOp(UnknownValue(0)))
        );
        // Unaligned input is fine, in every record size.
        let wait = TraceEvent::FutexWait {
            tid: 7,
            ts_ns: 10,
            addr: 0x1010,
            cmd: futex_cmd::WAIT,
            val: 2,
            stack: Some(3),
            snapshot: snapshot(),
            window: WindowRef::EMPTY,
            timeout: WaitTimeout::Untimed,
            weight: 1,
        };
        for event in [released, wait] {
            let bytes = encode_bytes(&event);
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(&bytes);
            assert_eq!(decode(&shifted[1..]), Ok(Record::Native(event)));
        }
        let go = go_event();
        let bytes = bytes_of(&go);
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        assert!(matches!(decode(&shifted[1..]), Ok(Record::Go(_))));
    }

    fn go_event() -> GoEvent {
        GoEvent {
            kind: EventKind::GoLock as u32,
            tid: 9,
            ts_ns: 50,
            goid: 17,
            g: 0xc000_0010_0000,
            addr: 0xc000_0200_0010,
            pc: 0x47_1234,
            caller: 0x47_5678,
            value: -1,
            op: GoOp::RLockFast as u32,
            stack_id: 4,
        }
    }

    /// Guards the Go record's path through the one decoder: every field reaches the Go
    /// lock model, and a Go-sized record with another kind or an unknown op is refused.
    #[test]
    fn go_records_decode_to_go_lock_events() {
        let raw = go_event();
        assert_eq!(
            decode(&bytes_of(&raw)),
            Ok(Record::Go(GoLockEvent {
                op: GoOp::RLockFast,
                tid: 9,
                ts_ns: 50,
                goid: 17,
                g: 0xc000_0010_0000,
                addr: 0xc000_0200_0010,
                pc: 0x47_1234,
                caller: 0x47_5678,
                value: -1,
                stack_id: 4,
            }))
        );
        let unknown_op = GoEvent { op: 0, ..raw };
        assert_eq!(
            decode(&bytes_of(&unknown_op)),
            Err(DecodeError::GoOp(UnknownValue(0)))
        );
        let other_kind = GoEvent {
            kind: EventKind::LockAcquired as u32,
            ..raw
        };
        assert_eq!(
            decode(&bytes_of(&other_kind)),
            Err(DecodeError::GoRecordKind)
        );
    }

    #[test]
    fn snapshot_reads_only_inside_the_copy() {
        let snap = snapshot();
        assert_eq!(snap.u32_at(0x1010), Some(2));
        assert_eq!(snap.i32_at(0x1018), Some(4242));
        assert_eq!(snap.i32_at(0x101c), Some(-1));
        assert_eq!(snap.u64_at(0x1018), Some(0xffff_ffff_0000_1092));
        assert_eq!(snap.u32_at(0x0ffc), None, "before the copy");
        assert_eq!(snap.u32_at(0x1040), None, "after the copy");
        assert_eq!(snap.u32_at(0x1011), None, "misaligned");
        let short = Snapshot { len: 8, ..snap };
        assert_eq!(short.u32_at(0x1008), None, "beyond the valid length");
    }

    fn brief(count: u64, val: u32) -> BriefWaits {
        BriefWaits {
            count,
            op: futex_cmd::WAIT,
            val,
        }
    }

    /// Guards the sum of the kernel's two places for brief waits: every CPU's hash value
    /// and every non-empty running entry count once for their word, a running entry for a
    /// word not in the hash yet is a word of its own, and empty entries add nothing.
    #[test]
    fn brief_waits_add_hash_and_running_totals() {
        let hash_a = [brief(3, 2), brief(1, 2)];
        let hash_b = [BriefWaits::ZERO, brief(2, 0)];
        let running = [
            CpuBriefWaits {
                addr: 0xa0,
                waits: brief(4, 2),
            },
            CpuBriefWaits {
                addr: 0xc0,
                waits: brief(1, 2),
            },
            CpuBriefWaits {
                addr: 0xb0,
                waits: BriefWaits::ZERO,
            },
        ];
        let mut words = brief_waits_per_word([(0xa0, &hash_a[..]), (0xb0, &hash_b[..])], &running);
        words.sort_by_key(|&(addr, _)| addr);
        assert_eq!(
            words,
            vec![
                (0xa0, brief(8, 2)),
                (0xb0, brief(2, 0)),
                (0xc0, brief(1, 2)),
            ]
        );
    }
}
