/* Lock-order inversion target (issue 18): the deadlock that has not happened yet.
 *
 * Thread order_ab takes lock_a, then lock_b (ab_outer → ab_inner); thread order_ba takes
 * lock_b, then lock_a (ba_outer → ba_inner). They take turns (order_common.h), so both
 * orders are taken, ROUNDS times each, but never at the same time: the program never
 * deadlocks, yet the two orders are a potential deadlock.
 *
 * With -DGATED both threads take `gate` around their two locks: the two orders can then
 * never run at the same time whatever the scheduling, so the inversion is harmless.
 *
 * Usage: order_inversion [ROUNDS]   (default 5)
 * Prints pid, tid.order_ab, tid.order_ba, lock.lock_a, lock.lock_b (and lock.gate when
 * GATED), `ready`; on SIGUSR1 runs the rounds, prints `done`, idles until killed.
 */
#include "order_common.h"

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;

static int rounds;
static volatile long counter;

#ifdef GATED
#define ENTER_GATE() pthread_mutex_lock(&gate)
#define LEAVE_GATE() pthread_mutex_unlock(&gate)
#else
#define ENTER_GATE() ((void)0)
#define LEAVE_GATE() ((void)0)
#endif

/* noinline and not static: each lock is taken in a frame of its own, with a name that
 * survives in the symbol table, so the tests can look for it in the stacks. */
__attribute__((noinline)) void ab_inner(void) {
    pthread_mutex_lock(&lock_b);
    counter++;
    pthread_mutex_unlock(&lock_b);
}

__attribute__((noinline)) void ab_outer(void) {
    pthread_mutex_lock(&lock_a);
    ab_inner();
    pthread_mutex_unlock(&lock_a);
}

__attribute__((noinline)) void ba_inner(void) {
    pthread_mutex_lock(&lock_a);
    counter--;
    pthread_mutex_unlock(&lock_a);
}

__attribute__((noinline)) void ba_outer(void) {
    pthread_mutex_lock(&lock_b);
    ba_inner();
    pthread_mutex_unlock(&lock_b);
}

__attribute__((noinline)) void *order_ab_main(void *arg) {
    int me = (int)(long)arg;
    order_worker_start(me, "order_ab");
    for (int r = 0; r < rounds; r++) {
        order_wait_turn(me);
        ENTER_GATE();
        ab_outer();
        LEAVE_GATE();
        order_end_turn();
    }
    order_idle_forever();
    return NULL;
}

__attribute__((noinline)) void *order_ba_main(void *arg) {
    int me = (int)(long)arg;
    order_worker_start(me, "order_ba");
    for (int r = 0; r < rounds; r++) {
        order_wait_turn(me);
        ENTER_GATE();
        ba_outer();
        LEAVE_GATE();
        order_end_turn();
    }
    order_idle_forever();
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    rounds = order_rounds(argc, argv, 5);
    order_block_start_signal();
    void *(*workers[])(void *) = {order_ab_main, order_ba_main};
    order_start_workers(2, workers);
    printf("pid=%d\n", (int)getpid());
    printf("tid.order_ab=%d\n", (int)order_tid[0]);
    printf("tid.order_ba=%d\n", (int)order_tid[1]);
    printf("lock.lock_a=%p\n", (void *)&lock_a);
    printf("lock.lock_b=%p\n", (void *)&lock_b);
#ifdef GATED
    printf("lock.gate=%p\n", (void *)&gate);
#endif
    printf("ready\n");
    order_wait_for_start_signal();
    order_run_turns(2, rounds);
    printf("done\n");
    order_idle_forever();
}
