//! Names of Go locks that live inside heap objects: `main.Store.mu` for the `mu` field of
//! a `*main.Store`, from the binary's DWARF. A global lock is named from its address
//! ([`super::GoDwarfNames::field_path`]); a heap lock's address says nothing, but the code
//! that locks it does: `s.mu.Lock()` compiles to `lock cmpxchg [reg+0x18]` (inlined) or
//! `call sync.(*RWMutex).Lock` with `AX = reg+0x18`, where `reg` holds `s`.
//!
//! For each place the address of a lock is in a register (the base register of a planned
//! atomic site, `AX` at a call of a lock method) the register is traced backwards through
//! the function's machine code: `mov reg, other` continues with `other`, `lea reg,
//! [other+d]` adds `d` to the offset, anything else writing it ends the trace. At each
//! instruction on the way, DWARF location lists say which variables sit in that
//! register there; a variable that points to a struct with a lock exactly at the offset
//! names the lock by the struct's type and field path. The trace stops at a branch target
//! (another path could bring another value) and at calls; nothing is guessed: a lock with
//! no such evidence keeps its address.
//!
//! The result maps a code address to a name: the probe address of an atomic site, or the
//! return address of a call to a lock method (what a stack or an entry site's `caller`
//! shows). The tracer looks up the sites an acquisition passes through.
use std::sync::Arc;

use iced_x86::{
    FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, OpKind, Register,
};
use object::{Object as _, ObjectSection as _};
use rustc_hash::{FxHashMap, FxHashSet};
use tracer_common::GoOp;

use super::{
    GoDwarfNames, GoSitePlan, Segment,
    atomic_sites::{Decoded, reg_slot},
    elf_segments, is_lock_internal, map_range,
};
use crate::go::{
    lock_model::RW_READER_COUNT_OFFSET,
    sym::{GoFunc, GoTable},
};

/// Lock methods whose receiver (in `AX` at the call, Go's register ABI) is the lock.
const LOCK_METHODS: [&str; 10] = [
    "sync.(*Mutex).Lock",
    "sync.(*Mutex).TryLock",
    "sync.(*Mutex).lockSlow",
    "internal/sync.(*Mutex).Lock",
    "internal/sync.(*Mutex).TryLock",
    "internal/sync.(*Mutex).lockSlow",
    "sync.(*RWMutex).Lock",
    "sync.(*RWMutex).RLock",
    "sync.(*RWMutex).TryLock",
    "sync.(*RWMutex).TryRLock",
];

/// Most instructions a trace walks back.
const MAX_TRACE: usize = 64;

/// Lock names by code address (file virtual addresses of the executable).
#[derive(Debug, Clone, Default)]
pub struct GoLockOwners {
    by_pc: FxHashMap<u64, Arc<str>>,
}

impl GoLockOwners {
    /// The name of the lock whose address is in play at `vaddr`: a planned site's probe
    /// address, or the return address of a call to a lock method.
    #[must_use]
    pub fn name_at(&self, vaddr: u64) -> Option<&Arc<str>> {
        self.by_pc.get(&vaddr)
    }

    /// Every (code address, lock name), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.by_pc.iter().map(|(&pc, name)| (pc, &**name))
    }

    /// How many code addresses name a lock.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_pc.len()
    }

    /// Whether no code address names a lock.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_pc.is_empty()
    }
}

/// Where a trace starts: before the instruction at `at`, `reg + offset` is the lock.
#[derive(Debug, Clone, Copy)]
struct Start {
    at: u64,
    reg: Register,
    offset: i64,
    /// For a call: the lock method it must call (checked once decoded).
    calls: Option<u64>,
    /// What the name is filed under.
    key: u64,
}

