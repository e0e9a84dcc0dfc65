//! Who holds a Go `sync` lock, from the frames of a parked goroutine: a frame stopped
//! between an acquisition of a lock and its release, with the lock's address in one of
//! its stack slots, holds it (`mu.Lock(); ...; p.store.Put(); mu.Unlock()`, no `defer`).
//!
//! The evidence is the function's own machine code, so stripped binaries get it too
//! ([`flow`], pure): per function (cached by entry) the lock operations (the probe plan's
//! inlined atomics, calls to the out-of-line `Lock`/`Unlock`/`lockSlow`/...) with the
//! stack slot (or global) each one's lock address is loaded from, traced backwards
//! through register moves; and the control-flow graph. A frame stopped at return
//! address `pc` holds the lock of slot `S` when:
//! - along every path from `pc`, the next lock operation on `S` is a release (at least
//!   one path reaches one), no path first takes a lock the code does not locate, and `S`
//!   is not written on the way;
//! - along every path from the function's entry to the call, the last lock operation on
//!   `S` was an (unconditional) acquisition, and `S` was not written since;
//! - the call itself is not the acquisition of `S` (a frame in `lockSlow` waits for
//!   that lock, it does not hold it);
//! - and the lock's memory agrees: a `Mutex` (or write-held `RWMutex`) is locked, a
//!   read-held `RWMutex` has readers.
//!
//! Anything the analysis cannot follow with certainty gives no evidence: indirect jumps,
//! a stack or frame pointer changed in the body, slots whose address is taken, lock
//! atomics the probe plan skipped, locks whose address comes from anywhere but a slot or
//! a constant. [`FrameHoldStats`] counts what was cut.
//!
//! Limits: a lock released through one variable and taken again through another (the
//! same lock under two names) between the frame's acquisition and release is told apart
//! only when that happens on both sides of the frame's call; a goroutine that took the
//! lock it now waits for (self-deadlock through the same variable) is not named. DWARF
//! locations are not consulted: the code alone decides, so normal and stripped builds
//! agree.
pub mod flow;
#[cfg(test)]
mod tests;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use object::{Object as _, ObjectSegment as _};
use rustc_hash::FxHashMap;
use tracer_common::GoOp;

pub use self::flow::{
    FrameQuery, FunctionFlow, LockBase, LockKey, LockOp, LockOpSites, SlotHold, Unanalysable,
    analyze_function,
};
use crate::{
    go::{lock_model::GoLockMode, probe::GoSitePlan, sym::GoTable},
    target::{FileBytes, FileSlice, TargetProcess},
};

/// Functions whose analyses are kept; beyond that each frame is analysed again.
const MAX_CACHED_FUNCTIONS: usize = 4096;
/// Offset of `RWMutex.readerCount` (Go 1.18–1.27).
const READER_COUNT_OFFSET: i64 = 16;

/// Out-of-line lock functions (receiver in `AX`): acquire?, mode, conditional. `lockSlow`
/// counts (a frame calling it waits for that lock); `unlockSlow` does not (the inlined
/// `Unlock`'s atomic before it released the lock).
const LOCK_CALLS: [(&str, bool, GoLockMode, bool); 14] = [
    ("sync.(*Mutex).Lock", true, GoLockMode::Write, false),
    (
        "internal/sync.(*Mutex).Lock",
        true,
        GoLockMode::Write,
        false,
    ),
    ("sync.(*Mutex).lockSlow", true, GoLockMode::Write, false),
    (
        "internal/sync.(*Mutex).lockSlow",
        true,
        GoLockMode::Write,
        false,
    ),
    ("sync.(*Mutex).TryLock", true, GoLockMode::Write, true),
    (
        "internal/sync.(*Mutex).TryLock",
        true,
        GoLockMode::Write,
        true,
    ),
    ("sync.(*RWMutex).Lock", true, GoLockMode::Write, false),
    ("sync.(*RWMutex).RLock", true, GoLockMode::Read, false),
    ("sync.(*RWMutex).TryLock", true, GoLockMode::Write, true),
    ("sync.(*RWMutex).TryRLock", true, GoLockMode::Read, true),
    ("sync.(*Mutex).Unlock", false, GoLockMode::Write, false),
    (
        "internal/sync.(*Mutex).Unlock",
        false,
        GoLockMode::Write,
        false,
    ),
    ("sync.(*RWMutex).Unlock", false, GoLockMode::Write, false),
    ("sync.(*RWMutex).RUnlock", false, GoLockMode::Read, false),
];
/// Inlined functions whose calls are an acquisition in progress (a frame calling from
/// inside one waits for that lock).
const ACQUIRING_INLINED: [&str; 4] = [
    "sync.(*Mutex).Lock",
    "internal/sync.(*Mutex).Lock",
    "sync.(*RWMutex).RLock",
    "sync.(*RWMutex).Lock",
];
/// Inlined functions whose atomic may fail and leave the lock free.
const CONDITIONAL_INLINED: [&str; 4] = [
    "sync.(*Mutex).TryLock",
    "internal/sync.(*Mutex).TryLock",
    "sync.(*RWMutex).TryLock",
    "sync.(*RWMutex).TryRLock",
];
/// Functions whose frames are not searched: the runtime's own and the lock
/// implementation's (a writer draining readers is named by its wait, not here).
const SKIPPED_PREFIXES: [&str; 3] = ["runtime.", "sync.", "internal/sync."];

