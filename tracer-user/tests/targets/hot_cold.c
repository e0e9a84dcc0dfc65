/* Contention target: 4 threads (hot_0..hot_3) hammer hot_lock with a ~1 us critical
 * section; hot_0 also takes cold_lock once every 10,000 iterations (nobody else takes it,
 * so it is never contended). Runs for argv[1] seconds (default 5) counted from start, then
 * prints `done` and exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4
#define COLD_EVERY 10000

pthread_mutex_t hot_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t cold_lock = PTHREAD_MUTEX_INITIALIZER;

static volatile int stop;
static volatile pid_t tids[THREADS];
static pthread_barrier_t started;
static volatile unsigned long shared_counter;
static unsigned long cold_counter;

/* About 1 us of work on a current x86 core. */
static void spin_work(void) {
    for (volatile int i = 0; i < 600; i++) {
    }
}

__attribute__((noinline)) void *hot_worker_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "hot_%ld", id);
    pthread_setname_np(pthread_self(), name);
    tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    unsigned long iter = 0;
    while (!stop) {
        pthread_mutex_lock(&hot_lock);
        spin_work();
        shared_counter++;
        pthread_mutex_unlock(&hot_lock);
        if (id == 0 && ++iter % COLD_EVERY == 0) {
            pthread_mutex_lock(&cold_lock);
            cold_counter++;
            pthread_mutex_unlock(&cold_lock);
        }
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
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, hot_worker_main, (void *)i);
    pthread_barrier_wait(&started);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < THREADS; i++) printf("tid.hot_%d=%d\n", i, (int)tids[i]);
    printf("lock.hot_lock=%p\n", (void *)&hot_lock);
    printf("lock.cold_lock=%p\n", (void *)&cold_lock);
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
    printf("iterations=%lu\n", shared_counter);
    printf("cold_iterations=%lu\n", cold_counter);
    printf("done\n");
    fflush(stdout);
    return 0;
}
