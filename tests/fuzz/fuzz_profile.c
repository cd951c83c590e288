/* fuzz_profile — libFuzzer harness for the lib/profile parser.
 *
 * Input layout: 1 header byte, then the file contents.
 *   byte 0  bit 0: read through profile_load() from a memfd (the whole
 *           bytes, NULs included); else profile_parse() over a NUL-terminated
 *           copy.  bits 1-7: the callback rejects keys whose first byte
 *           modulo 8 is that value modulo 8 (so both answers are exercised).
 * Checked (profile.h):
 *   - each setting has a key of [a-z0-9-]+, given once per file, and a
 *     non-empty value without a newline or surrounding blanks;
 *   - the result is 0 with nothing written on the error stream, or -1 with
 *     exactly one line "NAME:..." (NAME being the file name given).
 * Seed corpus: tests/fuzz/corpus/fuzz_profile/ (the workloads/profiles files
 * behind a header byte, and a few broken files). */
#include "profile.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_KEYS 512

struct seen {
    char *keys[MAX_KEYS];   /* keys accepted so far (copies) */
    int n;
    unsigned reject;        /* reject keys with key[0] % 8 == reject */
};

static int setting(void *ctx, const char *key, const char *value, char *err,
                   size_t errlen)
{
    struct seen *s = ctx;
    if (*key == '\0' || *value == '\0' || strchr(value, '\n'))
        abort();
    for (const char *c = key; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
            abort();
    size_t vl = strlen(value);
    if (value[0] == ' ' || value[0] == '\t' || value[vl - 1] == ' ' || value[vl - 1] == '\t')
        abort();
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->keys[i], key) == 0)
            abort();                   /* the parser lets a key through twice */
    if ((unsigned char)key[0] % 8 == s->reject) {
        snprintf(err, errlen, "unknown key '%s'", key);
        return -1;
    }
    if (s->n < MAX_KEYS && (s->keys[s->n] = strdup(key)) != NULL)
        s->n++;
    return 0;
}

static int run_load(const uint8_t *data, size_t size, struct seen *s, FILE *errs,
                    char *name, size_t namelen)
{
    int fd = memfd_create("fuzz_profile", 0);
    if (fd < 0)
        return -2;
    if (size > 0 && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return -2;
    }
    snprintf(name, namelen, "/proc/self/fd/%d", fd);
    int rc = profile_load(name, setting, s, errs);
    close(fd);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    struct seen s = { .n = 0, .reject = (data[0] >> 1) % 8 };
    char *msgs = NULL, name[64] = "fuzz.conf";
    size_t msglen = 0;
    FILE *errs = open_memstream(&msgs, &msglen);
    if (errs == NULL)
        return 0;
    int rc;
    if (data[0] & 1) {
        rc = run_load(data + 1, size - 1, &s, errs, name, sizeof name);
    } else {
        char *text = malloc(size);     /* exact size: ASan sees reads past the NUL */
        if (text == NULL) {
            fclose(errs);
            free(msgs);
            return 0;
        }
        memcpy(text, data + 1, size - 1);
        text[size - 1] = '\0';
        rc = profile_parse(text, name, setting, &s, errs);
        free(text);
    }
    fclose(errs);
    if (rc == 0 && msglen != 0)
        abort();                       /* success, yet a message */
    if (rc == -1) {
        size_t nl = strlen(name);
        if (msglen < nl + 2 || strncmp(msgs, name, nl) != 0 || msgs[nl] != ':' ||
            msgs[msglen - 1] != '\n' || memchr(msgs, '\n', msglen) != msgs + msglen - 1)
            abort();                   /* not exactly one "NAME:..." line */
    }
    if (rc != 0 && rc != -1 && rc != -2)
        abort();
    for (int i = 0; i < s.n; i++)
        free(s.keys[i]);
    free(msgs);
    return 0;
}
