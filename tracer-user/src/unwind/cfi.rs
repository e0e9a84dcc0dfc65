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

/// Unwinds from `ip` with stack pointer `sp` over `words` (the stack from `sp` upwards),
/// with `rule_at` giving the rules of a code address (`None`: none usable). A return
/// address is looked up one byte before itself: it follows the call, which may be a
/// function's last instruction (a call to a noreturn function), so the byte at the
/// address itself can belong to the next function.
pub fn walk(
    ip: u64,
    sp: u64,
    words: &[u64],
    rule_at: &mut dyn FnMut(u64) -> Option<FrameRule>,
) -> CfiWalk {
    let mut ips = vec![ip];
    let (mut pc, mut rsp, mut rbp): (u64, u64, Option<u64>) = (ip, sp, None);
    let end = loop {
        if ips.len() >= MAX_CFI_FRAMES {
            break WalkEnd::TooDeep;
        }
        let lookup = if ips.len() == 1 {
            pc
        } else {
            pc.wrapping_sub(1)
        };
        let Some(rule) = rule_at(lookup) else {
            break WalkEnd::NoRule;
        };
        let base = match rule.cfa_base {
            CfaBase::Rsp => rsp,
            CfaBase::Rbp => match rbp {
                Some(rbp) => rbp,
                None => break WalkEnd::NeedsRbp,
            },
        };
        let Some(cfa) = base.checked_add_signed(rule.cfa_offset) else {
            break WalkEnd::NotUpward;
        };
        let return_slot = match rule.return_at {
            ReturnAt::Outermost => break WalkEnd::Outermost,
            ReturnAt::CfaOffset(offset) => cfa.checked_add_signed(offset),
        };
        let Some(return_address) = return_slot.and_then(|slot| word_at(sp, words, slot)) else {
            break WalkEnd::PastWindow;
        };
        if cfa <= rsp {
            break WalkEnd::NotUpward;
        }
        rbp = match rule.rbp_at {
            SavedAt::Unchanged => rbp,
            SavedAt::CfaOffset(offset) => cfa
                .checked_add_signed(offset)
                .and_then(|slot| word_at(sp, words, slot)),
            SavedAt::Unknown => None,
        };
        if return_address == 0 {
            // Some outermost frames end the chain with a zero return address instead.
            break WalkEnd::Outermost;
        }
        ips.push(return_address);
        pc = return_address;
        rsp = cfa;
    };
    CfiWalk { ips, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SP: u64 = 0x7ffe_0000;

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
        let walk = walk(0x1000, SP, &words, &mut rules);
        assert_eq!(walk.ips, [0x1000, 0x2005, 0x3005, 0x4005]);
        assert_eq!(walk.end, WalkEnd::Outermost);
    }

    /// Guards the stops the caller continues from: an `rbp`-based frame when no frame
    /// saved `rbp`, a return address past the window, code without CFI.
    #[test]
    fn stops_where_the_rules_or_the_window_end() {
        let words = [0xdead, 0x2005, 0x3005];
        let fp_function = FrameRule {
            cfa_base: CfaBase::Rbp,
            cfa_offset: 16,
            return_at: ReturnAt::CfaOffset(-8),
            rbp_at: SavedAt::CfaOffset(-16),
        };
        let needs_rbp = walk(0x1000, SP, &words, &mut |addr| match addr {
            0x1000 => Some(rsp_frame(16)),
            _ => Some(fp_function),
        });
        assert_eq!(needs_rbp.ips, [0x1000, 0x2005]);
        assert_eq!(needs_rbp.end, WalkEnd::NeedsRbp);
        let past = walk(0x1000, SP, &words, &mut |_| Some(rsp_frame(64)));
        assert_eq!(past.ips, [0x1000]);
        assert_eq!(past.end, WalkEnd::PastWindow);
        let no_cfi = walk(0x1000, SP, &words, &mut |_| None);
        assert_eq!((no_cfi.ips.len(), no_cfi.end), (1, WalkEnd::NoRule));
        // A rule that would not move up the stack ends the walk instead of looping.
        let stuck = walk(0x1000, SP, &words, &mut |_| Some(rsp_frame(0)));
        assert_eq!(stuck.end, WalkEnd::PastWindow);
        let backwards = FrameRule {
            cfa_offset: -8,
            return_at: ReturnAt::CfaOffset(8),
            ..rsp_frame(0)
        };
        let looping = walk(0x1000, SP, &[0x1001, 0x1001], &mut |_| Some(backwards));
        assert_eq!(looping.end, WalkEnd::NotUpward);
    }
}
