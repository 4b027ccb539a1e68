#include "netlink.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IFLA_BRPORT_ISOLATED
#define IFLA_BRPORT_ISOLATED 33
#endif

struct msg {
  union {
    struct nlmsghdr h;
    char buf[2048];
  };
};

static int seq;

static void *tail(struct msg *m) { return m->buf + NLMSG_ALIGN(m->h.nlmsg_len); }

static void start(struct msg *m, int type, int flags, const void *hdr, size_t hdrlen) {
  memset(m, 0, sizeof *m);
  m->h.nlmsg_len = NLMSG_LENGTH(hdrlen);
  m->h.nlmsg_type = (unsigned short)type;
  m->h.nlmsg_flags = (unsigned short)(NLM_F_REQUEST | NLM_F_ACK | flags);
  m->h.nlmsg_seq = (unsigned)++seq;
  memcpy(NLMSG_DATA(&m->h), hdr, hdrlen);
}

static struct rtattr *attr(struct msg *m, int type, const void *data, size_t len) {
  struct rtattr *a = tail(m);
  size_t total = NLMSG_ALIGN(m->h.nlmsg_len) + RTA_SPACE(len);
  if (total > sizeof m->buf) return NULL;
  a->rta_type = (unsigned short)type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  if (len) memcpy(RTA_DATA(a), data, len);
  m->h.nlmsg_len = (unsigned)total;
  return a;
}

static struct rtattr *nest(struct msg *m, int type) { return attr(m, type, NULL, 0); }

static void nest_end(struct msg *m, struct rtattr *a) { a->rta_len = (unsigned short)((char *)tail(m) - (char *)a); }

/* Raw bytes inside a nest (VETH_INFO_PEER starts with a struct ifinfomsg). */
static void raw(struct msg *m, const void *data, size_t len) {
  memcpy(tail(m), data, len);
  m->h.nlmsg_len = NLMSG_ALIGN(m->h.nlmsg_len) + (unsigned)NLMSG_ALIGN(len);
}

static int send_to_kernel(int fd, struct msg *m) {
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  return sendto(fd, m->buf, m->h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0 ? -errno : 0;
}

static int talk(int fd, struct msg *m) {
  int rc = send_to_kernel(fd, m);
  if (rc < 0) return rc;
  char reply[4096];
  for (;;) {
    ssize_t n = recv(fd, reply, sizeof reply, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    for (struct nlmsghdr *h = (struct nlmsghdr *)reply; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != m->h.nlmsg_seq) continue; /* a stale answer */
      if (h->nlmsg_type == NLMSG_ERROR) return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
    }
  }
}

int nl_open(void) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  return fd < 0 ? -errno : fd;
}

