//! What the dispatcher (`PROG_SWITCH_DISPATCH`) does with a served process's switch-out:
//! it draws the sampled sleeps itself, and tail-calls that process's program only for
//! a sleep it drew, a thread that may have a sleep to end, or an exit
//! ([`hand_off`]). On a lock-bound target most switch-outs are sleeps left out by the
//! sampling, of threads with nothing open: those then cost the dispatcher's draw, not a
//! tail call and the program's own checks (BENCHMARKS.md, "What is left is in the
//! kernel").

use crate::SWITCH_SLOTS;

/// `TASK_DEAD` in `sched_switch`'s `prev_state`: the thread's last switch-out.
const TASK_DEAD: u64 = 0x80;

/// How a thread leaves its CPU, from `sched_switch`'s `preempt` and `prev_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchOut {
    /// Its last switch-out: it exited.
    Exits,
    /// Still runnable: preempted, or leaving in state `TASK_RUNNING` (a `cond_resched`).
    Runnable,
    /// Going to sleep (in a futex wait or anything else).
    Sleeps,
}

impl SwitchOut {
    /// From `sched_switch(bool preempt, prev, next, unsigned int prev_state)`.
    #[must_use]
    #[inline]
    pub const fn of(preempt: bool, prev_state: u64) -> Self {
        let prev_state = prev_state & 0xffff_ffff;
        if prev_state & TASK_DEAD != 0 {
            Self::Exits
        } else if preempt || prev_state == 0 {
            Self::Runnable
        } else {
            Self::Sleeps
        }
    }
}

/// Which of a served process's two programs a switch-out goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandOff {
    /// A sleep the dispatcher drew: [`PROG_SCHED_SWITCH_DRAWN`](crate::PROG_SCHED_SWITCH_DRAWN)
    /// traces it (and ends the thread's last sleep first, if open).
    Drawn,
    /// Anything else the process's program must see:
    /// [`PROG_SCHED_SWITCH_ENDS`](crate::PROG_SCHED_SWITCH_ENDS) ends the thread's open
    /// sleep, or forgets an exited thread.
    Ends,
}

impl HandOff {
    /// The index in [`MAP_SWITCH_PROGRAMS`](crate::MAP_SWITCH_PROGRAMS) of this program
    /// of the process at dispatcher slot `slot`.
    #[must_use]
    #[inline]
    pub const fn program_index(self, slot: u32) -> u32 {
        match self {
            Self::Ends => slot,
            Self::Drawn => slot + SWITCH_SLOTS,
        }
    }
}

/// Slots of [`MAP_SWITCH_PROGRAMS`](crate::MAP_SWITCH_PROGRAMS): both programs of every
/// dispatcher slot.
pub const SWITCH_PROGRAM_SLOTS: u32 = 2 * SWITCH_SLOTS;

/// Which of a thread's voluntary switches a draw is asked about: the dispatcher draws a
/// sleep from the thread's count of voluntary switches (`task_struct.nvcsw`, which the
/// kernel counts up before `sched_switch` for every switch-out that is not a
/// preemption), so the same question asked again at a later switch-out tells whether the
/// thread's last sleep was drawn ([`crate::switch_draw`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoluntarySwitch {
    /// The count as it is at this switch-out: this one's, if it is a sleep; the last
    /// sleep's, if the thread was preempted since.
    This,
    /// The count less one: the last sleep's, if this switch-out is voluntary and
    /// another came between.
    Before,
}

/// Where the dispatcher hands a served thread's switch-out `out`, if anywhere.
///
/// `draws_new` is false while the dispatcher draws no new sleep (before it is detached,
/// `crate::switch_draws_new`): a sleep then goes no further, though the ends of those it
/// drew earlier still do. `drawn` answers the sampling's draw for one of the thread's
/// voluntary switches (true: a sleep there is traced). `may_have_open` says whether the thread may have a sleep to
/// end by its slot's count of open sleeps, for a process whose sleeps may have been drawn
/// under another period than the one `drawn` uses now (false otherwise: see
/// [`crate::switch_draw::SwitchDraw`]); it is asked only when nothing else hands the
/// switch-out on.
///
/// Every switch-out that follows a drawn sleep reaches the process's program (the
/// sleep's end is timed there), since the thread's count there is the sleep's own
/// (preempted since) or one more (a voluntary switch-out: a sleep, or one a pending signal
/// turned back to running); an exit always does (the thread's entry is removed there); a
/// sleep reaches it traced exactly when drawn.
#[inline]
pub fn hand_off(
    out: SwitchOut,
    draws_new: bool,
    drawn: impl Fn(VoluntarySwitch) -> bool,
    may_have_open: impl FnOnce() -> bool,
) -> Option<HandOff> {
    let hand_on = match out {
        SwitchOut::Exits => return Some(HandOff::Ends),
        // A sleep with no count since its own (a kernel that counted it as preempted)
        // is drawn or not as the one before: `Drawn` ends that one first.
        SwitchOut::Sleeps if draws_new && drawn(VoluntarySwitch::This) => {
            return Some(HandOff::Drawn);
        }
        SwitchOut::Sleeps => drawn(VoluntarySwitch::Before),
        SwitchOut::Runnable => drawn(VoluntarySwitch::This) || drawn(VoluntarySwitch::Before),
    };
    (hand_on || may_have_open()).then_some(HandOff::Ends)
}

