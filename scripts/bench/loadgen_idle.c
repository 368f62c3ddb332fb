/* loadgen_idle.c - --idle N: connections opened before the run, verified after it. */
#include "loadgen.h"
/* ---------------- idle connections (C10K check) ---------------- */


static int *g_idle_fd;

void idle_open(idle_res_t *res) {
    int n = cfg.idle;
    g_idle_fd = malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) g_idle_fd[i] = -1;
    res->n_req = n;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    uint64_t t0 = now_ns(), limit = t0 + 15ull * 1000000000ull;
    int next = 0, pending = 0, est = 0, failed = 0;
    char *st = calloc((size_t)n, 1); /* 1 = handshake pending, 2 = established */
    struct epoll_event evs[512];
    while ((next < n || pending) && now_ns() < limit) {
        while (next < n && pending < 128) { /* bounded number of handshakes in flight */
            int err = 0;
            int fd = make_socket(1000000 + next, 0, &err);
            if (fd < 0) {
                if (failed++ < 5) fprintf(stderr, "loadgen: idle connect %d failed: %s\n", next, strerror(err));
            } else {
                g_idle_fd[next] = fd;
                st[next] = 1;
                struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)next};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                pending++;
            }
            next++;
        }
        int k = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < k; i++) {
            int idx = (int)evs[i].data.u32, fd = g_idle_fd[idx], err = 0;
            socklen_t l = sizeof err;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
            epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            pending--;
            if (err) {
                if (failed++ < 5) fprintf(stderr, "loadgen: idle connect %d failed: %s\n", idx, strerror(err));
                close(fd);
                g_idle_fd[idx] = -1;
                st[idx] = 0;
            } else {
                st[idx] = 2;
                est++;
            }
        }
    }
    for (int i = 0; i < n; i++) /* handshakes that did not finish within the limit */
        if (st[i] == 1) {
            close(g_idle_fd[i]);
            g_idle_fd[i] = -1;
        }
    free(st);
    close(ep);
    res->n_est = est;
    res->setup_ms = (double)(now_ns() - t0) / 1e6;
}

void idle_verify(idle_res_t *res) {
    int n = cfg.idle;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    uint64_t t0 = now_ns(), limit = t0 + 5ull * 1000000000ull;
    size_t *got = calloc((size_t)n, sizeof(size_t));
    int pending = 0, ok = 0;
    unsigned char buf[IDLE_MSG];
    for (int i = 0; i < n; i++) {
        int fd = g_idle_fd[i];
        if (fd < 0) continue;
        const unsigned char *msg = g_table + ((uint64_t)i * 131u) % PAT_PERIOD;
        if (send(fd, msg, IDLE_MSG, MSG_NOSIGNAL) != IDLE_MSG) {
            close(fd);
            g_idle_fd[i] = -1;
            continue;
        }
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        pending++;
    }
    struct epoll_event evs[512];
    while (pending && now_ns() < limit) {
        int k = epoll_wait(ep, evs, 512, 100);
        for (int j = 0; j < k; j++) {
            int i = (int)evs[j].data.u32, fd = g_idle_fd[i];
            if (fd < 0) continue;
            const unsigned char *msg = g_table + ((uint64_t)i * 131u) % PAT_PERIOD;
            ssize_t r = recv(fd, buf, IDLE_MSG - got[i], 0);
            if (r > 0 && memcmp(buf, msg + got[i], (size_t)r) == 0) {
                got[i] += (size_t)r;
                if (got[i] == IDLE_MSG) {
                    ok++;
                    pending--;
                    close(fd);
                    g_idle_fd[i] = -1;
                }
            } else if (r < 0 && errno == EAGAIN) {
                continue;
            } else {
                pending--;
                close(fd);
                g_idle_fd[i] = -1;
            }
        }
    }
    for (int i = 0; i < n; i++)
        if (g_idle_fd[i] >= 0) close(g_idle_fd[i]);
    close(ep);
    free(got);
    res->n_ok = ok;
    res->n_fail = n - ok;
    res->verify_ms = (double)(now_ns() - t0) / 1e6;
}
