/* ABBA deadlock in which worker a's deadlocking wait is, by construction, the second
 * sleeping futex wait in a row on its lock's word on its CPU, so the kernel side sends
 * it without its stack (STACK_SAMPLE_EVERY: only the first wait of such a run carries
 * one). The report must still show a's full stack, read from its blocked thread.
 *
 * Usage: sampled_abba START_MS
 *   Facts and `ready` are printed first; START_MS later:
 *   1. warm-up: b takes second_lock and holds it while a blocks on it (a's CPU sees a
 *      sleeping wait on second_lock, sent with its stack); b lets go, a takes and drops it;
 *   2. a takes first_lock, b takes second_lock; they meet through spinning flags (no
 *      futex wait, which would start a new run on another word); each takes the other's
 *      lock: a's wait on second_lock is the second of its run on CPU 0.
 * a runs on CPU 0 alone; b and the main thread share the last CPU.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

pthread_mutex_t first_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t second_lock = PTHREAD_MUTEX_INITIALIZER;

static atomic_int tid_a, tid_b;
static atomic_int b_holds_second, a_warmed_up, a_holds_first, b_holds_second_again;
static long start_ms = 1500;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static int last_cpu(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 1 ? (int)n - 1 : 0;
}

static void spin_until(atomic_int *flag) {
    while (!atomic_load(flag)) {
    }
}

__attribute__((noinline)) void *sampled_worker_a(void *arg) {
    (void)arg;
    pin_to(0);
    pthread_setname_np(pthread_self(), "sampled_a");
    atomic_store(&tid_a, (int)syscall(SYS_gettid));
    sleep_ms(start_ms);
    spin_until(&b_holds_second);
    pthread_mutex_lock(&second_lock); /* sleeps until b lets go: the run's first wait */
    pthread_mutex_unlock(&second_lock);
    atomic_store(&a_warmed_up, 1);
    pthread_mutex_lock(&first_lock);
    atomic_store(&a_holds_first, 1);
    spin_until(&b_holds_second_again);
    pthread_mutex_lock(&second_lock); /* never returns: the run's second wait */
    return NULL;
}

__attribute__((noinline)) void *sampled_worker_b(void *arg) {
    (void)arg;
    pin_to(last_cpu());
    pthread_setname_np(pthread_self(), "sampled_b");
    atomic_store(&tid_b, (int)syscall(SYS_gettid));
    sleep_ms(start_ms);
    pthread_mutex_lock(&second_lock);
    atomic_store(&b_holds_second, 1);
    sleep_ms(100); /* a is asleep in its wait by now */
    pthread_mutex_unlock(&second_lock);
    spin_until(&a_warmed_up);
    pthread_mutex_lock(&second_lock);
    atomic_store(&b_holds_second_again, 1);
    spin_until(&a_holds_first);
    pthread_mutex_lock(&first_lock); /* never returns */
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) start_ms = strtol(argv[1], NULL, 10);
    pin_to(last_cpu());
    pthread_t a, b;
    pthread_create(&a, NULL, sampled_worker_a, NULL);
    pthread_create(&b, NULL, sampled_worker_b, NULL);
    while (!atomic_load(&tid_a) || !atomic_load(&tid_b)) sleep_ms(1);
    printf("pid=%d\n", (int)getpid());
    printf("tid.sampled_a=%d\n", atomic_load(&tid_a));
    printf("tid.sampled_b=%d\n", atomic_load(&tid_b));
    printf("lock.first_lock=%p\n", (void *)&first_lock);
    printf("lock.second_lock=%p\n", (void *)&second_lock);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
