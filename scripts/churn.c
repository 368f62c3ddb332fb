/*
 * churn.c - unrelated TCP connection churn on loopback, for scripts/busy-host.sh.
 *
 * Build:  cc -O2 -pthread -o churn scripts/churn.c
 * Run:    ./churn PORT SECONDS [RATE]     (RATE connections/s, default 10000)
 *
 * One process plays both ends on 127.0.0.1:PORT: 2 server threads accept, read the message,
 * echo it and close; 4 client threads connect, send 16 bytes, read the echo and close with
 * SO_LINGER {1, 0} (an RST: no TIME_WAIT, so the host's TIME_WAIT table and ephemeral ports
 * stay free for the tests that need them). Paced to RATE. Every few seconds and at the end it
 * prints the connections completed and the rate reached; exit 1 if the rate fell below half
 * of RATE (the churn did not really happen).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS 4
#define SERVERS 2

static struct sockaddr_in target;
static int listener;
static atomic_long completed;
static atomic_int stopping;
static double rate = 10000;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *serve(void *unused) {
    (void)unused;
    char buffer[64];
    while (!atomic_load(&stopping)) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        struct timeval limit = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n > 0 && write(fd, buffer, (size_t)n) != n) { /* peer gone: nothing to do */ }
        n = read(fd, buffer, sizeof buffer);   /* the client's RST (or EOF) */
        close(fd);
    }
    return NULL;
}

static void *client(void *unused) {
    (void)unused;
    const char message[16] = "churn churn chur";
    char echo[16];
    double interval = CLIENTS / rate, next = now();
    while (!atomic_load(&stopping)) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) { usleep(1000); continue; }
        struct timeval limit = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        if (connect(fd, (struct sockaddr *)&target, sizeof target) == 0
            && write(fd, message, sizeof message) == (ssize_t)sizeof message
            && read(fd, echo, sizeof echo) == (ssize_t)sizeof echo) {
            atomic_fetch_add(&completed, 1);
        }
        struct linger rst = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
        close(fd);
        next += interval;
        double wait = next - now();
        if (wait > 0) usleep((useconds_t)(wait * 1e6));
        else if (wait < -1) next = now();   /* far behind: do not burst to catch up */
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: churn PORT SECONDS [RATE]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    double seconds = atof(argv[2]);
    if (argc > 3) rate = atof(argv[3]);
    if (port <= 0 || port > 65535 || seconds <= 0 || rate <= 0) {
        fprintf(stderr, "churn: bad PORT, SECONDS or RATE\n");
        return 2;
    }
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)port);
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&target, sizeof target) != 0 || listen(listener, 4096) != 0) {
        fprintf(stderr, "churn: bind/listen 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    pthread_t threads[CLIENTS + SERVERS];
    for (int i = 0; i < SERVERS; i++) pthread_create(&threads[i], NULL, serve, NULL);
    for (int i = 0; i < CLIENTS; i++) pthread_create(&threads[SERVERS + i], NULL, client, NULL);
    double start = now(), last = start;
    long before = 0;
    while (now() - start < seconds) {
        usleep(200000);
        if (now() - last >= 10) {
            long done = atomic_load(&completed);
            fprintf(stderr, "churn: %.0f connections/s over the last %.0f s\n", (double)(done - before) / (now() - last), now() - last);
            before = done;
            last = now();
        }
    }
    atomic_store(&stopping, 1);
    double elapsed = now() - start;
    long done = atomic_load(&completed);
    printf("churn: %ld connections in %.0f s: %.0f connections/s (asked %.0f)\n", done, elapsed, done / elapsed, rate);
    fflush(stdout);
    /* Accept threads may sit in accept(): exit without joining them. */
    return done / elapsed < rate / 2 ? 1 : 0;
}
