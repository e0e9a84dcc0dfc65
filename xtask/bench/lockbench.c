// lockbench: a lock-heavy workload for `cargo xtask bench` (overhead runs, parts b and c).
//
// N threads take one shared pthread mutex in a loop, spin 1 us inside it and 0.5 us
// outside it (by default). The spins are timed with CLOCK_MONOTONIC, read in the vDSO
// with no system call, so they last as long traced or not, and as long when the VM's
// CPUs run slower for a while: a loop of calibrated iterations ran 2x longer in some
// invocations than in others on the reference VM, which changed the workload itself.
// With more threads than cores and a short critical section, most acquisitions that
// find the lock taken end in FUTEX_WAIT, and most unlocks in FUTEX_WAKE: the futex hooks
// fire hundreds of thousands of times per second, the worst case for the tracer.
//
// Usage:
//   lockbench [--threads N] [--seconds D] [--cs-us C] [--out-us O] [--wait-stdin | --control]
// With --wait-stdin it prints `ready pid=P` and blocks on a byte from stdin before
// starting the timed loop, so a tracer can attach first and the attach cost stays out
// of the measurement. At the end it prints `ops_per_sec=N` (lock/unlock pairs per second,
// all threads together).
// With --control it prints `ready pid=P`, starts the threads at once and runs until
// stdin closes (--seconds is ignored); each line read from stdin makes it print
// `mark ops=N t_ns=T`: the lock/unlock pairs made so far and CLOCK_MONOTONIC. The
// difference of two marks is the throughput over any window, so several observers can
// take turns on one process.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int stop;
static uint64_t shared_counter;
static uint64_t cs_ns, out_ns;

struct worker {
    pthread_t thread;
    // Stored (not incremented: only its worker writes it) after every pair, so --control
    // can read a running total without stopping anyone.
    _Atomic uint64_t ops;
    char pad[64]; // keep each worker's counter in its own cache line
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// Busy-waits `ns` nanoseconds. The clock is read in the vDSO (no system call, so no
// syscall hook of a tracer fires inside the critical section).
static void spin_ns(uint64_t ns) {
    uint64_t end = now_ns() + ns;
    while (now_ns() < end) {
    }
}

static void *work(void *arg) {
    struct worker *w = arg;
    uint64_t ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        pthread_mutex_lock(&lock);
        shared_counter++;
        spin_ns(cs_ns);
        pthread_mutex_unlock(&lock);
        spin_ns(out_ns);
        ops++;
        atomic_store_explicit(&w->ops, ops, memory_order_relaxed);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = 4, wait_stdin = 0, control = 0;
    double seconds = 3, cs_us = 1, out_us = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--wait-stdin")) {
            wait_stdin = 1;
        } else if (!strcmp(a, "--control")) {
            control = 1;
        } else if (v && !strcmp(a, "--threads")) {
            threads = atoi(v), i++;
        } else if (v && !strcmp(a, "--seconds")) {
            seconds = atof(v), i++;
        } else if (v && !strcmp(a, "--cs-us")) {
            cs_us = atof(v), i++;
        } else if (v && !strcmp(a, "--out-us")) {
            out_us = atof(v), i++;
        } else {
            fprintf(stderr, "lockbench: bad argument %s\n", a);
            return 2;
        }
    }
    if (threads < 1 || threads > 1024 || seconds <= 0) {
        fprintf(stderr, "lockbench: bad --threads or --seconds\n");
        return 2;
    }
    cs_ns = (uint64_t)(cs_us * 1000.0);
    out_ns = (uint64_t)(out_us * 1000.0);

    if (wait_stdin || control) {
        printf("ready pid=%d\n", (int)getpid());
        fflush(stdout);
        char byte;
        if (wait_stdin && read(0, &byte, 1) != 1) {
            fprintf(stderr, "lockbench: no start byte on stdin\n");
            return 1;
        }
    }

    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    if (!workers) return 1;
    uint64_t t0 = now_ns();
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&workers[i].thread, NULL, work, &workers[i])) {
            fprintf(stderr, "lockbench: pthread_create failed\n");
            return 1;
        }
    }
    if (control) {
        char cmd[64];
        while (fgets(cmd, sizeof cmd, stdin)) {
            uint64_t sum = 0;
            for (int i = 0; i < threads; i++) sum += atomic_load_explicit(&workers[i].ops, memory_order_relaxed);
            printf("mark ops=%llu t_ns=%llu\n", (unsigned long long)sum, (unsigned long long)now_ns());
            fflush(stdout);
        }
    } else {
        struct timespec d = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
        while (nanosleep(&d, &d)) {
        }
    }
    atomic_store(&stop, 1);
    uint64_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(workers[i].thread, NULL);
        total += atomic_load_explicit(&workers[i].ops, memory_order_relaxed);
    }
    uint64_t dt = now_ns() - t0;
    printf("ops=%llu\nelapsed_ns=%llu\nops_per_sec=%.0f\n", (unsigned long long)total, (unsigned long long)dt,
           (double)total * 1e9 / (double)dt);
    free(workers);
    return 0;
}
