/*
 * Minimal rtnetlink: just what a session's network needs, without a process
 * spawn per step. Every call returns 0 or -errno.
 */
#ifndef ENCLAVE_NETLINK_H
#define ENCLAVE_NETLINK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int nl_open(void);

/* veth pair: host end in our netns, peer created directly in peer_pid's. */
int nl_create_veth(int fd, const char *host, const char *peer, int peer_pid, const unsigned char mac[6], int mtu);

/* Bridge with this name (EEXIST if it exists). */
int nl_create_bridge(int fd, const char *name);

/* Set a link's MAC address. */
int nl_link_set_mac(int fd, int ifindex, const unsigned char mac[6]);

/* Up, optionally enslaved to master_ifindex (0: leave as is). */
int nl_link_up(int fd, int ifindex, int master_ifindex);

/* Bridge-port isolation: isolated ports cannot talk to each other. */
int nl_brport_isolate(int fd, int ifindex);

/* IPv4 address (network byte order) with prefix length. EEXIST if present. */
int nl_addr_add(int fd, int ifindex, uint32_t addr, int prefix);

/* Default route via gw (network byte order) on ifindex. */
int nl_route_default(int fd, uint32_t gw, int ifindex);

/* On-link route to dst/32 (scope link), e.g. the gateway of a /32 address. */
int nl_route_link(int fd, uint32_t dst, int ifindex);

int nl_link_del(int fd, int ifindex);

/* What the daemon reads of a link of its netns. Read through rtnetlink, not
 * /sys/class/net: sysfs shows the netns of whoever mounted it, and a daemon
 * entered into a netns of its own (nsenter --net, a fleet node) keeps the
 * host's mount of it. */
struct nl_link {
  int index;
  int mtu;
  int master; /* ifindex of the bridge it is a port of; 0: none */
  char name[16];
  int has_stats;
  uint64_t rx_bytes, tx_bytes;
};

/* One link by name: 0 with *out filled, -ENODEV if there is none. */
int nl_link_get(int fd, const char *name, struct nl_link *out);

/* Every link of our netns, each passed to each(); 0 or -errno. -EAGAIN:
 * links changed during the dump (one may have been missed): ask again. */
int nl_link_each(int fd, void (*each)(const struct nl_link *link, void *ctx), void *ctx);

/* Write "1" to /proc/sys/net/ipv6/conf/<ifname>/disable_ipv6 (of our netns). */
int disable_ipv6(const char *ifname);

#ifdef __cplusplus
}
#endif

#endif
