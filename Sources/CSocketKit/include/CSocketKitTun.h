// Faults on the wire (issue 20): TUN devices and network namespaces. ioctl() is variadic and
// TUNSETIFF, SIOCSIF* and struct ifreq's unions do not import into Swift, so the few calls the
// relay needs are written here, each returning -1 with errno set as the syscall left it.
#ifndef CSOCKETKIT_TUN_H
#define CSOCKETKIT_TUN_H

#include <stdint.h>

/// TUNSETIFF with IFF_TUN | IFF_NO_PI on an open /dev/net/tun: IP packets, no 4-byte header.
/// The device is created in the network namespace the fd was opened in.
int CSocketKit_tun_attach(int fd, const char *name);

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

#endif
