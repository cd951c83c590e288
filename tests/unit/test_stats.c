/* Unit tests for lib/stats: histogram buckets and percentiles against an
 * exact sort, merging, run counters and reasons, rusage, threads, and the
 * run JSON (checked with jq, a listed dependency). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "retry.h"
#include "stats.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Samples of several shapes: 0 = uniform 0..999, 1 = log-uniform 1us..1000s,
 * 2 = mostly ~2ms with a 1% tail up to 10 s, 3 = a handful of equal values. */
static uint64_t sample(int shape, uint64_t *rng)
{
    uint64_t r = retry_rand64(rng);
    switch (shape) {
    case 0: return r % 1000;
    case 1: return (uint64_t)exp((double)(r % 1000000) / 1000000.0 * log(1e9));
    case 2: return r % 100 == 0 ? 100000 + (r >> 20) % 10000000 : 1500 + (r >> 20) % 1000;
    default: return 4242;
    }
}

static void test_buckets(void **state)
{
    (void)state;
    /* Every value lands in a bucket that contains it, and buckets are narrow:
     * with samples {0, v, MAX}, p50 is v's bucket, within v/256 of v. */
    uint64_t rng = 7;
    struct hist *h = malloc(sizeof *h);
    for (int i = 0; i < 200000; i++) {
        uint64_t v = retry_rand64(&rng) >> (retry_rand64(&rng) % 64);
        if (v > HIST_MAX_US)
            v %= HIST_MAX_US;
        hist_init(h);
        hist_record(h, 0);
        hist_record(h, v);
        hist_record(h, HIST_MAX_US);
        uint64_t p = hist_percentile(h, 50);
        if ((p > v ? p - v : v - p) > v / 256)
            fail_msg("value %llu reported as %llu", (unsigned long long)v, (unsigned long long)p);
        assert_int_equal(hist_percentile(h, 100), HIST_MAX_US);
        assert_int_equal(hist_percentile(h, 1), 0);
    }
    hist_init(h);
    assert_int_equal(hist_percentile(h, 50), 0);
    assert_true(hist_mean(h) == 0.0);
    hist_record(h, 1ULL << 40);                 /* beyond the range: max stays exact */
    hist_record(h, 5);
    assert_int_equal(h->overflow, 1);
    assert_int_equal(h->max, 1ULL << 40);
    assert_int_equal(hist_percentile(h, 100), 1ULL << 40);
    assert_int_equal(hist_percentile(h, 50), 5);
    free(h);
}

static void test_percentiles_vs_sort(void **state)
{
    (void)state;
    const size_t n = 100000;
    const double qs[] = { 0.001, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100 };
    uint64_t *v = malloc(n * sizeof *v);
    struct hist *h = malloc(sizeof *h);
    for (int shape = 0; shape < 4; shape++) {
        uint64_t rng = 1000 + (uint64_t)shape, sum = 0;
        hist_init(h);
        for (size_t i = 0; i < n; i++) {
            v[i] = sample(shape, &rng);
            sum += v[i];
            hist_record(h, v[i]);
        }
        qsort(v, n, sizeof *v, cmp_u64);
        for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
            size_t rank = (size_t)ceil(qs[k] / 100.0 * (double)n);
            uint64_t exact = v[(rank < 1 ? 1 : rank) - 1], got = hist_percentile(h, qs[k]);
            double err = fabs((double)got - (double)exact);
            if (err > 0.005 * (double)exact + 0.5)      /* bound: half a bucket, 0.4% */
                fail_msg("shape %d p%g: histogram %llu, exact %llu", shape, qs[k],
                         (unsigned long long)got, (unsigned long long)exact);
        }
        assert_int_equal(h->count, n);
        assert_int_equal(h->min, v[0]);
        assert_int_equal(h->max, v[n - 1]);
        assert_true(fabs(hist_mean(h) - (double)sum / (double)n) < 1e-6);
    }
    free(v);
    free(h);
}

