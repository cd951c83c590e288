/* summary — the email-summary workload every model runs.
 *
 * One email = one summary of a minute of synthetic application activity:
 *
 *   (seed, index) ──PRNG──► `events` requests ──► summary ──► RFC 5322 message
 *                          endpoint, status,     counts,      headers + UTF-8
 *                          latency, user         percentiles, text/plain body
 *                                                top-N lists  (+ padding)
 *
 * Contract, relied on by every model and by smtp-mock's verification:
 *  - Deterministic: the same (params, index) gives the same bytes, in every
 *    model, every run, on every machine (integer arithmetic only, our own
 *    splitmix64 PRNG, dates from a fixed epoch, never the wall clock, no
 *    locale).  tests/golden/workload/seed1-email0.eml is seed 1, email 0 with
 *    the default parameters; a port to another language must match it.
 *  - Thread-safe: no mutable globals (the padding template is built once,
 *    by pthread_once, and only read after), no static buffers; every call
 *    allocates its own.
 *  - The CPU cost is in workload_summarize(): O(events log events) (a sort of
 *    the latencies for the percentiles, a hash table of users).  At events=0
 *    it is a few microseconds; at 100,000 it is several milliseconds.
 *  - The message: CRLF line endings only, ends with CRLF, no line longer than
 *    998 octets, and no line begins with "." (the header lines begin with a
 *    field name or a space, the body's with a letter, a digit, a space, "(",
 *    "-" or U+2014, the padding's with its counter): nothing to dot-stuff.
 *    The email says so (smtp_safe = 1) and the models pass it on to the SMTP
 *    client, which then skips its scan (SMTP_CLIENT_SAFE); test_workload
 *    checks the claim byte by byte on varied emails, and MAILBENCH_VERIFY_SAFE=1
 *    makes the client check it on every message of a run.
 *
 * The exact algorithm (so that it can be ported; see summary.c for the code):
 *  PRNG   splitmix64: state += 0x9e3779b97f4a7c15; z = state; z = (z^(z>>30)) *
 *         0xbf58476d1ce4e5b9; z = (z^(z>>27)) * 0x94d049bb133111eb; z^(z>>31).
 *         mix64(x) is the same finaliser applied to x.  The generator of email
 *         `index` starts at state = mix64(seed ^ mix64(index)).
 *  event  four draws a, b, c, d per event, in that order:
 *         endpoint = first i with a % W < cumulative weight (WORKLOAD_ENDPOINTS)
 *         status   = by b % 1000 in the cumulative table WORKLOAD_STATUSES
 *         latency  = 200 + c % 5000 µs; t = (c >> 32) % 100; if t < 1 add
 *                    100000 + (c >> 40) % 900000; else if t < 6 multiply by
 *                    2 + (c >> 48) % 19
 *         user     = min(d % 10000, (d >> 32) % 10000)
 *  summary percentiles by nearest rank over the sorted latencies:
 *         p(q‰) = sorted[max(1, ceil(n*q/1000)) - 1]; mean = floor(sum / n);
 *         top lists ordered by count descending, then by id ascending.
 *  padding see workload_build() below.
 */
#ifndef MAILBENCH_SUMMARY_H
#define MAILBENCH_SUMMARY_H

#include <stddef.h>
#include <stdint.h>

/* Largest sensible values (the CLI enforces them too). */
#define WORKLOAD_MAX_EVENTS     10000000LL      /* 10 M events = 160 MB of scratch */
#define WORKLOAD_MAX_RECIPIENTS 1000
#define WORKLOAD_MAX_BODY_BYTES (256ULL << 20)  /* 256 MB */

#define WORKLOAD_TOP_N      5   /* entries in each "top" list */
#define WORKLOAD_NSTATUS   12   /* distinct HTTP statuses the generator makes */
#define WORKLOAD_NENDPOINT 16   /* distinct endpoints */
#define WORKLOAD_NUSERS 10000   /* user ids are 0 .. WORKLOAD_NUSERS-1 */

/* The envelope sender; recipients are "ops+N@example.test", N = 0 .. R-1. */
#define WORKLOAD_FROM "reports@mailbench.test"

/* What one email is made of.  Models get it from struct cli_options with
 * mailer_workload_params() (models/mailer/mailer.h), or fill it themselves. */
struct workload_params {
    uint64_t seed;          /* --seed: the whole run's randomness */
    long long events;       /* --events: requests summarised per email (0 ..) */
    int recipients;         /* --recipients: RCPT TO count, >= 1 */
    uint64_t body_bytes;    /* --body-bytes: target message size; 0 = summary only */
    long long chain;        /* --chain: email i depends on i-1 unless i % chain == 0; 1 = independent */
};

/* The computed summary of one email's events: fixed size, no pointers, so it
 * can be computed in one thread and rendered in another (the hybrid model). */
