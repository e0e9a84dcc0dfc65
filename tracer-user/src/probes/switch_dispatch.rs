//! One `sched_switch` program for all the processes this tracer serves
//! (`PROG_SWITCH_DISPATCH`): each target's own `futex_sleep` is loaded but not attached,
//! and put at a slot of the dispatcher's program array, its host TGID in the
//! dispatcher's direct-mapped table (`tracer_common::switch_lookup`) if its entry there
//! is free, and in the dispatcher's hash in any case. The host's context switches then pay one program and one lookup
//! however many processes are served (BENCHMARKS.md, part (k)).
//!
//! The dispatcher also draws each served process's sampled sleeps, and hands on only
//! what that process's programs must see (`tracer_common::hand_off`): each process loads
//! two programs for it, at the two indices of its slot in the program array, and
//! registers its period (`Dispatched::set_sleep_sample_period`) and its map of open
//! sleeps (put in the dispatcher's array of maps). The dispatcher reads that map only for
//! a while after the period rose (`Dispatched::settle`, `tracer_common::SwitchDraw`).
//!
//! The dispatcher is loaded with the first registration and detached with the last, so
//! a serve with no target leaves nothing on the hook. One per tracer process: the
//! registrations of every session share it. Between, the serve's duty cycle
//! (`serve::hook_duty`) detaches and attaches it again, and has it draw no new sleep for
//! a while before each detach ([`step_hook`], [`hook_state`]).
use std::sync::{
    Mutex, PoisonError,
    atomic::{AtomicU32, Ordering},
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, ArrayOfMaps, HashMap, Map, MapData, ProgramArray},
    programs::{ProgramFd, tp_btf::BtfTracePointLinkId},
};
use tracer_common::{
    GLOBAL_TASK_NVCSW_OFFSET, HandOff, MAP_BRIEF_WAITS, MAP_EVENTS, MAP_OPEN_SLEEP_SLOTS,
    MAP_OPEN_SLEEPS, MAP_OVERFLOW_STACKS, MAP_PENDING_LOCKS, MAP_STACKS, MAP_SWITCH_OPEN_SLEEPS,
    MAP_SWITCH_PERIODS, MAP_SWITCH_PROGRAMS, MAP_SWITCH_TABLE, MAP_SWITCH_TARGETS,
    PROG_SWITCH_DISPATCH, SWITCH_SLOTS, SwitchDraw, switch_draws_new, switch_entry_elsewhere,
    switch_entry_served, switch_entry_unserved, switch_table_index, switch_value_drawing_none,
};

use super::{
    EBPF_OBJECT, ProbeError, TaskMember, load_tp_btf, take_map, task_member_offset, tp_btf_program,
};
use crate::serve::hook_duty::Step;

/// The maps of the object the dispatcher does not use, which its copy creates with one
/// entry each (the stack maps and the LRU hash preallocate megabytes otherwise). Its
/// `OPEN_SLEEP_SLOTS` keeps its size: it stands in the array of maps at the slots of
/// processes no longer served (see `Dispatcher::no_open_sleeps`).
const UNUSED_MAPS: [&str; 5] = [
    MAP_STACKS,
    MAP_OVERFLOW_STACKS,
    MAP_PENDING_LOCKS,
    MAP_BRIEF_WAITS,
    MAP_OPEN_SLEEPS,
];
/// The smallest ring buffer the kernel takes (one page): the dispatcher sends nothing.
const UNUSED_RING_BYTES: u32 = 4096;

/// The loaded, attached dispatcher and its registrations.
struct Dispatcher {
    // Field order matters for drop: the maps go before the object that owns the program.
    targets: HashMap<MapData, u32, u32>,
    table: Array<MapData, u64>,
    programs: ProgramArray<MapData>,
    periods: Array<MapData, u64>,
    open_sleeps: ArrayOfMaps<MapData, MapData>,
    /// The dispatcher's own copy's `OPEN_SLEEP_SLOTS` (all zeros: its programs are not
    /// loaded), put at a slot when its process leaves, so that the array of maps does
    /// not hold that process's map (32 KiB) until the slot is taken again.
    no_open_sleeps: MapData,
    /// Slots not in use.
    free: Vec<u32>,
    /// How many slots it hands out ([`limit_slots`]).
    slots: u32,
    /// Its attachment to `sched_switch`, while the duty cycle has it attached.
    link: Option<BtfTracePointLinkId>,
    ebpf: Ebpf,
}

