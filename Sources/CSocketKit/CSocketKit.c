#include "CSocketKit.h"
#include <stddef.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

const int CSocketKit_SO_COOKIE = SO_COOKIE;
const int CSocketKit_TCP_INFO = TCP_INFO;
const int CSocketKit_SOCK_DIAG_BY_FAMILY = SOCK_DIAG_BY_FAMILY;
const int CSocketKit_NETLINK_SOCK_DIAG = NETLINK_SOCK_DIAG;
const uint32_t CSocketKit_INET_DIAG_NOCOOKIE = INET_DIAG_NOCOOKIE;
const int CSocketKit_INET_DIAG_INFO = INET_DIAG_INFO;

int CSocketKit_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    return accept4(fd, addr, len, flags);
}

const char *CSocketKit_errno_name(int code) {
    return strerrorname_np(code);
}

int CSocketKit_ppoll(struct pollfd *fds, unsigned long nfds, const struct timespec *timeout) {
    return ppoll(fds, nfds, timeout, NULL);
}

// Offsets from the kernel's uapi struct tcp_info; a mismatch here would silently misread fields.
_Static_assert(offsetof(CSocketKit_tcp_info, tcpi_rto) == 8, "tcp_info layout");
_Static_assert(offsetof(CSocketKit_tcp_info, tcpi_rtt) == 68, "tcp_info layout");
_Static_assert(offsetof(CSocketKit_tcp_info, tcpi_total_retrans) == 100, "tcp_info layout");
_Static_assert(offsetof(CSocketKit_tcp_info, tcpi_bytes_acked) == 120, "tcp_info layout");
_Static_assert(offsetof(CSocketKit_tcp_info, tcpi_snd_wnd) == 228, "tcp_info layout");
_Static_assert(offsetof(CSocketKit_tcp_info, tcpi_total_rto_time) == 244, "tcp_info layout");
// struct epoll_event is packed on x86_64 only (12 bytes, data at offset 4); everywhere else
// (aarch64, riscv64, ...) it has natural alignment (16 bytes, data at 8). Swift imports the
// layout from this header either way; the checks pin what each architecture must give.
#if defined(__x86_64__)
_Static_assert(sizeof(struct epoll_event) == 12, "packed epoll_event on x86_64");
_Static_assert(offsetof(struct epoll_event, data) == 4, "packed epoll_event on x86_64");
#else
_Static_assert(sizeof(struct epoll_event) == 16, "naturally aligned epoll_event");
_Static_assert(offsetof(struct epoll_event, data) == 8, "naturally aligned epoll_event");
#endif
const size_t CSocketKit_epoll_event_size = sizeof(struct epoll_event);

int CSocketKit_termination_signalfd(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0) { errno = rc; return -1; }
    return signalfd(-1, &set, SFD_CLOEXEC);
}

int CSocketKit_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n < 0) return -1;
    if (n != (ssize_t)sizeof info) { errno = EIO; return -1; }
    return (int)info.ssi_signo;
}

// Wire capture: the classic BPF instruction and PACKET_STATISTICS layouts (linux/filter.h,
// linux/if_packet.h) that Swift fills field by field.
_Static_assert(sizeof(struct sock_filter) == 8, "sock_filter layout");
_Static_assert(sizeof(struct tpacket_stats) == 8, "tpacket_stats layout");
