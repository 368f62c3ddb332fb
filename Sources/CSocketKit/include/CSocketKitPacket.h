// Wire capture (issue 12): AF_PACKET and classic BPF declarations Glibc's Swift module lacks.
#ifndef CSOCKETKIT_PACKET_H
#define CSOCKETKIT_PACKET_H

#include <stdint.h>
#include <time.h>
#include <sys/socket.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <linux/filter.h>

// sockaddr_ll, sock_filter, sock_fprog and tpacket_stats come from the headers above; their
// function-like and unsigned macros are re-exported here as constants Swift can see.
static const int CSocketKit_ETH_P_ALL = ETH_P_ALL;
static const int CSocketKit_PACKET_OUTGOING = PACKET_OUTGOING;
static const int CSocketKit_PACKET_STATISTICS = PACKET_STATISTICS;
static const int CSocketKit_SOL_PACKET = SOL_PACKET;
static const int CSocketKit_SO_ATTACH_FILTER = SO_ATTACH_FILTER;
static const int CSocketKit_SO_TIMESTAMPNS = SO_TIMESTAMPNS;
static const int CSocketKit_SCM_TIMESTAMPNS = SCM_TIMESTAMPNS;
// Ancillary BPF load of skb->pkt_type (SKF_AD_OFF is negative: a macro expression).
static const int32_t CSocketKit_SKF_AD_PKTTYPE_OFFSET = SKF_AD_OFF + SKF_AD_PKTTYPE;

// CMSG_* are macros: walk the control messages of one recvmsg() for the SCM_TIMESTAMPNS one.
// Returns 1 and fills sec/nsec when present, 0 otherwise.
static inline int CSocketKit_timestampns(const struct msghdr *message, int64_t *sec, int64_t *nsec) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)message); c != 0;
         c = CMSG_NXTHDR((struct msghdr *)message, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS
            && c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            __builtin_memcpy(&ts, CMSG_DATA(c), sizeof ts);
            *sec = ts.tv_sec;
            *nsec = ts.tv_nsec;
            return 1;
        }
    }
    return 0;
}

/// Room for one SCM_TIMESTAMPNS control message.
static const int CSocketKit_TIMESTAMP_CONTROL_SPACE = CMSG_SPACE(sizeof(struct timespec));

#endif