/// What the serve's duty cycle has made of the dispatcher's hook, for the sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookState {
    /// The dispatcher draws new sleeps.
    pub drawing: bool,
    /// The dispatcher is attached to `sched_switch`.
    pub attached: bool,
    /// How many slices of time each slice drawn stands for (`serve::hook_duty`): the
    /// weight of a traced sleep is multiplied by it.
    pub factor: u32,
    /// Counts the steps taken: a session that sees it change knows the hook was not
    /// drawing all along since it last looked.
    pub epoch: u64,
}

/// The duty cycle's state (see [`HookState`]), whether a dispatcher is loaded or not: one
/// loaded later starts from it.
static HOOK: Mutex<HookState> = Mutex::new(HookState {
    drawing: true,
    attached: true,
    factor: 1,
    epoch: 0,
});

/// What the duty cycle has made of the hook now.
pub(super) fn hook_state() -> HookState {
    *HOOK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes the duty cycle's `step`: the dispatcher, if loaded, draws, is attached and
/// detached as it says; one loaded later starts so.
///
/// # Errors
/// When the dispatcher's map or attachment cannot be changed; the state is kept as
/// asked, and the next step tries again.
pub(super) fn step_hook(step: Step) -> Result<(), ProbeError> {
    let state = {
        let mut hook = HOOK.lock().unwrap_or_else(PoisonError::into_inner);
        match step {
            Step::StopDrawing => hook.drawing = false,
            Step::Detach { factor } => {
                hook.attached = false;
                hook.factor = factor;
            }
            Step::Attach => {
                hook.attached = true;
                hook.drawing = true;
            }
        }
        hook.epoch += 1;
        *hook
    };
    let mut guard = DISPATCHER.lock().unwrap_or_else(PoisonError::into_inner);
    match guard.as_mut() {
        Some(dispatcher) => dispatcher.follow(state),
        None => Ok(()),
    }
}

/// The tracer's dispatcher, while any target is registered.
static DISPATCHER: Mutex<Option<Dispatcher>> = Mutex::new(None);

/// How many slots a dispatcher loaded from now on hands out ([`limit_slots`]).
static SLOTS: AtomicU32 = AtomicU32::new(SWITCH_SLOTS);

/// Makes a dispatcher loaded from now on hand out only its first `slots` slots (at
/// least one, at most `SWITCH_SLOTS`): a process registered beyond them attaches its own
/// `futex_sleep`, as one beyond `SWITCH_SLOTS` does. For tests of that path (`tracer
/// serve`'s hidden `--dispatch-slots`), which would need a thousand targets otherwise.
pub(super) fn limit_slots(slots: u32) {
    SLOTS.store(slots.clamp(1, SWITCH_SLOTS), Ordering::Relaxed);
}

/// A process whose switches the dispatcher hands to its `futex_sleep`; unregistered
/// (and the dispatcher detached, if it was the last) when dropped.
#[derive(Debug)]
pub(super) struct Dispatched {
    tgid: u32,
    slot: u32,
    /// The process's period and whether the dispatcher reads its counts of open sleeps,
    /// as last written to its slot in `SWITCH_PERIODS`.
    draw: SwitchDraw,
}

/// What one process hands the dispatcher: its two programs (loaded, unattached) and its
/// map of open sleeps, all from its own copy of the object.
pub(super) struct DispatchedPrograms<'a> {
    /// `drawn_sleep`: the sleeps the dispatcher drew.
    pub(super) drawn: &'a ProgramFd,
    /// `sleep_ends`: the other switch-outs it hands on.
    pub(super) ends: &'a ProgramFd,
    /// `OPEN_SLEEP_SLOTS`, which `drawn_sleep` and `sleep_ends` keep.
    pub(super) open_sleep_slots: &'a MapData,
}

/// Registers `programs` for the threads of host TGID `tgid`, loading and attaching the
/// dispatcher first if none is. `None` when every slot is taken: the caller attaches its
/// own program. The process's sleeps are all traced until its period is set.
pub(super) fn register(
    tgid: u32,
    programs: &DispatchedPrograms<'_>,
    btf: &Btf,
) -> Result<Option<Dispatched>, ProbeError> {
    let mut guard = DISPATCHER.lock().unwrap_or_else(PoisonError::into_inner);
    let dispatcher = match guard.as_mut() {
        Some(dispatcher) => dispatcher,
        None => guard.insert(load(btf)?),
    };
    let Some(slot) = dispatcher.free.pop() else {
        return Ok(None);
    };
    // The programs, period and open sleeps first: a thread found in the hash before its
    // slot is filled would only be skipped (a failed tail call returns), but not the other
    // way round. The slot's map of open sleeps may still be the last process's: it must
    // be this one's before any switch is handed on, or a sleep could be left unended.
    let added = dispatcher
        .open_sleeps
        .set(slot, programs.open_sleep_slots, 0)
        .and_then(|()| {
            dispatcher
                .periods
                .set(slot, as_drawing(0, hook_state().drawing), 0)
        })
        .and_then(|()| {
            dispatcher
                .programs
                .set(HandOff::Ends.program_index(slot), programs.ends, 0)
        })
        .and_then(|()| {
            dispatcher
                .programs
                .set(HandOff::Drawn.program_index(slot), programs.drawn, 0)
        })
        .and_then(|()| dispatcher.targets.insert(tgid, slot, 0))
        .and_then(|()| dispatcher.put_in_table(tgid, slot));
    if let Err(source) = added {
        dispatcher.release(tgid, slot);
        release_if_unused(&mut guard);
        return Err(ProbeError::Map {
            name: MAP_SWITCH_PROGRAMS,
            source,
        });
    }
    Ok(Some(Dispatched {
        tgid,
        slot,
        // What the zero written above means.
        draw: SwitchDraw::new(),
    }))
}

