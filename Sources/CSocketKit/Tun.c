// Faults on the wire: TUN devices and network namespaces (see include/CSocketKitTun.h).
#include <stdint.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/if_tun.h>
#include "CSocketKitTun.h"

int CSocketKit_tun_attach(int fd, const char *name) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    return ioctl(fd, TUNSETIFF, &request);
}

int CSocketKit_if_configure(int sock, const char *name, uint32_t address, uint32_t mask) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    struct sockaddr_in *in = (struct sockaddr_in *)&request.ifr_addr;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = address;
    if (ioctl(sock, SIOCSIFADDR, &request) == -1) return -1;
    in->sin_addr.s_addr = mask;
    if (ioctl(sock, SIOCSIFNETMASK, &request) == -1) return -1;
    if (ioctl(sock, SIOCGIFFLAGS, &request) == -1) return -1;
    request.ifr_flags |= IFF_UP | IFF_RUNNING;
    return ioctl(sock, SIOCSIFFLAGS, &request);
}

int CSocketKit_if_up(int sock, const char *name) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(sock, SIOCGIFFLAGS, &request) == -1) return -1;
    request.ifr_flags |= IFF_UP;
    return ioctl(sock, SIOCSIFFLAGS, &request);
}

int CSocketKit_unshare_net(void) { return unshare(CLONE_NEWNET); }

int CSocketKit_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }
