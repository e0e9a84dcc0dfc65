//! What a deferred closure unlocks, from its code: a small symbolic interpreter over the
//! closure function's fall-through path (amd64, Go's register ABI).
//!
//! A deferred call is a `func()` value: a pointer to a funcval `{fn, captured...}`, and
//! the closure function finds its captures through `DX` (the closure context register).
//! `defer mu.Unlock()` compiles to a wrapper (`f.func1` before Go 1.21, `f.deferwrap1`
//! after) that loads the receiver `&mu` from the funcval and either calls
//! `sync.(*Mutex).Unlock` (lock in `AX`) or inlines it down to its first `lock xadd`.
//!
//! The interpreter starts at the entry with `DX` = the context and `SP` = an abstract
//! stack base, follows the fall-through path (conditional branches not taken: the
//! stack-growth check and the wrapper's panic check both branch away from the body;
//! unconditional jumps inside the function followed), and tracks `MOV`/`LEA`/`ADD`/`SUB`
//! with constants, `PUSH`/`POP` and 8-byte spills to the frame. Values are expressions
//! over the context, constants (link-time addresses) and loads; loads of memory other
//! than the frame are not done now but recorded in the expression, so the result is a
//! recipe ([`LockExpr`]) evaluated against each goroutine's funcval later. It stops at
//! the first call (or tail jump) to an unlock function or the first `lock`-prefixed
//! instruction whose inline frames are inside one (see [`UnlockSite`]); any other call
//! clobbers every register but `SP`, `BP` and `R14` (Go's ABI keeps no others).
//!
//! Not handled (the closure then reads as "no unlock found"): an unlock reached only
//! through a taken conditional branch, a loop, or a computed jump; lock addresses built
//! with index registers or arithmetic other than constant offsets.
use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess,
    OpKind, Register,
};
use rustc_hash::FxHashMap;

use crate::go::lock_model::GoLockMode;

/// Instructions interpreted per closure before giving up: deferred closures that unlock
/// do so within a few dozen.
const MAX_STEPS: usize = 512;
/// Unconditional jumps followed per closure (guards against loops).
const MAX_JUMPS: usize = 16;
/// Deepest expression kept (loads of loads...); deeper values become unknown.
const MAX_DEPTH: usize = 4;

/// Where a lock's address comes from, relative to a deferred closure.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockExpr {
    /// A fixed address in the binary (a global lock), as linked (add the load bias).
    Global(u64),
    /// The closure record (funcval) address plus this offset.
    Closure(i64),
    /// The word stored at the address `addr`, plus `add`.
    Load {
        /// Where the word is.
        addr: Box<LockExpr>,
        /// Added to the word.
        add: i64,
    },
}

impl LockExpr {
    /// The expression plus a constant.
    #[must_use]
    fn offset(self, by: i64) -> Self {
        match self {
            Self::Global(a) => Self::Global(a.wrapping_add_signed(by)),
            Self::Closure(o) => Self::Closure(o.wrapping_add(by)),
            Self::Load { addr, add } => Self::Load {
                addr,
                add: add.wrapping_add(by),
            },
        }
    }

    /// The value for one funcval: `read` reads a word of the target's memory, `bias` is
    /// the load bias (runtime minus link-time address). `None` when a read fails.
    pub fn eval(&self, closure: u64, bias: u64, read: &dyn Fn(u64) -> Option<u64>) -> Option<u64> {
        match self {
            Self::Global(a) => Some(a.wrapping_add(bias)),
            Self::Closure(o) => Some(closure.wrapping_add_signed(*o)),
            Self::Load { addr, add } => {
                Some(read(addr.eval(closure, bias, read)?)?.wrapping_add_signed(*add))
            }
        }
    }
}

/// What a closure function unlocks when called.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnlockRecipe {
    /// The lock's address (the `Mutex`/`RWMutex`, not the field the atomic touches).
    pub lock: LockExpr,
    /// [`GoLockMode::Read`] for `RUnlock`, else [`GoLockMode::Write`].
    pub mode: GoLockMode,
}

