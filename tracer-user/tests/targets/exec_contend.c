/* A program that contends a named lock, then executes another program (issue 16: names
 * were lost after an exec).
 *
 * Usage: exec_contend WAIT_MS PROGRAM [ARGS...]
 *   Prints its facts and `ready`, sleeps WAIT_MS (for a tracer to attach), then four
 *   threads contend `first_lock` for 400 ms (each holds it 2 ms at a time, so the others
 *   sleep in futex waits), then it prints `exec` and executes PROGRAM with ARGS (the
 *   `abba` target in the tests, which prints its own facts and deadlocks).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

pthread_mutex_t first_lock = PTHREAD_MUTEX_INITIALIZER;

static volatile int stop;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

__attribute__((noinline)) void *contender_main(void *arg) {
    (void)arg;
    while (!stop) {
        pthread_mutex_lock(&first_lock);
        sleep_ms(2);
        pthread_mutex_unlock(&first_lock);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: exec_contend WAIT_MS PROGRAM [ARGS...]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("pid=%d\n", (int)getpid());
    printf("lock.first_lock=%p\n", (void *)&first_lock);
    printf("ready\n");
    sleep_ms(strtol(argv[1], NULL, 10));
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) pthread_create(&threads[i], NULL, contender_main, NULL);
    sleep_ms(400);
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
    printf("exec\n");
    fflush(stdout);
    execv(argv[2], argv + 2);
    perror("execv");
    return 1;
}
