/*
 * netmask.c - see netmask.h.
 */
#include "common/netmask.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

static int parse_one(const char *item, struct netmask *m)
{
    char host[64];
    const char *slash = strchr(item, '/');
    size_t len = slash ? (size_t)(slash - item) : strlen(item);
    if (len == 0 || len >= sizeof(host)) return -1;
    memcpy(host, item, len);
    host[len] = '\0';
    memset(m, 0, sizeof(*m));
    if (inet_pton(AF_INET, host, m->addr) == 1)
        m->family = AF_INET;
    else if (inet_pton(AF_INET6, host, m->addr) == 1)
        m->family = AF_INET6;
    else
        return -1;
    int max = m->family == AF_INET ? 32 : 128;
    m->bits = max;
    if (slash) {
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || b < 0 || b > max) return -1;
        m->bits = (int)b;
    }
    for (int i = m->bits; i < max; i++) /* the host bits go */
        m->addr[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
    /* Mapped addresses are matched as IPv4 (addr_of): a range of them (::ffff:10.0.0.0/104)
       is that IPv4 range, or it would never match anything. */
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (m->family == AF_INET6 && m->bits >= 96 && !memcmp(m->addr, mapped, sizeof(mapped))) {
        memmove(m->addr, m->addr + 12, 4);
        memset(m->addr + 4, 0, 12);
        m->family = AF_INET;
        m->bits -= 96;
    }
    return 0;
}

int netmask_list_parse(const char *list, const char *what, struct netmask_list *out,
                       struct err *e)
{
    struct netmask_list l = {0};
    if (list && *list && strcmp(list, "none")) {
        char *copy = xstrdup(list), *save = NULL;
        for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            while (*item == ' ') item++;
            size_t n = strlen(item);
            while (n && item[n - 1] == ' ') item[--n] = '\0';
            l.m = xrealloc(l.m, (l.n + 1) * sizeof(*l.m));
            if (parse_one(item, &l.m[l.n]) != 0) {
                err_set(e, ERR_INVALID,
                        "%s: '%s' is not an address range (like 10.0.0.0/8, fd00::/8 or "
                        "192.0.2.1)", what, item);
                free(copy);
                free(l.m);
                return ERR_INVALID;
            }
            l.n++;
        }
        free(copy);
    }
    netmask_list_release(out);
    *out = l;
    return 0;
}

void netmask_list_copy(struct netmask_list *dst, const struct netmask_list *src)
{
    dst->n = src->n;
    dst->m = src->n ? xmalloc(src->n * sizeof(*src->m)) : NULL;
    if (src->n) memcpy(dst->m, src->m, src->n * sizeof(*src->m));
}

void netmask_list_release(struct netmask_list *l)
{
    free(l->m);
    l->m = NULL;
    l->n = 0;
}

/* sa's family and address bytes, an IPv4-mapped IPv6 address as its IPv4 one. */
static int addr_of(const struct sockaddr *sa, const unsigned char **bytes)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa->sa_family == AF_INET) {
        *bytes = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        return AF_INET;
    }
    if (sa->sa_family != AF_INET6) return -1;
    const unsigned char *a = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!memcmp(a, mapped, sizeof(mapped))) {
        *bytes = a + 12;
        return AF_INET;
    }
    *bytes = a;
    return AF_INET6;
}

bool netmask_list_has(const struct netmask_list *l, const struct sockaddr *sa)
{
    const unsigned char *a = NULL;
    int family = addr_of(sa, &a);
    if (family < 0) return false;
    for (size_t i = 0; i < l->n; i++) {
        const struct netmask *m = &l->m[i];
        if (m->family != family) continue;
        int full = m->bits / 8, rest = m->bits % 8;
        if (memcmp(a, m->addr, (size_t)full)) continue;
        if (rest && ((a[full] ^ m->addr[full]) & (0xff00u >> rest) & 0xff)) continue;
        return true;
    }
    return false;
}

void netmask_addr_text(const struct sockaddr *sa, char *out, size_t n)
{
    const unsigned char *a = NULL;
    int family = addr_of(sa, &a);
    if (family < 0 || !inet_ntop(family, a, out, (socklen_t)n)) snprintf(out, n, "?");
}
