//! Where to put uprobes on the lock paths of a Go binary (x86-64), without uretprobes.
//!
//! A uretprobe rewrites the return address on the stack; Go moves goroutine stacks (and
//! checks return addresses while unwinding), so uretprobes crash Go programs. Instead we
//! probe the entry of each lock function and every `ret` inside it, found by decoding the
//! function's machine code with `iced-x86`. Functions are named and bounded by the
//! pclntab ([`crate::gosym`]), so this works on stripped (`-ldflags='-s -w'`) binaries.
//!
//! The same lock operation lives under different names across Go releases (Go 1.24 moved
//! the mutex into `internal/sync`, leaving `sync.Mutex` as a thin wrapper), so each
//! [`LockFn`] lists its candidate names; every candidate present in the binary gets
//! sites. Small functions (`sync.(*Mutex).Lock`, `RLock`, `RUnlock`, `TryLock`) are
//! usually inlined into every caller and then have no symbol: they are reported in
//! [`GoLockProbes::missing`], not as an error.
//!
//! Only direct `ret`/`retf` instructions are return sites. A function can also leave by a
//! direct jump to another function (a tail call); those are listed separately in
//! [`GoLockProbes::tail_jumps`] because a probe on them needs the jump's target to be
//! probed too. Decoding is a linear sweep from entry to end (Go does not put data in
//! amd64 text; jump tables live in rodata) and stops at the first undecodable byte.
//!
//! Submodules:
//! - [`plan_go_lock_sites`] (`atomic_sites`): the full site plan the tracer attaches: the
//!   `lockSlow` and semaphore entries/returns above plus the instruction after every
//!   inlined or out-of-line `lock cmpxchg`/`lock xadd` of the mutex fast paths, each with
//!   the register and displacement that give the lock's address (the attach cookie).
//! - [`go_runtime_offsets`] (`runtime_offsets`): where `goid` and `atomicstatus` sit in
//!   the runtime's `g`, from DWARF or a per-release table.
//! - [`DwarfNames`] and [`go_global_field_path`] (`crate::lock_names`): names of places in
//!   global variables by field path (`main.store.mu`, `main.table[3].mu`), from DWARF.
//! - [`go_lock_names`] (`lock_owners`): names of locks inside heap objects by the type of
//!   the struct holding them (`main.Store.mu`), from DWARF location lists and the code
//!   around each site.
mod atomic_sites;
mod lock_owners;
mod runtime_offsets;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind};
use object::{Object as _, ObjectSegment as _};

pub use self::{
    atomic_sites::{
        GoLockSite, GoSitePlan, SkippedSite, attach_order, plan_go_lock_sites,
        plan_go_lock_sites_with, plan_go_park_sites,
    },
    lock_owners::{GoLockOwners, go_lock_names},
    runtime_offsets::{
        GoRuntimeOffsets, OffsetSource, go_minor_version, go_runtime_offsets,
        go_runtime_offsets_for_version, go_struct_layouts, go_struct_member_offset,
        go_struct_member_offsets,
    },
};
use crate::go::sym::{GoFunc, GoSymError, GoTable};
pub use crate::lock_names::{DwarfNames, go_global_field_path};

/// Whether a Go function belongs to the lock implementation (or the runtime under it)
/// rather than to the code that locks.
#[must_use]
pub fn is_lock_internal(function: &str) -> bool {
    ["sync.", "internal/sync.", "sync/atomic.", "runtime."]
        .iter()
        .any(|p| function.starts_with(p))
}

/// What can go wrong while locating probe sites.
#[derive(Debug, thiserror::Error)]
pub enum GoProbeError {
    /// The object file could not be parsed at all.
    #[error("cannot parse the object file")]
    Object(#[source] object::Error),
    /// The file parses but is not a 64-bit x86-64 ELF file.
    #[error("not a 64-bit x86-64 elf file")]
    NotX86_64,
    /// The Go symbol table could not be read.
    #[error("cannot read the go symbol table")]
    GoSym(#[source] GoSymError),
    /// A function's code is not inside the file data of any `PT_LOAD` segment.
    #[error("code of {function} ({entry:#x}..{end:#x}) is not in any loadable segment's file data")]
    NotMapped {
        /// Function name as listed in [`LockFn::candidates`].
        function: &'static str,
        /// Entry address.
        entry: u64,
        /// End address (exclusive).
        end: u64,
    },
}

/// Where a probe site is in its function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteKind {
    /// The function's first instruction.
    Entry,
    /// A `ret`/`retf` instruction inside the function (the uprobe fires before it runs).
    Return,
}

/// One place to attach a uprobe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeSite {
    /// The Go function (pclntab name) the site is in.
    pub function: String,
    /// Entry or return.
    pub kind: SiteKind,
    /// Virtual address of the instruction.
    pub vaddr: u64,
    /// File offset of the instruction (what the uprobe attach API takes).
    pub file_offset: u64,
}