/// Reads the DWARF of `elf` (a Go binary with pclntab `table` and site plan `plan`): the
/// names of globals ([`GoDwarfNames`]) and of locks in heap objects at each site and
/// lock-method call ([`GoLockOwners`]). `None` and no owners when the binary has no DWARF.
#[must_use]
pub fn go_lock_names(
    elf: &[u8],
    table: &GoTable,
    plan: &GoSitePlan,
) -> (Option<GoDwarfNames>, GoLockOwners) {
    let Ok(file) = object::File::parse(elf) else {
        return (None, GoLockOwners::default());
    };
    if file.section_by_name(".debug_info").is_none() {
        return (None, GoLockOwners::default());
    }
    let Ok(segments) = elf_segments(elf) else {
        return (GoDwarfNames::new(elf), GoLockOwners::default());
    };
    // Starts by function (entry address), each function with its pclntab entry; the
    // lock implementation's own functions are skipped (their receiver is the lock).
    let mut starts: FxHashMap<u64, (GoFunc, Vec<Start>)> = FxHashMap::default();
    let mut add = |start: Start| {
        let Some(func) = table.func_for_pc(start.at) else {
            return;
        };
        if is_lock_internal(&func.name) {
            return;
        }
        starts
            .entry(func.entry)
            .or_insert_with(|| (func, Vec::new()))
            .1
            .push(start);
    };
    for site in &plan.sites {
        let Some(reg) = slot_register(site.base) else {
            continue;
        };
        let lock_offset = match site.op {
            GoOp::RLockFast | GoOp::RUnlock => i64::try_from(RW_READER_COUNT_OFFSET).ok(),
            _ => Some(0),
        };
        let Some(offset) = lock_offset.map(|o| i64::from(site.displacement) - o) else {
            continue;
        };
        add(Start {
            at: site.vaddr,
            reg,
            offset,
            calls: None,
            key: site.vaddr,
        });
    }
    let methods: FxHashSet<u64> = table
        .funcs_named(&LOCK_METHODS)
        .iter()
        .map(|f| f.entry)
        .collect();
    for (at, target) in direct_calls_to(&file, &methods) {
        add(Start {
            at,
            reg: Register::RAX,
            offset: 0,
            calls: Some(target),
            // The 5-byte `call rel32` the scan matched.
            key: at + 5,
        });
    }
    let functions = starts.keys().copied().collect();
    let Some(dwarf) = GoDwarfNames::with_functions(elf, &functions) else {
        return (None, GoLockOwners::default());
    };
    let mut owners = GoLockOwners::default();
    for (func, starts) in starts.values() {
        name_in_function(elf, &segments, &dwarf, func, starts, &mut owners);
    }
    (Some(dwarf), owners)
}

/// Traces every start in `func` and files the names found.
fn name_in_function(
    elf: &[u8],
    segments: &[Segment],
    dwarf: &GoDwarfNames,
    func: &GoFunc,
    starts: &[Start],
    owners: &mut GoLockOwners,
) {
    let Some((_, code)) = map_range(elf, segments, func.entry, func.end) else {
        return;
    };
    let code = Decoded::new(code, func.entry);
    for start in starts {
        let Some(i) = code.index_of(start.at) else {
            continue;
        };
        if let Some(target) = start.calls {
            let instr = &code.instrs[i];
            if instr.mnemonic() != Mnemonic::Call || instr.near_branch_target() != target {
                continue;
            }
        }
        let name = code
            .trace_back(i, start.reg, start.offset)
            .into_iter()
            .find_map(|(pc, reg, offset)| {
                dwarf.lock_member(func.entry, pc, dwarf_register(reg)?, offset)
            });
        if let Some(name) = name {
            owners.by_pc.insert(start.key, Arc::from(name));
        }
    }
}

/// Addresses of the `call rel32` instructions in `.text` whose target is in `targets`
/// (a byte scan: each hit is checked against the decoded function before use).
fn direct_calls_to(file: &object::File<'_>, targets: &FxHashSet<u64>) -> Vec<(u64, u64)> {
    let mut calls = Vec::new();
    if targets.is_empty() {
        return calls;
    }
    let Some(text) = file.section_by_name(".text") else {
        return calls;
    };
    let Ok(data) = text.data() else {
        return calls;
    };
    let base = text.address();
    for (i, window) in data.windows(5).enumerate() {
        let [0xe8, a, b, c, d] = *window else {
            continue;
        };
        let rel = i64::from(i32::from_le_bytes([a, b, c, d]));
        let at = base + i as u64;
        let target = (at + 5).wrapping_add_signed(rel);
        if targets.contains(&target) {
            calls.push((at, target));
        }
    }
    calls
}

