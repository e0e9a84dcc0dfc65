// switchbench: two threads on one CPU hand a byte back and forth over two pipes, so that
// every round trip is two context switches, and nothing else: the cost of whatever runs
// at each `sched_switch` of the host shows up whole in its rate. Part (k) of
// `cargo xtask bench` (what each target `tracer serve` traces costs every other process).
//
// usage: switchbench [--seconds S (2)] [--cpu N (the last one)]
// prints: ready pid=PID
//         round_trips=N seconds=S rate=R   (R: round trips per second)
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int ping[2], pong[2];
static volatile int stop;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        perror("switchbench: sched_setaffinity");
        exit(1);
    }
}

static int cpu;

static void *echo(void *arg) {
    (void)arg;
    pin(cpu);
    char byte;
    while (read(ping[0], &byte, 1) == 1) {
        if (write(pong[1], &byte, 1) != 1) break;
    }
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = 2.0;
    cpu = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--cpu") == 0) cpu = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "switchbench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (pipe(ping) != 0 || pipe(pong) != 0) {
        perror("switchbench: pipe");
        return 1;
    }
    pin(cpu);
    pthread_t t;
    if (pthread_create(&t, NULL, echo, NULL) != 0) {
        fprintf(stderr, "switchbench: pthread_create failed\n");
        return 1;
    }
    printf("ready pid=%d\n", (int)getpid());
    fflush(stdout);
    char byte = 'x';
    long trips = 0;
    double start = now_s(), elapsed = 0;
    while (elapsed < seconds) {
        // Check the clock every 1000 round trips: the work is the switches.
        for (int i = 0; i < 1000; i++) {
            if (write(ping[1], &byte, 1) != 1 || read(pong[0], &byte, 1) != 1) {
                perror("switchbench: pipe i/o");
                return 1;
            }
        }
        trips += 1000;
        elapsed = now_s() - start;
    }
    printf("round_trips=%ld seconds=%.6f rate=%.1f\n", trips, elapsed, trips / elapsed);
    fflush(stdout);
    close(ping[1]);
    pthread_join(t, NULL);
    return 0;
}
