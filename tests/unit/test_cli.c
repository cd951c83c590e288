/* Unit tests for lib/cli and lib/profile: every option, profile precedence,
 * every kind of bad value (exit code 2, message naming the option), profile
 * errors with their line numbers, and the shipped profiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mailer.h"
#include "profile.h"

/* Output of the last parse() */
static char out_text[16384], err_text[16384];

/* Parses a NULL-terminated list of arguments (argv[0] added) for `model`,
 * capturing the output and error streams into out_text / err_text. */
static int parse_model_v(const char *model, struct cli_options *o, const char *const *args)
{
    char *argv[64];
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
    snprintf(out_text, sizeof out_text, "%s", ob);
    snprintf(err_text, sizeof err_text, "%s", eb);
    free(ob);
    free(eb);
    return rc;
}
#define PARSE(o, ...) parse_model_v("test", o, (const char *const[]){ __VA_ARGS__, NULL })
#define PARSE_MODEL(m, o, ...) parse_model_v(m, o, (const char *const[]){ __VA_ARGS__, NULL })

/* rc 2 and one message naming both `name` and `value`, with the hint. */
#define EXPECT_REFUSED(rc, name, value)                                                     \
    do {                                                                                    \
        if ((rc) != 2 || !strstr(err_text, (name)) || !strstr(err_text, (value)) ||         \
            !strstr(err_text, "--help"))                                                    \
            fail_msg("%s '%s': rc %d, stderr: %s", (name), (value), (rc), err_text);        \
    } while (0)

static char *write_temp(const char *text)
{
    static char names[8][64];
    static int next;
    char *name = names[next++ % 8];
    strcpy(name, "/tmp/mb-test-profile-XXXXXX");
    int fd = mkstemp(name);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return name;
}

static void test_defaults(void **state)
{
    (void)state;
    struct cli_options o;
    assert_int_equal(PARSE(&o, NULL), 0);
    assert_string_equal(o.server, "127.0.0.1:2525");
    assert_string_equal(o.host, "127.0.0.1");
    assert_int_equal(o.port, 2525);
    assert_int_equal(o.emails, 1000);
    assert_int_equal(o.concurrency, 10);
    assert_int_equal(o.threads, 0);
    assert_int_equal(o.recipients, 1);
    assert_int_equal(o.events, 1000);
    assert_int_equal(o.body_bytes, 0);
    assert_int_equal(o.per_session, 1);
    assert_int_equal(o.chain, 1);
    assert_true(o.blocking_s == 0.0);
    assert_int_equal(o.retries, 5);
    assert_true(o.timeout_s == 30.0);
    assert_int_equal(o.seed, 1);
    assert_int_equal(o.rate, 0);
    assert_string_equal(o.profile, "");
    assert_string_equal(o.json, "");
    assert_int_equal(o.progress, 0);
    assert_string_equal(o.model, "test");
    assert_string_equal(err_text, "");
}

static void test_every_option(void **state)
{
    (void)state;
    struct cli_options o;
    assert_int_equal(PARSE(&o, "--server", "10.1.2.3:25", "--emails", "10k", "--concurrency", "500",
                           "--threads", "8", "--recipients", "3", "--events=100000",
                           "--body-bytes", "100KB", "--per-session", "10", "--chain", "4",
                           "--blocking", "5ms", "--retries", "0", "--timeout", "1.5s",
                           "--seed", "9223372036854775807", "--rate", "2000", "--json", "-",
                           "--progress"), 0);
    assert_string_equal(o.server, "10.1.2.3:25");
    assert_string_equal(o.host, "10.1.2.3");
    assert_int_equal(o.port, 25);
    assert_int_equal(o.emails, 10000);
    assert_int_equal(o.concurrency, 500);
    assert_int_equal(o.threads, 8);
    assert_int_equal(o.recipients, 3);
    assert_int_equal(o.events, 100000);
    assert_int_equal(o.body_bytes, 102400);
    assert_int_equal(o.per_session, 10);
    assert_int_equal(o.chain, 4);
    assert_true(o.blocking_s > 0.00499 && o.blocking_s < 0.00501);
    assert_int_equal(o.retries, 0);
    assert_true(o.timeout_s == 1.5);
    assert_int_equal(o.seed, 9223372036854775807ULL);
    assert_int_equal(o.rate, 2000);
    assert_string_equal(o.json, "-");
    assert_int_equal(o.progress, 1);
    struct workload_params wp;
    mailer_workload_params(&o, &wp);
    assert_int_equal(wp.events, 100000);
    assert_int_equal(wp.recipients, 3);
    assert_int_equal(wp.body_bytes, 102400);
    assert_int_equal(wp.chain, 4);
    assert_int_equal(wp.seed, 9223372036854775807ULL);
    assert_int_equal(PARSE(&o, "--server", "localhost:2600", "--emails", "2"), 0);
    assert_string_equal(o.host, "127.0.0.1");
    assert_int_equal(o.port, 2600);
}

