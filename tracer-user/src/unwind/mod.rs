//! Stack recovery that copes with code built without frame pointers (glibc among it).
//!
//! The kernel's frame-pointer walk (`bpf_get_stackid`) from inside a futex call lands in
//! the first frame that keeps a frame pointer and so skips `pthread_mutex_lock` and the
//! application function that called it: the very frame a user needs. Those return
//! addresses lie just above the user stack pointer, in the window the kernel copies.
//! [`cfi`] unwinds that window with the objects' call frame information
//! ([`frames_from_cfi`]); where it cannot go on, the kernel's chain continues. Only when
//! CFI finds nothing is every word of the window that points into executable code right
//! after a call instruction taken for a return address ([`merge_frames`]), stale ones
//! included. Pure: the caller supplies the code bytes and the rules.

pub mod cfi;
mod code_check;
pub mod eh_frame;

pub use self::code_check::{CodeCheck, CodeReader};

/// Longest x86-64 call encoding we recognise: `ff /2` with SIB and disp32 (7 bytes).
pub const CALL_LOOKBEHIND: usize = 7;

/// Whether `code` (the bytes just before a candidate return address, at most
/// [`CALL_LOOKBEHIND`] of them, ending right at the address) ends with a call.
#[must_use]
pub fn ends_with_call(code: &[u8]) -> bool {
    let n = code.len();
    // call rel32: e8 xx xx xx xx
    if n >= 5 && code[n - 5] == 0xe8 {
        return true;
    }
    // call r/m64: ff /2, with the ModRM (and SIB, displacement) deciding the length.
    (2..=CALL_LOOKBEHIND.min(n)).any(|len| {
        let start = n - len;
        code[start] == 0xff && {
            let modrm = code[start + 1];
            (modrm >> 3) & 7 == 2
                && indirect_call_len(modrm, code.get(start + 2).copied()) == Some(len)
        }
    })
}

/// Length of an `ff /2` instruction given its `ModRM` byte and the byte after it (SIB).
fn indirect_call_len(modrm: u8, sib: Option<u8>) -> Option<usize> {
    let (mode, rm) = (modrm >> 6, modrm & 7);
    let sib_len = usize::from(mode != 3 && rm == 4);
    let disp = match mode {
        0 if rm == 5 => 4,
        0 if rm == 4 => match sib {
            // SIB with base = rbp and mod 0 means disp32 and no base.
            Some(sib) if sib & 7 == 5 => 4,
            Some(_) => 0,
            None => return None,
        },
        0 | 3 => 0,
        1 => 1,
        _ => 4,
    };
    Some(2 + sib_len + disp)
}

/// Most frames [`merge_frames`] takes from a window: a stack read from a blocked thread
/// (16 KB, for a deadlock's report) holds many more words that follow calls than frames,
/// past the thread's outermost frame too. The kernel's window holds this many words.
pub const MAX_SCANNED_FRAMES: usize = tracer_common::STACK_WINDOW_WORDS;

/// What the code before a candidate return address says of it: `Some(true)` right after a
/// call instruction, `Some(false)` not (or not in executable code), `None` when that code
/// could not be read from the target or from the mapped file.
pub type ReturnCheck<'a> = dyn FnMut(u64) -> Option<bool> + 'a;

/// One frame of an unwound stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnwoundFrame {
    /// The instruction pointer (for every frame but the first, a return address).
    pub ip: u64,
    /// Whether the code before it could not be read to check that it follows a call: a
    /// word kept on the strength of pointing into executable code alone, which may be a
    /// stale return address or a function pointer (issue 16: `libc.so.6+0x1` frames in
    /// reports made after the target exited). Reports mark such frames with `?`.
    pub uncertain: bool,
}

/// Innermost-first frames for a wait: the instruction pointer, then every return address
/// found in the stack window (in stack order, [`MAX_SCANNED_FRAMES`] at most), then the frame-pointer chain's remaining
/// frames not already listed.
///
/// Every frame but the first is checked with `check`: the kernel's frame-pointer walk
/// follows `rbp` through code that keeps none (glibc), and then yields whatever the
/// register pointed at: heap addresses (issue 16: `[heap]+0x58d50` frames) or other words
/// that are no return addresses. Those are dropped; what cannot be checked is kept,
/// marked uncertain.
pub fn merge_frames(
    ip: u64,
    window: &[u64],
    fp_chain: &[u64],
    check: &mut ReturnCheck<'_>,
) -> Vec<UnwoundFrame> {
    let mut frames: Vec<UnwoundFrame> = Vec::with_capacity(window.len() + fp_chain.len());
    let first = if ip != 0 {
        Some(ip)
    } else {
        fp_chain.first().copied()
    };
    frames.extend(first.map(|ip| UnwoundFrame {
        ip,
        uncertain: false,
    }));
    let mut push = |frames: &mut Vec<UnwoundFrame>, word: u64| match check(word) {
        Some(true) => frames.push(UnwoundFrame {
            ip: word,
            uncertain: false,
        }),
        None => frames.push(UnwoundFrame {
            ip: word,
            uncertain: true,
        }),
        Some(false) => {}
    };
    for &word in window {
        if frames.len() > MAX_SCANNED_FRAMES {
            break;
        }
        if frames.last().map(|f| f.ip) != Some(word) {
            push(&mut frames, word);
        }
    }
    for &ip in fp_chain.iter().skip(1) {
        if !frames.iter().any(|f| f.ip == ip) {
            push(&mut frames, ip);
        }
    }
    frames
}

