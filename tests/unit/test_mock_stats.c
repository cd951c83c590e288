/* Unit tests for workloads/mock_stats: duplicates are found on every byte of
 * the Message-ID (a NUL inside it included), the digest sums first copies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "mock_stats.h"

static smtp_server_message msg(const char *id, size_t id_len, uint64_t hash)
{
    smtp_server_message m = { .mail_from = "a@x", .nrcpts = 1, .size = 10, .hash = hash,
                              .message_id = id, .message_id_len = id_len };
    return m;
}

static void test_duplicates_on_every_byte(void **state)
{
    (void)state;
    mock_stats st;
    mock_stats_init(&st);
    smtp_server_message a = msg("<a\0b@x>", 7, 1), b = msg("<a\0c@x>", 7, 2),
                        a2 = msg("<a\0b@x>", 7, 4), none = msg(NULL, 0, 8),
                        shorter = msg("<a", 2, 16);
    assert_int_equal(mock_stats_message(&st, &a), 1);
    assert_int_equal(mock_stats_message(&st, &b), 1);    /* differs after the NUL */
    assert_int_equal(mock_stats_message(&st, &shorter), 1); /* the bytes before it */
    assert_int_equal(mock_stats_message(&st, &a2), 0);   /* the same bytes: a duplicate */
    assert_int_equal(mock_stats_message(&st, &none), 1); /* no id: always a first copy */
    assert_int_equal(mock_stats_message(&st, &none), 1);
    assert_int_equal(st.messages, 6);
    assert_int_equal(st.unique_messages, 5);
    assert_int_equal(st.digest, 1 + 2 + 16 + 8 + 8);
    mock_stats_free(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duplicates_on_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
