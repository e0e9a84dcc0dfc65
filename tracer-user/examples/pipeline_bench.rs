//! Benchmark of the userspace pipeline alone: decode + analysis of synthetic ring-buffer
//! records on one thread, with no kernel, no aya and no `/proc` in the loop.
//!
//! Run by `cargo xtask bench` (part a) as
//! `cargo run --release -p tracer-user --example pipeline_bench -- [--events N] [--passes P]`.
//! Prints `key=value` lines; the headline is `events_per_sec=` (default-mode stream) and
//! `holds_events_per_sec=` (stream with `--holds` acquire/release events mixed in).
//!
//! The stream imitates a contended program: 64 threads, 256 glibc mutexes picked with a
//! skewed (roughly Zipf) distribution, every lock wait paired with its end, some
//! condition-variable waits, and lock owners that are running threads (so the stream is
//! deadlock-free, like the workloads whose overhead matters). Records are built as typed
//! events, waits get a full stack window, and `encode_bytes` turns them into the bytes the
//! kernel sends (408-byte wait records, 40-byte wait ends, 48-byte lock records). The
//! timed loop only sees those bytes.
use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tracer_common::{LockOp, SNAPSHOT_LEAD_BYTES, SNAPSHOT_WORDS, futex_cmd};
use tracer_user::{
    event::{
        Record, Snapshot, StackWindow, TraceEvent, WaitTimeout, WindowRef, decode, encode_bytes,
    },
    native::analysis::{Analysis, ThreadIds},
};

const THREADS: u32 = 64;
const LOCKS: u64 = 256;
const CONDVARS: u64 = 8;
const FIRST_TID: u32 = 10_000;
const LOCK_BASE: u64 = 0x5555_0000_0000;
/// glibc mutexes are 40 bytes; 64 keeps each in its own cache line as real code often does.
const LOCK_STRIDE: u64 = 64;
const COND_BASE: u64 = 0x5555_1000_0000;
/// Distinct user stacks waiting on locks (each thread waits from a few call sites).
const STACKS: u64 = 512;
/// One `candidates()` call per this many events: the session asks once per 10 ms drain,
/// and at 1 M events/s that is one call per 10 000 events.
const CANDIDATE_POLL: usize = 10_000;

/// xorshift64*: deterministic, dependency-free, and fast enough not to matter here.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Index in `0..n` with a heavy head: the cube of a uniform draw puts about half the
    /// picks on the first 1/8 of the locks, as a few hot locks dominate real contention.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u) * n as f64) as u64 % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// Sleeping in a futex wait on the lock with this index.
    Waiting(u64),
    CondWaiting(u64),
    /// Woken, about to return from the lock call (only with holds: emits the acquire).
    Acquiring(u64),
    Holding(u64),
}

struct Generator {
    rng: Rng,
    holds: bool,
    ts: u64,
    states: Vec<State>,
    owners: Vec<Option<u32>>,
    out: Stream,
}

/// Records back to back, and each one's length.
#[derive(Default)]
struct Stream {
    bytes: Vec<u8>,
    lengths: Vec<u32>,
}

impl Stream {
    fn push(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.lengths.push(u32::try_from(record.len()).unwrap_or(0));
    }

    fn len(&self) -> usize {
        self.lengths.len()
    }

    fn records(&self) -> impl Iterator<Item = &[u8]> {
        let mut offset = 0;
        self.lengths.iter().map(move |&len| {
            let len = len as usize;
            let record = &self.bytes[offset..offset + len];
            offset += len;
            record
        })
    }
}

/// Valid bytes in a snapshot: the kernel copies the whole window when the page is mapped.
#[allow(clippy::cast_possible_truncation)]
const SNAPSHOT_BYTES: u32 = (SNAPSHOT_WORDS * 4) as u32;

fn wait_done(tid: u32, ts_ns: u64, addr: u64, cmd: u32) -> TraceEvent<'static> {
    TraceEvent::FutexWaitDone {
        tid,
        ts_ns,
        addr,
        cmd,
        val: 0,
        ret: 0,
    }
}