/// Innermost-first frames for a wait from a CFI walk of its stack window ([`cfi::walk`]):
/// the walk's frames, then, unless the walk reached the
/// thread's outermost frame, the frame-pointer chain's frames not already listed (checked
/// with `check` as in [`merge_frames`]). The chain's frames after the instruction pointer
/// are the return addresses of the frames that keep `rbp`, from the innermost such
/// function's caller upwards: where a CFI walk stops for want of `rbp` or of stack, they
/// continue it.
///
/// When the walk found no frame beyond the instruction pointer (no CFI for the code of the
/// wait, an empty window), the window is scanned instead ([`merge_frames`]). Those frames
/// are not marked uncertain: they follow calls, as before CFI, and a stack that has no
/// CFI at its top has nothing better; the scan's known weakness (stale return addresses
/// in unused slots) is what the CFI walk removes wherever there is CFI.
pub fn frames_from_cfi(
    walk: &cfi::CfiWalk,
    window: &[u64],
    fp_chain: &[u64],
    check: &mut ReturnCheck<'_>,
) -> Vec<UnwoundFrame> {
    if walk.ips.len() <= 1 && walk.end != cfi::WalkEnd::Outermost {
        let ip = walk.ips.first().copied().unwrap_or(0);
        return merge_frames(ip, window, fp_chain, check);
    }
    let mut frames: Vec<UnwoundFrame> = walk
        .ips
        .iter()
        .map(|&ip| UnwoundFrame {
            ip,
            uncertain: false,
        })
        .collect();
    if walk.end == cfi::WalkEnd::Outermost {
        return frames;
    }
    for &ip in fp_chain.iter().skip(1) {
        if frames.iter().any(|f| f.ip == ip) {
            continue;
        }
        match check(ip) {
            Some(true) => frames.push(UnwoundFrame {
                ip,
                uncertain: false,
            }),
            None => frames.push(UnwoundFrame {
                ip,
                uncertain: true,
            }),
            Some(false) => {}
        }
    }
    frames
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn recognises_direct_and_indirect_calls() {
        // e8 rel32
        assert!(ends_with_call(&[0x90, 0x90, 0xe8, 1, 2, 3, 4]));
        // call *%rax (ff d0)
        assert!(ends_with_call(&[0x90, 0x90, 0x90, 0x90, 0x90, 0xff, 0xd0]));
        // call *0x10(%rbx) (ff 53 10)
        assert!(ends_with_call(&[0x90, 0x90, 0x90, 0x90, 0xff, 0x53, 0x10]));
        // call *0x12345678(%rip) (ff 15 disp32)
        assert!(ends_with_call(&[0x90, 0xff, 0x15, 0x78, 0x56, 0x34, 0x12]));
        // call *(%rsp) with SIB (ff 14 24)
        assert!(ends_with_call(&[0x90, 0x90, 0x90, 0x90, 0xff, 0x14, 0x24]));
        // call *0x8(%rsp) with SIB and disp8 (ff 54 24 08)
        assert!(ends_with_call(&[0x90, 0x90, 0x90, 0xff, 0x54, 0x24, 0x08]));
    }

    #[test]
    fn rejects_non_calls() {
        // jmp *%rax (ff e0): reg field 4, not 2
        assert!(!ends_with_call(&[0x90, 0x90, 0x90, 0x90, 0x90, 0xff, 0xe0]));
        // plain data / nops
        assert!(!ends_with_call(&[0x90; 7]));
        assert!(!ends_with_call(&[0, 0, 0, 0, 0, 0, 0]));
        // ff 15 with the wrong length (disp32 not complete before the address)
        assert!(!ends_with_call(&[0x90, 0x90, 0x90, 0xff, 0x15, 0x78, 0x56]));
        // too short to hold anything
        assert!(!ends_with_call(&[0xe8]));
    }

    #[test]
    fn merge_puts_window_frames_between_ip_and_the_frame_pointer_chain() {
        let ip = 0x7f00_0010;
        // From a futex wait: [ret into pthread_mutex_lock, junk, ret into app fn, saved rbp, ...]
        let window = [0x7f00_0482, 0x1234, 0x5555_0232, 0x7ffe_1000, 0x5555_02f2];
        let fp_chain = [ip, 0x5555_02f2, 0x7f00_51f5];
        let code = [0x7f00_0482, 0x5555_0232, 0x5555_02f2, 0x7f00_51f5];
        let frames = merge_frames(ip, &window, &fp_chain, &mut |addr| {
            Some(code.contains(&addr))
        });
        assert_eq!(
            ips(&frames),
            vec![ip, 0x7f00_0482, 0x5555_0232, 0x5555_02f2, 0x7f00_51f5]
        );
        assert!(frames.iter().all(|f| !f.uncertain));
    }

    fn ips(frames: &[UnwoundFrame]) -> Vec<u64> {
        frames.iter().map(|f| f.ip).collect()
    }

    #[test]
    fn merge_without_window_or_ip_falls_back_to_the_chain() {
        let frames = merge_frames(0, &[], &[1, 2, 3], &mut |_| Some(true));
        assert_eq!(ips(&frames), vec![1, 2, 3]);
        assert!(merge_frames(0, &[], &[], &mut |_| Some(true)).is_empty());
    }

    /// Guards issue 16's stale frames: a frame-pointer chain that walked through code
    /// without frame pointers yields heap addresses (`[heap]+0x58d50`), which must be
    /// dropped like any word that does not follow a call; a word whose code cannot be read
    /// (the target gone, no file) is kept, marked uncertain, never shown as certain.
    /// Checked to fail with the chain taken unchecked.
    #[test]
    fn unchecked_or_bogus_frames_are_dropped_or_marked() {
        let ip = 0x7f00_0010;
        let heap = 0x5555_6000_0d50;
        let fp_chain = [ip, 0x5555_02f2, heap, 0x7f00_51f5];
        let window = [0x7f00_0482, 0x7f00_9000];
        let frames = merge_frames(ip, &window, &fp_chain, &mut |addr| match addr {
            0x7f00_0482 | 0x5555_02f2 | 0x7f00_51f5 => Some(true),
            0x7f00_9000 => None,
            _ => Some(false),
        });
        assert_eq!(
            ips(&frames),
            vec![ip, 0x7f00_0482, 0x7f00_9000, 0x5555_02f2, 0x7f00_51f5]
        );
        let uncertain: Vec<u64> = frames
            .iter()
            .filter(|f| f.uncertain)
            .map(|f| f.ip)
            .collect();
        assert_eq!(uncertain, [0x7f00_9000]);
    }

    /// Guards how a CFI walk is completed: after a stop for want of `rbp` or of stack, the
    /// kernel's chain goes on from its first frame not yet listed (checked like any chain
    /// frame); after the outermost frame nothing is added (issue 16: a frame after
    /// `clone3`); a walk that found nothing beyond the ip falls back to the scan.
    #[test]
    fn cfi_frames_continue_with_the_chain_where_the_walk_stopped() {
        let ip = 0x7f00_0010;
        let stale = 0x5555_0500;
        let window = [0x7f00_0482, stale, 0x5555_0232];
        let chain = [ip, 0x5555_0232, 0x5555_02f2, 0xdead, 0x7f00_51f5];
        let mut check = |addr: u64| Some(addr != 0xdead);
        let stopped = cfi::CfiWalk {
            ips: vec![ip, 0x7f00_0482, 0x5555_0232],
            end: cfi::WalkEnd::NeedsRbp,
            rbp_found_in_stack: false,
        };
        assert_eq!(
            ips(&frames_from_cfi(&stopped, &window, &chain, &mut check)),
            [ip, 0x7f00_0482, 0x5555_0232, 0x5555_02f2, 0x7f00_51f5]
        );
        let complete = cfi::CfiWalk {
            end: cfi::WalkEnd::Outermost,
            ..stopped.clone()
        };
        assert_eq!(
            ips(&frames_from_cfi(&complete, &window, &chain, &mut check)),
            [ip, 0x7f00_0482, 0x5555_0232]
        );
        let nothing = cfi::CfiWalk {
            ips: vec![ip],
            end: cfi::WalkEnd::NoRule,
            rbp_found_in_stack: false,
        };
        let scanned = frames_from_cfi(&nothing, &window, &[], &mut check);
        assert_eq!(ips(&scanned), [ip, 0x7f00_0482, stale, 0x5555_0232]);
    }

    /// Guards the scan of a long stack read (a deadlock's, 16 KB): like the old scan of
    /// such reads, only the first [`MAX_SCANNED_FRAMES`] return addresses, not every word
    /// that follows a call up to the end of the read.
    #[test]
    fn the_scan_of_a_long_read_keeps_the_first_frames() {
        let window: Vec<u64> = (1..=200).map(|i| 0x5555_0000 + i * 16).collect();
        let frames = merge_frames(0x7f00_0010, &window, &[], &mut |_| Some(true));
        assert_eq!(frames.len(), 1 + MAX_SCANNED_FRAMES);
        assert_eq!(frames[1].ip, window[0]);
    }
}