/// Tracing registers back through a decoded function.
impl Decoded<'_> {
    fn index_of(&self, ip: u64) -> Option<usize> {
        self.instrs.binary_search_by_key(&ip, Instruction::ip).ok()
    }

    /// Where `reg + offset` (its value before `instrs[start]`) was, going backwards: each
    /// `(pc, register, offset)` means that before the instruction at `pc` that register
    /// plus that offset held the same value. Stops at the first instruction that writes
    /// the register other than a register `mov` or a `lea` from a register, at calls and
    /// jumps, and at branch targets (where another path joins).
    fn trace_back(&self, start: usize, reg: Register, offset: i64) -> Vec<(u64, Register, i64)> {
        let mut points = Vec::new();
        let Some(first) = self.instrs.get(start) else {
            return points;
        };
        let (mut reg, mut offset) = (reg, offset);
        points.push((first.ip(), reg, offset));
        let mut info = InstructionInfoFactory::new();
        for j in (start.saturating_sub(MAX_TRACE)..start).rev() {
            let (instr, next) = (&self.instrs[j], &self.instrs[j + 1]);
            if self.targets.contains(&next.ip()) {
                break;
            }
            if !matches!(
                instr.flow_control(),
                FlowControl::Next | FlowControl::ConditionalBranch
            ) {
                break;
            }
            let writes = info.info(instr).used_registers().iter().any(|used| {
                used.register().full_register() == reg
                    && matches!(
                        used.access(),
                        OpAccess::Write
                            | OpAccess::CondWrite
                            | OpAccess::ReadWrite
                            | OpAccess::ReadCondWrite
                    )
            });
            if writes {
                let to_reg = instr.op0_kind() == OpKind::Register
                    && instr.op0_register() == reg
                    && reg.is_gpr64();
                if to_reg
                    && instr.mnemonic() == Mnemonic::Mov
                    && instr.op1_kind() == OpKind::Register
                    && instr.op1_register().is_gpr64()
                {
                    reg = instr.op1_register();
                } else if to_reg
                    && instr.mnemonic() == Mnemonic::Lea
                    && instr.memory_index() == Register::None
                    && instr.memory_base().is_gpr64()
                {
                    #[expect(
                        clippy::cast_possible_wrap,
                        reason = "iced sign-extends the displacement to 64 bits"
                    )]
                    let disp = instr.memory_displacement64() as i64;
                    reg = instr.memory_base();
                    let Some(sum) = offset.checked_add(disp) else {
                        break;
                    };
                    offset = sum;
                } else if let Some(delta) = to_reg.then(|| immediate_delta(instr)).flatten() {
                    // `add reg, imm` (Go 1.25's `s.rw.Lock()` computes AX = s + 0x20 so).
                    let Some(sum) = offset.checked_add(delta) else {
                        break;
                    };
                    offset = sum;
                } else {
                    break;
                }
            }
            points.push((instr.ip(), reg, offset));
        }
        points
    }
}

/// What `add reg, imm` / `sub reg, imm` adds to the register.
fn immediate_delta(instr: &Instruction) -> Option<i64> {
    if !matches!(
        instr.op1_kind(),
        OpKind::Immediate8to64 | OpKind::Immediate32to64
    ) {
        return None;
    }
    #[expect(
        clippy::cast_possible_wrap,
        reason = "iced sign-extends the immediate to 64 bits"
    )]
    let imm = instr.immediate(1) as i64;
    match instr.mnemonic() {
        Mnemonic::Add => Some(imm),
        Mnemonic::Sub => imm.checked_neg(),
        _ => None,
    }
}

/// The register in `pt_regs` slot `slot`, `None` for [`pt_reg::NONE`], [`pt_reg::RIP`]
/// and anything else that is not a general register.
fn slot_register(slot: u8) -> Option<Register> {
    GPRS.into_iter().find(|&r| reg_slot(r) == Some(slot))
}

