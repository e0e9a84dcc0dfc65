//! Who holds a Go `sync` lock, from the defers pending on goroutine stacks: a goroutine
//! that ran `mu.Lock(); defer mu.Unlock()` and has not returned holds `mu`, and its stack
//! says so even when no probe saw the `Lock` (attach after the fact, no fast-path probes).
//!
//! Two places hold pending defers:
//! - **Open-coded defers** (most: up to 8 per function, not in loops) live in the frame:
//!   a `deferBits` byte and one closure slot per defer, located by the function's
//!   `FUNCDATA_OpenCodedDeferInfo` ([`open_coded`]). [`DeferAnalyzer::frame_unlocks`] reads
//!   them for one unwound frame.
//! - **`_defer` records** (the others) are chained from `g._defer`
//!   ([`records::G_DEFER_OFFSET`]); [`DeferAnalyzer::chained_unlocks`] walks the chain.
//!
//! Either way a pending defer is a closure (funcval pointer); what it unlocks comes from
//! its function's code ([`closure`]), analysed once per function and cached, then
//! evaluated against that funcval's captured values.
//!
//! API (the goroutine unwinder calls it per frame):
//! ```text
//! let analyzer = DeferAnalyzer::new(elf, Arc::new(table), "go1.25.5", bias)?;
//! for (pc, bp) in frames_of_goroutine { holds.extend(analyzer.frame_unlocks(pc, bp, &process)); }
//! holds.extend(analyzer.chained_unlocks(process.read_u64(g + G_DEFER_OFFSET)?, &process));
//! ```
//! `pc` is the frame's return address (or the resume pc of the innermost frame), `bp` the
//! value of `BP` inside that function; `bias` is the runtime address minus the link-time
//! address (0 unless PIE).
//!
//! Limits: an innermost frame stopped inside its prologue (before `BP` is set up and
//! `deferBits` zeroed, e.g. asynchronously preempted there) can read stale bits; every
//! result still needs a valid funcval whose function unlocks, so garbage rarely passes.
//! `_defer` chains are cut at [`MAX_DEFER_RECORDS`]. Range-over-func defers (Go 1.23+,
//! kept on a record's `head` list) are not read. Counters ([`DeferStats`]) say how often
//! a read failed or a closure could not be resolved.
pub mod closure;
pub mod open_coded;
pub mod records;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use object::{Object as _, ObjectSegment as _};
use rustc_hash::FxHashMap;

pub use self::{
    closure::{ClosureAnalysis, LockExpr, UnlockRecipe, UnlockSites, analyze_closure},
    open_coded::{OpenDeferFormat, OpenDeferInfo},
    records::{DeferRecordLayout, G_DEFER_OFFSET, LayoutSource},
};
use crate::{
    go::{
        lock_model::GoLockMode,
        probe::{go_minor_version, go_struct_member_offset},
        sym::{FUNCDATA_OPEN_CODED_DEFER_INFO, GoTable},
    },
    target::{FileBytes, FileSlice, TargetProcess},
};

/// Longest `_defer` chain walked: real goroutines have a handful of records; a corrupt or
/// changing chain could otherwise loop.
pub const MAX_DEFER_RECORDS: usize = 64;
/// Closure functions whose analysis is kept; beyond that they are analysed each time.
const MAX_CACHED_CLOSURES: usize = 4096;
/// Offset of `RWMutex.readerCount` (Go 1.18–1.27) when the DWARF does not say.
const READER_COUNT_OFFSET: u64 = 16;

/// The unlock functions: their mode, and whether they are a `Mutex`'s (the atomic is on
/// `state`, offset 0) rather than an `RWMutex`'s (on `readerCount`).
const UNLOCK_FUNCTIONS: [(&str, GoLockMode, bool); 4] = [
    ("sync.(*Mutex).Unlock", GoLockMode::Write, true),
    ("internal/sync.(*Mutex).Unlock", GoLockMode::Write, true),
    ("sync.(*RWMutex).Unlock", GoLockMode::Write, false),
    ("sync.(*RWMutex).RUnlock", GoLockMode::Read, false),
];

