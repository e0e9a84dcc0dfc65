// The target of `cargo xtask demo`: a tiny "bank" whose two tellers deadlock.
//
// Each account is guarded by its own global mutex (globals, so the tracer can name them
// `alice_lock` / `bob_lock` from the symbol table). A transfer locks the source account,
// then the destination: the lock order follows the argument order, so a transfer
// alice -> bob and a concurrent transfer bob -> alice take the two locks in opposite
// orders (ABBA). The pause between the two locks makes the deadlock form on the first
// transfer, well within a second.
//
// Build: gcc -g -O0 -fno-omit-frame-pointer -pthread deadlock_demo.c -o deadlock_demo
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

pthread_mutex_t alice_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t bob_lock = PTHREAD_MUTEX_INITIALIZER;
long alice_balance = 100;
long bob_balance = 100;

struct account {
    const char *name;
    pthread_mutex_t *lock;
    long *balance;
};

static struct account alice = {"alice", &alice_lock, &alice_balance};
static struct account bob = {"bob", &bob_lock, &bob_balance};

struct teller {
    const char *thread_name;
    struct account *from;
    struct account *to;
    long amount;
};

// Both tellers start their first transfer together, so each holds its first lock before
// the other asks for it.
static pthread_barrier_t start;

static long gettid_long(void) { return (long)syscall(SYS_gettid); }

// noinline: keep `transfer` as its own frame in the stacks the tracer prints.
__attribute__((noinline)) static void transfer(struct account *from, struct account *to, long amount) {
    pthread_mutex_lock(from->lock);
    printf("  [tid %ld] locked %s_lock, now waiting for %s_lock\n", gettid_long(), from->name, to->name);
    usleep(200 * 1000);
    pthread_mutex_lock(to->lock);
    *from->balance -= amount;
    *to->balance += amount;
    pthread_mutex_unlock(to->lock);
    pthread_mutex_unlock(from->lock);
}

static void *teller_main(void *arg) {
    struct teller *t = arg;
    pthread_setname_np(pthread_self(), t->thread_name);
    printf("  [tid %ld] %s: transferring %ld from %s to %s\n", gettid_long(), t->thread_name, t->amount,
           t->from->name, t->to->name);
    pthread_barrier_wait(&start);
    // Loop so that, should the timing ever let one transfer through, the next one still
    // deadlocks.
    for (;;) {
        transfer(t->from, t->to, t->amount);
    }
    return NULL;
}

int main(void) {
    // Line-buffered even into a pipe, so the demo's narration interleaves with the tracer's.
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("deadlock_demo: pid %d: two tellers transfer between alice and bob in opposite directions\n",
           (int)getpid());

    static struct teller a_to_b = {"teller-a2b", &alice, &bob, 10};
    static struct teller b_to_a = {"teller-b2a", &bob, &alice, 20};
    pthread_t threads[2];
    pthread_barrier_init(&start, NULL, 2);
    if (pthread_create(&threads[0], NULL, teller_main, &a_to_b) != 0 ||
        pthread_create(&threads[1], NULL, teller_main, &b_to_a) != 0) {
        perror("pthread_create");
        return 1;
    }
    // Never returns once the tellers deadlock; `cargo xtask demo` kills the process.
    pthread_join(threads[0], NULL);
    pthread_join(threads[1], NULL);
    return 0;
}
