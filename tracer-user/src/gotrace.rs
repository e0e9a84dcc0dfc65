//! The Go side of a live attach: recognise a Go target, plan its lock probe sites, and turn
//! the Go lock model's findings into report entries (deadlocks over goroutines, stuck
//! locks, per-lock summaries), reading the live process where a finding must be checked.
//!
//! The pure parts live elsewhere: `gosym` reads the pclntab, `goprobe` plans the sites,
//! `golocks` is the lock state machine. This module is the glue that needs the process.
use std::{
    collections::HashSet,
    fmt::Write as _,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::{FxHashMap, FxHashSet};
use thiserror::Error;
use tracer_common::GoOp;

use crate::{
    golocks::{
        GoCycle, GoLockEvent, GoLockKind, GoLockModel, Hold, LockMode, RW_READER_COUNT_OFFSET,
        StuckLock as Stuck,
    },
    goprobe::{
        GoDwarfNames, GoLockOwners, GoProbeError, GoRuntimeOffsets, GoSitePlan, go_lock_names,
        go_runtime_offsets, is_lock_internal, plan_go_lock_sites,
    },
    gosym::{GoBuildInfo, GoSymError, GoTable, go_build_info},
    probes::GoSites,
    procfs::{self, MapEntry},
    report::{
        Deadlock, DeadlockEntry, HoldMode, HolderState, LockKind, LockRef, LockSummary,
        StuckHolder, StuckLock,
    },
    symbols::Symbolizer,
};

/// Why a Go target is traced in futex mode only.
#[derive(Debug, Error)]
pub enum GoUnsupported {
    #[error("cannot read the executable {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read its Go symbol table")]
    Symbols(#[source] GoSymError),
    #[error("cannot plan its lock probes")]
    Plan(#[source] GoProbeError),
    #[error("the offset of the goroutine id in the runtime's g is unknown for {version}")]
    Offsets { version: String },
}

/// A Go executable ready to be probed.
pub struct GoTarget {
    /// The executable as opened here (`/proc/PID/exe`).
    pub exe: PathBuf,
    /// Go version and module path.
    pub build: GoBuildInfo,
    /// Where the lock sites are.
    pub plan: GoSitePlan,
    /// Offsets into the runtime's `g`.
    pub offsets: GoRuntimeOffsets,
    /// How long reading the pclntab and planning took.
    pub plan_time: Duration,
    /// (file offset, attach cookie) of every planned site.
    attach_list: Vec<(u64, u64)>,
    table: GoTable,
    /// Field paths of globals (`main.store.mu`), when the binary has DWARF.
    dwarf_names: Option<GoDwarfNames>,
    /// Names of locks in heap objects (`main.Store.mu`) by the sites and calls that take
    /// them, when the binary has DWARF.
    owners: GoLockOwners,
    /// Runtime address minus file virtual address (0 unless position-independent).
    bias: u64,
}

impl GoTarget {
    /// The report note on what was attached: Go version, module, sites and times.
    #[must_use]
    pub fn attach_note(&self, attached: usize, refused: usize, attach_time: Duration) -> String {
        let mut note = format!(
            "{} program{}: {attached} Go lock sites attached ({refused} refused by the kernel, {} not probeable); planned in {} ms, attached in {} ms",
            self.build.go_version,
            self.build
                .module_path
                .as_ref()
                .map(|m| format!(" {m}"))
                .unwrap_or_default(),
            self.plan.skipped.len(),
            self.plan_time.as_millis(),
            attach_time.as_millis(),
        );
        if !self.owners.is_empty() {
            let _ = write!(
                note,
                "; {} sites and calls name the heap locks they take, from DWARF",
                self.owners.len()
            );
        }
        note
    }

    /// What the probe loader attaches: every planned site of the executable.
    #[must_use]
    pub fn probe_sites(&self) -> GoSites<'_> {
        GoSites {
            exe: &self.exe,
            goid_offset: self.offsets.goid,
            sites: &self.attach_list,
        }
    }
}

/// Reads `/proc/PID/exe`: `Ok(None)` when it is not a Go program.
///
/// # Errors
/// When it is a Go program whose lock paths cannot be traced (the caller carries on in
/// futex mode and says why).
pub fn inspect(pid: u32, maps: &[MapEntry]) -> Result<Option<GoTarget>, GoUnsupported> {
    let started = Instant::now();
    let exe = procfs::proc_dir(pid).join("exe");
    let data = std::fs::read(&exe).map_err(|source| GoUnsupported::Read {
        path: exe.clone(),
        source,
    })?;
    let Some(build) = go_build_info(&data) else {
        return Ok(None);
    };
    let table = GoTable::from_elf(&data).map_err(GoUnsupported::Symbols)?;
    let plan = plan_go_lock_sites(&data).map_err(GoUnsupported::Plan)?;
    let offsets =
        go_runtime_offsets(&data, &build.go_version).ok_or_else(|| GoUnsupported::Offsets {
            version: build.go_version.clone(),
        })?;
    let bias = load_bias(&data, pid, maps);
    let (dwarf_names, owners) = go_lock_names(&data, &table, &plan);
    let attach_list = plan
        .sites
        .iter()
        .map(|s| (s.file_offset, s.cookie()))
        .collect();
    Ok(Some(GoTarget {
        exe,
        build,
        plan,
        offsets,
        plan_time: started.elapsed(),
        attach_list,
        table,
        dwarf_names,
        owners,
        bias,
    }))
}

/// The load bias of the main executable: 0 for the usual fixed-address Go binary; for a
/// position-independent one, where its first segment was mapped minus where the file
/// says it goes.
fn load_bias(data: &[u8], pid: u32, maps: &[MapEntry]) -> u64 {
    use object::{Object as _, ObjectSegment as _};
    let Ok(file) = object::File::parse(data) else {
        return 0;
    };
    if file.kind() != object::ObjectKind::Dynamic {
        return 0;
    }
    let Some(first_vaddr) = file.segments().map(|s| s.address()).min() else {
        return 0;
    };
    let Ok(exe) = std::fs::read_link(procfs::proc_dir(pid).join("exe")) else {
        return 0;
    };
    let exe = exe.to_string_lossy();
    maps.iter()
        .filter(|m| m.offset == 0 && m.path.as_deref() == Some(exe.as_ref()))
        .map(|m| m.start.wrapping_sub(first_vaddr & !0xfff))
        .min()
        .unwrap_or(0)
}

/// How long a deadlock candidate must persist before it is checked and reported: long
/// enough that a release racing its own event has been drained.
const CONFIRM_AFTER: Duration = Duration::from_millis(30);

/// `mutexLocked`, bit 0 of `sync.Mutex.state`.
const MUTEX_LOCKED: i32 = 1;
/// Offset of `readerCount` in `sync.RWMutex`.
const RW_READER_COUNT: u64 = crate::golocks::RW_READER_COUNT_OFFSET;
/// `_Gscan`: set on top of a status while the garbage collector scans the stack.
const G_SCAN: u32 = 0x1000;
/// Stack frames searched for a call that names a lock.
const NAMING_FRAMES: usize = 8;
/// Most locks remembered as already searched by stack (then the memory starts over).
const MAX_STACK_SEARCHED: usize = 1 << 16;

/// Live Go tracing state of a session.
pub struct GoTracker {
    pid: u32,
    target: GoTarget,
    model: GoLockModel,
    /// Candidate cycles and when they were first seen.
    pending: Vec<(GoCycle, Instant)>,
    deadlocks: usize,
    /// Locks of reported deadlocks: their stuck-lock reports would only repeat it.
    deadlocked_locks: HashSet<u64>,
    events: u64,
    /// Names of locks in heap objects (`main.Store.mu`), learnt from the sites and calls
    /// that take them ([`GoLockOwners`]).
    heap_names: FxHashMap<u64, Arc<str>>,
    /// Locks taken at a site with no name of its own (inside an out-of-line lock method):
    /// their acquisition stack, searched for a naming call at the next findings.
    unnamed: FxHashMap<u64, i32>,
    /// Locks whose stack was searched already.
    stack_searched: FxHashSet<u64>,
}

/// A finding ready to print.
pub enum GoFinding {
    Deadlock(Deadlock),
    Stuck(StuckLock),
}

impl GoTracker {
    /// Starts tracking `target` (already probed) in process `pid`.
    #[must_use]
    pub fn new(pid: u32, target: GoTarget, stuck_after: Duration) -> Self {
        Self {
            pid,
            target,
            model: GoLockModel::new(u64::try_from(stuck_after.as_nanos()).unwrap_or(u64::MAX)),
            pending: Vec::new(),
            deadlocks: 0,
            deadlocked_locks: HashSet::new(),
            events: 0,
            heap_names: FxHashMap::default(),
            unnamed: FxHashMap::default(),
            stack_searched: FxHashSet::default(),
        }
    }

    /// The executable being traced.
    #[must_use]
    pub fn target(&self) -> &GoTarget {
        &self.target
    }

    /// Applies a Go record (decoded by `event::decode`) to the model.
    pub fn on_event(&mut self, event: &GoLockEvent) {
        self.events += 1;
        self.model.handle(event);
        self.learn_name(event);
    }

    /// Names the lock an acquisition is about when its site or its caller names it (a
    /// heap object's field, [`GoLockOwners`]); otherwise queues its stack for a search.
    /// The latest name wins: a heap address can hold another object after a collection.
    fn learn_name(&mut self, ev: &GoLockEvent) {
        let owners = &self.target.owners;
        if owners.is_empty() {
            return;
        }
        let lock = match ev.op {
            GoOp::MutexLockFast | GoOp::RwLockFast | GoOp::LockSlowEnter => ev.addr,
            GoOp::RLockFast => ev.addr.wrapping_sub(RW_READER_COUNT_OFFSET),
            _ => return,
        };
        let bias = self.target.bias;
        let name = owners
            .name_at(ev.pc.wrapping_sub(bias))
            .or_else(|| (ev.caller != 0).then(|| owners.name_at(ev.caller.wrapping_sub(bias)))?);
        match name {
            Some(name)
                if self
                    .heap_names
                    .get(&lock)
                    .is_none_or(|known| !Arc::ptr_eq(known, name)) =>
            {
                self.heap_names.insert(lock, Arc::clone(name));
            }
            None if ev.stack_id >= 0
                && !self.heap_names.contains_key(&lock)
                && !self.stack_searched.contains(&lock) =>
            {
                self.unnamed.insert(lock, ev.stack_id);
            }
            Some(_) | None => {}
        }
    }

    /// Searches the queued acquisition stacks for a call that names the lock.
    fn name_from_stacks(&mut self, stacks: &dyn Fn(u32) -> Vec<u64>) {
        if self.stack_searched.len() >= MAX_STACK_SEARCHED {
            self.stack_searched.clear();
        }
        let bias = self.target.bias;
        for (lock, stack_id) in std::mem::take(&mut self.unnamed) {
            self.stack_searched.insert(lock);
            let Ok(id) = u32::try_from(stack_id) else {
                continue;
            };
            let name = stacks(id)
                .iter()
                .take(NAMING_FRAMES)
                .find_map(|&ip| self.target.owners.name_at(ip.wrapping_sub(bias)));
            if let Some(name) = name {
                self.heap_names.insert(lock, Arc::clone(name));
            }
        }
    }

    /// Go records received.
    #[must_use]
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Deadlocks reported so far.
    #[must_use]
    pub fn deadlocks(&self) -> usize {
        self.deadlocks
    }

    /// Whether goroutine cycles wait for their confirmation (after `CONFIRM_AFTER`).
    #[must_use]
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Findings due now: confirmed deadlocks and stuck locks.
    pub fn findings(
        &mut self,
        now_ns: u64,
        stacks: &dyn Fn(u32) -> Vec<u64>,
        symbolizer: &mut Symbolizer,
    ) -> Vec<GoFinding> {
        let mut out = Vec::new();
        self.name_from_stacks(stacks);
        for cycle in self.model.take_new_cycles() {
            self.pending.push((cycle, Instant::now()));
        }
        let pending = std::mem::take(&mut self.pending);
        for (cycle, seen) in pending {
            if !self.model.cycle_still_present(&cycle) {
                continue;
            }
            if seen.elapsed() < CONFIRM_AFTER || !self.locks_still_taken(&cycle) {
                self.pending.push((cycle, seen));
                continue;
            }
            self.deadlocks += 1;
            self.deadlocked_locks
                .extend(cycle.entries.iter().map(|e| e.waiter.lock));
            out.push(GoFinding::Deadlock(
                self.deadlock(&cycle, now_ns, stacks, symbolizer),
            ));
        }
        for stuck in self.model.due_stuck_locks(now_ns) {
            if self.deadlocked_locks.contains(&stuck.addr) {
                continue;
            }
            out.push(GoFinding::Stuck(self.stuck(&stuck, stacks, symbolizer)));
        }
        out
    }

    /// Whether the target's memory agrees that every lock of the cycle is taken: the
    /// mutex's locked bit for a write wait, a pending or active writer (negative
    /// `readerCount`) for a read wait.
    fn locks_still_taken(&self, cycle: &GoCycle) -> bool {
        cycle.entries.iter().all(|e| match e.waiter.mode {
            LockMode::Write => {
                read_i32(self.pid, e.waiter.lock).is_some_and(|s| s & MUTEX_LOCKED != 0)
            }
            LockMode::Read => {
                read_i32(self.pid, e.waiter.lock + RW_READER_COUNT).is_some_and(|c| c < 0)
            }
        })
    }

    fn deadlock(
        &self,
        cycle: &GoCycle,
        now_ns: u64,
        stacks: &dyn Fn(u32) -> Vec<u64>,
        symbolizer: &mut Symbolizer,
    ) -> Deadlock {
        let mut closed_at = 0;
        let entries = cycle
            .entries
            .iter()
            .map(|e| {
                let w = &e.waiter;
                closed_at = closed_at.max(w.since_ns);
                let (stack, stack_detail) =
                    self.stack(w.pc, w.caller, w.stack_id, stacks, symbolizer);
                let (acquired_at, acquired_at_detail) = match &e.hold {
                    Some(h) => self.stack(h.pc, 0, h.stack_id, stacks, symbolizer),
                    None => (Vec::new(), Vec::new()),
                };
                DeadlockEntry {
                    goid: Some(w.goid),
                    tid: w.tid,
                    thread: String::new(),
                    holds: go_lock_ref(&self.target, &self.heap_names, symbolizer, e.holds),
                    waits_for: go_lock_ref(&self.target, &self.heap_names, symbolizer, w.lock),
                    stack,
                    stack_detail,
                    waited_ns: Some(now_ns.saturating_sub(w.since_ns)),
                    blocked_before_attach: false,
                    held_ns: e.hold.as_ref().map(|h| now_ns.saturating_sub(h.since_ns)),
                    acquired_at,
                    acquired_at_detail,
                }
            })
            .collect();
        Deadlock {
            cycle: entries,
            detected_after_ns: (closed_at > 0).then(|| now_ns.saturating_sub(closed_at)),
        }
    }

    fn stuck(
        &self,
        s: &Stuck,
        stacks: &dyn Fn(u32) -> Vec<u64>,
        symbolizer: &mut Symbolizer,
    ) -> StuckLock {
        let holder = match &s.holder {
            Some(h) => {
                let (stack, stack_detail) = self.stack(h.pc, 0, h.stack_id, stacks, symbolizer);
                StuckHolder {
                    goid: Some(h.goid),
                    state: self.holder_state(h),
                    acquired_at: acquisition_site(&stack, &stack_detail),
                    stack,
                    stack_detail,
                }
            }
            None => StuckHolder {
                goid: None,
                state: HolderState::Unknown,
                acquired_at: None,
                stack: Vec::new(),
                stack_detail: Vec::new(),
            },
        };
        StuckLock {
            lock: go_lock_ref(&self.target, &self.heap_names, symbolizer, s.addr),
            mode: match s.mode {
                LockMode::Write => HoldMode::Write,
                LockMode::Read => HoldMode::Read,
            },
            held_ns: s.held_ns,
            holder,
            waiters: s.waiters,
            readers_waiting: s.readers_waiting,
            writers_waiting: s.writers_waiting,
        }
    }

    /// What the holder goroutine is doing, from its `g` in the live process: a `g` that
    /// now carries another goroutine id was reused after the holder exited.
    fn holder_state(&self, h: &Hold) -> HolderState {
        if self.model.is_waiting(h.goid).is_some() {
            return HolderState::Blocked;
        }
        let offsets = &self.target.offsets;
        let Some(goid) = read_u64(self.pid, h.g.wrapping_add(offsets.goid)) else {
            return HolderState::Unknown;
        };
        if goid != h.goid {
            return HolderState::Exited;
        }
        let Some(status) = read_u32(self.pid, h.g.wrapping_add(offsets.atomicstatus)) else {
            return HolderState::Unknown;
        };
        // runtime2.go: _Gidle 0, _Grunnable 1, _Grunning 2, _Gsyscall 3, _Gwaiting 4,
        // _Gdead 6, _Gcopystack 8, _Gpreempted 9.
        match status & !G_SCAN {
            1 | 2 | 3 | 8 => HolderState::Running,
            4 | 9 => HolderState::Blocked,
            0 | 6 => HolderState::Exited,
            _ => HolderState::Unknown,
        }
    }

    /// Function names and detailed lines of a Go stack: the site `pc`, the `caller` of an
    /// entry site (which the frame-pointer walk skips there), then the kernel's walk, with
    /// inlined frames expanded from the pclntab.
    fn stack(
        &self,
        pc: u64,
        caller: u64,
        stack_id: i32,
        stacks: &dyn Fn(u32) -> Vec<u64>,
        symbolizer: &mut Symbolizer,
    ) -> (Vec<String>, Vec<String>) {
        let mut ips = u32::try_from(stack_id).map(stacks).unwrap_or_default();
        if ips.first() != Some(&pc) {
            ips.insert(0, pc);
        }
        if caller != 0 && ips.get(1) != Some(&caller) {
            ips.insert(1, caller);
        }
        let mut names = Vec::new();
        let mut detail = Vec::new();
        for (i, &ip) in ips.iter().enumerate() {
            // Return addresses point after the call; look up the call itself.
            let lookup = if i == 0 { ip } else { ip.saturating_sub(1) };
            let frames = self
                .target
                .table
                .frames(lookup.wrapping_sub(self.target.bias));
            if frames.is_empty() {
                let frame = symbolizer.frame(lookup);
                names.push(frame.function_name());
                detail.push(frame.display());
                continue;
            }
            for f in &frames {
                names.push(f.function.clone());
                detail.push(go_frame_display(f));
            }
        }
        (names, detail)
    }

    /// Per-lock summaries of the Go locks, with their waits closed at `now_ns`.
    pub fn finish(&mut self, now_ns: u64, symbolizer: &mut Symbolizer) -> Vec<LockSummary> {
        self.model.finish(now_ns);
        self.model
            .stats()
            .iter()
            .map(|(addr, stats)| LockSummary {
                lock: go_lock_ref(&self.target, &self.heap_names, symbolizer, addr),
                kind: match self.model.lock_kind(addr) {
                    GoLockKind::Mutex => LockKind::GoMutex,
                    GoLockKind::RwMutex => LockKind::GoRwMutex,
                },
                contentions: stats.contentions,
                max_waiters: stats.max_waiters,
                wait_ns: stats.wait(),
                hold_ns: stats.hold(),
                top_waiter_stack: Vec::new(),
            })
            .collect()
    }
}

/// Where a lock was taken: the first frame of the acquisition stack outside the lock
/// implementation (the site itself may be inside an out-of-line `RWMutex.Lock`), as
/// `function (file:line)`.
fn acquisition_site(names: &[String], detail: &[String]) -> Option<String> {
    names
        .iter()
        .position(|n| !is_lock_internal(n))
        .and_then(|i| detail.get(i))
        .or_else(|| detail.last())
        .cloned()
}

fn go_frame_display(f: &crate::gosym::GoFrame) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => {
            let file = file.rsplit('/').next().unwrap_or(file);
            format!("{} ({file}:{line})", f.function)
        }
        _ => f.function.clone(),
    }
}