/// Why a [`FrameHoldAnalyzer`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum FrameHoldError {
    #[error("cannot parse the executable")]
    Object(#[source] object::Error),
    #[error("not an x86-64 binary")]
    NotX86_64,
    /// Without inline trees the inlined lock atomics are unknown: any frame could take a
    /// lock the analysis does not see.
    #[error("the pclntab's inline trees cannot be read")]
    NoInlineData,
    #[error("the text at {text_start:#x} is not in any loadable segment's file data")]
    NoText { text_start: u64 },
}

/// A lock a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHold {
    /// Address of the `sync.Mutex`/`sync.RWMutex` (runtime address).
    pub lock: u64,
    pub mode: GoLockMode,
}

/// What one frame says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameHolds {
    pub holds: Vec<FrameHold>,
    /// The frame is inside an acquisition whose lock the code does not locate: the caller
    /// must drop the hold of the lock the goroutine waits for, or all of them when that
    /// is unknown.
    pub acquiring_unresolved: bool,
}

/// How often the analysis cut something short (since the analyzer was built).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameHoldStats {
    /// Frames looked at (functions outside the runtime and `sync`).
    pub frames: u64,
    /// Functions analysed.
    pub functions: u64,
    /// Functions whose code the analysis cannot follow (see [`Unanalysable`]), or that
    /// hold a lock atomic the probe plan skipped.
    pub unanalysable: u64,
    /// Frames whose return address is not right after a call of the body.
    pub not_at_call: u64,
    /// Holds dropped because the slot or the lock could not be read.
    pub unreadable: u64,
    /// Holds dropped because the lock's memory says it is not held that way.
    pub lock_disagrees: u64,
    /// Analyses not cached because the cache was full.
    pub cache_full: u64,
}

#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    functions: AtomicU64,
    unanalysable: AtomicU64,
    not_at_call: AtomicU64,
    unreadable: AtomicU64,
    lock_disagrees: AtomicU64,
    cache_full: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The binary's lock operations, as [`flow`] asks for them.
struct BinarySites<'a> {
    table: &'a GoTable,
    /// (address after the atomic, op), sorted.
    atomics: &'a [(u64, GoOp)],
    calls: &'a FxHashMap<u64, LockOp>,
    reader_count_offset: i64,
}

impl LockOpSites for BinarySites<'_> {
    fn atomic_op(&self, next_ip: u64) -> Option<LockOp> {
        let i = self.atomics.binary_search_by_key(&next_ip, |a| a.0).ok()?;
        let (acquire, mode, field) = match self.atomics[i].1 {
            GoOp::MutexLockFast | GoOp::RwLockFast => (true, GoLockMode::Write, 0),
            GoOp::RLockFast => (true, GoLockMode::Read, self.reader_count_offset),
            GoOp::MutexUnlock | GoOp::RwUnlock => (false, GoLockMode::Write, 0),
            GoOp::RUnlock => (false, GoLockMode::Read, self.reader_count_offset),
            _ => return None,
        };
        let conditional = acquire
            && self
                .table
                .frames(next_ip.saturating_sub(1))
                .iter()
                .any(|f| f.inlined && CONDITIONAL_INLINED.contains(&f.function.as_str()));
        Some(LockOp {
            acquire,
            mode,
            field,
            conditional,
        })
    }

    fn call_op(&self, target: u64) -> Option<LockOp> {
        self.calls.get(&target).copied()
    }

    fn in_acquisition(&self, ip: u64) -> bool {
        self.table
            .frames(ip)
            .iter()
            .any(|f| f.inlined && ACQUIRING_INLINED.contains(&f.function.as_str()))
    }

    fn no_return(&self, target: u64) -> bool {
        self.table
            .func_for_pc(target)
            .filter(|f| f.entry == target)
            .is_some_and(|f| {
                let n = f.name.as_str();
                n.starts_with("runtime.panic")
                    || n.starts_with("runtime.goPanic")
                    || matches!(
                        n,
                        "runtime.throw"
                            | "runtime.fatal"
                            | "runtime.gopanic"
                            | "runtime.fatalthrow"
                            | "runtime.fatalpanic"
                    )
            })
    }
}

