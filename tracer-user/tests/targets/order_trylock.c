/* Opposite orders where one of them is a trylock (issue 18): no lock-order inversion.
 *
 * Thread try_ab takes lock_a, then lock_b. Thread try_ba holds lock_b and *trylocks*
 * lock_a: that can fail but never blocks, so the two orders cannot deadlock. They take
 * turns (order_common.h), ROUNDS times, so every trylock succeeds (and the tracer sees
 * try_ba hold both).
 *
 * Usage: order_trylock [ROUNDS]   (default 5)
 * Prints pid, tid.try_ab, tid.try_ba, lock.lock_a, lock.lock_b, `ready`; on SIGUSR1 runs
 * the rounds, then prints `trylocks_taken=N` (trylocks that succeeded) and `done`, and
 * idles until killed.
 */
#include "order_common.h"

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;

static int rounds;
static volatile long counter;
static int trylocks_taken;

__attribute__((noinline)) void ab_path(void) {
    pthread_mutex_lock(&lock_a);
    pthread_mutex_lock(&lock_b);
    counter++;
    pthread_mutex_unlock(&lock_b);
    pthread_mutex_unlock(&lock_a);
}

__attribute__((noinline)) void ba_try_path(void) {
    pthread_mutex_lock(&lock_b);
    if (pthread_mutex_trylock(&lock_a) == 0) {
        trylocks_taken++;
        counter--;
        pthread_mutex_unlock(&lock_a);
    }
    pthread_mutex_unlock(&lock_b);
}

__attribute__((noinline)) void *try_main(void *arg) {
    int me = (int)(long)arg;
    order_worker_start(me, me == 0 ? "try_ab" : "try_ba");
    for (int r = 0; r < rounds; r++) {
        order_wait_turn(me);
        if (me == 0)
            ab_path();
        else
            ba_try_path();
        order_end_turn();
    }
    order_idle_forever();
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    rounds = order_rounds(argc, argv, 5);
    order_block_start_signal();
    void *(*workers[])(void *) = {try_main, try_main};
    order_start_workers(2, workers);
    printf("pid=%d\n", (int)getpid());
    printf("tid.try_ab=%d\n", (int)order_tid[0]);
    printf("tid.try_ba=%d\n", (int)order_tid[1]);
    printf("lock.lock_a=%p\n", (void *)&lock_a);
    printf("lock.lock_b=%p\n", (void *)&lock_b);
    printf("ready\n");
    order_wait_for_start_signal();
    order_run_turns(2, rounds);
    /* Read after the last turn: the semaphores order it after the worker's writes. */
    printf("trylocks_taken=%d\n", trylocks_taken);
    printf("done\n");
    order_idle_forever();
}
