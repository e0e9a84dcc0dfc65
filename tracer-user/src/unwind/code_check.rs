//! Whether a word found on the target's stack is a return address, for the stack windows
//! of waits. Assumes x86-64 call encodings (`unwind::ends_with_call`).
use std::{collections::HashMap, sync::Arc};

use crate::{
    target::{MapEntry, TargetProcess},
    unwind::{self, CALL_LOOKBEHIND},
};

/// Reads the code just before an address from the file mapped there (the symbolizer's
/// objects), for when the target's memory cannot be read: it exited, or it executed
/// another program and the address belongs to the previous one.
pub trait CodeReader {
    /// The `len` bytes that end right before `addr`, from the file mapped at `addr`.
    fn code_before(&mut self, addr: u64, len: usize) -> Option<Vec<u8>>;
}

/// Decides whether a stack word is a return address: it must point into an executable
/// mapping of the target, right after a call instruction. Answers are cached. The code is
/// read from the target's memory, or else from the mapped file ([`CodeCheck::check`]).
pub struct CodeCheck {
    /// The target, whose code is read (shared with the session).
    target: Arc<dyn TargetProcess>,
    /// False once the target's memory no longer holds the program these mappings are of
    /// (it executed another one): its code is then read from the files only.
    memory_is_this_program: bool,
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
            memory_is_this_program: true,
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

    /// Stops reading the target's memory: it now runs another program (an `exec`), and
    /// these mappings are the previous program's, whose code is read from its files.
    pub fn detach_from_memory(&mut self) {
        self.memory_is_this_program = false;
    }

    /// Whether `addr` points right after a call instruction in executable code, read from
    /// the target's memory, else from the file mapped there (`files`); `None` when neither
    /// can be read (the caller decides what an unchecked word is worth).
    pub fn check(&mut self, addr: u64, files: &mut dyn CodeReader) -> Option<bool> {
        let lookbehind = CALL_LOOKBEHIND as u64;
        if !self
            .exec
            .iter()
            .any(|&(start, end)| addr >= start + lookbehind && addr < end)
        {
            return Some(false);
        }
        if let Some(&known) = self.cache.get(&addr) {
            return Some(known);
        }
        let mut code = [0u8; CALL_LOOKBEHIND];
        let verdict = if self.memory_is_this_program
            && self.target.read_exact(addr - lookbehind, &mut code)
        {
            unwind::ends_with_call(&code)
        } else {
            unwind::ends_with_call(&files.code_before(addr, CALL_LOOKBEHIND)?)
        };
        self.cache.insert(addr, verdict);
        Some(verdict)
    }

    /// Whether `addr` points right after a call instruction in executable code, for the
    /// stacks of threads read while the target runs; when its code cannot be read, a
    /// word inside executable code is accepted as is.
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

    struct Files(Option<Vec<u8>>);

    impl CodeReader for Files {
        fn code_before(&mut self, _addr: u64, len: usize) -> Option<Vec<u8>> {
            self.0.as_ref().map(|c| c[c.len() - len..].to_vec())
        }
    }

    /// Guards issue 16's `libc.so.6+0x1` frames: once the target's memory cannot be read
    /// (it exited, or runs another program), the code comes from the mapped file, and a
    /// word that follows no call there is no return address; only when the file cannot
    /// be read either is the answer unknown. Checked to fail with the old "unreadable is a
    /// return address" rule.
    #[test]
    fn code_of_a_gone_program_is_read_from_its_file() {
        let target = FakeProcess::new(7).region(CODE, code(), "r-xp", Some("/bin/prog"));
        let maps = target.maps().expect("maps");
        let not_a_call = vec![0x90; 16];
        let mut gone = check(target.clone().exited(), &maps);
        assert_eq!(
            gone.check(CODE + 0x30, &mut Files(Some(not_a_call))),
            Some(false)
        );
        let call = {
            let mut c = vec![0x90; 11];
            c.extend([0xe8, 1, 2, 3, 4]);
            c
        };
        assert_eq!(
            gone.check(CODE + 0x40, &mut Files(Some(call.clone()))),
            Some(true)
        );
        assert_eq!(gone.check(CODE + 0x50, &mut Files(None)), None);
        assert_eq!(gone.check(0x1234, &mut Files(None)), Some(false));
        // After an exec, memory is another program's: the file decides, not the memory.
        let mut detached = check(target, &maps);
        assert_eq!(detached.check(AFTER_CALL, &mut Files(None)), Some(true));
        let mut detached_fresh = CodeCheck::new(
            Arc::new(FakeProcess::new(7).region(CODE, code(), "r-xp", Some("/bin/prog"))),
            &maps,
        );
        detached_fresh.detach_from_memory();
        assert_eq!(
            detached_fresh.check(AFTER_CALL, &mut Files(Some(vec![0x90; 16]))),
            Some(false)
        );
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
