/* Unit tests for the async model's reactors (models/mailer/async_reactors.c)
 * and the option behind them: the shares of emails, concurrency, rate and
 * queue are exact (contiguous, summing to the totals, none empty), the
 * statistics of several reactors merge into those of one run (histograms
 * bucket by bucket), and --reactors is refused where it does not apply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "async_reactors.h"
#include "cli.h"
#include "stats.h"

static char err_text[4096];

static int parse(const char *model, struct cli_options *o, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "summary-test";
    for (int i = 0; args[i]; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    char *ob = NULL, *eb = NULL;
    size_t ol = 0, el = 0;
    FILE *out = open_memstream(&ob, &ol), *err = open_memstream(&eb, &el);
    int rc = cli_parse_to(argc, argv, model, o, out, err);
    fclose(out);
    fclose(err);
    snprintf(err_text, sizeof err_text, "%s", eb);
    free(ob);
    free(eb);
    return rc;
}
#define PARSE(m, o, ...) parse(m, o, (const char *const[]){ __VA_ARGS__, NULL })

static void expect_refused(int rc, const char *needle)
{
    if (rc != 2 || !strstr(err_text, needle) || !strstr(err_text, "--help"))
        fail_msg("expected a usage error naming '%s': rc %d, stderr: %s", needle, rc, err_text);
}

static void test_option(void **state)
{
    (void)state;
    struct cli_options o;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    char over[32], max[32];
    snprintf(over, sizeof over, "%ld", 4 * cores + 1);
    snprintf(max, sizeof max, "%ld", 4 * cores);
    assert_int_equal(PARSE("async", &o, "--emails", "5"), 0);
    assert_int_equal(o.reactors, 1);                        /* the default */
    assert_int_equal(PARSE("async", &o, "--reactors", "2"), 0);
    assert_int_equal(o.reactors, 2);
    assert_int_equal(PARSE("async", &o, "--reactors", max), 0);
    assert_int_equal(o.reactors, 4 * cores);
    expect_refused(PARSE("async", &o, "--reactors", over), "--reactors");
    assert_non_null(strstr(err_text, "cores"));
    expect_refused(PARSE("async", &o, "--reactors", "0"), "'0'");
    expect_refused(PARSE("async", &o, "--reactors", "-1"), "'-1'");
    expect_refused(PARSE("async", &o, "--reactors", "two"), "'two'");
    expect_refused(PARSE("async", &o, "--reactors", "1.5"), "'1.5'");
    expect_refused(PARSE("async", &o, "--reactors", "100000"), "--reactors");
    expect_refused(PARSE("async", &o, "--reactors"), "--reactors: missing value");
    expect_refused(PARSE("async", &o, "--reactors", "2", "--reactors", "3"), "given twice");
    /* The other models refuse it, even 1: they have no reactor to multiply. */
    const char *others[] = { "sync", "threads", "hybrid" };
    for (int i = 0; i < 3; i++) {
        expect_refused(PARSE(others[i], &o, "--reactors", "1"), "--reactors 1");
        assert_non_null(strstr(err_text, others[i]));
    }
    char path[] = "/tmp/mb-test-reactors-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "reactors = 2\n", 13), 13);
    close(fd);
    assert_int_equal(PARSE("async", &o, "--profile", path), 0);
    assert_int_equal(o.reactors, 2);
    assert_int_equal(PARSE("threads", &o, "--profile", path), 2);
    assert_non_null(strstr(err_text, "'reactors = 2' is not used by summary-threads"));
    unlink(path);
}

static struct cli_options opts(long long emails, long long conc, long long chain, long long rate,
                               long long max_queue, long long reactors)
{
    struct cli_options o;
    cli_defaults(&o, "async");
    o.emails = emails;
    o.concurrency = conc;
    o.chain = chain;
    o.rate = rate;
    o.max_queue = max_queue;
    o.reactors = reactors;
    return o;
}

