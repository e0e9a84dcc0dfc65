// nested: nested lock acquisitions for `cargo xtask bench`, part (j): the cost of the
// lock-order graph (issue 18), which sees every traced acquisition made while another
// lock is held.
//
// Threads loop over:
//   - with --outer (the default): three static mutexes taken nested in one consistent
//     order, config_lock -> stats_lock -> (every other iteration) journal_lock, a spin of
//     --cs-us inside, released in reverse; each is a named class of its own;
//   - always: two distinct objects of a heap array of --objects `struct account` (each with
//     its own mutex: one class, many instances) picked at random per thread, locked
//     lower address first (the usual way to order instances of one class: no pair is
//     ever taken in both orders, so no inversion exists), a spin of --cs-us inside;
//   - a spin of --out-us outside every lock.
// The accounts are allocated one by one (malloc), as a program's objects are, so their
// addresses are scattered over the heap. Spins are timed by CLOCK_MONOTONIC (vDSO, no
// system call), as in lockbench.c.
//
// With --control (the only mode) it prints `ready pid=P objects=N` once every account
// exists, starts the threads, and for each line read from stdin prints
// `mark ops=N t_ns=T`: the pthread_mutex_lock calls made so far (all threads) and
// CLOCK_MONOTONIC. It runs until stdin closes.
//
// Usage: nested [--threads N] [--objects N] [--cs-us C] [--out-us O] [--no-outer] --control
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t journal_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t config_reads, stats_updates, journal_entries;

struct account {
    pthread_mutex_t mu;
    int64_t balance;
};

static struct account **accounts;
static uint32_t n_accounts;
static int outer = 1;
static atomic_int stop;
static uint64_t cs_ns, out_ns;

struct worker {
    pthread_t thread;
    uint64_t rng;
    // Stored (only its worker writes it) after every iteration, so a mark can read a
    // running total without stopping anyone.
    _Atomic uint64_t acquisitions;
    char pad[64]; // keep each worker's counter in its own cache line
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void spin_ns(uint64_t ns) {
    if (ns == 0) return;
    uint64_t end = now_ns() + ns;
    while (now_ns() < end) {
    }
}

// xorshift64*: a per-thread generator, so picking accounts takes no lock.
static uint64_t next_random(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

// Moves one unit between two accounts, locking the lower address first. Not inlined, so
// that its lock calls come from one function whatever the compiler does with the loop.
__attribute__((noinline)) static void transfer(struct account *from, struct account *to) {
    struct account *first = from < to ? from : to;
    struct account *second = from < to ? to : from;
    pthread_mutex_lock(&first->mu);
    pthread_mutex_lock(&second->mu);
    from->balance--;
    to->balance++;
    spin_ns(cs_ns);
    pthread_mutex_unlock(&second->mu);
    pthread_mutex_unlock(&first->mu);
}

static void *work(void *arg) {
    struct worker *w = arg;
    uint64_t acquisitions = 0;
    for (uint64_t i = 0; !atomic_load_explicit(&stop, memory_order_relaxed); i++) {
        if (outer) {
            pthread_mutex_lock(&config_lock);
            config_reads++;
            pthread_mutex_lock(&stats_lock);
            stats_updates++;
            acquisitions += 2;
            if (i & 1) {
                pthread_mutex_lock(&journal_lock);
                journal_entries++;
                acquisitions++;
                spin_ns(cs_ns);
                pthread_mutex_unlock(&journal_lock);
            } else {
                spin_ns(cs_ns);
            }
            pthread_mutex_unlock(&stats_lock);
            pthread_mutex_unlock(&config_lock);
        }
        uint32_t a = (uint32_t)(next_random(&w->rng) % n_accounts);
        uint32_t b = (uint32_t)(next_random(&w->rng) % (n_accounts - 1));
        if (b >= a) b++; // two distinct accounts
        transfer(accounts[a], accounts[b]);
        acquisitions += 2;
        spin_ns(out_ns);
        atomic_store_explicit(&w->acquisitions, acquisitions, memory_order_relaxed);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = 4, control = 0;
    long objects = 64;
    double cs_us = 0.2, out_us = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--control")) {
            control = 1;
        } else if (!strcmp(a, "--no-outer")) {
            outer = 0;
        } else if (v && !strcmp(a, "--threads")) {
            threads = atoi(v), i++;
        } else if (v && !strcmp(a, "--objects")) {
            objects = atol(v), i++;
        } else if (v && !strcmp(a, "--cs-us")) {
            cs_us = atof(v), i++;
        } else if (v && !strcmp(a, "--out-us")) {
            out_us = atof(v), i++;
        } else {
            fprintf(stderr, "nested: bad argument %s\n", a);
            return 2;
        }
    }
    if (!control || threads < 1 || threads > 1024 || objects < 2 || objects > 10000000 || cs_us < 0 ||
        out_us < 0) {
        fprintf(stderr, "nested: needs --control; bad --threads, --objects, --cs-us or --out-us\n");
        return 2;
    }
    cs_ns = (uint64_t)(cs_us * 1000.0);
    out_ns = (uint64_t)(out_us * 1000.0);
    n_accounts = (uint32_t)objects;
    accounts = calloc(n_accounts, sizeof *accounts);
    if (!accounts) return 1;
    for (uint32_t i = 0; i < n_accounts; i++) {
        accounts[i] = malloc(sizeof **accounts);
        if (!accounts[i]) return 1;
        pthread_mutex_init(&accounts[i]->mu, NULL);
        accounts[i]->balance = 0;
    }

    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    if (!workers) return 1;
    printf("ready pid=%d objects=%u\n", (int)getpid(), n_accounts);
    fflush(stdout);
    for (int i = 0; i < threads; i++) {
        workers[i].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        if (pthread_create(&workers[i].thread, NULL, work, &workers[i])) {
            fprintf(stderr, "nested: pthread_create failed\n");
            return 1;
        }
    }
    char cmd[64];
    while (fgets(cmd, sizeof cmd, stdin)) {
        uint64_t sum = 0;
        for (int i = 0; i < threads; i++) sum += atomic_load_explicit(&workers[i].acquisitions, memory_order_relaxed);
        printf("mark ops=%llu t_ns=%llu\n", (unsigned long long)sum, (unsigned long long)now_ns());
        fflush(stdout);
    }
    atomic_store(&stop, 1);
    int64_t total = 0;
    for (int i = 0; i < threads; i++) pthread_join(workers[i].thread, NULL);
    for (uint32_t i = 0; i < n_accounts; i++) total += accounts[i]->balance;
    if (total != 0) {
        fprintf(stderr, "nested: balances sum to %lld, not 0: a transfer ran unlocked\n", (long long)total);
        return 1;
    }
    printf("config_reads=%llu stats_updates=%llu journal_entries=%llu\n", (unsigned long long)config_reads,
           (unsigned long long)stats_updates, (unsigned long long)journal_entries);
    return 0;
}
