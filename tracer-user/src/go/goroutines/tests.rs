//! The reader over a made-up process: a slice of `g`s, their stacks, a lock.
use super::*;
use crate::target::fake::FakeProcess;

const ALLGS: u64 = 0x60_0000;
const ALLGLEN: u64 = 0x60_0100;
const ARRAY: u64 = 0xc000_0000;
const G_WAITING: u64 = 0xc000_1000;
const G_DEAD: u64 = 0xc000_1200;
const G_RUNNING: u64 = 0xc000_1400;
const G_CHAN: u64 = 0xc000_1600;
const STACK_LO: u64 = 0xc001_0000;
const STACK_HI: u64 = 0xc001_2000;
const MUTEX: u64 = 0xc002_0040;

/// Code ranges of the made-up functions (file addresses), each 0x100 long.
const FUNCS: [(u64, &str); 6] = [
    (0x40_1000, "runtime.gopark"),
    (0x40_2000, SEMACQUIRE),
    (0x40_3000, "sync.runtime_SemacquireMutex"),
    (0x40_4000, "sync.(*Mutex).lockSlow"),
    (0x40_5000, "main.(*Store).Put"),
    (0x40_6000, "runtime.chanrecv"),
];

struct FakeNames;

impl CodeNames for FakeNames {
    fn function(&self, pc: u64) -> Option<String> {
        FUNCS
            .iter()
            .find(|(entry, _)| (*entry..entry + 0x100).contains(&pc))
            .map(|(_, name)| (*name).to_owned())
    }

    fn frames(&self, pc: u64) -> Vec<GoFrame> {
        let Some(name) = self.function(pc) else {
            return Vec::new();
        };
        // Put has Mutex.Lock inlined into it, as in real binaries.
        let mut frames = Vec::new();
        if name == "main.(*Store).Put" {
            frames.push(GoFrame {
                function: "sync.(*Mutex).Lock".to_owned(),
                file: None,
                line: None,
                inlined: true,
            });
        }
        frames.push(GoFrame {
            function: name,
            file: None,
            line: None,
            inlined: false,
        });
        frames
    }
}

fn layout() -> GoroutineLayout {
    goroutine_layout_for_version("go1.25").unwrap()
}

fn reader() -> GoroutineReader {
    GoroutineReader::from_parts(
        layout(),
        AllgsLocation {
            allgs: ALLGS,
            allglen: Some(ALLGLEN),
            source: AllgsSource::Disassembly,
        },
        0,
    )
}

/// The bytes of a `g` with these fields (the 1.25 layout).
fn g_bytes(goid: u64, status: u32, sched: (u64, u64, u64), waitsince: u64) -> Vec<u8> {
    let l = layout();
    let mut bytes = vec![0u8; 512];
    let mut put = |off: u64, v: &[u8]| {
        let off = usize::try_from(off).unwrap();
        bytes[off..off + v.len()].copy_from_slice(v);
    };
    put(l.stack_lo, &STACK_LO.to_ne_bytes());
    put(l.stack_hi, &STACK_HI.to_ne_bytes());
    put(l.sched_sp, &sched.0.to_ne_bytes());
    put(l.sched_pc, &sched.1.to_ne_bytes());
    put(l.sched_bp, &sched.2.to_ne_bytes());
    put(l.atomicstatus, &status.to_ne_bytes());
    put(l.goid, &goid.to_ne_bytes());
    put(l.waitsince, &waitsince.to_ne_bytes());
    bytes
}