fn lock_addr(index: u64) -> u64 {
    LOCK_BASE + index * LOCK_STRIDE
}

fn tid_of(index: usize) -> u32 {
    FIRST_TID + u32::try_from(index).unwrap_or(0)
}

impl Generator {
    fn new(holds: bool, seed: u64) -> Self {
        Self {
            rng: Rng(seed),
            holds,
            ts: 1_000_000_000,
            states: vec![State::Idle; THREADS as usize],
            owners: vec![None; usize::try_from(LOCKS).unwrap_or(0)],
            out: Stream::default(),
        }
    }

    /// Appends the record the kernel would send for `event`; a wait gets its stack window.
    fn emit(&mut self, event: &TraceEvent<'static>) {
        let mut typed: TraceEvent<'_> = *event;
        let stack;
        if let TraceEvent::FutexWait {
            tid,
            ref mut window,
            ..
        } = typed
        {
            stack = self.stack_window(tid);
            *window = WindowRef::Built(&stack);
        }
        self.out.push(&encode_bytes(&typed));
    }

    /// The top of a user stack as the kernel copies it at a futex wait: the stack pointer,
    /// the syscall's return address, and words above it of which a few are return
    /// addresses into libc and the program.
    fn stack_window(&mut self, tid: u32) -> StackWindow {
        let sp = 0x7ffd_0000_0000 + u64::from(tid) * 0x10_0000 - 0x400;
        let mut window = StackWindow {
            ip: 0x7f00_0009_1234,
            sp,
            len: 0,
            words: StackWindow::EMPTY.words,
        };
        for (i, word) in window.words.iter_mut().enumerate() {
            let i = i as u64;
            *word = match i % 8 {
                1 => 0x7f00_0009_0000 + self.rng.below(0x1000), // into libc
                5 => 0x5555_5555_0000 + self.rng.below(0x4000), // into the program
                3 => sp + 0x40 * i,                             // saved frame pointers
                _ => self.rng.next() & 0xffff,                  // locals
            };
        }
        window.len = u32::try_from(window.words.len()).unwrap_or(0);
        window
    }

    /// Time moves 0.2–2 µs between records, as in a trace of ~1 M events/s.
    fn tick(&mut self) -> u64 {
        self.ts += 200 + self.rng.below(1_800);
        self.ts
    }

    fn is_sleeping(&self, thread: usize) -> bool {
        matches!(
            self.states[thread],
            State::Waiting(_) | State::CondWaiting(_)
        )
    }

