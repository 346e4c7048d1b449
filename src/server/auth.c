/*
 * auth.c - bearer tokens: made from 32 random bytes, kept only as their
 * SHA-256, checked by the router on every /v1/ call.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/xalloc.h"
#include "server/server.h"

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static EVP_MD *sha256;

static void fetch_sha256(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!sha256)
        die("OpenSSL has no SHA-256");
}

void auth_token_hash(const char *token, char *hash)
{
    /* fetched once: EVP_sha256() looks the algorithm up in the providers at every digest
       (OpenSSL 3), and a token is hashed on every call to the API */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fetch_sha256);
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(token, strlen(token), md, &n, sha256, NULL);
    hex(md, 32, hash);
}

void auth_token_new(char *out, char *hash)
{
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        die("cannot read random bytes for a token");
    memcpy(out, "drv_", 4);
    hex(raw, sizeof(raw), out + 4);
    auth_token_hash(out, hash);
}

#define AUTH_CACHE_SIZE 64

struct auth_cache_entry {
    char hash[AUTH_HASH_LEN];
    int role;
    char name[128];
    int64_t expires_ms;
};

struct auth_cache {
    struct auth_cache_entry e[AUTH_CACHE_SIZE];
    unsigned next; /* round-robin replacement */
};

static struct auth_cache_entry *cache_find(struct server *s, const char *hash, int64_t now)
{
    if (!s->auth_cache)
        return NULL;
    for (int i = 0; i < AUTH_CACHE_SIZE; i++) {
        struct auth_cache_entry *c = &s->auth_cache->e[i];
        if (c->expires_ms > now && !memcmp(c->hash, hash, AUTH_HASH_LEN))
            return c;
    }
    return NULL;
}

static void cache_add(struct server *s, const char *hash, int role, const char *name,
                      int64_t now)
{
    if (!s->auth_cache)
        s->auth_cache = xcalloc(1, sizeof(*s->auth_cache));
    struct auth_cache_entry *c = &s->auth_cache->e[s->auth_cache->next++ % AUTH_CACHE_SIZE];
    memcpy(c->hash, hash, AUTH_HASH_LEN);
    c->role = role;
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->expires_ms = now + AUTH_CACHE_TTL_MS;
}

void auth_cache_forget_all(struct server *s)
{
    if (s->auth_cache)
        memset(s->auth_cache, 0, sizeof(*s->auth_cache));
}

void auth_cache_free(struct server *s)
{
    free(s->auth_cache);
    s->auth_cache = NULL;
}

int auth_check(void *app, const char *token, int *role, char *name, size_t n, struct err *e)
{
    char hash[AUTH_HASH_LEN];
    if (strlen(token) > 256)
        return err_set(e, ERR_UNAUTH, "invalid token");
    auth_token_hash(token, hash);
    return auth_check_hash(app, hash, role, name, n, e);
}

int auth_check_hash(struct server *s, const char *hash, int *role, char *name, size_t n,
                    struct err *e)
{
    int64_t now = time_now_ms();
    struct auth_cache_entry *c = cache_find(s, hash, now);
    if (c) {
        *role = c->role;
        snprintf(name, n, "%s", c->name);
        return 0;
    }
    struct err fe = ERR_INIT;
    int rc = store_token_find(s->reads, hash, role, name, n, &fe);
    if (rc == ERR_NOTFOUND)
        return err_set(e, ERR_UNAUTH, "invalid token");
    if (rc) {
        *e = fe;
        return rc;
    }
    cache_add(s, hash, *role, name, now);
    return 0;
}

int auth_bootstrap(struct server *s, struct err *e)
{
    char *path = xasprintf("%s/%s", s->data_dir, DROVER_ADMIN_TOKEN_FILE);
    int64_t admins = 0;
    int rc = store_token_count(s->reads, ROLE_ADMIN, &admins, e);
    if (rc || (admins > 0 && access(path, F_OK) == 0))
        goto out;

    /* First start, or the token file was removed: make a new admin token. */
    char token[AUTH_TOKEN_LEN], hash[AUTH_HASH_LEN], name[64];
    auth_token_new(token, hash);
    if (admins)
        snprintf(name, sizeof(name), "admin-%lld", (long long)time_now_ms());
    else
        snprintf(name, sizeof(name), "admin");
    if ((rc = store_begin(s->reads, e)))
        goto out;
    if ((rc = store_token_insert(s->reads, name, ROLE_ADMIN, hash, e)) ||
        (rc = store_commit(s->reads, e))) {
        store_rollback(s->reads);
        goto out;
    }
    if ((rc = fs_write_secret(path, token, e)))
        goto out;
    log_info("created admin token '%s' in %s", name, path);
out:
    free(path);
    return rc;
}
