//! Goroutines read from the Go runtime's own data in the live process (amd64): every `g`
//! in `runtime.allgs`, its id, status and saved context, and for a parked one its stack
//! (frame pointers) and the `sync.Mutex`/`RWMutex` it waits for. This is how the tracer
//! sees goroutines that were already blocked on a lock before it attached, when no probe
//! fired for them; it works on stripped (`-ldflags='-s -w'`) binaries too.
//!
//! - `layout`: where the fields are in `runtime.g` (DWARF, else a per-release table).
//! - `allgs`: where `runtime.allgs` is (the symbol table, else the code of
//!   `runtime.allgadd`, found through the pclntab).
//! - `unwind`: frame-pointer unwinding from a `g`'s saved context.
//! - `classify`: which lock a parked goroutine waits for, from its frames (pure).
//!
//! [`GoroutineReader::new`] locates `allgs` and checks it against the live process
//! (plausible slice header, every `g` readable with a known status, plausible ids, saved
//! stack pointers inside their stacks) before it is trusted: a wrong guess is an error
//! naming what failed, never a made-up goroutine. [`GoroutineReader::snapshot`] then
//! reads every goroutine. The process runs while it is read (the tracer never stops it),
//! so a goroutine may change between the reads of its `g` and of its stack; a lock wait
//! carries whether the lock's memory agreed with it when read
//! ([`ParkedLockWait::lock_memory_agrees`]).
//!
//! Bounds: at most [`MAX_SNAPSHOT_GS`] goroutines are read per snapshot
//! ([`GoroutineSnapshot::truncated`] says so), [`unwind::MAX_FRAMES`] frames each; an
//! `allgs` longer than [`MAX_PLAUSIBLE_GS`] is taken for a misread.
mod allgs;
mod classify;
mod layout;
mod unwind;

use object::Object as _;
use rustc_hash::FxHashMap;

pub use self::{
    allgs::{AllgsLocation, AllgsSource, DataRef, locate_allgs, rip_relative_refs, select_allgs},
    classify::{
        LockWaitShape, ParkedLockKind, SEMACQUIRE, classify_lock_wait, classify_semaphore_release,
        classify_semaphore_wait, is_sema_wrapper, semacquire_frame,
    },
    layout::{
        GoroutineLayout, goroutine_layout, goroutine_layout_for_version,
        goroutine_layout_from_dwarf,
    },
    unwind::{GoFramePointer, MAX_FRAMES, unwind_frame_pointers},
};
use crate::{
    go::{
        lock_model::GoLockMode,
        sym::{GoFrame, GoTable},
    },
    target::{ProcError, TargetProcess},
};

/// Most goroutines one snapshot reads (one read of a few hundred bytes each, plus their
/// stacks for the parked ones); the rest are counted, not read.
pub const MAX_SNAPSHOT_GS: usize = 100_000;

/// Longest `allgs` taken for real. Services with a million goroutines exist; four
/// million would need at least 8 GiB of goroutine stacks (2 KiB each), so a larger
/// length means the address read is not `allgs`.
pub const MAX_PLAUSIBLE_GS: u64 = 1 << 22;

/// How many of the first `g`s [`GoroutineReader::new`] checks.
const VALIDATE_GS: usize = 4096;

/// Largest plausible goroutine id: ids count up from 1, one per goroutine ever started.
const MAX_GOID: u64 = 1 << 40;

/// `_Gscan`: set on top of a status while the garbage collector scans the stack.
const G_SCAN: u32 = 0x1000;

/// Physical frames symbolized above `runtime.semacquire1` to classify a wait: the
/// semaphore wrapper, `lockSlow`, `Mutex.Lock` (when not inlined), `RWMutex.Lock` and a
/// caller.
const CLASSIFY_FRAMES: usize = 5;

/// Offset of `readerCount` in `sync.RWMutex` (after `w Mutex`, `writerSem`,
/// `readerSem`); checked against DWARF by the integration tests.
const RW_READER_COUNT: u64 = 16;

