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
pub(super) struct CodeCheck {
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
    pub(super) fn new(target: Arc<dyn TargetProcess>, maps: &[MapEntry]) -> Self {
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
    pub(super) fn is_uprobe_trampoline(&mut self, addr: u64) -> bool {
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
    pub(super) fn is_return_address(&mut self, addr: u64) -> bool {
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
