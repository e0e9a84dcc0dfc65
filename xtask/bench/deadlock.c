// deadlock: an ABBA deadlock at a controlled moment, for `cargo xtask bench` part (d).
//
// Prints `ready pid=P`, then blocks on a byte from stdin (sent once the tracer has
// attached). Then thread 1 takes A and blocks on B; thread 2, which already holds B,
// waits 50 ms so that thread 1 is surely asleep in its futex wait, prints
// `closed_ns=T` (CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns) and calls lock(A): the
// cycle closes at T (plus the microseconds it takes to enter the futex wait). The
// process then hangs until killed.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold;

static void *first(void *arg) {
    (void)arg;
    pthread_mutex_lock(&a);
    pthread_barrier_wait(&both_hold);
    pthread_mutex_lock(&b); // blocks: the second thread holds B
    return NULL;
}

static void *second(void *arg) {
    (void)arg;
    pthread_mutex_lock(&b);
    pthread_barrier_wait(&both_hold);
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    printf("closed_ns=%llu\n", (unsigned long long)now.tv_sec * 1000000000ull + (unsigned long long)now.tv_nsec);
    fflush(stdout);
    pthread_mutex_lock(&a); // closes the cycle
    return NULL;
}

int main(void) {
    printf("ready pid=%d\n", (int)getpid());
    fflush(stdout);
    char byte;
    if (read(0, &byte, 1) != 1) {
        fprintf(stderr, "deadlock: no start byte on stdin\n");
        return 1;
    }
    pthread_barrier_init(&both_hold, NULL, 2);
    pthread_t t1, t2;
    if (pthread_create(&t1, NULL, first, NULL) || pthread_create(&t2, NULL, second, NULL)) {
        fprintf(stderr, "deadlock: pthread_create failed\n");
        return 1;
    }
    pthread_join(t1, NULL); // never returns
    return 0;
}