static void test_merge_equals_single(void **state)
{
    (void)state;
    struct hist *all = malloc(sizeof *all), *part = calloc(4, sizeof *part);
    struct hist *merged = malloc(sizeof *merged);
    hist_init(all);
    hist_init(merged);
    for (int k = 0; k < 4; k++)
        hist_init(&part[k]);
    uint64_t rng = 99;
    for (int i = 0; i < 50000; i++) {
        uint64_t x = sample(i % 3, &rng);
        hist_record(all, x);
        hist_record(&part[(x * 7 + (uint64_t)i) % 4], x);      /* uneven split */
    }
    struct hist *empty = calloc(1, sizeof *empty);
    hist_merge(merged, empty);                  /* merging nothing changes nothing */
    for (int k = 0; k < 4; k++)
        hist_merge(merged, &part[k]);
    assert_memory_equal(merged, all, sizeof *all);
    free(all);
    free(part);
    free(merged);
    free(empty);
}

static void test_run_counters(void **state)
{
    (void)state;
    struct stats_run *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    stats_run_init(a, 10);
    stats_run_init(b, 0);
    assert_int_equal(a->emails, 10);
    assert_true(a->threads_peak >= 1);
    stats_run_delivered(a, 0xffffffffffffffffULL, 100);
    stats_run_delivered(b, 2, 300);            /* digest wraps mod 2^64 */
    stats_run_failed(a, "451 4.3.0 try later");
    stats_run_failed(b, "451 4.3.0 try later");
    stats_run_failed(b, "drop");
    stats_run_failed(b, NULL);
    b->retries = 4;
    b->connections = 3;
    stats_run_merge(a, b);
    assert_int_equal(a->delivered, 2);
    assert_int_equal(a->failed, 4);
    assert_int_equal(a->retries, 4);
    assert_int_equal(a->connections, 3);
    assert_int_equal(a->digest, 1);
    assert_int_equal(a->latency.count, 2);
    assert_int_equal(a->nreasons, 3);
    assert_string_equal(a->reason[0].text, "451 4.3.0 try later");
    assert_int_equal(a->reason[0].count, 2);
    assert_string_equal(a->reason[2].text, "unknown");
    stats_run_init(a, 0);                       /* too many reasons: the rest is "other" */
    for (int i = 0; i < 100; i++) {
        char r[32];
        snprintf(r, sizeof r, "550 reason %d", i);
        stats_run_failed(a, r);
    }
    assert_int_equal(a->nreasons, STATS_MAX_REASONS);
    assert_string_equal(a->reason[STATS_MAX_REASONS - 1].text, "other");
    assert_int_equal(a->reason[STATS_MAX_REASONS - 1].count, 100 - (STATS_MAX_REASONS - 1));
    free(a);
    free(b);
}

static pthread_barrier_t barrier;

static void *idle_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&barrier);     /* alive while sampled */
    pthread_barrier_wait(&barrier);
    return NULL;
}

static void test_finish_and_threads(void **state)
{
    (void)state;
    struct stats_run *s = malloc(sizeof *s);
    stats_run_init(s, 1);
    long before = s->threads_peak;
    pthread_t t[3];
    pthread_barrier_init(&barrier, NULL, 4);
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, idle_thread, NULL);
    pthread_barrier_wait(&barrier);
    long during = stats_sample_threads(s);      /* TSan may add a thread of its own */
    assert_true(during >= before + 3 && during <= before + 4);
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
    uint64_t rng = 3, x = 0;                    /* some CPU time to measure */
    for (int i = 0; i < 3000000; i++)
        x ^= retry_rand64(&rng);
    stats_run_finish(s);
    assert_true(x != 0);
    assert_int_equal(s->threads_peak, during);  /* the peak, not the current count */
    assert_true(s->wall_s > 0 && s->wall_s < 60);
    assert_true(s->cpu_user_s + s->cpu_sys_s > 0);
    assert_true(s->max_rss_kb > 100);
    assert_true(s->ctx_voluntary >= 0 && s->ctx_involuntary >= 0);
    stats_run_note_threads(s, 1000);
    assert_int_equal(s->threads_peak, 1000);
    free(s);
}