static void test_help(void **state)
{
    (void)state;
    struct cli_options o;
    assert_int_equal(PARSE(&o, "--emails", "5", "--help"), 1);
    assert_non_null(strstr(out_text, "Usage: summary-test"));
    const char *documented[] = { "--server", "--emails", "--concurrency", "--threads", "--recipients",
        "--events", "--body-bytes", "--per-session", "--chain", "--blocking", "--retries",
        "--timeout", "--seed", "--rate", "--profile", "--json", "--progress", "--help", NULL };
    for (int i = 0; documented[i]; i++)
        assert_non_null(strstr(out_text, documented[i]));
    assert_int_equal(PARSE(&o, "-h"), 1);
    /* --help wins even after a bad value */
    assert_int_equal(PARSE(&o, "--emails", "x", "--help"), 1);
}

static void test_bad_values(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        { "--server", "nohost" }, { "--server", "1.2.3.4:70000" }, { "--server", "127.0.0.1:0" },
        { "--server", "example.com:25" }, { "--emails", "0" }, { "--emails", "-5" },
        { "--emails", "abc" }, { "--emails", "99999999999999999999" }, { "--emails", "1.5" },
        { "--concurrency", "0" }, { "--concurrency", "2000000" }, { "--threads", "-1" },
        { "--recipients", "0" }, { "--recipients", "1001" }, { "--events", "-1" },
        { "--events", "20000000" }, { "--body-bytes", "-1" }, { "--body-bytes", "1T" },
        { "--body-bytes", "1G" }, { "--body-bytes", "10 KB" }, { "--per-session", "0" },
        { "--chain", "0" }, { "--blocking", "10" }, { "--blocking", "-1ms" },
        { "--blocking", "2min" }, { "--blocking", "61s" }, { "--retries", "-1" },
        { "--retries", "1001" }, { "--timeout", "0" }, { "--timeout", "30" },
        { "--timeout", "2d" }, { "--seed", "-1" }, { "--seed", "18446744073709551615" },
        { "--rate", "-10" }, { "--rate", "fast" }, { "--json", "" },
        { "--start-at", "1796000000" }, { "--start-at", "now" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cli_options o;
        int rc = PARSE(&o, bad[i][0], bad[i][1]);
        if (rc != 2 || !strstr(err_text, bad[i][0]) || !strstr(err_text, bad[i][1]) ||
            !strstr(err_text, "--help"))
            fail_msg("%s '%s': rc %d, stderr: %s", bad[i][0], bad[i][1], rc, err_text);
        char eq[128];                              /* the same with --name=value */
        snprintf(eq, sizeof eq, "%s=%s", bad[i][0], bad[i][1]);
        assert_int_equal(PARSE(&o, eq), 2);
    }
}

/* --start-at: epoch milliseconds; an hour away at most (a value in seconds
 * or minutes is refused); the wait sleeps until then and no longer. */
