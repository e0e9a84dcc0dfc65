//! User stacks: where the stack behind a record's `stack_id` is kept ([`StackSlot`]),
//! the `stack_id`s that say why there is none, and which waits carry one
//! ([`StackSampler`]).
#[cfg(doc)]
use crate::{MAP_OVERFLOW_STACKS, MAP_STACKS};

/// Entries (and hash buckets) of [`MAP_STACKS`].
pub const STACKS_MAX_ENTRIES: u32 = 16 * 1024;
/// Entries (and hash buckets) of [`MAP_OVERFLOW_STACKS`]. Only stacks that collided in
/// [`MAP_STACKS`] land here, so a stack is lost only if it collides in both.
pub const OVERFLOW_STACKS_MAX_ENTRIES: u32 = 4 * 1024;

/// Where the stack behind a non-negative `stack_id` of a record is kept: ids below
/// [`STACKS_MAX_ENTRIES`] are ids in [`MAP_STACKS`]; an id in [`MAP_OVERFLOW_STACKS`] is
/// sent as `STACKS_MAX_ENTRIES` plus that id, so every record keeps one `i32` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackSlot {
    /// An id in [`MAP_STACKS`].
    Main(u32),
    /// An id in [`MAP_OVERFLOW_STACKS`].
    Overflow(u32),
}

impl StackSlot {
    /// The `stack_id` a record carries for an id in [`MAP_OVERFLOW_STACKS`].
    #[must_use]
    pub const fn overflow_stack_id(id: u32) -> u32 {
        STACKS_MAX_ENTRIES + id
    }

    /// The map and id behind a record's non-negative `stack_id`; `None` for ids outside
    /// both maps.
    #[must_use]
    pub const fn from_stack_id(stack_id: u32) -> Option<Self> {
        if stack_id < STACKS_MAX_ENTRIES {
            Some(Self::Main(stack_id))
        } else if stack_id - STACKS_MAX_ENTRIES < OVERFLOW_STACKS_MAX_ENTRIES {
            Some(Self::Overflow(stack_id - STACKS_MAX_ENTRIES))
        } else {
            None
        }
    }
}

/// `stack_id` when no stack was taken because the caller keeps no frame pointer (`rbp`
/// does not point into the stack just above the stack pointer): the kernel's walk would
/// have found only garbage, and the call site (a lock record's `call_site`, a wait's
/// stack window) locates the call. A negative errno (`ENOENT`) like the other "no stack"
/// values.
pub const STACK_ID_NO_FRAME_CHAIN: i32 = -2;

/// Of the sleeping futex waits a CPU sees on one futex word, one in this many carries its
/// stack (stack window and frame-pointer walk); the first wait on a word (the first since
/// another word took its sampler slot, [`StackSampler::slot_of`]) always does. Copying the window is paid on the lock's hand-over path; a hot lock needs
/// a sample of its waiters' stacks, not every one. A wait sent without a stack whose stack is wanted later (a deadlock) has
/// it read from the target's memory then: the thread is still blocked in the wait.
pub const STACK_SAMPLE_EVERY: u32 = 8;

/// `stack_id` of a sleeping wait sent without its stack ([`STACK_SAMPLE_EVERY`]); a
/// negative errno (`ENODATA`) like the other "no stack" values.
pub const STACK_ID_SAMPLED_OUT: i32 = -61;

/// Entries of [`MAP_STACK_SAMPLER`](crate::MAP_STACK_SAMPLER) per CPU: a CPU keeps the
/// run of this many futex words at once ([`StackSampler::slot_of`]), so threads that
/// alternate between a few hot locks are sampled per lock, not sent whole each time the
/// word changes (which, under `tracer serve`, would send every such wait with its lock
/// memory and stack instead of lean).
pub const STACK_SAMPLER_SLOTS: u32 = 8;