/* The example: 7 emails, 2 reactors, concurrency 3. */
static void test_share_example(void **state)
{
    (void)state;
    struct cli_options o = opts(7, 3, 1, 0, 0, 2);
    struct async_share a, b;
    assert_int_equal(async_reactors_count(&o), 2);
    async_reactors_share(&o, 2, 0, &a);
    async_reactors_share(&o, 2, 1, &b);
    assert_int_equal(a.first, 0);
    assert_int_equal(a.emails, 4);
    assert_int_equal(a.concurrency, 2);
    assert_int_equal(b.first, 4);
    assert_int_equal(b.emails, 3);
    assert_int_equal(b.concurrency, 1);
    assert_int_equal(a.rate + b.rate, 0);                   /* closed loop stays closed */
    /* Chains are never split: 10 emails in chains of 3 = 4 chains (3 3 3 1). */
    o = opts(10, 4, 3, 0, 0, 2);
    async_reactors_share(&o, 2, 0, &a);
    async_reactors_share(&o, 2, 1, &b);
    assert_int_equal(a.first, 0);
    assert_int_equal(a.emails, 6);
    assert_int_equal(b.first, 6);
    assert_int_equal(b.emails, 4);
    /* Closed loop with --per-session 3: whole connections of 3 (mailer_unit),
     * 29 emails = 10 units (9 x 3 + 2): 5 + 5 units, only the last short. */
    o = opts(29, 4, 1, 0, 0, 2);
    o.per_session = 3;
    async_reactors_share(&o, 2, 0, &a);
    async_reactors_share(&o, 2, 1, &b);
    assert_int_equal(a.first, 0);
    assert_int_equal(a.emails, 15);
    assert_int_equal(b.first, 15);
    assert_int_equal(b.emails, 14);
    o.rate = 100;       /* the open loop shares chains (--chain 1): single emails */
    async_reactors_share(&o, 2, 1, &b);
    assert_int_equal(b.first, 15);
    o.per_session = 10;
    async_reactors_share(&o, 2, 1, &b);
    assert_int_equal(b.first, 15);
    o.rate = 0;         /* 3 units of 10 (10 10 9): 2 + 1 */
    async_reactors_share(&o, 2, 1, &b);
    assert_int_equal(b.first, 20);
    assert_int_equal(b.emails, 9);
    /* Fewer emails in flight (or chains, rate, queue) than reactors: fewer reactors. */
    o = opts(100, 1, 1, 0, 0, 4);
    assert_int_equal(async_reactors_count(&o), 1);
    o = opts(3, 100, 1, 0, 0, 4);
    assert_int_equal(async_reactors_count(&o), 3);
    o = opts(100, 100, 1, 2, 0, 4);
    assert_int_equal(async_reactors_count(&o), 2);
    o = opts(100, 100, 1, 1000, 3, 4);
    assert_int_equal(async_reactors_count(&o), 3);
}

