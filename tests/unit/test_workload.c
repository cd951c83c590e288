/* Unit tests for workloads/summary: determinism, the golden message, sizes,
 * line rules, headers, chains, work growing with --events, thread safety and
 * the blocking call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "digest.h"
#include "summary.h"

#define DEFAULTS { 1, 1000, 1, 0, 1 }   /* seed, events, recipients, body_bytes, chain */

/* The renderer's SMTP-safe mark, checked a byte at a time: every CR
 * followed by LF, every LF preceded by CR, no line beginning with "." (the
 * SMTP client skips its scan for a marked email: a false mark would send a
 * dot line unstuffed). */
static bool smtp_safe_bytes(const char *d, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (d[i] == '\r' && !(i + 1 < len && d[i + 1] == '\n'))
            return false;
        if (d[i] == '\n' && !(i > 0 && d[i - 1] == '\r'))
            return false;
        if ((i == 0 || d[i - 1] == '\n') && d[i] == '.')
            return false;
    }
    return true;
}

static void assert_mark_true(const struct workload_email *e)
{
    assert_true(!e->smtp_safe || smtp_safe_bytes(e->data, e->len));
}

static void build(const struct workload_params *p, uint64_t i, struct workload_email *e)
{
    assert_int_equal(workload_build(p, i, e), 0);
    assert_non_null(e->data);
    assert_int_equal(strlen(e->data), e->len);
    assert_mark_true(e);
}

/* Every line ends in CRLF, no bare CR or LF, no line over 998 octets. */
static void assert_lines_ok(const char *d, size_t len)
{
    assert_true(len >= 2);
    assert_memory_equal(d + len - 2, "\r\n", 2);
    size_t line = 0;
    for (size_t i = 0; i < len; i++) {
        if (d[i] == '\r') {
            assert_true(i + 1 < len && d[i + 1] == '\n');
            assert_in_range(line, 0, 998);
            line = 0;
            i++;
        } else {
            assert_true(d[i] != '\n');
            line++;
        }
    }
}

/* The value of header `name` (first occurrence, header section only), or NULL. */
static const char *header(const struct workload_email *e, const char *name, int *count)
{
    const char *end = strstr(e->data, "\r\n\r\n"), *found = NULL;
    size_t n = strlen(name);
    *count = 0;
    for (const char *l = e->data; l && l < end; l = strstr(l, "\r\n"), l = l ? l + 2 : l) {
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            (*count)++;
            if (!found)
                found = l + n + 2;
        }
    }
    return found;
}

static void test_deterministic(void **state)
{
    (void)state;
    struct workload_params p = DEFAULTS;
    struct workload_email a, b, c;
    build(&p, 7, &a);
    build(&p, 7, &b);
    build(&p, 8, &c);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_int_equal(a.hash, b.hash);
    assert_int_equal(a.hash, digest_hash(a.data, a.len));
    assert_string_equal(a.message_id, "<mb.1.7@mailbench.test>");
    assert_string_not_equal(a.message_id, c.message_id);
    assert_true(a.len != c.len || memcmp(a.data, c.data, a.len) != 0);
    assert_true(a.hash != c.hash);
    workload_email_free(&c);
    p.seed = 2;                             /* another seed: another email */
    build(&p, 7, &c);
    assert_string_equal(c.message_id, "<mb.2.7@mailbench.test>");
    assert_true(a.hash != c.hash);
    workload_email_free(&a);
    workload_email_free(&b);
    workload_email_free(&c);
    workload_email_free(&c);                /* twice is harmless */
}

static char *read_golden(size_t *len)
{
    const char *paths[] = { "tests/golden/workload/seed1-email0.eml",
                            "../tests/golden/workload/seed1-email0.eml", NULL };
    for (int i = 0; paths[i]; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f)
            continue;
        char *buf = malloc(1 << 20);
        assert_non_null(buf);
        *len = fread(buf, 1, 1 << 20, f);
        fclose(f);
        return buf;
    }
    fail_msg("golden file tests/golden/workload/seed1-email0.eml not found (run from the top directory)");
    return NULL;
}

static void test_golden(void **state)
{
    (void)state;
    struct workload_params p = DEFAULTS;
    struct workload_email e;
    size_t glen = 0;
    char *golden = read_golden(&glen);
    build(&p, 0, &e);
    if (e.len != glen || memcmp(e.data, golden, glen) != 0) {
        size_t i = 0;
        while (i < glen && i < e.len && golden[i] == e.data[i])
            i++;
        fail_msg("render of seed 1 email 0 differs from the golden file at byte %zu "
                 "(lengths %zu vs %zu)", i, e.len, glen);
    }
    free(golden);
    workload_email_free(&e);
}

/* The Python port (workloads/summary.py, written from the
 * algorithm in summary.h) must produce the same bytes: proof that the spec
 * is complete and portable, for the Twisted reference model. */
