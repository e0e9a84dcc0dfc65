/* Memory-bound target (issue 16): contends N distinct mutexes (argv[1], default 100000)
 * one after another, each slept on. The holder thread locks mutex i and hands its index to
 * the waiter thread, which blocks in pthread_mutex_lock; once the mutex's futex word says
 * a waiter is there (2), the holder spins ~30 us so the waiter is asleep in the kernel,
 * then unlocks, and waits for the waiter to release mutex i before moving on. Waits start
 * on SIGUSR1 (so a tracer can attach first). Prints `contended=K` every 10 000 mutexes
 * and at the end (K: mutexes on which the waiter was seen queued), then `done`, then
 * idles until killed. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t *locks;
static long n;
static atomic_long turn = -1;
static atomic_long released = -1;

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* glibc's mutex futex word: 0 free, 1 locked, 2 locked with waiters. */
static int futex_word(pthread_mutex_t *m) {
    return __atomic_load_n(&m->__data.__lock, __ATOMIC_ACQUIRE);
}

__attribute__((noinline)) void *waiter_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "waiter");
    for (long i = 0; i < n; i++) {
        while (atomic_load(&turn) != i) sched_yield();
        pthread_mutex_lock(&locks[i]);
        pthread_mutex_unlock(&locks[i]);
        atomic_store(&released, i);
    }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    n = argc > 1 ? atol(argv[1]) : 100000;
    locks = calloc((size_t)n, sizeof *locks);
    if (!locks) return 1;
    for (long i = 0; i < n; i++) pthread_mutex_init(&locks[i], NULL);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    pthread_t waiter;
    pthread_create(&waiter, NULL, waiter_main, NULL);
    printf("pid=%d\nmutexes=%ld\nfirst_lock=%p\nready\n", getpid(), n, (void *)&locks[0]);
    int sig;
    sigwait(&usr1, &sig);
    long contended = 0;
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&locks[i]);
        atomic_store(&turn, i);
        long deadline = now_ns() + 100000000L;
        while (futex_word(&locks[i]) != 2 && now_ns() < deadline) sched_yield();
        if (futex_word(&locks[i]) == 2) {
            contended++;
            long until = now_ns() + 30000;
            while (now_ns() < until) sched_yield();
        }
        pthread_mutex_unlock(&locks[i]);
        while (atomic_load(&released) != i) sched_yield();
        if ((i + 1) % 10000 == 0) printf("contended=%ld\n", contended);
    }
    printf("contended=%ld\ndone\n", contended);
    pthread_join(waiter, NULL);
    for (;;) pause();
}
