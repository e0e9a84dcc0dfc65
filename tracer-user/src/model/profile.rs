//! A contention profile: the lock waits of a time window, by waiting stack and lock, as
//! Go's mutex/block profiles count them (`contentions/count`, `delay/nanoseconds`).
//!
//! Produced by a session for a window (`tracer serve`'s `/debug/pprof/contention`), with
//! every frame already named; encoded as pprof by `crate::pprof`.

/// One frame of a waiting stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProfileFrame {
    /// Function name (demangled), or `object+0xoffset` when no symbol covers it.
    pub function: String,
    /// Source file, when the debug info gives it.
    pub file: Option<String>,
    /// Source line, when known.
    pub line: Option<u32>,
    /// The object the frame's code lies in (`/usr/lib/x86_64-linux-gnu/libc.so.6`),
    /// when known.
    pub object: Option<String>,
    /// The frame's address in the target (a return address, or the wait's own `ip`).
    pub address: u64,
}

/// The waits of one (stack, lock) pair in the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileSample {
    /// The waiting stack, innermost frame first.
    pub frames: Vec<ProfileFrame>,
    /// The lock's label (its name, else its location, else its address).
    pub lock: String,
    /// The lock's address.
    pub lock_addr: u64,
    /// The lock's kind (`mutex`, `go_mutex`, …).
    pub lock_kind: &'static str,
    /// Host PID of the process that waited.
    pub pid: u32,
    /// That process's name.
    pub comm: String,
    /// Waits.
    pub contentions: u64,
    /// Their total time, in nanoseconds.
    pub delay_ns: u64,
}

/// The lock waits of a window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentionProfile {
    /// When the window began, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// How long it lasted, in nanoseconds.
    pub duration_ns: u64,
    /// The samples, in no particular order.
    pub samples: Vec<ProfileSample>,
    /// Remarks (waits whose stack was not sampled, a window cut short, …), written into
    /// the profile's comments.
    pub comments: Vec<String>,
}

/// Waits that never slept have no stack and no duration: a profile cannot show them.
pub const BRIEF_WAITS_COMMENT: &str = "waits that returned without sleeping (the lock was released as the waiter entered the kernel) are counted as contentions in the metrics and the summary, not in this profile";

/// The frame of a waiter profile's waits sent without a stack and on a lock with no
/// sampled stack in the window.
pub const STACK_NOT_SAMPLED_FRAME: &str = "[stack not sampled]";

/// The frame of a holder profile's waits whose lock holder was not known (taken before
/// the attach, or its release was not seen).
pub const HOLDER_NOT_KNOWN_FRAME: &str = "[holder not known]";

/// The comment of every holder profile.
pub const HOLDER_PROFILE_COMMENT: &str = "holder profile: each wait's time is charged to the stack where the lock it waited for was taken (the hold released during the wait, else the lock's holder when the wait ended), as in Go's mutex profile";

/// The one frame of a sample whose stack is not known, named `function`.
#[must_use]
pub fn unknown_profile_frame(function: &str) -> ProfileFrame {
    ProfileFrame {
        function: function.to_owned(),
        file: None,
        line: None,
        object: None,
        address: 0,
    }
}