/// A process with four `g`s: goroutine 5 parked on the mutex at `MUTEX` (held),
/// an exited one, goroutine 1 running, and goroutine 9 parked on a channel.
fn process(gs: &[u64], header: (u64, u64, u64)) -> FakeProcess {
    let sema = MUTEX + 4;
    // Frame pointers of gopark, semacquire1, the wrapper, lockSlow, Put (the last).
    let bps = [0x1e00, 0x1e40, 0x1e80, 0x1ec0, 0x1f00].map(|o| STACK_LO + o);
    let rets: [u64; 5] = [0x40_2010, 0x40_3010, 0x40_4010, 0x40_5010, 0x40_7010];
    let mut fake = FakeProcess::new(42)
        .region(ALLGS, vec![0; 0x200], "rw-p", None)
        .poke(ALLGS, &header.0.to_ne_bytes())
        .poke(ALLGS + 8, &header.1.to_ne_bytes())
        .poke(ALLGS + 16, &header.2.to_ne_bytes())
        .poke(ALLGLEN, &header.1.to_ne_bytes())
        .region(ARRAY, vec![0; 0x1000], "rw-p", None)
        .poke(
            ARRAY,
            &gs.iter().flat_map(|g| g.to_ne_bytes()).collect::<Vec<_>>(),
        )
        .region(
            G_WAITING,
            g_bytes(5, 4 | 0x1000, (STACK_LO + 0x1d00, 0x40_1010, bps[0]), 77),
            "rw-p",
            None,
        )
        .region(G_DEAD, g_bytes(0, 6, (0, 0, 0), 0), "rw-p", None)
        .region(G_RUNNING, g_bytes(1, 2, (0, 0, 0), 0), "rw-p", None)
        .region(
            G_CHAN,
            g_bytes(9, 4, (STACK_LO + 0x100, 0x40_6010, 0), 0),
            "rw-p",
            None,
        )
        .region(STACK_LO, vec![0; 0x2000], "rw-p", None)
        .region(MUTEX, vec![0; 0x40], "rw-p", None)
        .poke(MUTEX, &1i32.to_ne_bytes());
    for (i, (&bp, &ret)) in bps.iter().zip(&rets).enumerate() {
        let caller_bp = bps.get(i + 1).copied().unwrap_or(0);
        fake = fake
            .poke(bp, &caller_bp.to_ne_bytes())
            .poke(bp + 8, &ret.to_ne_bytes());
    }
    // semacquire1's first argument, spilled at bp+16.
    fake.poke(bps[1] + 16, &sema.to_ne_bytes())
}

const ALL: [u64; 4] = [G_WAITING, G_DEAD, G_RUNNING, G_CHAN];

/// Guards the whole read: live goroutines only, the `_Gscan` bit ignored, the parked
/// one unwound from its saved context to its first function and its mutex found from
/// `semacquire1`'s spilled argument (4 below the semaphore), a channel wait kept
/// without a lock, `waitsince` 0 read as unknown.
#[test]
fn snapshot_reads_goroutines_and_their_lock_waits() {
    let fake = process(&ALL, (ARRAY, 4, 8));
    let reader = reader();
    reader.validate(&fake).unwrap();
    let snap = reader.snapshot_named(&FakeNames, &fake).unwrap();
    assert_eq!(
        (snap.total_gs, snap.truncated, snap.unreadable),
        (4, false, 0)
    );
    let ids: Vec<(u64, GoroutineStatus)> =
        snap.goroutines.iter().map(|g| (g.goid, g.status)).collect();
    assert_eq!(
        ids,
        [
            (5, GoroutineStatus::Waiting),
            (1, GoroutineStatus::Running),
            (9, GoroutineStatus::Waiting)
        ]
    );
    let parked = &snap.goroutines[0];
    assert_eq!(parked.g, G_WAITING);
    assert_eq!(parked.waitsince_ns, Some(77));
    let pcs: Vec<u64> = parked.frames.iter().map(|f| f.pc).collect();
    assert_eq!(pcs, [0x40_1010, 0x40_2010, 0x40_3010, 0x40_4010, 0x40_5010]);
    assert_eq!(
        parked.lock_wait,
        Some(ParkedLockWait {
            lock: MUTEX,
            kind: ParkedLockKind::Mutex,
            mode: GoLockMode::Write,
            drains_readers: false,
            sema: MUTEX + 4,
            lock_memory_agrees: true,
        })
    );
    assert!(snap.goroutines[1].frames.is_empty());
    let chan = &snap.goroutines[2];
    assert_eq!(
        (chan.frames.len(), chan.lock_wait, chan.waitsince_ns),
        (1, None, None)
    );

    // The mutex released meanwhile: the wait is kept, flagged.
    let released = fake.poke(MUTEX, &0i32.to_ne_bytes());
    let snap = reader.snapshot_named(&FakeNames, &released).unwrap();
    let wait = snap.goroutines[0].lock_wait.unwrap();
    assert!(!wait.lock_memory_agrees);
}

