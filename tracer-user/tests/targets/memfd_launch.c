/* Runs a program from an anonymous file: copies PROGRAM into a memfd and executes it
 * from there with fexecve, so the process has no executable path at all (its maps and
 * /proc/PID/exe say `/memfd:NAME (deleted)`). Issue 16: names must come from the still
 * open file.
 *
 * Usage: memfd_launch PROGRAM [ARGS...]   (PROGRAM is run with ARGS, as argv[0] PROGRAM)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: memfd_launch PROGRAM [ARGS...]\n");
        return 2;
    }
    int src = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        perror("open");
        return 1;
    }
    /* Close-on-exec: once the program runs, only its mappings keep the file. */
    int mem = memfd_create("memfd_target", MFD_CLOEXEC);
    if (mem < 0) {
        perror("memfd_create");
        return 1;
    }
    char buf[65536];
    ssize_t n;
    while ((n = read(src, buf, sizeof buf)) > 0) {
        if (write(mem, buf, (size_t)n) != n) {
            perror("write");
            return 1;
        }
    }
    close(src);
    fexecve(mem, argv + 1, environ);
    perror("fexecve");
    return 1;
}
