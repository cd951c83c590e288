/* profile — the "key = value" file format of workloads/profiles/NAME.conf, used
 * by the models (lib/cli) and by smtp-mock.
 *
 * Format, one setting per line:
 *     # a comment line
 *     emails      = 10k        # a trailing comment (after whitespace)
 *     body-bytes  = 100KB
 * Blank lines and lines starting with '#' are ignored; whitespace around
 * keys and values is trimmed; keys are [a-z0-9-] (the long option names
 * without "--"); a value is everything after '=' up to a '#' that follows
 * whitespace, or the end of the line.  Values may not be empty.  A key may
 * appear once per file.
 *
 * The parser knows no keys: it calls back for each setting, and the caller
 * says whether it is valid.  Errors are reported as "FILE:LINE: message" on
 * the given stream; the caller then exits with status 2. */
#ifndef MAILBENCH_PROFILE_H
#define MAILBENCH_PROFILE_H

#include <stddef.h>
#include <stdio.h>

/* Called for each "key = value".  Returns 0 to accept it, or -1 after
 * writing a message (no file, no line number, no newline) into err[errlen],
 * e.g. "unknown key 'foo'" or "bad value '10x' for 'latency' (a duration)". */
typedef int (*profile_setting_fn)(void *ctx, const char *key, const char *value,
                                  char *err, size_t errlen);

/* Parses the file at `path`.  Returns 0, or -1 after printing one
 * "PATH:LINE: message" (or "PATH: cannot open: reason") line on `errs`. */
int profile_load(const char *path, profile_setting_fn fn, void *ctx, FILE *errs);

/* The same over text in memory (NUL-terminated); `name` stands for the file
 * name in messages. */
int profile_parse(const char *text, const char *name, profile_setting_fn fn, void *ctx,
                  FILE *errs);

/* While a profile_setting_fn runs: the line number of its setting (1-based;
 * 0 outside a callback).  Per thread.  Lets a caller remember where each key
 * was set, to name that line in a check that spans several keys. */
int profile_current_line(void);

/* Longest line accepted, in bytes (longer ones are an error). */
#define PROFILE_MAX_LINE 1024

#endif