/// A direct jump from inside a function to outside it (a tail call).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TailJump {
    /// The Go function the jump is in.
    pub function: String,
    /// Virtual address of the jump instruction.
    pub vaddr: u64,
    /// File offset of the jump instruction.
    pub file_offset: u64,
    /// Where it jumps.
    pub target: u64,
}

/// The lock-path operations we look for. Each has candidate function names for the Go
/// releases that use them ([`LockFn::candidates`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockFn {
    /// `sync.(*Mutex).Lock` (fast path; usually inlined away).
    MutexLock,
    /// `sync.(*Mutex).Unlock` (fast path; from Go 1.24 also `internal/sync.(*Mutex).Unlock`).
    MutexUnlock,
    /// `sync.(*Mutex).lockSlow`, `internal/sync.(*Mutex).lockSlow` from Go 1.24.
    MutexLockSlow,
    /// `sync.(*Mutex).unlockSlow`, `internal/sync.(*Mutex).unlockSlow` from Go 1.24.
    MutexUnlockSlow,
    /// `sync.(*Mutex).TryLock` (Go 1.18+; usually inlined away).
    TryLock,
    /// `sync.(*RWMutex).RLock` (usually inlined away).
    RwRLock,
    /// `sync.(*RWMutex).RUnlock` (usually inlined away).
    RwRUnlock,
    /// `sync.(*RWMutex).Lock`.
    RwLock,
    /// `sync.(*RWMutex).Unlock`.
    RwUnlock,
    /// `sync.(*RWMutex).rUnlockSlow`.
    RwRUnlockSlow,
    /// `sync.(*RWMutex).TryLock` / `TryRLock` (Go 1.18+, only if the program uses them).
    RwTryLock,
    /// `sync.runtime_SemacquireMutex` (before Go 1.24 also used by `RWMutex`),
    /// `internal/sync.runtime_SemacquireMutex` from Go 1.24.
    SemacquireMutex,
    /// `sync.runtime_SemacquireRWMutexR` / `sync.runtime_SemacquireRWMutex` (Go 1.20+).
    SemacquireRwMutex,
    /// `sync.runtime_Semrelease`, `internal/sync.runtime_Semrelease` from Go 1.24.
    Semrelease,
    /// `runtime.semacquire1`, the runtime side of every semaphore acquire.
    Semacquire1,
    /// `runtime.semrelease1`, the runtime side of every semaphore release.
    Semrelease1,
}

impl LockFn {
    /// Every operation, in report order.
    pub const ALL: [Self; 16] = [
        Self::MutexLock,
        Self::MutexUnlock,
        Self::MutexLockSlow,
        Self::MutexUnlockSlow,
        Self::TryLock,
        Self::RwRLock,
        Self::RwRUnlock,
        Self::RwLock,
        Self::RwUnlock,
        Self::RwRUnlockSlow,
        Self::RwTryLock,
        Self::SemacquireMutex,
        Self::SemacquireRwMutex,
        Self::Semrelease,
        Self::Semacquire1,
        Self::Semrelease1,
    ];

