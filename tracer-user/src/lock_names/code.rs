//! Machine code as the lock namers read it: a function decoded with iced-x86, registers
//! traced backwards from an instruction to where their value came from, and the call
//! instructions of `.text` that reach given functions (directly, or through a GOT slot).
use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess,
    OpKind, Register,
};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
use rustc_hash::{FxHashMap, FxHashSet};

/// Most instructions a trace walks back.
const MAX_TRACE: usize = 64;
/// Most paths a trace follows through joins ([`Joins::FollowPaths`]).
pub(crate) const MAX_PATHS: usize = 8;

/// A point of a register trace: before the instruction at `pc`, the register plus the
/// offset held the value traced.
pub(crate) type Point = (u64, Register, i64);

/// One function decoded from start to end (or to its first undecodable byte).
pub(crate) struct Decoded<'a> {
    pub(crate) code: &'a [u8],
    pub(crate) entry: u64,
    pub(crate) instrs: Vec<Instruction>,
    /// Targets of every direct near branch, jump or call in the function.
    pub(crate) targets: FxHashSet<u64>,
    /// Address of the first byte that did not decode, if any.
    pub(crate) stopped_at: Option<u64>,
    /// Registers a call leaves as they were (the callee-saved registers of the System V
    /// ABI, in C code): a trace of one goes on past a call. Empty by default (Go's
    /// calling convention saves none).
    kept_across_calls: &'static [Register],
}

/// The registers a System V x86-64 function must give back unchanged (`rsp` aside).
pub(crate) const SYSV_CALLEE_SAVED: [Register; 6] = [
    Register::RBX,
    Register::RBP,
    Register::R12,
    Register::R13,
    Register::R14,
    Register::R15,
];

/// What a register trace does at a branch target, where another path may join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Joins {
    /// Stop: the value could come from another path.
    Stop,
    /// Go on before each direct jump of the function that leads there, one path each,
    /// when the instruction before cannot fall through into it (a `ret`, `jmp` or
    /// `ud2`): a cold block moved out of line (Rust's contended lock calls) is reached
    /// only by its jumps, and a name holds when every path gives it.
    FollowPaths,
    /// As [`Joins::FollowPaths`], and where the code before falls through into the
    /// target too, one more path through it (C code joining the two arms of a `?:` before
    /// a lock call).
    AllPaths,
}

