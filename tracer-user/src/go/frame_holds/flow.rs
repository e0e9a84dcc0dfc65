//! The pure core of the frame-variable analysis: one x86-64 Go function's code in, the
//! lock operations it performs (with where each lock's address comes from) and a control
//! flow graph out; then, per call return address, the locks a frame stopped there holds.
//!
//! Nothing here reads a process: the function's bytes and the lock sites come in, "slot
//! `bp+16` plus 0 holds a `Mutex` held for writing" comes out.
use std::ops::Range;

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic,
    OpAccess, OpKind, Register,
};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::go::lock_model::GoLockMode;

/// Most instructions decoded per function: larger functions get no analysis.
pub const MAX_FUNCTION_INSTRUCTIONS: usize = 20_000;
/// Most instructions walked back when tracing where a register's value comes from.
const MAX_TRACE_STEPS: usize = 256;
/// Most distinct released locks examined per frame.
const MAX_CANDIDATES: usize = 64;
/// Most instructions of the prologue looked at for the frame pointer set-up.
const MAX_PROLOGUE_INSTRUCTIONS: usize = 12;

/// What a lock operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOp {
    /// Takes the lock (`true`) or releases it.
    pub acquire: bool,
    pub mode: GoLockMode,
    /// Offset of the word the operation's address points at inside the lock (the
    /// `RWMutex` reader count for `RLock`/`RUnlock` atomics; 0 for a `Mutex`'s state and
    /// for calls, whose receiver is the lock).
    pub field: i64,
    /// An acquisition that may fail and leave the lock free (`TryLock`).
    pub conditional: bool,
}

/// What the binary says about lock operations, for one function's analysis.
pub trait LockOpSites {
    /// The operation of the atomic instruction that ends at `next_ip` (the probe plan's
    /// sites are the instructions right after lock atomics), if it is a lock atomic.
    fn atomic_op(&self, next_ip: u64) -> Option<LockOp>;
    /// The operation of a direct call to `target`, if it is an out-of-line lock function
    /// (receiver, the lock, in `AX`).
    fn call_op(&self, target: u64) -> Option<LockOp>;
    /// Whether the instruction at `ip` belongs to an inlined lock acquisition (a call
    /// there, such as `RLock`'s semaphore wait, is the acquisition in progress).
    fn in_acquisition(&self, ip: u64) -> bool;
    /// Whether a call to `target` never returns (`runtime.panicIndex`, `runtime.throw`).
    fn no_return(&self, target: u64) -> bool;
}

/// Where a lock's address is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockBase {
    /// The 8-byte stack slot at this offset from the frame pointer (`BP`) of the
    /// function: a local (negative) or an argument's spill slot (`16 + 8i`).
    Slot(i64),
    /// A constant (link-time) address: a global lock.
    Global(u64),
}

/// A lock's address: the base's value plus a displacement (the lock's offset in the
/// object the slot points to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockKey {
    pub base: LockBase,
    pub disp: i64,
}

/// A lock a frame holds, as the code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotHold {
    pub key: LockKey,
    pub mode: GoLockMode,
}

/// What [`FunctionFlow::holds_at`] finds for one frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameQuery {
    pub holds: Vec<SlotHold>,
    /// The frame is inside a lock acquisition (its call is `Lock`, `lockSlow`, an
    /// inlined `RLock`'s semaphore wait, ...) whose lock the code does not locate: the
    /// lock it waits for may be one of `holds`, and must be told apart by the caller.
    pub acquiring_unresolved: bool,
}

/// Why a function gets no analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanalysable {
    /// More than [`MAX_FUNCTION_INSTRUCTIONS`], or bytes that do not decode.
    Decode,
    /// No `BP`-based frame found in the prologue.
    NoFrame,
    /// `SP` or `BP` changes in the body other than right before a return.
    StackPointer,
    /// An indirect jump (a jump table): the successors are unknown.
    IndirectJump,
    /// A jump into the middle of an instruction or back into the prologue.
    BadJump,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Lock {
        op: LockOp,
        key: Option<LockKey>,
    },
    /// A store to the frame's bytes `[off, off + size)` (`BP`-relative).
    Store {
        off: i64,
        size: u32,
    },
    /// `ret` or a jump out of the function.
    Exit,
}

