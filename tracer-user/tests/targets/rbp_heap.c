/* A lock wait whose frame-pointer chain leads into the heap (issue 16: `[heap]+0x58d50`
 * frames in stacks).
 *
 * Code built without frame pointers may keep anything in rbp. Here the waiting function
 * keeps, in rbp, the address of a stack slot pair {next = NULL, "return address" = a heap
 * pointer}: the kernel's frame-pointer walk from the futex wait takes that heap pointer
 * for a return address. The waiter (thread `waiter`) blocks on `heap_test_lock`, which
 * `main` holds forever, DELAY_MS after `ready`.
 *
 * Usage: rbp_heap [DELAY_MS]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

pthread_mutex_t heap_test_lock = PTHREAD_MUTEX_INITIALIZER;

static volatile pid_t waiter_tid;
static long delay_ms;
static void *heap_word;

struct fake_frame {
    void *next;
    void *ret;
};

__attribute__((noinline, optimize("omit-frame-pointer"))) void wait_with_heap_rbp(void) {
    struct fake_frame frame = {NULL, heap_word};
    register struct fake_frame *fp __asm__("rbp") = &frame;
    __asm__ volatile("" : "+r"(fp) : : "memory");
    pthread_mutex_lock(&heap_test_lock);
    __asm__ volatile("" : : "r"(fp) : "memory");
}

static void *waiter_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "waiter");
    waiter_tid = (pid_t)syscall(SYS_gettid);
    struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    wait_with_heap_rbp();
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) delay_ms = strtol(argv[1], NULL, 10);
    /* From the main thread: the brk heap, `[heap]` in the maps. */
    heap_word = malloc(64);
    pthread_mutex_lock(&heap_test_lock);
    pthread_t t;
    pthread_create(&t, NULL, waiter_main, NULL);
    while (waiter_tid == 0) usleep(1000);
    printf("pid=%d\n", (int)getpid());
    printf("tid.waiter=%d\n", (int)waiter_tid);
    printf("lock.heap_test_lock=%p\n", (void *)&heap_test_lock);
    printf("heap_word=%p\n", heap_word);
    printf("ready\n");
    for (;;) pause();
}
