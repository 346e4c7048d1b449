/*
 * fuzz_netmask.c - address range lists (--webhook-allow, --webhook-deny): netmask_list_parse.
 *
 * Checks: a refusal is ERR_INVALID with a message; an accepted list has families and prefix
 * lengths that fit, its networks have no host bit set, each range holds its own network
 * address (so an IPv4-mapped range is one that matches), and a copy matches the same.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "common/netmask.h"
#include "fuzz.h"

static void sockaddr_of(const struct netmask *m, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (m->family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, m->addr, 4);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, m->addr, 16);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    if (!text) return 0;
    struct netmask_list l = {0};
    struct err e = ERR_INIT;
    int rc = netmask_list_parse(text, "--webhook-deny", &l, &e);
    free(text);
    if (rc) {
        FUZZ_CHECK(rc == ERR_INVALID && e.msg[0]);
        netmask_list_release(&l);
        return 0;
    }
    struct netmask_list copy = {0};
    netmask_list_copy(&copy, &l);
    FUZZ_CHECK(copy.n == l.n);
    for (size_t i = 0; i < l.n; i++) {
        const struct netmask *m = &l.m[i];
        FUZZ_CHECK(m->family == AF_INET || m->family == AF_INET6);
        int width = m->family == AF_INET ? 32 : 128;
        FUZZ_CHECK(m->bits >= 0 && m->bits <= width);
        for (int b = m->bits; b < width; b++)
            FUZZ_CHECK(!(m->addr[b / 8] & (0x80 >> (b % 8))));
        struct sockaddr_storage ss;
        sockaddr_of(m, &ss);
        /* Addresses are matched as IPv4 when they are IPv4-mapped: a range within
           ::ffff:0:0/96 must have become the IPv4 range, or it would never match. Only a wider
           one (::/0) may start with a mapped address, which is then matched as IPv4. */
        bool mapped = m->family == AF_INET6 &&
                      IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)(const void *)m->addr);
        if (mapped)
            FUZZ_CHECK(m->bits < 96);
        else
            FUZZ_CHECK(netmask_list_has(&l, (struct sockaddr *)&ss));
        FUZZ_CHECK(netmask_list_has(&copy, (struct sockaddr *)&ss) ==
                   netmask_list_has(&l, (struct sockaddr *)&ss));
        char buf[INET6_ADDRSTRLEN];
        netmask_addr_text((struct sockaddr *)&ss, buf, sizeof(buf));
        FUZZ_CHECK(memchr(buf, '\0', sizeof(buf)));
    }
    netmask_list_release(&copy);
    netmask_list_release(&l);
    return 0;
}
