//! Noticing that the target replaced its program (`execve`) during the trace.
//!
//! Symbols, Go sites and lock names were read from the program the target ran at attach;
//! after an `exec` they describe a program that is gone. Comparing the identity (device
//! and inode) of the target's executable at each liveness check is cheap and catches it.

/// The identity of a file: its device and inode.
pub(crate) type FileIdentity = (u64, u64);

/// Remembers the target's executable at attach and whether another one was seen since.
#[derive(Debug)]
pub(crate) struct ExecWatch {
    at_attach: Option<FileIdentity>,
    executed: bool,
}

impl ExecWatch {
    /// Starts from the executable seen at attach (`None`: unreadable, nothing is watched).
    pub(crate) fn new(at_attach: Option<FileIdentity>) -> Self {
        Self {
            at_attach,
            executed: false,
        }
    }

    /// Takes the executable seen now (`None`: unreadable, e.g. the target just exited,
    /// which says nothing about an `exec`).
    pub(crate) fn observe(&mut self, now: Option<FileIdentity>) {
        if let (Some(before), Some(now)) = (self.at_attach, now)
            && before != now
        {
            self.executed = true;
        }
    }

    /// The note for the report, once another executable was seen.
    pub(crate) fn note(&self) -> Option<&'static str> {
        self.executed.then_some(
            "the target executed another program during the trace: names after that may be wrong",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards issue 16: a target that `exec`s another program mid-trace lost its names
    /// without a word. Another executable identity must give the note, the same one or
    /// an unreadable one must not. Checked to fail with `observe` doing nothing.
    #[test]
    fn another_executable_gives_the_note() {
        let mut watch = ExecWatch::new(Some((8, 100)));
        watch.observe(Some((8, 100)));
        watch.observe(None);
        assert_eq!(watch.note(), None);
        watch.observe(Some((8, 101)));
        assert!(watch.note().unwrap().contains("executed another program"));
        // Once seen, the note stays (even if it execs the first program again).
        watch.observe(Some((8, 100)));
        assert!(watch.note().is_some());
        // Same inode on another device is another file.
        let mut watch = ExecWatch::new(Some((8, 100)));
        watch.observe(Some((9, 100)));
        assert!(watch.note().is_some());
        // Nothing read at attach: nothing to compare with.
        let mut watch = ExecWatch::new(None);
        watch.observe(Some((8, 100)));
        assert_eq!(watch.note(), None);
    }
}