static void test_start_at(void **state)
{
    (void)state;
    struct cli_options o;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    char v[32];
    snprintf(v, sizeof v, "%lld", ms + 300);
    assert_int_equal(PARSE(&o, "--start-at", v), 0);
    assert_int_equal(o.start_at_ms, ms + 300);
    struct timespec a, b;
    clock_gettime(CLOCK_REALTIME, &a);
    cli_wait_start(&o);
    clock_gettime(CLOCK_REALTIME, &b);
    long long at = (long long)b.tv_sec * 1000 + b.tv_nsec / 1000000;
    assert_true(at >= ms + 300);
    assert_true((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 < 2000);
    snprintf(v, sizeof v, "%lld", ms + 2 * 3600 * 1000LL);
    EXPECT_REFUSED(PARSE(&o, "--start-at", v), "--start-at", v);
    assert_int_equal(PARSE(&o, "--emails", "1"), 0);
    assert_int_equal(o.start_at_ms, 0);                 /* default: no wait */
}

static void test_bad_syntax(void **state)
{
    (void)state;
    struct cli_options o;
    assert_int_equal(PARSE(&o, "--bogus", "1"), 2);
    assert_non_null(strstr(err_text, "unknown option '--bogus'"));
    assert_int_equal(PARSE(&o, "--emails"), 2);
    assert_non_null(strstr(err_text, "--emails: missing value"));
    assert_int_equal(PARSE(&o, "stray"), 2);
    assert_non_null(strstr(err_text, "'stray'"));
    assert_int_equal(PARSE(&o, "--progress=yes"), 2);
    assert_non_null(strstr(err_text, "--progress"));
    assert_int_equal(PARSE(&o, "--latency", "5ms"), 2);          /* server keys: profile only */
    assert_non_null(strstr(err_text, "--latency"));
    assert_int_equal(PARSE(&o, "-e", "5"), 2);
}

static void test_profile_precedence(void **state)
{
    (void)state;
    const char *path = write_temp(
        "# a test profile\n"
        "\n"
        "emails = 77          # trailing comment\n"
        "  events\t=  5000  \n"
        "body-bytes = 2MB\n"
        "concurrency = 3\n"
        "latency = 5ms\n"
        "tempfail = 10%\n"
        "fault-stage = rcpt\n"
        "max-conns = 100\r\n"
        "latency-dist = exp\n"
        "max-size = 10MB\n");
    struct cli_options o;
    /* Flags before and after --profile both override it. */
    assert_int_equal(PARSE(&o, "--emails", "5", "--profile", path, "--concurrency", "9"), 0);
    assert_string_equal(err_text, "");
    assert_string_equal(o.profile, path);
    assert_int_equal(o.emails, 5);
    assert_int_equal(o.concurrency, 9);
    assert_int_equal(o.events, 5000);
    assert_int_equal(o.body_bytes, 2 << 20);
    assert_int_equal(o.recipients, 1);         /* untouched: the default */
    assert_true(o.srv.latency_s > 0.00499 && o.srv.latency_s < 0.00501);
    assert_true(o.srv.tempfail > 0.0999 && o.srv.tempfail < 0.1001);
    assert_string_equal(o.srv.fault_stage, "rcpt");
    assert_int_equal(o.srv.max_conns, 100);
    assert_string_equal(o.srv.latency_dist, "exp");
    assert_int_equal(o.srv.max_size, 10 << 20);
    assert_int_equal(o.srv.max_rcpts, 1000);   /* smtp-mock's default */
    assert_string_equal(o.srv.args, "--latency 5ms --tempfail 10% --fault-stage rcpt --max-conns 100 "
                        "--latency-dist exp --max-size 10MB");
    assert_int_equal(PARSE(&o, "--profile=" , ""), 2);    /* empty file name */
    assert_int_equal(PARSE(&o, "--profile", path, "--profile", path), 2);
    assert_non_null(strstr(err_text, "--profile given twice"));
    unlink(path);
}

/* Issue 11 #13: --server takes an IPv4 address as inet_pton reads it (never
 * as getaddrinfo would: "0127.0.0.1" is octal there, 87.0.0.1) or a host
 * name, and a port 1..65535 in plain decimal; the rest is refused at start. */
static void test_server_strict(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "0127.0.0.1:2525", "127.0.0.01:2525", "+127.0.0.1:2525", " 127.0.0.1:2525",
        "127.0.0.1 :2525", "127.1:2525", "0x7f.0.0.1:2525", "0x7f000001:2525", "2130706433:2525",
        "1.2.3.4.5:25", "bad_name:25", "-lead.example:25", "trail-.example:25", "a..b:25",
        ".a:25", "a.:25", "exa mple:25", "host:25:25", "127.0.0.1:+25", "127.0.0.1:025",
        "127.0.0.1: 25", "127.0.0.1:25x", "127.0.0.1:25 ", "127.0.0.1:1k", "127.0.0.1:0",
        "127.0.0.1:65536", "127.0.0.1:-0", ":2525", ":0", "[::1]:25",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cli_options o;
        EXPECT_REFUSED(PARSE(&o, "--server", bad[i]), "--server", bad[i]);
    }
    struct cli_options o;
    assert_int_equal(PARSE(&o, "--server", "[::1]:25"), 2);
    assert_non_null(strstr(err_text, "IPv6"));
    char label[80], longname[300];  /* a label of 64 letters; a name of 254 bytes */
    memset(label, 'a', 64);
    strcpy(label + 64, ":25");
    EXPECT_REFUSED(PARSE(&o, "--server", label), "--server", label);
    memset(longname, 'a', 254);
    for (int i = 63; i < 254; i += 64)
        longname[i] = '.';
    strcpy(longname + 254, ":25");
    EXPECT_REFUSED(PARSE(&o, "--server", longname), "--server", "aaaa");
    /* A valid name that does not resolve: refused at start, not per email. */
    EXPECT_REFUSED(PARSE(&o, "--server", "no-such-host.invalid:25"), "--server",
                   "no-such-host.invalid");
    assert_non_null(strstr(err_text, "cannot resolve"));
    /* The same rule for a profile's server key. */
    const char *path = write_temp("server = 0127.0.0.1:2525\n");
    assert_int_equal(PARSE(&o, "--profile", path), 2);
    assert_non_null(strstr(err_text, ":1: bad value '0127.0.0.1:2525' for 'server'"));
    unlink(path);
    path = write_temp("server = :2525\n");
    assert_int_equal(PARSE(&o, "--profile", path), 2);
    assert_non_null(strstr(err_text, ":1: bad value ':2525' for 'server'"));
    unlink(path);
    path = write_temp("server = no-such-host.invalid:25\n");
    assert_int_equal(PARSE(&o, "--profile", path), 2);
    assert_non_null(strstr(err_text, "server"));
    assert_non_null(strstr(err_text, "cannot resolve 'no-such-host.invalid'"));
    /* ... unless a flag overrides it: the profile's value is then never used. */
    assert_int_equal(PARSE(&o, "--profile", path, "--server", "127.0.0.1:26"), 0);
    assert_string_equal(o.host, "127.0.0.1");
    unlink(path);
    /* Accepted: the edges of the port range, localhost, a host name. */
    assert_int_equal(PARSE(&o, "--server", "127.0.0.1:1"), 0);
    assert_int_equal(o.port, 1);
    assert_int_equal(PARSE(&o, "--server", "127.0.0.1:65535"), 0);
    assert_int_equal(o.port, 65535);
    assert_int_equal(PARSE(&o, "--server", "localhost:25"), 0);
    assert_string_equal(o.host, "127.0.0.1");
    assert_string_equal(o.server, "localhost:25");
    char name[256], arg[300];
    if (gethostname(name, sizeof name) == 0 && strchr(name, '_') == NULL) {
        /* A name resolved once, at start: o.host is its address. */
        snprintf(arg, sizeof arg, "%s:2525", name);
        int rc = PARSE(&o, "--server", arg);
        if (rc == 0) {
            char *end;
            assert_int_equal(o.port, 2525);
            assert_true(strtoul(o.host, &end, 10) <= 255 && *end == '.');
        } else {
            assert_non_null(strstr(err_text, "cannot resolve"));   /* no entry for it here */
        }
    }
}

