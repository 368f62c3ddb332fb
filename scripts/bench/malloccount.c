/* malloccount.c - LD_PRELOAD allocation counter for the bench (scripts/bench/allocs.sh).
 *
 * Counts every heap allocation of the process (malloc, calloc, realloc, posix_memalign,
 * aligned_alloc, memalign, valloc) and the bytes asked for, and writes one line
 * "allocations bytes" to MALLOCCOUNT_FILE when the process exits. No thread of its own:
 * EchoServer refuses to start when threads exist before it blocks its signals. Forwarding goes
 * to glibc's __libc_* entry points (dlsym itself allocates, so it cannot be used this early).
 *
 *   cc -O2 -shared -fPIC -o malloccount.so malloccount.c -lpthread
 *   MALLOCCOUNT_FILE=/tmp/counts LD_PRELOAD=./malloccount.so server ...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_ulong count, bytes;

static inline void note(size_t n) {
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&bytes, n, memory_order_relaxed);
}

void *malloc(size_t n) { note(n); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(a * b); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(n); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { note(n); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { note(n); return __libc_memalign(a, n); }
void *valloc(size_t n) { note(n); return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), n); }
int posix_memalign(void **out, size_t a, size_t n) {
    note(n);
    void *p = __libc_memalign(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("MALLOCCOUNT_FILE");
    if (!path || !*path) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char line[64];
    int n = snprintf(line, sizeof line, "%lu %lu\n", atomic_load(&count), atomic_load(&bytes));
    if (write(fd, line, (size_t)n) != n) { /* nothing to do at exit */ }
    close(fd);
}