/// A goroutine's status (`g.atomicstatus` without the `_Gscan` bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoroutineStatus {
    /// `_Gidle`: just allocated, not yet initialised.
    Idle,
    /// `_Grunnable`: on a run queue.
    Runnable,
    /// `_Grunning`: on a thread.
    Running,
    /// `_Gsyscall`: in a system call.
    Syscall,
    /// `_Gwaiting`: parked (a lock, a channel, a timer, …).
    Waiting,
    /// `_Gdead`: exited (or unused), kept for reuse.
    Dead,
    /// `_Gcopystack`: its stack is being moved.
    CopyStack,
    /// `_Gpreempted`: stopped by a preemption request.
    Preempted,
}

impl GoroutineStatus {
    /// The status of a raw `atomicstatus` (the `_Gscan` bit ignored); `None` for a value
    /// the runtime does not use.
    #[must_use]
    pub fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw & !G_SCAN {
            0 => Self::Idle,
            1 => Self::Runnable,
            2 => Self::Running,
            3 => Self::Syscall,
            4 => Self::Waiting,
            6 => Self::Dead,
            8 => Self::CopyStack,
            9 => Self::Preempted,
            _ => return None,
        })
    }

    /// Whether the `g` is a goroutine (not an unused or exited `g` kept for reuse).
    #[must_use]
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Idle | Self::Dead)
    }
}

/// What is wrong with one `g` that failed [`GoroutineReader::new`]'s checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GProblem {
    /// A null pointer in `allgs`.
    #[error("null pointer")]
    Null,
    /// The `g` could not be read.
    #[error("unreadable")]
    Unreadable,
    /// Its status is not one the runtime uses.
    #[error("unknown status {0:#x}")]
    UnknownStatus(u32),
    /// A live goroutine with an id of 0 or beyond any plausible count.
    #[error("implausible goroutine id {0}")]
    ImplausibleGoid(u64),
    /// A parked goroutine whose saved stack pointer is not inside its stack.
    #[error("saved sp {sp:#x} outside its stack {lo:#x}..{hi:#x}")]
    SpOutsideStack {
        /// `g.sched.sp`.
        sp: u64,
        /// `g.stack.lo`.
        lo: u64,
        /// `g.stack.hi`.
        hi: u64,
    },
}

/// Why the goroutines of a process cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum GoroutineScanError {
    /// The executable does not parse.
    #[error("cannot parse the elf file")]
    Object(#[source] object::Error),
    /// The executable is not x86-64 (the layouts and the code analysis are amd64's).
    #[error("not an x86-64 elf file")]
    NotX86_64,
    /// No `runtime.g` layout: no DWARF, and a release outside the table.
    #[error("no runtime.g layout for {go_version}: no DWARF and a release outside the table")]
    NoLayout {
        /// The binary's Go version.
        go_version: String,
    },
    /// No symbol for `runtime.allgs` and no `runtime.allgadd` in the pclntab.
    #[error("no runtime.allgs symbol and no runtime.allgadd in the pclntab")]
    NoAllgadd,
    /// `runtime.allgadd`'s code is not in the file.
    #[error("the code of runtime.allgadd ({entry:#x}..{end:#x}) is not in the file")]
    AllgaddNotMapped {
        /// Its entry.
        entry: u64,
        /// Its end.
        end: u64,
    },
    /// No address in `runtime.allgadd` is referenced with `+8` and `+16` (the slice).
    #[error("runtime.allgadd references no address A with A+8 and A+16 (the allgs slice)")]
    NoAllgsCandidate,
    /// Several addresses in `runtime.allgadd` look like the slice.
    #[error("runtime.allgadd references several addresses that look like allgs: {candidates:#x?}")]
    AmbiguousAllgs {
        /// Every candidate.
        candidates: Vec<u64>,
    },
    /// A read of the target failed.
    #[error("cannot read {what} at {addr:#x}")]
    Read {
        /// What was read.
        what: &'static str,
        /// Where (runtime address).
        addr: u64,
        /// The failure.
        #[source]
        source: ProcError,
    },
    /// A read of the target came back short.
    #[error("short read of {what} at {addr:#x}: {got} of {len} bytes")]
    ShortRead {
        /// What was read.
        what: &'static str,
        /// Where (runtime address).
        addr: u64,
        /// Bytes asked for.
        len: usize,
        /// Bytes read.
        got: usize,
    },
    /// The slice header read is not a slice.
    #[error("allgs at {addr:#x} is not a plausible slice: len {len}, cap {cap}")]
    BadSliceHeader {
        /// Runtime address of the header.
        addr: u64,
        /// Its length word.
        len: u64,
        /// Its capacity word.
        cap: u64,
    },
    /// `runtime.allglen` exceeds the slice's length (it is stored after each append).
    #[error("runtime.allglen ({allglen}) is above the length of allgs ({len})")]
    AllglenMismatch {
        /// `runtime.allglen`, read first.
        allglen: u64,
        /// The slice length, read after.
        len: u64,
    },
    /// A `g` failed the checks (twice: it is read again once to rule out a race).
    #[error("allgs[{index}] (g at {g:#x}): {problem}")]
    BadG {
        /// Its index in `allgs`.
        index: usize,
        /// Its address.
        g: u64,
        /// What is wrong.
        problem: GProblem,
    },
    /// No `g` in `allgs` is a live goroutine (a Go process has its main goroutine).
    #[error("allgs at {addr:#x} holds no live goroutine")]
    NoLiveGoroutine {
        /// Runtime address of the header.
        addr: u64,
    },
}

