//! Whether a word found on the target's stack is a return address, for the stack windows
//! of waits. Assumes x86-64 call encodings (`unwind::ends_with_call`).
use std::collections::HashMap;

use crate::{
    target::procfs,
    unwind::{self, CALL_LOOKBEHIND},
};

/// Decides whether a stack word is a return address: it must point into an executable
/// mapping of the target, right after a call instruction. Answers are cached; when the
/// target is gone and its code can no longer be read, a word inside executable code is
/// accepted as is.
pub(super) struct CodeCheck {
    pid: u32,
    exec: Vec<(u64, u64)>,
    /// The kernel's `[uprobes]` page (uretprobe trampoline), mapped on the first
    /// uretprobe hit, so looked up again while missing.
    trampoline: Option<(u64, u64)>,
    cache: HashMap<u64, bool>,
}

impl CodeCheck {
    pub(super) fn new(pid: u32, maps: &[procfs::MapEntry]) -> Self {
        let exec = maps
            .iter()
            .filter(|m| m.exec)
            .map(|m| (m.start, m.end))
            .collect();
        Self {
            pid,
            exec,
            trampoline: None,
            cache: HashMap::new(),
        }
    }

    pub(super) fn is_uprobe_trampoline(&mut self, addr: u64) -> bool {
        if self.trampoline.is_none() {
            self.trampoline = procfs::read_maps(self.pid).ok().and_then(|maps| {
                maps.iter()
                    .find(|m| m.path.as_deref() == Some("[uprobes]"))
                    .map(|m| (m.start, m.end))
            });
        }
        self.trampoline
            .is_some_and(|(start, end)| (start..end).contains(&addr))
    }

    pub(super) fn is_return_address(&mut self, addr: u64) -> bool {
        let lookbehind = CALL_LOOKBEHIND as u64;
        if !self
            .exec
            .iter()
            .any(|&(start, end)| addr >= start + lookbehind && addr < end)
        {
            return false;
        }
        let pid = self.pid;
        *self.cache.entry(addr).or_insert_with(|| {
            let mut code = [0u8; CALL_LOOKBEHIND];
            match procfs::read_memory(pid, addr - lookbehind, &mut code) {
                Ok(n) if n == code.len() => unwind::ends_with_call(&code),
                _ => true,
            }
        })
    }
}