    /// The owner a waiter on `lock` sees in the mutex: the last thread to take it if that
    /// thread still runs, else some running thread (it took the lock without contention,
    /// so no event told us). Never a sleeping thread, so no cycle ever forms.
    fn owner_for(&mut self, lock: u64, waiter: usize) -> u32 {
        let lock_index = usize::try_from(lock).unwrap_or(0);
        if let Some(owner) = self.owners[lock_index] {
            let idx = (owner - FIRST_TID) as usize;
            if idx != waiter && !self.is_sleeping(idx) {
                return owner;
            }
        }
        let start = usize::try_from(self.rng.below(u64::from(THREADS))).unwrap_or(0);
        let n = self.states.len();
        let pick = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| i != waiter && !self.is_sleeping(i))
            .unwrap_or(waiter);
        let owner = tid_of(pick);
        self.owners[lock_index] = Some(owner);
        owner
    }

    fn mutex_wait(&mut self, thread: usize, lock: u64) -> TraceEvent<'static> {
        let owner = self.owner_for(lock, thread);
        let addr = lock_addr(lock);
        let lead = usize::try_from(SNAPSHOT_LEAD_BYTES / 4).unwrap_or(0);
        let mut words = [0; SNAPSHOT_WORDS];
        words[lead] = 2; // the futex word: locked, with waiters
        words[lead + 1] = 1; // __count
        words[lead + 2] = owner; // __owner, 8 bytes after the word
        words[lead + 3] = 1; // __nusers
        let stack =
            u32::try_from((u64::from(tid_of(thread)) * 7 + lock + self.rng.below(4)) % STACKS).ok();
        TraceEvent::FutexWait {
            tid: tid_of(thread),
            ts_ns: self.tick(),
            addr,
            cmd: futex_cmd::WAIT,
            val: 2,
            stack,
            snapshot: Snapshot {
                addr: addr - SNAPSHOT_LEAD_BYTES,
                len: SNAPSHOT_BYTES,
                words,
            },
            window: WindowRef::EMPTY,
            timeout: WaitTimeout::Untimed,
            weight: 1,
        }
    }

    fn cond_wait(&mut self, thread: usize, cond: u64) -> TraceEvent<'static> {
        // glibc condvars sleep on __g_signals[g] with FUTEX_WAIT_BITSET; the words around
        // carry sequence counters, not TIDs.
        let addr = COND_BASE + cond * 64 + 8;
        let mut words = [0; SNAPSHOT_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = u32::try_from(i).unwrap_or(0) * 2;
        }
        TraceEvent::FutexWait {
            tid: tid_of(thread),
            ts_ns: self.tick(),
            addr,
            cmd: futex_cmd::WAIT_BITSET,
            val: 0,
            stack: None, // sent as -EFAULT, as bpf_get_stackid reports no stack
            snapshot: Snapshot {
                addr: addr - SNAPSHOT_LEAD_BYTES,
                len: SNAPSHOT_BYTES,
                words,
            },
            window: WindowRef::EMPTY,
            // pthread_cond_wait without a deadline.
            timeout: WaitTimeout::Untimed,
            weight: 1,
        }
    }

    /// Advances one random thread by one step, emitting at most one record.
    fn step(&mut self) {
        let thread = usize::try_from(self.rng.below(u64::from(THREADS))).unwrap_or(0);
        match self.states[thread] {
            State::Idle => {
                if self.rng.chance(10) {
                    let cond = self.rng.below(CONDVARS);
                    let event = self.cond_wait(thread, cond);
                    self.emit(&event);
                    self.states[thread] = State::CondWaiting(cond);
                    return;
                }
                let lock = self.rng.skewed(LOCKS);
                // Without --holds only contended acquisitions produce records; with it,
                // 30% of acquisitions are contended (a busy but not pathological program).
                if !self.holds || self.rng.chance(30) {
                    let event = self.mutex_wait(thread, lock);
                    self.emit(&event);
                    self.states[thread] = State::Waiting(lock);
                } else {
                    self.states[thread] = State::Acquiring(lock);
                    self.step_acquire(thread, lock);
                }
            }
            _ => self.step_thread(thread),
        }
    }

    fn step_acquire(&mut self, thread: usize, lock: u64) {
        let tid = tid_of(thread);
        if self.holds {
            let ts_ns = self.tick();
            let start_ns = ts_ns.saturating_sub(500);
            let stack = u32::try_from((u64::from(tid) + lock) % STACKS).ok();
            self.emit(&TraceEvent::LockAcquired {
                tid,
                ts_ns,
                start_ns,
                addr: lock_addr(lock),
                op: LockOp::MutexLock,
                stack,
                call_site: 0,
            });
        }
        self.owners[usize::try_from(lock).unwrap_or(0)] = Some(tid);
        self.states[thread] = State::Holding(lock);
    }

    /// At least `events` records, ending with every wait closed so the stream can be
    /// replayed back to back without unmatched ends.
    fn generate(mut self, events: usize) -> Stream {
        while self.out.len() < events {
            self.step();
        }
        for thread in 0..self.states.len() {
            // At most wait → acquire → hold → idle: four steps close any episode.
            for _ in 0..4 {
                self.step_thread(thread);
            }
        }
        self.out
    }

    fn step_thread(&mut self, thread: usize) {
        let tid = tid_of(thread);
        match self.states[thread] {
            State::Idle => {}
            State::Waiting(lock) => {
                let ts_ns = self.tick();
                self.emit(&wait_done(tid, ts_ns, lock_addr(lock), futex_cmd::WAIT));
                self.states[thread] = State::Acquiring(lock);
            }
            State::CondWaiting(cond) => {
                let ts_ns = self.tick();
                let addr = COND_BASE + cond * 64 + 8;
                self.emit(&wait_done(tid, ts_ns, addr, futex_cmd::WAIT_BITSET));
                self.states[thread] = State::Idle;
            }
            State::Acquiring(lock) => self.step_acquire(thread, lock),
            State::Holding(lock) => {
                if self.holds {
                    let ts_ns = self.tick();
                    self.emit(&TraceEvent::LockReleased {
                        tid,
                        ts_ns,
                        addr: lock_addr(lock),
                        op: LockOp::MutexUnlock,
                    });
                }
                self.states[thread] = State::Idle;
            }
        }
    }
}

