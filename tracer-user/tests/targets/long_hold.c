/* Holder-profile target: one thread (holder) takes slow_lock in long_holder_main and
 * holds it ~2 ms (sleeping) every time, then lets go for ~0.2 ms; two threads (waiter_0,
 * waiter_1) take it in short_waiter_main for a few instructions every ~0.1 ms. So the
 * waiters' time goes waiting, in short_waiter_main, almost only for the holds taken in
 * long_holder_main (the holder rarely finds the lock taken): a waiter profile names the
 * waiters' function, a holder profile the holder's. Runs for argv[1] seconds (default 5)
 * counted from start, then prints `holds=N`, `waits=N` and `done`, and exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WAITERS 2

pthread_mutex_t slow_lock = PTHREAD_MUTEX_INITIALIZER;

static volatile int stop;
static volatile pid_t holder_tid;
static volatile pid_t waiter_tids[WAITERS];
static pthread_barrier_t started;
static volatile unsigned long holds, waits;

__attribute__((noinline)) void *long_holder_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "holder");
    holder_tid = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    while (!stop) {
        pthread_mutex_lock(&slow_lock);
        holds++;
        usleep(2000);
        pthread_mutex_unlock(&slow_lock);
        usleep(200);
    }
    return NULL;
}

__attribute__((noinline)) void *short_waiter_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "waiter_%ld", id);
    pthread_setname_np(pthread_self(), name);
    waiter_tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    while (!stop) {
        pthread_mutex_lock(&slow_lock);
        waits++;
        pthread_mutex_unlock(&slow_lock);
        usleep(100);
    }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_barrier_init(&started, NULL, WAITERS + 2);
    pthread_t holder, t[WAITERS];
    pthread_create(&holder, NULL, long_holder_main, NULL);
    for (long i = 0; i < WAITERS; i++) pthread_create(&t[i], NULL, short_waiter_main, (void *)i);
    pthread_barrier_wait(&started);
    printf("pid=%d\n", (int)getpid());
    printf("tid.holder=%d\n", (int)holder_tid);
    for (int i = 0; i < WAITERS; i++) printf("tid.waiter_%d=%d\n", i, (int)waiter_tids[i]);
    printf("lock.slow_lock=%p\n", (void *)&slow_lock);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double elapsed = (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
        if (elapsed >= seconds) break;
        usleep(10000);
    }
    stop = 1;
    pthread_join(holder, NULL);
    for (int i = 0; i < WAITERS; i++) pthread_join(t[i], NULL);
    printf("holds=%lu\n", holds);
    printf("waits=%lu\n", waits);
    printf("done\n");
    fflush(stdout);
    return 0;
}
