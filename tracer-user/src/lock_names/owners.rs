//! The `Type.field` names of locks in heap objects by the return address of the calls
//! that take or wait for them, shared by Rust ([`LockOwners::rust`], `super::rust`) and
//! C/C++ ([`LockOwners::c`], `super::c`) programs: each language says which calls to
//! look at; the naming is the same.
//!
//! At each call the lock argument (`rdi`) is traced back through the calling function's
//! machine code to a variable that DWARF says points to a struct (`store: &app::Store`
//! in `rbx`, `struct account *a` in `rbp`), or to the load of such a variable from its
//! stack slot (unoptimized C: `mov rax, [rbp-0x18]`, the slot placed against the CFA
//! from `.eh_frame`): the struct's field whose lock is at that offset names it. A call
//! in a cold block reached only by jumps is traced along each of them (see
//! [`Joins::FollowPaths`]) and a name holds when every path gives the same. Nothing is
//! guessed: a call whose argument no variable explains on some path names nothing.
use std::{borrow::Cow, sync::Arc};

use addr2line::gimli::{self, UnwindSection as _};
use iced_x86::{Mnemonic, OpKind, Register};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};
use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    DwarfNames, LockFlavor,
    code::{CallSite, Decoded, Joins, Point, SYSV_CALLEE_SAVED, dwarf_register},
};

/// Most call sites traced (a bound on hostile or huge binaries).
pub(crate) const MAX_CALLS: usize = 1 << 16;

/// Lock names by the return address (a file virtual address of the executable) of the
/// call that takes or waits for the lock; a thread's stack shows it.
#[derive(Debug, Clone, Default)]
pub struct LockOwners {
    by_pc: FxHashMap<u64, Arc<str>>,
}

impl LockOwners {
    /// Names the locks of `calls` (call sites in `elf`'s code, see the
    /// [module docs](self)), reading the DWARF as `flavor`.
    pub(crate) fn from_calls(
        elf: &[u8],
        file: &object::File<'_>,
        mut calls: Vec<CallSite>,
        flavor: LockFlavor,
    ) -> Self {
        let mut owners = Self::default();
        calls.truncate(MAX_CALLS);
        if calls.is_empty() {
            return owners;
        }
        let functions = function_ranges(file);
        let mut by_function: FxHashMap<(u64, u64), Vec<CallSite>> = FxHashMap::default();
        for call in calls {
            let i = functions.partition_point(|&(start, _)| start <= call.at);
            if let Some(&(start, end)) = i.checked_sub(1).and_then(|i| functions.get(i))
                && call.at < end
            {
                by_function.entry((start, end)).or_default().push(call);
            }
        }
        let entries: FxHashSet<u64> = by_function.keys().map(|&(start, _)| start).collect();
        let entries = entries.into_iter().collect();
        let Some(dwarf) = DwarfNames::with_functions(elf, &entries, flavor) else {
            return owners;
        };
        let mut frames = FrameCfa::new(file);
        // C code joins paths anywhere (`?:`, `if` arms) before a lock call; Rust's calls
        // are only reached through jumps into their cold blocks.
        let joins = match flavor {
            LockFlavor::C => Joins::AllPaths,
            LockFlavor::Go | LockFlavor::Rust => Joins::FollowPaths,
        };
        for (&(start, end), calls) in &by_function {
            let Some(code) = code_of(file, start, end) else {
                continue;
            };
            let mut code = Decoded::new(&code, start);
            if flavor == LockFlavor::C {
                code = code.keeping_across_calls(&SYSV_CALLEE_SAVED);
            }
            for call in calls {
                let Some(i) = code.index_of(call.at) else {
                    continue;
                };
                if !call.is(&code.instrs[i]) {
                    continue;
                }
                let paths = code.trace_paths(i, Register::RDI, 0, joins);
                let mut names = paths
                    .iter()
                    .map(|points| name_of_path(&dwarf, &code, frames.as_mut(), points));
                let first = names.next().flatten();
                let name = first.filter(|first| names.all(|n| n.as_ref() == Some(first)));
                if let Some(name) = name {
                    owners.by_pc.insert(call.at + call.len, Arc::from(name));
                }
            }
        }
        owners
    }

    /// The name of the lock a call returning to `vaddr` takes or waits for.
    #[must_use]
    pub fn name_at(&self, vaddr: u64) -> Option<&Arc<str>> {
        self.by_pc.get(&vaddr)
    }

    /// Every (return address, lock name), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.by_pc.iter().map(|(&pc, name)| (pc, &**name))
    }

    /// How many return addresses name a lock.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_pc.len()
    }

    /// Whether no return address names a lock.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_pc.is_empty()
    }
}