#[derive(Debug, Clone, Default)]
struct Block {
    /// Instruction indexes.
    insns: Range<usize>,
    succs: Vec<usize>,
    preds: Vec<usize>,
}

/// One function's analysis: compact, kept per function entry (no instructions).
#[derive(Debug, Clone)]
pub struct FunctionFlow {
    /// Address of each instruction (sorted), and its effect.
    ips: Vec<u64>,
    effects: FxHashMap<usize, Effect>,
    blocks: Vec<Block>,
    block_of: Vec<u32>,
    /// First instruction of the body (after the frame set-up).
    body_start: usize,
    /// Call return addresses (the instruction index after each call) in the body.
    calls: FxHashMap<usize, CallKind>,
    /// Slots whose address is taken (they may change behind the code's back): the
    /// offsets of frame addresses computed in the body.
    address_taken: Vec<i64>,
    /// Stores that only write the value the slot always holds (an argument's spill,
    /// stored again on another path).
    harmless_stores: FxHashSet<usize>,
}

/// What a call of the body is, for a frame stopped at its return address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    /// Not a lock acquisition.
    Plain,
    /// A lock acquisition in progress (the frame waits for that lock): where its lock is,
    /// `None` when the code does not locate it.
    Acquiring(Option<LockKey>),
}

/// A register's value as far as the backward trace knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    Slot(i64, i64),
    Global(u64, i64),
    /// The register's value at the function's entry, plus a displacement.
    Entry(Register, i64),
}

impl Val {
    fn add(self, d: i64) -> Self {
        match self {
            Val::Slot(s, x) => Val::Slot(s, x.wrapping_add(d)),
            Val::Global(g, x) => Val::Global(g, x.wrapping_add(d)),
            Val::Entry(r, x) => Val::Entry(r, x.wrapping_add(d)),
        }
    }
}

/// Go's integer argument registers (`ABIInternal`, amd64).
const ARG_REGISTERS: [Register; 9] = [
    Register::RAX,
    Register::RBX,
    Register::RCX,
    Register::RDI,
    Register::RSI,
    Register::R8,
    Register::R9,
    Register::R10,
    Register::R11,
];

fn is_frame_reg(r: Register) -> bool {
    matches!(r, Register::RSP | Register::RBP)
}

/// `BP - SP` in the body, and the index of the body's first instruction.
fn prologue(insns: &[Instruction]) -> Option<(i64, usize)> {
    let mut sp: i64 = 0;
    let mut bp: Option<i64> = None;
    for (i, ins) in insns.iter().enumerate().take(MAX_PROLOGUE_INSTRUCTIONS) {
        let op0_reg = (ins.op0_kind() == OpKind::Register).then(|| ins.op0_register());
        match ins.code() {
            Code::Push_r64 if ins.op0_register() == Register::RBP => sp -= 8,
            Code::Mov_rm64_r64 | Code::Mov_r64_rm64
                if op0_reg == Some(Register::RBP)
                    && ins.op1_kind() == OpKind::Register
                    && ins.op1_register() == Register::RSP =>
            {
                bp = Some(sp);
            }
            Code::Sub_rm64_imm8 | Code::Sub_rm64_imm32 if op0_reg == Some(Register::RSP) => {
                sp -= ins.immediate(1).cast_signed();
            }
            Code::Lea_r64_m
                if op0_reg == Some(Register::RBP)
                    && ins.memory_base() == Register::RSP
                    && ins.memory_index() == Register::None =>
            {
                bp = Some(sp + ins.memory_displacement64().cast_signed());
            }
            _ => {
                if let Some(bp) = bp {
                    return Some((bp - sp, i));
                }
                // The stack check (compare, branch, LEA into R12) writes neither.
                if writes_register(ins, Register::RSP) || writes_register(ins, Register::RBP) {
                    return None;
                }
            }
        }
    }
    None
}

fn writes_register(ins: &Instruction, reg: Register) -> bool {
    let mut factory = InstructionInfoFactory::new();
    factory.info(ins).used_registers().iter().any(|u| {
        u.register().full_register() == reg.full_register()
            && matches!(
                u.access(),
                OpAccess::Write
                    | OpAccess::ReadWrite
                    | OpAccess::CondWrite
                    | OpAccess::ReadCondWrite
            )
    })
}

