//! Stack recovery that copes with code built without frame pointers (glibc among it).
//!
//! The kernel's frame-pointer walk (`bpf_get_stackid`) from inside a futex call lands in
//! the first frame that keeps a frame pointer and so skips `pthread_mutex_lock` and the
//! application function that called it: the very frame a user needs. Those return
//! addresses lie just above the user stack pointer, in the window the kernel copies. A
//! word of that window is taken for a return address when it points into executable
//! code right after a call instruction. Pure: the caller supplies the code bytes.

mod code_check;

pub use self::code_check::CodeCheck;

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

/// Innermost-first instruction pointers for a wait: the instruction pointer, then every
/// return address found in the stack window (in stack order), then the frame-pointer
/// chain's remaining frames not already listed.
pub fn merge_frames(
    ip: u64,
    window: &[u64],
    fp_chain: &[u64],
    is_return_address: &mut dyn FnMut(u64) -> bool,
) -> Vec<u64> {
    let mut frames = Vec::with_capacity(window.len() + fp_chain.len());
    let first = if ip != 0 {
        Some(ip)
    } else {
        fp_chain.first().copied()
    };
    frames.extend(first);
    for &word in window {
        if frames.last() != Some(&word) && is_return_address(word) {
            frames.push(word);
        }
    }
    for &ip in fp_chain.iter().skip(1) {
        if !frames.contains(&ip) {
            frames.push(ip);
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
        let frames = merge_frames(ip, &window, &fp_chain, &mut |addr| code.contains(&addr));
        assert_eq!(
            frames,
            vec![ip, 0x7f00_0482, 0x5555_0232, 0x5555_02f2, 0x7f00_51f5]
        );
    }

    #[test]
    fn merge_without_window_or_ip_falls_back_to_the_chain() {
        let frames = merge_frames(0, &[], &[1, 2, 3], &mut |_| true);
        assert_eq!(frames, vec![1, 2, 3]);
        assert!(merge_frames(0, &[], &[], &mut |_| true).is_empty());
    }
}