/// A lock a parked goroutine waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParkedLockWait {
    /// Address of the `sync.Mutex` or `sync.RWMutex`.
    pub lock: u64,
    /// Its kind.
    pub kind: ParkedLockKind,
    /// Read (`RLock`) or write.
    pub mode: GoLockMode,
    /// An `RWMutex` writer waiting for the readers inside to leave.
    pub drains_readers: bool,
    /// The semaphore `runtime.semacquire1` waits on (a field of the lock).
    pub sema: u64,
    /// Whether the lock's memory agreed when read: a waited-for `Mutex` (or `RWMutex.w`)
    /// is locked, an `RWMutex` waited on by a reader or a draining writer has a writer
    /// pending (`readerCount < 0`). `false` means the wait was ending as it was read.
    pub lock_memory_agrees: bool,
}

/// One live goroutine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoroutineInfo {
    /// Address of its `g`.
    pub g: u64,
    /// Its id (as in the runtime's dumps).
    pub goid: u64,
    /// Its status.
    pub status: GoroutineStatus,
    /// When it blocked (`CLOCK_MONOTONIC` ns), when the runtime noted it (only the
    /// garbage collector does, for tracebacks).
    pub waitsince_ns: Option<u64>,
    /// Address of its innermost `_defer` record, 0 when it has none.
    pub defer: u64,
    /// Its stack, innermost first (runtime addresses), for a parked (`Waiting`) one;
    /// empty otherwise.
    pub frames: Vec<GoFramePointer>,
    /// The lock it waits for, when parked on one.
    pub lock_wait: Option<ParkedLockWait>,
}

/// Every live goroutine of the process at one moment (read while it runs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoroutineSnapshot {
    /// The live goroutines read (exited and unused `g`s are left out).
    pub goroutines: Vec<GoroutineInfo>,
    /// The length of `allgs`: every `g`, live or not.
    pub total_gs: usize,
    /// Only the first [`MAX_SNAPSHOT_GS`] were read.
    pub truncated: bool,
    /// `g`s that could not be read or read inconsistently (null, unknown status).
    pub unreadable: usize,
}

/// The fields of one `g` a snapshot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawG {
    stack_lo: u64,
    stack_hi: u64,
    defer: u64,
    sched_sp: u64,
    sched_pc: u64,
    sched_bp: u64,
    status: u32,
    goid: u64,
    waitsince: u64,
}

/// Reads the goroutines of one Go process (see the module notes).
#[derive(Debug, Clone)]
pub struct GoroutineReader {
    layout: GoroutineLayout,
    location: AllgsLocation,
    bias: u64,
}