    /// The pclntab names this operation has in some Go release (Go 1.18 to 1.25).
    #[must_use]
    pub fn candidates(self) -> &'static [&'static str] {
        match self {
            Self::MutexLock => &["sync.(*Mutex).Lock", "internal/sync.(*Mutex).Lock"],
            Self::MutexUnlock => &["sync.(*Mutex).Unlock", "internal/sync.(*Mutex).Unlock"],
            Self::MutexLockSlow => &["sync.(*Mutex).lockSlow", "internal/sync.(*Mutex).lockSlow"],
            Self::MutexUnlockSlow => &[
                "sync.(*Mutex).unlockSlow",
                "internal/sync.(*Mutex).unlockSlow",
            ],
            Self::TryLock => &["sync.(*Mutex).TryLock", "internal/sync.(*Mutex).TryLock"],
            Self::RwRLock => &["sync.(*RWMutex).RLock"],
            Self::RwRUnlock => &["sync.(*RWMutex).RUnlock"],
            Self::RwLock => &["sync.(*RWMutex).Lock"],
            Self::RwUnlock => &["sync.(*RWMutex).Unlock"],
            Self::RwRUnlockSlow => &["sync.(*RWMutex).rUnlockSlow"],
            Self::RwTryLock => &["sync.(*RWMutex).TryLock", "sync.(*RWMutex).TryRLock"],
            Self::SemacquireMutex => &[
                "sync.runtime_SemacquireMutex",
                "internal/sync.runtime_SemacquireMutex",
            ],
            Self::SemacquireRwMutex => &[
                "sync.runtime_SemacquireRWMutexR",
                "sync.runtime_SemacquireRWMutex",
            ],
            Self::Semrelease => &[
                "sync.runtime_Semrelease",
                "internal/sync.runtime_Semrelease",
            ],
            Self::Semacquire1 => &["runtime.semacquire1"],
            Self::Semrelease1 => &["runtime.semrelease1"],
        }
    }

    /// The operation's name for reports: its first candidate.
    #[must_use]
    pub fn name(self) -> &'static str {
        self.candidates()[0]
    }
}

/// The probe sites of a Go binary's lock paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoLockProbes {
    /// Entry and return sites, grouped by operation in [`LockFn::ALL`] order, then by
    /// candidate, each function's entry first and its returns by address.
    pub sites: Vec<(LockFn, ProbeSite)>,
    /// Direct jumps out of the probed functions (tail calls), which bypass the returns.
    pub tail_jumps: Vec<(LockFn, TailJump)>,
    /// [`LockFn::name`] of each operation none of whose candidates is in the binary
    /// (inlined into every caller, or not linked).
    pub missing: Vec<&'static str>,
}

/// A `PT_LOAD` segment's address and file range.
struct Segment {
    address: u64,
    file_offset: u64,
    file_size: u64,
}

/// File offset and the file bytes of `[start, end)` if one segment's file data holds it all.
fn map_range<'a>(
    data: &'a [u8],
    segments: &[Segment],
    start: u64,
    end: u64,
) -> Option<(u64, &'a [u8])> {
    let seg = segments
        .iter()
        .find(|s| start >= s.address && end >= start && end - s.address <= s.file_size)?;
    let off = seg.file_offset.checked_add(start - seg.address)?;
    let lo = usize::try_from(off).ok()?;
    let hi = lo.checked_add(usize::try_from(end - start).ok()?)?;
    Some((off, data.get(lo..hi)?))
}

/// Finds the entry and return sites of the lock-path functions ([`LockFn`]) in an x86-64
/// Go ELF binary, stripped or not.
///
/// # Errors
/// If the file is not a 64-bit x86-64 ELF file, has no readable pclntab, or a found
/// function's code is not in the file.
pub fn find_lock_probe_sites(elf: &[u8]) -> Result<GoLockProbes, GoProbeError> {
    let segments = elf_segments(elf)?;
    let table = GoTable::from_elf(elf).map_err(GoProbeError::GoSym)?;

    let mut out = GoLockProbes::default();
    for op in LockFn::ALL {
        let mut found = false;
        for &name in op.candidates() {
            let Some(func) = table.find_func(name) else {
                continue;
            };
            found = true;
            let (entry, returns, tail_jumps) = entry_and_returns(elf, &segments, name, &func)?;
            out.sites.push((op, entry));
            out.sites.extend(returns.into_iter().map(|site| (op, site)));
            out.tail_jumps
                .extend(tail_jumps.into_iter().map(|jump| (op, jump)));
        }
        if !found {
            out.missing.push(op.name());
        }
    }
    Ok(out)
}