fn direct_target(ins: &Instruction) -> Option<u64> {
    matches!(
        ins.op0_kind(),
        OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16
    )
    .then(|| ins.near_branch_target())
}

/// Analyses one function: `code` its bytes, `entry` its (link-time) address.
#[expect(
    clippy::too_many_lines,
    reason = "one pass after another over the same decoded instructions; split, each would take them all"
)]
///
/// # Errors
/// [`Unanalysable`] when the function's control flow or frame is not one the analysis
/// can follow with certainty.
pub fn analyze_function(
    code: &[u8],
    entry: u64,
    sites: &dyn LockOpSites,
) -> Result<FunctionFlow, Unanalysable> {
    let insns = decode(code, entry)?;
    let (delta, body_start) = prologue(&insns).ok_or(Unanalysable::NoFrame)?;
    let ips: Vec<u64> = insns.iter().map(Instruction::ip).collect();
    let index_of = |ip: u64| ips.binary_search(&ip).ok();
    let end = entry + code.len() as u64;

    // Blocks: leaders are the body start, branch targets and what follows a branch.
    let mut leaders: FxHashSet<usize> = FxHashSet::default();
    leaders.insert(0);
    leaders.insert(body_start);
    for (i, ins) in insns.iter().enumerate() {
        match ins.flow_control() {
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
                if let Some(t) = direct_target(ins)
                    && t >= entry
                    && t < end
                {
                    leaders.insert(index_of(t).ok_or(Unanalysable::BadJump)?);
                }
                leaders.insert(i + 1);
            }
            FlowControl::Return
            | FlowControl::IndirectBranch
            | FlowControl::Interrupt
            | FlowControl::Exception => {
                leaders.insert(i + 1);
            }
            FlowControl::Call if direct_target(ins).is_some_and(|t| sites.no_return(t)) => {
                leaders.insert(i + 1);
            }
            _ => {}
        }
    }
    let mut starts: Vec<usize> = leaders.into_iter().filter(|&i| i < insns.len()).collect();
    starts.sort_unstable();
    let mut blocks: Vec<Block> = starts
        .iter()
        .enumerate()
        .map(|(b, &s)| Block {
            insns: s..starts.get(b + 1).copied().unwrap_or(insns.len()),
            ..Block::default()
        })
        .collect();
    let mut block_of = vec![0u32; insns.len()];
    for (b, block) in blocks.iter().enumerate() {
        for i in block.insns.clone() {
            block_of[i] = u32::try_from(b).unwrap_or(u32::MAX);
        }
    }
    let block_at = |i: usize| block_of.get(i).map(|&b| b as usize);
    let mut effects: FxHashMap<usize, Effect> = FxHashMap::default();
    for (b, block) in blocks.iter_mut().enumerate() {
        let last = block.insns.end - 1;
        let ins = &insns[last];
        let mut succs = Vec::new();
        match ins.flow_control() {
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
                match direct_target(ins) {
                    Some(t) if t >= entry && t < end => {
                        succs.extend(index_of(t).and_then(block_at));
                    }
                    Some(_) => {
                        effects.insert(last, Effect::Exit);
                    }
                    None => return Err(Unanalysable::IndirectJump),
                }
                if ins.flow_control() == FlowControl::ConditionalBranch {
                    succs.extend(block_at(last + 1));
                }
            }
            FlowControl::Return => {
                effects.insert(last, Effect::Exit);
            }
            FlowControl::IndirectBranch => {
                if b >= block_at(body_start).unwrap_or(0) {
                    return Err(Unanalysable::IndirectJump);
                }
            }
            FlowControl::Interrupt | FlowControl::Exception => {}
            FlowControl::Call if direct_target(ins).is_some_and(|t| sites.no_return(t)) => {}
            _ => succs.extend(block_at(last + 1)),
        }
        block.succs = succs;
    }
    // The body: what the prologue's end reaches. The stack growth path (before the frame
    // exists) is not part of it.
    let body_block = block_at(body_start).ok_or(Unanalysable::NoFrame)?;
    let mut in_body = vec![false; blocks.len()];
    let mut stack = vec![body_block];
    while let Some(b) = stack.pop() {
        if std::mem::replace(&mut in_body[b], true) {
            continue;
        }
        for &s in &blocks[b].succs {
            let first = blocks[s].insns.start;
            if first < body_start {
                return Err(Unanalysable::BadJump);
            }
            stack.push(s);
        }
    }
    for b in 0..blocks.len() {
        if !in_body[b] {
            blocks[b].succs.clear();
        }
        for s in blocks[b].succs.clone() {
            blocks[s].preds.push(b);
        }
    }
    let body = |i: usize| i >= body_start && block_at(i).is_some_and(|b| in_body[b]);

    let flow = Tracer {
        insns: &insns,
        blocks: &blocks,
        block_of: &block_of,
        body_start,
        delta,
    };
    // Frame writes, SP/BP changes, frame addresses taken.
    let mut address_taken = Vec::new();
    let mut factory = InstructionInfoFactory::new();
    for (i, ins) in insns.iter().enumerate() {
        if !body(i) {
            continue;
        }
        let info = factory.info(ins);
        for mem in info.used_memory() {
            if matches!(
                mem.access(),
                OpAccess::Write
                    | OpAccess::ReadWrite
                    | OpAccess::CondWrite
                    | OpAccess::ReadCondWrite
            ) && is_frame_reg(mem.base())
                && mem.index() == Register::None
                && let Some(off) = flow.frame_offset(mem.base(), mem.displacement().cast_signed())
            {
                let size = u32::try_from(mem.memory_size().size()).unwrap_or(u32::MAX);
                effects.insert(i, Effect::Store { off, size });
            }
        }
        let writes_sp = info.used_registers().iter().any(|u| {
            is_frame_reg(u.register().full_register())
                && matches!(u.access(), OpAccess::Write | OpAccess::ReadWrite)
        });
        let implicit_sp = matches!(ins.flow_control(), FlowControl::Call | FlowControl::Return);
        if writes_sp && !implicit_sp && !epilogue(&insns, i) {
            return Err(Unanalysable::StackPointer);
        }
        if ins.mnemonic() == Mnemonic::Lea
            && is_frame_reg(ins.memory_base())
            && ins.memory_index() == Register::None
            && let Some(off) =
                flow.frame_offset(ins.memory_base(), ins.memory_displacement64().cast_signed())
        {
            address_taken.push(off);
        }
        if ins.mnemonic() == Mnemonic::Mov
            && ins.op1_kind() == OpKind::Register
            && is_frame_reg(ins.op1_register())
            && !(ins.op0_kind() == OpKind::Register && is_frame_reg(ins.op0_register()))
        {
            address_taken.extend(flow.frame_offset(ins.op1_register(), 0));
        }
    }
    // Lock operations and where their locks are.
    let mut calls = FxHashMap::default();
    for (i, ins) in insns.iter().enumerate() {
        if !body(i) {
            continue;
        }
        let next_ip = ins.next_ip();
        if ins.flow_control() == FlowControl::Call {
            let op = direct_target(ins).and_then(|t| sites.call_op(t));
            if let Some(op) = op {
                let key = flow.trace(Register::RAX, i).map(|v| key_of(v, op.field));
                effects.insert(i, Effect::Lock { op, key });
            }
            let in_progress = if let Some(op) = op.filter(|o| o.acquire) {
                CallKind::Acquiring(flow.trace(Register::RAX, i).map(|v| key_of(v, op.field)))
            } else if sites.in_acquisition(ins.ip()) {
                CallKind::Acquiring(flow.preceding_acquisition(i, &effects))
            } else {
                CallKind::Plain
            };
            calls.insert(i + 1, in_progress);
        } else if (ins.has_lock_prefix() || ins.mnemonic() == Mnemonic::Xchg)
            && let Some(op) = sites.atomic_op(next_ip)
        {
            let key = memory_value(&flow, ins, i).map(|v| key_of(v, op.field));
            effects.insert(i, Effect::Lock { op, key });
        }
    }
    let mut flow = FunctionFlow {
        ips,
        effects,
        blocks,
        block_of,
        body_start,
        calls,
        address_taken,
        harmless_stores: FxHashSet::default(),
    };
    flow.resolve_entry_values(&insns, delta);
    Ok(flow)
}

