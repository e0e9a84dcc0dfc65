/* C heap locks named by struct type and field (issue 18, point 2): `store.mu`,
 * `cache.mu`, `tally.inner.mu`, `account.rw`, from the program's DWARF.
 *
 * Thread order_sc takes a heap `struct store`'s mutex, then a heap `struct cache`'s
 * (store_then_cache); thread order_cs takes them in the opposite order
 * (cache_then_store). They take turns (order_common.h): both orders are taken, ROUNDS
 * times each, never at the same time, so nothing deadlocks but the two orders are a
 * potential deadlock. Then both threads contend for a heap `struct tally`'s nested mutex
 * (`tally.inner.mu`, held 2 ms at a time, COUNTS times each).
 *
 * lock_in_order (two stores' mutexes, chosen by `?:`), read_account (a rwlock in a
 * struct), lock_bare (a bare `pthread_mutex_t *`) and
 * lock_global (a global mutex) run once before `ready`: they are there for the table
 * of names read from the binary (`c_names` test), which names the first two and
 * neither of the others.
 *
 * Usage: order_heap_classes [ROUNDS [COUNTS]]   (defaults 5, 50)
 * Prints pid, tid.order_sc, tid.order_cs, lock.store, lock.cache, lock.tally (the
 * mutexes' addresses), `ready`; on SIGUSR1 runs the rounds, prints `ordered`, runs the
 * contention, prints `done`, idles until killed.
 */
#include "order_common.h"

struct store {
    long items;
    pthread_mutex_t mu;
};

struct cache {
    long hits;
    int size;
    pthread_mutex_t mu;
};

struct tally {
    long n;
    struct {
        int spins;
        pthread_mutex_t mu;
    } inner;
};

struct account {
    long id;
    pthread_rwlock_t rw;
};

pthread_mutex_t global_mu = PTHREAD_MUTEX_INITIALIZER;

static struct store *the_store;
static struct cache *the_cache;
static struct tally *the_tally;
static int rounds;
static int counts;

/* noinline and not static: each call keeps its own frame and symbol, so the tests can
 * find the functions the names were read at. */
__attribute__((noinline)) void store_then_cache(struct store *s, struct cache *c) {
    pthread_mutex_lock(&s->mu);
    pthread_mutex_lock(&c->mu);
    s->items++;
    c->hits++;
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_unlock(&s->mu);
}

__attribute__((noinline)) void cache_then_store(struct cache *c, struct store *s) {
    pthread_mutex_lock(&c->mu);
    pthread_mutex_lock(&s->mu);
    c->hits--;
    s->items--;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&c->mu);
}

__attribute__((noinline)) void count(struct tally *t) {
    pthread_mutex_lock(&t->inner.mu);
    t->n++;
    usleep(2000);
    pthread_mutex_unlock(&t->inner.mu);
}

/* Two stores, fewer items first: the two lock calls' arguments join from both arms of
 * a `?:` (order_accounts' transfer has the same shape). */
__attribute__((noinline)) void lock_in_order(struct store *a, struct store *b) {
    struct store *first = a->items <= b->items ? a : b;
    struct store *second = a->items <= b->items ? b : a;
    pthread_mutex_lock(&first->mu);
    pthread_mutex_lock(&second->mu);
    first->items++;
    pthread_mutex_unlock(&second->mu);
    pthread_mutex_unlock(&first->mu);
}

__attribute__((noinline)) long read_account(struct account *a) {
    pthread_rwlock_rdlock(&a->rw);
    long id = a->id;
    pthread_rwlock_unlock(&a->rw);
    return id;
}

__attribute__((noinline)) void lock_bare(pthread_mutex_t *m) {
    pthread_mutex_lock(m);
    pthread_mutex_unlock(m);
}

__attribute__((noinline)) void lock_global(void) {
    pthread_mutex_lock(&global_mu);
    pthread_mutex_unlock(&global_mu);
}

static void contend(void) {
    for (int i = 0; i < counts; i++) count(the_tally);
}

/* Takes `me`'s turns: the rounds with `step`, then one turn of contention. */
static void take_turns(int me, void (*step)(void)) {
    for (int r = 0; r < rounds; r++) {
        order_wait_turn(me);
        step();
        order_end_turn();
    }
    order_wait_turn(me);
    contend();
    order_end_turn();
}

static void sc_step(void) { store_then_cache(the_store, the_cache); }
static void cs_step(void) { cache_then_store(the_cache, the_store); }

__attribute__((noinline)) void *order_sc_main(void *arg) {
    int me = (int)(long)arg;
    order_worker_start(me, "order_sc");
    take_turns(me, sc_step);
    order_idle_forever();
    return NULL;
}

__attribute__((noinline)) void *order_cs_main(void *arg) {
    int me = (int)(long)arg;
    order_worker_start(me, "order_cs");
    take_turns(me, cs_step);
    order_idle_forever();
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    rounds = order_rounds(argc, argv, 5);
    counts = argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 50;
    the_store = calloc(1, sizeof *the_store);
    the_cache = calloc(1, sizeof *the_cache);
    the_tally = calloc(1, sizeof *the_tally);
    struct account *account = calloc(1, sizeof *account);
    if (!the_store || !the_cache || !the_tally || !account) return 1;
    pthread_mutex_init(&the_store->mu, NULL);
    pthread_mutex_init(&the_cache->mu, NULL);
    pthread_mutex_init(&the_tally->inner.mu, NULL);
    pthread_rwlock_init(&account->rw, NULL);
    account->id = read_account(account);
    struct store *other = calloc(1, sizeof *other);
    if (!other) return 1;
    pthread_mutex_init(&other->mu, NULL);
    lock_in_order(the_store, other);
    lock_bare(&the_store->mu);
    lock_global();
    order_block_start_signal();
    void *(*workers[])(void *) = {order_sc_main, order_cs_main};
    order_start_workers(2, workers);
    printf("pid=%d\n", (int)getpid());
    printf("tid.order_sc=%d\n", (int)order_tid[0]);
    printf("tid.order_cs=%d\n", (int)order_tid[1]);
    printf("lock.store=%p\n", (void *)&the_store->mu);
    printf("lock.cache=%p\n", (void *)&the_cache->mu);
    printf("lock.tally=%p\n", (void *)&the_tally->inner.mu);
    printf("ready\n");
    order_wait_for_start_signal();
    order_run_turns(2, rounds);
    printf("ordered\n");
    /* Both workers' contention turns at once. */
    sem_post(&order_turn[0]);
    sem_post(&order_turn[1]);
    for (int i = 0; i < 2; i++) {
        while (sem_wait(&order_turn_done) != 0) {
        }
    }
    printf("done\n");
    order_idle_forever();
}
