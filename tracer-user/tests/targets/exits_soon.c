/* Short-lived target: 2 threads (busy_0, busy_1) contend mildly on busy_lock for argv[1]
 * seconds (default 1) counted from start; then it prints `done` and exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define THREADS 2

pthread_mutex_t busy_lock = PTHREAD_MUTEX_INITIALIZER;

static volatile int stop;
static volatile pid_t tids[THREADS];
static pthread_barrier_t started;
static unsigned long counter;

__attribute__((noinline)) void *busy_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "busy_%ld", id);
    pthread_setname_np(pthread_self(), name);
    tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    while (!stop) {
        pthread_mutex_lock(&busy_lock);
        for (volatile int i = 0; i < 2000; i++) {
        }
        counter++;
        pthread_mutex_unlock(&busy_lock);
        usleep(100);
    }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_barrier_init(&started, NULL, THREADS + 1);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, busy_main, (void *)i);
    pthread_barrier_wait(&started);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < THREADS; i++) printf("tid.busy_%d=%d\n", i, (int)tids[i]);
    printf("lock.busy_lock=%p\n", (void *)&busy_lock);
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
    printf("iterations=%lu\n", counter);
    printf("done\n");
    fflush(stdout);
    return 0;
}