static void fill_run(struct cli_options *o, struct stats_run *s)
{
    cli_defaults(o, "test");
    o->emails = 3;
    o->blocking_s = 0.005;
    o->threads = 7;
    strcpy(o->profile, "workloads/profiles/a \"quoted\".conf");
    stats_run_init(s, 3);
    stats_run_delivered(s, 0x10, 1000);
    stats_run_delivered(s, 0x20, 3000);
    stats_run_failed(s, "550 5.7.1 \"no\"");
    s->retries = 2;
    s->connections = 3;
    stats_run_finish(s);
}

static int sh(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Maybe-delivered failures: counted as failed, summed, listed, merged. */
static void test_maybe_delivered(void **state)
{
    (void)state;
    struct stats_run a, b;
    stats_run_init(&a, 10);
    stats_run_init(&b, 0);
    stats_run_failed_maybe(&a, "end of data: connection lost", 5);
    stats_run_failed(&a, "550 no");
    for (int i = 0; i < STATS_MAX_MAYBE; i++)
        stats_run_failed_maybe(&b, "end of data: timeout", 100 + (uint64_t)i);
    stats_run_merge(&a, &b);
    assert_int_equal(a.failed, 2 + STATS_MAX_MAYBE);
    assert_int_equal(a.maybe_delivered, 1 + STATS_MAX_MAYBE);
    uint64_t sum = 5;
    for (int i = 0; i < STATS_MAX_MAYBE; i++)
        sum += 100 + (uint64_t)i;
    assert_true(a.maybe_digest == sum);
    assert_int_equal(a.nmaybe, STATS_MAX_MAYBE);   /* the list is bounded */
    assert_true(a.maybe_hash[0] == 5);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct cli_options o;
    assert_int_equal(cli_parse_to(1, (char *[]){ "x", NULL }, "sync", &o, stdout, stderr), 0);
    stats_run_fprint_json(f, &o, "sync", &a);
    fclose(f);
    assert_non_null(strstr(buf, "\"maybe_delivered\":65,"));
    assert_non_null(strstr(buf, "\"maybe_hashes\":[\"0000000000000005\","));
    free(buf);
}

/* The peak RSS is this image's own: touching 64 MB raises it by about that. */
static void test_peak_rss(void **state)
{
    (void)state;
    long before = stats_peak_rss_kb();
    assert_true(before > 0);
    size_t n = 64u << 20;
    char *p = malloc(n);
    assert_non_null(p);
    memset(p, 1, n);
    long after = stats_peak_rss_kb();
    free(p);
    assert_true(after - before >= 60 * 1024);
}

static void test_json(void **state)
{
    (void)state;
    if (sh("command -v jq >/dev/null") != 0)
        skip();
    struct cli_options o;
    struct stats_run *s = malloc(sizeof *s);
    fill_run(&o, s);
    char dir[] = "/tmp/mb-test-json-XXXXXX", path[128], cmd[2048];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/run.json", dir);
    assert_int_equal(stats_run_write_json(&o, "test", s, path), 0);
    /* Exactly the schema's keys, in order, with the values given. */
    snprintf(cmd, sizeof cmd, "jq -e '(keys_unsorted == [\"schema\",\"model\",\"params\",\"emails\","
             "\"delivered\",\"failed\",\"retries\",\"failure_reasons\",\"connections\",\"wall_s\","
             "\"emails_per_s\",\"p50_us\",\"p90_us\",\"p99_us\",\"p999_us\",\"max_us\",\"mean_us\","
             "\"latency_mode\",\"cpu_user_s\",\"cpu_sys_s\",\"max_rss_kb\",\"ctx_voluntary\","
             "\"ctx_involuntary\",\"threads_peak\",\"digest\",\"window_s\",\"window_delivered\",\"window_failed\",\"cpu_window_s\","
             "\"cpu_per_email_us\",\"service_p50_us\",\"service_p99_us\",\"service_p999_us\","
             "\"scheduled\",\"shed\",\"pending\",\"peak_queue\",\"behind_schedule\","
             "\"start_lateness_p99_us\",\"max_lag_us\",\"over_10x_median_share\",\"maybe_delivered\",\"maybe_digest\","
             "\"maybe_hashes\",\"latency_hist\",\"service_hist\",\"lateness_hist\",\"git_rev\",\"machine\"]) and "
             "(.latency_hist.count == .window_delivered) and (.latency_hist.buckets|map(.[1])|add) == .latency_hist.count and "
             "(.params|keys_unsorted) == [\"server\",\"emails\",\"concurrency\",\"threads\",\"recipients\","
             "\"events\",\"body_bytes\",\"per_session\",\"chain\",\"blocking_us\",\"retries\",\"timeout_s\","
             "\"seed\",\"rate\",\"warmup_s\",\"duration_s\",\"quit_background\",\"arrivals\",\"max_queue\",\"prebuild\",\"reactors\",\"profile\"] and (.machine|keys_unsorted) == [\"cores\",\"kernel\",\"compiler\"]' "
             "%s >/dev/null", path);
    assert_int_equal(sh(cmd), 0);
    snprintf(cmd, sizeof cmd, "jq -e '.schema == \"mailbench.run/1\" and .model == \"test\" and "
             ".emails == 3 and .delivered == 2 and .failed == 1 and .retries == 2 and "
             ".failure_reasons == {\"550 5.7.1 \\\"no\\\"\": 1} and .connections == 3 and "
             ".digest == \"0000000000000030\" and .max_us == 3000 and .mean_us == 2000 and "
             "(.p50_us|type) == \"number\" and .latency_mode == \"closed\" and .params.blocking_us == 5000 and "
             ".params.threads == 7 and .params.server == \"127.0.0.1:2525\" and .params.timeout_s == 30 and "
             ".params.profile == \"workloads/profiles/a \\\"quoted\\\".conf\" and .machine.cores >= 1 and "
             "(.git_rev|length) > 0 and .threads_peak >= 1 and .max_rss_kb > 0' %s >/dev/null", path);
    assert_int_equal(sh(cmd), 0);
    o.rate = 100;                               /* open loop, no profile */
    o.profile[0] = '\0';
    assert_int_equal(stats_run_write_json(&o, "test", s, path), 0);
    snprintf(cmd, sizeof cmd, "jq -e '.latency_mode == \"open\" and .params.profile == null and "
             ".params.rate == 100' %s >/dev/null", path);
    assert_int_equal(sh(cmd), 0);
    snprintf(cmd, sizeof cmd, "test $(ls %s | wc -l) -eq 1", dir);     /* no temp file left */
    assert_int_equal(sh(cmd), 0);
    snprintf(path, sizeof path, "%s/missing/run.json", dir);           /* unwritable: -1 */
    assert_int_equal(stats_run_write_json(&o, "test", s, path), -1);
    assert_int_equal(stats_run_write_json(&o, "test", s, ""), 0);      /* none asked */
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    sh(cmd);
    free(s);
}

static void test_summary_line(void **state)
{
    (void)state;
    struct cli_options o;
    struct stats_run *s = malloc(sizeof *s);
    fill_run(&o, s);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    stats_run_print_summary(f, "test", &o, s);
    fclose(f);
    assert_non_null(strstr(buf, "summary-test: 2/3 delivered, 1 failed, 2 retries"));
    assert_non_null(strstr(buf, "latency p50 1"));
    assert_non_null(strstr(buf, "max 3ms (closed loop)"));
    int lines = 0;
    for (char *p = buf; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2);
    free(buf);
    free(s);
}

/* The steady-state window: emails that end in the warm-up or after the
 * window count for verification only; no email may start once it closed;
 * the CPU is read over the window, not from the process start. */
static void spin(double seconds)
{
    double end = stats_now() + seconds;
    volatile unsigned x = 0;
    while (stats_now() < end)
        x++;
}

/* Fairness: the share of samples far above the median. */
static void test_share_above(void **state)
{
    (void)state;
    struct hist *h = malloc(sizeof *h);
    hist_init(h);
    assert_true(hist_share_above(h, 10) == 0.0);
    for (int i = 0; i < 95; i++)
        hist_record(h, 1000);
    for (int i = 0; i < 5; i++)
        hist_record(h, 50000);
    uint64_t med = hist_percentile(h, 50);
    assert_true(fabs(hist_share_above(h, 10 * med) - 0.05) < 1e-12);
    assert_true(hist_share_above(h, 100000) == 0.0);
    free(h);
}

/* The rate in the window: over the deliveries' span when 10-99 are spread
 * over the window, over the window's length when they came in a burst (20
 * threads sharing one core end a round together: (n - 1) / span read 406/s
 * for ~57). */
static double rate_of(uint64_t n, double first, double last, double window)
{
    struct cli_options o;
    struct stats_run *s = malloc(sizeof *s);
    fill_run(&o, s);
    s->window_delivered = n;
    s->window_first = first;
    s->window_last = last;
    s->window_s = window;
    char path[] = "/tmp/mb-rate-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(stats_run_write_json(&o, "test", s, path), 0);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "jq -r .emails_per_s %s", path);
    FILE *p = popen(cmd, "r");
    double rate = -1;
    assert_int_equal(fscanf(p, "%lf", &rate), 1);
    pclose(p);
    unlink(path);
    free(s);
    return rate;
}

static void test_rate_bursts(void **state)
{
    (void)state;
    assert_true(fabs(rate_of(20, 1.0, 1.475, 0.5) - 19 / 0.475) < 1e-2);   /* spread: the span */
    assert_true(fabs(rate_of(20, 1.0, 1.002, 0.5) - 40.0) < 1e-2);         /* a burst: the window */
    assert_true(fabs(rate_of(40, 1.0, 1.36, 0.5) - 80.0) < 1e-2);          /* two bursts */
    assert_true(fabs(rate_of(5, 1.0, 1.4, 0.5) - 10.0) < 1e-2);            /* 5, spread */
    /* 2/s in a 3 s window: 5 ends (the 6th fell just past its end) read
     * 2.0/s from their span, not 5 / 3 = 1.67 (what it read below 10). */
    assert_true(fabs(rate_of(5, 1.5, 3.5, 3.0) - 2.0) < 1e-2);
    assert_true(fabs(rate_of(2, 1.0, 1.001, 3.0) - 2.0 / 3.0) < 1e-2);    /* fewer than 3 */
    assert_true(fabs(rate_of(5, 1.0, 1.01, 3.0) - 5.0 / 3.0) < 1e-2);     /* 5 in a burst */
    assert_true(fabs(rate_of(150, 1.0, 1.001, 0.5) - 300.0) < 1e-2);       /* 100 and more */
}

static void test_window(void **state)
{
    (void)state;
    struct cli_options o;
    cli_defaults(&o, "test");
    o.warmup_s = 0.05;
    o.duration_s = 0.10;
    o.concurrency = 1;                    /* three (3 rounds of 1) must end in the window before it closes */
    struct stats_run s;
    stats_run_init(&s, 0);
    spin(0.05);                           /* start-up CPU, before the window */
    stats_window_start(&o, stats_now());
    assert_true(stats_window_may_start());
    stats_run_delivered(&s, 1, 100);      /* in the warm-up */
    spin(0.06);
    stats_run_delivered(&s, 2, 200);      /* in the window */
    stats_run_failed(&s, "x");
    stats_run_failed(&s, "y");
    spin(0.10);
    assert_false(stats_window_may_start());
    stats_run_delivered(&s, 4, 400);      /* the drain */
    stats_run_finish(&s);
    assert_int_equal(s.delivered, 3);
    assert_true(s.digest == 7);
    assert_int_equal(s.window_delivered, 1);
    assert_int_equal(s.window_failed, 2);
    assert_int_equal(s.latency.count, 1);
    assert_int_equal(s.emails, 5);        /* sized by time: what it got to */
    assert_true(fabs(s.window_s - 0.10) < 1e-9);
    /* A busy window: the CPU over it is about its length, not + start-up. */
    assert_true(s.cpu_window_s > 0.01 && s.cpu_window_s < 0.15);
    /* A closed loop's warm-up lasts until a round of the emails in flight
     * (here 3) has ended, and its window past its end until three rounds'
     * worth (9) have ended in it, up to 10 x its length. */
    o.concurrency = 3;
    stats_run_init(&s, 0);
    stats_window_start(&o, stats_now() - o.warmup_s);
    stats_run_delivered(&s, 1, 100);
    stats_run_delivered(&s, 2, 100);
    stats_window_poll();
    assert_int_equal(s.window_delivered, 0);          /* 2 of 3: still warming up */
    /* Past open_at, waiting for the round: the next look is in the future
     * (an email's end polls for the round), never open_at again, which a
     * caller sleeping until it would spin on (async's reactor did, and its
     * re-added timer starved the open loop's arrivals). */
    assert_true(stats_window_next() > stats_now());
    stats_run_delivered(&s, 3, 100);      /* a round ended: the window opens with it, no */
    /* other poll needed (the next timer's may be 10 x the duration off):
     * it is open, its nominal end one duration from now, not the fallback */
    assert_true(stats_window_next() <= stats_now() + o.duration_s + 1e-3);
    stats_run_delivered(&s, 4, 100);
    spin(0.12);
    assert_true(stats_window_may_start()); /* past its end, 1 of 9 ended in it: extended */
    for (uint64_t k = 5; k <= 11; k++)
        stats_run_delivered(&s, k, 100);
    assert_true(stats_window_may_start()); /* 8 of 9 */
    stats_run_delivered(&s, 12, 100);
    assert_false(stats_window_may_start()); /* 9 ended in it: closed */
    stats_run_finish(&s);
    assert_int_equal(s.window_delivered, 9);
    assert_true(s.window_s > 0.11 && s.window_s < 0.5);
    /* An open loop's window opens once an email has ended, not before: past
     * the warm-up with none ended, the window is still shut. */
    o.rate = 100;
    stats_run_init(&s, 0);
    stats_window_start(&o, stats_now() - o.warmup_s - 0.01);
    stats_window_poll();
    stats_run_delivered(&s, 1, 100);      /* the first email ends: it opens just after */
    stats_run_delivered(&s, 2, 100);
    stats_run_finish(&s);
    assert_int_equal(s.window_delivered, 1);
    /* The same with a failure ending the warm-up's round. */
    stats_run_init(&s, 0);
    stats_window_start(&o, stats_now() - o.warmup_s - 0.01);
    stats_run_failed(&s, "x");
    assert_true(stats_window_next() <= stats_now() + o.duration_s + 1e-3);   /* open */
    stats_run_delivered(&s, 2, 100);
    stats_run_finish(&s);
    assert_int_equal(s.window_failed, 0);
    assert_int_equal(s.window_delivered, 1);
    o.rate = 0;
    o.warmup_s = o.duration_s = 0;        /* leave the process's window open for the others */
    stats_window_start(&o, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_percentiles_vs_sort),
        cmocka_unit_test(test_merge_equals_single),
        cmocka_unit_test(test_run_counters),
        cmocka_unit_test(test_finish_and_threads),
        cmocka_unit_test(test_peak_rss),
        cmocka_unit_test(test_maybe_delivered),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_rate_bursts),
        cmocka_unit_test(test_share_above),
        cmocka_unit_test(test_summary_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
