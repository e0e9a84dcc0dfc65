/* Three-thread deadlock cycle target: thread ti holds li, then takes l((i+1)%3).
 * Threads are named t0, t1, t2. Facts are printed once every first lock is held; the
 * process then hangs forever. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

pthread_mutex_t l0 = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t l1 = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t l2 = PTHREAD_MUTEX_INITIALIZER;

static pthread_mutex_t *const locks[3] = {&l0, &l1, &l2};
static pthread_barrier_t first_locks_held;
static volatile pid_t tids[3];

__attribute__((noinline)) void *cycle_worker_main(void *arg) {
    long i = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "t%ld", i);
    pthread_setname_np(pthread_self(), name);
    tids[i] = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(locks[i]);
    pthread_barrier_wait(&first_locks_held);
    pthread_mutex_lock(locks[(i + 1) % 3]); /* never returns */
    pthread_mutex_unlock(locks[(i + 1) % 3]);
    pthread_mutex_unlock(locks[i]);
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_barrier_init(&first_locks_held, NULL, 4);
    pthread_t t[3];
    for (long i = 0; i < 3; i++) pthread_create(&t[i], NULL, cycle_worker_main, (void *)i);
    pthread_barrier_wait(&first_locks_held);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < 3; i++) printf("tid.t%d=%d\n", i, (int)tids[i]);
    for (int i = 0; i < 3; i++) printf("lock.l%d=%p\n", i, (void *)locks[i]);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