/* Issue 11 #15: an option given twice is an error (not "the last wins");
 * a flag still overrides the profile's key (tested in test_profile_precedence). */
static void test_repeated_options(void **state)
{
    (void)state;
    struct cli_options o;
    assert_int_equal(PARSE(&o, "--emails", "1", "--emails", "2"), 2);
    assert_non_null(strstr(err_text, "--emails given twice ('1' and '2')"));
    assert_non_null(strstr(err_text, "--help"));
    assert_int_equal(PARSE(&o, "--emails=1", "--seed", "3", "--emails", "1"), 2);
    assert_non_null(strstr(err_text, "--emails given twice"));
    assert_int_equal(PARSE(&o, "--server", "127.0.0.1:1", "--server=127.0.0.1:2"), 2);
    assert_non_null(strstr(err_text, "--server given twice ('127.0.0.1:1' and '127.0.0.1:2')"));
    assert_int_equal(PARSE(&o, "--progress", "--progress"), 2);
    assert_non_null(strstr(err_text, "--progress given twice"));
    assert_int_equal(PARSE(&o, "--json", "-", "--json", "-"), 2);
    assert_non_null(strstr(err_text, "--json given twice"));
}

/* Issue 11 #15: --threads is a pool size, 1 or more; leaving it out is how
 * the model picks (threads: C, hybrid: the cores).  The one-thread models
 * refuse it, as the Twisted reference does, rather than ignore it. */
