// lockbench: a lock-heavy workload for `cargo xtask bench` (overhead runs, parts b and c).
//
// N threads take one shared pthread mutex in a loop, spin ~1 us inside it (a calibrated
// busy loop, so the critical section costs the same traced or not) and ~1 us outside it.
// With more threads than cores and a short critical section, most acquisitions that
// find the lock taken end in FUTEX_WAIT, and most unlocks in FUTEX_WAKE: the futex hooks
// fire hundreds of thousands of times per second, the worst case for the tracer.
//
// Usage:
//   lockbench --calibrate                 prints spin_iters_per_us=N and exits
//   lockbench [--threads N] [--seconds D] [--cs-us C] [--out-us O] [--iters-per-us K]
//             [--wait-stdin]
// With --wait-stdin it prints `ready pid=P` and blocks on a byte from stdin before
// starting the timed loop, so a tracer can attach first and the attach cost stays out
// of the measurement. At the end it prints `ops_per_sec=N` (lock/unlock pairs per second,
// all threads together).
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
static uint64_t cs_iters, out_iters;

struct worker {
    pthread_t thread;
    uint64_t ops;
    char pad[64]; // keep each worker's counter in its own cache line
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// The empty asm with a memory clobber keeps the compiler from folding the loop away.
static void spin(uint64_t iters) {
    for (uint64_t i = 0; i < iters; i++) __asm__ volatile("" ::: "memory");
}

static uint64_t calibrate(void) {
    // Best of several 20 ms samples: the lowest time is the one least disturbed.
    const uint64_t iters = 2000000;
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 5; i++) {
        uint64_t t0 = now_ns();
        spin(iters);
        uint64_t dt = now_ns() - t0;
        if (dt < best) best = dt;
    }
    uint64_t per_us = iters * 1000 / (best ? best : 1);
    return per_us ? per_us : 1;
}

static void *work(void *arg) {
    struct worker *w = arg;
    uint64_t ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        pthread_mutex_lock(&lock);
        shared_counter++;
        spin(cs_iters);
        pthread_mutex_unlock(&lock);
        spin(out_iters);
        ops++;
    }
    w->ops = ops;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = 4, wait_stdin = 0;
    double seconds = 3, cs_us = 1, out_us = 1;
    uint64_t per_us = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--calibrate")) {
            printf("spin_iters_per_us=%llu\n", (unsigned long long)calibrate());
            return 0;
        } else if (!strcmp(a, "--wait-stdin")) {
            wait_stdin = 1;
        } else if (v && !strcmp(a, "--threads")) {
            threads = atoi(v), i++;
        } else if (v && !strcmp(a, "--seconds")) {
            seconds = atof(v), i++;
        } else if (v && !strcmp(a, "--cs-us")) {
            cs_us = atof(v), i++;
        } else if (v && !strcmp(a, "--out-us")) {
            out_us = atof(v), i++;
        } else if (v && !strcmp(a, "--iters-per-us")) {
            per_us = strtoull(v, NULL, 10), i++;
        } else {
            fprintf(stderr, "lockbench: bad argument %s\n", a);
            return 2;
        }
    }
    if (threads < 1 || threads > 1024 || seconds <= 0) {
        fprintf(stderr, "lockbench: bad --threads or --seconds\n");
        return 2;
    }
    if (!per_us) per_us = calibrate();
    cs_iters = (uint64_t)(cs_us * (double)per_us);
    out_iters = (uint64_t)(out_us * (double)per_us);

    if (wait_stdin) {
        printf("ready pid=%d\n", (int)getpid());
        fflush(stdout);
        char byte;
        if (read(0, &byte, 1) != 1) {
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
    struct timespec d = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&d, &d)) {
    }
    atomic_store(&stop, 1);
    uint64_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(workers[i].thread, NULL);
        total += workers[i].ops;
    }
    uint64_t dt = now_ns() - t0;
    printf("ops=%llu\nelapsed_ns=%llu\nops_per_sec=%.0f\n", (unsigned long long)total, (unsigned long long)dt,
           (double)total * 1e9 / (double)dt);
    free(workers);
    return 0;
}
