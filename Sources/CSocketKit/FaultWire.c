// Faults on the wire: veth pairs, interfaces and network namespaces (include/CSocketKitFaultWire.h).
#include <stdint.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <netinet/in.h>
#include "CSocketKitFaultWire.h"

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

#include <errno.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/veth.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>

// rtnetlink attributes, appended to a request whose buffer the caller sized generously.
static struct rtattr *append_attribute(struct nlmsghdr *n, unsigned short type, const void *data, int length) {
    struct rtattr *attribute = (struct rtattr *)(((char *)n) + NLMSG_ALIGN(n->nlmsg_len));
    attribute->rta_type = type;
    attribute->rta_len = RTA_LENGTH(length);
    if (length > 0) memcpy(RTA_DATA(attribute), data, length);
    n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(attribute->rta_len);
    return attribute;
}

static void close_nest(struct nlmsghdr *n, struct rtattr *nest) {
    nest->rta_len = (unsigned short)((char *)n + NLMSG_ALIGN(n->nlmsg_len) - (char *)nest);
}

// Sends one rtnetlink request (NLM_F_ACK set) from a socket of the calling thread's namespace
// and reads the kernel's answer: 0, or -1 with errno from the NLMSG_ERROR.
static int route_request(struct nlmsghdr *request) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return -1;
    struct sockaddr_nl kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.nl_family = AF_NETLINK;
    if (sendto(fd, request, request->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        int saved = errno; close(fd); errno = saved; return -1;
    }
    char reply[1024];
    ssize_t n;
    do { n = recv(fd, reply, sizeof reply, 0); } while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (n < 0) { errno = saved; return -1; }
    struct nlmsghdr *header = (struct nlmsghdr *)reply;
    if (n >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) && header->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *error = (struct nlmsgerr *)NLMSG_DATA(header);
        if (error->error == 0) return 0;
        errno = -error->error;
        return -1;
    }
    errno = EPROTO;
    return -1;
}

int CSocketKit_veth_create(const char *name, const char *peer, int peer_netns_fd) {
    struct { struct nlmsghdr n; struct ifinfomsg i; char room[512]; } request;
    memset(&request, 0, sizeof request);
    request.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
    request.n.nlmsg_type = RTM_NEWLINK;
    request.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
    request.i.ifi_family = AF_UNSPEC;
    append_attribute(&request.n, IFLA_IFNAME, name, (int)strlen(name) + 1);
    struct rtattr *linkinfo = append_attribute(&request.n, IFLA_LINKINFO, 0, 0);
    append_attribute(&request.n, IFLA_INFO_KIND, "veth", 4);
    struct rtattr *data = append_attribute(&request.n, IFLA_INFO_DATA, 0, 0);
    struct rtattr *peerinfo = append_attribute(&request.n, VETH_INFO_PEER, 0, 0);
    request.n.nlmsg_len += NLMSG_ALIGN(sizeof(struct ifinfomsg));   // the peer's ifinfomsg, zeroed
    append_attribute(&request.n, IFLA_IFNAME, peer, (int)strlen(peer) + 1);
    append_attribute(&request.n, IFLA_NET_NS_FD, &peer_netns_fd, sizeof peer_netns_fd);
    close_nest(&request.n, peerinfo);
    close_nest(&request.n, data);
    close_nest(&request.n, linkinfo);

    return route_request(&request.n);
}

int CSocketKit_if_no_offload(int sock, const char *name) {
    // TX checksum offload would hand the relay segments whose TCP checksum is only the
    // pseudo-header's (CHECKSUM_PARTIAL); TSO/GSO would hand it segments larger than the MTU.
    unsigned int commands[] = { ETHTOOL_STXCSUM, ETHTOOL_STSO, ETHTOOL_SGSO };
    int failures = 0;
    for (unsigned i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        struct ethtool_value value = { .cmd = commands[i], .data = 0 };
        struct ifreq request;
        memset(&request, 0, sizeof request);
        strncpy(request.ifr_name, name, IFNAMSIZ - 1);
        request.ifr_data = (char *)&value;
        if (ioctl(sock, SIOCETHTOOL, &request) == -1) failures++;
    }
    return failures;
}

int CSocketKit_link_delete(const char *name) {
    struct { struct nlmsghdr n; struct ifinfomsg i; char room[64]; } request;
    memset(&request, 0, sizeof request);
    request.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
    request.n.nlmsg_type = RTM_DELLINK;
    request.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    request.i.ifi_family = AF_UNSPEC;
    append_attribute(&request.n, IFLA_IFNAME, name, (int)strlen(name) + 1);
    return route_request(&request.n);
}
