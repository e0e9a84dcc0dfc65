/* Target for wait ends timed when the waiter is switched back in (`tracer serve`, no
 * sys_exit program). Everything waits for SIGUSR1 (sent by the test once the tracer is
 * attached), in one of two modes (argv[1]):
 *
 * - `timed`: a holder thread (holder) takes timed_lock and holds it ~5 ms (sleeping),
 *   then lets go for ~1 ms; two waiters (waiter_0, waiter_1) take it, let go at once,
 *   and then run on the CPU for ~3 ms without a system call before sleeping ~0.5 ms.
 *   Every thread times its own pthread_mutex_lock calls. So a waiter's wait ends when it
 *   is switched back in, ~3 ms before it next leaves the CPU: a tracer that took the
 *   next switch-out for the end would count ~3 ms too much per wait. Runs 3 s after the
 *   signal, then prints `locked_ns=N` (the time all threads spent in
 *   pthread_mutex_lock), `locks=N` and `done`, and sleeps until killed.
 * - `adopted`: the holder takes adopted_lock before `ready`, and a waiter (waiter_0)
 *   blocks on it; on the signal the holder lets go, and the waiter prints `acquired`
 *   and sleeps until killed. A tracer attached in between finds the waiter already
 *   asleep, and must see its wait end without a sys_exit program. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WAITERS 2

pthread_mutex_t timed_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t adopted_lock = PTHREAD_MUTEX_INITIALIZER;

static volatile int stop;
static volatile pid_t holder_tid;
static volatile pid_t waiter_tids[WAITERS];
static pthread_barrier_t started, go;
static unsigned long long locked_ns, locks;
static pthread_mutex_t totals = PTHREAD_MUTEX_INITIALIZER;

static unsigned long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
}

/* Takes `lock`, adding the time the call took to the totals. */
static void timed_lock_call(pthread_mutex_t *lock, unsigned long long *mine, unsigned long long *count) {
    unsigned long long t0 = now_ns();
    pthread_mutex_lock(lock);
    *mine += now_ns() - t0;
    (*count)++;
}

static void add_totals(unsigned long long mine, unsigned long long count) {
    pthread_mutex_lock(&totals);
    locked_ns += mine;
    locks += count;
    pthread_mutex_unlock(&totals);
}

/* ~`ns` of work on the CPU, without a system call (clock_gettime is the vDSO). */
static void run_on_cpu(unsigned long long ns) {
    unsigned long long until = now_ns() + ns;
    while (now_ns() < until) {
    }
}

__attribute__((noinline)) void *holder_main(void *arg) {
    int adopted = arg != NULL;
    pthread_setname_np(pthread_self(), "holder");
    holder_tid = (pid_t)syscall(SYS_gettid);
    if (adopted) pthread_mutex_lock(&adopted_lock);
    pthread_barrier_wait(&started);
    pthread_barrier_wait(&go);
    if (adopted) {
        pthread_mutex_unlock(&adopted_lock);
        return NULL;
    }
    unsigned long long mine = 0, count = 0;
    while (!stop) {
        timed_lock_call(&timed_lock, &mine, &count);
        usleep(5000);
        pthread_mutex_unlock(&timed_lock);
        usleep(1000);
    }
    add_totals(mine, count);
    return NULL;
}

__attribute__((noinline)) void *waiter_main(void *arg) {
    long id = (long)arg & 0xff;
    int adopted = ((long)arg & 0x100) != 0;
    char name[16];
    snprintf(name, sizeof name, "waiter_%ld", id);
    pthread_setname_np(pthread_self(), name);
    waiter_tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    if (adopted) {
        pthread_mutex_lock(&adopted_lock);
        printf("acquired\n");
        fflush(stdout);
        pthread_mutex_unlock(&adopted_lock);
        return NULL;
    }
    pthread_barrier_wait(&go);
    unsigned long long mine = 0, count = 0;
    while (!stop) {
        timed_lock_call(&timed_lock, &mine, &count);
        pthread_mutex_unlock(&timed_lock);
        run_on_cpu(3000000);
        usleep(500);
    }
    add_totals(mine, count);
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int adopted = argc > 1 && strcmp(argv[1], "adopted") == 0;
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    int waiters = adopted ? 1 : WAITERS;
    pthread_barrier_init(&started, NULL, (unsigned)waiters + 2);
    /* In `adopted` mode the waiter does not come to this barrier: it is blocked. */
    pthread_barrier_init(&go, NULL, adopted ? 2 : (unsigned)waiters + 2);
    pthread_t holder, t[WAITERS];
    pthread_create(&holder, NULL, holder_main, adopted ? (void *)1 : NULL);
    for (long i = 0; i < waiters; i++)
        pthread_create(&t[i], NULL, waiter_main, (void *)(i | (adopted ? 0x100 : 0)));
    pthread_barrier_wait(&started);
    printf("pid=%d\n", (int)getpid());
    printf("tid.holder=%d\n", (int)holder_tid);
    for (int i = 0; i < waiters; i++) printf("tid.waiter_%d=%d\n", i, (int)waiter_tids[i]);
    printf("lock.timed_lock=%p\n", (void *)&timed_lock);
    printf("lock.adopted_lock=%p\n", (void *)&adopted_lock);
    printf("ready\n");
    fflush(stdout);
    int sig;
    sigwait(&usr1, &sig);
    pthread_barrier_wait(&go);
    if (adopted) {
        pthread_join(holder, NULL);
        pthread_join(t[0], NULL);
    } else {
        sleep(3);
        stop = 1;
        pthread_join(holder, NULL);
        for (int i = 0; i < waiters; i++) pthread_join(t[i], NULL);
        printf("locked_ns=%llu\n", locked_ns);
        printf("locks=%llu\n", locks);
        printf("done\n");
    }
    fflush(stdout);
    for (;;) pause();
}
