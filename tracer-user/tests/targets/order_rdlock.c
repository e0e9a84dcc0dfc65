/* Two rwlocks read-locked in opposite orders (issue 18): no lock-order inversion.
 *
 * Thread rd_ab read-locks rw_a, then rw_b; thread rd_ba read-locks rw_b, then rw_a.
 * Readers never block readers (and nothing here ever write-locks), so the opposite orders
 * cannot deadlock. They take turns (order_common.h), ROUNDS times.
 *
 * Usage: order_rdlock [ROUNDS]   (default 5)
 * Prints pid, tid.rd_ab, tid.rd_ba, lock.rw_a, lock.rw_b, `ready`; on SIGUSR1 runs the
 * rounds, prints `done`, idles until killed.
 */
#include "order_common.h"

pthread_rwlock_t rw_a = PTHREAD_RWLOCK_INITIALIZER;
pthread_rwlock_t rw_b = PTHREAD_RWLOCK_INITIALIZER;

static int rounds;
static volatile long counter;

__attribute__((noinline)) void read_both(pthread_rwlock_t *first, pthread_rwlock_t *second) {
    pthread_rwlock_rdlock(first);
    pthread_rwlock_rdlock(second);
    counter++;
    pthread_rwlock_unlock(second);
    pthread_rwlock_unlock(first);
}

__attribute__((noinline)) void *rd_main(void *arg) {
    int me = (int)(long)arg;
    order_worker_start(me, me == 0 ? "rd_ab" : "rd_ba");
    for (int r = 0; r < rounds; r++) {
        order_wait_turn(me);
        if (me == 0)
            read_both(&rw_a, &rw_b);
        else
            read_both(&rw_b, &rw_a);
        order_end_turn();
    }
    order_idle_forever();
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    rounds = order_rounds(argc, argv, 5);
    order_block_start_signal();
    void *(*workers[])(void *) = {rd_main, rd_main};
    order_start_workers(2, workers);
    printf("pid=%d\n", (int)getpid());
    printf("tid.rd_ab=%d\n", (int)order_tid[0]);
    printf("tid.rd_ba=%d\n", (int)order_tid[1]);
    printf("lock.rw_a=%p\n", (void *)&rw_a);
    printf("lock.rw_b=%p\n", (void *)&rw_b);
    printf("ready\n");
    order_wait_for_start_signal();
    order_run_turns(2, rounds);
    printf("done\n");
    order_idle_forever();
}
