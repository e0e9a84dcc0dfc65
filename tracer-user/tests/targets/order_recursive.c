/* A recursive mutex re-entered by its owner (issue 18): no lock-order inversion.
 *
 * Threads rec_1 and rec_2 both take `rec` (PTHREAD_MUTEX_RECURSIVE), then `inner`, then
 * re-enter `rec` while holding both: rec → inner → rec. Seen naively that is an edge
 * inner → rec against rec → inner, but re-entering a recursive mutex one already owns
 * never blocks: there is no deadlock to predict. They take turns, ROUNDS times.
 *
 * Usage: order_recursive [ROUNDS]   (default 5)
 * Prints pid, tid.rec_1, tid.rec_2, lock.rec, lock.inner, `ready`; on SIGUSR1 runs the
 * rounds, prints `done`, idles until killed.
 */
#include "order_common.h"

pthread_mutex_t rec = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
pthread_mutex_t inner = PTHREAD_MUTEX_INITIALIZER;

static int rounds;
static volatile long counter;

__attribute__((noinline)) void reenter_rec(void) {
    pthread_mutex_lock(&rec); /* already ours: returns at once */
    counter++;
    pthread_mutex_unlock(&rec);
}

__attribute__((noinline)) void take_inner(void) {
    pthread_mutex_lock(&inner);
    reenter_rec();
    pthread_mutex_unlock(&inner);
}

__attribute__((noinline)) void take_rec(void) {
    pthread_mutex_lock(&rec);
    take_inner();
    pthread_mutex_unlock(&rec);
}

static const char *const names[] = {"rec_1", "rec_2"};

__attribute__((noinline)) void *rec_main(void *arg) {
    int me = (int)(long)arg;
    order_worker_start(me, names[me]);
    for (int r = 0; r < rounds; r++) {
        order_wait_turn(me);
        take_rec();
        order_end_turn();
    }
    order_idle_forever();
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    rounds = order_rounds(argc, argv, 5);
    order_block_start_signal();
    void *(*workers[])(void *) = {rec_main, rec_main};
    order_start_workers(2, workers);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < 2; i++) printf("tid.%s=%d\n", names[i], (int)order_tid[i]);
    printf("lock.rec=%p\n", (void *)&rec);
    printf("lock.inner=%p\n", (void *)&inner);
    printf("ready\n");
    order_wait_for_start_signal();
    order_run_turns(2, rounds);
    printf("done\n");
    order_idle_forever();
}
