/*
 * netmask.h - lists of address ranges (CIDR: 10.0.0.0/8, fd00::/8, 192.0.2.1), and whether
 * an address is in one: what webhooks may reach (--webhook-allow, --webhook-deny).
 *
 * An IPv4-mapped IPv6 address (::ffff:10.1.2.3) is matched as the IPv4 address it maps, so
 * that an IPv6 socket cannot reach a denied IPv4 range under another spelling.
 */
#ifndef DROVER_NETMASK_H
#define DROVER_NETMASK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "common/err.h"

struct netmask {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char addr[16];  /* the network, its host bits cleared */
    int bits;                /* prefix length */
};

struct netmask_list {
    struct netmask *m;
    size_t n;
};

/*
 * Parses a comma-separated list ("none" or "": empty) into *out (replacing it). A range
 * without "/N" is one address. ERR_INVALID naming `what` and the bad item.
 */
int netmask_list_parse(const char *list, const char *what, struct netmask_list *out,
                       struct err *e);
void netmask_list_release(struct netmask_list *l);
/* dst: a copy of src's ranges (dst's own are not freed). */
void netmask_list_copy(struct netmask_list *dst, const struct netmask_list *src);
/* True when sa (AF_INET or AF_INET6) is in one of the ranges. */
bool netmask_list_has(const struct netmask_list *l, const struct sockaddr *sa);
/* sa's address as text into out (INET6_ADDRSTRLEN bytes is enough). */
void netmask_addr_text(const struct sockaddr *sa, char *out, size_t n);

#endif