/// Parses `elf`, checks that it is a 64-bit x86-64 ELF file and lists its segments.
fn elf_segments(elf: &[u8]) -> Result<Vec<Segment>, GoProbeError> {
    let file = object::File::parse(elf).map_err(GoProbeError::Object)?;
    if file.format() != object::BinaryFormat::Elf
        || file.architecture() != object::Architecture::X86_64
        || !file.is_64()
    {
        return Err(GoProbeError::NotX86_64);
    }
    Ok(file
        .segments()
        .map(|seg| {
            let (file_offset, file_size) = seg.file_range();
            Segment {
                address: seg.address(),
                file_offset,
                file_size,
            }
        })
        .collect())
}

/// The entry site, the return sites and the tail jumps of `func` (found as `name`).
fn entry_and_returns(
    elf: &[u8],
    segments: &[Segment],
    name: &'static str,
    func: &GoFunc,
) -> Result<(ProbeSite, Vec<ProbeSite>, Vec<TailJump>), GoProbeError> {
    let (entry_off, code) =
        map_range(elf, segments, func.entry, func.end).ok_or(GoProbeError::NotMapped {
            function: name,
            entry: func.entry,
            end: func.end,
        })?;
    let site = |kind, vaddr: u64| ProbeSite {
        function: func.name.clone(),
        kind,
        vaddr,
        file_offset: entry_off + (vaddr - func.entry),
    };
    let flow = decode_function(code, func.entry);
    let returns = flow
        .returns
        .iter()
        .map(|&pc| site(SiteKind::Return, pc))
        .collect();
    let tail_jumps = flow
        .tail_jumps
        .iter()
        .map(|&(vaddr, target)| TailJump {
            function: func.name.clone(),
            vaddr,
            file_offset: entry_off + (vaddr - func.entry),
            target,
        })
        .collect();
    Ok((site(SiteKind::Entry, func.entry), returns, tail_jumps))
}

/// What a linear decode of one function found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionFlow {
    /// Addresses of `ret`/`retf` instructions (with or without an immediate).
    pub returns: Vec<u64>,
    /// `(instruction address, target)` of direct jumps (conditional or not) whose target
    /// is outside the decoded range.
    pub tail_jumps: Vec<(u64, u64)>,
    /// Address of the first byte that did not decode (an invalid or truncated
    /// instruction), if decoding stopped before the end.
    pub stopped_at: Option<u64>,
}

/// Decodes `code` (the bytes of one function, loaded at `entry_vaddr`) as 64-bit x86 from
/// start to end and classifies its exits. Stops at the first undecodable instruction.
#[must_use]
pub fn decode_function(code: &[u8], entry_vaddr: u64) -> FunctionFlow {
    let end_vaddr = entry_vaddr.saturating_add(code.len() as u64);
    let mut decoder = Decoder::with_ip(64, code, entry_vaddr, DecoderOptions::NONE);
    let mut instr = Instruction::default();
    let mut flow = FunctionFlow::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if instr.is_invalid() {
            flow.stopped_at = Some(instr.ip());
            break;
        }
        match instr.mnemonic() {
            Mnemonic::Ret | Mnemonic::Retf => flow.returns.push(instr.ip()),
            _ => {
                let direct = matches!(
                    instr.op0_kind(),
                    OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16
                );
                let jump = matches!(
                    instr.flow_control(),
                    FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
                );
                if jump && direct {
                    let target = instr.near_branch_target();
                    if target < entry_vaddr || target >= end_vaddr {
                        flow.tail_jumps.push((instr.ip(), target));
                    }
                }
            }
        }
    }
    flow
}

/// Addresses of every `ret`/`retf` in the function whose bytes are `code`, loaded at
/// `entry_vaddr` (a linear 64-bit decode; stops cleanly at undecodable bytes).
#[must_use]
pub fn return_sites(code: &[u8], entry_vaddr: u64) -> Vec<u64> {
    decode_function(code, entry_vaddr).returns
}