impl GoroutineReader {
    /// Locates `runtime.allgs` in the executable `elf` (whose pclntab is `table` and
    /// release `go_version`, as the build info says), mapped with load bias `bias` (0
    /// unless position-independent), and checks it against `process`.
    ///
    /// # Errors
    /// [`GoroutineScanError`]: the file is not x86-64, there is no `runtime.g` layout,
    /// `allgs` cannot be found, or what is read there fails the checks; the message says
    /// which.
    pub fn new(
        elf: &[u8],
        table: &GoTable,
        go_version: &str,
        bias: u64,
        process: &dyn TargetProcess,
    ) -> Result<Self, GoroutineScanError> {
        let file = object::File::parse(elf).map_err(GoroutineScanError::Object)?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(GoroutineScanError::NotX86_64);
        }
        let layout =
            goroutine_layout(elf, go_version).ok_or_else(|| GoroutineScanError::NoLayout {
                go_version: go_version.to_owned(),
            })?;
        let location = locate_allgs(elf, table)?;
        let reader = Self::from_parts(layout, location, bias);
        reader.validate(process)?;
        Ok(reader)
    }

    /// A reader from a known layout and location, not checked against any process.
    #[must_use]
    pub fn from_parts(layout: GoroutineLayout, location: AllgsLocation, bias: u64) -> Self {
        Self {
            layout,
            location,
            bias,
        }
    }

    /// The `runtime.g` layout in use.
    #[must_use]
    pub fn layout(&self) -> &GoroutineLayout {
        &self.layout
    }

    /// Where `allgs` (and `allglen`) are, as file addresses.
    #[must_use]
    pub fn location(&self) -> &AllgsLocation {
        &self.location
    }

    /// Every live goroutine now: id, status, and for parked ones the stack and the lock
    /// waited for. `table` must be the executable's pclntab (the one given to
    /// [`GoroutineReader::new`]); it names the frames.
    ///
    /// # Errors
    /// [`GoroutineScanError::Read`]/[`GoroutineScanError::ShortRead`] when the slice
    /// cannot be read (the process is gone), [`GoroutineScanError::BadSliceHeader`] /
    /// [`GoroutineScanError::AllglenMismatch`] when it no longer looks like `allgs`.
    /// A single unreadable `g` is counted, not an error.
    pub fn snapshot(
        &self,
        table: &GoTable,
        process: &dyn TargetProcess,
    ) -> Result<GoroutineSnapshot, GoroutineScanError> {
        self.snapshot_named(table, process)
    }

    /// [`GoroutineReader::snapshot`] with frames named by `names`.
    fn snapshot_named(
        &self,
        names: &dyn CodeNames,
        process: &dyn TargetProcess,
    ) -> Result<GoroutineSnapshot, GoroutineScanError> {
        let (gs, len) = self.read_allgs(process, MAX_SNAPSHOT_GS)?;
        let mut snapshot = GoroutineSnapshot {
            total_gs: len,
            truncated: gs.len() < len,
            ..GoroutineSnapshot::default()
        };
        let mut symbols = Symbols::new(names, self.bias);
        for &g in &gs {
            let Some((raw, status)) = (g != 0)
                .then(|| self.read_g(process, g))
                .flatten()
                .and_then(|raw| Some((raw, GoroutineStatus::from_raw(raw.status)?)))
            else {
                snapshot.unreadable += 1;
                continue;
            };
            if !status.is_live() {
                continue;
            }
            let mut info = GoroutineInfo {
                g,
                goid: raw.goid,
                status,
                waitsince_ns: u64::try_from(raw.waitsince.cast_signed())
                    .ok()
                    .filter(|&t| t > 0),
                defer: raw.defer,
                frames: Vec::new(),
                lock_wait: None,
            };
            if status == GoroutineStatus::Waiting {
                info.frames = unwind_frame_pointers(
                    process,
                    GoFramePointer {
                        pc: raw.sched_pc,
                        bp: raw.sched_bp,
                    },
                    raw.stack_lo,
                    raw.stack_hi,
                    |pc| symbols.is_code(pc),
                    MAX_FRAMES,
                );
                info.lock_wait = lock_wait(process, &info.frames, &mut symbols);
            }
            snapshot.goroutines.push(info);
        }
        Ok(snapshot)
    }

    /// Reads `allgs`: up to `max` `g` pointers, and the slice's length. `allglen`, when
    /// known, is read first: it is stored after each append, so it can only lag the
    /// length read after it.
    fn read_allgs(
        &self,
        process: &dyn TargetProcess,
        max: usize,
    ) -> Result<(Vec<u64>, usize), GoroutineScanError> {
        let allglen = match self.location.allglen {
            Some(at) => {
                let addr = at.wrapping_add(self.bias);
                let mut word = [0u8; 8];
                read(process, "runtime.allglen", addr, &mut word)?;
                Some(u64::from_ne_bytes(word))
            }
            None => None,
        };
        let addr = self.location.allgs.wrapping_add(self.bias);
        let mut header = [0u8; 24];
        read(process, "the allgs slice header", addr, &mut header)?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&header[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(w)
        };
        let (ptr, len, cap) = (word(0), word(1), word(2));
        if len > cap || cap > MAX_PLAUSIBLE_GS || (len > 0 && ptr == 0) {
            return Err(GoroutineScanError::BadSliceHeader { addr, len, cap });
        }
        if let Some(allglen) = allglen
            && allglen > len
        {
            return Err(GoroutineScanError::AllglenMismatch { allglen, len });
        }
        // Bounded by MAX_PLAUSIBLE_GS above, so it fits.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let n = len.min(max);
        let mut bytes = vec![0u8; n * 8];
        read(process, "the allgs array", ptr, &mut bytes)?;
        let gs = bytes
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
            .collect();
        Ok((gs, len))
    }

    /// The fields of the `g` at `g`, in one read of its prefix.
    fn read_g(&self, process: &dyn TargetProcess, g: u64) -> Option<RawG> {
        let mut bytes = vec![0u8; self.layout.prefix_len()];
        if !process.read_exact(g, &mut bytes) {
            return None;
        }
        let at = |offset: u64, width: usize| -> Option<&[u8]> {
            let start = usize::try_from(offset).ok()?;
            bytes.get(start..start.checked_add(width)?)
        };
        let u64_at = |offset| Some(u64::from_ne_bytes(at(offset, 8)?.try_into().ok()?));
        let l = &self.layout;
        Some(RawG {
            stack_lo: u64_at(l.stack_lo)?,
            stack_hi: u64_at(l.stack_hi)?,
            defer: u64_at(l.defer)?,
            sched_sp: u64_at(l.sched_sp)?,
            sched_pc: u64_at(l.sched_pc)?,
            sched_bp: u64_at(l.sched_bp)?,
            status: u32::from_ne_bytes(at(l.atomicstatus, 4)?.try_into().ok()?),
            goid: u64_at(l.goid)?,
            waitsince: u64_at(l.waitsince)?,
        })
    }

    /// Checks that what `allgs` points to looks like the runtime's goroutines (see the
    /// module notes); a `g` that fails is read again once, in case it changed while read.
    fn validate(&self, process: &dyn TargetProcess) -> Result<(), GoroutineScanError> {
        let (gs, _) = self.read_allgs(process, VALIDATE_GS)?;
        let mut live = 0usize;
        for (index, &g) in gs.iter().enumerate() {
            let check = || -> Result<GoroutineStatus, GProblem> {
                if g == 0 {
                    return Err(GProblem::Null);
                }
                check_g(&self.read_g(process, g).ok_or(GProblem::Unreadable)?)
            };
            match check().or_else(|_| check()) {
                Ok(status) => live += usize::from(status.is_live()),
                Err(problem) => return Err(GoroutineScanError::BadG { index, g, problem }),
            }
        }
        if live == 0 {
            return Err(GoroutineScanError::NoLiveGoroutine {
                addr: self.location.allgs.wrapping_add(self.bias),
            });
        }
        Ok(())
    }
}

