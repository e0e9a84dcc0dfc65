/* Hand-off target: 6 threads (sleepy_0..sleepy_5) take handoff_lock, sleep ~100 us
 * holding it, and release it, in a loop. So the lock changes owner ~8,000 times a second
 * while every other thread sleeps in a futex wait on it, and each new owner goes to
 * sleep (in nanosleep) holding it: the shape that once produced a false self-deadlock
 * (a waiter's record naming as owner a thread whose own wait end was not read yet, then
 * a confirmation whose /proc reads straddled that thread taking the lock).
 * Runs for argv[1] seconds (default 5) counted from start, then prints `done`, exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define THREADS 6

pthread_mutex_t handoff_lock = PTHREAD_MUTEX_INITIALIZER;

static volatile int stop;
static volatile pid_t tids[THREADS];
static pthread_barrier_t started;
static unsigned long handoffs;

__attribute__((noinline)) void *sleepy_worker_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "sleepy_%ld", id);
    pthread_setname_np(pthread_self(), name);
    tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    while (!stop) {
        pthread_mutex_lock(&handoff_lock);
        handoffs++;
        usleep(100);
        pthread_mutex_unlock(&handoff_lock);
    }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_barrier_init(&started, NULL, THREADS + 1);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, sleepy_worker_main, (void *)i);
    pthread_barrier_wait(&started);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < THREADS; i++) printf("tid.sleepy_%d=%d\n", i, (int)tids[i]);
    printf("lock.handoff_lock=%p\n", (void *)&handoff_lock);
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
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("handoffs=%lu\n", handoffs);
    printf("done\n");
    fflush(stdout);
    return 0;
}
