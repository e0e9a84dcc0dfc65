//! The live [`Naming`]: symbols of the target's objects, the kernel's stacks, the Go
//! pclntab and the lock names the Go tracker learnt.
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{Naming, Stack};
use crate::{
    go::{
        probe::{DwarfNames, is_lock_internal},
        sym::{GoFrame, GoTable},
    },
    model::{LockRef, profile::ProfileFrame, raw::RawStack},
    symbols::Symbolizer,
    target::TargetProcess,
    unwind::{self, CodeCheck},
};

/// Where the kernel's stacks are (the probes' stack maps).
pub trait StackSource {
    /// The user stack (instruction pointers, innermost first) recorded under `stack_id`.
    fn user_stack(&self, stack_id: u32) -> Vec<u64>;
    /// Where thread `tid`'s lock call in flight was made (`--holds`), if any.
    fn pending_call_site(&self, tid: u32) -> Option<u64>;
}

/// What names Go stacks and locks: the pclntab, and the names of locks learnt from DWARF
/// and from the sites that take them.
#[derive(Clone, Copy)]
pub struct GoNames<'a> {
    pub table: &'a GoTable,
    /// Runtime address minus file virtual address.
    pub bias: u64,
    /// Field paths of globals (`main.store.mu`), when the binary has DWARF.
    pub dwarf_names: Option<&'a DwarfNames>,
    /// Names of locks in heap objects (`main.Store.mu`), by address.
    pub heap_names: &'a FxHashMap<u64, Arc<str>>,
}

/// The session's naming: one per finding or summary, borrowing what it needs.
pub struct Namer<'a> {
    /// The traced process.
    pub target: &'a dyn TargetProcess,
    pub symbolizer: &'a mut Symbolizer,
    pub code: &'a mut CodeCheck,
    pub stacks: &'a dyn StackSource,
    /// Present when the target is a Go program.
    pub go: Option<GoNames<'a>>,
    /// Names of a Rust program's `std` locks in heap objects (`app::Store.hits`), by
    /// address, learnt from their waiters' stacks (`lock_names::rust`).
    pub rust_heap_names: Option<&'a FxHashMap<u64, Arc<str>>>,
}

impl Namer<'_> {
    /// A native stack: the wait's stack (`words`, from `sp` upwards) unwound by the
    /// objects' call frame information, continued by the kernel's frame-pointer chain
    /// (see `unwind::frames_from_cfi`).
    fn native_stack(
        &mut self,
        stack_id: Option<u32>,
        (ip, sp, words): (u64, u64, &[u64]),
        waiter: Option<u32>,
    ) -> Stack {
        let fp_chain = stack_id
            .map(|id| self.stacks.user_stack(id))
            .unwrap_or_default();
        let mut words = words.to_vec();
        if let Some(site) = waiter.and_then(|tid| self.stacks.pending_call_site(tid)) {
            for word in &mut words {
                if self.code.is_uprobe_trampoline(*word) {
                    *word = site;
                }
            }
        }
        // Without a chain from the kernel to continue it, the walk looks for the frame
        // record of a frame-pointer function in the stack (the record has no `rbp`).
        let no_chain = fp_chain.len() <= 1;
        let walk = (ip != 0 && sp != 0).then(|| {
            let mut source = CodeFrames {
                code: &mut *self.code,
                symbolizer: &mut *self.symbolizer,
            };
            unwind::cfi::walk(ip, sp, &words, &mut source, no_chain)
        });
        let code = &mut *self.code;
        let files = &mut *self.symbolizer;
        let frames = match &walk {
            Some(walk) => unwind::frames_from_cfi(walk, &words, &fp_chain, &mut |addr| {
                code.check(addr, files)
            }),
            None => {
                unwind::merge_frames(ip, &words, &fp_chain, &mut |addr| code.check(addr, files))
            }
        };
        let mut stack = Stack::default();
        for (i, frame) in frames.iter().enumerate() {
            let first = stack.names.len();
            self.push_frames(&mut stack, frame.ip, i > 0);
            if frame.uncertain {
                mark_uncertain(&mut stack, first);
            }
        }
        stack
    }

    /// Appends the frames at `ip` to `stack`: in the Go executable, every function the
    /// pclntab says is there (inlined ones first), with `file:line`, whether or not the
    /// binary is stripped; elsewhere (libc, cgo callees, a non-Go target) the symbolizer's
    /// frame. A return address (`is_return`) points after its call: the call itself is
    /// looked up, and shown with the offset of the return address.
    fn push_frames(&mut self, stack: &mut Stack, ip: u64, is_return: bool) {
        let lookup = if is_return { ip.saturating_sub(1) } else { ip };
        let go_frames = self
            .go
            .map(|go| go.table.frames(lookup.wrapping_sub(go.bias)))
            .unwrap_or_default();
        if go_frames.is_empty() {
            let mut frame = self.symbolizer.frame(lookup);
            if is_return {
                frame.offset += 1;
                frame.addr = ip;
            }
            stack.names.push(frame.function_name());
            stack.detail.push(frame.display());
            stack.frames.push(ProfileFrame {
                function: frame.function_name(),
                file: frame.file,
                line: frame.line,
                object: frame.object,
                address: ip,
            });
            return;
        }
        for f in &go_frames {
            stack.names.push(f.function.clone());
            stack.detail.push(go_frame_display(f));
            stack.frames.push(ProfileFrame {
                function: f.function.clone(),
                file: f.file.clone(),
                line: f.line,
                object: None,
                address: ip,
            });
        }
    }

    /// A Go stack: the site `pc`, the `caller` of an entry site, then the kernel's walk,
    /// with inlined frames expanded from the pclntab (frames outside Go code, such as cgo
    /// callees, through the symbolizer).
    fn go_stack(&mut self, pc: u64, caller: u64, stack_id: i32) -> Stack {
        let mut ips = u32::try_from(stack_id)
            .map(|id| self.stacks.user_stack(id))
            .unwrap_or_default();
        if ips.first() != Some(&pc) {
            ips.insert(0, pc);
        }
        if caller != 0 && ips.get(1) != Some(&caller) {
            ips.insert(1, caller);
        }
        self.go_frames(&ips)
    }

    /// Go frames from a program counter followed by return addresses, with inlined
    /// frames expanded from the pclntab (frames outside Go code, such as cgo callees,
    /// through the symbolizer).
    fn go_frames(&mut self, ips: &[u64]) -> Stack {
        let mut stack = Stack::default();
        for (i, &ip) in ips.iter().enumerate() {
            self.push_frames(&mut stack, ip, i > 0);
        }
        stack
    }
}

