/* Self-deadlock target: thread "self_locker" locks the non-recursive (PTHREAD_MUTEX_NORMAL)
 * mutex self_lock twice and waits in futex forever. Facts are printed once the first lock
 * is held; the process then hangs forever. */
#define _GNU_SOURCE
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

pthread_mutex_t self_lock;

static sem_t first_lock_held;
static volatile pid_t tid_locker;

__attribute__((noinline)) void *self_locker_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "self_locker");
    tid_locker = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(&self_lock);
    sem_post(&first_lock_held);
    pthread_mutex_lock(&self_lock); /* never returns */
    pthread_mutex_unlock(&self_lock);
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_NORMAL);
    pthread_mutex_init(&self_lock, &attr);
    pthread_mutexattr_destroy(&attr);
    sem_init(&first_lock_held, 0, 0);
    pthread_t t;
    pthread_create(&t, NULL, self_locker_main, NULL);
    while (sem_wait(&first_lock_held) != 0) {
    }
    printf("pid=%d\n", (int)getpid());
    printf("tid.self_locker=%d\n", (int)tid_locker);
    printf("lock.self_lock=%p\n", (void *)&self_lock);
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
