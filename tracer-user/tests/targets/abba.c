/* ABBA deadlock target for the tracer's integration tests.
 *
 * worker_a takes lock_a then lock_b; worker_b takes lock_b then lock_a. A barrier after
 * the first lock makes the deadlock certain. Facts are printed once both first locks are
 * held; the process then hangs forever.
 *
 * Usage: abba [DELAY_MS]
 *   DELAY_MS (default 0): how long both workers sleep after the barrier (i.e. after
 *   `ready` was printed) before taking their second lock, so that a test can attach the
 *   tracer before the deadlock forms (0: the deadlock forms right away).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The names of the two lock globals; a test builds with -DLOCK_A=m -DLOCK_B=n to check
 * that one-letter C names are reported as they are. The facts name the locks the same way. */
#ifndef LOCK_A
#define LOCK_A lock_a
#endif
#ifndef LOCK_B
#define LOCK_B lock_b
#endif
#define STRINGIFY(x) #x
#define NAME_OF(x) STRINGIFY(x)

pthread_mutex_t LOCK_A = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t LOCK_B = PTHREAD_MUTEX_INITIALIZER;

static pthread_barrier_t first_locks_held;
static volatile pid_t tid_a, tid_b;
static long delay_ms;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* noinline: keep a real frame between the thread function and pthread_mutex_lock. */
__attribute__((noinline)) static void take_second(pthread_mutex_t *mutex) {
    pthread_mutex_lock(mutex);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void *worker_a_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "worker_a");
    tid_a = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(&LOCK_A);
    pthread_barrier_wait(&first_locks_held);
    if (delay_ms > 0) sleep_ms(delay_ms);
    take_second(&LOCK_B); /* never returns */
    pthread_mutex_unlock(&LOCK_B);
    pthread_mutex_unlock(&LOCK_A);
    return NULL;
}

__attribute__((noinline)) void *worker_b_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "worker_b");
    tid_b = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(&LOCK_B);
    pthread_barrier_wait(&first_locks_held);
    if (delay_ms > 0) sleep_ms(delay_ms);
    take_second(&LOCK_A); /* never returns */
    pthread_mutex_unlock(&LOCK_A);
    pthread_mutex_unlock(&LOCK_B);
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) delay_ms = strtol(argv[1], NULL, 10);
    pthread_barrier_init(&first_locks_held, NULL, 3);
    pthread_t a, b;
    pthread_create(&a, NULL, worker_a_main, NULL);
    pthread_create(&b, NULL, worker_b_main, NULL);
    pthread_barrier_wait(&first_locks_held);
    printf("pid=%d\n", (int)getpid());
    printf("tid.worker_a=%d\n", (int)tid_a);
    printf("tid.worker_b=%d\n", (int)tid_b);
    printf("lock." NAME_OF(LOCK_A) "=%p\n", (void *)&LOCK_A);
    printf("lock." NAME_OF(LOCK_B) "=%p\n", (void *)&LOCK_B);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