const GPRS: [Register; 16] = [
    Register::RAX,
    Register::RDX,
    Register::RCX,
    Register::RBX,
    Register::RSI,
    Register::RDI,
    Register::RBP,
    Register::RSP,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

/// The DWARF (System V x86-64 ABI) number of a general register: [`GPRS`] is in that
/// order.
fn dwarf_register(reg: Register) -> Option<u16> {
    GPRS.iter()
        .position(|&r| r == reg)
        .and_then(|i| u16::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use tracer_common::pt_reg;

    use super::*;

    const BASE: u64 = 0x40_1000;

    fn code(bytes: &[u8]) -> Decoded<'_> {
        Decoded::new(bytes, BASE)
    }

    #[test]
    fn dwarf_numbers_follow_the_abi() {
        assert_eq!(dwarf_register(Register::RAX), Some(0));
        assert_eq!(dwarf_register(Register::RDX), Some(1));
        assert_eq!(dwarf_register(Register::RSI), Some(4));
        assert_eq!(dwarf_register(Register::R8), Some(8));
        assert_eq!(dwarf_register(Register::R15), Some(15));
        assert_eq!(dwarf_register(Register::EAX), None);
        assert_eq!(slot_register(pt_reg::RDX), Some(Register::RDX));
        assert_eq!(slot_register(pt_reg::R14), Some(Register::R14));
        assert_eq!(slot_register(pt_reg::NONE), None);
        assert_eq!(slot_register(pt_reg::RIP), None);
    }

    /// Go 1.19's `s.mu.Lock()` with `s` in AX: `mov rdx, rax; xor eax, eax; mov esi, 1;
    /// lock cmpxchg [rdx+0x18], esi`. The trace from the atomic goes through the `mov` to
    /// AX (where DWARF says `s` is), keeping the offset; `xor eax, eax` is before AX
    /// matters and does not stop it because the trace follows RDX there.
    #[test]
    fn follows_register_moves() {
        let c = code(&[
            0x48, 0x89, 0xc2, // mov rdx, rax        @0
            0x31, 0xc0, // xor eax, eax              @3
            0xbe, 0x01, 0x00, 0x00, 0x00, // mov esi, 1 @5
            0xf0, 0x0f, 0xb1, 0x72, 0x18, // lock cmpxchg [rdx+0x18], esi @10
        ]);
        let points = c.trace_back(3, Register::RDX, 0x18);
        assert_eq!(
            points,
            vec![
                (BASE + 10, Register::RDX, 0x18),
                (BASE + 5, Register::RDX, 0x18),
                (BASE + 3, Register::RDX, 0x18),
                (BASE, Register::RAX, 0x18),
            ]
        );
    }

    /// `lea rax, [rdx+0x28]; call ...`: the receiver in AX is `rdx + 0x28`.
    #[test]
    fn lea_adds_its_displacement() {
        let c = code(&[
            0x48, 0x8d, 0x42, 0x28, // lea rax, [rdx+0x28]  @0
            0xe8, 0x00, 0x00, 0x00, 0x00, // call next       @4
        ]);
        assert_eq!(
            c.trace_back(1, Register::RAX, 0),
            vec![(BASE + 4, Register::RAX, 0), (BASE, Register::RDX, 0x28)]
        );
    }

    /// A load into the register, a call before it and a branch target in between all end
    /// the trace (the value could be anything, or come from another path).
    #[test]
    fn stops_where_the_value_is_unknown() {
        // mov rdx, [rsp+8]; mov esi, 1 → the load ends it.
        let load = code(&[
            0x48, 0x8b, 0x54, 0x24, 0x08, // mov rdx, [rsp+8] @0
            0xbe, 0x01, 0x00, 0x00, 0x00, // mov esi, 1      @5
            0x90, // nop                                     @10
        ]);
        assert_eq!(
            load.trace_back(2, Register::RDX, 0),
            vec![(BASE + 10, Register::RDX, 0), (BASE + 5, Register::RDX, 0)]
        );
        // call; nop; nop → stops at the call.
        let call = code(&[
            0xe8, 0x00, 0x00, 0x00, 0x00, // call @5        @0
            0x90, // nop                                     @5
            0x90, // nop                                     @6
        ]);
        assert_eq!(
            call.trace_back(2, Register::RAX, 0),
            vec![(BASE + 6, Register::RAX, 0), (BASE + 5, Register::RAX, 0)]
        );
        // jne @4 (a branch target); mov rdx, rax; nop@4 ... the trace stops at the target.
        let joined = code(&[
            0x75, 0x03, // jne @5                             @0
            0x48, 0x89, 0xc2, // mov rdx, rax                 @2
            0x90, // nop (branch target)                      @5
            0x90, // nop                                      @6
        ]);
        assert_eq!(
            joined.trace_back(3, Register::RDX, 8),
            vec![(BASE + 6, Register::RDX, 8), (BASE + 5, Register::RDX, 8)]
        );
    }

    /// `add rax, 0x20; call ...`: the receiver is the old AX plus 0x20; `sub` subtracts.
    #[test]
    fn add_and_sub_immediates_move_the_offset() {
        let c = code(&[
            0x48, 0x83, 0xc0, 0x20, // add rax, 0x20        @0
            0x48, 0x83, 0xe8, 0x08, // sub rax, 8           @4
            0x90, // nop                                    @8
        ]);
        assert_eq!(
            c.trace_back(2, Register::RAX, 0),
            vec![
                (BASE + 8, Register::RAX, 0),
                (BASE + 4, Register::RAX, -8),
                (BASE, Register::RAX, 0x18),
            ]
        );
    }

    /// A 32-bit write to the register (zero-extending) ends the trace like any other.
    #[test]
    fn partial_writes_end_the_trace() {
        let c = code(&[
            0x31, 0xd2, // xor edx, edx                       @0
            0x90, // nop                                      @2
        ]);
        assert_eq!(
            c.trace_back(1, Register::RDX, 0),
            vec![(BASE + 2, Register::RDX, 0)]
        );
    }
}