/// The threads of the synthetic target.
fn threads() -> ThreadIds {
    (FIRST_TID..FIRST_TID + THREADS).collect()
}

struct Outcome {
    events: u64,
    elapsed: Duration,
    decode_errors: u64,
    lock_waits: u64,
    candidates: usize,
}

/// Decode + analysis of every record, `passes` times over the same bytes, timed as a
/// whole; a fresh `Analysis` so the result does not depend on an earlier run.
fn run_pipeline(stream: &Stream, passes: usize) -> Outcome {
    let mut analysis = Analysis::new();
    let threads = threads();
    let mut decode_errors = 0u64;
    let mut candidates = 0usize;
    let mut since_poll = 0usize;
    let started = Instant::now();
    for _ in 0..passes {
        for record in stream.records() {
            // As the session's drain loop does it.
            match decode(black_box(record)) {
                Ok(Record::Native(ref event)) => analysis.on_event(event, &threads),
                Ok(Record::Slept(slept)) => {
                    let window = slept.window();
                    for event in slept.events(&window) {
                        analysis.on_event(&event, &threads);
                    }
                }
                Ok(Record::Go(_) | Record::NativeSite { .. } | Record::Exec { .. }) | Err(_) => {
                    decode_errors += 1;
                }
            }
            since_poll += 1;
            if since_poll == CANDIDATE_POLL {
                since_poll = 0;
                candidates += analysis.candidates().len();
            }
        }
    }
    candidates += analysis.candidates().len();
    let elapsed = started.elapsed();
    let counts = black_box(analysis.counts());
    Outcome {
        events: counts.events,
        elapsed,
        decode_errors,
        lock_waits: counts.lock_waits,
        candidates,
    }
}

fn arg_value(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a value"))?
            .parse()
            .with_context(|| format!("{name}: not a number")),
    }
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn rate(outcome: &Outcome) -> u64 {
    (outcome.events as f64 / outcome.elapsed.as_secs_f64()) as u64
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let events = arg_value(&args, "--events", 2_000_000)?;
    let passes = arg_value(&args, "--passes", 5)?;
    if events == 0 || passes == 0 {
        bail!("--events and --passes must be positive");
    }
    for (label, holds) in [("", false), ("holds_", true)] {
        let stream = Generator::new(holds, 0x9e37_79b9_7f4a_7c15).generate(events);
        let count = stream.len();
        #[allow(clippy::cast_precision_loss)]
        let record_bytes = stream.bytes.len() as f64 / count as f64;
        // Warm-up pass: page in the stream and size the hash maps, as a running session
        // would have done in its first seconds.
        let _ = run_pipeline(&stream, 1);
        let outcome = run_pipeline(&stream, passes);
        if outcome.decode_errors > 0 {
            bail!(
                "{} synthetic records failed to decode",
                outcome.decode_errors
            );
        }
        println!("{label}record_bytes={record_bytes:.0}");
        println!("{label}stream_events={count}");
        println!("{label}events={}", outcome.events);
        println!("{label}lock_waits={}", outcome.lock_waits);
        println!("{label}deadlock_candidates={}", outcome.candidates);
        println!("{label}elapsed_ms={}", outcome.elapsed.as_millis());
        println!("{label}events_per_sec={}", rate(&outcome));
    }
    Ok(())
}