impl Dispatched {
    /// Sets the process's sleep sampling period for the dispatcher's draw (as its own
    /// `SLEEP_SAMPLING`, which weighs what `drawn_sleep` sends), in the order
    /// `SwitchDraw::set_period` gives. `now_ns` is read after the writes.
    pub(super) fn set_sleep_sample_period(
        &mut self,
        period: u32,
        now_ns: impl FnOnce() -> u64,
    ) -> Result<(), ProbeError> {
        let writes = self.draw.set_period(period);
        for value in writes.into_iter().flatten() {
            self.write(value)?;
        }
        self.draw.written(now_ns());
        Ok(())
    }

    /// Whether the dispatcher reads this process's counts of open sleeps, until
    /// [`Self::settle`] finds every open sleep drawn under the present period.
    pub(super) fn reads_counts(&self) -> bool {
        self.draw.reads_counts()
    }

    /// Given when the oldest sleep open in the process's table began, from a read begun
    /// at `read_ns`: turns the counts off once that is after the last rise of the period
    /// (`SwitchDraw::settle`).
    pub(super) fn settle(
        &mut self,
        oldest_open_ns: Option<u64>,
        read_ns: u64,
    ) -> Result<(), ProbeError> {
        match self.draw.settle(oldest_open_ns, read_ns) {
            Some(value) => self.write(value),
            None => Ok(()),
        }
    }

    /// Writes the process's value in `SWITCH_PERIODS` (drawing no new sleep while the
    /// duty cycle says so).
    fn write(&self, value: u64) -> Result<(), ProbeError> {
        let drawing = hook_state().drawing;
        let mut guard = DISPATCHER.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(dispatcher) = guard.as_mut() else {
            return Ok(());
        };
        dispatcher
            .periods
            .set(self.slot, as_drawing(value, drawing), 0)
            .map_err(|source| ProbeError::Map {
                name: MAP_SWITCH_PERIODS,
                source,
            })
    }
}

/// `value` (a `SWITCH_PERIODS` value) drawing new sleeps or not.
fn as_drawing(value: u64, drawing: bool) -> u64 {
    if drawing {
        value & !switch_value_drawing_none(0)
    } else {
        switch_value_drawing_none(value)
    }
}

impl Dispatcher {
    /// Draws, and is attached, as `state` says.
    fn follow(&mut self, state: HookState) -> Result<(), ProbeError> {
        // Drawing first, attached after: a dispatcher attached again draws at once.
        let in_use: Vec<u32> = (0..self.slots).filter(|s| !self.free.contains(s)).collect();
        for slot in in_use {
            let value = self
                .periods
                .get(&slot, 0)
                .map_err(|source| ProbeError::Map {
                    name: MAP_SWITCH_PERIODS,
                    source,
                })?;
            if switch_draws_new(value) != state.drawing {
                self.periods
                    .set(slot, as_drawing(value, state.drawing), 0)
                    .map_err(|source| ProbeError::Map {
                        name: MAP_SWITCH_PERIODS,
                        source,
                    })?;
            }
        }
        let name = PROG_SWITCH_DISPATCH;
        let program = tp_btf_program(&mut self.ebpf, name)?;
        match (state.attached, self.link.take()) {
            (true, None) => {
                self.link = Some(
                    program
                        .attach()
                        .map_err(|source| ProbeError::Program { name, source })?,
                );
            }
            (false, Some(link)) => program
                .detach(link)
                .map_err(|source| ProbeError::Program { name, source })?,
            (_, link) => self.link = link,
        }
        Ok(())
    }

