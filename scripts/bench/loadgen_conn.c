/* loadgen_conn.c - one worker thread: its connections' state machine on one epoll set. */
#include "loadgen.h"

static void ep_set(thr_t *t, conn_t *c, uint32_t ev, int op) {
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(t->ep, op, c->fd, &e) < 0) {
        perror("epoll_ctl");
        exit(3);
    }
    c->out_armed = (ev & EPOLLOUT) != 0;
}

static void conn_close(thr_t *t, conn_t *c, int state) {
    if (c->fd >= 0) {
        if (cfg.mode == M_CONNECT && cfg.rst) {
            struct linger l = {1, 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        close(c->fd);
    }
    if (c->state == ST_CONNECTING || c->state == ST_ACTIVE || c->state == ST_DRAIN) t->alive--;
    c->fd = -1;
    c->state = state;
    c->outstanding = 0;
}

/* count an error on c; pingpong/stream connections die, connect slots retry */
static void conn_fail(thr_t *t, conn_t *c, int err) {
    t->conn_errors++;
    if (err == EADDRNOTAVAIL) t->eaddrnotavail++;
    if (err == ECONNREFUSED) t->refused++;
    if (cfg.mode == M_CONNECT) {
        conn_close(t, c, ST_WAIT);
        c->retry_at = now_ns() + 1000000;
        t->waiting++;
    } else {
        conn_close(t, c, ST_DEAD);
    }
}

int make_socket(int conn_id, uint32_t cycle, int *err) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (cfg.src_addrs > 1) {
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        uint32_t k = 1 + (uint32_t)((conn_id + cycle) % (uint32_t)cfg.src_addrs);
        src.sin_addr.s_addr = htonl(0x7f000000u | k);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            *err = errno;
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port), .sin_addr = cfg.addr};
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return -1;
    }
    return fd;
}

static void conn_start(thr_t *t, conn_t *c) {
    int err = 0;
    c->fd = make_socket(c->id, c->cycle, &err);
    c->soff = c->roff = 0;
    c->msg_sent = c->msg_recv = 0;
    c->outstanding = 0;
    if (cfg.mode == M_CONNECT) {
        /* new pattern offset per cycle so stale data from an old connection cannot match */
        c->base = ((uint64_t)c->id * 7919u + (uint64_t)c->cycle * 104729u) % PAT_PERIOD;
        c->t0 = now_ns();
        c->outstanding = 1;
    }
    c->cycle++;
    if (c->fd < 0) {
        c->state = ST_CONNECTING;
        t->alive++;
        conn_fail(t, c, err);
        return;
    }
    c->state = ST_CONNECTING;
    t->alive++;
    ep_set(t, c, EPOLLOUT, EPOLL_CTL_ADD);
}

/* verify n received bytes at c->roff; returns 0 if identical */
static int verify(thr_t *t, conn_t *c, const unsigned char *buf, size_t n) {
    const unsigned char *exp = pat(c, c->roff);
    size_t extra = 0;
    if (c->roff + n > c->soff) extra = (size_t)(c->roff + n - c->soff); /* more than we ever sent */
    if (!extra && memcmp(buf, exp, n) == 0) return 0;
    uint64_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += (buf[i] != exp[i]);
    if (bad < extra) bad = extra;
    t->mismatches++;
    t->mismatch_bytes += bad;
    return -1;
}

static inline int in_window(uint64_t ts) { return ts >= g_measure_start && ts <= g_deadline; }

/* end of run for this connection: send FIN, then read (and verify) whatever is still owed until EOF */
static void start_drain(thr_t *t, conn_t *c) {
    if (shutdown(c->fd, SHUT_WR) < 0) {
        conn_close(t, c, ST_DEAD);
        return;
    }
    c->state = ST_DRAIN;
    ep_set(t, c, EPOLLIN, EPOLL_CTL_MOD);
}

static void drain_read(thr_t *t, conn_t *c) {
    ssize_t r = recv(c->fd, t->rbuf, RBUF_SIZE, 0);
    if (r > 0) {
        if (verify(t, c, t->rbuf, (size_t)r) != 0) {
            conn_close(t, c, ST_DEAD);
            return;
        }
        c->roff += (uint64_t)r;
    } else if (r == 0) { /* EOF: every byte we sent must have come back */
        if (c->roff < c->soff) {
            t->mismatches++;
            t->lost_bytes += c->soff - c->roff;
            t->mismatch_bytes += c->soff - c->roff;
        }
        conn_close(t, c, ST_DEAD);
    } else if (errno != EAGAIN && errno != EINTR) {
        conn_fail(t, c, errno);
    }
}

