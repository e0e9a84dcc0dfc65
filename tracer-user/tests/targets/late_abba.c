/* ABBA deadlock whose locks are all taken after a start delay, so a tracer attached in
 * between sees every acquisition (for `--holds`: where each held lock was taken).
 *
 * Usage: late_abba START_MS [recursive]
 *   Facts and `ready` are printed first; START_MS later the workers take their first
 *   lock, meet at a barrier, and take their second lock: deadlock. With `recursive`, both
 *   locks are PTHREAD_MUTEX_RECURSIVE (whose lock word keeps the owner even in musl).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

pthread_mutex_t first_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t second_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_barrier_t named, first_locks_held;
static volatile pid_t tid_a, tid_b;
static long start_ms = 1500;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void run(pthread_mutex_t *mine, pthread_mutex_t *theirs) {
    pthread_barrier_wait(&named);
    sleep_ms(start_ms);
    pthread_mutex_lock(mine);
    pthread_barrier_wait(&first_locks_held);
    pthread_mutex_lock(theirs); /* never returns */
    pthread_mutex_unlock(theirs);
    pthread_mutex_unlock(mine);
}

__attribute__((noinline)) void *late_worker_a(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "late_a");
    tid_a = (pid_t)syscall(SYS_gettid);
    run(&first_lock, &second_lock);
    return NULL;
}

__attribute__((noinline)) void *late_worker_b(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "late_b");
    tid_b = (pid_t)syscall(SYS_gettid);
    run(&second_lock, &first_lock);
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) start_ms = strtol(argv[1], NULL, 10);
    if (argc > 2 && strcmp(argv[2], "recursive") == 0) {
        pthread_mutexattr_t attr;
        pthread_mutexattr_init(&attr);
        pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
        pthread_mutex_init(&first_lock, &attr);
        pthread_mutex_init(&second_lock, &attr);
    }
    pthread_barrier_init(&named, NULL, 3);
    pthread_barrier_init(&first_locks_held, NULL, 2);
    pthread_t a, b;
    pthread_create(&a, NULL, late_worker_a, NULL);
    pthread_create(&b, NULL, late_worker_b, NULL);
    pthread_barrier_wait(&named);
    printf("pid=%d\n", (int)getpid());
    printf("tid.late_a=%d\n", (int)tid_a);
    printf("tid.late_b=%d\n", (int)tid_b);
    printf("lock.first_lock=%p\n", (void *)&first_lock);
    printf("lock.second_lock=%p\n", (void *)&second_lock);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