static void test_threads(void **state)
{
    (void)state;
    struct cli_options o;
    EXPECT_REFUSED(PARSE_MODEL("threads", &o, "--threads", "0"), "--threads", "'0'");
    EXPECT_REFUSED(PARSE_MODEL("hybrid", &o, "--threads", "0"), "--threads", "'0'");
    assert_int_equal(PARSE_MODEL("threads", &o, "--threads", "1"), 0);
    assert_int_equal(o.threads, 1);
    assert_int_equal(PARSE_MODEL("hybrid", &o, NULL), 0);
    assert_int_equal(o.threads, 0);             /* not given: the model's choice */
    EXPECT_REFUSED(PARSE_MODEL("sync", &o, "--threads", "4"), "--threads 4", "summary-sync");
    EXPECT_REFUSED(PARSE_MODEL("async", &o, "--threads=4"), "--threads 4", "summary-async");
    const char *path = write_temp("threads = 4\n");
    assert_int_equal(PARSE_MODEL("sync", &o, "--profile", path), 2);
    assert_non_null(strstr(err_text, ":1: 'threads = 4' is not used by summary-sync"));
    assert_int_equal(PARSE_MODEL("threads", &o, "--profile", path), 0);
    assert_int_equal(o.threads, 4);
    unlink(path);
    path = write_temp("threads = 0\n");
    assert_int_equal(PARSE_MODEL("threads", &o, "--profile", path), 2);
    assert_non_null(strstr(err_text, ":1: bad value '0' for 'threads'"));
    unlink(path);
    assert_int_equal(PARSE_MODEL("threads", &o, "--help"), 1);
    assert_non_null(strstr(out_text, "default C"));
    assert_non_null(strstr(out_text, "given twice"));
    assert_non_null(strstr(out_text, "the host must be named"));
}

/* A profile `text` must fail with a message containing `want`. */
static void expect_profile_error(const char *text, const char *want)
{
    const char *path = write_temp(text);
    struct cli_options o;
    int rc = PARSE(&o, "--profile", path);
    char where[128];
    snprintf(where, sizeof where, "%s:", path);
    if (rc != 2 || !strstr(err_text, want) || !strstr(err_text, where))
        fail_msg("profile %s: rc %d, stderr: %s (wanted '%s')", text, rc, err_text, want);
    unlink(path);
}