/// Guards the bias of a position-independent binary: the slice, `allglen` and the pcs
/// are found at file address + bias.
#[test]
fn bias_moves_every_file_address() {
    struct Shifted;
    impl CodeNames for Shifted {
        fn function(&self, pc: u64) -> Option<String> {
            FakeNames.function(pc.wrapping_add(0x5555_0000_0000))
        }
        fn frames(&self, pc: u64) -> Vec<GoFrame> {
            FakeNames.frames(pc.wrapping_add(0x5555_0000_0000))
        }
    }
    let bias = 0x5555_0000_0000;
    let fake = process(&ALL, (ARRAY, 4, 8));
    // The same process, its statics and code seen from a binary linked `bias` lower.
    let reader = GoroutineReader::from_parts(
        layout(),
        AllgsLocation {
            allgs: ALLGS.wrapping_sub(bias),
            allglen: Some(ALLGLEN.wrapping_sub(bias)),
            source: AllgsSource::Symtab,
        },
        bias,
    );
    let snap = reader.snapshot_named(&Shifted, &fake).unwrap();
    assert_eq!(snap.goroutines[0].lock_wait.map(|w| w.lock), Some(MUTEX));
    assert_eq!(snap.goroutines[0].frames.len(), 5);
}

/// Guards the checks that keep a wrong `allgs` from being trusted: each failure is an
/// error naming it.
#[test]
fn validation_rejects_what_is_not_allgs() {
    let reader = reader();
    let err = |fake: &FakeProcess| reader.validate(fake).unwrap_err().to_string();
    assert!(err(&process(&ALL, (ARRAY, 9, 8))).contains("len 9, cap 8"));
    assert!(err(&process(&ALL, (ARRAY, 4, 1 << 30))).contains("not a plausible slice"));
    assert!(err(&process(&ALL, (0, 4, 8))).contains("not a plausible slice"));
    let msg = err(&process(&[G_WAITING, 0], (ARRAY, 2, 8)));
    assert!(
        msg.contains("allgs[1]") && msg.contains("null pointer"),
        "{msg}"
    );
    let msg = err(&process(&[G_WAITING, 0x7777_0000], (ARRAY, 2, 8)));
    assert!(msg.contains("unreadable"), "{msg}");
    let msg = err(&process(&[G_DEAD], (ARRAY, 1, 8)));
    assert!(msg.contains("no live goroutine"), "{msg}");
    let bad_status = process(&ALL, (ARRAY, 4, 8)).poke(G_RUNNING + 144, &5u32.to_ne_bytes());
    assert!(err(&bad_status).contains("unknown status 0x5"));
    let bad_goid = process(&ALL, (ARRAY, 4, 8)).poke(G_RUNNING + 152, &0u64.to_ne_bytes());
    assert!(err(&bad_goid).contains("implausible goroutine id 0"));
    let bad_sp =
        process(&ALL, (ARRAY, 4, 8)).poke(G_CHAN + 56, &STACK_HI.wrapping_add(8).to_ne_bytes());
    assert!(err(&bad_sp).contains("outside its stack"));
    let lagging = process(&ALL, (ARRAY, 4, 8)).poke(ALLGLEN, &5u64.to_ne_bytes());
    assert!(err(&lagging).contains("runtime.allglen (5)"));
    let gone = process(&ALL, (ARRAY, 4, 8)).exited();
    assert!(err(&gone).contains("cannot read runtime.allglen"));
}

/// Guards the snapshot's bounds: a `g` unreadable during a snapshot is counted, not an
/// error, and only `MAX_SNAPSHOT_GS` are read of a longer slice.
#[test]
fn snapshot_counts_what_it_cannot_read() {
    let fake = process(&[G_RUNNING, 0x7777_0000, 0], (ARRAY, 3, 8));
    let snap = reader().snapshot_named(&FakeNames, &fake).unwrap();
    assert_eq!((snap.goroutines.len(), snap.unreadable), (1, 2));
    let (gs, len) = reader()
        .read_allgs(&process(&ALL, (ARRAY, 4, 8)), 2)
        .unwrap();
    assert_eq!((gs, len), (vec![G_WAITING, G_DEAD], 4));
}