struct workload_summary {
    uint64_t index;         /* email number this summarises */
    int64_t window_start;   /* Unix time of the minute summarised (also the Date header) */
    uint64_t events;        /* number of requests = sum of status_count[] */
    uint64_t status_count[WORKLOAD_NSTATUS];  /* by position in workload_status_code() */
    uint64_t class_count[6];    /* by status / 100: [2] = 2xx ... [5] = 5xx */
    uint64_t lat_p50_us, lat_p90_us, lat_p99_us, lat_p999_us;  /* nearest rank; 0 if no events */
    uint64_t lat_max_us;    /* largest latency; 0 if no events */
    uint64_t lat_mean_us;   /* floor(sum / events); 0 if no events */
    uint64_t distinct_users;    /* users with at least one request */
    int n_top_endpoints;    /* entries used in top_endpoints (<= WORKLOAD_TOP_N) */
    struct {
        int endpoint;       /* index for workload_endpoint_name() */
        uint64_t count;     /* requests to it */
        uint64_t errors;    /* of which 5xx */
    } top_endpoints[WORKLOAD_TOP_N];
    int n_top_users;        /* entries used in top_users */
    struct {
        uint32_t user;      /* user id (rendered "user-%04u") */
        uint64_t count;     /* requests by this user */
    } top_users[WORKLOAD_TOP_N];
};

/* One rendered email, ready to send.  Owns its memory: workload_email_free(). */
struct workload_email {
    uint64_t index;         /* email number (0-based) within the run */
    const char *from;       /* envelope sender (WORKLOAD_FROM, static) */
    int nrcpt;              /* number of recipients */
    char **rcpt;            /* nrcpt envelope recipients, "ops+N@example.test" */
    char *data;             /* the message: headers, blank line, body; NUL-terminated */
    size_t len;             /* bytes in data (without the NUL) */
    char message_id[80];    /* "<mb.SEED.INDEX@mailbench.test>", with the brackets */
    uint64_t hash;          /* digest_hash(data, len): add it to the run's digest when delivered */
    int smtp_safe;          /* 1: no bare CR/LF and no line beginning with "." (true of every
                               email workload_render makes, by construction: the SMTP client
                               may skip its scan, SMTP_CLIENT_SAFE); 0: unknown */
    struct workload_summary summary;    /* what the body says (tests check it) */
};

/* The CPU part: generate the events of email `index` and summarise them.
 * Returns 0, or -1 if memory ran out (errno ENOMEM). */
int workload_summarize(const struct workload_params *p, uint64_t index,
                       struct workload_summary *out);

/* The rendering part: headers + body from a summary (cheap, but O(body_bytes)).
 * Fills every field of *out; returns 0, or -1 (ENOMEM) leaving *out empty. */
int workload_render(const struct workload_params *p, const struct workload_summary *s,
                    struct workload_email *out);

/* Both in one call: what most models use.  Thread-safe.
 *
 * Headers, in this order: From, To (one address per line, folded), Subject,
 * Date, Message-ID, [In-Reply-To, References when chained], MIME-Version,
 * Content-Type: text/plain; charset=utf-8, Content-Transfer-Encoding: 8bit,
 * X-Mailbench: seed=S email=I events=E.
 *
 * --body-bytes B: let S be the length of the message without padding and
 * A the length of the appendix heading line (WORKLOAD_PAD_HEADING + CRLF).
 * If B >= S + A + 2, the body ends with that heading and lines of padding,
 * and the message is exactly B bytes long; otherwise nothing is added and
 * the message is S bytes (so B = 0 means "the summary only").  With
 * R = B - S - A bytes to fill: n = R / 78 lines, r = R % 78.  Padding line k
 * (k = 0 .. n-1) is the first 76 characters of sprintf("%08llu ", k)
 * followed by WORKLOAD_PAD_ALPHABET repeated from position k % 62, then CRLF.
 * If r >= 2 one more line k = n holds the first r - 2 such characters; if
 * r == 1 the last line (k = n-1) holds 77 characters instead of 76. */
int workload_build(const struct workload_params *p, uint64_t index,
                   struct workload_email *out);

/* The envelope recipients of every email with n of them (n < 1 counts as 1):
 * "ops+N@example.test", N = 0 .. n-1, in one allocation: free() it.  NULL
 * when out of memory. */
char **workload_recipients(int n);

/* Frees what workload_render/workload_build allocated; safe on a zeroed or
 * already freed email. */
void workload_email_free(struct workload_email *e);

/* The email that email `index` depends on (its chain predecessor, index-1),
 * or -1 when it starts a chain (index % chain == 0, or chain <= 1).  A model
 * must not start sending email i before email workload_chain_prev(p, i) has
 * been delivered (or has failed for good). */
long long workload_chain_prev(const struct workload_params *p, uint64_t index);

/* A real blocking call of `seconds` (nanosleep, standing for a blocking DNS
 * lookup or file read), resumed after EINTR for the remaining time.  It
 * blocks the calling thread: in the async model it stalls the reactor,
 * which is the point of --blocking. */
void workload_blocking_call(double seconds);

/* Names for the summary's numeric ids. */
const char *workload_endpoint_name(int endpoint);  /* "GET /api/orders", ... */
int workload_status_code(int i);                   /* 200, 201, ... */

/* Padding constants (see workload_build). */
#define WORKLOAD_PAD_HEADING "-- appendix: padding to reach --body-bytes --"
#define WORKLOAD_PAD_ALPHABET \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

#endif