static void test_profile_errors(void **state)
{
    (void)state;
    expect_profile_error("emails = 5\n# comment\nfoo = 1\n", ":3: unknown key 'foo'");
    expect_profile_error("emails = 5\nemails = 6\n", ":2: 'emails' set twice (first on line 1)");
    expect_profile_error("\n\nevents = lots\n", ":3: bad value 'lots' for 'events'");
    expect_profile_error("timeout = 0\n", ":1: bad value '0' for 'timeout'");
    expect_profile_error("tempfail = 1.5\n", ":1: bad value '1.5' for 'tempfail'");
    expect_profile_error("fault-stage = quit\n", ":1: bad value 'quit' for 'fault-stage'");
    expect_profile_error("fault-stage = rc\n", ":1: bad value 'rc' for 'fault-stage'");
    expect_profile_error("latency-dist = normal\n", ":1: bad value 'normal' for 'latency-dist'");
    expect_profile_error("max-size = 1.5MB\n", ":1: bad value '1.5MB' for 'max-size'");
    expect_profile_error("max-rcpts = 0\n", ":1: bad value '0' for 'max-rcpts'");
    expect_profile_error("emails 5\n", ":1: expected 'key = value'");
    expect_profile_error("emails =\n", ":1: missing value for 'emails'");
    expect_profile_error("= 5\n", ":1: missing key");
    expect_profile_error("Emails = 5\n", ":1: bad key 'Emails'");
    expect_profile_error("json = out.json\n", ":1: 'json' is a command-line option");
    expect_profile_error("profile = other.conf\n", ":1: 'profile' is a command-line option");
    struct cli_options o;
    assert_int_equal(PARSE(&o, "--profile", "/nonexistent/x.conf"), 2);
    assert_non_null(strstr(err_text, "--profile: cannot read '/nonexistent/x.conf'"));
}

/* Profiles whose keys cannot hold together: refused naming FILE:LINE of the
 * key at fault, exit 2, as smtp-mock would refuse the same flags. */
static void test_profile_cross_checks(void **state)
{
    (void)state;
    expect_profile_error("latency = 1ms\n# x\njitter = 2ms\n", ":3: jitter = 2ms is more than latency = 1ms");
    expect_profile_error("jitter = 1ms\nlatency = 0\n", ":1: jitter = 1ms");
    expect_profile_error("latency = 5ms\njitter = 2ms\nlatency-dist = exp\ntempfail = 0.6\n"
                         "drop = 0.5\n", ":5: 'drop': tempfail + permfail + drop + stall add up to 1.1");
    expect_profile_error("fault-stage = body\npermfail = 0.1\n", ":2: 'permfail' cannot be used");
    struct cli_options o;                       /* the same jitter under exp is fine */
    const char *path = write_temp("latency = 5ms\njitter = 8ms\nlatency-dist = exp\n");
    assert_int_equal(PARSE(&o, "--profile", path), 0);
    assert_int_equal(cli_key_line(&o, "jitter"), 2);
    assert_int_equal(cli_key_line(&o, "emails"), 0);
    unlink(path);
}

/* --dump-profile: the resolved values as JSON, the flags over the profile,
 * exit status 0 (rc 1, as --help), nothing else done. */
static void test_dump_profile(void **state)
{
    (void)state;
    struct cli_options o;
    const char *path = write_temp("emails = 7\nlatency = 1500us\nbody-bytes = 2KB\ntempfail = 5%\n");
    assert_int_equal(PARSE(&o, "--profile", path, "--concurrency", "3", "--dump-profile"), 1);
    const char *want[] = { "\"schema\": \"mailbench.profile/1\"", "\"emails\": 7",
        "\"concurrency\": 3", "\"latency\": \"1500us\"", "\"body-bytes\": 2048",
        "\"tempfail\": 0.05", "\"timeout\": \"30s\"", "\"lines\": {\"emails\": 1, \"body-bytes\": 3, "
        "\"latency\": 2, \"tempfail\": 4}", NULL };
    for (int i = 0; want[i]; i++)
        if (!strstr(out_text, want[i]))
            fail_msg("dump lacks %s: %s", want[i], out_text);
    unlink(path);
}

/* A profile whose concurrency needs more descriptors than the hard limit
 * allows is refused at its line (run last: it lowers this process's limit). */
