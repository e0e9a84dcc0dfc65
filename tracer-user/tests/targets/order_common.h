/* Shared scaffolding of the lock-order targets (order_*.c, issue 18).
 *
 * Each of them starts its worker threads, prints its facts (`key=value`: pid, thread ids,
 * lock addresses) and `ready`, then waits for SIGUSR1, so that a tracer can attach before
 * any lock is taken. Then the workers run their rounds, taking turns (a baton: one worker
 * at a time, in a fixed order, round after round) so that two opposite lock orders are
 * both taken but never at the same time: no deadlock can ever happen. When the rounds are
 * over the program prints `done` and idles until killed (the workers stay alive, so their
 * names and ids stay readable).
 */
#ifndef ORDER_COMMON_H
#define ORDER_COMMON_H

#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ORDER_MAX_WORKERS 8

/* Turn-taking between the main thread and the workers. Semaphores, not mutexes: they are
 * no lock the tracer follows, so they add no edge to the lock-order graph. */
static sem_t order_turn[ORDER_MAX_WORKERS];
static sem_t order_turn_done;
static volatile pid_t order_tid[ORDER_MAX_WORKERS];
static pthread_barrier_t order_started;

static inline pid_t order_gettid(void) { return (pid_t)syscall(SYS_gettid); }

/* Blocks SIGUSR1 in the calling thread (call it in main before any pthread_create, so
 * every thread inherits the mask and only sigwait receives it). */
static inline void order_block_start_signal(void) {
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
}

static inline void order_wait_for_start_signal(void) {
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    int sig;
    sigwait(&usr1, &sig);
}

/* Called first by each worker: names the thread, records its id, waits until all are up. */
static inline void order_worker_start(int index, const char *name) {
    pthread_setname_np(pthread_self(), name);
    order_tid[index] = order_gettid();
    pthread_barrier_wait(&order_started);
}

/* A worker waits for its turn, then (after its work) hands the baton back to main. */
static inline void order_wait_turn(int index) {
    while (sem_wait(&order_turn[index]) != 0) {
    }
}

static inline void order_end_turn(void) { sem_post(&order_turn_done); }

/* Starts `n` workers running `fns[i]` (each gets its index as argument), waits until each
 * has recorded its thread id. Call order_block_start_signal() first. */
static inline void order_start_workers(int n, void *(**fns)(void *)) {
    sem_init(&order_turn_done, 0, 0);
    pthread_barrier_init(&order_started, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        sem_init(&order_turn[i], 0, 0);
        pthread_t t;
        if (pthread_create(&t, NULL, fns[i], (void *)(long)i) != 0) {
            perror("pthread_create");
            exit(1);
        }
    }
    pthread_barrier_wait(&order_started);
}

/* Gives each of the `n` workers its turn, in index order, `rounds` times; returns once the
 * last turn is over. */
static inline void order_run_turns(int n, int rounds) {
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n; i++) {
            sem_post(&order_turn[i]);
            while (sem_wait(&order_turn_done) != 0) {
            }
        }
    }
}

/* After the rounds: nothing more happens until the process is killed. */
static inline void order_idle_forever(void) {
    for (;;) pause();
}

/* The rounds count from argv[1] (default `fallback`). */
static inline int order_rounds(int argc, char **argv, int fallback) {
    if (argc > 1) {
        int r = atoi(argv[1]);
        if (r > 0) return r;
    }
    return fallback;
}

#endif