/// Whether the SP/BP write at `i` is part of an epilogue: only frame restores follow it
/// up to a `ret` or a jump out (a tail call).
fn epilogue(insns: &[Instruction], i: usize) -> bool {
    for ins in insns.iter().skip(i + 1).take(3) {
        match ins.flow_control() {
            FlowControl::Return | FlowControl::UnconditionalBranch => return true,
            FlowControl::Next
                if ins.op0_kind() == OpKind::Register && is_frame_reg(ins.op0_register()) => {}
            _ => return false,
        }
    }
    false
}

fn decode(code: &[u8], entry: u64) -> Result<Vec<Instruction>, Unanalysable> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut insns = Vec::new();
    while decoder.can_decode() {
        if insns.len() >= MAX_FUNCTION_INSTRUCTIONS {
            return Err(Unanalysable::Decode);
        }
        let ins = decoder.decode();
        if ins.is_invalid() {
            // Go pads between functions with int3; anything else is not code we know.
            return Err(Unanalysable::Decode);
        }
        insns.push(ins);
    }
    Ok(insns)
}

fn key_of(v: Val, field: i64) -> LockKey {
    match v {
        Val::Slot(s, d) => LockKey {
            base: LockBase::Slot(s),
            disp: d.wrapping_sub(field),
        },
        Val::Global(g, d) => LockKey {
            base: LockBase::Global(g),
            disp: d.wrapping_sub(field),
        },
        // Resolved afterwards, through the argument's spill slot, if it has one.
        Val::Entry(r, d) => LockKey {
            base: LockBase::Slot(entry_marker(r)),
            disp: d.wrapping_sub(field),
        },
    }
}