/// The checks of [`GoroutineReader::new`] on one `g`: its status.
fn check_g(raw: &RawG) -> Result<GoroutineStatus, GProblem> {
    let status =
        GoroutineStatus::from_raw(raw.status).ok_or(GProblem::UnknownStatus(raw.status))?;
    if status.is_live() && !(1..MAX_GOID).contains(&raw.goid) {
        return Err(GProblem::ImplausibleGoid(raw.goid));
    }
    if status == GoroutineStatus::Waiting
        && !(raw.stack_lo < raw.sched_sp && raw.sched_sp <= raw.stack_hi)
    {
        return Err(GProblem::SpOutsideStack {
            sp: raw.sched_sp,
            lo: raw.stack_lo,
            hi: raw.stack_hi,
        });
    }
    Ok(status)
}

/// Reads exactly `buf.len()` bytes at `addr`.
fn read(
    process: &dyn TargetProcess,
    what: &'static str,
    addr: u64,
    buf: &mut [u8],
) -> Result<(), GoroutineScanError> {
    let got = process
        .read_memory(addr, buf)
        .map_err(|source| GoroutineScanError::Read { what, addr, source })?;
    if got == buf.len() {
        Ok(())
    } else {
        Err(GoroutineScanError::ShortRead {
            what,
            addr,
            len: buf.len(),
            got,
        })
    }
}