/// The lock's name: the global it lies in, with the field path down to it when the
/// binary's DWARF says (`main.store.mu`), else the symbol (`main.store+0x8`); for a lock
/// in a heap object, its struct's type and field (`main.Store.mu`) when learnt.
fn go_lock_ref(
    target: &GoTarget,
    heap_names: &FxHashMap<u64, Arc<str>>,
    symbolizer: &mut Symbolizer,
    addr: u64,
) -> LockRef {
    let mut lock = symbolizer.lock_ref(addr);
    if lock.name.is_none()
        && let Some(name) = heap_names.get(&addr)
    {
        lock.name = Some(name.to_string());
        return lock;
    }
    if let (Some(names), Some(name)) = (&target.dwarf_names, &lock.name) {
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

fn read_bytes<const N: usize>(pid: u32, addr: u64) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    procfs::read_memory(pid, addr, &mut buf)
        .ok()
        .filter(|&n| n == N)
        .map(|_| buf)
}

fn read_i32(pid: u32, addr: u64) -> Option<i32> {
    read_bytes::<4>(pid, addr).map(i32::from_ne_bytes)
}

fn read_u32(pid: u32, addr: u64) -> Option<u32> {
    read_bytes::<4>(pid, addr).map(u32::from_ne_bytes)
}

fn read_u64(pid: u32, addr: u64) -> Option<u64> {
    read_bytes::<8>(pid, addr).map(u64::from_ne_bytes)
}
