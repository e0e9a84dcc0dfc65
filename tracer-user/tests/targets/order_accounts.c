/* Many instances of one lock class, always taken in a consistent order (issue 18): no
 * lock-order inversion, and a bounded lock-order graph.
 *
 * ACCOUNTS (default 10000) `struct account`s on the heap, each with its own mutex. Four
 * threads (bank_1..4) run transfers at the same time: each transfer locks the two
 * accounts' mutexes lower index first (so lower address first: ordered by address by
 * design), moves money, unlocks. Every thread makes PASSES (default 2) passes over all
 * accounts, pairing account i with a pseudo-random other one, so every mutex is nested
 * with many others, in both roles. Nothing ever deadlocks.
 *
 * Usage: order_accounts [ACCOUNTS [PASSES]]
 * Prints pid, tid.bank_1..4, accounts=N, account_size=sizeof(struct account),
 * first_account=&accounts[0].m (the mutex is the first field), `ready`; on SIGUSR1 runs
 * the transfers, then prints `transfers=N`, `balance_ok=1` (money was conserved) and
 * `done`, and idles until killed.
 */
#include "order_common.h"

#define BANKERS 4

struct account {
    pthread_mutex_t m;
    long balance;
    long id;
};

static struct account *accounts;
static long n_accounts;
static int passes;
static long transfers_done[BANKERS];

__attribute__((noinline)) void transfer(struct account *from, struct account *to, long amount) {
    struct account *first = from->id < to->id ? from : to;
    struct account *second = from->id < to->id ? to : from;
    pthread_mutex_lock(&first->m);
    pthread_mutex_lock(&second->m);
    from->balance -= amount;
    to->balance += amount;
    pthread_mutex_unlock(&second->m);
    pthread_mutex_unlock(&first->m);
}

static const char *const names[] = {"bank_1", "bank_2", "bank_3", "bank_4"};

__attribute__((noinline)) void *bank_main(void *arg) {
    int me = (int)(long)arg;
    order_worker_start(me, names[me]);
    order_wait_turn(me); /* one turn: all bankers start together */
    unsigned long seed = 0x9e3779b97f4a7c15UL * (unsigned long)(me + 1);
    for (int p = 0; p < passes; p++) {
        for (long i = 0; i < n_accounts; i++) {
            seed = seed * 6364136223846793005UL + 1442695040888963407UL;
            long other = (long)((seed >> 33) % (unsigned long)(n_accounts - 1));
            if (other >= i) other++; /* never i itself */
            transfer(&accounts[i], &accounts[other], (long)(seed & 7) + 1);
            transfers_done[me]++;
        }
    }
    order_end_turn();
    order_idle_forever();
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    n_accounts = argc > 1 ? atol(argv[1]) : 10000;
    passes = argc > 2 ? atoi(argv[2]) : 2;
    if (n_accounts < 2 || passes < 1) {
        fprintf(stderr, "usage: order_accounts [ACCOUNTS>=2 [PASSES>=1]]\n");
        return 2;
    }
    accounts = calloc((size_t)n_accounts, sizeof *accounts);
    if (!accounts) return 1;
    for (long i = 0; i < n_accounts; i++) {
        pthread_mutex_init(&accounts[i].m, NULL);
        accounts[i].balance = 100;
        accounts[i].id = i;
    }
    order_block_start_signal();
    void *(*workers[])(void *) = {bank_main, bank_main, bank_main, bank_main};
    order_start_workers(BANKERS, workers);
    printf("pid=%d\n", (int)getpid());
    for (int i = 0; i < BANKERS; i++) printf("tid.%s=%d\n", names[i], (int)order_tid[i]);
    printf("accounts=%ld\n", n_accounts);
    printf("account_size=%zu\n", sizeof(struct account));
    printf("first_account=%p\n", (void *)&accounts[0].m);
    printf("ready\n");
    order_wait_for_start_signal();
    for (int i = 0; i < BANKERS; i++) sem_post(&order_turn[i]);
    long transfers = 0;
    for (int i = 0; i < BANKERS; i++) {
        while (sem_wait(&order_turn_done) != 0) {
        }
    }
    for (int i = 0; i < BANKERS; i++) transfers += transfers_done[i];
    long total = 0;
    for (long i = 0; i < n_accounts; i++) total += accounts[i].balance;
    printf("transfers=%ld\n", transfers);
    printf("balance_ok=%d\n", total == 100 * n_accounts);
    printf("done\n");
    order_idle_forever();
}
