/* Unit tests for workloads/mock_stats: duplicates are found on every byte of
 * the Message-ID (a NUL inside it included), the digest sums first copies;
 * the JSON carries the per-command counts and the reply batches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mock_stats.h"

static struct smtp_server_message msg(const char *id, size_t id_len, uint64_t hash)
{
    struct smtp_server_message m = { .mail_from = "a@x", .nrcpts = 1, .size = 10, .hash = hash,
                              .message_id = id, .message_id_len = id_len };
    return m;
}

static void test_duplicates_on_every_byte(void **state)
{
    (void)state;
    struct mock_stats st;
    mock_stats_init(&st);
    struct smtp_server_message a = msg("<a\0b@x>", 7, 1), b = msg("<a\0c@x>", 7, 2),
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

static void test_json_commands(void **state)
{
    (void)state;
    struct mock_stats st;
    mock_stats_init(&st);
    for (int i = 0; i < SMTP_SERVER_CMD_COUNT; i++)
        st.counts.commands[i] = (uint64_t)(i + 1) * 10;
    st.counts.reply_batches = 77;
    char dir[] = "/tmp/mock_stats_XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/stats.json", dir);
    assert_int_equal(mock_stats_write(&st, path, "{}", 1.0), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    unlink(path);
    rmdir(dir);
    if (strstr(text, "\"commands\": {\"EHLO\": 10, \"HELO\": 20, \"MAIL\": 30, "
               "\"RCPT\": 40, \"DATA\": 50, \"RSET\": 60, \"NOOP\": 70, \"QUIT\": 80, "
               "\"other\": 90},\n  \"reply_batches\": 77,\n") == NULL)
        fail_msg("no commands / reply_batches in:\n%s", text);
    mock_stats_free(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duplicates_on_every_byte),
        cmocka_unit_test(test_json_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