int nl_create_veth(int fd, const char *host, const char *peer, int peer_pid, const unsigned char mac[6], int mtu) {
  struct msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  start(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
  attr(&m, IFLA_IFNAME, host, strlen(host) + 1);
  attr(&m, IFLA_MTU, &mtu, sizeof mtu);
  struct rtattr *info = nest(&m, IFLA_LINKINFO);
  attr(&m, IFLA_INFO_KIND, "veth", 4);
  struct rtattr *data = nest(&m, IFLA_INFO_DATA);
  struct rtattr *p = nest(&m, VETH_INFO_PEER);
  raw(&m, &ifi, sizeof ifi);
  attr(&m, IFLA_IFNAME, peer, strlen(peer) + 1);
  attr(&m, IFLA_NET_NS_PID, &peer_pid, sizeof peer_pid);
  attr(&m, IFLA_ADDRESS, mac, 6);
  if (!attr(&m, IFLA_MTU, &mtu, sizeof mtu)) return -EMSGSIZE;
  nest_end(&m, p);
  nest_end(&m, data);
  nest_end(&m, info);
  return talk(fd, &m);
}

int nl_create_bridge(int fd, const char *name) {
  struct msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  start(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
  attr(&m, IFLA_IFNAME, name, strlen(name) + 1);
  struct rtattr *info = nest(&m, IFLA_LINKINFO);
  attr(&m, IFLA_INFO_KIND, "bridge", 6);
  nest_end(&m, info);
  return talk(fd, &m);
}

int nl_link_set_mac(int fd, int ifindex, const unsigned char mac[6]) {
  struct msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
  start(&m, RTM_NEWLINK, 0, &ifi, sizeof ifi);
  attr(&m, IFLA_ADDRESS, mac, 6);
  return talk(fd, &m);
}

int nl_link_up(int fd, int ifindex, int master_ifindex) {
  struct msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
  start(&m, RTM_NEWLINK, 0, &ifi, sizeof ifi);
  if (master_ifindex > 0) attr(&m, IFLA_MASTER, &master_ifindex, sizeof master_ifindex);
  return talk(fd, &m);
}

int nl_brport_isolate(int fd, int ifindex) {
  struct msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_BRIDGE, .ifi_index = ifindex};
  start(&m, RTM_SETLINK, 0, &ifi, sizeof ifi);
  struct rtattr *pi = nest(&m, IFLA_PROTINFO | NLA_F_NESTED);
  unsigned char on = 1;
  attr(&m, IFLA_BRPORT_ISOLATED, &on, sizeof on);
  nest_end(&m, pi);
  return talk(fd, &m);
}

int nl_addr_add(int fd, int ifindex, uint32_t addr, int prefix) {
  struct msg m;
  struct ifaddrmsg ifa = {.ifa_family = AF_INET, .ifa_prefixlen = (unsigned char)prefix, .ifa_index = (unsigned)ifindex};
  start(&m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
  attr(&m, IFA_LOCAL, &addr, sizeof addr);
  attr(&m, IFA_ADDRESS, &addr, sizeof addr);
  return talk(fd, &m);
}

int nl_route_default(int fd, uint32_t gw, int ifindex) {
  struct msg m;
  struct rtmsg rt = {
      .rtm_family = AF_INET,
      .rtm_table = RT_TABLE_MAIN,
      .rtm_protocol = RTPROT_BOOT,
      .rtm_scope = RT_SCOPE_UNIVERSE,
      .rtm_type = RTN_UNICAST,
  };
  start(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof rt);
  attr(&m, RTA_GATEWAY, &gw, sizeof gw);
  attr(&m, RTA_OIF, &ifindex, sizeof ifindex);
  return talk(fd, &m);
}

int nl_route_link(int fd, uint32_t dst, int ifindex) {
  struct msg m;
  struct rtmsg rt = {
      .rtm_family = AF_INET,
      .rtm_dst_len = 32,
      .rtm_table = RT_TABLE_MAIN,
      .rtm_protocol = RTPROT_BOOT,
      .rtm_scope = RT_SCOPE_LINK,
      .rtm_type = RTN_UNICAST,
  };
  start(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof rt);
  attr(&m, RTA_DST, &dst, sizeof dst);
  attr(&m, RTA_OIF, &ifindex, sizeof ifindex);
  return talk(fd, &m);
}

int nl_link_del(int fd, int ifindex) {
  struct msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
  start(&m, RTM_DELLINK, 0, &ifi, sizeof ifi);
  return talk(fd, &m);
}

static void parse_link(struct nlmsghdr *h, struct nl_link *l) {
  struct ifinfomsg *ifi = NLMSG_DATA(h);
  memset(l, 0, sizeof *l);
  l->index = ifi->ifi_index;
  int len = (int)IFLA_PAYLOAD(h);
  for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    size_t n = RTA_PAYLOAD(a);
    if (a->rta_type == IFLA_IFNAME && n > 0) {
      size_t k = n < sizeof l->name ? n : sizeof l->name - 1;
      memcpy(l->name, RTA_DATA(a), k);
      l->name[k] = 0;
    } else if (a->rta_type == IFLA_MTU && n >= sizeof(int)) {
      memcpy(&l->mtu, RTA_DATA(a), sizeof(int));
    } else if (a->rta_type == IFLA_MASTER && n >= sizeof(int)) {
      memcpy(&l->master, RTA_DATA(a), sizeof(int));
    } else if (a->rta_type == IFLA_STATS64 && n >= sizeof(struct rtnl_link_stats64)) {
      struct rtnl_link_stats64 st;
      memcpy(&st, RTA_DATA(a), sizeof st);
      l->rx_bytes = st.rx_bytes;
      l->tx_bytes = st.tx_bytes;
      l->has_stats = 1;
    }
  }
}

/* Read the answers to request `seq` until its end: an error, the one
 * RTM_NEWLINK of a get, or NLMSG_DONE of a dump. */
static int read_links_into(int fd, char *reply, size_t size, unsigned seq, int dump, void (*each)(const struct nl_link *, void *), void *ctx) {
  int intr = 0;
  for (;;) {
    /* MSG_TRUNC: the datagram's real length, so a reply larger than the buffer is an error, not a wait. */
    ssize_t n = recv(fd, reply, size, MSG_TRUNC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if ((size_t)n > size) return -EMSGSIZE;
    for (struct nlmsghdr *h = (struct nlmsghdr *)reply; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq) continue; /* a stale answer */
      if (h->nlmsg_type == NLMSG_ERROR) return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
      /* A dump the kernel saw change under it may have missed a link: read to its end, then the caller asks again. */
      if (h->nlmsg_flags & NLM_F_DUMP_INTR) intr = 1;
      if (h->nlmsg_type == NLMSG_DONE) {
        /* A dump the kernel cut short says why in DONE's payload. */
        int err = h->nlmsg_len >= NLMSG_LENGTH(sizeof(int)) ? *(int *)NLMSG_DATA(h) : 0;
        return err < 0 ? err : intr ? -EAGAIN : 0;
      }
      if (h->nlmsg_type != RTM_NEWLINK) continue;
      struct nl_link l;
      parse_link(h, &l);
      each(&l, ctx);
      if (!dump) return 0;
    }
  }
}

static int read_links(int fd, unsigned seq, int dump, void (*each)(const struct nl_link *, void *), void *ctx) {
  size_t size = 65536; /* the most a dump's batch holds */
  char *reply = malloc(size);
  if (!reply) return -ENOMEM;
  int rc = read_links_into(fd, reply, size, seq, dump, each, ctx);
  free(reply);
  return rc;
}

static void copy_one(const struct nl_link *l, void *ctx) { *(struct nl_link *)ctx = *l; }

int nl_link_get(int fd, const char *name, struct nl_link *out) {
  size_t len = strlen(name);
  if (len == 0 || len >= IFNAMSIZ) return -ENODEV;
  struct msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  start(&m, RTM_GETLINK, 0, &ifi, sizeof ifi);
  m.h.nlmsg_flags = NLM_F_REQUEST; /* the link is the answer, no ack */
  attr(&m, IFLA_IFNAME, name, len + 1);
  int rc = send_to_kernel(fd, &m);
  return rc < 0 ? rc : read_links(fd, m.h.nlmsg_seq, 0, copy_one, out);
}

int nl_link_each(int fd, void (*each)(const struct nl_link *link, void *ctx), void *ctx) {
  struct msg m;
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  start(&m, RTM_GETLINK, 0, &ifi, sizeof ifi);
  m.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  int rc = send_to_kernel(fd, &m);
  return rc < 0 ? rc : read_links(fd, m.h.nlmsg_seq, 1, each, ctx);
}

int disable_ipv6(const char *ifname) {
  char path[128];
  snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -errno; /* no IPv6 in this kernel: nothing to disable */
  ssize_t n = write(fd, "1", 1);
  int err = errno;
  close(fd);
  return n == 1 ? 0 : -err;
}
