/* Unit tests for lib/json: the escaping every JSON string goes through
 * (quotes, backslashes, control characters, NUL, UTF-8 kept, bytes that are
 * not UTF-8 replaced by U+FFFD). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* What json_write_bytes prints for len bytes (caller frees). */
static char *written(const char *s, size_t len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    assert_non_null(f);
    json_write_bytes(f, s, len);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void check(const char *in, size_t len, const char *want)
{
    char *got = written(in, len);
    if (strcmp(got, want) != 0)
        fail_msg("escaping %zu bytes: want %s, got %s", len, want, got);
    free(got);
}

#define CHECK(lit, want) check(lit, sizeof lit - 1, want)

static void test_specials(void **state)
{
    (void)state;
    CHECK("", "\"\"");
    CHECK("mx.example.org", "\"mx.example.org\"");
    CHECK("a\"b", "\"a\\\"b\"");
    CHECK("a\\b", "\"a\\\\b\"");
    CHECK("tab\there", "\"tab\\there\"");
    CHECK("\r\n\b\f", "\"\\r\\n\\b\\f\"");
    CHECK("\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"");
    CHECK("a\0b", "\"a\\u0000b\"");
    CHECK("/", "\"/\"");
}

static void test_utf8(void **state)
{
    (void)state;
    CHECK("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7\"");
    CHECK("\xff", "\"\\ufffd\"");                   /* never valid */
    CHECK("a\xc3", "\"a\\ufffd\"");                 /* cut short */
    CHECK("\xc0\xaf", "\"\\ufffd\\ufffd\"");        /* overlong '/' */
    CHECK("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\""); /* overlong */
    CHECK("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""); /* a surrogate */
    CHECK("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* above U+10FFFF */
    CHECK("\xe2\x82x", "\"\\ufffd\\ufffdx\"");      /* a bad continuation */
}

static void test_string_null(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    assert_non_null(f);
    json_write_string(f, NULL);
    fputc(' ', f);
    json_write_string(f, "x\"y");
    assert_int_equal(fclose(f), 0);
    assert_string_equal(buf, "null \"x\\\"y\"");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specials),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_string_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
