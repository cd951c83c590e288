/* json — see json.h. */
#include "json.h"

#include <string.h>

/* Length of the well-formed UTF-8 sequence at p (at most n bytes), or 0 if
 * p[0] does not start one (RFC 3629, table 3-7 of the Unicode standard). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;  /* range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;        /* no overlong forms */
        if (c == 0xed) hi = 0x9f;        /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;        /* no overlong forms */
        if (c == 0xf4) hi = 0x8f;        /* nothing above U+10FFFF */
    } else {
        return 0;                        /* 0x80..0xc1, 0xf5..0xff */
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

void json_write_bytes(FILE *f, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    fputc('"', f);
    while (p < end) {
        unsigned char c = *p;
        size_t n;
        switch (c) {
        case '"':  fputs("\\\"", f); p++; continue;
        case '\\': fputs("\\\\", f); p++; continue;
        case '\b': fputs("\\b", f); p++; continue;
        case '\f': fputs("\\f", f); p++; continue;
        case '\n': fputs("\\n", f); p++; continue;
        case '\r': fputs("\\r", f); p++; continue;
        case '\t': fputs("\\t", f); p++; continue;
        default:   break;
        }
        if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
            p++;
        } else if ((n = utf8_len(p, (size_t)(end - p))) == 0) {
            fputs("\\ufffd", f);         /* not UTF-8: one replacement per byte */
            p++;
        } else {
            fwrite(p, 1, n, f);
            p += n;
        }
    }
    fputc('"', f);
}

void json_write_string(FILE *f, const char *s)
{
    if (s == NULL)
        fputs("null", f);
    else
        json_write_bytes(f, s, strlen(s));
}