static void test_profile_fd_limit(void **state)
{
    (void)state;
    struct rlimit rl = { 1024, 1024 };
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        fail_msg("setrlimit: %s", strerror(errno));
    expect_profile_error("emails = 5\nconcurrency = 2000\n", ":2: 'concurrency = 2000' needs 2064 file "
                         "descriptors");
    struct cli_options o;
    const char *path = write_temp("concurrency = 900\n");
    assert_int_equal(PARSE(&o, "--profile", path), 0);
    unlink(path);
}

static int count_cb(void *ctx, const char *key, const char *value, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int *n = ctx;
    (*n)++;
    if (strcmp(key, "a") == 0)
        assert_string_equal(value, "1 2 3");   /* inner spaces kept */
    if (strcmp(key, "b") == 0)
        assert_string_equal(value, "x#y");     /* '#' not after a space: part of the value */
    return 0;
}

static void test_profile_parse(void **state)
{
    (void)state;
    int n = 0;
    assert_int_equal(profile_parse("# c\na = 1 2 3 # c\nb=x#y\n\n   # indented comment\nc = z", "t",
                                   count_cb, &n, stderr), 0);
    assert_int_equal(n, 3);
    n = 0;
    assert_int_equal(profile_parse("", "t", count_cb, &n, stderr), 0);
    assert_int_equal(n, 0);
    assert_int_equal(cli_key_side("emails"), CLI_KEY_MODEL);
    assert_int_equal(cli_key_side("latency"), CLI_KEY_SERVER);
    assert_int_equal(cli_key_side("json"), CLI_KEY_CLI);
    assert_int_equal(cli_key_side("nope"), -1);
}

/* Every shipped profile parses, and sets what its name promises. */
static void test_shipped_profiles(void **state)
{
    (void)state;
    glob_t g;
    if (glob("workloads/profiles/*.conf", 0, NULL, &g) != 0)
        fail_msg("no workloads/profiles/*.conf (run from the top directory)");
    const char *names[] = { "default", "alert-storm", "nightly-digest", "cpu-heavy", "slow-server",
                            "flaky-server", "10k-connections", NULL };
    int found = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        struct cli_options o;
        if (PARSE(&o, "--profile", g.gl_pathv[i]) != 0)
            fail_msg("%s: %s", g.gl_pathv[i], err_text);
        for (int k = 0; names[k]; k++) {
            char want[128];
            snprintf(want, sizeof want, "workloads/profiles/%s.conf", names[k]);
            found += strcmp(g.gl_pathv[i], want) == 0;
        }
        if (strstr(g.gl_pathv[i], "10k-connections"))
            assert_int_equal(o.concurrency, 10000);
        if (strstr(g.gl_pathv[i], "flaky-server"))
            assert_true(o.srv.tempfail > 0 && o.srv.drop > 0);
        if (strstr(g.gl_pathv[i], "nightly-digest"))
            assert_true(o.body_bytes >= (1 << 20) && o.emails <= 100);
    }
    assert_int_equal(found, 7);
    globfree(&g);
    struct cli_options d, o;                    /* default.conf = the built-in defaults */
    cli_defaults(&d, "test");
    assert_int_equal(PARSE(&o, "--profile", "workloads/profiles/default.conf"), 0);
    assert_true(d.emails == 0 && o.emails == 1000);   /* 0: unset until the parse ends */
    assert_true(o.concurrency == d.concurrency && o.events == d.events &&
                o.recipients == d.recipients && o.retries == d.retries && o.seed == d.seed &&
                o.timeout_s == d.timeout_s && o.chain == d.chain && o.rate == d.rate);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_option),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_bad_syntax),
        cmocka_unit_test(test_profile_precedence),
        cmocka_unit_test(test_server_strict),
        cmocka_unit_test(test_repeated_options),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_profile_errors),
        cmocka_unit_test(test_profile_parse),
        cmocka_unit_test(test_shipped_profiles),
        cmocka_unit_test(test_start_at),
        cmocka_unit_test(test_profile_cross_checks),
        cmocka_unit_test(test_dump_profile),
        cmocka_unit_test(test_profile_fd_limit),       /* last: lowers RLIMIT_NOFILE */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