/// A placeholder slot offset for "the value register `r` had at entry" until
/// [`FunctionFlow::resolve_entry_values`] maps it to the slot it is spilled to (real
/// slots are within ±2^31 of BP; these are far outside).
fn entry_marker(r: Register) -> i64 {
    i64::MIN / 2 + r as i64
}

fn is_entry_marker(off: i64) -> bool {
    off < i64::MIN / 4
}

/// The address operand of an atomic, traced to its source.
fn memory_value(flow: &Tracer<'_>, ins: &Instruction, i: usize) -> Option<Val> {
    if ins.memory_index() != Register::None {
        return None;
    }
    let disp = ins.memory_displacement64().cast_signed();
    match ins.memory_base() {
        Register::RIP => Some(Val::Global(ins.memory_displacement64(), 0)),
        Register::None => None,
        base => flow.trace(base, i).map(|v| v.add(disp)),
    }
}

/// Backward register tracing over the decoded instructions.
struct Tracer<'a> {
    insns: &'a [Instruction],
    blocks: &'a [Block],
    block_of: &'a [u32],
    body_start: usize,
    delta: i64,
}

impl Tracer<'_> {
    /// The BP-relative offset of `[reg + disp]` for SP or BP.
    fn frame_offset(&self, reg: Register, disp: i64) -> Option<i64> {
        match reg {
            Register::RBP => Some(disp),
            Register::RSP => Some(disp - self.delta),
            _ => None,
        }
    }

    /// Where the value of `reg` just before instruction `at` comes from.
    fn trace(&self, reg: Register, at: usize) -> Option<Val> {
        let mut steps = 0;
        let block = *self.block_of.get(at)? as usize;
        self.trace_from(reg, block, at, 0, &mut steps, &mut FxHashSet::default())
    }

    /// [`Tracer::trace`] of `reg` plus `disp`, just before instruction `at` of `block`
    /// (`at` may be the block's end).
    fn trace_from(
        &self,
        mut reg: Register,
        block: usize,
        at: usize,
        mut disp: i64,
        steps: &mut usize,
        seen_blocks: &mut FxHashSet<usize>,
    ) -> Option<Val> {
        let mut i = at;
        let start = self.blocks.get(block)?.insns.start;
        loop {
            *steps += 1;
            if *steps > MAX_TRACE_STEPS {
                return None;
            }
            if i == self.body_start {
                return ARG_REGISTERS
                    .contains(&reg)
                    .then_some(Val::Entry(reg, disp));
            }
            if i == start {
                // Every predecessor must give the same value.
                let preds = &self.blocks[block].preds;
                if preds.is_empty() || !seen_blocks.insert(block) {
                    return None;
                }
                let mut found: Option<Val> = None;
                for &p in preds {
                    let end = self.blocks[p].insns.end;
                    let v = self.trace_from(reg, p, end, disp, steps, seen_blocks)?;
                    if found.is_some_and(|f| f != v) {
                        return None;
                    }
                    found = Some(v);
                }
                return found;
            }
            i -= 1;
            let ins = &self.insns[i];
            if ins.flow_control() == FlowControl::Call {
                // Every register is the callee's to change (ABIInternal), R14 (g) aside.
                return None;
            }
            if !writes_register(ins, reg) {
                continue;
            }
            let op0_full =
                ins.op0_kind() == OpKind::Register && ins.op0_register() == reg.full_register();
            if !op0_full {
                return None;
            }
            match (ins.code(), ins.op1_kind()) {
                (Code::Mov_r64_rm64, OpKind::Memory) => {
                    if ins.memory_index() != Register::None {
                        return None;
                    }
                    let d = ins.memory_displacement64().cast_signed();
                    let off = self.frame_offset(ins.memory_base(), d)?;
                    return Some(Val::Slot(off, disp));
                }
                (Code::Mov_r64_rm64 | Code::Mov_rm64_r64, OpKind::Register) => {
                    reg = ins.op1_register();
                }
                (Code::Lea_r64_m, _) => {
                    if ins.memory_index() != Register::None {
                        return None;
                    }
                    if ins.memory_base() == Register::RIP {
                        return Some(Val::Global(ins.memory_displacement64(), disp));
                    }
                    if is_frame_reg(ins.memory_base()) {
                        return None;
                    }
                    disp = disp.wrapping_add(ins.memory_displacement64().cast_signed());
                    reg = ins.memory_base();
                }
                (Code::Add_rm64_imm8 | Code::Add_rm64_imm32, _) => {
                    disp = disp.wrapping_add(ins.immediate(1).cast_signed());
                }
                _ => return None,
            }
        }
    }

    /// The lock of the acquisition just before the call at `call` in its block (the
    /// fast-path atomic of the inlined acquisition the call belongs to).
    fn preceding_acquisition(
        &self,
        call: usize,
        effects: &FxHashMap<usize, Effect>,
    ) -> Option<LockKey> {
        let block = *self.block_of.get(call)? as usize;
        let mut b = block;
        let mut i = call;
        for _ in 0..4 {
            let start = self.blocks[b].insns.start;
            while i > start {
                i -= 1;
                if let Some(Effect::Lock { op, key }) = effects.get(&i) {
                    return if op.acquire { *key } else { None };
                }
            }
            match self.blocks[b].preds.as_slice() {
                [p] => {
                    b = *p;
                    i = self.blocks[b].insns.end;
                }
                _ => return None,
            }
        }
        None
    }
}

