/* ABBA deadlock target for the tests on stripped programs (tests/integration/stripped.rs).
 *
 * Like abba.c, but one lock is exported and one is not: built with -rdynamic,
 * `exported_lock` and the non-static functions are in .dynsym, so a stripped copy still
 * names them; `hidden_lock` and `take_second` are static, named only by .symtab or a
 * separate debug file. worker_a takes exported_lock then hidden_lock; worker_b the
 * other way round; a barrier after the first lock makes the deadlock certain. Facts are
 * printed once both first locks are held; the process then hangs forever.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

pthread_mutex_t exported_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t hidden_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_barrier_t first_locks_held;
static volatile pid_t tid_a, tid_b;

/* noinline: keep a real frame, known only to .symtab or DWARF, between the thread
 * function and pthread_mutex_lock. */
__attribute__((noinline)) static void take_second(pthread_mutex_t *mutex) {
    pthread_mutex_lock(mutex);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void *worker_a_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "worker_a");
    tid_a = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(&exported_lock);
    pthread_barrier_wait(&first_locks_held);
    take_second(&hidden_lock); /* never returns */
    pthread_mutex_unlock(&hidden_lock);
    pthread_mutex_unlock(&exported_lock);
    return NULL;
}

__attribute__((noinline)) void *worker_b_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "worker_b");
    tid_b = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(&hidden_lock);
    pthread_barrier_wait(&first_locks_held);
    take_second(&exported_lock); /* never returns */
    pthread_mutex_unlock(&exported_lock);
    pthread_mutex_unlock(&hidden_lock);
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_barrier_init(&first_locks_held, NULL, 3);
    pthread_t a, b;
    pthread_create(&a, NULL, worker_a_main, NULL);
    pthread_create(&b, NULL, worker_b_main, NULL);
    pthread_barrier_wait(&first_locks_held);
    printf("pid=%d\n", (int)getpid());
    printf("tid.worker_a=%d\n", (int)tid_a);
    printf("tid.worker_b=%d\n", (int)tid_b);
    printf("lock.exported_lock=%p\n", (void *)&exported_lock);
    printf("lock.hidden_lock=%p\n", (void *)&hidden_lock);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