/// Why a [`DeferAnalyzer`] cannot be built for a binary.
#[derive(Debug, thiserror::Error)]
pub enum DeferError {
    /// The file does not parse as an object file.
    #[error("cannot parse the executable")]
    Object(#[source] object::Error),
    /// The analysis decodes amd64 code and frames only.
    #[error("not an x86-64 binary")]
    NotX86_64,
    /// A Go release whose defer encoding we do not know.
    #[error("go release {version:?} is not supported by the defer analysis (go 1.18 and later)")]
    UnsupportedVersion {
        /// The version string given.
        version: String,
    },
    /// The functions' code is not in the file.
    #[error("the text at {text_start:#x} is not in any loadable segment's file data")]
    NoText {
        /// `runtime.text`.
        text_start: u64,
    },
}

/// A lock held by a goroutine through a deferred unlock that has not run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeferredUnlock {
    /// Address of the `sync.Mutex`/`sync.RWMutex` (runtime address).
    pub lock: u64,
    /// [`GoLockMode::Read`] for `RUnlock`, [`GoLockMode::Write`] for `Mutex.Unlock` and
    /// `RWMutex.Unlock`.
    pub mode: GoLockMode,
    /// Runtime entry address of the deferred closure's function.
    pub closure_fn: u64,
}

/// How often the analysis met something it could not read or resolve (since the
/// analyzer was built).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeferStats {
    /// Frames with open-coded defer info that were read.
    pub frames_with_open_defers: u64,
    /// Pending deferred closures looked at (both kinds).
    pub pending_closures: u64,
    /// Reads of the target that failed (defer bits, slots, funcvals, records, captures).
    pub unreadable: u64,
    /// Pending closures whose function pointer is not a function entry in the text.
    pub invalid_closures: u64,
    /// Closures that unlock, but whose lock address the analysis cannot build.
    pub unresolved_unlocks: u64,
    /// Open-coded defer info that does not decode.
    pub malformed_info: u64,
    /// `_defer` chains cut at [`MAX_DEFER_RECORDS`].
    pub chains_truncated: u64,
    /// Closure analyses not cached because the cache was full.
    pub cache_full: u64,
}

#[derive(Default)]
struct Counters {
    frames_with_open_defers: AtomicU64,
    pending_closures: AtomicU64,
    unreadable: AtomicU64,
    invalid_closures: AtomicU64,
    unresolved_unlocks: AtomicU64,
    malformed_info: AtomicU64,
    chains_truncated: AtomicU64,
    cache_full: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The executable segment holding the functions (link-time addresses).
struct Text {
    vaddr: u64,
    /// A view of the mapped executable: the text of a large service is tens of MB, not
    /// to be copied.
    bytes: FileSlice,
}

impl Text {
    fn range(&self, start: u64, end: u64) -> Option<&[u8]> {
        let from = usize::try_from(start.checked_sub(self.vaddr)?).ok()?;
        let to = usize::try_from(end.checked_sub(self.vaddr)?).ok()?;
        self.bytes.get(from..to)
    }
}

/// The defer analysis of one Go binary (see the module notes).
pub struct DeferAnalyzer {
    table: Arc<GoTable>,
    text: Text,
    /// Unlock function entries (link-time) and their modes.
    unlock_entries: FxHashMap<u64, GoLockMode>,
    reader_count_offset: u64,
    format: OpenDeferFormat,
    records: Option<DeferRecordLayout>,
    bias: u64,
    /// Analyses by closure function entry (link-time).
    cache: Mutex<FxHashMap<u64, ClosureAnalysis>>,
    counters: Counters,
}

impl std::fmt::Debug for DeferAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferAnalyzer")
            .field("format", &self.format)
            .field("records", &self.records)
            .field("bias", &self.bias)
            .finish_non_exhaustive()
    }
}

/// [`UnlockSites`] from the binary's pclntab.
struct TableSites<'a> {
    table: &'a GoTable,
    unlock_entries: &'a FxHashMap<u64, GoLockMode>,
    reader_count_offset: u64,
}

impl UnlockSites for TableSites<'_> {
    fn unlock_entry(&self, target: u64) -> Option<GoLockMode> {
        self.unlock_entries.get(&target).copied()
    }

    fn inlined_unlock(&self, ip: u64) -> Option<(GoLockMode, u64)> {
        let frames = self.table.frames(ip);
        let unlocks: Vec<(GoLockMode, bool)> = frames
            .iter()
            .filter(|f| f.inlined)
            .filter_map(|f| {
                UNLOCK_FUNCTIONS
                    .iter()
                    .find(|(name, _, _)| *name == f.function)
                    .map(|&(_, mode, is_mutex)| (mode, is_mutex))
            })
            .collect();
        // The outermost unlock is what the code called (RWMutex.Unlock ends in an inlined
        // Mutex.Unlock of its `w`); the innermost says which word the atomic is on. `w` is
        // an RWMutex's first field, so a Mutex atomic is at the lock's own address.
        let (mode, _) = *unlocks.last()?;
        let (_, innermost_is_mutex) = *unlocks.first()?;
        let field = if innermost_is_mutex {
            0
        } else {
            self.reader_count_offset
        };
        Some((mode, field))
    }
}

