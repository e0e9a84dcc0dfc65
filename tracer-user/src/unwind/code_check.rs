//! Whether a word found on the target's stack is a return address, for the stack windows
//! of waits. Assumes x86-64 call encodings (`unwind::ends_with_call`).
use std::{collections::HashMap, sync::Arc};

use crate::{
    target::{MapEntry, TargetProcess},
    unwind::{self, CALL_LOOKBEHIND},
};

/// Decides whether a stack word is a return address: it must point into an executable
/// mapping of the target, right after a call instruction. Answers are cached; when the
/// target is gone and its code can no longer be read, a word inside executable code is
/// accepted as is.
pub struct CodeCheck {
    /// The target, whose code is read (shared with the session).
    target: Arc<dyn TargetProcess>,
    exec: Vec<(u64, u64)>,
    /// The kernel's `[uprobes]` page (uretprobe trampoline), mapped on the first
    /// uretprobe hit, so looked up again while missing.
    trampoline: Option<(u64, u64)>,
    cache: HashMap<u64, bool>,
}

impl CodeCheck {
    /// The check for `target`, whose executable mappings at attach are in `maps`.
    pub fn new(target: Arc<dyn TargetProcess>, maps: &[MapEntry]) -> Self {
        let exec = maps
            .iter()
            .filter(|m| m.exec)
            .map(|m| (m.start, m.end))
            .collect();
        Self {
            target,
            exec,
            trampoline: None,
            cache: HashMap::new(),
        }
    }

    /// Whether `addr` is in the kernel's uretprobe trampoline (read from the maps again
    /// until it appears).
    pub fn is_uprobe_trampoline(&mut self, addr: u64) -> bool {
        if self.trampoline.is_none() {
            self.trampoline = self.target.maps().ok().and_then(|maps| {
                maps.iter()
                    .find(|m| m.path.as_deref() == Some("[uprobes]"))
                    .map(|m| (m.start, m.end))
            });
        }
        self.trampoline
            .is_some_and(|(start, end)| (start..end).contains(&addr))
    }

    /// Whether `addr` points right after a call instruction in executable code.
    pub fn is_return_address(&mut self, addr: u64) -> bool {
        let lookbehind = CALL_LOOKBEHIND as u64;
        if !self
            .exec
            .iter()
            .any(|&(start, end)| addr >= start + lookbehind && addr < end)
        {
            return false;
        }
        let target = &self.target;
        *self.cache.entry(addr).or_insert_with(|| {
            let mut code = [0u8; CALL_LOOKBEHIND];
            // Unreadable (the target is gone): accepted, being inside executable code.
            !target.read_exact(addr - lookbehind, &mut code) || unwind::ends_with_call(&code)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        session::test_support::{AFTER_CALL, CODE, code},
        target::fake::FakeProcess,
    };

    fn check(target: FakeProcess, maps: &[MapEntry]) -> CodeCheck {
        CodeCheck::new(Arc::new(target), maps)
    }

    /// Guards the return-address test of stack words: right after a call in executable
    /// code, not after other instructions, not outside executable mappings.
    #[test]
    fn return_addresses_follow_calls() {
        let target = FakeProcess::new(7)
            .region(CODE, code(), "r-xp", Some("/bin/prog"))
            .region(0x60_0000, vec![0xe8; 0x100], "rw-p", Some("/bin/prog"));
        let maps = target.maps().expect("maps");
        let mut code = check(target, &maps);
        assert!(code.is_return_address(AFTER_CALL));
        assert!(!code.is_return_address(AFTER_CALL + 1));
        assert!(!code.is_return_address(CODE + 0x30));
        // Too close to the start of the mapping to follow a call in it.
        assert!(!code.is_return_address(CODE + 2));
        // Writable data full of call opcodes is no code.
        assert!(!code.is_return_address(0x60_0010));
        assert!(!code.is_return_address(0x1234));
    }

    /// Guards reports made after the target exited: its code can no longer be read, so a
    /// word inside executable code is accepted as is.
    #[test]
    fn unreadable_code_is_taken_for_a_return_address() {
        let target = FakeProcess::new(7).region(CODE, code(), "r-xp", Some("/bin/prog"));
        let maps = target.maps().expect("maps");
        let mut code = check(target.exited(), &maps);
        assert!(code.is_return_address(CODE + 0x30));
        assert!(!code.is_return_address(0x1234));
    }

    /// Guards the `--holds` stacks: the uretprobe trampoline is found in the maps once
    /// the kernel has mapped it.
    #[test]
    fn the_uprobe_trampoline_is_found_in_the_maps() {
        let without = FakeProcess::new(7).region(CODE, code(), "r-xp", Some("/bin/prog"));
        let with =
            without
                .clone()
                .region(0x7fff_f000, vec![0xcc; 0x1000], "r-xp", Some("[uprobes]"));
        assert!(!check(without, &[]).is_uprobe_trampoline(0x7fff_f010));
        let mut code = check(with, &[]);
        assert!(code.is_uprobe_trampoline(0x7fff_f010));
        assert!(!code.is_uprobe_trampoline(AFTER_CALL));
    }
}
