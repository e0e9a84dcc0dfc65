/* Target of the --bpf-log test: its main thread calls futex(FUTEX_WAIT) on an address in
 * page 0, which is never mapped, every 10 ms; each call fails at once with EFAULT. The
 * tracer's sys_exit program sends such a wait whole, and finds no lock memory to copy
 * around the word: one of the unexpected paths it reports with --bpf-log.
 * Facts: pid, tid.faulter (the calling thread), fault_addr, first_errno (of a call made
 * before `ready`, so the test can check the premise). Runs until killed. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FAULT_ADDR 0x40UL

static long futex_wait_on_fault_addr(void) {
    return syscall(SYS_futex, (uint32_t *)FAULT_ADDR, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    long ret = futex_wait_on_fault_addr();
    printf("pid=%d\n", (int)getpid());
    printf("tid.faulter=%d\n", (int)syscall(SYS_gettid));
    printf("fault_addr=%#lx\n", FAULT_ADDR);
    printf("first_errno=%d\n", ret == -1 ? errno : 0);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        futex_wait_on_fault_addr();
        usleep(10000);
    }
}
