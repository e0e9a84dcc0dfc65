/* Consistent lock nesting on three threads (issue 18): no lock-order inversion.
 *
 * Threads nest_1 and nest_2 take lock_a, then lock_b, then lock_c (all three held at
 * once); nest_3 takes lock_a then lock_c, and lock_b then lock_c (skipping one level, but
 * never against the order a < b < c). They take turns (order_common.h), ROUNDS times.
 *
 * Usage: order_nested [ROUNDS]   (default 5)
 * Prints pid, tid.nest_1..3, lock.lock_a, lock.lock_b, lock.lock_c, `ready`; on SIGUSR1
 * runs the rounds, prints `done`, idles until killed.
 */
#include "order_common.h"

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_c = PTHREAD_MUTEX_INITIALIZER;

static int rounds;
static volatile long counter;

__attribute__((noinline)) void nest_c(void) {
    pthread_mutex_lock(&lock_c);
    counter++;
    pthread_mutex_unlock(&lock_c);
}

__attribute__((noinline)) void nest_b(void) {
    pthread_mutex_lock(&lock_b);
    nest_c();
    pthread_mutex_unlock(&lock_b);
}

__attribute__((noinline)) void nest_a(void) {
    pthread_mutex_lock(&lock_a);
    nest_b();
    pthread_mutex_unlock(&lock_a);
}

/* a → c, then b → c: shortcuts through the same order. */
__attribute__((noinline)) void skip_levels(void) {
    pthread_mutex_lock(&lock_a);
    nest_c();
    pthread_mutex_unlock(&lock_a);
    pthread_mutex_lock(&lock_b);
    nest_c();
    pthread_mutex_unlock(&lock_b);
}

static const char *const names[] = {"nest_1", "nest_2", "nest_3"};

__attribute__((noinline)) void *nest_main(void *arg) {
    int me = (int)(long)arg;
    order_worker_start(me, names[me]);
    for (int r = 0; r < rounds; r++) {
        order_wait_turn(me);
        if (me < 2)
            nest_a();
        else
            skip_levels();
        order_end_turn();
    }
    order_idle_forever();
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    rounds = order_rounds(argc, argv, 5);
    order_block_start_signal();
    void *(*workers[])(void *) = {nest_main, nest_main, nest_main};
    order_start_workers(3, workers);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < 3; i++) printf("tid.%s=%d\n", names[i], (int)order_tid[i]);
    printf("lock.lock_a=%p\n", (void *)&lock_a);
    printf("lock.lock_b=%p\n", (void *)&lock_b);
    printf("lock.lock_c=%p\n", (void *)&lock_c);
    printf("ready\n");
    order_wait_for_start_signal();
    order_run_turns(3, rounds);
    printf("done\n");
    order_idle_forever();
}
