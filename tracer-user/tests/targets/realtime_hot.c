/* Real-time contention target, like stress-ng's mutex stressor: threads at SCHED_FIFO
 * priority keep two CPUs busy, so a normal-priority tracer on those CPUs almost never
 * runs. On each of two CPUs (the first two this process may use; facts cpu.0, cpu.1) two
 * workers (rt_0..rt_3, priority 2) hammer rt_lock with a short critical section, and a
 * spinner (priority 1) takes the CPU whenever both workers sleep in the lock's futex, so
 * the CPU never idles. Threads start at normal priority, print their facts and `ready`,
 * wait argv[1] seconds (default 1: time for a tracer to attach), switch to SCHED_FIFO, wait
 * for each other, run until argv[2] seconds (default 3) after the switch was due, and stop
 * on their own clock. main sleeps at priority 3, so it
 * can join them and print `done`. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 4
#define SPINNER_PRIORITY 1
#define WORKER_PRIORITY 2
#define MAIN_PRIORITY 3

pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;

static volatile pid_t tids[WORKERS];
static pthread_barrier_t started;
/* Passed once every thread runs SCHED_FIFO: a thread still at normal priority when others
 * start spinning would be starved before it could switch. */
static pthread_barrier_t all_realtime;
static double begin, end;
static int cpus[2];
static volatile unsigned long shared_counter;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail(const char *what, int err) {
    fprintf(stderr, "realtime_hot: %s: %s\n", what, strerror(err));
    exit(2);
}

static void pin_and_become_realtime(int cpu, int priority) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (err != 0) fail("pin", err);
    struct sched_param param = {.sched_priority = priority};
    err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param);
    if (err != 0) fail("SCHED_FIFO", err);
}

__attribute__((noinline)) void *rt_worker_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "rt_%ld", id);
    pthread_setname_np(pthread_self(), name);
    tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&started);
    while (now_s() < begin) usleep(10000);
    pin_and_become_realtime(cpus[id % 2], WORKER_PRIORITY);
    pthread_barrier_wait(&all_realtime);
    unsigned long iter = 0;
    while ((iter++ & 255) != 0 || now_s() < end) {
        pthread_mutex_lock(&rt_lock);
        for (volatile int i = 0; i < 2000; i++) {
        }
        shared_counter++;
        pthread_mutex_unlock(&rt_lock);
    }
    return NULL;
}

void *spinner_main(void *arg) {
    long cpu_index = (long)arg;
    pthread_setname_np(pthread_self(), "rt_spinner");
    pthread_barrier_wait(&started);
    while (now_s() < begin) usleep(10000);
    pin_and_become_realtime(cpus[cpu_index], SPINNER_PRIORITY);
    pthread_barrier_wait(&all_realtime);
    while (now_s() < end) {
    }
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    double start_after = argc > 1 ? atof(argv[1]) : 1.0;
    double run_for = argc > 2 ? atof(argv[2]) : 3.0;
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) fail("sched_getaffinity", 0);
    int found = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && found < 2; cpu++)
        if (CPU_ISSET(cpu, &allowed)) cpus[found++] = cpu;
    if (found < 2) {
        fprintf(stderr, "realtime_hot: needs two CPUs\n");
        return 2;
    }
    begin = now_s() + start_after;
    end = begin + run_for;
    pthread_barrier_init(&started, NULL, WORKERS + 2 + 1);
    pthread_barrier_init(&all_realtime, NULL, WORKERS + 2);
    pthread_t t[WORKERS + 2];
    for (long i = 0; i < WORKERS; i++) pthread_create(&t[i], NULL, rt_worker_main, (void *)i);
    for (long i = 0; i < 2; i++) pthread_create(&t[WORKERS + i], NULL, spinner_main, (void *)i);
    pthread_barrier_wait(&started);
    struct sched_param param = {.sched_priority = MAIN_PRIORITY};
    int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &param);
    if (err != 0) fail("SCHED_FIFO", err);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < WORKERS; i++) printf("tid.rt_%d=%d\n", i, (int)tids[i]);
    printf("lock.rt_lock=%p\n", (void *)&rt_lock);
    printf("cpu.0=%d\ncpu.1=%d\n", cpus[0], cpus[1]);
    printf("max_priority=%d\n", MAIN_PRIORITY);
    /* Once the switch is due: the workers, the spinners and main. */
    printf("realtime_threads=%d\n", WORKERS + 2 + 1);
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < WORKERS + 2; i++) pthread_join(t[i], NULL);
    printf("iterations=%lu\n", shared_counter);
    printf("done\n");
    fflush(stdout);
    return 0;
}