/// Direct jumps out of the function whose bytes are `code`: `(instruction, target)`.
#[must_use]
pub fn tail_jumps(code: &[u8], entry_vaddr: u64) -> Vec<(u64, u64)> {
    decode_function(code, entry_vaddr).tail_jumps
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x40_1000;

    #[test]
    fn two_returns_in_branches() {
        let code = [
            0x48, 0x85, 0xff, // test rdi, rdi
            0x74, 0x03, // je +3 (to 8, inside)
            0x31, 0xc0, // xor eax, eax
            0xc3, // ret            @7
            0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1
            0xc3, // ret            @13
        ];
        let flow = decode_function(&code, BASE);
        assert_eq!(flow.returns, vec![BASE + 7, BASE + 13]);
        assert!(flow.tail_jumps.is_empty());
        assert_eq!(flow.stopped_at, None);
    }

    #[test]
    fn ret_with_immediate_and_far_returns() {
        let code = [
            0x90, // nop
            0xc2, 0x08, 0x00, // ret 8        @1
            0xcb, // retf           @4
            0xca, 0x04, 0x00, // retf 4       @5
            0x48, 0xcb, // retfq          @8
        ];
        assert_eq!(
            return_sites(&code, BASE),
            vec![BASE + 1, BASE + 4, BASE + 5, BASE + 8]
        );
    }

    #[test]
    fn c3_inside_immediates_is_not_a_return() {
        let code = [
            0xb8, 0xc3, 0xc3, 0xc3, 0xc3, // mov eax, 0xc3c3c3c3
            0x48, 0x83, 0xc0, 0xc3, // add rax, -0x3d
            0x48, 0x8d, 0x80, 0xc3, 0x00, 0x00, 0x00, // lea rax, [rax+0xc3]
            0x66, 0xba, 0xc2, 0xc3, // mov dx, 0xc3c2
            0xc3, // ret @20
        ];
        assert_eq!(return_sites(&code, BASE), vec![BASE + 20]);
    }

    #[test]
    fn undecodable_tail_stops_cleanly() {
        // `06` (push es) is invalid in 64-bit mode; the c3 after it is not reached.
        let code = [0x31, 0xc0, 0xc3, 0x06, 0xc3];
        let flow = decode_function(&code, BASE);
        assert_eq!(flow.returns, vec![BASE + 2]);
        assert_eq!(flow.stopped_at, Some(BASE + 3));

        // A truncated instruction at the end (mov eax, imm32 missing three bytes).
        let code = [0xc3, 0xb8, 0x01];
        let flow = decode_function(&code, BASE);
        assert_eq!(flow.returns, vec![BASE]);
        assert_eq!(flow.stopped_at, Some(BASE + 1));

        assert!(return_sites(&[], BASE).is_empty());
        assert!(return_sites(&[0x0f], BASE).is_empty());
    }

    #[test]
    fn tail_jumps_are_separate() {
        let code = [
            0xeb, 0x00, // jmp +0 (inside)
            0x74, 0x01, // je +1 (inside, to 5)
            0xc3, // ret @4
            0xe9, 0x00, 0x10, 0x00, 0x00, // jmp +0x1000 (outside) @5
            0x0f, 0x84, 0xe0, 0xff, 0xff, 0xff, // je -0x20 (outside) @10
            0xff, 0xe0, // jmp rax (indirect: not listed)
        ];
        let flow = decode_function(&code, BASE);
        assert_eq!(flow.returns, vec![BASE + 4]);
        assert_eq!(
            flow.tail_jumps,
            vec![
                (BASE + 5, BASE + 10 + 0x1000),
                (BASE + 10, BASE + 16 - 0x20)
            ]
        );
        assert_eq!(tail_jumps(&code, BASE), flow.tail_jumps);
    }

    #[test]
    fn candidates_and_names() {
        for op in LockFn::ALL {
            assert!(!op.candidates().is_empty());
            assert_eq!(op.name(), op.candidates()[0]);
        }
    }

    #[test]
    fn rejects_non_elf() {
        assert!(matches!(
            find_lock_probe_sites(b"not an elf file at all"),
            Err(GoProbeError::Object(_))
        ));
    }

    #[test]
    fn map_range_bounds() {
        let data = [0u8; 64];
        let segs = [Segment {
            address: 0x1000,
            file_offset: 16,
            file_size: 32,
        }];
        assert_eq!(
            map_range(&data, &segs, 0x1004, 0x1008).map(|r| r.0),
            Some(20)
        );
        assert!(map_range(&data, &segs, 0x1000, 0x1021).is_none());
        assert!(map_range(&data, &segs, 0x0fff, 0x1001).is_none());
        assert!(map_range(&data, &segs, 0x1008, 0x1004).is_none());
    }
}
