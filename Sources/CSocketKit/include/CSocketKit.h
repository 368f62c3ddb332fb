// CSocketKit: what Glibc's Swift module does not export. Every symbol is prefixed CSocketKit_.
#ifndef CSOCKETKIT_H
#define CSOCKETKIT_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <linux/rtnetlink.h>

// The kernel's struct tcp_info (include/uapi/linux/tcp.h, Linux 6.x). Glibc's <netinet/tcp.h>
// declares an older 104-byte layout under the same name, so we mirror the kernel's under our
// own name; offsets are checked by _Static_assert in CSocketKit.c. Older kernels return fewer
// bytes: callers zero the struct and use the length getsockopt() reports.
typedef struct CSocketKit_tcp_info {
    uint8_t  tcpi_state;
    uint8_t  tcpi_ca_state;
    uint8_t  tcpi_retransmits;
    uint8_t  tcpi_probes;
    uint8_t  tcpi_backoff;
    uint8_t  tcpi_options;
    uint8_t  tcpi_wscale;            // snd_wscale:4, rcv_wscale:4
    uint8_t  tcpi_rate_flags;        // delivery_rate_app_limited:1, fastopen_client_fail:2
    uint32_t tcpi_rto;
    uint32_t tcpi_ato;
    uint32_t tcpi_snd_mss;
    uint32_t tcpi_rcv_mss;
    uint32_t tcpi_unacked;
    uint32_t tcpi_sacked;
    uint32_t tcpi_lost;
    uint32_t tcpi_retrans;
    uint32_t tcpi_fackets;
    uint32_t tcpi_last_data_sent;
    uint32_t tcpi_last_ack_sent;
    uint32_t tcpi_last_data_recv;
    uint32_t tcpi_last_ack_recv;
    uint32_t tcpi_pmtu;
    uint32_t tcpi_rcv_ssthresh;
    uint32_t tcpi_rtt;
    uint32_t tcpi_rttvar;
    uint32_t tcpi_snd_ssthresh;
    uint32_t tcpi_snd_cwnd;
    uint32_t tcpi_advmss;
    uint32_t tcpi_reordering;
    uint32_t tcpi_rcv_rtt;
    uint32_t tcpi_rcv_space;
    uint32_t tcpi_total_retrans;
    uint64_t tcpi_pacing_rate;
    uint64_t tcpi_max_pacing_rate;
    uint64_t tcpi_bytes_acked;
    uint64_t tcpi_bytes_received;
    uint32_t tcpi_segs_out;
    uint32_t tcpi_segs_in;
    uint32_t tcpi_notsent_bytes;
    uint32_t tcpi_min_rtt;
    uint32_t tcpi_data_segs_in;
    uint32_t tcpi_data_segs_out;
    uint64_t tcpi_delivery_rate;
    uint64_t tcpi_busy_time;
    uint64_t tcpi_rwnd_limited;
    uint64_t tcpi_sndbuf_limited;
    uint32_t tcpi_delivered;
    uint32_t tcpi_delivered_ce;
    uint64_t tcpi_bytes_sent;
    uint64_t tcpi_bytes_retrans;
    uint32_t tcpi_dsack_dups;
    uint32_t tcpi_reord_seen;
    uint32_t tcpi_rcv_ooopack;
    uint32_t tcpi_snd_wnd;
    uint32_t tcpi_rcv_wnd;
    uint32_t tcpi_rehash;
    uint16_t tcpi_total_rto;
    uint16_t tcpi_total_rto_recoveries;
    uint32_t tcpi_total_rto_time;
    uint8_t  reserved[64];           // room for fields newer kernels append
} CSocketKit_tcp_info;

// Constants Glibc's module does not export (macros with casts or missing from its headers).
extern const int CSocketKit_SO_COOKIE;
extern const int CSocketKit_TCP_INFO;
extern const int CSocketKit_SOCK_DIAG_BY_FAMILY;
extern const int CSocketKit_NETLINK_SOCK_DIAG;
extern const uint32_t CSocketKit_INET_DIAG_NOCOOKIE;
extern const int CSocketKit_INET_DIAG_INFO;

// epoll/eventfd are not in Glibc's Swift module; thin pass-throughs keep the Swift side typed.
static inline int CSocketKit_epoll_create1(int flags) { return epoll_create1(flags); }
static inline int CSocketKit_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
    return epoll_ctl(epfd, op, fd, ev);
}
static inline int CSocketKit_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout) {
    return epoll_wait(epfd, evs, max, timeout);
}
// sizeof(struct epoll_event) as C sees it: 12 on x86_64 (packed), 16 elsewhere.
extern const size_t CSocketKit_epoll_event_size;
// Blocks SIGINT and SIGTERM in the calling thread (threads started later inherit the mask) and
// returns a close-on-exec signalfd for both, or -1 with errno. Call before any other thread starts.
int CSocketKit_termination_signalfd(void);
// Blocking read of one signalfd_siginfo: the signal number, or -1 with errno.
int CSocketKit_signalfd_read(int fd);
static inline int CSocketKit_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }
// accept4 is a GNU extension: Swift's importer does not see _GNU_SOURCE, so it lives in the .c.
int CSocketKit_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
// The errno's symbolic name ("ECONNREFUSED"), or NULL for a number glibc does not know:
// strerrorname_np (glibc 2.32), GNU too.
const char *CSocketKit_errno_name(int code);
// ppoll (nanosecond timeout, for sub-millisecond state sampling) is GNU too.
struct pollfd;
struct timespec;
int CSocketKit_ppoll(struct pollfd *fds, unsigned long nfds, const struct timespec *timeout);

// The CPUs this thread may run on (sched_getaffinity), ascending, at most `capacity` of them;
// -1 with errno set on failure. C macros (CPU_ISSET) do the reading, hence the shim.
int CSocketKit_allowed_cpus(int *cpus, int capacity);

// NLMSG_* are function-like macros Swift cannot import.
static inline size_t CSocketKit_NLMSG_ALIGN(size_t len) { return NLMSG_ALIGN(len); }
static inline size_t CSocketKit_NLMSG_LENGTH(size_t len) { return NLMSG_LENGTH(len); }
static inline int CSocketKit_NLMSG_OK(const struct nlmsghdr *nlh, long len) { return NLMSG_OK(nlh, len); }
static inline const struct nlmsghdr *CSocketKit_NLMSG_NEXT(const struct nlmsghdr *nlh, long *len) {
    return NLMSG_NEXT(nlh, *len);
}
static inline const void *CSocketKit_NLMSG_DATA(const struct nlmsghdr *nlh) { return NLMSG_DATA(nlh); }
static inline int CSocketKit_RTA_OK(const struct rtattr *rta, long len) { return RTA_OK(rta, len); }
static inline const struct rtattr *CSocketKit_RTA_NEXT(const struct rtattr *rta, long *len) {
    return RTA_NEXT(rta, *len);
}
static inline const void *CSocketKit_RTA_DATA(const struct rtattr *rta) { return RTA_DATA(rta); }
static inline size_t CSocketKit_RTA_PAYLOAD(const struct rtattr *rta) { return RTA_PAYLOAD(rta); }

#include "CSocketKitPerf.h"
#include "CSocketKitPacket.h"
#include "CSocketKitFaultWire.h"
#include "CSocketKitSanitizer.h"
#include "CSocketKitWatch.h"

#endif
