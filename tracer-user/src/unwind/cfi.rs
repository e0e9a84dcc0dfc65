//! Stack unwinding by call frame information (CFI, `.eh_frame`) over a copy of the top of
//! a user stack, as `perf --call-graph dwarf` does: for each frame the object's CFI gives
//! the canonical frame address (CFA) from `rsp` or `rbp`, where the return address and the
//! caller's `rbp` were saved; the caller's `rsp` is the CFA. Pure: the caller supplies the
//! stack words and the rules ([`FrameRule`], from `unwind::eh_frame`) of each address.
//!
//! Why not the scan of every word that follows a call: a stack slot left over from an
//! earlier call (a `printf` before the wait, a noreturn call's address at the end of a
//! function) passes that test as well as a live return address does (issue 16: stale
//! frames such as `new_do_write` inside a timed-lock wait). CFI only reads the slots the
//! frames really use.
//!
//! Assumes x86-64: 8-byte words, the return address and registers saved on the stack.

/// The register a frame's CFA is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CfaBase {
    Rsp,
    Rbp,
}

/// Where the caller's value of a register is, in the rules of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SavedAt {
    /// Not saved: the callee did not change it (or the CFI does not say).
    Unchanged,
    /// In the stack slot at this offset from the CFA.
    CfaOffset(i64),
    /// Somewhere this walk cannot follow (another register, an expression).
    Unknown,
}

/// The return address of a frame, in the rules of that frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnAt {
    /// In the stack slot at this offset from the CFA (-8 after a `call`).
    CfaOffset(i64),
    /// Nowhere: the outermost frame of the thread (`clone3`, `_start` mark it so).
    Outermost,
}

/// What the CFI of one code address says, reduced to what a walk with only `rsp` and
/// `rbp` can use: the CFA is `base + cfa_offset`, the return address and the caller's
/// `rbp` are where `return_at` and `rbp_at` say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRule {
    pub cfa_base: CfaBase,
    pub cfa_offset: i64,
    pub return_at: ReturnAt,
    pub rbp_at: SavedAt,
}

/// Why a CFI walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkEnd {
    /// The last frame is the thread's outermost: the stack is complete.
    Outermost,
    /// No usable rule for the last frame's code (no CFI there, or a rule this walk cannot
    /// follow, such as a CFA computed by an expression in a PLT stub).
    NoRule,
    /// The last frame's CFA is `rbp`-based and `rbp` is not known: the function keeps a
    /// frame pointer, which no frame below it saved on the stack (the record has no `rbp`).
    NeedsRbp,
    /// The last frame's return address (or its saved `rbp`) lies past the copied window.
    PastWindow,
    /// The unwound stack pointer did not move up the stack: corrupt rules or stack.
    NotUpward,
    /// [`MAX_CFI_FRAMES`] frames were unwound.
    TooDeep,
}

/// Most frames one walk yields (a guard against loops; real lock stacks are shallower).
pub const MAX_CFI_FRAMES: usize = 128;

/// The frames a CFI walk found: the instruction pointer, then return addresses, innermost
/// first, and why it stopped after the last one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CfiWalk {
    pub ips: Vec<u64>,
    pub end: WalkEnd,
    /// Whether `rbp` had to be found in the stack ([`walk`]'s `find_rbp`) for some frame.
    pub rbp_found_in_stack: bool,
}

/// What a walk asks of the code at an address.
pub trait FrameSource {
    /// The rules at code address `addr`; `None`: no usable CFI there.
    fn rule_at(&mut self, addr: u64) -> Option<FrameRule>;
    /// Whether `addr` points right after a call instruction in executable code.
    fn follows_call(&mut self, addr: u64) -> bool;
}

/// The stack words `words` (the first at `sp`, each 8 bytes above the previous), read at
/// `addr`; `None` outside them or misaligned.
fn word_at(sp: u64, words: &[u64], addr: u64) -> Option<u64> {
    let delta = addr.checked_sub(sp)?;
    if !delta.is_multiple_of(8) {
        return None;
    }
    words.get(usize::try_from(delta / 8).ok()?).copied()
}