impl FunctionFlow {
    /// Replaces entry-register lock keys by the argument spill slot that always holds
    /// that register's entry value (a slot whose every store in the body stores it), and
    /// drops (makes unknown) those that have none.
    fn resolve_entry_values(&mut self, insns: &[Instruction], delta: i64) {
        let tracer = Tracer {
            insns,
            blocks: &self.blocks,
            block_of: &self.block_of,
            body_start: self.body_start,
            delta,
        };
        // Per slot offset: the entry register of every full store, or None when a store
        // is anything else.
        let mut slots: FxHashMap<i64, Option<Register>> = FxHashMap::default();
        let mut stores: Vec<(usize, i64, u32)> = self
            .effects
            .iter()
            .filter_map(|(&i, e)| match e {
                Effect::Store { off, size } => Some((i, *off, *size)),
                _ => None,
            })
            .collect();
        stores.sort_unstable();
        let mut spill_stores: FxHashMap<i64, Vec<usize>> = FxHashMap::default();
        for &(i, off, size) in &stores {
            let ins = &insns[i];
            let spilled = (size == 8
                && ins.code() == Code::Mov_rm64_r64
                && ins.op1_kind() == OpKind::Register)
                .then(|| tracer.trace(ins.op1_register(), i))
                .flatten();
            let reg = match spilled {
                Some(Val::Entry(r, 0)) => Some(r),
                _ => None,
            };
            // Any other store overlapping the slot spoils it.
            for (&s, entry) in &mut slots {
                if s != off && ranges_overlap(s, 8, off, size) {
                    *entry = None;
                }
            }
            let e = slots.entry(off).or_insert(reg);
            if *e != reg {
                *e = None;
            }
            if reg.is_some() {
                spill_stores.entry(off).or_default().push(i);
            }
        }
        let mut spill_of: FxHashMap<Register, i64> = FxHashMap::default();
        let mut offsets: Vec<_> = slots.iter().collect();
        offsets.sort_unstable();
        for (&off, reg) in offsets {
            if let Some(r) = reg
                && !self.is_address_taken(off)
            {
                spill_of.entry(*r).or_insert(off);
                self.harmless_stores
                    .extend(spill_stores.get(&off).into_iter().flatten().copied());
            }
        }
        // A key on an argument's entry value becomes its spill slot, or unknown.
        let resolve = |key: &mut Option<LockKey>| {
            if let Some(LockKey {
                base: LockBase::Slot(s),
                disp,
            }) = *key
                && is_entry_marker(s)
            {
                *key = ARG_REGISTERS
                    .iter()
                    .find(|&&r| entry_marker(r) == s)
                    .and_then(|r| spill_of.get(r))
                    .map(|&off| LockKey {
                        base: LockBase::Slot(off),
                        disp,
                    });
            }
        };
        for effect in self.effects.values_mut() {
            if let Effect::Lock { key, .. } = effect {
                resolve(key);
            }
        }
        for call in self.calls.values_mut() {
            if let CallKind::Acquiring(in_progress) = call {
                resolve(in_progress);
            }
        }
    }