/// What the interpreter found in a closure function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClosureAnalysis {
    /// It unlocks this lock.
    Unlocks(UnlockRecipe),
    /// It reaches an unlock, but the lock's address is not an expression we track.
    Unresolved(GoLockMode),
    /// No unlock on its fall-through path.
    NoUnlock,
}

/// How an unlock shows in a closure's code: what the interpreter asks its caller.
pub trait UnlockSites {
    /// The mode of the unlock function whose entry is `target` (link-time address), if
    /// it is one (its lock is then in `AX`).
    fn unlock_entry(&self, target: u64) -> Option<GoLockMode>;
    /// For a `lock`-prefixed instruction at `ip` (link-time address): if it is inlined
    /// from an unlock function, that unlock's mode and the offset, inside the lock, of
    /// the word the atomic touches.
    fn inlined_unlock(&self, ip: u64) -> Option<(GoLockMode, u64)>;
}

/// A tracked value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Unknown,
    /// The abstract stack pointer at entry, plus an offset.
    Stack(i64),
    /// A known address or constant.
    Known(LockExpr),
}

impl Value {
    fn offset(self, by: i64) -> Self {
        match self {
            Self::Unknown => Self::Unknown,
            Self::Stack(o) => Self::Stack(o.wrapping_add(by)),
            Self::Known(e) => Self::Known(e.offset(by)),
        }
    }
}

fn depth(e: &LockExpr) -> usize {
    match e {
        LockExpr::Global(_) | LockExpr::Closure(_) => 1,
        LockExpr::Load { addr, .. } => 1 + depth(addr),
    }
}

/// Registers, by iced's 64-bit GPR number, and the frame's 8-byte slots.
struct State {
    regs: [Value; 16],
    slots: FxHashMap<i64, Value>,
}

/// Index of a 64-bit general-purpose register (of any width's full register).
fn gpr(reg: Register) -> Option<usize> {
    let full = reg.full_register();
    full.is_gpr64().then(|| full.number())
}

impl State {
    fn get(&self, reg: Register) -> Value {
        gpr(reg).map_or(Value::Unknown, |i| self.regs[i].clone())
    }

    fn set(&mut self, reg: Register, value: Value) {
        if let Some(i) = gpr(reg) {
            // Only whole-register writes keep a value; a 32-bit write zero-extends, so
            // only small constants survive it (handled by the caller).
            self.regs[i] = if reg.is_gpr64() {
                value
            } else {
                Value::Unknown
            };
        }
    }

    /// The memory operand's address.
    fn address(&self, instr: &Instruction) -> Value {
        if instr.segment_prefix() != Register::None
            && !matches!(instr.segment_prefix(), Register::DS | Register::SS)
        {
            return Value::Unknown;
        }
        if instr.memory_index() != Register::None {
            return Value::Unknown;
        }
        #[expect(
            clippy::cast_possible_wrap,
            reason = "iced gives the displacement as a two's-complement u64"
        )]
        let disp = instr.memory_displacement64() as i64;
        match instr.memory_base() {
            // iced resolves RIP-relative displacements to the absolute address; without a
            // base the displacement is one.
            Register::RIP | Register::None => {
                Value::Known(LockExpr::Global(instr.memory_displacement64()))
            }
            base => self.get(base).offset(disp),
        }
    }

    /// An 8-byte load.
    fn load(&self, addr: Value) -> Value {
        match addr {
            Value::Stack(o) => self.slots.get(&o).cloned().unwrap_or(Value::Unknown),
            Value::Known(e) if depth(&e) < MAX_DEPTH => Value::Known(LockExpr::Load {
                addr: Box::new(e),
                add: 0,
            }),
            Value::Known(_) | Value::Unknown => Value::Unknown,
        }
    }

    /// A store of `size` bytes: an 8-byte store of a value to an aligned frame slot is
    /// kept; any other write to the frame forgets the slots it overlaps.
    fn store(&mut self, addr: &Value, size: usize, value: Value) {
        let Value::Stack(o) = *addr else {
            // Writes elsewhere (heap, globals) are assumed not to change what the
            // closure reads afterwards.
            return;
        };
        let size = i64::try_from(size).unwrap_or(8);
        self.slots
            .retain(|&slot, _| slot + 8 <= o || slot >= o + size);
        if size == 8 {
            self.slots.insert(o, value);
        }
    }

    fn clobber_after_call(&mut self) {
        for (i, reg) in self.regs.iter_mut().enumerate() {
            // RSP=4, RBP=5, R14=14 keep their values across Go calls.
            if !matches!(i, 4 | 5 | 14) {
                *reg = Value::Unknown;
            }
        }
    }
}