static void test_python_port(void **state)
{
    (void)state;
    if (system("command -v python3 >/dev/null && test -f workloads/summary.py") != 0)
        skip();
    struct workload_params ps[] = { { 2, 0, 3, 0, 1 }, { 7, 10, 2, 5000, 3 },
                                    { 12345678901ULL, 20000, 5, 100000, 10 }, { 3, 1, 1, 1601, 2 } };
    uint64_t index[] = { 5, 4, 99, 1 };
    char *buf = malloc(1 << 20);
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "python3 workloads/summary.py --seed %llu --index %llu "
                 "--events %lld --recipients %d --body-bytes %llu --chain %lld",
                 (unsigned long long)ps[k].seed, (unsigned long long)index[k], ps[k].events,
                 ps[k].recipients, (unsigned long long)ps[k].body_bytes, ps[k].chain);
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        size_t n = fread(buf, 1, 1 << 20, f);
        assert_int_equal(pclose(f), 0);
        struct workload_email e;
        build(&ps[k], index[k], &e);
        if (n != e.len || memcmp(buf, e.data, n) != 0)
            fail_msg("C and Python differ for: %s", cmd);
        workload_email_free(&e);
    }
    free(buf);
}

static void test_headers_and_lines(void **state)
{
    (void)state;
    static const char *const once[] = { "From", "To", "Subject", "Date", "Message-ID",
        "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "X-Mailbench", NULL };
    struct workload_params ps[] = { DEFAULTS, { 3, 0, 1, 0, 1 }, { 9, 5000, 1000, 0, 1 },
                                    { 4, 10, 3, 200000, 1 } };
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        struct workload_email e;
        build(&ps[k], 5, &e);
        assert_lines_ok(e.data, e.len);
        int n;
        for (int i = 0; once[i]; i++) {
            assert_non_null(header(&e, once[i], &n));
            assert_int_equal(n, 1);
        }
        assert_memory_equal(header(&e, "Message-ID", &n), e.message_id, strlen(e.message_id));
        assert_memory_equal(header(&e, "Content-Type", &n), "text/plain; charset=utf-8\r\n", 27);
        assert_null(header(&e, "In-Reply-To", &n));
        assert_int_equal(e.nrcpt, ps[k].recipients);
        assert_string_equal(e.from, "reports@mailbench.test");
        for (int r = 0; r < e.nrcpt; r++) {
            char want[64];
            snprintf(want, sizeof want, "ops+%d@example.test", r);
            assert_string_equal(e.rcpt[r], want);
            assert_non_null(strstr(e.data, want));          /* listed in To: */
        }
        workload_email_free(&e);
    }
}

static void test_body_bytes(void **state)
{
    (void)state;
    struct workload_params p = DEFAULTS;
    struct workload_email e;
    build(&p, 3, &e);
    const uint64_t s = e.len, a = sizeof WORKLOAD_PAD_HEADING - 1 + 2;
    workload_email_free(&e);
    uint64_t targets[] = { 1, s - 1, s, s + 1, s + a + 1, 100000, 1 << 20, 3 << 20 };
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        p.body_bytes = targets[i];
        build(&p, 3, &e);
        assert_int_equal(e.len, targets[i] >= s + a + 2 ? targets[i] : s);
        assert_lines_ok(e.data, e.len);
        workload_email_free(&e);
    }
    for (uint64_t b = s + a + 2; b < s + a + 2 + 200; b++) {   /* every remainder mod 78 */
        p.body_bytes = b;
        build(&p, 3, &e);
        assert_int_equal(e.len, b);
        assert_lines_ok(e.data, e.len);
        assert_non_null(strstr(e.data, "\r\n" WORKLOAD_PAD_HEADING "\r\n"));
        workload_email_free(&e);
    }
    p.body_bytes = 100000;                 /* the summary is the same, padding aside */
    build(&p, 3, &e);
    struct workload_email plain;
    p.body_bytes = 0;
    build(&p, 3, &plain);
    assert_memory_equal(e.data, plain.data, plain.len);
    workload_email_free(&e);
    workload_email_free(&plain);
}

/* Every email the renderer makes is marked SMTP-safe, and is: varied
 * events, recipients, chains, seeds, and every padding remainder. */