    /// Serves `tgid` from program `slot` in the table, or, if its entry there holds
    /// another process, marks the entry so that the dispatcher looks `tgid` up in the
    /// hash (where `register` put it already).
    fn put_in_table(&mut self, tgid: u32, slot: u32) -> Result<(), aya::maps::MapError> {
        let index = switch_table_index(tgid);
        let old = self.table.get(&index, 0)?;
        let new = switch_entry_served(old, tgid, slot).unwrap_or(switch_entry_elsewhere(old));
        self.table.set(index, new, 0)
    }

    /// Stops serving `tgid` from `slot` and frees the slot, taking out whatever of its
    /// registration is in place. The table and hash first, so that no switch is handed
    /// to a slot being emptied. A failure leaves an entry that a failed tail call makes
    /// harmless, and the dispatcher's own drop (with the last registration) takes it
    /// away. The slot's map of open sleeps becomes the all-zero stand-in, so that the
    /// process's map is not held until the slot is taken again.
    fn release(&mut self, tgid: u32, slot: u32) {
        self.take_from_table(tgid);
        let _ = self.targets.remove(&tgid);
        for hand_off in [HandOff::Drawn, HandOff::Ends] {
            let _ = self.programs.clear_index(&hand_off.program_index(slot));
        }
        let _ = self.open_sleeps.set(slot, &self.no_open_sleeps, 0);
        self.free.push(slot);
    }

    /// Takes `tgid` out of the table, if it is there.
    fn take_from_table(&mut self, tgid: u32) {
        let index = switch_table_index(tgid);
        if let Ok(old) = self.table.get(&index, 0) {
            let new = switch_entry_unserved(old, tgid);
            if new != old {
                let _ = self.table.set(index, new, 0);
            }
        }
    }
}

impl Drop for Dispatched {
    fn drop(&mut self) {
        let mut guard = DISPATCHER.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dispatcher) = guard.as_mut() {
            dispatcher.release(self.tgid, self.slot);
        }
        release_if_unused(&mut guard);
    }
}

/// Detaches and unloads the dispatcher once no process is registered.
fn release_if_unused(dispatcher: &mut Option<Dispatcher>) {
    let unused = dispatcher
        .as_ref()
        .is_some_and(|d| d.free.len() == d.slots as usize);
    if unused {
        *dispatcher = None;
    }
}

/// Loads the object's copy for the dispatcher, with its unused maps at their smallest,
/// and attaches the dispatcher.
fn load(btf: &Btf) -> Result<Dispatcher, ProbeError> {
    let mut loader = EbpfLoader::new();
    for map in UNUSED_MAPS {
        loader.map_max_entries(map, 1);
    }
    loader.map_max_entries(MAP_EVENTS, UNUSED_RING_BYTES);
    let nvcsw_offset = task_member_offset(TaskMember::VoluntarySwitches)?;
    let mut ebpf = loader
        .btf(Some(btf))
        .override_global(GLOBAL_TASK_NVCSW_OFFSET, &nvcsw_offset, true)
        .load(EBPF_OBJECT)
        .map_err(ProbeError::Load)?;
    let state = hook_state();
    let program = load_tp_btf(&mut ebpf, PROG_SWITCH_DISPATCH, "sched_switch", btf)?;
    let link = if state.attached {
        Some(program.attach().map_err(|source| ProbeError::Program {
            name: PROG_SWITCH_DISPATCH,
            source,
        })?)
    } else {
        None
    };
    let targets = take_map(&mut ebpf, MAP_SWITCH_TARGETS, HashMap::try_from)?;
    let table = take_map(&mut ebpf, MAP_SWITCH_TABLE, Array::try_from)?;
    let programs = take_map(&mut ebpf, MAP_SWITCH_PROGRAMS, ProgramArray::try_from)?;
    let periods = take_map(&mut ebpf, MAP_SWITCH_PERIODS, Array::try_from)?;
    let open_sleeps = take_map(&mut ebpf, MAP_SWITCH_OPEN_SLEEPS, ArrayOfMaps::try_from)?;
    let slots = SLOTS.load(Ordering::Relaxed);
    // An array, as every process's copy of it (the kernel checks the rest as it is set).
    let Some(Map::Array(no_open_sleeps)) = ebpf.take_map(MAP_OPEN_SLEEP_SLOTS) else {
        return Err(ProbeError::MissingMap(MAP_OPEN_SLEEP_SLOTS));
    };
    Ok(Dispatcher {
        targets,
        table,
        programs,
        periods,
        open_sleeps,
        no_open_sleeps,
        // Popped from the end: slot 0 first.
        free: (0..slots).rev().collect(),
        slots,
        link,
        ebpf,
    })
}