#[cfg(test)]
mod tests {
    use core::cell::Cell;

    use super::*;

    /// `TASK_INTERRUPTIBLE`, a futex wait's state.
    const INTERRUPTIBLE: u64 = 0x1;

    #[test]
    fn switch_outs_are_told_apart_by_state_and_preemption() {
        assert_eq!(SwitchOut::of(false, INTERRUPTIBLE), SwitchOut::Sleeps);
        assert_eq!(SwitchOut::of(false, 0x2), SwitchOut::Sleeps);
        assert_eq!(SwitchOut::of(true, INTERRUPTIBLE), SwitchOut::Runnable);
        assert_eq!(SwitchOut::of(false, 0), SwitchOut::Runnable);
        assert_eq!(SwitchOut::of(false, TASK_DEAD), SwitchOut::Exits);
        // An exiting thread preempted on its way out still exits.
        assert_eq!(SwitchOut::of(true, TASK_DEAD), SwitchOut::Exits);
        // Only the lower 32 bits are the state (an `unsigned int` in a u64 argument).
        assert_eq!(SwitchOut::of(false, 1 << 40), SwitchOut::Runnable);
    }

    /// A draw that answers `this` for this switch's count and `before` for the one
    /// before.
    fn draws(this: bool, before: bool) -> impl Fn(VoluntarySwitch) -> bool {
        move |switch| match switch {
            VoluntarySwitch::This => this,
            VoluntarySwitch::Before => before,
        }
    }

    #[test]
    fn a_drawn_sleep_is_traced_and_an_undrawn_one_only_ends_what_was_drawn_or_counted() {
        assert_eq!(
            hand_off(SwitchOut::Sleeps, true, draws(true, false), || false),
            Some(HandOff::Drawn)
        );
        assert_eq!(
            hand_off(SwitchOut::Sleeps, true, draws(true, true), || true),
            Some(HandOff::Drawn)
        );
        // Drawing no new sleep: a drawn one is not traced, but an open one still ends.
        assert_eq!(
            hand_off(SwitchOut::Sleeps, false, draws(true, false), || false),
            None
        );
        assert_eq!(
            hand_off(SwitchOut::Sleeps, false, draws(true, true), || false),
            Some(HandOff::Ends)
        );
        assert_eq!(
            hand_off(SwitchOut::Runnable, false, draws(true, false), || false),
            Some(HandOff::Ends)
        );
        // The last sleep (one voluntary switch before this one) was drawn.
        assert_eq!(
            hand_off(SwitchOut::Sleeps, true, draws(false, true), || false),
            Some(HandOff::Ends)
        );
        assert_eq!(
            hand_off(SwitchOut::Sleeps, true, draws(false, false), || true),
            Some(HandOff::Ends)
        );
        assert_eq!(
            hand_off(SwitchOut::Sleeps, true, draws(false, false), || false),
            None
        );
    }

    #[test]
    fn a_runnable_thread_is_never_drawn_and_an_exit_always_handed_on() {
        // Preempted after a drawn sleep (no voluntary switch since), or a sleep a signal
        // turned back (one since): both end it.
        for (this, before) in [(true, false), (false, true), (true, true)] {
            assert_eq!(
                hand_off(SwitchOut::Runnable, true, draws(this, before), || false),
                Some(HandOff::Ends)
            );
        }
        assert_eq!(
            hand_off(SwitchOut::Runnable, true, draws(false, false), || false),
            None
        );
        assert_eq!(
            hand_off(SwitchOut::Runnable, true, draws(false, false), || true),
            Some(HandOff::Ends)
        );
        let asked = Cell::new(false);
        let drawn = |_| {
            asked.set(true);
            true
        };
        assert_eq!(
            hand_off(SwitchOut::Exits, true, drawn, || false),
            Some(HandOff::Ends)
        );
        assert!(!asked.get(), "an exit is handed on without a draw");
    }

    #[test]
    fn a_slots_two_programs_have_their_own_indices() {
        let mut seen = [false; SWITCH_PROGRAM_SLOTS as usize];
        for slot in 0..SWITCH_SLOTS {
            for hand_off in [HandOff::Drawn, HandOff::Ends] {
                let index = hand_off.program_index(slot) as usize;
                assert!(!seen[index], "index {index} given twice");
                seen[index] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }
}
