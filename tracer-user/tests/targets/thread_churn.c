/* Short-lived, thread-churning target (the `tracer serve` soak test): for argv[1] seconds
 * (default 4) counted from start, it runs generations of THREADS threads that contend
 * LOCKS mutexes for GENERATION_MS (each thread takes them in turn and sleeps ~200 us
 * holding one, so the others sleep on it in the kernel while little CPU is used), then
 * joins them and starts the next generation with new threads (new TIDs each time). At the
 * end it prints `generations=N` and `done`, and exits 0. Prints `pid=P` and `ready` at
 * start. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4
#define LOCKS 3
#define GENERATION_MS 100

pthread_mutex_t churn_locks[LOCKS] = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
                                      PTHREAD_MUTEX_INITIALIZER};

static unsigned long counters[LOCKS];

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((noinline)) void *churn_worker_main(void *arg) {
    long id = (long)arg;
    double end = now_s() + GENERATION_MS / 1e3;
    for (unsigned long i = (unsigned long)id; now_s() < end; i++) {
        pthread_mutex_t *m = &churn_locks[i % LOCKS];
        pthread_mutex_lock(m);
        counters[i % LOCKS]++;
        usleep(200);
        pthread_mutex_unlock(m);
        usleep(100);
    }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    double seconds = argc > 1 ? atof(argv[1]) : 4.0;
    double start = now_s();
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < LOCKS; i++) printf("lock.churn_%d=%p\n", i, (void *)&churn_locks[i]);
    printf("ready\n");
    unsigned long generations = 0;
    while (now_s() - start < seconds) {
        pthread_t t[THREADS];
        for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, churn_worker_main, (void *)i);
        for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
        generations++;
    }
    printf("generations=%lu\n", generations);
    printf("done\n");
    return 0;
}