/* Every combination: contiguous shares that sum to the totals, none empty. */
static void test_share_exact(void **state)
{
    (void)state;
    const long long emails[] = { 1, 2, 7, 10, 99, 1000, 1000000000 };
    const long long conc[] = { 1, 2, 3, 7, 100, 10000 };
    const long long chains[] = { 1, 2, 3, 5 };
    const long long rates[] = { 0, 1, 3, 999 };
    const long long queues[] = { 0, 1, 5, 2000 };
    int checked = 0;
    for (size_t ie = 0; ie < sizeof emails / sizeof *emails; ie++)
    for (size_t ic = 0; ic < sizeof conc / sizeof *conc; ic++)
    for (size_t ik = 0; ik < sizeof chains / sizeof *chains; ik++)
    for (size_t ir = 0; ir < sizeof rates / sizeof *rates; ir++)
    for (size_t iq = 0; iq < sizeof queues / sizeof *queues; iq++)
    for (long long want = 1; want <= 8; want++) {
        struct cli_options o = opts(emails[ie], conc[ic], chains[ik], rates[ir], queues[iq], want);
        int n = async_reactors_count(&o);
        assert_true(n >= 1 && n <= want);
        long long next = 0, sc = 0, sr = 0, sq = 0;
        for (int k = 0; k < n; k++) {
            struct async_share s;
            async_reactors_share(&o, n, k, &s);
            assert_int_equal(s.first, next);                /* contiguous, in order */
            assert_int_equal(s.first % o.chain, 0);         /* whole chains */
            assert_true(s.emails >= 1);
            assert_true(s.concurrency >= 1);
            assert_true(o.rate == 0 ? s.rate == 0 : s.rate >= 1);
            assert_true(o.max_queue == 0 ? s.max_queue == 0 : s.max_queue >= 1);
            next += s.emails;
            sc += s.concurrency;
            sr += s.rate;
            sq += s.max_queue;
        }
        assert_int_equal(next, o.emails);
        assert_int_equal(sc, o.concurrency);
        assert_int_equal(sr, o.rate);
        assert_int_equal(sq, o.max_queue);
        /* As many reactors as asked unless a total is smaller. */
        long long nchains = (o.emails + o.chain - 1) / o.chain, cap = want;
        cap = cap < o.concurrency ? cap : o.concurrency;
        cap = cap < nchains ? cap : nchains;
        if (o.rate > 0 && o.rate < cap) cap = o.rate;
        if (o.max_queue > 0 && o.max_queue < cap) cap = o.max_queue;
        assert_int_equal(n, cap);
        checked++;
    }
    assert_true(checked > 10000);
}

/* Two reactors' statistics merge into those of one run over all the emails:
 * counts, digest, failures, the open loop's counters, and the histograms
 * bucket by bucket (so every percentile equals the one-run histogram's). */
static void test_merge(void **state)
{
    (void)state;
    static struct stats_run one, part[2], merged;
    stats_run_init(&one, 7);
    stats_run_init(&part[0], 0);
    stats_run_init(&part[1], 0);
    stats_run_init(&merged, 7);
    uint64_t seed = 12345;
    for (int i = 0; i < 5000; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t us = (seed >> 33) % 2000000, hash = seed ^ (seed >> 17);
        stats_run_delivered(&one, hash, us);
        stats_run_delivered(&part[i % 3 == 0], hash, us);  /* an uneven split */
    }
    stats_run_failed(&one, "451 try later");
    stats_run_failed(&part[1], "451 try later");
    part[0].scheduled = 3000;
    part[1].scheduled = 2001;
    part[0].shed = 2;
    part[1].peak_queue = 4;
    stats_run_merge(&merged, &part[0]);
    stats_run_merge(&merged, &part[1]);
    assert_int_equal(merged.emails, 7);                     /* the run's, left alone */
    assert_int_equal(merged.delivered, 5000);
    assert_int_equal(merged.failed, 1);
    assert_int_equal(merged.digest, one.digest);
    assert_int_equal(merged.latency.count, 5000);
    assert_int_equal(merged.window_delivered, 5000);
    assert_int_equal(merged.latency.sum, one.latency.sum);
    assert_int_equal(merged.latency.min, one.latency.min);
    assert_int_equal(merged.latency.max, one.latency.max);
    assert_memory_equal(merged.latency.bucket, one.latency.bucket, sizeof one.latency.bucket);
    const double qs[] = { 1, 50, 90, 99, 99.9, 100 };
    for (size_t i = 0; i < sizeof qs / sizeof *qs; i++)
        assert_int_equal(hist_percentile(&merged.latency, qs[i]),
                         hist_percentile(&one.latency, qs[i]));
    assert_int_equal(merged.nreasons, 1);
    assert_int_equal(merged.reason[0].count, 1);
    assert_int_equal(merged.scheduled, 5001);
    assert_int_equal(merged.shed, 2);
    assert_int_equal(merged.peak_queue, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_option),
        cmocka_unit_test(test_share_example),
        cmocka_unit_test(test_share_exact),
        cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