    /// Whether code may write slot `off` through a pointer: some frame address at or
    /// below it, in the same region (locals below `BP`, arguments above), is computed.
    /// A local cannot straddle the saved `BP` and return address, so the regions are
    /// apart.
    fn is_address_taken(&self, off: i64) -> bool {
        self.address_taken
            .iter()
            .any(|&a| a <= off && (a < 0) == (off < 0))
    }

    /// Whether `ret` (link-time) is the return address of a call of the body.
    #[must_use]
    pub fn is_call_return(&self, ret: u64) -> bool {
        self.ips
            .binary_search(&ret)
            .is_ok_and(|i| self.calls.contains_key(&i))
    }

    /// Number of instructions decoded.
    #[must_use]
    pub fn instructions(&self) -> usize {
        self.ips.len()
    }

    /// Every lock operation of the body: (instruction address, op, where its lock is).
    #[must_use]
    pub fn lock_ops(&self) -> Vec<(u64, LockOp, Option<LockKey>)> {
        let mut ops: Vec<_> = self
            .effects
            .iter()
            .filter_map(|(&i, e)| match e {
                Effect::Lock { op, key } => Some((self.ips[i], *op, *key)),
                _ => None,
            })
            .collect();
        ops.sort_unstable_by_key(|o| o.0);
        ops
    }

    /// The locks a frame stopped at the call return address `ret` (link-time) holds:
    /// for each lock the body releases, whether every path from `ret` releases it before
    /// taking any lock it cannot tell apart from it, and every path from the entry to
    /// the call took it last (see the module notes). Empty when `ret` is not a call
    /// return address of the body.
    #[must_use]
    pub fn holds_at(&self, ret: u64) -> FrameQuery {
        let Ok(at) = self.ips.binary_search(&ret) else {
            return FrameQuery::default();
        };
        let Some(&in_progress) = self.calls.get(&at) else {
            return FrameQuery::default();
        };
        let call = at - 1;
        let mut candidates: Vec<LockKey> = self
            .effects
            .values()
            .filter_map(|e| match e {
                Effect::Lock { op, key: Some(k) } if !op.acquire => Some(*k),
                _ => None,
            })
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates.truncate(MAX_CANDIDATES);
        let mut query = FrameQuery {
            holds: Vec::new(),
            acquiring_unresolved: in_progress == CallKind::Acquiring(None),
        };
        for key in candidates {
            if in_progress == CallKind::Acquiring(Some(key)) {
                continue;
            }
            if let LockBase::Slot(s) = key.base
                && self.is_address_taken(s)
            {
                continue;
            }
            let Some((mode, saw_acquire)) = self.released_on_every_path(key, at) else {
                continue;
            };
            let Some((taken_mode, saw_release)) = self.taken_on_every_path(key, call) else {
                continue;
            };
            // Taken and released through other variables on both sides could be this
            // lock under another name, released before the frame stopped and taken
            // again after.
            if mode != taken_mode || (saw_acquire && saw_release) {
                continue;
            }
            query.holds.push(SlotHold { key, mode });
        }
        query
    }

