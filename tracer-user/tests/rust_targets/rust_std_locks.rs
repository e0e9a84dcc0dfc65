//! Rust `std` lock target for the tracer's integration tests (std only, built with rustc).
//!
//! Usage: rust_std_locks MODE
//! - `contend`: four threads hammer `static HOT: Mutex<u64>` and a heap `Store`'s `hits`
//!   and `log` mutexes (and `static TABLE: RwLock<u64>` and the store's `index` with a
//!   writer and readers), for ever.
//! - `abba`: `worker_a` takes `LOCK_A` then `LOCK_B`, `worker_b` the opposite, with a
//!   barrier in between: a certain deadlock among std mutexes.
//!
//! Prints `pid=`, `tid.NAME=`, `lock.NAME=0x…` (the `Mutex`'s address), then `ready`.
use std::sync::{Arc, Barrier, Mutex, RwLock};
use std::thread;
use std::time::Duration;

static HOT: Mutex<u64> = Mutex::new(0);
static TABLE: RwLock<u64> = RwLock::new(0);
static LOCK_A: Mutex<u64> = Mutex::new(0);
static LOCK_B: Mutex<u64> = Mutex::new(0);

/// A heap object whose locks are named by its type and field (`Store.hits`, ...).
pub struct Store {
    pub total: u64,
    pub hits: Mutex<u64>,
    pub log: Mutex<Vec<u64>>,
    pub index: RwLock<u64>,
}

fn gettid() -> i64 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { syscall(186) }
}

extern "C" {
    fn syscall(nr: i64, ...) -> i64;
}

#[inline(never)]
fn hold_hot(n: u64) {
    let mut hot = HOT.lock().unwrap();
    *hot += n;
    // Keep it held a little so others contend and sleep.
    thread::sleep(Duration::from_micros(200));
}

#[inline(never)]
fn hold_store(store: &Store, n: u64) {
    let mut v = store.log.lock().unwrap();
    v.push(n);
    if v.len() > 64 {
        v.clear();
    }
    thread::sleep(Duration::from_micros(200));
}

#[inline(never)]
fn count_hit(store: &Store, n: u64) {
    let mut hits = store.hits.lock().unwrap();
    *hits += n;
    thread::sleep(Duration::from_micros(200));
}

#[inline(never)]
fn write_index(store: &Store) {
    let mut i = store.index.write().unwrap();
    *i += 1;
    thread::sleep(Duration::from_micros(500));
}

#[inline(never)]
fn read_index(store: &Store) -> u64 {
    let i = store.index.read().unwrap();
    thread::sleep(Duration::from_micros(100));
    *i
}

#[inline(never)]
fn write_table() {
    let mut t = TABLE.write().unwrap();
    *t += 1;
    thread::sleep(Duration::from_micros(500));
}

#[inline(never)]
fn read_table() -> u64 {
    let t = TABLE.read().unwrap();
    thread::sleep(Duration::from_micros(100));
    *t
}

fn contend() {
    let store = Arc::new(Store {
        total: 0,
        hits: Mutex::new(0),
        log: Mutex::new(Vec::new()),
        index: RwLock::new(0),
    });
    println!("pid={}", std::process::id());
    println!("lock.HOT={:#x}", &HOT as *const _ as usize);
    println!("lock.TABLE={:#x}", &TABLE as *const _ as usize);
    println!("lock.store_hits={:#x}", &store.hits as *const _ as usize);
    println!("lock.store_log={:#x}", &store.log as *const _ as usize);
    println!("lock.store_index={:#x}", &store.index as *const _ as usize);
    println!("store.total={}", store.total);
    for i in 0..4u64 {
        let store = Arc::clone(&store);
        thread::Builder::new()
            .name(format!("hot{i}"))
            .spawn(move || loop {
                hold_hot(i);
                hold_store(&store, i);
                count_hit(&store, i);
            })
            .unwrap();
    }
    let writer_store = Arc::clone(&store);
    thread::Builder::new()
        .name("writer".into())
        .spawn(move || loop {
            write_table();
            write_index(&writer_store);
        })
        .unwrap();
    for i in 0..2 {
        let store = Arc::clone(&store);
        thread::Builder::new()
            .name(format!("reader{i}"))
            .spawn(move || loop {
                std::hint::black_box(read_table());
                std::hint::black_box(read_index(&store));
            })
            .unwrap();
    }
    println!("ready");
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

#[inline(never)]
fn take_second(lock: &Mutex<u64>) -> u64 {
    let g = lock.lock().unwrap();
    *g
}

#[inline(never)]
fn worker(name: &str, first: &'static Mutex<u64>, second: &'static Mutex<u64>, barrier: &Barrier) {
    println!("tid.{name}={}", gettid());
    let mut held = first.lock().unwrap();
    *held += 1;
    barrier.wait();
    let v = take_second(second);
    *held += v;
}

fn abba() {
    println!("pid={}", std::process::id());
    println!("lock.LOCK_A={:#x}", &LOCK_A as *const _ as usize);
    println!("lock.LOCK_B={:#x}", &LOCK_B as *const _ as usize);
    let barrier = Arc::new(Barrier::new(3));
    let b = Arc::clone(&barrier);
    thread::Builder::new()
        .name("worker_a".into())
        .spawn(move || worker("worker_a", &LOCK_A, &LOCK_B, &b))
        .unwrap();
    let b = Arc::clone(&barrier);
    thread::Builder::new()
        .name("worker_b".into())
        .spawn(move || worker("worker_b", &LOCK_B, &LOCK_A, &b))
        .unwrap();
    barrier.wait();
    println!("ready");
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("contend") => contend(),
        Some("abba") => abba(),
        _ => {
            eprintln!("usage: rust_std_locks contend|abba");
            std::process::exit(2);
        }
    }
}
