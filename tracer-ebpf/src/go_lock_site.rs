//! Uprobe on every Go lock probe site. In the default mode only where goroutines park and
//! locks are handed over: the entries and `ret`s of the `sync` semaphore acquires and the
//! entry of the semaphore release. With `--holds` also the entry and `ret`s of
//! `Mutex.lockSlow` and the instruction after each atomic of an inlined or out-of-line
//! `Lock`/`Unlock`/`RLock`/`RUnlock` (uprobes refuse `lock`-prefixed instructions, and only
//! afterwards is the outcome known).
//!
//! No uretprobes: they rewrite return addresses on the stack, and Go moves goroutine
//! stacks, so a uretprobe crashes the target.
//!
//! It also serves the native sites of a Rust program ([`NativeSiteOp`]: the entries of
//! `parking_lot`'s slow paths, the lock in `RDI`), which have no goroutine.
//!
//! One program serves every site: the attach cookie ([`tracer_common::go_cookie`]) says
//! what the site means and which registers hold the lock address and value, so no map
//! lookup is needed per hit.
use aya_ebpf::{
    EbpfContext as _,
    bindings::pt_regs,
    helpers::{bpf_get_attach_cookie, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::uprobe,
    programs::ProbeContext,
};
use tracer_common::{EventKind, GoEvent, GoOp, NativeSiteOp, go_cookie, pt_reg};

use crate::{
    diag,
    helpers::{emit_go, target_tid, user_stack_id},
    maps::GO_GOID_OFFSET,
};

/// `stack_id` of an event that carries no stack (a negative errno, as for a failed walk).
const NO_STACK: i32 = -2; // -ENOENT

/// `ZF` in `eflags`: set by a `lock cmpxchg` that swapped.
const EFLAGS_ZF: u64 = 1 << 6;

#[uprobe]
pub(crate) fn go_lock_site(ctx: ProbeContext) -> u32 {
    match try_go_lock_site(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_go_lock_site(ctx: &ProbeContext) -> Result<(), ()> {
    let Some(tid) = target_tid() else {
        return Ok(());
    };
    // SAFETY: the helper only reads the attach cookie of the running program.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let op = go_cookie::op(cookie);
    // One copy of the saved registers onto the stack, by fixed-offset loads from the
    // context; registers are then picked from the copy by slot. (Picking them from the
    // context directly lets the compiler merge the picks into one load at a computed
    // context offset, which the verifier refuses.)
    // SAFETY: `ctx.regs` is the uprobe's saved registers, valid for the whole program.
    let saved: pt_regs = unsafe { core::ptr::read_volatile(ctx.regs) };
    let regs = &saved;
    if op == GoOp::MutexLockFast as u32 || op == GoOp::RwLockFast as u32 {
        // The probe sits after `lock cmpxchg`: only a successful swap took the lock.
        let flags = reg(regs, EFLAGS_SLOT).ok_or(())?;
        if flags & EFLAGS_ZF == 0 {
            return Ok(());
        }
    }
    // Native sites run no goroutine: `R14` is no `g` there.
    let native = op >= NativeSiteOp::ParkingLotLock as u32;
    let g = if native {
        0
    } else {
        reg(regs, pt_reg::R14).ok_or(())?
    };
    let offset = GO_GOID_OFFSET.load();
    let goid = if native {
        0
    } else {
        // SAFETY: bpf_probe_read_user checks the user address and fails cleanly on a fault.
        unsafe { bpf_probe_read_user((g.wrapping_add(offset)) as *const u64) }.unwrap_or_else(
            |_| {
                diag::goid_unreadable(g);
                0
            },
        )
    };
    let addr = match reg(regs, go_cookie::base(cookie)) {
        Some(base) => base.wrapping_add_signed(i64::from(go_cookie::displacement(cookie))),
        None => 0,
    };
    let value = match reg(regs, go_cookie::value(cookie)) {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_possible_wrap,
            reason = "Go's readerCount is an int32: the low half, sign-extended"
        )]
        Some(v) => i64::from(v as u32 as i32),
        None => 0,
    };
    let pc = reg(regs, pt_reg::RIP).ok_or(())?;
    diag::check_go_op(op, pc);
    let caller = if native
        || op == GoOp::LockSlowEnter as u32
        || op == GoOp::SemacquireEnter as u32
        || op == GoOp::SemreleaseEnter as u32
    {
        let sp = reg(regs, pt_reg::RSP).ok_or(())?;
        // At a function's first instruction `[sp]` is the return address: the call site,
        // which the frame-pointer walk from here skips.
        // SAFETY: bpf_probe_read_user checks the user address and fails cleanly.
        unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0)
    } else {
        0
    };
    // Stacks are kept for acquisitions (where a holder took its lock) and wait starts;
    // releases and wait ends need none, and skipping the walk keeps the probe that fires
    // inside every critical section short.
    let wants_stack = op == GoOp::MutexLockFast as u32
        || op == GoOp::RwLockFast as u32
        || op == GoOp::RLockFast as u32
        || op == GoOp::LockSlowEnter as u32
        || op == GoOp::SemacquireEnter as u32
        || native;
    let stack_id = if wants_stack {
        user_stack_id(ctx)
    } else {
        NO_STACK
    };
    let event = GoEvent {
        kind: EventKind::GoLock as u32,
        tid,
        // SAFETY: bpf_ktime_get_ns has no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        goid,
        g,
        addr,
        pc,
        caller,
        value,
        op,
        stack_id,
    };
    emit_go(&event);
    Ok(())
}

/// `pt_regs` slot of `eflags`.
const EFLAGS_SLOT: u8 = 18;

/// The saved register in `pt_regs` slot `slot` ([`pt_reg`]), `None` for no register.
#[inline(always)]
fn reg(regs: &pt_regs, slot: u8) -> Option<u64> {
    {
        Some(match slot {
            pt_reg::R15 => regs.r15,
            pt_reg::R14 => regs.r14,
            pt_reg::R13 => regs.r13,
            pt_reg::R12 => regs.r12,
            pt_reg::RBP => regs.rbp,
            pt_reg::RBX => regs.rbx,
            pt_reg::R11 => regs.r11,
            pt_reg::R10 => regs.r10,
            pt_reg::R9 => regs.r9,
            pt_reg::R8 => regs.r8,
            pt_reg::RAX => regs.rax,
            pt_reg::RCX => regs.rcx,
            pt_reg::RDX => regs.rdx,
            pt_reg::RSI => regs.rsi,
            pt_reg::RDI => regs.rdi,
            pt_reg::RIP => regs.rip,
            EFLAGS_SLOT => regs.eflags,
            pt_reg::RSP => regs.rsp,
            _ => return None,
        })
    }
}
