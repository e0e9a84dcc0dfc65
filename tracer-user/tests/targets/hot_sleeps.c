/* Target for sampled sleeps (`tracer serve --max-sleeps-per-second`): four threads
 * (hot_0..hot_3) take hot_lock over and over, hold it ~2 us on the CPU and let go for
 * ~1 us, so that its waiters go to sleep in the kernel tens of thousands of times a
 * second. Everything waits for SIGUSR1 (sent by the test once the tracer is attached);
 * then the threads run 3 s (or the seconds given as the one argument), each timing its
 * own pthread_mutex_lock calls, and the program prints `locked_ns=N` (the time all
 * threads spent in pthread_mutex_lock), `longest_lock_ns=N` (the longest single call),
 * `locks=N` and `done`, and sleeps until killed. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4

pthread_mutex_t hot_lock = PTHREAD_MUTEX_INITIALIZER;

static volatile int stop;
static volatile pid_t tids[THREADS];
static pthread_barrier_t started, go;
static unsigned long long locked_ns, locks, longest_lock_ns;
static pthread_mutex_t totals = PTHREAD_MUTEX_INITIALIZER;

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
    unsigned long long mine = 0, count = 0, longest = 0;
    while (!stop) {
        unsigned long long t0 = now_ns();
        pthread_mutex_lock(&hot_lock);
        unsigned long long took = now_ns() - t0;
        mine += took;
        if (took > longest) longest = took;
        count++;
        run_on_cpu(2000);
        pthread_mutex_unlock(&hot_lock);
        run_on_cpu(1000);
    }
    pthread_mutex_lock(&totals);
    locked_ns += mine;
    locks += count;
    if (longest > longest_lock_ns) longest_lock_ns = longest;
    pthread_mutex_unlock(&totals);
    return NULL;
}

int main(int argc, char **argv) {
    unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 3;
    setvbuf(stdout, NULL, _IOLBF, 0);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    pthread_barrier_init(&started, NULL, THREADS + 1);
    pthread_barrier_init(&go, NULL, THREADS + 1);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, hot_main, (void *)i);
    pthread_barrier_wait(&started);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < THREADS; i++) printf("tid.hot_%d=%d\n", i, (int)tids[i]);
    printf("lock.hot_lock=%p\n", (void *)&hot_lock);
    printf("ready\n");
    int sig;
    sigwait(&usr1, &sig);
    pthread_barrier_wait(&go);
    sleep(seconds);
    stop = 1;
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("locked_ns=%llu\n", locked_ns);
    printf("longest_lock_ns=%llu\n", longest_lock_ns);
    printf("locks=%llu\n", locks);
    printf("done\n");
    for (;;) pause();
}