static void test_smtp_safe_mark(void **state)
{
    (void)state;
    struct workload_params ps[] = { DEFAULTS, { 3, 0, 1, 0, 1 }, { 9, 5000, 1000, 0, 1 },
                                    { 4, 10, 3, 200000, 4 }, { 7, 100000, 2, 1000000, 1 },
                                    { 0, 0, 1, 1000, 3 }, { 123456789, 1, 50, 10000, 2 } };
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        for (uint64_t i = 0; i < 6; i++) {
            struct workload_email e;
            build(&ps[k], i * 1000003, &e);
            assert_int_equal(e.smtp_safe, 1);
            assert_lines_ok(e.data, e.len);
            workload_email_free(&e);
        }
    }
    struct workload_params p = DEFAULTS;
    for (uint64_t b = 1400; b < 1400 + 400; b++) {
        p.body_bytes = b;
        struct workload_email e;
        build(&p, b, &e);
        assert_int_equal(e.smtp_safe, 1);
        workload_email_free(&e);
    }
    /* the check itself can fail: a dot line in a marked email */
    struct workload_email e;
    build(&p, 1, &e);
    char *nl = strstr(e.data, "\r\n\r\n");
    assert_non_null(nl);
    assert_true(smtp_safe_bytes(e.data, e.len));
    nl[4] = '.';
    assert_false(smtp_safe_bytes(e.data, e.len));
    nl[4] = 'x';
    nl[1] = 'x';
    assert_false(smtp_safe_bytes(e.data, e.len));
    workload_email_free(&e);
}

static void test_summary_counts(void **state)
{
    (void)state;
    long long sizes[] = { 0, 1, 10, 1000, 100000 };
    uint64_t prev_users = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        struct workload_params p = { 5, sizes[k], 1, 0, 1 };
        struct workload_summary s;
        assert_int_equal(workload_summarize(&p, 11, &s), 0);
        assert_int_equal(s.events, (uint64_t)sizes[k]);
        uint64_t by_status = 0, by_class = 0, by_user = 0;
        for (int i = 0; i < WORKLOAD_NSTATUS; i++)
            by_status += s.status_count[i];
        for (int i = 0; i < 6; i++)
            by_class += s.class_count[i];
        assert_int_equal(by_status, s.events);
        assert_int_equal(by_class, s.events);
        assert_true(s.lat_p50_us <= s.lat_p90_us && s.lat_p90_us <= s.lat_p99_us);
        assert_true(s.lat_p99_us <= s.lat_p999_us && s.lat_p999_us <= s.lat_max_us);
        assert_true(s.lat_mean_us <= s.lat_max_us);
        assert_true(s.distinct_users <= s.events && s.distinct_users >= prev_users);
        for (int i = 0; i < s.n_top_users; i++) {
            by_user += s.top_users[i].count;
            if (i > 0)
                assert_true(s.top_users[i - 1].count >= s.top_users[i].count);
        }
        assert_true(by_user <= s.events);
        assert_int_equal(s.n_top_endpoints, sizes[k] >= 1000 ? WORKLOAD_TOP_N : s.n_top_endpoints);
        if (sizes[k] >= 1000)   /* the heaviest weighted endpoint wins on large samples */
            assert_string_equal(workload_endpoint_name(s.top_endpoints[0].endpoint), "GET /api/orders");
        if (sizes[k] == 0)
            assert_true(s.lat_max_us == 0 && s.n_top_users == 0 && s.n_top_endpoints == 0);
        prev_users = s.distinct_users;
    }
}

static void test_chain(void **state)
{
    (void)state;
    struct workload_params p = DEFAULTS;
    assert_int_equal(workload_chain_prev(&p, 0), -1);
    assert_int_equal(workload_chain_prev(&p, 5), -1);
    p.chain = 3;
    long long want[] = { -1, 0, 1, -1, 3, 4, -1 };
    for (int i = 0; i < 7; i++)
        assert_int_equal(workload_chain_prev(&p, (uint64_t)i), want[i]);
    struct workload_email e;
    int n;
    build(&p, 5, &e);
    assert_memory_equal(header(&e, "In-Reply-To", &n), "<mb.1.4@mailbench.test>\r\n", 25);
    assert_memory_equal(header(&e, "References", &n),
                        "<mb.1.3@mailbench.test>\r\n <mb.1.4@mailbench.test>\r\n", 50);
    assert_lines_ok(e.data, e.len);
    workload_email_free(&e);
    build(&p, 6, &e);
    assert_null(header(&e, "In-Reply-To", &n));
    workload_email_free(&e);
}

struct par { struct workload_params p; uint64_t hash[16]; };