impl DeferAnalyzer {
    /// The analysis for a Go binary: `elf` its file, `table` its pclntab, `go_version` its
    /// Go release (`go1.22.5`, as [`crate::go::sym::go_build_info`] reports it), `bias`
    /// the runtime address minus the link-time address (0 unless PIE).
    ///
    /// Shares the executable segment (the closures' code) with `elf_file`, and `table`.
    ///
    /// # Errors
    /// [`DeferError`] when the file is not x86-64, the Go release predates 1.18 or is not
    /// a `go1.x` string, or the text is not in the file.
    pub fn new(
        elf_file: &Arc<FileBytes>,
        table: Arc<GoTable>,
        go_version: &str,
        bias: u64,
    ) -> Result<Self, DeferError> {
        let elf: &[u8] = elf_file;
        let file = object::File::parse(elf).map_err(DeferError::Object)?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(DeferError::NotX86_64);
        }
        let unsupported = || DeferError::UnsupportedVersion {
            version: go_version.to_owned(),
        };
        let minor = go_minor_version(go_version).ok_or_else(unsupported)?;
        let format = OpenDeferFormat::for_minor(minor).ok_or_else(unsupported)?;
        let text_start = table.text_start();
        let text = file
            .segments()
            .find_map(|seg| {
                let (offset, size) = seg.file_range();
                (text_start >= seg.address() && text_start - seg.address() < size).then(|| {
                    let from = usize::try_from(offset).ok()?;
                    let to = from.checked_add(usize::try_from(size).ok()?)?;
                    Some(Text {
                        vaddr: seg.address(),
                        bytes: elf_file.slice(from..to)?,
                    })
                })?
            })
            .ok_or(DeferError::NoText { text_start })?;
        let names: Vec<&str> = UNLOCK_FUNCTIONS.iter().map(|(n, _, _)| *n).collect();
        let unlock_entries = table
            .funcs_named(&names)
            .into_iter()
            .filter_map(|f| {
                let (_, mode, _) = UNLOCK_FUNCTIONS.iter().find(|(n, _, _)| *n == f.name)?;
                Some((f.entry, *mode))
            })
            .collect();
        let reader_count_offset = go_struct_member_offset(elf, "sync.RWMutex", "readerCount")
            .unwrap_or(READER_COUNT_OFFSET);
        let records =
            DeferRecordLayout::from_dwarf(elf).or_else(|| DeferRecordLayout::for_minor(minor));
        Ok(Self {
            table,
            text,
            unlock_entries,
            reader_count_offset,
            format,
            records,
            bias,
            cache: Mutex::new(FxHashMap::default()),
            counters: Counters::default(),
        })
    }

    /// Whether open-coded defers can be read: their funcdata lives in `go:func.*`, which
    /// the pclntab parser must have located ([`GoTable::has_inline_data`]).
    #[must_use]
    pub fn reads_open_coded_defers(&self) -> bool {
        self.table.has_inline_data()
    }

    /// The `_defer` layout in use, if any ([`DeferAnalyzer::chained_unlocks`] reads nothing
    /// without one).
    #[must_use]
    pub fn record_layout(&self) -> Option<DeferRecordLayout> {
        self.records
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> DeferStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DeferStats {
            frames_with_open_defers: get(&c.frames_with_open_defers),
            pending_closures: get(&c.pending_closures),
            unreadable: get(&c.unreadable),
            invalid_closures: get(&c.invalid_closures),
            unresolved_unlocks: get(&c.unresolved_unlocks),
            malformed_info: get(&c.malformed_info),
            chains_truncated: get(&c.chains_truncated),
            cache_full: get(&c.cache_full),
        }
    }

    /// What the function entered at `entry` (link-time address) unlocks when called as a
    /// deferred closure; `None` when `entry` is not a function entry of the table or its
    /// code is not in the file. Cached.
    #[must_use]
    pub fn closure_analysis(&self, entry: u64) -> Option<ClosureAnalysis> {
        if let Ok(cache) = self.cache.lock()
            && let Some(found) = cache.get(&entry)
        {
            return Some(found.clone());
        }
        let func = self.table.func_for_pc(entry).filter(|f| f.entry == entry)?;
        let code = self.text.range(func.entry, func.end)?;
        let sites = TableSites {
            table: &self.table,
            unlock_entries: &self.unlock_entries,
            reader_count_offset: self.reader_count_offset,
        };
        let analysis = analyze_closure(code, entry, &sites);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() < MAX_CACHED_CLOSURES {
                cache.insert(entry, analysis.clone());
            } else {
                bump(&self.counters.cache_full);
            }
        }
        Some(analysis)
    }

    /// The locks held through the open-coded defers pending in one frame: `pc` is its
    /// return address (or the innermost frame's resume pc; looked up as `pc - 1`), `bp`
    /// the value of `BP` inside its function (runtime addresses). Empty for frames whose
    /// function has no open-coded defers, or none pending, or none that unlock.
    pub fn frame_unlocks(
        &self,
        pc: u64,
        bp: u64,
        process: &dyn TargetProcess,
    ) -> Vec<DeferredUnlock> {
        let Some(link_pc) = pc.checked_sub(1).and_then(|p| p.checked_sub(self.bias)) else {
            return Vec::new();
        };
        let Some(funcdata) = self.table.funcdata(link_pc, FUNCDATA_OPEN_CODED_DEFER_INFO) else {
            return Vec::new();
        };
        bump(&self.counters.frames_with_open_defers);
        let Some(info) = OpenDeferInfo::decode(self.format, funcdata) else {
            bump(&self.counters.malformed_info);
            return Vec::new();
        };
        let mut bits = [0u8];
        let Some(bits_addr) = info.defer_bits_addr(bp) else {
            bump(&self.counters.unreadable);
            return Vec::new();
        };
        if !process.read_exact(bits_addr, &mut bits) {
            bump(&self.counters.unreadable);
            return Vec::new();
        }
        info.pending_slots(bp, bits[0])
            .into_iter()
            .filter_map(|(_, slot)| {
                bump(&self.counters.pending_closures);
                let Some(closure) = process.read_u64(slot) else {
                    bump(&self.counters.unreadable);
                    return None;
                };
                self.unlock_of_closure(closure, process)
            })
            .collect()
    }

    /// The locks held through the `_defer` records chained from `first` (a goroutine's
    /// `g._defer`, read at [`G_DEFER_OFFSET`]), innermost first. Records standing for
    /// open-coded frames are skipped (those frames are read by
    /// [`DeferAnalyzer::frame_unlocks`]). Empty without a record layout.
    pub fn chained_unlocks(&self, first: u64, process: &dyn TargetProcess) -> Vec<DeferredUnlock> {
        let Some(layout) = self.records else {
            return Vec::new();
        };
        let mut found = Vec::new();
        let mut record = first;
        for _ in 0..MAX_DEFER_RECORDS {
            if record == 0 {
                return found;
            }
            let open_coded = layout.open_defer_offset.map(|off| {
                let mut flag = [0u8];
                process.read_exact(record.wrapping_add(off), &mut flag) && flag[0] != 0
            });
            if open_coded != Some(true) {
                match process.read_u64(record.wrapping_add(layout.fn_offset)) {
                    Some(0) => {}
                    Some(closure) => {
                        bump(&self.counters.pending_closures);
                        found.extend(self.unlock_of_closure(closure, process));
                    }
                    None => {
                        bump(&self.counters.unreadable);
                        return found;
                    }
                }
            }
            let Some(next) = process.read_u64(record.wrapping_add(layout.link_offset)) else {
                bump(&self.counters.unreadable);
                return found;
            };
            record = next;
        }
        if record != 0 {
            bump(&self.counters.chains_truncated);
        }
        found
    }

    /// What the deferred closure (funcval) at `closure` unlocks, if anything.
    fn unlock_of_closure(
        &self,
        closure: u64,
        process: &dyn TargetProcess,
    ) -> Option<DeferredUnlock> {
        let Some(fn_addr) = process.read_u64(closure) else {
            bump(&self.counters.unreadable);
            return None;
        };
        let Some(analysis) = fn_addr
            .checked_sub(self.bias)
            .and_then(|entry| self.closure_analysis(entry))
        else {
            bump(&self.counters.invalid_closures);
            return None;
        };
        match analysis {
            ClosureAnalysis::Unlocks(recipe) => {
                let read = |addr: u64| process.read_u64(addr);
                let Some(lock) = recipe.lock.eval(closure, self.bias, &read) else {
                    bump(&self.counters.unreadable);
                    return None;
                };
                Some(DeferredUnlock {
                    lock,
                    mode: recipe.mode,
                    closure_fn: fn_addr,
                })
            }
            ClosureAnalysis::Unresolved(_) => {
                bump(&self.counters.unresolved_unlocks);
                None
            }
            ClosureAnalysis::NoUnlock => None,
        }
    }
}
