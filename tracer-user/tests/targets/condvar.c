/* Condition-variable target: 2 producers and 2 consumers share a bounded queue of 4 items
 * guarded by queue_lock, with condvars not_empty and not_full. Consumers are slow (1 ms per
 * item, outside the lock) and producers pause 5 ms after every 8 items, so both sides spend
 * most of their time waiting on a condvar. Runs argv[1] seconds (default 5) counted from
 * start, then prints `done` and exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CAPACITY 4
#define PRODUCERS 2
#define CONSUMERS 2

pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t not_empty = PTHREAD_COND_INITIALIZER;
pthread_cond_t not_full = PTHREAD_COND_INITIALIZER;

static int queue[CAPACITY];
static int head, count;
static volatile int stop;
static volatile pid_t producer_tids[PRODUCERS], consumer_tids[CONSUMERS];
static pthread_barrier_t started;
static unsigned long consumed;

__attribute__((noinline)) void *producer_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "producer_%ld", id);
    pthread_setname_np(pthread_self(), name);
    producer_tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    for (int item = 0; !stop; item++) {
        pthread_mutex_lock(&queue_lock);
        while (count == CAPACITY && !stop) pthread_cond_wait(&not_full, &queue_lock);
        if (stop) {
            pthread_mutex_unlock(&queue_lock);
            break;
        }
        queue[(head + count) % CAPACITY] = item;
        count++;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&queue_lock);
        if (item % 8 == 7) usleep(5000);
    }
    return NULL;
}

__attribute__((noinline)) void *consumer_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "consumer_%ld", id);
    pthread_setname_np(pthread_self(), name);
    consumer_tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    for (;;) {
        pthread_mutex_lock(&queue_lock);
        while (count == 0 && !stop) pthread_cond_wait(&not_empty, &queue_lock);
        if (count == 0 && stop) {
            pthread_mutex_unlock(&queue_lock);
            break;
        }
        head = (head + 1) % CAPACITY;
        count--;
        consumed++;
        pthread_cond_signal(&not_full);
        pthread_mutex_unlock(&queue_lock);
        usleep(1000); /* slow consumer */
    }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_barrier_init(&started, NULL, PRODUCERS + CONSUMERS + 1);
    pthread_t p[PRODUCERS], c[CONSUMERS];
    for (long i = 0; i < PRODUCERS; i++) pthread_create(&p[i], NULL, producer_main, (void *)i);
    for (long i = 0; i < CONSUMERS; i++) pthread_create(&c[i], NULL, consumer_main, (void *)i);
    pthread_barrier_wait(&started);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < PRODUCERS; i++) printf("tid.producer_%d=%d\n", i, (int)producer_tids[i]);
    for (int i = 0; i < CONSUMERS; i++) printf("tid.consumer_%d=%d\n", i, (int)consumer_tids[i]);
    printf("lock.queue_lock=%p\n", (void *)&queue_lock);
    printf("cond.not_empty=%p\n", (void *)&not_empty);
    printf("cond.not_full=%p\n", (void *)&not_full);
    printf("size.cond=%zu\n", sizeof(pthread_cond_t));
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double elapsed = (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
        if (elapsed >= seconds) break;
        usleep(10000);
    }
    pthread_mutex_lock(&queue_lock);
    stop = 1;
    pthread_cond_broadcast(&not_empty);
    pthread_cond_broadcast(&not_full);
    pthread_mutex_unlock(&queue_lock);
    for (int i = 0; i < PRODUCERS; i++) pthread_join(p[i], NULL);
    for (int i = 0; i < CONSUMERS; i++) pthread_join(c[i], NULL);
    printf("consumed=%lu\n", consumed);
    printf("done\n");
    fflush(stdout);
    return 0;
}