    fn overwrites(&self, i: usize, key: LockKey) -> bool {
        match (self.effects.get(&i), key.base) {
            (Some(Effect::Store { off, size }), LockBase::Slot(s)) => {
                ranges_overlap(s, 8, *off, *size) && !self.harmless_stores.contains(&i)
            }
            _ => false,
        }
    }

    /// Forward from instruction `at`: `Some((mode, other acquisitions seen))` when every
    /// path reaches a release of `key` first (and one does).
    fn released_on_every_path(&self, key: LockKey, at: usize) -> Option<(GoLockMode, bool)> {
        let mut mode = None;
        let mut saw_acquire = false;
        let mut seen = FxHashSet::default();
        let mut work = vec![at];
        while let Some(start) = work.pop() {
            let block = &self.blocks[*self.block_of.get(start)? as usize];
            let mut released = false;
            for i in start..block.insns.end {
                if self.overwrites(i, key) {
                    return None;
                }
                match self.effects.get(&i) {
                    Some(Effect::Lock { op, key: k }) => {
                        if *k == Some(key) {
                            if op.acquire {
                                return None;
                            }
                            if mode.is_some_and(|m| m != op.mode) {
                                return None;
                            }
                            mode = Some(op.mode);
                            released = true;
                            break;
                        }
                        if op.acquire {
                            if k.is_none() {
                                return None;
                            }
                            saw_acquire = true;
                        }
                    }
                    Some(Effect::Exit) => return None,
                    _ => {}
                }
            }
            if released {
                continue;
            }
            for &s in &block.succs {
                if seen.insert(s) {
                    work.push(self.blocks[s].insns.start);
                }
            }
        }
        mode.map(|m| (m, saw_acquire))
    }

    /// Backward from just before instruction `before`: `Some((mode, other releases
    /// seen))` when every path from the body's start took `key` last (unconditionally)
    /// and did not write its slot since.
    fn taken_on_every_path(&self, key: LockKey, before: usize) -> Option<(GoLockMode, bool)> {
        let mut mode = None;
        let mut saw_release = false;
        let mut seen = FxHashSet::default();
        let mut work = vec![before];
        while let Some(end) = work.pop() {
            let b = *self.block_of.get(end.saturating_sub(1))? as usize;
            let block = &self.blocks[b];
            let mut taken = false;
            for i in (block.insns.start..end).rev() {
                if self.overwrites(i, key) {
                    return None;
                }
                if let Some(Effect::Lock { op, key: k }) = self.effects.get(&i) {
                    if *k == Some(key) {
                        if !op.acquire || op.conditional {
                            return None;
                        }
                        if mode.is_some_and(|m| m != op.mode) {
                            return None;
                        }
                        mode = Some(op.mode);
                        taken = true;
                        break;
                    }
                    if !op.acquire {
                        if k.is_none() {
                            return None;
                        }
                        saw_release = true;
                    }
                }
                if i == self.body_start {
                    return None;
                }
            }
            if taken {
                continue;
            }
            if block.preds.is_empty() {
                return None;
            }
            for &p in &block.preds {
                if seen.insert(p) {
                    work.push(self.blocks[p].insns.end);
                }
            }
        }
        mode.map(|m| (m, saw_release))
    }
}

fn ranges_overlap(a: i64, a_len: u32, b: i64, b_len: u32) -> bool {
    a < b.saturating_add(i64::from(b_len)) && b < a.saturating_add(i64::from(a_len))
}
