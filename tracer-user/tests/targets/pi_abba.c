/* ABBA deadlock on priority-inheritance mutexes (PTHREAD_PRIO_INHERIT): glibc locks
 * these with FUTEX_LOCK_PI / FUTEX_LOCK_PI2, and the futex word itself holds the owner's
 * TID, unlike a normal mutex. Facts are printed once both first locks are held; the
 * process then hangs forever. The kernel sees this deadlock itself: the second locker's
 * FUTEX_LOCK_PI fails with EDEADLK and glibc parks that thread forever on a private word.
 *
 * Usage: pi_abba [DELAY_MS]: the workers sleep DELAY_MS after `ready` before taking their
 * second lock, so a tracer can attach before the deadlock forms.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

pthread_mutex_t pi_lock_a;
pthread_mutex_t pi_lock_b;

static pthread_barrier_t first_locks_held;
static volatile pid_t tid_a, tid_b;
static long delay_ms;

static void *worker(pthread_mutex_t *mine, pthread_mutex_t *theirs, const char *name, volatile pid_t *tid) {
    pthread_setname_np(pthread_self(), name);
    *tid = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(mine);
    pthread_barrier_wait(&first_locks_held);
    if (delay_ms > 0) {
        struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(theirs); /* never returns */
    return NULL;
}

__attribute__((noinline)) void *pi_worker_a(void *arg) {
    (void)arg;
    return worker(&pi_lock_a, &pi_lock_b, "pi_a", &tid_a);
}

__attribute__((noinline)) void *pi_worker_b(void *arg) {
    (void)arg;
    return worker(&pi_lock_b, &pi_lock_a, "pi_b", &tid_b);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) delay_ms = strtol(argv[1], NULL, 10);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&pi_lock_a, &attr);
    pthread_mutex_init(&pi_lock_b, &attr);
    pthread_barrier_init(&first_locks_held, NULL, 3);
    pthread_t a, b;
    pthread_create(&a, NULL, pi_worker_a, NULL);
    pthread_create(&b, NULL, pi_worker_b, NULL);
    pthread_barrier_wait(&first_locks_held);
    printf("pid=%d\n", (int)getpid());
    printf("tid.pi_a=%d\n", (int)tid_a);
    printf("tid.pi_b=%d\n", (int)tid_b);
    printf("lock.pi_lock_a=%p\n", (void *)&pi_lock_a);
    printf("lock.pi_lock_b=%p\n", (void *)&pi_lock_b);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
