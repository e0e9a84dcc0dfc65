/* Target for the dispatcher's draw across a rise of the sampling period (`tracer serve`,
 * `tracer_common::SwitchDraw`). Four threads (hot_0..hot_3) take hot_lock over and over
 * as in hot_sleeps, so that the serve raises its period of sampled sleeps soon after
 * they start; one more thread (gate_waiter) goes to sleep on gate_lock, which main holds,
 * at the same moment, before that rise: the serve traces its sleep under the old period.
 * Main lets gate_lock go 1.5 s later. The waiter then prints `gate_wait_ns=N` (the time
 * it measured inside pthread_mutex_lock) and runs on the CPU for 3 s without a system
 * call (its only switch-outs are preemptions), prints `spun`, and sleeps until killed.
 * Everything waits for SIGUSR1 (sent by the test once the tracer is attached); the hot
 * threads stop after 5 s and main prints `done`. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4

pthread_mutex_t hot_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;

static volatile int stop;
static volatile pid_t tids[THREADS + 1];
static pthread_barrier_t started, go;

static unsigned long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
}

/* ~`ns` of work on the CPU, without a system call (clock_gettime is the vDSO). */
static void run_on_cpu(unsigned long long ns) {
    unsigned long long until = now_ns() + ns;
    while (now_ns() < until) {
    }
}

__attribute__((noinline)) void *hot_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "hot_%ld", id);
    pthread_setname_np(pthread_self(), name);
    tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    pthread_barrier_wait(&go);
    while (!stop) {
        pthread_mutex_lock(&hot_lock);
        run_on_cpu(2000);
        pthread_mutex_unlock(&hot_lock);
        run_on_cpu(1000);
    }
    return NULL;
}

__attribute__((noinline)) void *gate_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "gate_waiter");
    tids[THREADS] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    pthread_barrier_wait(&go);
    unsigned long long t0 = now_ns();
    pthread_mutex_lock(&gate_lock);
    unsigned long long waited = now_ns() - t0;
    pthread_mutex_unlock(&gate_lock);
    printf("gate_wait_ns=%llu\n", waited);
    run_on_cpu(3000000000ull);
    printf("spun\n");
    for (;;) pause();
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    pthread_barrier_init(&started, NULL, THREADS + 2);
    pthread_barrier_init(&go, NULL, THREADS + 2);
    pthread_mutex_lock(&gate_lock);
    pthread_t t[THREADS + 1];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, hot_main, (void *)i);
    pthread_create(&t[THREADS], NULL, gate_main, NULL);
    pthread_barrier_wait(&started);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < THREADS; i++) printf("tid.hot_%d=%d\n", i, (int)tids[i]);
    printf("tid.gate_waiter=%d\n", (int)tids[THREADS]);
    printf("lock.gate_lock=%p\n", (void *)&gate_lock);
    printf("ready\n");
    int sig;
    sigwait(&usr1, &sig);
    pthread_barrier_wait(&go);
    struct timespec gate = {1, 500000000};
    nanosleep(&gate, NULL);
    pthread_mutex_unlock(&gate_lock);
    struct timespec rest = {3, 500000000};
    nanosleep(&rest, NULL);
    stop = 1;
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("done\n");
    for (;;) pause();
}