/// This CPU's run of sleeping waits on one futex word, in its slot of
/// [`MAP_STACK_SAMPLER`](crate::MAP_STACK_SAMPLER) ([`StackSampler::slot_of`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackSampler {
    /// The futex word of the last sleeping wait on this CPU.
    pub addr: u64,
    /// Waits on `addr` sent without a stack since the last one sent with it.
    pub skipped: u32,
    /// Explicit padding, always zero.
    pub pad: u32,
}
const _: () = assert!(core::mem::size_of::<StackSampler>() == 16);

impl StackSampler {
    /// The slot of futex word `addr` among a CPU's [`STACK_SAMPLER_SLOTS`]: a
    /// multiplicative hash, so words a fixed stride apart (mutexes in an array of
    /// structs) spread over the slots.
    #[inline]
    #[must_use]
    pub const fn slot_of(addr: u64) -> u32 {
        const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
        // The top 3 bits of the product (`STACK_SAMPLER_SLOTS` is 8).
        (addr.wrapping_mul(GOLDEN) >> 61) as u32
    }

    /// Whether the next sleeping wait, on futex word `addr`, carries its stack; updates
    /// the run. Plain logic shared by the kernel side and its unit test.
    #[inline]
    #[must_use]
    pub fn take(&mut self, addr: u64) -> bool {
        if self.addr == addr && self.skipped + 1 < STACK_SAMPLE_EVERY {
            self.skipped += 1;
            return false;
        }
        self.addr = addr;
        self.skipped = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_ids_of_both_maps_round_trip_and_others_are_refused() {
        assert_eq!(StackSlot::from_stack_id(0), Some(StackSlot::Main(0)));
        assert_eq!(
            StackSlot::from_stack_id(STACKS_MAX_ENTRIES - 1),
            Some(StackSlot::Main(STACKS_MAX_ENTRIES - 1))
        );
        for id in [0, 1, OVERFLOW_STACKS_MAX_ENTRIES - 1] {
            assert_eq!(
                StackSlot::from_stack_id(StackSlot::overflow_stack_id(id)),
                Some(StackSlot::Overflow(id))
            );
        }
        assert_eq!(
            StackSlot::from_stack_id(STACKS_MAX_ENTRIES + OVERFLOW_STACKS_MAX_ENTRIES),
            None
        );
        assert_eq!(StackSlot::from_stack_id(u32::MAX), None);
        // Every id fits the records' `i32` field.
        assert!(
            i32::try_from(StackSlot::overflow_stack_id(
                OVERFLOW_STACKS_MAX_ENTRIES - 1
            ))
            .is_ok()
        );
    }

    #[test]
    fn sampler_slots_cover_all_and_spread_strided_words() {
        const _: () = assert!(STACK_SAMPLER_SLOTS == 8, "slot_of keeps 3 bits");
        // Mutexes 40 bytes apart (an array of structs) and words 4 bytes apart.
        for stride in [4u64, 40, 64, 4096] {
            let mut seen = [false; STACK_SAMPLER_SLOTS as usize];
            for i in 0..64 {
                seen[StackSampler::slot_of(0x5555_0000 + i * stride) as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "stride {stride}: {seen:?}");
        }
        assert!((0..10_000u64).all(|a| StackSampler::slot_of(a * 8) < STACK_SAMPLER_SLOTS));
    }

    #[test]
    fn stack_sampler_takes_the_first_wait_on_a_word_then_one_in_every() {
        let mut sampler = StackSampler {
            addr: 0,
            skipped: 0,
            pad: 0,
        };
        let taken: usize = (0..STACK_SAMPLE_EVERY * 3)
            .filter(|_| sampler.take(0x1000))
            .count();
        assert_eq!(taken, 3, "one in {STACK_SAMPLE_EVERY} on a hot word");
        assert!(sampler.take(0x1000), "the run restarts after a taken wait");
        // A wait on another word, even in the middle of a run, is always taken, and so is
        // the next one back on the hot word.
        assert!(sampler.take(0x2000));
        assert!(sampler.take(0x1000));
        assert!(!sampler.take(0x1000));
    }
}