/// The registers a walk knows in a frame.
#[derive(Clone, Copy, Debug)]
struct Regs {
    pc: u64,
    rsp: u64,
    rbp: Option<u64>,
}

/// The caller's registers from a frame's registers and rules (`pc`: the return address),
/// or why there is no caller to be had.
fn step(regs: Regs, rule: FrameRule, sp: u64, words: &[u64]) -> Result<Regs, WalkEnd> {
    let base = match rule.cfa_base {
        CfaBase::Rsp => regs.rsp,
        CfaBase::Rbp => regs.rbp.ok_or(WalkEnd::NeedsRbp)?,
    };
    let cfa = base
        .checked_add_signed(rule.cfa_offset)
        .filter(|&cfa| cfa > regs.rsp)
        .ok_or(WalkEnd::NotUpward)?;
    let return_slot = match rule.return_at {
        ReturnAt::Outermost => return Err(WalkEnd::Outermost),
        ReturnAt::CfaOffset(offset) => cfa.checked_add_signed(offset),
    };
    let return_address = return_slot
        .and_then(|slot| word_at(sp, words, slot))
        .ok_or(WalkEnd::PastWindow)?;
    if return_address == 0 {
        // Some outermost frames end the chain with a zero return address instead.
        return Err(WalkEnd::Outermost);
    }
    let rbp = match rule.rbp_at {
        SavedAt::Unchanged => regs.rbp,
        SavedAt::CfaOffset(offset) => cfa
            .checked_add_signed(offset)
            .and_then(|slot| word_at(sp, words, slot)),
        SavedAt::Unknown => None,
    };
    Ok(Regs {
        pc: return_address,
        rsp: cfa,
        rbp,
    })
}

/// How far above a frame's stack pointer its frame record (saved `rbp`, then the return
/// address) is looked for: the frame's locals lie in between.
const MAX_FRAME_RECORD_SEARCH_WORDS: u64 = 512;

/// The `rbp` of a frame at stack pointer `rsp` that keeps a frame pointer (its CFA is
/// `rbp + 16`) when no frame below it saved `rbp`: the address of its frame record, the
/// first pair of words above `rsp` that is a saved `rbp` followed by a return address
/// from which the caller unwinds by CFI to one more return address (or to its end).
/// A word that merely follows a call (a stale return address among the frame's locals)
/// is not enough: the caller it names must unwind from there.
fn find_frame_record(
    rsp: u64,
    sp: u64,
    words: &[u64],
    source: &mut dyn FrameSource,
) -> Option<u64> {
    for i in 0..MAX_FRAME_RECORD_SEARCH_WORDS {
        let record = rsp.checked_add(i * 8)?;
        let return_address = word_at(sp, words, record.checked_add(8)?)?;
        if return_address == 0 || !source.follows_call(return_address) {
            continue;
        }
        let caller = Regs {
            pc: return_address,
            rsp: record + 16,
            rbp: word_at(sp, words, record),
        };
        let Some(rule) = source.rule_at(return_address - 1) else {
            continue;
        };
        match step(caller, rule, sp, words) {
            Ok(next) if source.follows_call(next.pc) => return Some(record),
            Err(WalkEnd::Outermost | WalkEnd::PastWindow) => return Some(record),
            _ => {}
        }
    }
    None
}