/// The frame-variable analysis of one Go binary (see the module notes).
pub struct FrameHoldAnalyzer {
    table: Arc<GoTable>,
    text_vaddr: u64,
    /// A view of the mapped executable's text (never copied).
    text: FileSlice,
    atomics: Vec<(u64, GoOp)>,
    /// Lock atomics without a site, sorted: their functions get no analysis.
    skipped: Vec<u64>,
    calls: FxHashMap<u64, LockOp>,
    reader_count_offset: i64,
    bias: u64,
    cache: Mutex<FxHashMap<u64, Option<Arc<FunctionFlow>>>>,
    counters: Counters,
}

impl std::fmt::Debug for FrameHoldAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameHoldAnalyzer")
            .field("atomics", &self.atomics.len())
            .field("bias", &self.bias)
            .finish_non_exhaustive()
    }
}

impl FrameHoldAnalyzer {
    /// The analysis for a Go binary: `elf_file` its file, `table` its pclntab, `plan` its
    /// probe plan (the inlined lock atomics), `bias` the runtime address minus the
    /// link-time address.
    ///
    /// # Errors
    /// [`FrameHoldError`] when the file is not x86-64, its inline trees are unreadable, or
    /// its text is not in the file.
    pub fn new(
        table: Arc<GoTable>,
        elf_file: &Arc<FileBytes>,
        plan: &GoSitePlan,
        bias: u64,
    ) -> Result<Self, FrameHoldError> {
        let elf: &[u8] = elf_file;
        let file = object::File::parse(elf).map_err(FrameHoldError::Object)?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(FrameHoldError::NotX86_64);
        }
        if !plan.has_inline_data || !table.has_inline_data() {
            return Err(FrameHoldError::NoInlineData);
        }
        let text_start = table.text_start();
        let (text_vaddr, text) = file
            .segments()
            .find_map(|seg| {
                let (offset, size) = seg.file_range();
                (text_start >= seg.address() && text_start - seg.address() < size).then(|| {
                    let from = usize::try_from(offset).ok()?;
                    let to = from.checked_add(usize::try_from(size).ok()?)?;
                    Some((seg.address(), elf_file.slice(from..to)?))
                })?
            })
            .ok_or(FrameHoldError::NoText { text_start })?;
        let mut atomics: Vec<(u64, GoOp)> = plan
            .sites
            .iter()
            .filter(|s| {
                matches!(
                    s.op,
                    GoOp::MutexLockFast
                        | GoOp::RwLockFast
                        | GoOp::RLockFast
                        | GoOp::MutexUnlock
                        | GoOp::RwUnlock
                        | GoOp::RUnlock
                )
            })
            .map(|s| (s.vaddr, s.op))
            .collect();
        atomics.sort_unstable();
        let mut skipped: Vec<u64> = plan.skipped.iter().map(|s| s.vaddr).collect();
        skipped.sort_unstable();
        let names: Vec<&str> = LOCK_CALLS.iter().map(|c| c.0).collect();
        let calls = table
            .funcs_named(&names)
            .into_iter()
            .filter_map(|f| {
                let &(_, acquire, mode, conditional) = LOCK_CALLS.iter().find(|c| c.0 == f.name)?;
                Some((
                    f.entry,
                    LockOp {
                        acquire,
                        mode,
                        field: 0,
                        conditional,
                    },
                ))
            })
            .collect();
        let reader_count_offset =
            crate::go::probe::go_struct_member_offset(elf, "sync.RWMutex", "readerCount")
                .and_then(|o| i64::try_from(o).ok())
                .unwrap_or(READER_COUNT_OFFSET);
        Ok(Self {
            table,
            text_vaddr,
            text,
            atomics,
            skipped,
            calls,
            reader_count_offset,
            bias,
            cache: Mutex::new(FxHashMap::default()),
            counters: Counters::default(),
        })
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> FrameHoldStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FrameHoldStats {
            frames: get(&c.frames),
            functions: get(&c.functions),
            unanalysable: get(&c.unanalysable),
            not_at_call: get(&c.not_at_call),
            unreadable: get(&c.unreadable),
            lock_disagrees: get(&c.lock_disagrees),
            cache_full: get(&c.cache_full),
        }
    }

    /// The analysis of the function entered at `entry` (link-time), `None` when it is not
    /// a function entry, its code is not in the file, or it cannot be analysed. Cached.
    #[must_use]
    pub fn function_flow(&self, entry: u64) -> Option<Arc<FunctionFlow>> {
        if let Ok(cache) = self.cache.lock()
            && let Some(found) = cache.get(&entry)
        {
            return found.clone();
        }
        let func = self.table.func_for_pc(entry).filter(|f| f.entry == entry)?;
        let from = usize::try_from(func.entry.checked_sub(self.text_vaddr)?).ok()?;
        let to = usize::try_from(func.end.checked_sub(self.text_vaddr)?).ok()?;
        let code = self.text.get(from..to)?;
        bump(&self.counters.functions);
        let first_skipped = self.skipped.partition_point(|&s| s < func.entry);
        let has_skipped = self
            .skipped
            .get(first_skipped)
            .is_some_and(|&s| s < func.end);
        let sites = BinarySites {
            table: &self.table,
            atomics: &self.atomics,
            calls: &self.calls,
            reader_count_offset: self.reader_count_offset,
        };
        let flow = if has_skipped {
            None
        } else {
            analyze_function(code, entry, &sites).ok().map(Arc::new)
        };
        if flow.is_none() {
            bump(&self.counters.unanalysable);
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() < MAX_CACHED_FUNCTIONS {
                cache.insert(entry, flow.clone());
            } else {
                bump(&self.counters.cache_full);
            }
        }
        flow
    }

    /// The locks one frame of a parked goroutine holds: `pc` its return address, `bp`
    /// the value of `BP` inside its function (runtime addresses).
    pub fn frame_holds(&self, pc: u64, bp: u64, process: &dyn TargetProcess) -> FrameHolds {
        let Some(link_pc) = pc.checked_sub(self.bias) else {
            return FrameHolds::default();
        };
        let Some(func) = self.table.func_for_pc(link_pc.saturating_sub(1)) else {
            return FrameHolds::default();
        };
        if SKIPPED_PREFIXES.iter().any(|p| func.name.starts_with(p)) {
            return FrameHolds::default();
        }
        bump(&self.counters.frames);
        let Some(flow) = self.function_flow(func.entry) else {
            return FrameHolds::default();
        };
        let query = flow.holds_at(link_pc);
        if query.holds.is_empty() && !query.acquiring_unresolved && !flow.is_call_return(link_pc) {
            bump(&self.counters.not_at_call);
        }
        let holds = query
            .holds
            .iter()
            .filter_map(|h| self.read_hold(*h, bp, process))
            .collect();
        FrameHolds {
            holds,
            acquiring_unresolved: query.acquiring_unresolved,
        }
    }

    /// The lock of `hold` in the live frame, if its memory agrees it is held.
    fn read_hold(&self, hold: SlotHold, bp: u64, process: &dyn TargetProcess) -> Option<FrameHold> {
        let base = match hold.key.base {
            LockBase::Slot(off) => {
                let Some(v) = process.read_u64(bp.wrapping_add_signed(off)) else {
                    bump(&self.counters.unreadable);
                    return None;
                };
                v
            }
            LockBase::Global(addr) => addr.wrapping_add(self.bias),
        };
        let lock = base.wrapping_add_signed(hold.key.disp);
        if base == 0 || lock % 4 != 0 {
            bump(&self.counters.unreadable);
            return None;
        }
        let agrees = match hold.mode {
            // `Mutex.state` (or `RWMutex.w.state`, at the same address): locked bit.
            GoLockMode::Write => process.read_u32(lock).map(|state| state & 1 == 1),
            GoLockMode::Read => process
                .read_u32(lock.wrapping_add_signed(self.reader_count_offset))
                .map(|count| count != 0),
        };
        match agrees {
            Some(true) => Some(FrameHold {
                lock,
                mode: hold.mode,
            }),
            Some(false) => {
                bump(&self.counters.lock_disagrees);
                None
            }
            None => {
                bump(&self.counters.unreadable);
                None
            }
        }
    }
}
