//! `parking_lot` lock target for the tracer's integration tests: four threads contend
//! `static HOT: parking_lot::Mutex<u64>` for ever (each holds it ~200 µs). `parking_lot`
//! parks threads on per-thread words, so the futex words say nothing of the lock.
//!
//! Prints `pid=`, `lock.HOT=0x…` (the mutex's address), then `ready`.
use parking_lot::Mutex;
use std::thread;
use std::time::Duration;

static HOT: Mutex<u64> = Mutex::new(0);

#[inline(never)]
fn hold_hot(n: u64) {
    let mut hot = HOT.lock();
    *hot += n;
    thread::sleep(Duration::from_micros(200));
}

fn main() {
    println!("pid={}", std::process::id());
    println!("lock.HOT={:#x}", &HOT as *const _ as usize);
    for i in 0..4u64 {
        thread::Builder::new()
            .name(format!("hot{i}"))
            .spawn(move || loop {
                hold_hot(i);
            })
            .unwrap();
    }
    println!("ready");
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}
