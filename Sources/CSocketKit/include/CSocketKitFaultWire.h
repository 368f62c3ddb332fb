// Faults on the wire (issue 20): veth pairs, interfaces and network namespaces. ioctl() is
// variadic, SIOCSIF* and struct ifreq's unions do not import into Swift, and rtnetlink requests
// are macros all the way down, so the few calls the relay needs are written here, each returning
// -1 with errno set as the call left it.
#ifndef CSOCKETKIT_FAULTWIRE_H
#define CSOCKETKIT_FAULTWIRE_H

#include <stdint.h>

/// Gives interface `name` the IPv4 address `address` (network order) with netmask `mask`
/// (network order), then brings it up: SIOCSIFADDR, SIOCSIFNETMASK, SIOCGIFFLAGS, SIOCSIFFLAGS
/// on `sock`, an AF_INET socket of the interface's namespace. The kernel adds the subnet route.
int CSocketKit_if_configure(int sock, const char *name, uint32_t address, uint32_t mask);

/// Brings `name` up (a namespace's lo is down when it is created).
int CSocketKit_if_up(int sock, const char *name);

/// unshare(CLONE_NEWNET) for the calling thread only: the network namespace is per task.
int CSocketKit_unshare_net(void);

/// setns(fd, CLONE_NEWNET) for the calling thread only.
int CSocketKit_setns_net(int fd);

/// Creates a veth pair: `name` in the calling thread's namespace, `peer` in the namespace
/// `peer_netns_fd` names. C: rtnetlink RTM_NEWLINK (IFLA_LINKINFO kind "veth", VETH_INFO_PEER
/// with IFLA_NET_NS_FD), what `ip link add NAME type veth peer name PEER netns NS` sends.
int CSocketKit_veth_create(const char *name, const char *peer, int peer_netns_fd);

/// Turns TX checksum offload, TSO and GSO off on `name` (SIOCETHTOOL); returns how many of the
/// three the driver refused.
int CSocketKit_if_no_offload(int sock, const char *name);

/// Deletes interface `name` of the calling thread's namespace (a veth takes its peer along).
/// C: rtnetlink RTM_DELLINK.
int CSocketKit_link_delete(const char *name);

/// PACKET_IGNORE_OUTGOING (Linux 4.20): a packet socket does not see what is sent on its
/// interface, the relay's own writes included.
static const int CSocketKit_PACKET_IGNORE_OUTGOING = 23;
/// PACKET_QDISC_BYPASS (Linux 3.14): a packet socket's frames skip the interface's qdisc.
static const int CSocketKit_PACKET_QDISC_BYPASS = 20;

#endif