/// The lock a parked goroutine with stack `frames` waits for: the semaphore address is
/// `semacquire1`'s first argument, which it spills to its first argument slot at
/// `bp+16` before parking (checked on Go 1.19 and 1.25 code).
fn lock_wait(
    process: &dyn TargetProcess,
    frames: &[GoFramePointer],
    symbols: &mut Symbols<'_>,
) -> Option<ParkedLockWait> {
    let at = frames
        .iter()
        .position(|f| symbols.function(f.pc).as_deref() == Some(SEMACQUIRE))?;
    let sema = process.read_u64(frames[at].bp.checked_add(16)?)?;
    let named: Vec<Vec<GoFrame>> = frames[at..]
        .iter()
        .take(CLASSIFY_FRAMES + 1)
        .map(|f| symbols.frames(f.pc))
        .collect();
    let shape = classify_lock_wait(&named, sema)?;
    let lock_memory_agrees = match (shape.mode, shape.drains_readers) {
        (GoLockMode::Write, false) => process.read_i32(shape.lock).is_some_and(|s| s & 1 == 1),
        _ => process
            .read_i32(shape.lock.wrapping_add(RW_READER_COUNT))
            .is_some_and(|count| count < 0),
    };
    Some(ParkedLockWait {
        lock: shape.lock,
        kind: shape.kind,
        mode: shape.mode,
        drains_readers: shape.drains_readers,
        sema,
        lock_memory_agrees,
    })
}

/// Names of code by file address: the pclntab, or made-up names in tests.
trait CodeNames {
    /// The physical function containing `pc`.
    fn function(&self, pc: u64) -> Option<String>;
    /// The logical frames at `pc`, innermost first.
    fn frames(&self, pc: u64) -> Vec<GoFrame>;
}

impl CodeNames for GoTable {
    fn function(&self, pc: u64) -> Option<String> {
        self.func_for_pc(pc).map(|f| f.name)
    }

    fn frames(&self, pc: u64) -> Vec<GoFrame> {
        GoTable::frames(self, pc)
    }
}

/// Names of return addresses (runtime addresses), cached: thousands of goroutines parked
/// the same way share their pcs.
struct Symbols<'t> {
    table: &'t dyn CodeNames,
    bias: u64,
    functions: FxHashMap<u64, Option<String>>,
    frames: FxHashMap<u64, Vec<GoFrame>>,
}

impl<'t> Symbols<'t> {
    fn new(table: &'t dyn CodeNames, bias: u64) -> Self {
        Self {
            table,
            bias,
            functions: FxHashMap::default(),
            frames: FxHashMap::default(),
        }
    }

    /// The file address of the call before return address `pc`.
    fn call_site(&self, pc: u64) -> u64 {
        pc.wrapping_sub(self.bias).wrapping_sub(1)
    }

    /// The physical function containing the call before `pc`.
    fn function(&mut self, pc: u64) -> Option<String> {
        let site = self.call_site(pc);
        let table = self.table;
        self.functions
            .entry(pc)
            .or_insert_with(|| table.function(site))
            .clone()
    }

    fn is_code(&self, pc: u64) -> bool {
        pc != 0
            && (self.functions.get(&pc).is_some_and(Option::is_some)
                || self.table.function(self.call_site(pc)).is_some())
    }

    /// The logical frames at the call before `pc`.
    fn frames(&mut self, pc: u64) -> Vec<GoFrame> {
        let site = self.call_site(pc);
        let table = self.table;
        self.frames
            .entry(pc)
            .or_insert_with(|| table.frames(site))
            .clone()
    }
}

#[cfg(test)]
mod tests;
