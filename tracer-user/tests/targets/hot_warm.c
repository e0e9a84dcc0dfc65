/* Two contended locks of very different heat, for `tracer top`'s ranking: 4 threads
 * (hot_0..hot_3) hammer hot_lock with a ~1 us critical section, back to back; 2 threads
 * (warm_0, warm_1) take warm_lock for ~20 us, sleeping 200 us between, so they contend
 * now and then and wait far less in total. Runs for argv[1] seconds (default 5) counted
 * from start, then prints `done` and exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HOT 4
#define WARM 2

pthread_mutex_t hot_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t warm_lock = PTHREAD_MUTEX_INITIALIZER;

static volatile int stop;
static volatile pid_t tids[HOT + WARM];
static pthread_barrier_t started;
static volatile unsigned long hot_counter, warm_counter;

static void spin(int n) {
    for (volatile int i = 0; i < n; i++) {
    }
}

__attribute__((noinline)) void *hot_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "hot_%d", (int)id);
    pthread_setname_np(pthread_self(), name);
    tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    while (!stop) {
        pthread_mutex_lock(&hot_lock);
        spin(600);
        hot_counter++;
        pthread_mutex_unlock(&hot_lock);
    }
    return NULL;
}

__attribute__((noinline)) void *warm_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "warm_%d", (int)(id - HOT));
    pthread_setname_np(pthread_self(), name);
    tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    while (!stop) {
        pthread_mutex_lock(&warm_lock);
        spin(12000);
        warm_counter++;
        pthread_mutex_unlock(&warm_lock);
        usleep(200);
    }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_barrier_init(&started, NULL, HOT + WARM + 1);
    pthread_t t[HOT + WARM];
    for (long i = 0; i < HOT + WARM; i++)
        pthread_create(&t[i], NULL, i < HOT ? hot_main : warm_main, (void *)i);
    pthread_barrier_wait(&started);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < HOT; i++) printf("tid.hot_%d=%d\n", i, (int)tids[i]);
    for (int i = 0; i < WARM; i++) printf("tid.warm_%d=%d\n", i, (int)tids[HOT + i]);
    printf("lock.hot_lock=%p\n", (void *)&hot_lock);
    printf("lock.warm_lock=%p\n", (void *)&warm_lock);
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
    for (int i = 0; i < HOT + WARM; i++) pthread_join(t[i], NULL);
    printf("hot_iterations=%lu\nwarm_iterations=%lu\ndone\n", hot_counter, warm_counter);
    return 0;
}