/* send the rest of the current message (pingpong / connect) */
static void msg_flush(thr_t *t, conn_t *c) {
    while (c->msg_sent < cfg.size) {
        ssize_t r = send(c->fd, pat(c, c->soff), cfg.size - c->msg_sent, MSG_NOSIGNAL);
        if (r > 0) {
            c->msg_sent += (size_t)r;
            c->soff += (uint64_t)r;
        } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (errno == EINTR) continue;
            if (!c->out_armed) ep_set(t, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
            return;
        } else {
            conn_fail(t, c, errno);
            return;
        }
    }
    if (c->out_armed) ep_set(t, c, EPOLLIN, EPOLL_CTL_MOD);
}

static void msg_new(thr_t *t, conn_t *c) {
    c->t0 = now_ns();
    c->msg_sent = c->msg_recv = 0;
    c->outstanding = 1;
    msg_flush(t, c);
}

static void on_connected(thr_t *t, conn_t *c) {
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0) err = errno;
    if (err) {
        conn_fail(t, c, err);
        return;
    }
    c->state = ST_ACTIVE;
    if (cfg.mode != M_CONNECT && now_ns() >= g_deadline) { /* connected too late to take part */
        start_drain(t, c);
        return;
    }
    if (cfg.mode == M_STREAM) {
        ep_set(t, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
    } else {
        ep_set(t, c, EPOLLIN, EPOLL_CTL_MOD);
        if (cfg.mode == M_PINGPONG) {
            msg_new(t, c);
        } else { /* connect: cycle clock started before connect() */
            c->msg_sent = c->msg_recv = 0;
            msg_flush(t, c);
        }
    }
}

/* read part of a message echo (pingpong / connect) */
static void msg_read(thr_t *t, conn_t *c) {
    size_t want = cfg.size - c->msg_recv;
    if (want > RBUF_SIZE) want = RBUF_SIZE;
    ssize_t r = recv(c->fd, t->rbuf, want, 0);
    if (r > 0) {
        if (!c->outstanding) { /* data nobody asked for */
            t->mismatches++;
            t->mismatch_bytes += (uint64_t)r;
            conn_fail(t, c, EPROTO);
            return;
        }
        if (verify(t, c, t->rbuf, (size_t)r) != 0 && cfg.mode == M_CONNECT) {
            c->roff += (uint64_t)r;
            conn_close(t, c, ST_WAIT);
            c->retry_at = 0;
            t->waiting++;
            return;
        }
        c->roff += (uint64_t)r;
        c->msg_recv += (size_t)r;
        if (c->msg_recv == cfg.size) {
            uint64_t now = now_ns();
            c->outstanding = 0;
            if (in_window(now)) {
                h_add(&t->h, now - c->t0);
                t->bytes += cfg.size;
                if (cfg.mode == M_PINGPONG)
                    t->requests++;
                else
                    t->connects++;
            }
            if (cfg.mode == M_CONNECT) {
                conn_close(t, c, ST_DEAD);
                if (now < g_deadline) conn_start(t, c); /* next cycle on this slot */
            } else if (now < g_deadline) {
                msg_new(t, c);
            } else {
                start_drain(t, c);
            }
        }
    } else if (r == 0) {
        conn_fail(t, c, ECONNRESET); /* unexpected EOF from server */
    } else if (errno != EAGAIN && errno != EINTR) {
        conn_fail(t, c, errno);
    }
}