/// Unwinds from `ip` with stack pointer `sp` over `words` (the stack from `sp` upwards),
/// with `source` giving the rules of a code address. A return address is looked up one
/// byte before itself: it follows the call, which may be a function's last instruction
/// (a call to a noreturn function), so the byte at the address itself can belong to the
/// next function.
///
/// With `find_rbp`, a frame whose CFA is `rbp`-based while `rbp` is unknown (the record
/// has no `rbp`, and no frame below saved it) has its frame record looked for in the
/// stack ([`find_frame_record`]) instead of ending the walk: for stacks with no
/// frame-pointer chain from the kernel to continue them (threads found blocked at attach,
/// stacks read again for a deadlock).
pub fn walk(
    ip: u64,
    sp: u64,
    words: &[u64],
    source: &mut dyn FrameSource,
    find_rbp: bool,
) -> CfiWalk {
    let mut ips = vec![ip];
    let mut rbp_found_in_stack = false;
    let mut regs = Regs {
        pc: ip,
        rsp: sp,
        rbp: None,
    };
    let end = loop {
        if ips.len() >= MAX_CFI_FRAMES {
            break WalkEnd::TooDeep;
        }
        let lookup = if ips.len() == 1 {
            regs.pc
        } else {
            regs.pc.wrapping_sub(1)
        };
        let Some(rule) = source.rule_at(lookup) else {
            break WalkEnd::NoRule;
        };
        if rule.cfa_base == CfaBase::Rbp && regs.rbp.is_none() && find_rbp {
            regs.rbp = find_frame_record(regs.rsp, sp, words, source);
            rbp_found_in_stack |= regs.rbp.is_some();
        }
        match step(regs, rule, sp, words) {
            Ok(caller) => {
                ips.push(caller.pc);
                regs = caller;
            }
            Err(end) => break end,
        }
    };
    CfiWalk {
        ips,
        end,
        rbp_found_in_stack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SP: u64 = 0x7ffe_0000;

    /// Rules from a closure; the addresses in `returns` follow calls.
    struct Code<R> {
        rules: R,
        returns: Vec<u64>,
    }

    impl<R: FnMut(u64) -> Option<FrameRule>> FrameSource for Code<R> {
        fn rule_at(&mut self, addr: u64) -> Option<FrameRule> {
            (self.rules)(addr)
        }

        fn follows_call(&mut self, addr: u64) -> bool {
            self.returns.contains(&addr)
        }
    }

    fn code<R: FnMut(u64) -> Option<FrameRule>>(rules: R) -> Code<R> {
        Code {
            rules,
            returns: Vec::new(),
        }
    }

    fn fp_function() -> FrameRule {
        FrameRule {
            cfa_base: CfaBase::Rbp,
            cfa_offset: 16,
            return_at: ReturnAt::CfaOffset(-8),
            rbp_at: SavedAt::CfaOffset(-16),
        }
    }

    fn rsp_frame(cfa_offset: i64) -> FrameRule {
        FrameRule {
            cfa_base: CfaBase::Rsp,
            cfa_offset,
            return_at: ReturnAt::CfaOffset(-8),
            rbp_at: SavedAt::Unchanged,
        }
    }

    /// Guards the walk's arithmetic: CFA from `rsp`, return address at CFA-8, next `rsp`
    /// the CFA; an `rbp`-based frame after a frame that saved `rbp`; the outermost frame.
    #[test]
    fn walks_rsp_and_rbp_frames_to_the_outermost() {
        // Frame 0 at ip 0x1000: CFA = rsp+16 (one word of locals), RA at sp+8.
        // Frame 1 (ret 0x2005): saves rbp at CFA-16; CFA = rsp+32; RA at sp+16+24.
        // Frame 2 (ret 0x3005): CFA = rbp+16, rbp at CFA-16 (a frame-pointer function).
        // Frame 3 (ret 0x4005): outermost.
        let frame2_rbp = SP + 64;
        let words = [
            0xdead,     // sp+0: local of frame 0
            0x2005,     // sp+8: RA of frame 0
            0x1111,     // sp+16: frame 1's locals
            0x5005,     // sp+24: a stale return address: never a frame
            frame2_rbp, // sp+32: frame 1 saved rbp (= frame 2's rbp)
            0x3005,     // sp+40: RA of frame 1
            0x2222,     // sp+48
            0x6005,     // sp+56: another stale one
            0,          // sp+64: frame 2's saved rbp
            0x4005,     // sp+72: RA of frame 2
        ];
        let mut rules = |addr: u64| match addr {
            0x1000 => Some(rsp_frame(16)),
            0x2004 => Some(FrameRule {
                rbp_at: SavedAt::CfaOffset(-16),
                ..rsp_frame(32)
            }),
            0x3004 => Some(FrameRule {
                cfa_base: CfaBase::Rbp,
                cfa_offset: 16,
                return_at: ReturnAt::CfaOffset(-8),
                rbp_at: SavedAt::CfaOffset(-16),
            }),
            0x4004 => Some(FrameRule {
                return_at: ReturnAt::Outermost,
                ..rsp_frame(8)
            }),
            _ => None,
        };
        let walk = walk(0x1000, SP, &words, &mut code(&mut rules), false);
        assert_eq!(walk.ips, [0x1000, 0x2005, 0x3005, 0x4005]);
        assert_eq!(walk.end, WalkEnd::Outermost);
    }

    /// Guards the stops the caller continues from: an `rbp`-based frame when no frame
    /// saved `rbp`, a return address past the window, code without CFI.
    #[test]
    fn stops_where_the_rules_or_the_window_end() {
        let words = [0xdead, 0x2005, 0x3005];
        let rules = |addr| match addr {
            0x1000 => Some(rsp_frame(16)),
            _ => Some(fp_function()),
        };
        let needs_rbp = walk(0x1000, SP, &words, &mut code(rules), false);
        assert_eq!(needs_rbp.ips, [0x1000, 0x2005]);
        assert_eq!(needs_rbp.end, WalkEnd::NeedsRbp);
        let past = walk(
            0x1000,
            SP,
            &words,
            &mut code(|_| Some(rsp_frame(64))),
            false,
        );
        assert_eq!(past.ips, [0x1000]);
        assert_eq!(past.end, WalkEnd::PastWindow);
        let no_cfi = walk(0x1000, SP, &words, &mut code(|_| None), false);
        assert_eq!((no_cfi.ips.len(), no_cfi.end), (1, WalkEnd::NoRule));
        // A rule that would not move up the stack ends the walk instead of looping.
        let stuck = walk(0x1000, SP, &words, &mut code(|_| Some(rsp_frame(0))), false);
        assert_eq!(stuck.end, WalkEnd::NotUpward);
        let backwards = FrameRule {
            cfa_offset: -8,
            return_at: ReturnAt::CfaOffset(8),
            ..rsp_frame(0)
        };
        let looping = walk(
            0x1000,
            SP,
            &[0x1001, 0x1001],
            &mut code(|_| Some(backwards)),
            false,
        );
        assert_eq!(looping.end, WalkEnd::NotUpward);
    }

    /// Guards the deadlock stacks of programs with frame pointers when the record has no
    /// `rbp` (threads found blocked at attach, stacks read again: no kernel chain): the
    /// frame record of the first frame-pointer function is found in the stack, past a
    /// stale return address among its locals whose caller does not unwind from there,
    /// and the walk goes on to the outermost frame. Without `find_rbp` it stops there.
    #[test]
    fn the_frame_record_of_a_frame_pointer_function_is_found_in_the_stack() {
        let words = [
            0xdead,  // sp+0: frame 0's local
            0x2005,  // sp+8: RA of frame 0
            0x1111,  // sp+16: frame 1's local
            0x7005,  // sp+24: a stale return address among frame 1's locals
            SP + 64, // sp+32: frame 1's record: saved rbp
            0x3005,  // sp+40: RA of frame 1
            0x2222,  // sp+48: frame 2's local
            0x3333,  // sp+56
            0,       // sp+64: frame 2's record: saved rbp
            0x4005,  // sp+72: RA of frame 2
        ];
        let rules = |addr| match addr {
            0x1000 => Some(rsp_frame(16)),
            0x2004 | 0x3004 | 0x7004 => Some(fp_function()),
            0x4004 => Some(FrameRule {
                return_at: ReturnAt::Outermost,
                ..rsp_frame(8)
            }),
            _ => None,
        };
        let mut source = Code {
            rules,
            returns: vec![0x2005, 0x3005, 0x4005, 0x7005],
        };
        let found = walk(0x1000, SP, &words, &mut source, true);
        assert_eq!(found.ips, [0x1000, 0x2005, 0x3005, 0x4005]);
        assert_eq!(found.end, WalkEnd::Outermost);
        assert!(found.rbp_found_in_stack);
        let without = walk(0x1000, SP, &words, &mut source, false);
        assert_eq!(
            (without.ips, without.end),
            (vec![0x1000, 0x2005], WalkEnd::NeedsRbp)
        );
    }
}
