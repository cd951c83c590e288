/* profile — parser of "key = value" files; see profile.h for the format. */
#include "profile.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Keys seen so far in one file, to refuse a key given twice (a typo that
 * would otherwise silently win or lose depending on its position). */
static _Thread_local int current_line;

int profile_current_line(void)
{
    return current_line;
}

struct seen { char **key; int *line; int n, cap; };

static int seen_check(struct seen *s, const char *key, int line)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->key[i], key) == 0)
            return s->line[i];
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 32;
        char **k = realloc(s->key, (size_t)cap * sizeof *k);
        if (k)
            s->key = k;
        int *l = realloc(s->line, (size_t)cap * sizeof *l);
        if (l)
            s->line = l;
        if (!k || !l)
            return 0;           /* out of memory: skip the duplicate check */
        s->cap = cap;
    }
    if ((s->key[s->n] = strdup(key)) != NULL)
        s->line[s->n++] = line;
    return 0;
}

static void seen_free(struct seen *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->key[i]);
    free(s->key);
    free(s->line);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Parses one line in place.  Returns 0 (setting or nothing), -1 with err set. */
static int parse_line(char *line, int lineno, struct seen *seen, profile_setting_fn fn,
                      void *ctx, char *err, size_t errlen)
{
    for (char *c = line; *c; c++)       /* a '#' after whitespace starts a comment */
        if (*c == '#' && (c == line || c[-1] == ' ' || c[-1] == '\t')) {
            *c = '\0';
            break;
        }
    char *s = trim(line);
    if (*s == '\0')
        return 0;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        snprintf(err, errlen, "expected 'key = value', got '%s'", s);
        return -1;
    }
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    if (*key == '\0') {
        snprintf(err, errlen, "missing key before '='");
        return -1;
    }
    for (char *c = key; *c; c++)
        if (!(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '-')) {
            snprintf(err, errlen, "bad key '%s' (letters a-z, digits and '-' only)", key);
            return -1;
        }
    if (*value == '\0') {
        snprintf(err, errlen, "missing value for '%s'", key);
        return -1;
    }
    int first = seen_check(seen, key, lineno);
    if (first) {
        snprintf(err, errlen, "'%s' set twice (first on line %d)", key, first);
        return -1;
    }
    current_line = lineno;
    int rc = fn(ctx, key, value, err, errlen);
    current_line = 0;
    return rc;
}

int profile_parse(const char *text, const char *name, profile_setting_fn fn, void *ctx,
                  FILE *errs)
{
    struct seen seen = { NULL, NULL, 0, 0 };
    char line[PROFILE_MAX_LINE + 1], err[PROFILE_MAX_LINE + 128];
    int lineno = 0, rc = 0;
    for (const char *p = text; *p && rc == 0; ) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        lineno++;
        if (n > PROFILE_MAX_LINE) {
            snprintf(err, sizeof err, "line longer than %d bytes", PROFILE_MAX_LINE);
            rc = -1;
        } else {
            memcpy(line, p, n);
            line[n] = '\0';
            err[0] = '\0';
            rc = parse_line(line, lineno, &seen, fn, ctx, err, sizeof err);
        }
        if (rc != 0)
            fprintf(errs, "%s:%d: %s\n", name, lineno, err[0] ? err : "invalid setting");
        p = nl ? nl + 1 : p + n;
    }
    seen_free(&seen);
    return rc;
}

int profile_load(const char *path, profile_setting_fn fn, void *ctx, FILE *errs)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(errs, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *t = realloc(text, cap);
            if (t == NULL) {
                free(text);
                fclose(f);
                fprintf(errs, "%s: out of memory\n", path);
                return -1;
            }
            text = t;
        }
        memcpy(text + len, chunk, n);
        len += n;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad || (text && memchr(text, '\0', len))) {
        fprintf(errs, "%s: %s\n", path, bad ? "read error" : "not a text file");
        free(text);
        return -1;
    }
    int rc = profile_parse(text ? (text[len] = '\0', text) : "", path, fn, ctx, errs);
    free(text);
    return rc;
}
