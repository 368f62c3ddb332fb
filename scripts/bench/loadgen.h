/*
 * loadgen.h - what the load generator's parts share: the configuration, the verified byte
 * pattern, the latency histogram, and the connection and thread state.
 *   loadgen.c       arguments, the run, the report (main)
 *   loadgen_conn.c  one worker thread's epoll loop: connect, send, read and verify the echo
 *   loadgen_idle.c  the idle connections of --idle (the C10K check)
 * Build: cc -O2 -o loadgen loadgen.c loadgen_conn.c loadgen_idle.c -lpthread
 */
#ifndef LOADGEN_H
#define LOADGEN_H
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PAT_PERIOD 1000003u /* prime: pattern period in bytes */
#define RBUF_SIZE (256 * 1024)
#define MAX_SIZE (16u * 1024 * 1024)
#define MAX_DURATION 60.0
#define MAX_WARMUP 10.0
#define DRAIN_NS 2000000000ull /* after the deadline: time allowed for in-flight echoes + FIN */
#define IDLE_MSG 16

enum { M_PINGPONG, M_STREAM, M_CONNECT };
enum { ST_WAIT, ST_CONNECTING, ST_ACTIVE, ST_DRAIN, ST_DEAD }; /* DRAIN: our FIN sent, reading to EOF */

/* ---------------- configuration / globals (defined in loadgen.c) ---------------- */
typedef struct {
    char host[64];
    struct in_addr addr;
    int port;
    int conns;
    int threads;
    double duration;
    double warmup;
    size_t size;
    int mode;
    int rst;
    int src_addrs;
    int idle;
    size_t window;
    char label[128];
} config_t;

extern config_t cfg;
extern unsigned char *g_table; /* PAT_PERIOD + max chunk bytes; table[i] == table[i % PAT_PERIOD] */
extern uint64_t g_measure_start, g_deadline;

static inline const char *mode_name(int m) { return m == M_PINGPONG ? "pingpong" : m == M_STREAM ? "stream" : "connect"; }

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------------- latency histogram (log-linear, <0.4% error) ---------------- */
#define H_SUB_BITS 8
#define H_SUB (1 << H_SUB_BITS)
#define H_HALF (H_SUB / 2)
#define H_BUCKETS (H_HALF * 64 + H_SUB)

typedef struct {
    uint64_t c[H_BUCKETS];
    uint64_t n, sum, max;
} hist_t;

static inline int h_idx(uint64_t v) {
    if (v < H_SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - (H_SUB_BITS - 1);
    return H_HALF * shift + (int)(v >> shift);
}
static inline uint64_t h_val(int idx) { /* midpoint of bucket */
    if (idx < H_SUB) return (uint64_t)idx;
    int shift = idx / H_HALF - 1;
    uint64_t m = (uint64_t)(idx - H_HALF * shift);
    return (m << shift) + ((1ull << shift) >> 1);
}
static inline void h_add(hist_t *h, uint64_t v) {
    h->c[h_idx(v)]++;
    h->n++;
    h->sum += v;
    if (v > h->max) h->max = v;
}
static inline void h_merge(hist_t *d, const hist_t *s) {
    for (int i = 0; i < H_BUCKETS; i++) d->c[i] += s->c[i];
    d->n += s->n;
    d->sum += s->sum;
    if (s->max > d->max) d->max = s->max;
}
static inline double h_pct_us(const hist_t *h, double q) {
    if (!h->n) return 0;
    uint64_t want = (uint64_t)(q * (double)h->n + 0.999999);
    if (want < 1) want = 1;
    uint64_t acc = 0;
    for (int i = 0; i < H_BUCKETS; i++) {
        acc += h->c[i];
        if (acc >= want) {
            uint64_t v = h_val(i);
            if (v > h->max) v = h->max;
            return (double)v / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

/* ---------------- per-connection / per-thread state ---------------- */
typedef struct conn {
    int fd;
    int id;
    int state;
    int out_armed; /* EPOLLOUT in the interest set */
    uint64_t base;  /* pattern offset of this connection's byte stream */
    uint64_t soff;  /* bytes sent on this stream */
    uint64_t roff;  /* bytes received (and verified) */
    size_t msg_sent, msg_recv;
    int outstanding; /* request in flight (pingpong/connect) */
    uint64_t t0;     /* request / cycle start */
    uint64_t retry_at;
    uint32_t cycle; /* connect mode: which connection of this slot */
} conn_t;

typedef struct {
    int idx;
    int ep;
    conn_t *c;
    int n;
    int alive;
    int waiting;
    unsigned char *rbuf;
    hist_t h;
    uint64_t requests, bytes, connects;
    uint64_t mismatches, mismatch_bytes, conn_errors, eaddrnotavail, timeouts, refused, lost_bytes, no_eof;
    pthread_t tid;
} thr_t;

static inline const unsigned char *pat(const conn_t *c, uint64_t off) { return g_table + ((c->base + off) % PAT_PERIOD); }

/* loadgen_conn.c */
int make_socket(int conn_id, uint32_t cycle, int *err);
void *worker(void *arg);

/* loadgen_idle.c */
typedef struct {
    int n_req, n_est, n_ok, n_fail;
    double setup_ms, verify_ms;
} idle_res_t;
void idle_open(idle_res_t *res);
void idle_verify(idle_res_t *res);

#endif