fn finish(mode: GoLockMode, lock: Value) -> ClosureAnalysis {
    match lock {
        Value::Known(lock) => ClosureAnalysis::Unlocks(UnlockRecipe { lock, mode }),
        Value::Unknown | Value::Stack(_) => ClosureAnalysis::Unresolved(mode),
    }
}

/// Interprets the closure function `code` (its bytes, from its entry `entry` to its end;
/// link-time addresses) as described in the module notes.
#[must_use]
pub fn analyze_closure(code: &[u8], entry: u64, sites: &dyn UnlockSites) -> ClosureAnalysis {
    let end = entry.saturating_add(code.len() as u64);
    let mut state = State {
        regs: std::array::from_fn(|_| Value::Unknown),
        slots: FxHashMap::default(),
    };
    state.regs[4] = Value::Stack(0); // RSP
    state.regs[2] = Value::Known(LockExpr::Closure(0)); // RDX: the closure context
    let mut info = InstructionInfoFactory::new();
    let mut ip = entry;
    let mut jumps = 0;
    let mut steps = 0;
    'restart: while steps < MAX_STEPS {
        let Some(at) = ip.checked_sub(entry).and_then(|o| usize::try_from(o).ok()) else {
            break;
        };
        let Some(bytes) = code.get(at..) else {
            break;
        };
        let mut decoder = Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE);
        let mut instr = Instruction::default();
        while decoder.can_decode() && steps < MAX_STEPS {
            steps += 1;
            decoder.decode_out(&mut instr);
            if instr.is_invalid() {
                return ClosureAnalysis::NoUnlock;
            }
            if instr.has_lock_prefix()
                && let Some((mode, field)) = sites.inlined_unlock(instr.ip())
            {
                #[expect(clippy::cast_possible_wrap, reason = "field offsets are small")]
                return finish(mode, state.address(&instr).offset(-(field as i64)));
            }
            match instr.flow_control() {
                FlowControl::Call => {
                    if instr.op0_kind() == OpKind::NearBranch64
                        && let Some(mode) = sites.unlock_entry(instr.near_branch_target())
                    {
                        return finish(mode, state.get(Register::RAX));
                    }
                    state.clobber_after_call();
                    continue;
                }
                FlowControl::UnconditionalBranch => {
                    if instr.op0_kind() != OpKind::NearBranch64 {
                        return ClosureAnalysis::NoUnlock;
                    }
                    let target = instr.near_branch_target();
                    if let Some(mode) = sites.unlock_entry(target) {
                        // A tail call: the lock is the caller's AX.
                        return finish(mode, state.get(Register::RAX));
                    }
                    jumps += 1;
                    if jumps > MAX_JUMPS || target < entry || target >= end {
                        return ClosureAnalysis::NoUnlock;
                    }
                    ip = target;
                    continue 'restart;
                }
                FlowControl::Return
                | FlowControl::IndirectBranch
                | FlowControl::IndirectCall
                | FlowControl::Interrupt
                | FlowControl::Exception => return ClosureAnalysis::NoUnlock,
                FlowControl::ConditionalBranch
                | FlowControl::Next
                | FlowControl::XbeginXabortXend => {}
            }
            step(&mut state, &instr, &mut info);
        }
        break;
    }
    ClosureAnalysis::NoUnlock
}

