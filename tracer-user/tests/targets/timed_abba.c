/* ABBA cycle of timed lock waits that time out and back off, for the tracer's
 * integration tests (issue 16, point 5).
 *
 * Each round, worker_a takes lock_a and worker_b takes lock_b; a barrier makes sure both
 * hold their first lock; then each asks for the other's lock with a TIMEOUT_MS timeout:
 * worker_a with pthread_mutex_timedlock (an absolute CLOCK_REALTIME deadline), worker_b
 * with pthread_mutex_clocklock on CLOCK_MONOTONIC. The first wait to time out
 * (ETIMEDOUT) backs off (unlocks its first lock), which lets the other take it (or time
 * out too); both meet at a second barrier and start the next round.
 * So a wait-for cycle forms every round, lasts about TIMEOUT_MS, and resolves itself: the
 * program keeps running. Not a deadlock.
 *
 * Facts: pid, the workers' tids, the lock addresses, the timeout. After `ready`, the line
 * `backed_off` is printed once, the first time a worker timed out and backed off.
 *
 * Usage: timed_abba [TIMEOUT_MS [START_MS]]
 *   TIMEOUT_MS (default 200): the timeout of each worker's second lock.
 *   START_MS (default 0): how long the workers sleep after `ready` before their first
 *   round, so that a test can attach the tracer before the first cycle forms.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;

static pthread_barrier_t both_hold_first, both_backed_off, started;
static volatile pid_t tid_a, tid_b;
static long timeout_ms = 200;
static long start_ms;
static int timed_out_once;

/* An absolute deadline TIMEOUT_MS from now on `clock`. */
static struct timespec deadline_on(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* noinline: keep a real frame between the thread function and the lock call. */
__attribute__((noinline)) static int timed_take(pthread_mutex_t *mutex) {
    struct timespec deadline = deadline_on(CLOCK_REALTIME);
    return pthread_mutex_timedlock(mutex, &deadline);
}

__attribute__((noinline)) static int clock_take(pthread_mutex_t *mutex) {
    struct timespec deadline = deadline_on(CLOCK_MONOTONIC);
    return pthread_mutex_clocklock(mutex, CLOCK_MONOTONIC, &deadline);
}

/* One worker's rounds: take `first`, wait for the other to take its own, ask for
 * `second` with a timeout, back off. */
static void rounds(pthread_mutex_t *first, pthread_mutex_t *second,
                   int (*take)(pthread_mutex_t *)) {
    if (start_ms > 0) {
        struct timespec ts = {start_ms / 1000, (start_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {
        }
    }
    for (;;) {
        pthread_mutex_lock(first);
        pthread_barrier_wait(&both_hold_first);
        int err = take(second);
        if (err == 0) pthread_mutex_unlock(second);
        pthread_mutex_unlock(first);
        /* The first timeout of either worker (the other may then get its lock). */
        if (err == ETIMEDOUT && !__atomic_exchange_n(&timed_out_once, 1, __ATOMIC_SEQ_CST)) {
            printf("backed_off\n");
            fflush(stdout);
        }
        pthread_barrier_wait(&both_backed_off);
    }
}

__attribute__((noinline)) void *worker_a_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "worker_a");
    tid_a = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    rounds(&lock_a, &lock_b, timed_take);
    return NULL;
}

__attribute__((noinline)) void *worker_b_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "worker_b");
    tid_b = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    rounds(&lock_b, &lock_a, clock_take);
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) timeout_ms = strtol(argv[1], NULL, 10);
    if (argc > 2) start_ms = strtol(argv[2], NULL, 10);
    pthread_barrier_init(&started, NULL, 3);
    pthread_barrier_init(&both_hold_first, NULL, 2);
    pthread_barrier_init(&both_backed_off, NULL, 2);
    pthread_t a, b;
    pthread_create(&a, NULL, worker_a_main, NULL);
    pthread_create(&b, NULL, worker_b_main, NULL);
    pthread_barrier_wait(&started);
    printf("pid=%d\n", (int)getpid());
    printf("tid.worker_a=%d\n", (int)tid_a);
    printf("tid.worker_b=%d\n", (int)tid_b);
    printf("lock.lock_a=%p\n", (void *)&lock_a);
    printf("lock.lock_b=%p\n", (void *)&lock_b);
    printf("timeout_ms=%ld\n", timeout_ms);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
