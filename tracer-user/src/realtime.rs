//! The tracer's own real-time priority (`tracer attach --realtime PRIO`, like `perf record
//! --realtime`).
//!
//! A target whose threads run `SCHED_FIFO` or `SCHED_RR` and keep every CPU busy leaves
//! a normal-priority tracer almost no CPU time (the kernel keeps back only a few percent
//! for other tasks): its ring buffer fills and records are dropped. Seen on `stress-ng
//! --mutex`, whose workers run `SCHED_FIFO`: more than half of the records were lost.
//! Above the target's priority the tracer preempts it for each drain instead, which is
//! why this is opt-in.
use std::io;

/// Runs the calling thread at `SCHED_FIFO` priority while alive, and restores the
/// scheduling it had before on drop.
#[derive(Debug)]
pub struct RealtimeGuard {
    policy: libc::c_int,
    param: libc::sched_param,
}

impl RealtimeGuard {
    /// Moves the calling thread to `SCHED_FIFO` at `priority` (1–99).
    ///
    /// # Errors
    /// When the kernel refuses: `EPERM` without `CAP_SYS_NICE` (or an `RLIMIT_RTPRIO` that
    /// allows it), `EINVAL` for a priority out of range.
    pub fn enter(priority: u8) -> io::Result<Self> {
        let mut param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; `param` is a valid `sched_param` to fill.
        if unsafe { libc::sched_getparam(0, &raw mut param) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pid 0 is the calling thread; no pointer arguments.
        let policy = unsafe { libc::sched_getscheduler(0) };
        if policy < 0 {
            return Err(io::Error::last_os_error());
        }
        let realtime = libc::sched_param {
            sched_priority: libc::c_int::from(priority),
        };
        // SAFETY: pid 0 is the calling thread; `realtime` is a valid `sched_param`.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const realtime) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { policy, param })
    }
}

impl Drop for RealtimeGuard {
    fn drop(&mut self) {
        // SAFETY: pid 0 is the calling thread; `param` was read from it by `enter`. A
        // failure leaves the thread real-time for the little that remains of the run
        // (the report), which is harmless.
        unsafe { libc::sched_setscheduler(0, self.policy, &raw const self.param) };
    }
}

/// The note for a trace that dropped records while the target ran real-time threads the
/// tracer did not outrank (`tracer_priority`: its `--realtime`, if any). `None` when
/// nothing was dropped, the target has no real-time threads, or the tracer was above them.
#[must_use]
pub fn starvation_note(
    dropped: u64,
    target: crate::target::RealtimeThreads,
    tracer_priority: Option<u8>,
) -> Option<String> {
    if dropped == 0 || target.count == 0 {
        return None;
    }
    if tracer_priority.is_some_and(|p| u32::from(p) > target.max_priority) {
        return None;
    }
    let advice = if target.max_priority >= 99 {
        "no --realtime priority outranks them".to_string()
    } else {
        format!(
            "rerun with --realtime {} to drain above them",
            target.max_priority + 1
        )
    };
    Some(format!(
        "{} of the target's threads run at real-time priority (SCHED_FIFO/SCHED_RR, up to {}) \
         and can keep the tracer off the CPU, which is how records get dropped: {advice}",
        target.count, target.max_priority
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::RealtimeThreads;

    const FIFO_1: RealtimeThreads = RealtimeThreads {
        count: 4,
        max_priority: 1,
    };

    #[test]
    fn drops_beside_realtime_threads_advise_a_priority_above_them() {
        let note = starvation_note(10, FIFO_1, None).expect("a note");
        assert!(note.starts_with("4 of the target's threads"), "{note}");
        assert!(note.contains("up to 1)"), "{note}");
        assert!(
            note.ends_with("rerun with --realtime 2 to drain above them"),
            "{note}"
        );
        // A tracer at or below the target's priority still gets the advice.
        assert!(starvation_note(10, FIFO_1, Some(1)).is_some());
    }

    #[test]
    fn no_note_without_drops_realtime_threads_or_when_the_tracer_is_above() {
        assert_eq!(starvation_note(0, FIFO_1, None), None);
        assert_eq!(starvation_note(10, RealtimeThreads::default(), None), None);
        assert_eq!(starvation_note(10, FIFO_1, Some(2)), None);
    }

    #[test]
    fn priority_99_cannot_be_outranked() {
        let top = RealtimeThreads {
            count: 1,
            max_priority: 99,
        };
        let note = starvation_note(1, top, None).expect("a note");
        assert!(
            note.ends_with("no --realtime priority outranks them"),
            "{note}"
        );
    }

    /// Needs no privilege: asking for a real-time priority fails cleanly or succeeds, and
    /// either way the thread ends as it began.
    #[test]
    fn the_guard_restores_the_previous_scheduling() {
        // SAFETY: pid 0 is the calling thread.
        let before = unsafe { libc::sched_getscheduler(0) };
        match RealtimeGuard::enter(1) {
            Ok(guard) => {
                // SAFETY: as above.
                assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_FIFO);
                drop(guard);
            }
            Err(err) => assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}"),
        }
        // SAFETY: as above.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, before);
    }
}
