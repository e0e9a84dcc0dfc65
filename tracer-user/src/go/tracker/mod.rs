//! The Go side of a live attach: recognise a Go target, plan its lock probe sites, and turn
//! the Go lock model's findings into report entries (deadlocks over goroutines, stuck
//! locks, per-lock summaries), reading the live process where a finding must be checked.
//!
//! The pure parts live elsewhere: `go::sym` reads the pclntab, `go::probe` plans the
//! sites, `go::lock_model` is the lock state machine. This module is the glue that needs
//! the process.
//!
//! `parked`: findings from snapshots of the goroutines (waits that predate the attach,
//! holders named by their stacks).
mod order;
mod parked;
mod runtime_source;

use std::{
    collections::{HashSet, VecDeque},
    fmt::Write as _,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::{FxHashMap, FxHashSet};
use thiserror::Error;
use tracer_common::GoOp;

use self::parked::{ParkedWatch, TracedView};
pub use self::{
    parked::{GoroutineSource, ParkedSnapshot, SnapshotError},
    runtime_source::RuntimeGoroutines,
};
use crate::{
    assemble::{GoNames, StackSource},
    go::{
        defers::DeferAnalyzer,
        frame_holds::FrameHoldAnalyzer,
        goroutines::{
            GoroutineReader, ParkedLockKind, classify_semaphore_release, classify_semaphore_wait,
            is_sema_wrapper,
        },
        lock_model::{
            GoCounts, GoCycle, GoHold, GoLockEvent, GoLockKind, GoLockMode, GoLockModel,
            GoProfileEntry, GoWaitProfile, ParkSide, RW_READER_COUNT_OFFSET, StuckCandidate,
        },
        probe::{
            DwarfNames, GoLockOwners, GoProbeError, GoRuntimeOffsets, GoSitePlan, attach_order,
            go_lock_names, go_runtime_offsets, plan_go_lock_sites_with, plan_go_park_sites,
        },
        sym::{GoBuildInfo, GoSymError, GoTable, go_build_info},
    },
    lock_order::LockClass,
    model::{
        HoldMode, HolderEvidence, HolderState, LockKind,
        live::UnnamedLiveLock,
        raw::{RawCycleEntry, RawFinding, RawHolder, RawLockStats, RawStack, RawStuckLock},
    },
    native::go_runtime::SemasleepLocks,
    probes::GoSites,
    target::{Executable, FileBytes, MapEntry, ProcError, TargetProcess},
};

/// Why a Go target is traced in futex mode only.
#[derive(Debug, Error)]
pub enum GoUnsupported {
    /// Says which file and why ("cannot read the executable ...").
    #[error(transparent)]
    Read(ProcError),
    #[error("cannot read its Go symbol table")]
    Symbols(#[source] GoSymError),
    #[error("cannot plan its lock probes")]
    Plan(#[source] GoProbeError),
    #[error("the offset of the goroutine id in the runtime's g is unknown for {version}")]
    Offsets { version: String },
}

/// Which Go probes are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoProbeMode {
    /// The default: only where goroutines park on a lock and where a lock is handed
    /// over (the fast paths run untouched); holders come from the goroutines' stacks.
    Parks,
    /// `--holds`: every acquisition and release as well (hold times, exact holders).
    Holds,
}

/// A Go executable ready to be probed.
pub struct GoTarget {
    /// The executable as opened here (`/proc/PID/exe`).
    pub exe: PathBuf,
    /// Go version and module path.
    pub build: GoBuildInfo,
    /// Where the lock sites are (all of them: they also name heap locks and locate
    /// holders in stacks, whichever sites are attached).
    pub plan: GoSitePlan,
    /// Which probes are attached.
    pub mode: GoProbeMode,
    /// Offsets into the runtime's `g`.
    pub offsets: GoRuntimeOffsets,
    /// How long reading the pclntab and planning took.
    pub plan_time: Duration,
    /// (file offset, attach cookie) of every planned site.
    attach_list: Vec<(u64, u64)>,
    table: Arc<GoTable>,
    /// The runtime's goroutines, when they can be read: `Err` says why not.
    goroutines: Result<RuntimeGoroutines, String>,
    /// Field paths of globals (`main.store.mu`), when the binary has DWARF.
    dwarf_names: Option<DwarfNames>,
    /// Names of locks in heap objects by the sites and calls that take them: from DWARF
    /// (`main.Store.mu`), else from the types of methods' receivers (`main.Store+0x18`).
    owners: GoLockOwners,
    /// Runtime address minus file virtual address (0 unless position-independent).
    bias: u64,
}

impl GoTarget {
    /// The report note on what was attached: Go version, module, sites and times.
    #[must_use]
    pub fn attach_note(&self, attached: usize, refused: usize, attach_time: Duration) -> String {
        let what = match self.mode {
            GoProbeMode::Parks => "park and hand-over sites",
            GoProbeMode::Holds => "lock sites",
        };
        let mut note = format!(
            "{} program{}: {}; planned in {} ms, attached in {} ms",
            self.build.go_version,
            self.build
                .module_path
                .as_ref()
                .map(|m| format!(" {m}"))
                .unwrap_or_default(),
            sites_attached_phrase(
                what,
                self.attach_list.len(),
                attached,
                refused,
                self.plan.skipped.len()
            ),
            self.plan_time.as_millis(),
            attach_time.as_millis(),
        );
        if !self.owners.is_empty() {
            let source = if self.dwarf_names.is_some() {
                "from DWARF"
            } else {
                "by the types of their methods' receivers (no DWARF)"
            };
            let _ = write!(
                note,
                "; {} sites and calls name the heap locks they take, {source}",
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

/// How many Go sites (`what`) were attached out of `planned`: with none planned, says
/// plainly that nothing was attached (rather than "0 attached" next to a kernel error from
/// attaching an empty list, issue 16).
fn sites_attached_phrase(
    what: &str,
    planned: usize,
    attached: usize,
    refused: usize,
    not_probeable: usize,
) -> String {
    if planned == 0 {
        format!(
            "no Go {what} to attach ({not_probeable} not probeable): nothing attached to the Go code"
        )
    } else {
        format!(
            "{attached} Go {what} attached ({refused} refused by the kernel, {not_probeable} not probeable)"
        )
    }
}

/// Reads the target's executable (once): `Ok(None)` when it is not a Go program. `maps`
/// are the target's, as read at attach.
///
/// # Errors
/// When the executable cannot be read, or it is a Go program whose lock paths cannot be
/// traced (the caller carries on in futex mode and says why).
pub fn inspect(
    target: &dyn TargetProcess,
    maps: &[MapEntry],
    mode: GoProbeMode,
) -> Result<Option<GoTarget>, GoUnsupported> {
    let started = Instant::now();
    let Executable {
        open_path: exe,
        path: exe_path,
        data,
    } = target.executable().map_err(GoUnsupported::Read)?;
    let Some(build) = go_build_info(&data) else {
        return Ok(None);
    };
    // One pclntab for planning and for the session: views of the mapped executable, not
    // copies (see `FileBytes`).
    let table = GoTable::from_file(&data).map_err(GoUnsupported::Symbols)?;
    let plan = plan_go_lock_sites_with(&data, &table).map_err(GoUnsupported::Plan)?;
    let offsets =
        go_runtime_offsets(&data, &build.go_version).ok_or_else(|| GoUnsupported::Offsets {
            version: build.go_version.clone(),
        })?;
    let bias = load_bias(&data, exe_path.as_deref(), maps);
    let (dwarf_names, owners) = go_lock_names(&data, &table, &plan);
    let table = Arc::new(table);
    let goroutines = runtime_goroutines(&data, &table, &plan, &build.go_version, bias, target);
    // Planning read most of the pclntab and the code around every lock site; the session
    // reads only the entries of the stacks it names. Give the pages back: they are the
    // page cache's, mapped again one by one when a name needs them.
    data.release_resident();
    let attached = match mode {
        GoProbeMode::Holds => None,
        GoProbeMode::Parks => Some(plan_go_park_sites(&data, &table).map_err(GoUnsupported::Plan)?),
    };
    let attach_list = attach_order(&attached.as_ref().unwrap_or(&plan).sites);
    Ok(Some(GoTarget {
        exe,
        build,
        plan,
        mode,
        offsets,
        plan_time: started.elapsed(),
        attach_list,
        table,
        goroutines,
        dwarf_names,
        owners,
        bias,
    }))
}

/// The reader of the target's goroutines, their deferred unlocks and frame lock
/// variables, or why there is none.
fn runtime_goroutines(
    data: &Arc<FileBytes>,
    table: &Arc<GoTable>,
    plan: &GoSitePlan,
    go_version: &str,
    bias: u64,
    target: &dyn TargetProcess,
) -> Result<RuntimeGoroutines, String> {
    let reader = GoroutineReader::new(&data[..], table, go_version, bias, target).map_err(|e| {
        format!(
            "goroutines parked before the attach are not seen: {}",
            crate::error_chain(&e)
        )
    })?;
    // Without a holder analysis, waits are still seen; holders then come from the
    // other analysis and the probes, and a note says which one is missing.
    let mut notes = Vec::new();
    let defers = DeferAnalyzer::new(data, Arc::clone(table), go_version, bias)
        .map_err(|e| {
            notes.push(format!(
                "holders are not named by their deferred unlocks: {}",
                crate::error_chain(&e)
            ));
        })
        .ok();
    let frames = FrameHoldAnalyzer::new(Arc::clone(table), data, plan, bias)
        .map_err(|e| {
            notes.push(format!(
                "holders are not named by their frames' lock variables: {}",
                crate::error_chain(&e)
            ));
        })
        .ok();
    Ok(RuntimeGoroutines::new(reader, defers, frames, Arc::clone(table)).with_notes(notes))
}

/// The load bias of the main executable: 0 for the usual fixed-address Go binary; for a
/// position-independent one, where its first segment was mapped minus where the file
/// says it goes. `exe_path` is the executable's path as the maps name it.
pub(crate) fn load_bias(data: &[u8], exe_path: Option<&str>, maps: &[MapEntry]) -> u64 {
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
    let Some(exe) = exe_path else {
        return 0;
    };
    maps.iter()
        .filter(|m| m.offset == 0 && m.path.as_deref() == Some(exe))
        .map(|m| m.start.wrapping_sub(first_vaddr & !0xfff))
        .min()
        .unwrap_or(0)
}

/// How long a deadlock candidate must persist before it is checked and reported: long
/// enough that a release racing its own event has been drained.
const CONFIRM_AFTER: Duration = Duration::from_millis(30);

/// `mutexLocked`, bit 0 of `sync.Mutex.state`.
const MUTEX_LOCKED: i32 = 1;
/// `_Gscan`: set on top of a status while the garbage collector scans the stack.
const G_SCAN: u32 = 0x1000;
/// Stack frames searched for a call that names a lock.
const NAMING_FRAMES: usize = 8;
/// How long a goroutine parks on a lock before a snapshot is brought forward to look
/// for the cycle or the holder behind it.
const LONG_PARK: Duration = Duration::from_millis(50);
/// Most recent parks remembered for that (the oldest are forgotten first).
const MAX_RECENT_PARKS: usize = 4096;
/// Most semaphore callers remembered (then the memory starts over: a program has a few).
const MAX_SEMAPHORE_CALLERS: usize = 1 << 12;
/// Most locks remembered as already searched by stack (then the memory starts over).
const MAX_STACK_SEARCHED: usize = 1 << 16;
/// Most heap lock names remembered: a program that locks ever new heap objects would
/// otherwise grow the table without bound. Past it, only the names of the locks in the
/// report (tracked stats), held or waited for now, or of a reported deadlock are kept;
/// a lock whose name is dropped gets it again at its next acquisition.
const MAX_HEAP_NAMES: usize = 1 << 16;

/// A goroutine waiting for a lock now: (goroutine id, thread it ran on, lock, since when).
pub type GoWaitNow = (u64, u32, u64, u64);
/// A hold known now: (lock, goroutine id, thread it ran on).
pub type GoHoldNow = (u64, u64, u32);

/// Live Go tracing state of a session.
pub struct GoTracker {
    /// The traced process, whose memory confirms findings (shared with the session).
    process: Arc<dyn TargetProcess>,
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
    /// Recent parks seen by the probes (time, goroutine), oldest first: one still parked
    /// after [`LONG_PARK`] brings the next snapshot forward.
    recent_parks: VecDeque<(u64, u64)>,
    /// What each `sync` caller of a semaphore (return address, and whether it parks)
    /// says: the semaphore's offset in its lock, and the park side.
    semaphore_callers: FxHashMap<(u64, bool), Option<(u64, i64)>>,
    /// Snapshots of the goroutines, when the runtime's goroutine list can be read.
    parked: Option<ParkedWatch>,
    stuck_after: Duration,
    /// Locks the traced model reported stuck.
    model_stuck: HashSet<u64>,
    /// The lock-order graph of the holds the model applied.
    order: order::GoOrder,
    /// Whether holds go to `order` (`--no-lock-order` turns it off).
    ordering: bool,
}

impl GoTracker {
    /// Starts tracking `target` (already probed) in `process`.
    #[must_use]
    pub fn new(
        process: Arc<dyn TargetProcess>,
        target: GoTarget,
        stuck_after: Duration,
        max_locks: usize,
    ) -> Self {
        let mode = target.mode;
        Self {
            process,
            target,
            model: {
                let stuck_ns = u64::try_from(stuck_after.as_nanos()).unwrap_or(u64::MAX);
                match mode {
                    GoProbeMode::Parks => GoLockModel::waits_only(stuck_ns),
                    GoProbeMode::Holds => GoLockModel::new(stuck_ns),
                }
                .with_max_locks(max_locks)
            },
            pending: Vec::new(),
            deadlocks: 0,
            deadlocked_locks: HashSet::new(),
            events: 0,
            heap_names: FxHashMap::default(),
            unnamed: FxHashMap::default(),
            stack_searched: FxHashSet::default(),
            semaphore_callers: FxHashMap::default(),
            recent_parks: VecDeque::new(),
            parked: None,
            stuck_after,
            model_stuck: HashSet::new(),
            order: order::GoOrder::default(),
            ordering: true,
        }
    }

    /// Builds no lock-order graph (`--no-lock-order`).
    pub fn without_lock_order(&mut self) {
        self.ordering = false;
    }

    /// Feeds the holds the last event took or ended to the lock-order graph.
    fn order_holds(&mut self) {
        if !self.ordering {
            self.model.take_hold_changes();
            return;
        }
        let bias = self.target.bias;
        for change in self.model.take_hold_changes() {
            let (heap_names, owners, table, order) = (
                &self.heap_names,
                &self.target.owners,
                &self.target.table,
                &mut self.order,
            );
            order.apply(change, |lock, pc| {
                let named = heap_names
                    .get(&lock)
                    .or_else(|| owners.name_at(pc.wrapping_sub(bias)));
                match named {
                    Some(name) => LockClass::Named(Arc::clone(name)),
                    None => LockClass::Site(
                        table
                            .func_for_pc(pc.wrapping_sub(bias))
                            .map_or(pc, |f| f.entry.wrapping_add(bias)),
                    ),
                }
            });
        }
    }

    /// Reads the goroutines through `source` from now on: the first findings then
    /// include what was already stuck before the attach.
    pub fn watch_goroutines(&mut self, source: Box<dyn GoroutineSource>) {
        self.parked = Some(ParkedWatch::new(source, self.stuck_after));
    }

    /// Starts reading the target's own goroutines, when the attach found how; `Err` is
    /// the note saying why not.
    ///
    /// # Errors
    /// The note, once (later calls have nothing left to start).
    pub fn watch_runtime_goroutines(&mut self) -> Result<(), String> {
        let taken = std::mem::replace(&mut self.target.goroutines, Err(String::new()));
        match taken {
            Ok(source) => {
                self.watch_goroutines(Box::new(source));
                Ok(())
            }
            Err(note) => Err(note),
        }
    }

    /// Snapshots taken of the goroutines, and the time they took.
    #[must_use]
    pub fn snapshot_cost(&self) -> (u64, Duration) {
        self.parked
            .as_ref()
            .map_or((0, Duration::ZERO), |p| (p.snapshots, p.snapshot_time))
    }

    /// Applies a Go record (decoded by `event::decode`) to the model.
    pub fn on_event(&mut self, event: &GoLockEvent) {
        self.events += 1;
        let event = match event.op {
            GoOp::SemacquireEnter | GoOp::SemreleaseEnter => {
                let Some(event) = self.lock_of_semaphore(event) else {
                    // A semaphore of something else (a `WaitGroup`, …).
                    return;
                };
                event
            }
            _ => *event,
        };
        self.model.handle(&event);
        self.learn_name(&event);
        self.order_holds();
        if event.op == GoOp::SemacquireEnter {
            if self.recent_parks.len() >= MAX_RECENT_PARKS {
                self.recent_parks.pop_front();
            }
            self.recent_parks.push_back((event.ts_ns, event.goid));
        }
    }

    /// The event of a semaphore park or hand-over rewritten about its lock: `addr` the
    /// lock, and for a park `value` the side ([`ParkSide`]), from the `sync` code that
    /// called the semaphore (its frames at the return address `caller`); `None` when the
    /// semaphore is not a lock's.
    fn lock_of_semaphore(&mut self, ev: &GoLockEvent) -> Option<GoLockEvent> {
        let key = (ev.caller, ev.op == GoOp::SemacquireEnter);
        let table = &self.target.table;
        let bias = self.target.bias;
        let shape = *self.semaphore_callers.entry(key).or_insert_with(|| {
            // Offsets relative to a semaphore at 0x1000: the shape does not depend on it.
            const AT: u64 = 0x1000;
            let frames = table.frames(ev.caller.wrapping_sub(bias).wrapping_sub(1));
            let above = frames
                .iter()
                .map(|f| f.function.as_str())
                .skip_while(|name| is_sema_wrapper(name));
            if key.1 {
                classify_semaphore_wait(above, AT).map(|w| {
                    (
                        AT - w.lock,
                        ParkSide {
                            mode: w.mode,
                            drains_readers: w.drains_readers,
                            rw: w.kind == ParkedLockKind::RwMutex,
                        }
                        .encode(),
                    )
                })
            } else {
                classify_semaphore_release(above, AT).map(|lock| (AT - lock, 0))
            }
        });
        if self.semaphore_callers.len() > MAX_SEMAPHORE_CALLERS {
            self.semaphore_callers.clear();
        }
        let (offset, value) = shape?;
        Some(GoLockEvent {
            addr: ev.addr.checked_sub(offset)?,
            value,
            ..*ev
        })
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
            GoOp::MutexLockFast
            | GoOp::RwLockFast
            | GoOp::LockSlowEnter
            | GoOp::SemacquireEnter => ev.addr,
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
                if self.heap_names.len() >= MAX_HEAP_NAMES {
                    forget_cold_heap_names(
                        &mut self.heap_names,
                        &self.model,
                        &self.deadlocked_locks,
                    );
                }
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
    fn name_from_stacks(&mut self, stacks: &dyn StackSource) {
        if self.stack_searched.len() >= MAX_STACK_SEARCHED {
            self.stack_searched.clear();
        }
        let bias = self.target.bias;
        for (lock, stack_id) in std::mem::take(&mut self.unnamed) {
            self.stack_searched.insert(lock);
            let Ok(id) = u32::try_from(stack_id) else {
                continue;
            };
            let name = stacks
                .user_stack(id)
                .iter()
                .take(NAMING_FRAMES)
                .find_map(|&ip| self.target.owners.name_at(ip.wrapping_sub(bias)));
            if let Some(name) = name {
                self.heap_names.insert(lock, Arc::clone(name));
            }
        }
    }

    /// Names the locks of a finding read from the goroutines by the calls on their
    /// stacks that take them (the waiters' stacks, then the holders'), as for traced
    /// acquisitions.
    fn name_from_parked_stacks(&mut self, finding: &RawFinding) {
        if self.target.owners.is_empty() {
            return;
        }
        let mut named: Vec<(u64, &[u64])> = Vec::new();
        match finding {
            RawFinding::Deadlock(entries) => {
                for e in entries {
                    if let RawStack::GoUnwound(pcs) = &e.waiting {
                        named.push((e.waits_for, pcs));
                    }
                }
            }
            RawFinding::StuckLock(stuck) => {
                for h in &stuck.holders {
                    if let RawStack::GoUnwound(pcs) = &h.acquired {
                        named.push((stuck.addr, pcs));
                    }
                }
            }
            // Its locks were named when they were taken.
            RawFinding::LockOrderInversion(_) => {}
        }
        let bias = self.target.bias;
        for (lock, pcs) in named {
            if self.heap_names.contains_key(&lock) {
                continue;
            }
            if let Some(name) = pcs
                .iter()
                .find_map(|&pc| self.target.owners.name_at(pc.wrapping_sub(bias)))
            {
                self.heap_names.insert(lock, Arc::clone(name));
            }
        }
    }

    /// Go records received.
    #[must_use]
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Notes on what the Go lock model had to leave out (see [`GoCounts`]).
    #[must_use]
    pub fn notes(&self) -> Vec<String> {
        let mut notes = model_notes(self.model.counts());
        notes.extend(self.order.counts().notes());
        if let Some(parked) = &self.parked {
            notes.extend(parked.notes());
        }
        notes
    }

    /// The goroutines' waits and holds as they stand (see
    /// [`GoLockModel::wait_edges`]), for a picture of the wait-for graph.
    #[must_use]
    pub fn wait_edges(&self) -> crate::go::lock_model::WaitEdges {
        self.model.wait_edges()
    }

    /// The goroutines waiting for a lock now, as (goroutine id, thread it ran on, lock,
    /// since when), and every hold known now as (lock, goroutine id, thread): for
    /// `tracer top`.
    #[must_use]
    pub fn waits_now(&self) -> (Vec<GoWaitNow>, Vec<GoHoldNow>) {
        let edges = self.model.wait_edges();
        let waits = edges
            .waits
            .iter()
            .map(|&(goid, tid, lock)| {
                let since = self.model.is_waiting(goid).map_or(0, |w| w.since_ns);
                (goid, tid, lock, since)
            })
            .collect();
        (waits, edges.holds)
    }

    /// Deadlocks reported so far.
    #[must_use]
    pub fn deadlocks(&self) -> usize {
        self.deadlocks
    }

    /// Whether goroutine cycles wait for their confirmation (after `CONFIRM_AFTER`).
    #[must_use]
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.parked.as_ref().is_some_and(ParkedWatch::has_pending)
    }

    /// Findings due now: confirmed deadlocks and stuck locks.
    pub fn findings(&mut self, now_ns: u64, stacks: &dyn StackSource) -> Vec<RawFinding> {
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
            out.push(RawFinding::Deadlock(raw_deadlock(&cycle)));
        }
        let long_park_ns = u64::try_from(LONG_PARK.as_nanos()).unwrap_or(u64::MAX);
        let mut still_parked = false;
        while let Some(&(ts, goid)) = self.recent_parks.front() {
            if now_ns.saturating_sub(ts) < long_park_ns {
                break;
            }
            self.recent_parks.pop_front();
            still_parked |= self
                .model
                .is_waiting(goid)
                .is_some_and(|w| w.since_ns == ts);
        }
        if let Some(mut parked) = self.parked.take() {
            if still_parked {
                parked.hurry();
            }
            let mut deadlocked = std::mem::take(&mut self.deadlocked_locks);
            let found = parked.findings(&*self.process, now_ns, &mut deadlocked, &*self);
            self.deadlocked_locks = deadlocked;
            self.deadlocks += found
                .iter()
                .filter(|f| matches!(f, RawFinding::Deadlock(_)))
                .count();
            for finding in &found {
                self.name_from_parked_stacks(finding);
            }
            out.extend(found);
            self.parked = Some(parked);
        }
        // With the default probes the snapshots report stuck locks, with the holders the
        // stacks name; the model (waits only) does when the goroutines cannot be read.
        let snapshots_report = self.target.mode == GoProbeMode::Parks
            && self.parked.as_ref().is_some_and(ParkedWatch::is_active);
        let due = if snapshots_report {
            Vec::new()
        } else {
            self.model.due_stuck_locks(now_ns)
        };
        for stuck in due {
            if self.deadlocked_locks.contains(&stuck.addr)
                || self
                    .parked
                    .as_ref()
                    .is_some_and(|p| p.reported_stuck(stuck.addr))
            {
                continue;
            }
            self.model_stuck.insert(stuck.addr);
            out.push(RawFinding::StuckLock(self.raw_stuck(&stuck)));
        }
        out.extend(
            self.order
                .take_found()
                .into_iter()
                .map(RawFinding::LockOrderInversion),
        );
        out
    }
}

impl TracedView for GoTracker {
    /// The holders of `lock` that the probes saw take it.
    fn traced_holders(&self, lock: u64) -> Vec<RawHolder> {
        let hold = |h: &GoHold| RawHolder {
            goid: h.goid,
            state: self.holder_state(h),
            evidence: HolderEvidence::TracedAcquire,
            acquired: acquired_at(h),
        };
        match self.model.writer(lock) {
            Some(w) => vec![hold(w)],
            None => self.model.readers(lock).iter().map(hold).collect(),
        }
    }

    fn last_release(&self, lock: u64) -> Option<u64> {
        self.model.last_release(lock)
    }

    fn wait_start(&self, goid: u64, lock: u64) -> Option<u64> {
        self.model
            .is_waiting(goid)
            .filter(|w| w.lock == lock)
            .map(|w| w.since_ns)
    }

    fn reported_stuck(&self, lock: u64) -> bool {
        self.model_stuck.contains(&lock)
    }
}

impl GoTracker {
    /// Where the program's runtime locks put their waiters to sleep, if it is a Go ≥ 1.24
    /// build (whose Linux runtime has `runtime.semasleep` only from then): see
    /// [`SemasleepLocks`].
    #[must_use]
    pub fn semasleep_locks(&self) -> Option<SemasleepLocks> {
        let bias = self.target.bias;
        let code = |name: &str| {
            self.target
                .table
                .find_func(name)
                .map(|f| f.entry.wrapping_add(bias)..f.end.wrapping_add(bias))
        };
        Some(SemasleepLocks::new(
            code("runtime.lock2")?,
            code("runtime.semasleep")?,
        ))
    }

    /// What names this program's stacks and locks.
    #[must_use]
    pub fn names(&self) -> GoNames<'_> {
        GoNames {
            table: &self.target.table,
            bias: self.target.bias,
            dwarf_names: self.target.dwarf_names.as_ref(),
            heap_names: &self.heap_names,
        }
    }

    /// Whether the target's memory agrees that every lock of the cycle is taken: the
    /// mutex's locked bit for a write wait, a pending or active writer (negative
    /// `readerCount`) for a read wait.
    fn locks_still_taken(&self, cycle: &GoCycle) -> bool {
        cycle
            .entries
            .iter()
            .all(|e| lock_taken(&*self.process, e.waiter.lock, e.waiter.mode))
    }

    fn raw_stuck(&self, s: &StuckCandidate) -> RawStuckLock {
        RawStuckLock {
            addr: s.addr,
            mode: match s.mode {
                GoLockMode::Write => HoldMode::Write,
                GoLockMode::Read => HoldMode::Read,
            },
            held_ns: s.held_ns,
            holders: s
                .holder
                .iter()
                .map(|h| RawHolder {
                    goid: h.goid,
                    state: self.holder_state(h),
                    evidence: HolderEvidence::TracedAcquire,
                    acquired: acquired_at(h),
                })
                .collect(),
            waiters: s.waiters,
            readers_waiting: s.readers_waiting,
            writers_waiting: s.writers_waiting,
        }
    }

    /// What the holder goroutine is doing, from its `g` in the live process: a `g` that
    /// now carries another goroutine id was reused after the holder exited.
    fn holder_state(&self, h: &GoHold) -> HolderState {
        if self.model.is_waiting(h.goid).is_some() {
            return HolderState::Blocked;
        }
        goroutine_state(&*self.process, &self.target.offsets, h.g, h.goid)
    }

    /// The Go locks folded into one aggregate to bound memory (see `crate::lockstats`).
    #[must_use]
    pub fn folded(&self) -> &crate::lockstats::FoldedLocks {
        self.model.stats().folded()
    }

    /// The Go locks' counters as they stand, for live metrics (the folded aggregate as
    /// one entry standing for its locks).
    #[must_use]
    pub fn live_locks(&self) -> Vec<UnnamedLiveLock> {
        let stats = self.model.stats();
        let mut out: Vec<UnnamedLiveLock> = stats
            .iter()
            .map(|(addr, stats)| UnnamedLiveLock {
                addr,
                kind: go_lock_kind(self.model.lock_kind(addr)),
                contentions: stats.contentions,
                wait: stats.wait_buckets(),
                hold: stats.hold_buckets(),
                locks: 1,
            })
            .collect();
        let folded = stats.folded();
        if folded.locks > 0 {
            out.push(UnnamedLiveLock {
                addr: 0,
                kind: LockKind::GoMutex,
                contentions: folded.stats.contentions,
                wait: folded.stats.wait_buckets(),
                hold: folded.stats.hold_buckets(),
                locks: folded.locks,
            });
        }
        out
    }

    /// Starts collecting a contention profile under `id`: the goroutine lock waits that
    /// end from now on, until [`GoTracker::finish_profile`].
    pub fn start_profile(&mut self, id: u64) {
        self.model.start_profile(id);
    }

    /// The goroutine lock waits collected under `id` since [`GoTracker::start_profile`],
    /// which stops collecting them, by lock and waiting stack; `None` if no such profile
    /// was started.
    pub fn finish_profile(&mut self, id: u64) -> Option<GoProfile> {
        let profile = self.model.finish_profile(id)?;
        Some(self.go_profile(profile))
    }

    /// Starts collecting a holder profile under `id`: the goroutine lock waits that end
    /// from now on, charged to the stack where the hold they waited for was taken
    /// (needs the `--holds` sites), until [`GoTracker::finish_holder_profile`].
    pub fn start_holder_profile(&mut self, id: u64) {
        self.model.start_holder_profile(id);
    }

    /// The holder profile collected under `id`, by lock and holder's acquisition stack
    /// (a stack with `pc` 0: the holder was not known).
    pub fn finish_holder_profile(&mut self, id: u64) -> Option<GoProfile> {
        let profile = self.model.finish_holder_profile(id)?;
        Some(self.go_profile(profile))
    }

    /// A window's (lock, stack) pairs as the profile's waits.
    fn go_profile(&self, profile: GoWaitProfile) -> GoProfile {
        let overflowed = profile.overflowed;
        let waits = profile
            .into_entries()
            .into_iter()
            .map(|e: GoProfileEntry| {
                // The lock may have shown itself an `RWMutex` after the pair's waits.
                let kind = match (e.kind, self.model.lock_kind(e.lock)) {
                    (GoLockKind::Mutex, GoLockKind::Mutex) => GoLockKind::Mutex,
                    _ => GoLockKind::RwMutex,
                };
                GoProfileWait {
                    lock: e.lock,
                    kind: go_lock_kind(kind),
                    stack: RawStack::Go {
                        pc: e.stack.pc,
                        caller: e.stack.caller,
                        stack_id: e.stack.stack_id,
                    },
                    count: e.count,
                    delay_ns: e.delay_ns,
                }
            })
            .collect();
        GoProfile { waits, overflowed }
    }

    /// Whether the lock at `addr` has waiters and no release for the stuck threshold
    /// now (a lock reported stuck that is still stuck).
    #[must_use]
    pub fn still_stuck(&self, addr: u64, now_ns: u64) -> bool {
        let stuck_ns = u64::try_from(self.stuck_after.as_nanos()).unwrap_or(u64::MAX);
        self.model
            .last_release(addr)
            .is_some_and(|since| now_ns.saturating_sub(since) >= stuck_ns)
    }

    /// Per-lock statistics of the Go locks, with their waits closed at `now_ns`.
    pub fn finish(&mut self, now_ns: u64) -> Vec<RawLockStats> {
        self.model.finish(now_ns);
        self.model
            .stats()
            .iter()
            .map(|(addr, stats)| RawLockStats {
                addr,
                kind: go_lock_kind(self.model.lock_kind(addr)),
                contentions: stats.contentions,
                max_waiters: stats.max_waiters,
                wait_ns: stats.wait(),
                hold_ns: stats.hold(),
            })
            .collect()
    }
}

/// The goroutine lock waits of a contention profile's window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoProfile {
    /// By (lock, waiting stack), in no particular order.
    pub waits: Vec<GoProfileWait>,
    /// Waits left out: the window had `go::lock_model::MAX_GO_PROFILE_ENTRIES` pairs.
    pub overflowed: u64,
}

/// The waits on one Go lock from one stack in a profile's window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoProfileWait {
    pub lock: u64,
    /// `GoMutex` or `GoRwMutex`.
    pub kind: LockKind,
    /// Where the waits began (a [`RawStack::Go`]).
    pub stack: RawStack,
    /// Waits.
    pub count: u64,
    /// Their total time, in nanoseconds.
    pub delay_ns: u64,
}

/// The report's kind of a Go lock.
fn go_lock_kind(kind: GoLockKind) -> LockKind {
    match kind {
        GoLockKind::Mutex => LockKind::GoMutex,
        GoLockKind::RwMutex => LockKind::GoRwMutex,
    }
}

/// Drops the heap lock names no report needs now (see [`MAX_HEAP_NAMES`]): keeps those
/// of tracked, live and deadlocked locks.
fn forget_cold_heap_names(
    heap_names: &mut FxHashMap<u64, Arc<str>>,
    model: &GoLockModel,
    deadlocked: &HashSet<u64>,
) {
    heap_names.retain(|lock, _| {
        model.stats().slot_of(*lock).is_some() || model.is_live(*lock) || deadlocked.contains(lock)
    });
}

/// Whether `process`'s memory says the Go lock at `lock` is taken in a way that keeps a
/// `mode` waiter waiting: the mutex's locked bit for a write wait, a pending or active
/// writer (negative `readerCount`) for a read wait.
fn lock_taken(process: &dyn TargetProcess, lock: u64, mode: GoLockMode) -> bool {
    match mode {
        GoLockMode::Write => process
            .read_i32(lock)
            .is_some_and(|s| s & MUTEX_LOCKED != 0),
        GoLockMode::Read => process
            .read_i32(lock + RW_READER_COUNT_OFFSET)
            .is_some_and(|c| c < 0),
    }
}

/// What goroutine `goid` is doing, read from its `g` at `g` in `process`: a `g` that now
/// carries another goroutine id was reused after the goroutine exited.
fn goroutine_state(
    process: &dyn TargetProcess,
    offsets: &GoRuntimeOffsets,
    g: u64,
    goid: u64,
) -> HolderState {
    let Some(now_goid) = process.read_u64(g.wrapping_add(offsets.goid)) else {
        return HolderState::Unknown;
    };
    if now_goid != goid {
        return HolderState::Exited;
    }
    let Some(status) = process.read_u32(g.wrapping_add(offsets.atomicstatus)) else {
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

/// The notes a report needs about the Go model's limits: each one that was hit may hide a
/// deadlock.
fn model_notes(counts: GoCounts) -> Vec<String> {
    let mut notes = Vec::new();
    if counts.cycles_dropped > 0 {
        notes.push(format!(
            "{} goroutine wait-for cycles were found but not reported (too many pending): a deadlock may be missing",
            counts.cycles_dropped
        ));
    }
    if counts.searches_cut > 0 {
        notes.push(format!(
            "{} goroutine cycle searches stopped at their step budget: a deadlock through a tangle of read-held locks may have been missed",
            counts.searches_cut
        ));
    }
    notes
}

/// A confirmed goroutine cycle in raw terms.
fn raw_deadlock(cycle: &GoCycle) -> Vec<RawCycleEntry> {
    cycle
        .entries
        .iter()
        .map(|e| {
            let w = &e.waiter;
            RawCycleEntry {
                goid: Some(w.goid),
                tid: w.tid,
                holds: e.holds,
                waits_for: w.lock,
                waiting: RawStack::Go {
                    pc: w.pc,
                    caller: w.caller,
                    stack_id: w.stack_id,
                },
                waiting_since_ns: Some(w.since_ns),
                blocked_before_attach: false,
                // Go waits (semaphore acquires) have no timeout the tracer reads.
                timed: false,
                gives_up_at_ns: None,
                holding_since_ns: e.hold.as_ref().map(|h| h.since_ns),
                holder_evidence: e.hold.as_ref().map(|_| HolderEvidence::TracedAcquire),
                acquired: e.hold.as_ref().map_or(RawStack::None, acquired_at),
            }
        })
        .collect()
}

/// Where a goroutine took a lock it holds.
fn acquired_at(hold: &GoHold) -> RawStack {
    RawStack::Go {
        pc: hold.pc,
        caller: 0,
        stack_id: hold.stack_id,
    }
}

#[cfg(test)]
mod tests {
    /// Guards issue 16: a Go program without lock sites got "0 Go lock sites attached"
    /// (next to a misleading "`uprobe_multi` unavailable … Invalid argument" note); it must
    /// say nothing was attached. Checked to fail before the phrase had its own case.
    #[test]
    fn no_planned_sites_say_nothing_was_attached() {
        assert_eq!(
            super::sites_attached_phrase("lock sites", 0, 0, 0, 3),
            "no Go lock sites to attach (3 not probeable): nothing attached to the Go code"
        );
        assert_eq!(
            super::sites_attached_phrase("lock sites", 5, 4, 1, 2),
            "4 Go lock sites attached (1 refused by the kernel, 2 not probeable)"
        );
    }

    use super::*;
    use crate::{go::probe::OffsetSource, target::fake::FakeProcess};

    const OFFSETS: GoRuntimeOffsets = GoRuntimeOffsets {
        goid: 152,
        atomicstatus: 144,
        source: OffsetSource::VersionTable,
    };
    const G: u64 = 0xc000_0100;

    /// A process whose `g` at [`G`] runs goroutine `goid` in `status`.
    fn with_g(goid: u64, status: u32) -> FakeProcess {
        FakeProcess::new(7)
            .region(G, vec![0; 512], "rw-p", None)
            .poke(G + OFFSETS.goid, &goid.to_ne_bytes())
            .poke(G + OFFSETS.atomicstatus, &status.to_ne_bytes())
    }

    /// Guards the stuck-lock report's holder state, read from the holder's `g`: the
    /// runtime's statuses (with the GC's scan bit), a `g` reused by another goroutine,
    /// and a `g` that cannot be read.
    #[test]
    fn holder_state_is_read_from_the_g() {
        let state = |process: &FakeProcess| goroutine_state(process, &OFFSETS, G, 42);
        assert_eq!(state(&with_g(42, 2)), HolderState::Running);
        assert_eq!(state(&with_g(42, G_SCAN | 3)), HolderState::Running);
        assert_eq!(state(&with_g(42, 4)), HolderState::Blocked);
        assert_eq!(state(&with_g(42, 9)), HolderState::Blocked);
        assert_eq!(state(&with_g(42, 6)), HolderState::Exited);
        assert_eq!(state(&with_g(42, 5)), HolderState::Unknown);
        assert_eq!(state(&with_g(43, 2)), HolderState::Exited, "g reused");
        assert_eq!(state(&FakeProcess::new(7)), HolderState::Unknown);
        assert_eq!(state(&with_g(42, 2).exited()), HolderState::Unknown);
    }

    /// Guards the memory check before a Go deadlock is reported: a write wait needs the
    /// locked bit, a read wait a writer (negative `readerCount`).
    #[test]
    fn lock_taken_reads_the_lock_word() {
        const MU: u64 = 0xc000_0000;
        let process = |state: i32, readers: i32| {
            FakeProcess::new(7)
                .region(MU, vec![0; 64], "rw-p", None)
                .poke(MU, &state.to_ne_bytes())
                .poke(MU + RW_READER_COUNT_OFFSET, &readers.to_ne_bytes())
        };
        assert!(lock_taken(&process(1, 0), MU, GoLockMode::Write));
        assert!(lock_taken(&process(0b1011, 0), MU, GoLockMode::Write));
        assert!(!lock_taken(&process(0b1010, 0), MU, GoLockMode::Write));
        assert!(lock_taken(
            &process(0, -(1 << 30) + 2),
            MU,
            GoLockMode::Read
        ));
        assert!(!lock_taken(&process(1, 3), MU, GoLockMode::Read));
        assert!(!lock_taken(&FakeProcess::new(7), MU, GoLockMode::Write));
    }

    /// Guards the single read of the executable: a target whose executable is no Go
    /// program is not one, and one whose executable cannot be read says which file.
    #[test]
    fn inspect_reads_the_executable_through_the_target() {
        let not_go = FakeProcess::new(7).with_executable("/bin/prog", b"\x7fELF...".to_vec());
        assert!(matches!(
            inspect(&not_go, &[], GoProbeMode::Parks),
            Ok(None)
        ));
        let Err(why) = inspect(&FakeProcess::new(7), &[], GoProbeMode::Parks) else {
            panic!("an executable that cannot be read is an error");
        };
        assert!(
            crate::error_chain(&why).starts_with("cannot read the executable /proc/7/exe: "),
            "{why}"
        );
    }

    /// Guards the load bias of a position-independent executable: where its first
    /// segment is mapped (found by the path the executable was read with) minus its
    /// file address; 0 when that mapping is not found.
    #[test]
    fn load_bias_of_a_pie_comes_from_its_mapping() {
        // This test binary is position-independent, its first segment at 0.
        let data = std::fs::read(std::env::current_exe().expect("the test binary"))
            .expect("readable test binary");
        let mapping = |path: &str| MapEntry {
            start: 0x5555_0000_0000,
            end: 0x5555_0001_0000,
            read: true,
            write: false,
            exec: false,
            offset: 0,
            inode: 1,
            path: Some(path.to_owned()),
        };
        let maps = [mapping("/usr/lib/libc.so.6"), mapping("/bin/prog")];
        assert_eq!(
            load_bias(&data, Some("/bin/prog"), &maps[1..]),
            0x5555_0000_0000
        );
        assert_eq!(load_bias(&data, Some("/bin/other"), &maps), 0);
        assert_eq!(load_bias(&data, None, &maps), 0);
        assert_eq!(load_bias(b"not elf", Some("/bin/prog"), &maps), 0);
    }

    /// Guards against silent gaps: each limit of the Go model that was hit gets a note,
    /// and none appears when nothing was left out.
    #[test]
    fn every_go_model_limit_hit_gets_a_note() {
        assert!(model_notes(GoCounts::default()).is_empty());
        let notes = model_notes(GoCounts {
            cycles_dropped: 2,
            searches_cut: 3,
            ..GoCounts::default()
        });
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].starts_with("2 goroutine wait-for cycles"),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("3 goroutine cycle searches"),
            "{notes:?}"
        );
    }

    /// Guards issue 16's bound on heap lock names: past the cap only the names a report
    /// can still need stay (tracked, held or waited for, deadlocked locks).
    #[test]
    fn cold_heap_names_are_forgotten_hot_ones_kept() {
        let event = |op, goid: u64, addr| GoLockEvent {
            op,
            tid: 100,
            ts_ns: 10,
            goid,
            g: 0xc000_8000_0000 + goid * 0x400,
            addr,
            pc: 0x40_1000,
            caller: 0,
            value: 0,
            stack_id: -1,
        };
        let (held, waited, deadlocked, cold) = (0xc000_1000, 0xc000_2000, 0xc000_3000, 0xc000_4000);
        let mut model = GoLockModel::new(1_000_000_000);
        // `held` is held by goroutine 1; goroutine 2 waits for `waited` (a contended lock,
        // with stats, held by 3).
        model.handle(&event(GoOp::MutexLockFast, 1, held));
        model.handle(&event(GoOp::MutexLockFast, 3, waited));
        model.handle(&GoLockEvent {
            caller: 0x40_2000,
            ..event(GoOp::LockSlowEnter, 2, waited)
        });
        let name: Arc<str> = Arc::from("main.Store.mu");
        let mut names: FxHashMap<u64, Arc<str>> = [held, waited, deadlocked, cold]
            .into_iter()
            .map(|l| (l, Arc::clone(&name)))
            .collect();
        let deadlocked_locks: HashSet<u64> = [deadlocked].into_iter().collect();
        forget_cold_heap_names(&mut names, &model, &deadlocked_locks);
        let mut kept: Vec<u64> = names.into_keys().collect();
        kept.sort_unstable();
        assert_eq!(kept, vec![held, waited, deadlocked]);
    }
}