/// The lock a traced path leads to: a point where a pointer variable is in the
/// register, else the stack slot the path's first value was loaded from.
fn name_of_path(
    dwarf: &DwarfNames,
    code: &Decoded<'_>,
    frames: Option<&mut FrameCfa<'_>>,
    points: &[Point],
) -> Option<String> {
    let entry = code.entry;
    if let Some(name) = points
        .iter()
        .find_map(|&(pc, reg, offset)| dwarf.lock_member(entry, pc, dwarf_register(reg)?, offset))
    {
        return Some(name);
    }
    let &(pc, reg, offset) = points.last()?;
    let (load_pc, base, disp) = frame_load(code, pc, reg)?;
    let (cfa_reg, cfa_offset) = frames?.cfa_at(load_pc)?;
    if cfa_reg != base {
        return None;
    }
    // `[base + disp]` with CFA = base + cfa_offset.
    let slot = disp.checked_sub(cfa_offset)?;
    dwarf.lock_member_in_frame(entry, load_pc, slot, offset)
}

/// The instruction just before `pc`, when it is `mov reg, qword [rbp/rsp + disp]` and
/// nothing else leads to `pc`: its address, base register and displacement.
fn frame_load(code: &Decoded<'_>, pc: u64, reg: Register) -> Option<(u64, Register, i64)> {
    if code.targets.contains(&pc) {
        return None;
    }
    let load = code.instrs.get(code.index_of(pc)?.checked_sub(1)?)?;
    let base = load.memory_base();
    let fits = load.mnemonic() == Mnemonic::Mov
        && load.op0_kind() == OpKind::Register
        && load.op0_register() == reg
        && reg.is_gpr64()
        && load.op1_kind() == OpKind::Memory
        && load.memory_index() == Register::None
        && matches!(base, Register::RBP | Register::RSP);
    #[expect(
        clippy::cast_possible_wrap,
        reason = "iced sign-extends the displacement to 64 bits"
    )]
    let disp = load.memory_displacement64() as i64;
    fits.then(|| (load.ip(), base, disp))
}

/// The CFA rules of the executable's `.eh_frame`, looked up by address.
struct FrameCfa<'a> {
    eh_frame: gimli::EhFrame<gimli::EndianSlice<'a, gimli::LittleEndian>>,
    bases: gimli::BaseAddresses,
    context: Box<gimli::UnwindContext<usize>>,
}

impl<'a> FrameCfa<'a> {
    fn new(file: &object::File<'a>) -> Option<Self> {
        let section = file.section_by_name(".eh_frame")?;
        let data = section.data().ok()?;
        let mut bases = gimli::BaseAddresses::default().set_eh_frame(section.address());
        if let Some(text) = file.section_by_name(".text") {
            bases = bases.set_text(text.address());
        }
        Some(Self {
            eh_frame: gimli::EhFrame::new(data, gimli::LittleEndian),
            bases,
            context: Box::new(gimli::UnwindContext::new()),
        })
    }

    /// The CFA at `pc` as `register + offset`, for `rbp` and `rsp` only.
    fn cfa_at(&mut self, pc: u64) -> Option<(Register, i64)> {
        let row = self
            .eh_frame
            .unwind_info_for_address(
                &self.bases,
                &mut self.context,
                pc,
                gimli::EhFrame::cie_from_offset,
            )
            .ok()?;
        match *row.cfa() {
            gimli::CfaRule::RegisterAndOffset { register, offset } => {
                let reg = match register {
                    gimli::X86_64::RBP => Register::RBP,
                    gimli::X86_64::RSP => Register::RSP,
                    _ => return None,
                };
                Some((reg, offset))
            }
            gimli::CfaRule::Expression(_) => None,
        }
    }
}

/// `[start, end)` of every function with a size in the symbol table, by start.
pub(crate) fn function_ranges(file: &object::File<'_>) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = file
        .symbols()
        .filter(|symbol| {
            symbol.kind() == SymbolKind::Text && symbol.address() != 0 && symbol.size() != 0
        })
        .filter_map(|symbol| {
            Some((
                symbol.address(),
                symbol.address().checked_add(symbol.size())?,
            ))
        })
        .collect();
    ranges.sort_unstable();
    ranges.dedup_by_key(|&mut (start, _)| start);
    ranges
}

/// The bytes of `[start, end)` from the section holding them.
fn code_of<'a>(file: &object::File<'a>, start: u64, end: u64) -> Option<Cow<'a, [u8]>> {
    let section = file
        .sections()
        .find(|s| s.address() <= start && end <= s.address().saturating_add(s.size()))?;
    let data = section.data_range(start, end - start).ok()??;
    Some(Cow::Borrowed(data))
}
