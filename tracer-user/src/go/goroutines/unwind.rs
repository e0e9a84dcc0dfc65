//! Frame-pointer unwinding of a goroutine that is not running, from the context the
//! scheduler saved in its `g.sched`.
//!
//! Go on amd64 keeps frame pointers: each function's prologue pushes the caller's `BP`
//! and points `BP` at it, so in a frame whose frame pointer is `bp`, `[bp]` is the
//! caller's frame pointer and `[bp+8]` the return address into the caller. A parked
//! goroutine's `sched.pc` is the return address into `runtime.gopark` (saved by
//! `mcall`, which has no frame) and `sched.bp` is `gopark`'s frame pointer.
use crate::target::TargetProcess;

/// One frame of a goroutine's stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoFramePointer {
    /// A return address (runtime address) in the frame's function; frame 0's is the pc
    /// the scheduler saved, also a return address for a parked goroutine. Look up
    /// `pc - 1` to name the call.
    pub pc: u64,
    /// The frame's frame pointer: the address of the saved caller frame pointer, the
    /// return address above it. For the outermost frame found it may lie outside the
    /// stack (0 for a goroutine's first function, which has no caller).
    pub bp: u64,
}

/// Most frames unwound per goroutine: deeper stacks are cut (a lock wait sits a few
/// frames above `gopark`).
pub const MAX_FRAMES: usize = 64;

/// Unwinds from `start` along the frame-pointer chain of a goroutine whose stack is
/// `[stack_lo, stack_hi)`, keeping frames whose pc `is_code` accepts. It stops at a pc
/// outside the code, at a frame pointer outside the stack or not above the previous
/// one (the chain must climb toward `stack_hi`), at an unreadable word, or after
/// `max_frames`.
pub fn unwind_frame_pointers(
    process: &dyn TargetProcess,
    start: GoFramePointer,
    stack_lo: u64,
    stack_hi: u64,
    is_code: impl Fn(u64) -> bool,
    max_frames: usize,
) -> Vec<GoFramePointer> {
    let mut frames = Vec::new();
    let mut frame = start;
    while frames.len() < max_frames && is_code(frame.pc) {
        frames.push(frame);
        let in_stack =
            frame.bp >= stack_lo && frame.bp.checked_add(16).is_some_and(|top| top <= stack_hi);
        if !in_stack {
            break;
        }
        let mut words = [0u8; 16];
        if !process.read_exact(frame.bp, &mut words) {
            break;
        }
        let (saved_bp, ret) = words.split_at(8);
        let caller_bp = u64::from_ne_bytes(saved_bp.try_into().unwrap_or_default());
        let caller_pc = u64::from_ne_bytes(ret.try_into().unwrap_or_default());
        // A caller frame pointer at or below this one would loop or walk off the stack;
        // 0 marks the goroutine's first function, whose return address is still kept.
        if caller_bp != 0 && caller_bp <= frame.bp {
            break;
        }
        frame = GoFramePointer {
            pc: caller_pc,
            bp: caller_bp,
        };
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::fake::FakeProcess;

    const LO: u64 = 0xc000_1000;
    const HI: u64 = 0xc000_2000;

    fn code(pc: u64) -> bool {
        (0x40_0000..0x50_0000).contains(&pc)
    }

    /// A stack with frames at `bps`, each linking to the next with return address
    /// `pcs[i]`; the last links to `last_bp`.
    fn stack(links: &[(u64, u64, u64)]) -> FakeProcess {
        let mut fake = FakeProcess::new(1).region(
            LO,
            vec![0; usize::try_from(HI - LO).unwrap()],
            "rw-p",
            None,
        );
        for &(bp, caller_bp, ret) in links {
            fake = fake
                .poke(bp, &caller_bp.to_ne_bytes())
                .poke(bp + 8, &ret.to_ne_bytes());
        }
        fake
    }

    /// Guards the chain walk itself: each caller's pc and frame pointer come from
    /// `[bp+8]` and `[bp]`, the goroutine's first function (saved bp 0) is kept with its
    /// return address into `goexit`, and nothing is read past it.
    #[test]
    fn walks_the_chain_to_the_first_function() {
        let fake = stack(&[
            (LO + 0x100, LO + 0x180, 0x40_1001),
            (LO + 0x180, LO + 0x300, 0x40_2002),
            (LO + 0x300, 0, 0x40_3003),
        ]);
        let start = GoFramePointer {
            pc: 0x40_0500,
            bp: LO + 0x100,
        };
        let frames = unwind_frame_pointers(&fake, start, LO, HI, code, MAX_FRAMES);
        let got: Vec<(u64, u64)> = frames.iter().map(|f| (f.pc, f.bp)).collect();
        assert_eq!(
            got,
            [
                (0x40_0500, LO + 0x100),
                (0x40_1001, LO + 0x180),
                (0x40_2002, LO + 0x300),
                (0x40_3003, 0),
            ]
        );
    }

    /// Guards the stops: a frame pointer that does not climb (a loop), one that leaves
    /// the stack, a pc outside the code, and the frame cap.
    #[test]
    fn stops_on_bad_links_and_at_the_cap() {
        let start = GoFramePointer {
            pc: 0x40_0500,
            bp: LO + 0x100,
        };
        let looping = stack(&[
            (LO + 0x100, LO + 0x180, 0x40_1001),
            (LO + 0x180, LO + 0x100, 0x40_2002),
        ]);
        assert_eq!(
            unwind_frame_pointers(&looping, start, LO, HI, code, MAX_FRAMES).len(),
            2
        );
        let leaves = stack(&[(LO + 0x100, HI + 0x100, 0x40_1001)]);
        let frames = unwind_frame_pointers(&leaves, start, LO, HI, code, MAX_FRAMES);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].bp, HI + 0x100);
        let not_code = stack(&[(LO + 0x100, LO + 0x180, 0x90_0000)]);
        assert_eq!(
            unwind_frame_pointers(&not_code, start, LO, HI, code, MAX_FRAMES).len(),
            1
        );
        let deep: Vec<(u64, u64, u64)> = (0..100)
            .map(|i| (LO + 0x100 + i * 0x10, LO + 0x110 + i * 0x10, 0x40_1000 + i))
            .collect();
        let deep = stack(&deep);
        assert_eq!(
            unwind_frame_pointers(&deep, start, LO, HI, code, 5).len(),
            5
        );
        let outside = GoFramePointer {
            pc: 0x90_0000,
            bp: LO + 0x100,
        };
        assert!(unwind_frame_pointers(&deep, outside, LO, HI, code, 5).is_empty());
    }
}
