/* Unit tests for what keeps an in-flight async email small (issue 16):
 *  - the message rendered late (mailer_summarize, then mailer_render from
 *    the summary) is workload_build's, byte for byte, with its hash, for
 *    several parameter sets; the recipients' list rebuilt for a retry
 *    (workload_recipients) is workload_build's;
 *  - smtp_client parses a reply line whole in a read in place and keeps a
 *    buffer only for a line cut by a read: the line limit holds the same
 *    either way, at every cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mailer.h"
#include "smtp_client.h"
#include "summary.h"

static void test_late_render(void **state)
{
    (void)state;
    const struct workload_params ps[] = {
        { .seed = 1, .events = 20, .recipients = 1, .body_bytes = 0, .chain = 1 },
        { .seed = 42, .events = 1000, .recipients = 3, .body_bytes = 5000, .chain = 1 },
        { .seed = 7, .events = 0, .recipients = 5, .body_bytes = 300, .chain = 4 },
    };
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        for (uint64_t index = 0; index < 6; index++) {
            struct workload_email whole, late;
            struct workload_summary s;
            assert_int_equal(workload_build(&ps[i], index, &whole), 0);
            assert_int_equal(mailer_summarize(&ps[i], index, &s), 0);
            assert_int_equal(mailer_render(&ps[i], &s, &late), 0);
            assert_int_equal(late.len, whole.len);
            assert_memory_equal(late.data, whole.data, whole.len);
            assert_int_equal(late.hash, whole.hash);
            char **r = workload_recipients(ps[i].recipients);
            assert_non_null(r);
            for (int k = 0; k < whole.nrcpt; k++)
                assert_string_equal(r[k], whole.rcpt[k]);
            free(r);
            workload_email_free(&whole);
            workload_email_free(&late);
        }
}

/* The greeting line with content of 62 + extra bytes, max_line 64, fed in
 * two pieces cut at `cut`: accepted (extra 0) or a protocol error (extra 1),
 * wherever the cut. */
static void test_line_cut_anywhere(void **state)
{
    (void)state;
    for (int extra = 0; extra <= 1; extra++)
        for (size_t cut = 0; cut <= (size_t)(64 + extra); cut++) {
            struct smtp_client_config cfg = { .max_line = 64 };
            struct smtp_client *c = smtp_client_new(&cfg);
            assert_non_null(c);
            char line[80];
            memset(line, 'x', sizeof line);
            memcpy(line, "220 ", 4);
            memcpy(line + 62 + extra, "\r\n", 2);
            smtp_client_feed(c, line, cut);
            smtp_client_feed(c, line + cut, 64 + (size_t)extra - cut);
            struct smtp_client_event ev;
            bool got = smtp_client_next_event(c, &ev);
            if (extra) {
                assert_true(got);
                assert_int_equal(ev.type, SMTP_CLIENT_PROTOCOL_ERROR);
            } else {
                const char *out;
                size_t n = smtp_client_output(c, &out);
                assert_int_equal(n, strlen("EHLO localhost\r\n"));
                assert_memory_equal(out, "EHLO localhost\r\n", n);
                assert_false(got);
            }
            smtp_client_free(c);
        }
}

/* Two replies in one read, then one cut across three reads, then a whole
 * one: the same dialogue as fed whole (the in-place and the kept paths
 * alternate on one client). */
static void test_lines_mixed(void **state)
{
    (void)state;
    const char *in = "220 hi\r\n250-mock\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
    const size_t cuts[][3] = { { 8, 20, 30 }, { 1, 2, 3 }, { 7, 8, 9 }, { 47, 48, 49 } };
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        struct smtp_client_config cfg = { .max_line = 64, .pipelining = true };
        struct smtp_client *c = smtp_client_new(&cfg);
        size_t at = 0, len = strlen(in);
        for (int j = 0; j < 3; j++) {
            smtp_client_feed(c, in + at, cuts[k][j] - at);
            at = cuts[k][j];
        }
        smtp_client_feed(c, in + at, len - at);
        struct smtp_client_event ev;
        assert_true(smtp_client_next_event(c, &ev));
        assert_int_equal(ev.type, SMTP_CLIENT_READY);
        assert_true(ev.pipelining);
        smtp_client_free(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_late_render),
        cmocka_unit_test(test_line_cut_anywhere),
        cmocka_unit_test(test_lines_mixed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