static void *par_main(void *arg)
{
    struct par *w = arg;
    for (int i = 0; i < 16; i++) {
        struct workload_email e;
        if (workload_build(&w->p, (uint64_t)i, &e) == 0)
            w->hash[i] = e.hash;
        workload_email_free(&e);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct par w[4];
    pthread_t t[4];
    for (int k = 0; k < 4; k++) {
        w[k].p = (struct workload_params){ 42, 2000, 2, 5000, 4 };
        assert_int_equal(pthread_create(&t[k], NULL, par_main, &w[k]), 0);
    }
    for (int k = 0; k < 4; k++)
        pthread_join(t[k], NULL);
    for (int i = 0; i < 16; i++) {
        struct workload_email e;
        build(&w[0].p, (uint64_t)i, &e);
        for (int k = 0; k < 4; k++)
            assert_int_equal(w[k].hash[i], e.hash);
        workload_email_free(&e);
    }
}

static void on_alarm(int sig) { (void)sig; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_blocking_call(void **state)
{
    (void)state;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;           /* no SA_RESTART: nanosleep gets EINTR */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, 5000 }, { 0, 5000 } };   /* every 5 ms */
    setitimer(ITIMER_REAL, &it, NULL);
    double t0 = now_s();
    workload_blocking_call(0.050);
    double dt = now_s() - t0;
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    assert_true(dt >= 0.050);           /* the signals did not cut it short */
    t0 = now_s();
    workload_blocking_call(0);
    workload_blocking_call(-1);
    assert_true(now_s() - t0 < 0.010);
}

/* The padding as it was rendered before issue 16 (a character at a time,
 * a modulo per byte, an snprintf per line), kept here only as the oracle
 * for the block-copy renderer in summary.c. */
static size_t old_pad_line(char *out, uint64_t k, size_t n)
{
    static const char alpha[] = WORKLOAD_PAD_ALPHABET;
    char line[96];
    int head = snprintf(line, sizeof line, "%08llu ", (unsigned long long)k);
    for (size_t j = (size_t)head; j < n && j < sizeof line - 2; j++)
        line[j] = alpha[(k % 62 + (j - (size_t)head)) % 62];
    memcpy(line + n, "\r\n", 2);
    memcpy(out, line, n + 2);
    return n + 2;
}

/* The old render_padding over a message of `len` bytes in buf (room for
 * target bytes); returns the new length. */
static size_t old_render_padding(char *buf, size_t len, uint64_t target)
{
    size_t heading = sizeof WORKLOAD_PAD_HEADING - 1 + 2;
    if (target < (uint64_t)len + heading + 2)
        return len;
    uint64_t fill = target - len - heading, n = fill / 78, r = fill % 78;
    memcpy(buf + len, WORKLOAD_PAD_HEADING "\r\n", heading);
    len += heading;
    for (uint64_t k = 0; k < n; k++)
        len += old_pad_line(buf + len, k, (r == 1 && k == n - 1) ? 77 : 76);
    if (r >= 2)
        len += old_pad_line(buf + len, n, (size_t)(r - 2));
    return len;
}

/* The new renderer gives byte for byte what the old one gave: every size
 * from below the threshold through 100 lines, then sizes up to 1 MB and
 * random ones, for two emails (different summary lengths). */
static void test_padding_equivalence(void **state)
{
    (void)state;
    struct workload_params p = DEFAULTS;
    struct workload_email base;
    build(&p, 3, &base);
    size_t S = base.len, A = sizeof WORKLOAD_PAD_HEADING - 1 + 2;
    uint64_t sizes[9000];
    size_t ns = 0;
    for (uint64_t b = S > 5 ? S - 5 : 0; b < S + A + 2 + 78 * 100 + 3; b++)
        sizes[ns++] = b;
    const uint64_t big[] = { 10000, 99999, 100000, 100001, 1000000, 1048576,
                             1048576 + 1, 1048576 + 77, 4000000 + 39 };
    for (size_t i = 0; i < sizeof big / sizeof *big; i++)
        sizes[ns++] = big[i];
    uint64_t x = 12345;
    for (int i = 0; i < 300; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        sizes[ns++] = S + (x >> 33) % 300000;
    }
    char *old = malloc(4000000 + 64 + S);
    assert_non_null(old);
    for (uint64_t idx = 3; idx <= 4; idx++) {
        struct workload_email plain;
        build(&p, idx, &plain);
        for (size_t i = 0; i < ns; i++) {
            struct workload_params q = p;
            q.body_bytes = sizes[i];
            struct workload_email e;
            build(&q, idx, &e);
            memcpy(old, plain.data, plain.len);
            size_t olen = old_render_padding(old, plain.len, sizes[i]);
            if (e.len != olen || memcmp(e.data, old, olen) != 0)
                fail_msg("padding differs from the old renderer at --body-bytes %llu "
                         "(email %llu: %zu vs %zu bytes)", (unsigned long long)sizes[i],
                         (unsigned long long)idx, e.len, olen);
            assert_true(e.hash == digest_hash(old, olen));
            if (sizes[i] >= plain.len + A + 2)
                assert_int_equal(e.len, sizes[i]);
            workload_email_free(&e);
        }
        workload_email_free(&plain);
    }
    free(old);
    workload_email_free(&base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_python_port),
        cmocka_unit_test(test_headers_and_lines),
        cmocka_unit_test(test_body_bytes),
        cmocka_unit_test(test_padding_equivalence),
        cmocka_unit_test(test_smtp_safe_mark),
        cmocka_unit_test(test_summary_counts),
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_blocking_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
