use super::flow::*;
use crate::go::lock_model::GoLockMode;

const ENTRY: u64 = 0x1000;
const LOCK_SLOW: u64 = 0x2000;
const WORK: u64 = 0x3000;
const MORESTACK: u64 = 0x4000;
/// The return address of the call to `work` between the lock and the unlock.
const HELD_RET: u64 = ENTRY + 0x30;
/// The return address of the call to `lockSlow`.
const WAIT_RET: u64 = ENTRY + 0x2b;
/// The return address of the call to `work` after the unlock.
const AFTER_RET: u64 = ENTRY + 0x43;

fn call(at: u64, target: u64) -> Vec<u8> {
    let rel = i32::try_from(target.cast_signed() - (at + 5).cast_signed()).unwrap();
    let mut v = vec![0xe8];
    v.extend_from_slice(&rel.to_le_bytes());
    v
}

/// A Go 1.21+ shaped method: `p.mu.Lock(); work(); p.mu.Unlock(); work()`, `p` in `AX`,
/// spilled to `BP + 16` (`0x30(SP)` under a 0x20 frame).
fn method() -> Vec<u8> {
    let mut code = vec![
        0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
        0x76, 0x43, // jbe morestack (0x49)
        0x55, // push rbp
        0x48, 0x89, 0xe5, // mov rbp, rsp
        0x48, 0x83, 0xec, 0x20, // sub rsp, 0x20
        0x48, 0x89, 0x44, 0x24, 0x30, // mov [rsp+0x30], rax
        0x48, 0x89, 0xc2, // mov rdx, rax
        0x31, 0xc0, // xor eax, eax
        0xbe, 0x01, 0, 0, 0, // mov esi, 1
        0xf0, 0x0f, 0xb1, 0x32, // lock cmpxchg [rdx], esi
        0x75, 0x08, // jne 0x2b
        0x48, 0x89, 0xd0, // mov rax, rdx
    ];
    code.extend(call(ENTRY + 0x26, LOCK_SLOW));
    code.extend(call(ENTRY + 0x2b, WORK));
    code.extend([0xbb, 0xff, 0xff, 0xff, 0xff]); // mov ebx, -1
    code.extend([0x48, 0x8b, 0x44, 0x24, 0x30]); // mov rax, [rsp+0x30]
    code.extend([0xf0, 0x0f, 0xc1, 0x18]); // lock xadd [rax], ebx
    code.extend(call(ENTRY + 0x3e, WORK));
    code.extend([0x48, 0x83, 0xc4, 0x20, 0x5d, 0xc3]); // add rsp, 0x20; pop rbp; ret
    code.extend(call(ENTRY + 0x49, MORESTACK));
    code.extend([0xeb, 0xb0]); // jmp entry
    code
}

struct Sites;

impl LockOpSites for Sites {
    fn atomic_op(&self, next_ip: u64) -> Option<LockOp> {
        let acquire = match next_ip - ENTRY {
            0x21 => true,
            0x3e => false,
            _ => return None,
        };
        Some(LockOp {
            acquire,
            mode: GoLockMode::Write,
            field: 0,
            conditional: false,
        })
    }

    fn call_op(&self, target: u64) -> Option<LockOp> {
        (target == LOCK_SLOW).then_some(LockOp {
            acquire: true,
            mode: GoLockMode::Write,
            field: 0,
            conditional: false,
        })
    }

    fn in_acquisition(&self, _ip: u64) -> bool {
        false
    }

    fn no_return(&self, _target: u64) -> bool {
        false
    }
}

fn receiver_hold() -> SlotHold {
    SlotHold {
        key: LockKey {
            base: LockBase::Slot(16),
            disp: 0,
        },
        mode: GoLockMode::Write,
    }
}

fn patched(at: u64, bytes: &[u8]) -> Vec<u8> {
    let mut code = method();
    let from = usize::try_from(at - ENTRY).unwrap();
    code[from..from + bytes.len()].copy_from_slice(bytes);
    code
}

/// Guards the core rule: between the lock and the unlock the receiver's spill slot names
/// a held lock; inside `lockSlow` (waiting) and after the unlock nothing is held. The
/// lock's own atomic reads `AX` from entry, the unlock the spill slot: both must be
/// recognised as the same lock.
#[test]
fn held_between_lock_and_unlock_only() {
    let flow = analyze_function(&method(), ENTRY, &Sites).unwrap();
    let ops = flow.lock_ops();
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert!(
        ops.iter().all(|(_, _, k)| *k == Some(receiver_hold().key)),
        "{ops:?}"
    );
    assert_eq!(flow.holds_at(HELD_RET).holds, vec![receiver_hold()]);
    let waiting = flow.holds_at(WAIT_RET);
    assert_eq!(waiting.holds, vec![]);
    assert!(!waiting.acquiring_unresolved);
    assert_eq!(flow.holds_at(AFTER_RET).holds, vec![]);
    // Not a call return address.
    assert!(!flow.is_call_return(HELD_RET + 1));
    assert_eq!(flow.holds_at(HELD_RET + 5).holds, vec![]);
}

