/* Filter target (`--lock`, `--type`, `--min-wait`): three contended locks of two kinds and
 * two speeds.
 *
 * - fast_lock (mutex): fast_0 and fast_1 take it in a loop with a ~1 us critical section:
 *   many short waits.
 * - slow_lock (mutex): slow_0 and slow_1 take it in turn and hold it HOLD_MS: long waits.
 * - slow_rw (rwlock): rw_writer write-locks it for HOLD_MS at a time; rw_reader read-locks
 *   it in between: long waits.
 *
 * Each thread times its own acquisitions that could not be taken at once (a failed
 * trylock, then the blocking call), so the program knows how many contended acquisitions
 * each lock had and the longest wait. Runs for argv[1] seconds (default 5) from the start,
 * then prints, per lock, `contended.NAME=N` and `max_wait_ns.NAME=N`, then `done`.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HOLD_MS 400

pthread_mutex_t fast_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t slow_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_rwlock_t slow_rw = PTHREAD_RWLOCK_INITIALIZER;

enum { FAST, SLOW, RW, LOCKS };
static const char *lock_names[LOCKS] = {"fast_lock", "slow_lock", "slow_rw"};
static volatile int stop;
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long contended[LOCKS];
static long long max_wait_ns[LOCKS];

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* A thread's own tallies, added to the totals when it ends. */
struct tally {
    unsigned long contended;
    long long max_wait_ns;
};

static void add_wait(struct tally *t, long long started) {
    long long waited = now_ns() - started;
    t->contended++;
    if (waited > t->max_wait_ns) t->max_wait_ns = waited;
}

static void publish(int lock, const struct tally *t) {
    pthread_mutex_lock(&stats_lock);
    contended[lock] += t->contended;
    if (t->max_wait_ns > max_wait_ns[lock]) max_wait_ns[lock] = t->max_wait_ns;
    pthread_mutex_unlock(&stats_lock);
}

static void name_self(const char *name) { pthread_setname_np(pthread_self(), name); }

static void spin_work(void) {
    for (volatile int i = 0; i < 600; i++) {
    }
}

__attribute__((noinline)) void *fast_main(void *arg) {
    name_self(arg);
    struct tally t = {0, 0};
    while (!stop) {
        if (pthread_mutex_trylock(&fast_lock) != 0) {
            long long started = now_ns();
            pthread_mutex_lock(&fast_lock);
            add_wait(&t, started);
        }
        spin_work();
        pthread_mutex_unlock(&fast_lock);
    }
    publish(FAST, &t);
    return NULL;
}

__attribute__((noinline)) void *slow_main(void *arg) {
    name_self(arg);
    struct tally t = {0, 0};
    while (!stop) {
        if (pthread_mutex_trylock(&slow_lock) != 0) {
            long long started = now_ns();
            pthread_mutex_lock(&slow_lock);
            add_wait(&t, started);
        }
        sleep_ms(HOLD_MS);
        pthread_mutex_unlock(&slow_lock);
        sleep_ms(1);
    }
    publish(SLOW, &t);
    return NULL;
}

__attribute__((noinline)) void *rw_writer_main(void *arg) {
    name_self(arg);
    struct tally t = {0, 0};
    while (!stop) {
        if (pthread_rwlock_trywrlock(&slow_rw) != 0) {
            long long started = now_ns();
            pthread_rwlock_wrlock(&slow_rw);
            add_wait(&t, started);
        }
        sleep_ms(HOLD_MS);
        pthread_rwlock_unlock(&slow_rw);
        sleep_ms(1);
    }
    publish(RW, &t);
    return NULL;
}

__attribute__((noinline)) void *rw_reader_main(void *arg) {
    name_self(arg);
    struct tally t = {0, 0};
    while (!stop) {
        if (pthread_rwlock_tryrdlock(&slow_rw) != 0) {
            long long started = now_ns();
            pthread_rwlock_rdlock(&slow_rw);
            add_wait(&t, started);
        }
        pthread_rwlock_unlock(&slow_rw);
        sleep_ms(2);
    }
    publish(RW, &t);
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    long long t0 = now_ns();
    struct {
        void *(*main)(void *);
        const char *name;
    } threads[] = {
        {fast_main, "fast_0"},       {fast_main, "fast_1"},         {slow_main, "slow_0"},
        {slow_main, "slow_1"},       {rw_writer_main, "rw_writer"}, {rw_reader_main, "rw_reader"},
    };
    enum { THREADS = sizeof threads / sizeof threads[0] };
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, threads[i].main, (void *)threads[i].name);
    printf("pid=%d\n", (int)getpid());
    printf("lock.fast_lock=%p\n", (void *)&fast_lock);
    printf("lock.slow_lock=%p\n", (void *)&slow_lock);
    printf("lock.slow_rw=%p\n", (void *)&slow_rw);
    printf("ready\n");
    fflush(stdout);
    while ((double)(now_ns() - t0) / 1e9 < seconds) sleep_ms(10);
    stop = 1;
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < LOCKS; i++) {
        printf("contended.%s=%lu\n", lock_names[i], contended[i]);
        printf("max_wait_ns.%s=%lld\n", lock_names[i], max_wait_ns[i]);
    }
    printf("done\n");
    fflush(stdout);
    return 0;
}