/// One data instruction's effect on the tracked state.
fn step(state: &mut State, instr: &Instruction, info: &mut InstructionInfoFactory) {
    let op0_reg = (instr.op_count() >= 1 && instr.op0_kind() == OpKind::Register)
        .then(|| instr.op0_register());
    let op1_kind = (instr.op_count() >= 2).then(|| instr.op1_kind());
    match (instr.mnemonic(), op0_reg, op1_kind) {
        (Mnemonic::Mov, Some(dst), Some(OpKind::Register)) => {
            let v = state.get(instr.op1_register());
            state.set(dst, v);
        }
        (Mnemonic::Mov, Some(dst), Some(OpKind::Memory)) if dst.is_gpr64() => {
            let v = state.load(state.address(instr));
            state.set(dst, v);
        }
        (Mnemonic::Mov, Some(dst), Some(kind)) if is_immediate(kind) => {
            let v = if dst.is_gpr32() {
                Value::Known(LockExpr::Global(u64::from(instr.immediate32())))
            } else {
                Value::Known(LockExpr::Global(instr.immediate(1)))
            };
            if let Some(i) = gpr(dst) {
                if dst.is_gpr64() || dst.is_gpr32() {
                    state.regs[i] = v;
                } else {
                    state.regs[i] = Value::Unknown;
                }
            }
        }
        (Mnemonic::Lea, Some(dst), _) => {
            let v = state.address(instr);
            state.set(dst, v);
        }
        (Mnemonic::Add | Mnemonic::Sub, Some(dst), Some(kind))
            if dst.is_gpr64() && is_immediate(kind) =>
        {
            #[expect(
                clippy::cast_possible_wrap,
                reason = "sign-extended immediates come as u64"
            )]
            let imm = instr.immediate(1) as i64;
            let by = if instr.mnemonic() == Mnemonic::Add {
                imm
            } else {
                imm.wrapping_neg()
            };
            let v = state.get(dst).offset(by);
            state.set(dst, v);
        }
        (Mnemonic::Push, _, _) => {
            let v = if instr.op0_kind() == OpKind::Register {
                state.get(instr.op0_register())
            } else {
                Value::Unknown
            };
            let sp = state.regs[4].clone().offset(-8);
            state.store(&sp, 8, v);
            state.regs[4] = sp;
        }
        (Mnemonic::Pop, Some(dst), _) => {
            let sp = state.regs[4].clone();
            let v = state.load(sp.clone());
            state.regs[4] = sp.offset(8);
            state.set(dst, v);
        }
        (Mnemonic::Mov, None, Some(OpKind::Register)) if instr.op0_kind() == OpKind::Memory => {
            let addr = state.address(instr);
            let src = instr.op1_register();
            let size = src.size();
            let v = state.get(src);
            state.store(&addr, size, if size == 8 { v } else { Value::Unknown });
        }
        _ => generic(state, instr, info),
    }
}