static void stream_io(thr_t *t, conn_t *c, uint32_t ev) {
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        ssize_t r = recv(c->fd, t->rbuf, RBUF_SIZE, 0);
        if (r > 0) {
            if (verify(t, c, t->rbuf, (size_t)r) != 0) {
                conn_fail(t, c, EPROTO); /* stream is desynchronised: stop this connection */
                return;
            }
            c->roff += (uint64_t)r;
            if (in_window(now_ns())) t->bytes += (uint64_t)r;
        } else if (r == 0) {
            conn_fail(t, c, ECONNRESET);
            return;
        } else if (errno != EAGAIN && errno != EINTR) {
            conn_fail(t, c, errno);
            return;
        }
    }
    if (c->state != ST_ACTIVE) return;
    int can_write = 1;
    for (int i = 0; i < 4 && can_write; i++) {
        if (cfg.window && c->soff - c->roff >= cfg.window) {
            can_write = 0;
            break;
        }
        size_t len = cfg.size - c->msg_sent;
        if (cfg.window && len > cfg.window - (c->soff - c->roff)) len = cfg.window - (size_t)(c->soff - c->roff);
        ssize_t r = send(c->fd, pat(c, c->soff), len, MSG_NOSIGNAL);
        if (r > 0) {
            c->soff += (uint64_t)r;
            c->msg_sent += (size_t)r;
            if (c->msg_sent == cfg.size) c->msg_sent = 0;
        } else if (r < 0 && errno == EAGAIN) {
            break;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            conn_fail(t, c, errno);
            return;
        }
    }
    /* with a window, only poll for writability while there is room */
    int want_out = !cfg.window || (c->soff - c->roff < cfg.window);
    if (want_out != c->out_armed) ep_set(t, c, EPOLLIN | (want_out ? EPOLLOUT : 0), EPOLL_CTL_MOD);
}

static void handle(thr_t *t, conn_t *c, uint32_t ev) {
    if (c->state == ST_CONNECTING) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(t, c);
        return;
    }
    if (c->state == ST_DRAIN) {
        drain_read(t, c);
        return;
    }
    if (c->state != ST_ACTIVE) return;
    if (cfg.mode == M_STREAM) {
        stream_io(t, c, ev);
        return;
    }
    if ((ev & EPOLLOUT) && c->msg_sent < cfg.size) {
        msg_flush(t, c);
        if (c->state != ST_ACTIVE) return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) msg_read(t, c);
}

void *worker(void *arg) {
    thr_t *t = arg;
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    if (t->ep < 0) {
        perror("epoll_create1");
        exit(3);
    }
    for (int i = 0; i < t->n; i++) conn_start(t, &t->c[i]);
    struct epoll_event evs[512];
    int draining = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (!draining && now >= g_deadline) {
            /* stop: streams send FIN right away; pingpong connections do so once their
               in-flight request has come back; connect slots finish their cycle */
            draining = 1;
            for (int i = 0; i < t->n; i++) {
                conn_t *c = &t->c[i];
                if (c->state == ST_ACTIVE && (cfg.mode == M_STREAM || (cfg.mode == M_PINGPONG && !c->outstanding)))
                    start_drain(t, c);
            }
        }
        if (draining && (t->alive == 0 || now >= g_deadline + DRAIN_NS)) break;
        if (!draining && t->alive == 0 && t->waiting == 0) break; /* everything died */
        uint64_t end = draining ? g_deadline + DRAIN_NS : g_deadline;
        uint64_t left_ms = end > now ? (end - now) / 1000000 + 1 : 1;
        int to = left_ms > 100 ? 100 : (int)left_ms;
        if (t->waiting && !draining) to = 1;
        int n = epoll_wait(t->ep, evs, 512, to);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            exit(3);
        }
        for (int i = 0; i < n; i++) handle(t, evs[i].data.ptr, evs[i].events);
        if (t->waiting && !draining) {
            now = now_ns();
            for (int i = 0; i < t->n && now < g_deadline; i++) {
                conn_t *c = &t->c[i];
                if (c->state == ST_WAIT && c->retry_at <= now) {
                    t->waiting--;
                    conn_start(t, c);
                }
            }
        }
    }
    /* whatever is still open after the drain window */
    for (int i = 0; i < t->n; i++) {
        conn_t *c = &t->c[i];
        if (c->fd < 0) continue;
        if (c->roff < c->soff || (c->outstanding && cfg.mode != M_STREAM))
            t->timeouts++; /* server still owes us bytes (or never answered) */
        else if (c->state == ST_DRAIN)
            t->no_eof++; /* all echoed, but the server did not close after our FIN */
        conn_close(t, c, ST_DEAD);
    }
    close(t->ep);
    return NULL;
}

