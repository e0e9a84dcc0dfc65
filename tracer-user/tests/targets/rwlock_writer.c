/* Reader/writer lock target: thread "writer" takes rw_lock (a global pthread_rwlock_t)
 * for writing and keeps it forever; then 3 threads reader_0..reader_2 call rdlock and
 * block. `ready` is printed once the readers have been started and have had ~200 ms to
 * block. The process then hangs forever. No deadlock: the writer just sleeps.
 *
 * Usage: rwlock_writer [DELAY_MS]
 *   DELAY_MS (default 0): the readers sleep this long after being started (i.e. after
 *   `ready`, if DELAY_MS > 200) before calling rdlock, so that a test can attach the tracer
 *   before they block. */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define READERS 3

pthread_rwlock_t rw_lock = PTHREAD_RWLOCK_INITIALIZER;

static sem_t writer_holds;
static volatile pid_t writer_tid, reader_tids[READERS];
static pthread_barrier_t readers_started;
static long delay_ms;

__attribute__((noinline)) void *writer_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "writer");
    writer_tid = (pid_t)syscall(SYS_gettid);
    pthread_rwlock_wrlock(&rw_lock);
    sem_post(&writer_holds);
    for (;;) pause(); /* hold the write lock forever */
    return NULL;
}

__attribute__((noinline)) void *reader_main(void *arg) {
    long id = (long)arg;
    char name[16];
    snprintf(name, sizeof name, "reader_%ld", id);
    pthread_setname_np(pthread_self(), name);
    reader_tids[id] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&readers_started);
    if (delay_ms > 0) usleep((useconds_t)(delay_ms * 1000));
    pthread_rwlock_rdlock(&rw_lock); /* blocks forever */
    pthread_rwlock_unlock(&rw_lock);
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) delay_ms = strtol(argv[1], NULL, 10);
    sem_init(&writer_holds, 0, 0);
    pthread_barrier_init(&readers_started, NULL, READERS + 1);
    pthread_t w, r[READERS];
    pthread_create(&w, NULL, writer_main, NULL);
    while (sem_wait(&writer_holds) != 0) {
    }
    for (long i = 0; i < READERS; i++) pthread_create(&r[i], NULL, reader_main, (void *)i);
    pthread_barrier_wait(&readers_started);
    usleep(200000); /* let the readers block (unless delayed) */
    printf("pid=%d\n", (int)getpid());
    printf("tid.writer=%d\n", (int)writer_tid);
    for (int i = 0; i < READERS; i++) printf("tid.reader_%d=%d\n", i, (int)reader_tids[i]);
    printf("lock.rw_lock=%p\n", (void *)&rw_lock);
    printf("size.rwlock=%zu\n", sizeof(pthread_rwlock_t));
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