/// Guards against trusting a slot written between the frame's call and the unlock: the
/// unlock then releases whatever was stored, not what the frame held.
#[test]
fn slot_overwritten_before_the_unlock_is_no_evidence() {
    // mov [rsp+0x30], rbx in place of mov ebx, -1.
    let code = patched(ENTRY + 0x30, &[0x48, 0x89, 0x5c, 0x24, 0x30]);
    let flow = analyze_function(&code, ENTRY, &Sites).unwrap();
    assert_eq!(flow.holds_at(HELD_RET).holds, vec![]);
}

/// Guards against a slot whose address escapes into a register (it may be written
/// through it, by the function or a callee).
#[test]
fn address_taken_slot_is_no_evidence() {
    // lea rdi, [rsp+0x30] in place of mov ebx, -1.
    let code = patched(ENTRY + 0x30, &[0x48, 0x8d, 0x7c, 0x24, 0x30]);
    let flow = analyze_function(&code, ENTRY, &Sites).unwrap();
    assert_eq!(flow.holds_at(HELD_RET).holds, vec![]);
}

/// Guards against guessing successors: an indirect jump makes the function unanalysable.
#[test]
fn indirect_jump_is_unanalysable() {
    // jmp rax; nop; nop; nop in place of the call after the unlock.
    let code = patched(ENTRY + 0x3e, &[0xff, 0xe0, 0x90, 0x90, 0x90]);
    assert_eq!(
        analyze_function(&code, ENTRY, &Sites).err(),
        Some(Unanalysable::IndirectJump)
    );
}

/// Guards against a path that takes the lock again before its release (a loop that
/// re-locks, or an unlocked stretch): a jump from after the held call back to the lock.
#[test]
fn path_reacquiring_first_is_no_evidence() {
    // jmp 0x1013 (rel8 = 0x13 - 0x32 = -0x1f) in place of mov ebx, -1.
    let code = patched(ENTRY + 0x30, &[0xeb, 0xe1, 0x90, 0x90, 0x90]);
    let flow = analyze_function(&code, ENTRY, &Sites).unwrap();
    assert_eq!(flow.holds_at(HELD_RET).holds, vec![]);
}

/// Guards against functions with no frame pointer: nothing to locate slots with.
#[test]
fn frameless_function_is_unanalysable() {
    let code = [0x48, 0x89, 0xc2, 0xc3]; // mov rdx, rax; ret
    assert_eq!(
        analyze_function(&code, ENTRY, &Sites).err(),
        Some(Unanalysable::NoFrame)
    );
}

/// Out-of-line lock calls only: 0x5000 read-locks, 0x6000 read-unlocks.
struct CallSites;
impl LockOpSites for CallSites {
    fn atomic_op(&self, _: u64) -> Option<LockOp> {
        None
    }
    fn call_op(&self, target: u64) -> Option<LockOp> {
        let acquire = match target {
            0x5000 => true,
            0x6000 => false,
            _ => return None,
        };
        Some(LockOp {
            acquire,
            mode: GoLockMode::Read,
            field: 0,
            conditional: false,
        })
    }
    fn in_acquisition(&self, _: u64) -> bool {
        false
    }
    fn no_return(&self, _: u64) -> bool {
        false
    }
}

/// Guards the Go 1.19 frame (`SUBQ $n, SP; MOVQ BP, n-8(SP); LEAQ n-8(SP), BP`): an
/// `SP`-relative slot maps to the same `BP`-relative slot as in the `PUSHQ BP` frame.
#[test]
fn go119_frame_maps_sp_slots_to_bp() {
    let mut code = vec![
        0x48, 0x83, 0xec, 0x28, // sub rsp, 0x28
        0x48, 0x89, 0x6c, 0x24, 0x20, // mov [rsp+0x20], rbp
        0x48, 0x8d, 0x6c, 0x24, 0x20, // lea rbp, [rsp+0x20]
        0x48, 0x89, 0x44, 0x24, 0x30, // mov [rsp+0x30], rax
    ];
    // 0x13: lock: mov rax, [rsp+0x30]; call lock-ish (acquire via call)
    code.extend([0x48, 0x8b, 0x44, 0x24, 0x30]);
    code.extend(call(ENTRY + 0x18, 0x5000));
    code.extend(call(ENTRY + 0x1d, WORK)); // ret 0x22: held
    code.extend([0x48, 0x8b, 0x44, 0x24, 0x30]);
    code.extend(call(ENTRY + 0x27, 0x6000)); // unlock call
    code.extend([0x48, 0x8b, 0x6c, 0x24, 0x20, 0x48, 0x83, 0xc4, 0x28, 0xc3]);
    let flow = analyze_function(&code, ENTRY, &CallSites).unwrap();
    let mut want = receiver_hold();
    want.mode = GoLockMode::Read;
    assert_eq!(flow.holds_at(ENTRY + 0x22).holds, vec![want]);
    assert_eq!(flow.holds_at(ENTRY + 0x1d).holds, vec![]);
}