fn is_immediate(kind: OpKind) -> bool {
    matches!(
        kind,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

/// Anything else: every register it writes becomes unknown, and frame slots it writes
/// are forgotten.
fn generic(state: &mut State, instr: &Instruction, info: &mut InstructionInfoFactory) {
    let used = info.info(instr);
    let writes = |access: OpAccess| {
        matches!(
            access,
            OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
        )
    };
    let mut written_regs = Vec::new();
    for reg in used.used_registers() {
        if writes(reg.access()) {
            written_regs.push(reg.register());
        }
    }
    let mut stores = Vec::new();
    for mem in used.used_memory() {
        if writes(mem.access()) {
            stores.push(mem.memory_size().size());
        }
    }
    if !stores.is_empty() {
        let addr = state.address(instr);
        for size in stores {
            state.store(&addr, size.max(1), Value::Unknown);
        }
    }
    for reg in written_regs {
        if let Some(i) = gpr(reg) {
            state.regs[i] = Value::Unknown;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unlock functions at made-up entries, and atomics inlined from unlocks at
    /// made-up addresses.
    struct Sites {
        entries: Vec<(u64, GoLockMode)>,
        inlined: Vec<(u64, GoLockMode, u64)>,
    }

    impl UnlockSites for Sites {
        fn unlock_entry(&self, target: u64) -> Option<GoLockMode> {
            self.entries
                .iter()
                .find(|(e, _)| *e == target)
                .map(|(_, m)| *m)
        }
        fn inlined_unlock(&self, ip: u64) -> Option<(GoLockMode, u64)> {
            self.inlined
                .iter()
                .find(|(a, _, _)| *a == ip)
                .map(|(_, m, f)| (*m, *f))
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn captured(offset: i64) -> LockExpr {
        LockExpr::Load {
            addr: Box::new(LockExpr::Closure(offset)),
            add: 0,
        }
    }

    /// Go 1.19's `defer mu.Unlock()` wrapper (`main.holdGlobal.func1`), byte for byte:
    /// stack check, frame, the wrapper's panic check, then `MOVQ 8(DX), AX; CALL Unlock`.
    #[test]
    fn go119_wrapper_calls_unlock_with_the_captured_receiver() {
        let code = hex(
            "493b6610 762a 4883ec10 48896c2408 488d6c2408 4d8b6620 4d85e4 751a
             488b4208 e83a3dfeff 488b6c2408 4883c410 c3 e8cb5efdff ebc9
             4c8d6c2418 0f1f4000 4d392c24 75d7 49892424 ebd1",
        );
        let entry = 0x48_5500;
        let sites = Sites {
            entries: vec![(0x46_9260, GoLockMode::Write)],
            inlined: vec![],
        };
        assert_eq!(
            analyze_closure(&code, entry, &sites),
            ClosureAnalysis::Unlocks(UnlockRecipe {
                lock: captured(8),
                mode: GoLockMode::Write
            })
        );
        // The same code calling something else is no unlock.
        let none = Sites {
            entries: vec![],
            inlined: vec![],
        };
        assert_eq!(
            analyze_closure(&code, entry, &none),
            ClosureAnalysis::NoUnlock
        );
    }

    /// Go 1.25's `defer rw.RUnlock()` wrapper: the unlock is inlined down to `lock xadd`
    /// on `readerCount` (offset 16).
    #[test]
    fn go125_inlined_runlock_subtracts_the_field_offset() {
        let code = hex(
            "493b6610 7630 55 4889e5 4883ec10 4d8b6620 4d85e4 7526 488b4208
             bbffffffff f00fc15810 ffcb 85db 7d05 e81037feff 4883c410 5d c3",
        );
        let entry = 0x49_d220;
        let xadd = entry + 0x20;
        let sites = Sites {
            entries: vec![],
            inlined: vec![(xadd, GoLockMode::Read, 16)],
        };
        assert_eq!(
            analyze_closure(&code, entry, &sites),
            ClosureAnalysis::Unlocks(UnlockRecipe {
                lock: captured(8),
                mode: GoLockMode::Read
            })
        );
    }

    /// A RIP-relative `LEA` of a global, spilled to the frame and reloaded across an
    /// unrelated call, then passed to `Unlock`.
    #[test]
    fn global_through_a_spill_survives_a_call() {
        // lea rax,[rip+0x1000]; mov [rsp+8],rax; call other; mov rax,[rsp+8]; call unlock
        let entry = 0x40_0000u64;
        let mut code = hex("488d0500100000 4889442408");
        let call = |from: u64, to: u64| {
            let rel = i32::try_from(to.cast_signed() - (from + 5).cast_signed()).unwrap();
            let mut v = vec![0xe8];
            v.extend_from_slice(&rel.to_le_bytes());
            v
        };
        let at = entry + code.len() as u64;
        code.extend(call(at, 0x41_0000));
        code.extend(hex("488b442408"));
        let at = entry + code.len() as u64;
        code.extend(call(at, 0x42_0000));
        code.push(0xc3);
        let sites = Sites {
            entries: vec![(0x42_0000, GoLockMode::Write)],
            inlined: vec![],
        };
        // rip after the 7-byte lea is entry+7.
        assert_eq!(
            analyze_closure(&code, entry, &sites),
            ClosureAnalysis::Unlocks(UnlockRecipe {
                lock: LockExpr::Global(entry + 7 + 0x1000),
                mode: GoLockMode::Write
            })
        );
        // Without the spill the call clobbers AX: unresolved.
        let mut code = hex("488d0500100000");
        let at = entry + code.len() as u64;
        code.extend(call(at, 0x41_0000));
        let at = entry + code.len() as u64;
        code.extend(call(at, 0x42_0000));
        assert_eq!(
            analyze_closure(&code, entry, &sites),
            ClosureAnalysis::Unresolved(GoLockMode::Write)
        );
    }

    #[test]
    fn pointer_captured_by_reference_is_a_double_load() {
        // mov rax,[rdx+0x10]; mov rax,[rax]; add rax,0x18; jmp unlock (tail call)
        let entry = 0x50_0000u64;
        let mut code = hex("488b4210 488b00 4883c018");
        let at = entry + code.len() as u64;
        let rel = i32::try_from(0x51_0000_i64 - (at + 5).cast_signed()).unwrap();
        code.push(0xe9);
        code.extend_from_slice(&rel.to_le_bytes());
        let sites = Sites {
            entries: vec![(0x51_0000, GoLockMode::Write)],
            inlined: vec![],
        };
        let expected = LockExpr::Load {
            addr: Box::new(captured(0x10)),
            add: 0x18,
        };
        assert_eq!(
            analyze_closure(&code, entry, &sites),
            ClosureAnalysis::Unlocks(UnlockRecipe {
                lock: expected.clone(),
                mode: GoLockMode::Write
            })
        );
        let memory = [(0x9000u64, 0x7000u64), (0x7000, 0x6000)];
        let read = |a: u64| memory.iter().find(|(k, _)| *k == a).map(|(_, v)| *v);
        // funcval at 0x8ff0: [0x8ff0+0x10] = 0x7000, [0x7000] = 0x6000, + 0x18.
        assert_eq!(expected.eval(0x8ff0, 0, &read), Some(0x6018));
        assert_eq!(expected.eval(0x1234, 0, &read), None);
        assert_eq!(LockExpr::Global(0x100).eval(0, 0x5000, &read), Some(0x5100));
    }

    #[test]
    fn stops_at_return_and_overwritten_context() {
        let sites = Sites {
            entries: vec![(0x42_0000, GoLockMode::Write)],
            inlined: vec![],
        };
        assert_eq!(
            analyze_closure(&hex("c3"), 0x40_0000, &sites),
            ClosureAnalysis::NoUnlock
        );
        // xor eax,eax; lock xadd [rax],ebx with the atomic inlined from an unlock: a
        // lock address of 0 is a constant, not the context: still "unlocks" a global 0?
        // No: xor makes RAX unknown (generic), so the lock is unresolved.
        let code = hex("31c0 f00fc118 c3");
        let sites = Sites {
            entries: vec![],
            inlined: vec![(0x40_0002, GoLockMode::Write, 0)],
        };
        assert_eq!(
            analyze_closure(&code, 0x40_0000, &sites),
            ClosureAnalysis::Unresolved(GoLockMode::Write)
        );
        // Truncated code is no unlock.
        assert_eq!(
            analyze_closure(&hex("488b"), 0x40_0000, &sites),
            ClosureAnalysis::NoUnlock
        );
    }
}
