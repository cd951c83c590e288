/* json — the one place that writes a string into JSON.
 *
 * Every string a mailbench program puts in its JSON (a path, a host name, a
 * server's reply text, a fixed name) goes through json_write_string(), so a
 * quote, a backslash, a control character or a byte that is not UTF-8 can
 * never make the file unreadable.  Numbers are printed by the callers.
 *
 * The output is RFC 8259 text: '"' and '\\' are escaped, control characters
 * (U+0000..U+001F) are written as \b \f \n \r \t or \u00XX, and every byte
 * that is not part of a well-formed UTF-8 sequence (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF) becomes \ufffd, the
 * replacement character.  Valid UTF-8 is copied as it is. */
#ifndef MAILBENCH_JSON_H
#define MAILBENCH_JSON_H

#include <stddef.h>
#include <stdio.h>

/* Writes s as a JSON string, quotes included; NULL is written as null. */
void json_write_string(FILE *f, const char *s);

/* The same for len bytes that may hold NULs (written as \u0000). */
void json_write_bytes(FILE *f, const char *s, size_t len);

#endif
