/* digest — see digest.h. */
#include "digest.h"

#include <stdio.h>
#include <string.h>

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME  0x100000001b3ULL

void digest_init(digest_ctx *c) { c->h = FNV_OFFSET; }

void digest_update(digest_ctx *c, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = c->h;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    c->h = h;
}

uint64_t digest_final(const digest_ctx *c)
{
    /* splitmix64's finaliser: spreads every input bit over all output bits. */
    uint64_t z = c->h;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t digest_hash(const void *data, size_t len)
{
    digest_ctx c;
    digest_init(&c);
    digest_update(&c, data, len);
    return digest_final(&c);
}

char *digest_hex(uint64_t d, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)d);
    return out;
}

int digest_parse_hex(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (s == NULL || strlen(s) != 16)
        return -1;
    for (int i = 0; i < 16; i++) {
        char ch = s[i];
        unsigned x;
        if (ch >= '0' && ch <= '9') x = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') x = (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') x = (unsigned)(ch - 'A' + 10);
        else return -1;
        v = (v << 4) | x;
    }
    *out = v;
    return 0;
}