impl<'a> Decoded<'a> {
    pub(crate) fn new(code: &'a [u8], entry: u64) -> Self {
        let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
        let mut this = Self {
            code,
            entry,
            instrs: Vec::new(),
            targets: FxHashSet::default(),
            stopped_at: None,
            kept_across_calls: &[],
        };
        let mut instr = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut instr);
            if instr.is_invalid() {
                this.stopped_at = Some(instr.ip());
                break;
            }
            if matches!(
                instr.op0_kind(),
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
            ) {
                this.targets.insert(instr.near_branch_target());
            }
            this.instrs.push(instr);
        }
        this
    }

    /// Lets traces of `registers` go on past calls (see [`SYSV_CALLEE_SAVED`]).
    pub(crate) fn keeping_across_calls(mut self, registers: &'static [Register]) -> Self {
        self.kept_across_calls = registers;
        self
    }

    pub(crate) fn index_of(&self, ip: u64) -> Option<usize> {
        self.instrs.binary_search_by_key(&ip, Instruction::ip).ok()
    }

    /// The indexes of the direct jumps (not calls) of the function to `ip`.
    fn jumps_to(&self, ip: u64) -> Vec<usize> {
        self.instrs
            .iter()
            .enumerate()
            .filter(|(_, instr)| {
                matches!(
                    instr.flow_control(),
                    FlowControl::ConditionalBranch | FlowControl::UnconditionalBranch
                ) && matches!(
                    instr.op0_kind(),
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
                ) && instr.near_branch_target() == ip
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Where `reg + offset` (its value before `instrs[start]`) was, going backwards: each
    /// `(pc, register, offset)` means that before the instruction at `pc` that register
    /// plus that offset held the same value. Stops at the first instruction that writes
    /// the register other than a register `mov`, a `lea` from a register or an
    /// `add`/`sub` of an immediate, at calls and jumps, and at branch targets (where
    /// another path joins).
    pub(crate) fn trace_back(&self, start: usize, reg: Register, offset: i64) -> Vec<Point> {
        self.trace_paths(start, reg, offset, Joins::Stop)
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// [`Decoded::trace_back`] along every way into `instrs[start]`: at a branch target
    /// that nothing falls through into (the code before it is a `ret`, `jmp` or `ud2`),
    /// with [`Joins::FollowPaths`], the trace goes on before each jump that leads there,
    /// one path per jump (at most [`MAX_PATHS`] in all; past that, the path stops at the
    /// target). Each path starts with the same points, up to where they part.
    pub(crate) fn trace_paths(
        &self,
        start: usize,
        reg: Register,
        offset: i64,
        joins: Joins,
    ) -> Vec<Vec<Point>> {
        let mut paths = Vec::new();
        if let Some(first) = self.instrs.get(start) {
            let points = vec![(first.ip(), reg, offset)];
            self.walk_back(start, (reg, offset), MAX_TRACE, joins, points, &mut paths);
        }
        paths
    }

    /// Continues `points` backwards from `instrs[here]` (where `reg + offset` is the
    /// value) for at most `steps` instructions, pushing the finished paths on `paths`.
    fn walk_back(
        &self,
        mut here: usize,
        (mut reg, mut offset): (Register, i64),
        steps: usize,
        joins: Joins,
        mut points: Vec<Point>,
        paths: &mut Vec<Vec<Point>>,
    ) {
        let mut info = InstructionInfoFactory::new();
        for step in 0..steps {
            let here_ip = self.instrs[here].ip();
            let mut jumped = None;
            if self.targets.contains(&here_ip) {
                let falls_through = here.checked_sub(1).is_some_and(|p| {
                    !matches!(
                        self.instrs[p].flow_control(),
                        FlowControl::Return
                            | FlowControl::UnconditionalBranch
                            | FlowControl::IndirectBranch
                            | FlowControl::Exception
                    )
                });
                let follow = match joins {
                    Joins::Stop => false,
                    Joins::FollowPaths => !falls_through,
                    Joins::AllPaths => true,
                };
                if !follow {
                    break;
                }
                let jumps = self.jumps_to(here_ip);
                // The jumps to follow on other paths; this one goes on before the first
                // jump, or through the fall-through.
                let others = if falls_through {
                    &jumps[..]
                } else {
                    let Some((&first, others)) = jumps.split_first() else {
                        break;
                    };
                    jumped = Some(first);
                    others
                };
                // Every path counts: one that cannot be followed ends here.
                if paths.len() + jumps.len() + usize::from(falls_through) > MAX_PATHS {
                    break;
                }
                for &jump in others {
                    let mut branch = points.clone();
                    match self.step_back(&mut info, jump, reg, offset) {
                        Some((r, o)) => {
                            branch.push((self.instrs[jump].ip(), r, o));
                            let left = steps - step - 1;
                            self.walk_back(jump, (r, o), left, joins, branch, paths);
                        }
                        None => paths.push(branch),
                    }
                }
            }
            let prev = if let Some(jump) = jumped {
                jump
            } else {
                let Some(prev) = here.checked_sub(1) else {
                    break;
                };
                let kept = self.kept_across_calls.contains(&reg);
                match self.instrs[prev].flow_control() {
                    FlowControl::Next | FlowControl::ConditionalBranch => {}
                    FlowControl::Call | FlowControl::IndirectCall if kept => {
                        // The callee gives the register back as it was.
                        points.push((self.instrs[prev].ip(), reg, offset));
                        here = prev;
                        continue;
                    }
                    _ => break,
                }
                prev
            };
            let Some((r, o)) = self.step_back(&mut info, prev, reg, offset) else {
                break;
            };
            (reg, offset) = (r, o);
            points.push((self.instrs[prev].ip(), reg, offset));
            here = prev;
        }
        paths.push(points);
    }

    /// Where `reg + offset` after `instrs[i]` was before it: the same register when the
    /// instruction does not write it, the source of a register `mov`, the base of a
    /// `lea` (its displacement added), the register itself less an `add`/`sub`
    /// immediate; `None` for any other write.
    fn step_back(
        &self,
        info: &mut InstructionInfoFactory,
        i: usize,
        reg: Register,
        offset: i64,
    ) -> Option<(Register, i64)> {
        let instr = &self.instrs[i];
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
        if !writes {
            return Some((reg, offset));
        }
        let to_reg =
            instr.op0_kind() == OpKind::Register && instr.op0_register() == reg && reg.is_gpr64();
        if to_reg
            && instr.mnemonic() == Mnemonic::Mov
            && instr.op1_kind() == OpKind::Register
            && instr.op1_register().is_gpr64()
        {
            return Some((instr.op1_register(), offset));
        }
        if to_reg
            && instr.mnemonic() == Mnemonic::Lea
            && instr.memory_index() == Register::None
            && instr.memory_base().is_gpr64()
        {
            #[expect(
                clippy::cast_possible_wrap,
                reason = "iced sign-extends the displacement to 64 bits"
            )]
            let disp = instr.memory_displacement64() as i64;
            return Some((instr.memory_base(), offset.checked_add(disp)?));
        }
        // `add reg, imm` (Go 1.25's `s.rw.Lock()` computes AX = s + 0x20 so).
        let delta = to_reg.then(|| immediate_delta(instr)).flatten()?;
        Some((reg, offset.checked_add(delta)?))
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

/// The general registers in DWARF (System V x86-64 ABI) number order.
pub(crate) const GPRS: [Register; 16] = [
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
pub(crate) fn dwarf_register(reg: Register) -> Option<u16> {
    GPRS.iter()
        .position(|&r| r == reg)
        .and_then(|i| u16::try_from(i).ok())
}

/// A call instruction of `.text` to one of the functions asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallSite {
    /// Address of the call instruction.
    pub at: u64,
    /// Its length: `at + len` is the return address a stack shows.
    pub len: u64,
    /// The function called.
    pub target: u64,
    /// The GOT slot it calls through (`call [rip+disp32]`), `None` for `call rel32`.
    pub slot: Option<u64>,
}

impl CallSite {
    /// Whether `instr` (decoded at `at`) is this call: the byte scan that found it may
    /// have matched inside another instruction.
    pub(crate) fn is(&self, instr: &Instruction) -> bool {
        if instr.ip() != self.at
            || instr.len() as u64 != self.len
            || instr.mnemonic() != Mnemonic::Call
        {
            return false;
        }
        match self.slot {
            None => {
                matches!(instr.op0_kind(), OpKind::NearBranch64)
                    && instr.near_branch_target() == self.target
            }
            Some(slot) => {
                instr.op0_kind() == OpKind::Memory
                    && instr.is_ip_rel_memory_operand()
                    && instr.ip_rel_memory_address() == slot
            }
        }
    }
}

/// The `call rel32` instructions of `.text` whose target is in `targets`, and (with
/// `through_slots`) the `call [rip+disp32]` ones through a GOT slot that holds one (a
/// position-independent Rust program calls `std`'s out-of-line functions so). A byte
/// scan: each hit is checked against the decoded function ([`CallSite::is`]) before use.
pub(crate) fn calls_to(
    file: &object::File<'_>,
    targets: &FxHashSet<u64>,
    through_slots: bool,
) -> Vec<CallSite> {
    let slots = if through_slots {
        slots_holding(file, targets)
    } else {
        FxHashMap::default()
    };
    calls_through(file, targets, &slots)
}

/// The `call rel32` instructions of `.text` whose target is in `targets`, and the `call
/// [rip+disp32]` ones through a slot of `slots` (slot → what it is taken for: the
/// function it holds, or the slot itself for an imported function). A byte scan, as
/// [`calls_to`].
pub(crate) fn calls_through(
    file: &object::File<'_>,
    targets: &FxHashSet<u64>,
    slots: &FxHashMap<u64, u64>,
) -> Vec<CallSite> {
    let mut calls = Vec::new();
    if targets.is_empty() && slots.is_empty() {
        return calls;
    }
    let Some(text) = file.section_by_name(".text") else {
        return calls;
    };
    let Ok(data) = text.data() else {
        return calls;
    };
    let base = text.address();
    for (i, &byte) in data.iter().enumerate() {
        let at = base + i as u64;
        let rel32 = |from: usize| {
            let bytes: [u8; 4] = data.get(from..from + 4)?.try_into().ok()?;
            Some(i64::from(i32::from_le_bytes(bytes)))
        };
        if byte == 0xe8
            && let Some(rel) = rel32(i + 1)
        {
            let target = (at + 5).wrapping_add_signed(rel);
            if targets.contains(&target) {
                calls.push(CallSite {
                    at,
                    len: 5,
                    target,
                    slot: None,
                });
            }
        }
        if byte == 0xff
            && data.get(i + 1) == Some(&0x15)
            && let Some(rel) = rel32(i + 2)
        {
            let slot = (at + 6).wrapping_add_signed(rel);
            if let Some(&target) = slots.get(&slot) {
                calls.push(CallSite {
                    at,
                    len: 6,
                    target,
                    slot: Some(slot),
                });
            }
        }
    }
    calls
}

/// GOT slots that the dynamic loader fills with one of `targets`: `R_X86_64_RELATIVE`
/// relocations whose addend is the target (a position-independent executable), or
/// `R_X86_64_GLOB_DAT` ones to a dynamic symbol defined at a target.
fn slots_holding(file: &object::File<'_>, targets: &FxHashSet<u64>) -> FxHashMap<u64, u64> {
    const R_X86_64_GLOB_DAT: u32 = 6;
    const R_X86_64_RELATIVE: u32 = 8;
    let mut slots = FxHashMap::default();
    let Some(relocations) = file.dynamic_relocations() else {
        return slots;
    };
    for (slot, relocation) in relocations {
        let object::RelocationFlags::Elf { r_type } = relocation.flags() else {
            continue;
        };
        let target = match r_type {
            R_X86_64_RELATIVE => u64::try_from(relocation.addend()).ok(),
            R_X86_64_GLOB_DAT => match relocation.target() {
                object::RelocationTarget::Symbol(index) => file
                    .dynamic_symbols()
                    .find(|symbol| symbol.index() == index)
                    .map(|symbol| symbol.address()),
                _ => None,
            },
            _ => None,
        };
        if let Some(target) = target.filter(|t| targets.contains(t)) {
            slots.insert(slot, target);
        }
    }
    slots
}

#[cfg(test)]
mod tests {
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

    /// A cold block after a `ret`: the trace goes on before each jump into it (`lea rbx,
    /// [rdi+0x20]` there), one path per jump; with a fall-through into it, or without
    /// being asked, it stops at the block.
    #[test]
    fn jumps_into_cold_blocks_are_followed_when_asked() {
        let cold = [
            0x48, 0x8d, 0x5f, 0x20, // lea rbx, [rdi+0x20]   @0
            0x75, 0x01, // jne @7                              @4
            0xc3, // ret                                       @6
            0x48, 0x89, 0xdf, // mov rdi, rbx                  @7
            0xff, 0x15, 0x00, 0x00, 0x00, 0x00, // call [rip]   @10
        ];
        let c = code(&cold);
        assert_eq!(
            c.trace_paths(4, Register::RDI, 0, Joins::FollowPaths),
            vec![vec![
                (BASE + 10, Register::RDI, 0),
                (BASE + 7, Register::RBX, 0),
                (BASE + 4, Register::RBX, 0),
                (BASE, Register::RDI, 0x20),
            ]]
        );
        let stopped = vec![(BASE + 10, Register::RDI, 0), (BASE + 7, Register::RBX, 0)];
        assert_eq!(c.trace_back(4, Register::RDI, 0), stopped);
        // A `nop` instead of the `ret` falls through into the block.
        let mut falls = cold;
        falls[6] = 0x90;
        let c = code(&falls);
        assert_eq!(
            c.trace_paths(4, Register::RDI, 0, Joins::FollowPaths),
            vec![stopped]
        );
        // Two jumps lead there, the second after `rbx` changed: two paths.
        let two = [
            0x48, 0x8d, 0x5f, 0x20, // lea rbx, [rdi+0x20]   @0
            0x74, 0x07, // je @13                              @4
            0x48, 0x83, 0xc3, 0x08, // add rbx, 8              @6
            0x75, 0x01, // jne @13                             @10
            0xc3, // ret                                       @12
            0x48, 0x89, 0xdf, // mov rdi, rbx                  @13
            0xff, 0x15, 0x00, 0x00, 0x00, 0x00, // call [rip]   @16
        ];
        let c = code(&two);
        let head = [(BASE + 16, Register::RDI, 0), (BASE + 13, Register::RBX, 0)];
        let mut by_second_jump = head.to_vec();
        by_second_jump.extend([
            (BASE + 10, Register::RBX, 0),
            (BASE + 6, Register::RBX, 8),
            (BASE + 4, Register::RBX, 8),
            (BASE, Register::RDI, 0x28),
        ]);
        let mut by_first_jump = head.to_vec();
        by_first_jump.extend([(BASE + 4, Register::RBX, 0), (BASE, Register::RDI, 0x20)]);
        assert_eq!(
            c.trace_paths(6, Register::RDI, 0, Joins::FollowPaths),
            vec![by_second_jump, by_first_jump]
        );
    }

    /// `lea r13, [rbx+0x10]; call …; mov rdi, r13`: asked to keep the callee-saved
    /// registers, the trace goes on past the call to `rbx + 0x10`; by default, or for a
    /// register a call may change, it stops at the call.
    #[test]
    fn callee_saved_registers_are_traced_past_calls_when_asked() {
        let bytes = [
            0x4c, 0x8d, 0x6b, 0x10, // lea r13, [rbx+0x10]   @0
            0xe8, 0x00, 0x01, 0x00, 0x00, // call elsewhere  @4
            0x4c, 0x89, 0xef, // mov rdi, r13                @9
            0x90, // nop                                     @12
        ];
        let kept = code(&bytes).keeping_across_calls(&SYSV_CALLEE_SAVED);
        assert_eq!(
            kept.trace_back(3, Register::RDI, 0),
            vec![
                (BASE + 12, Register::RDI, 0),
                (BASE + 9, Register::R13, 0),
                (BASE + 4, Register::R13, 0),
                (BASE, Register::RBX, 0x10),
            ]
        );
        let stopped = vec![(BASE + 12, Register::RDI, 0), (BASE + 9, Register::R13, 0)];
        assert_eq!(code(&bytes).trace_back(3, Register::RDI, 0), stopped);
        // `lea rax, …` instead: RAX is the callee's to change.
        let mut rax = bytes;
        rax[0] = 0x48;
        rax[2] = 0x43;
        rax[9] = 0x48;
        rax[11] = 0xc7;
        let kept = code(&rax).keeping_across_calls(&SYSV_CALLEE_SAVED);
        assert_eq!(
            kept.trace_back(3, Register::RDI, 0),
            vec![(BASE + 12, Register::RDI, 0), (BASE + 9, Register::RAX, 0)]
        );
    }

    /// The two arms of an `if` joining before the call (`mov rdi, rbx` after `rbx` came
    /// from `rdi` on one arm and `rsi` on the other): with [`Joins::AllPaths`] the trace
    /// goes back along the jump and along the fall-through, one path each; with
    /// [`Joins::FollowPaths`] it stops at the join (the code before falls through).
    #[test]
    fn all_paths_follow_the_fall_through_and_the_jumps() {
        let c = code(&[
            0x74, 0x05, // je @7                               @0
            0x48, 0x89, 0xfb, // mov rbx, rdi                  @2
            0xeb, 0x03, // jmp @10                             @5
            0x48, 0x89, 0xf3, // mov rbx, rsi                  @7
            0x48, 0x89, 0xdf, // mov rdi, rbx (joined)          @10
            0x90, // nop                                       @13
        ]);
        let head = [(BASE + 13, Register::RDI, 0), (BASE + 10, Register::RBX, 0)];
        let mut by_jump = head.to_vec();
        by_jump.extend([
            (BASE + 5, Register::RBX, 0),
            (BASE + 2, Register::RDI, 0),
            (BASE, Register::RDI, 0),
        ]);
        let mut by_fall_through = head.to_vec();
        by_fall_through.extend([(BASE + 7, Register::RSI, 0), (BASE, Register::RSI, 0)]);
        assert_eq!(
            c.trace_paths(5, Register::RDI, 0, Joins::AllPaths),
            vec![by_jump, by_fall_through]
        );
        assert_eq!(
            c.trace_paths(5, Register::RDI, 0, Joins::FollowPaths),
            vec![head.to_vec()]
        );
    }

    /// A call site found by the byte scan is only taken where the decoder agrees.
    #[test]
    fn call_sites_are_checked_against_the_decoded_call() {
        let c = code(&[
            0xe8, 0x0b, 0x00, 0x00, 0x00, // call @16          @0
            0xff, 0x15, 0x05, 0x00, 0x00, 0x00, // call [rip+5] @5 (slot @16)
        ]);
        let direct = CallSite {
            at: BASE,
            len: 5,
            target: BASE + 16,
            slot: None,
        };
        let through = CallSite {
            at: BASE + 5,
            len: 6,
            target: 0x9999,
            slot: Some(BASE + 16),
        };
        assert!(direct.is(&c.instrs[0]));
        assert!(through.is(&c.instrs[1]));
        assert!(!direct.is(&c.instrs[1]));
        assert!(
            !CallSite {
                target: BASE + 17,
                ..direct
            }
            .is(&c.instrs[0])
        );
        assert!(
            !CallSite {
                slot: Some(BASE + 8),
                ..through
            }
            .is(&c.instrs[1])
        );
    }
}