impl Naming for Namer<'_> {
    /// The lock's symbol or location; in a Go program, the global it lies in with the
    /// field path down to it when the binary's DWARF says (`main.store.mu`), or for a
    /// lock in a heap object, its struct's type and field (`main.Store.mu`) when learnt;
    /// the same for a Rust program's heap locks (`app::Store.hits`).
    fn lock(&mut self, addr: u64) -> LockRef {
        let mut lock = self.symbolizer.lock_ref(addr);
        if lock.name.is_none()
            && let Some(name) = self.rust_heap_names.and_then(|names| names.get(&addr))
        {
            lock.name = Some(name.to_string());
            // Learnt from the program's types, not from a symbol table.
            lock.name_source = None;
            return lock;
        }
        let Some(go) = self.go else {
            return lock;
        };
        if lock.name.is_none()
            && let Some(name) = go.heap_names.get(&addr)
        {
            lock.name = Some(name.to_string());
            // Learnt from the Go program's types, not from a symbol table.
            lock.name_source = None;
            return lock;
        }
        if let (Some(names), Some(name)) = (go.dwarf_names, &lock.name) {
            let (symbol, offset) = match name.rsplit_once("+0x") {
                Some((symbol, hex)) => (symbol, u64::from_str_radix(hex, 16).ok()),
                None => (name.as_str(), Some(0)),
            };
            if let Some(path) = offset.and_then(|offset| names.field_path(symbol, offset)) {
                lock.name = Some(path);
            }
        }
        lock
    }

    fn stack(&mut self, stack: &RawStack) -> Stack {
        match *stack {
            RawStack::Native {
                stack_id,
                ref window,
                waiter,
            } => self.native_stack(stack_id, (window.ip, window.sp, window.words()), waiter),
            RawStack::NativeRead {
                stack_id,
                ip,
                sp,
                ref words,
                waiter,
            } => self.native_stack(stack_id, (ip, sp, words), Some(waiter)),
            RawStack::Go {
                pc,
                caller,
                stack_id,
            } => self.go_stack(pc, caller, stack_id),
            RawStack::GoUnwound(ref pcs) => self.go_frames(pcs),
            RawStack::None => Stack::default(),
        }
    }

    fn thread_name(&mut self, tid: u32) -> String {
        self.target.thread_name(tid).unwrap_or_default()
    }

    fn is_lock_internal(&self, function: &str) -> bool {
        is_lock_internal(function)
    }
}

/// The target's code as a CFI walk sees it: rules from the objects' `.eh_frame`, and the
/// return-address check of stack words.
struct CodeFrames<'a> {
    code: &'a mut CodeCheck,
    symbolizer: &'a mut Symbolizer,
}

impl unwind::cfi::FrameSource for CodeFrames<'_> {
    fn rule_at(&mut self, addr: u64) -> Option<unwind::cfi::FrameRule> {
        self.symbolizer.frame_rule(addr)
    }

    fn follows_call(&mut self, addr: u64) -> bool {
        self.code.check(addr, self.symbolizer) == Some(true)
    }
}

/// Marks the frames of `stack` from index `first` on as uncertain (see
/// `unwind::UnwoundFrame::uncertain`): `?` after the function name (`start_thread?`), and
/// in the detail after the function and offset (`start_thread+0x305? (pthread_create.c:442)`).
fn mark_uncertain(stack: &mut Stack, first: usize) {
    for name in stack.names.iter_mut().skip(first) {
        name.push('?');
    }
    for frame in stack.frames.iter_mut().skip(first) {
        frame.function.push('?');
    }
    for detail in stack.detail.iter_mut().skip(first) {
        match detail.find(" (") {
            Some(at) => detail.insert(at, '?'),
            None => detail.push('?'),
        }
    }
}

fn go_frame_display(f: &GoFrame) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => {
            let file = file.rsplit('/').next().unwrap_or(file);
            format!("{} ({file}:{line})", f.function)
        }
        _ => f.function.clone(),
    }
}
