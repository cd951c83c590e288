/* summary — the email-summary workload; see summary.h for the contract and
 * the algorithm in words.  Everything here is integer arithmetic so that a
 * port (the Python/Twisted reference) can produce the same bytes. */
#include "summary.h"

#include <stdbool.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "digest.h"

/* 2024-01-01T00:00:00Z: every Date is derived from it, never from the clock. */
#define WORKLOAD_EPOCH 1704067200LL

/* ---------------------------------------------------------------- PRNG */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t next64(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    return mix64(*state);
}

/* ---------------------------------------------------------------- tables */

static const struct { const char *name; unsigned weight; } endpoints[WORKLOAD_NENDPOINT] = {
    { "GET /api/orders", 30 },        { "GET /api/products", 24 },
    { "POST /api/orders", 12 },       { "GET /api/users/me", 10 },
    { "GET /health", 9 },             { "POST /api/login", 8 },
    { "GET /api/search", 7 },         { "PUT /api/cart", 6 },
    { "GET /static/app.js", 5 },      { "DELETE /api/cart/item", 4 },
    { "GET /api/recommendations", 4 }, { "POST /api/payments", 3 },
    { "GET /api/invoices", 3 },       { "PATCH /api/users/me", 2 },
    { "POST /api/upload", 2 },        { "GET /admin/reports", 1 },
};
#define ENDPOINT_WEIGHT_SUM 130u

/* Cumulative per-mille thresholds: status i is drawn when b % 1000 < until. */
static const struct { int code; unsigned until; } statuses[WORKLOAD_NSTATUS] = {
    { 200, 850 }, { 201, 880 }, { 204, 900 }, { 304, 920 },
    { 400, 940 }, { 401, 950 }, { 403, 955 }, { 404, 975 },
    { 429, 980 }, { 500, 990 }, { 502, 995 }, { 503, 1000 },
};

const char *workload_endpoint_name(int endpoint)
{
    return endpoint >= 0 && endpoint < WORKLOAD_NENDPOINT ? endpoints[endpoint].name : "?";
}

int workload_status_code(int i)
{
    return i >= 0 && i < WORKLOAD_NSTATUS ? statuses[i].code : 0;
}

/* ---------------------------------------------------------------- summary */

/* One event, from four draws (see summary.h). */
struct event { int endpoint; int status; uint32_t latency_us; uint32_t user; };

static struct event gen_event(uint64_t *rng)
{
    uint64_t a = next64(rng), b = next64(rng), c = next64(rng), d = next64(rng);
    struct event ev = { 0, 0, 0, 0 };
    unsigned x = (unsigned)(a % ENDPOINT_WEIGHT_SUM), cum = 0;
    for (ev.endpoint = 0; ev.endpoint < WORKLOAD_NENDPOINT - 1; ev.endpoint++) {
        cum += endpoints[ev.endpoint].weight;
        if (x < cum)
            break;
    }
    unsigned y = (unsigned)(b % 1000);
    while (y >= statuses[ev.status].until)
        ev.status++;
    uint64_t lat = 200 + c % 5000, t = (c >> 32) % 100;
    if (t < 1)
        lat += 100000 + (c >> 40) % 900000;
    else if (t < 6)
        lat *= 2 + (c >> 48) % 19;
    ev.latency_us = (uint32_t)lat;
    uint64_t u1 = d % WORKLOAD_NUSERS, u2 = (d >> 32) % WORKLOAD_NUSERS;
    ev.user = (uint32_t)(u1 < u2 ? u1 : u2);
    return ev;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least q‰ of the samples <= it. */
static uint64_t rank_permille(const uint32_t *sorted, uint64_t n, uint64_t q)
{
    if (n == 0)
        return 0;
    uint64_t rank = (n * q + 999) / 1000;
    return sorted[(rank < 1 ? 1 : rank) - 1];
}

/* Per-user request counts: open addressing, key = user + 1 (0 = empty).
 * Sized for min(events, users) so the work grows with events. */
struct user_table { uint32_t *key; uint64_t *count; size_t mask; };

static int users_init(struct user_table *t, long long events)
{
    size_t want = (size_t)(events < WORKLOAD_NUSERS ? events : WORKLOAD_NUSERS) * 2, n = 16;
    while (n < want)
        n <<= 1;
    t->key = calloc(n, sizeof *t->key);
    t->count = calloc(n, sizeof *t->count);
    t->mask = n - 1;
    return t->key && t->count ? 0 : -1;
}

static void users_add(struct user_table *t, uint32_t user)
{
    size_t i = (size_t)mix64(user) & t->mask;
    while (t->key[i] != 0 && t->key[i] != user + 1)
        i = (i + 1) & t->mask;
    t->key[i] = user + 1;
    t->count[i]++;
}

/* Does (count a, id a) rank before (count b, id b)?  Count desc, id asc. */
static int ranks_before(uint64_t ca, uint32_t ia, uint64_t cb, uint32_t ib)
{
    return ca > cb || (ca == cb && ia < ib);
}

static void top_users(const struct user_table *t, struct workload_summary *s)
{
    s->n_top_users = 0;
    for (size_t i = 0; i <= t->mask; i++) {
        if (t->key[i] == 0)
            continue;
        s->distinct_users++;
        uint32_t id = t->key[i] - 1;
        uint64_t c = t->count[i];
        int pos = s->n_top_users;       /* insertion into the sorted top-N */
        while (pos > 0 && ranks_before(c, id, s->top_users[pos - 1].count, s->top_users[pos - 1].user))
            pos--;
        if (pos >= WORKLOAD_TOP_N)
            continue;
        int last = s->n_top_users < WORKLOAD_TOP_N ? s->n_top_users : WORKLOAD_TOP_N - 1;
        memmove(&s->top_users[pos + 1], &s->top_users[pos], (size_t)(last - pos) * sizeof s->top_users[0]);
        s->top_users[pos].user = id;
        s->top_users[pos].count = c;
        if (s->n_top_users < WORKLOAD_TOP_N)
            s->n_top_users++;
    }
}

static void top_endpoints(const uint64_t *count, const uint64_t *errors, struct workload_summary *s)
{
    int order[WORKLOAD_NENDPOINT];
    for (int i = 0; i < WORKLOAD_NENDPOINT; i++) {     /* insertion sort, 16 entries */
        int j = i;
        while (j > 0 && ranks_before(count[i], (uint32_t)i, count[order[j - 1]], (uint32_t)order[j - 1])) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    s->n_top_endpoints = 0;
    for (int k = 0; k < WORKLOAD_TOP_N && count[order[k]] > 0; k++) {
        s->top_endpoints[k].endpoint = order[k];
        s->top_endpoints[k].count = count[order[k]];
        s->top_endpoints[k].errors = errors[order[k]];
        s->n_top_endpoints++;
    }
}

static void latency_stats(uint32_t *lat, uint64_t n, uint64_t sum, struct workload_summary *s)
{
    qsort(lat, n, sizeof *lat, cmp_u32);
    s->lat_p50_us = rank_permille(lat, n, 500);
    s->lat_p90_us = rank_permille(lat, n, 900);
    s->lat_p99_us = rank_permille(lat, n, 990);
    s->lat_p999_us = rank_permille(lat, n, 999);
    s->lat_max_us = n ? lat[n - 1] : 0;
    s->lat_mean_us = n ? sum / n : 0;
}

int workload_summarize(const struct workload_params *p, uint64_t index, struct workload_summary *s)
{
    memset(s, 0, sizeof *s);
    s->index = index;
    s->window_start = WORKLOAD_EPOCH + (int64_t)(p->seed % 3650) * 86400 + (int64_t)index * 60;
    uint64_t n = p->events > 0 ? (uint64_t)p->events : 0;
    uint32_t *lat = malloc((n ? n : 1) * sizeof *lat);
    struct user_table users = { NULL, NULL, 0 };
    if (lat == NULL || users_init(&users, p->events) != 0) {
        free(lat);
        free(users.key);
        free(users.count);
        errno = ENOMEM;
        return -1;
    }
    uint64_t ep_count[WORKLOAD_NENDPOINT] = { 0 }, ep_errors[WORKLOAD_NENDPOINT] = { 0 }, sum = 0;
    uint64_t rng = mix64(p->seed ^ mix64(index));
    for (uint64_t i = 0; i < n; i++) {
        struct event ev = gen_event(&rng);
        int code = statuses[ev.status].code;
        s->status_count[ev.status]++;
        s->class_count[code / 100]++;
        ep_count[ev.endpoint]++;
        ep_errors[ev.endpoint] += code >= 500;
        lat[i] = ev.latency_us;
        sum += ev.latency_us;
        users_add(&users, ev.user);
    }
    s->events = n;
    latency_stats(lat, n, sum, s);
    top_endpoints(ep_count, ep_errors, s);
    top_users(&users, s);
    free(lat);
    free(users.key);
    free(users.count);
    return 0;
}

/* ---------------------------------------------------------------- rendering */

/* A growing string; on allocation failure it sets oom and ignores the rest. */
struct sbuf { char *data; size_t len, cap; int oom; };

static int sb_reserve(struct sbuf *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL) {
        b->oom = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (sb_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

__attribute__((format(printf, 2, 3)))
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    if (b->oom)
        return;
    /* Straight into the free space; measured and redone only if it did not fit. */
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < room) {
        b->len += (size_t)n;
        return;
    }
    if (n < 0 || sb_reserve(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* The fixed text of every email without printf (a dozen vsnprintf calls were
 * ~10% of the client's CPU per 10 KB message): a string, and decimal numbers
 * as %llu and as %0Nd/%0Nlld with N <= 4 would write them. */
static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static size_t u64_text(uint64_t v, char out[20])   /* digits at the end of out */
{
    size_t i = 20;
    do {
        out[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return i;
}

static void sb_u(struct sbuf *b, uint64_t v)
{
    char d[20];
    size_t i = u64_text(v, d);
    sb_add(b, d + i, 20 - i);
}

static void sb_u0(struct sbuf *b, long long v, int width)   /* %0*lld */
{
    if (v < 0) {
        sb_printf(b, "%0*lld", width, v);
        return;
    }
    char d[20];
    size_t i = u64_text((uint64_t)v, d);
    while ((int)(20 - i) < width)
        d[--i] = '0';
    sb_add(b, d + i, 20 - i);
}

/* Civil date from Unix time, proleptic Gregorian (H. Hinnant's algorithm):
 * no gmtime, no locale, trivially portable. */
struct civil { long long y; int mon, day, hour, min, sec, wday; };

static struct civil civil_from_unix(int64_t t)
{
    struct civil c;
    int64_t days = t / 86400, rem = t % 86400;
    if (rem < 0) { rem += 86400; days--; }
    c.hour = (int)(rem / 3600);
    c.min = (int)(rem / 60 % 60);
    c.sec = (int)(rem % 60);
    c.wday = (int)(((days % 7) + 11) % 7);     /* 1970-01-01 was a Thursday (4) */
    int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    c.day = (int)(doy - (153 * mp + 2) / 5 + 1);
    c.mon = (int)(mp < 10 ? mp + 3 : mp - 9);
    c.y = yoe + era * 400 + (c.mon <= 2);
    return c;
}

/* "%04lld-%02d-%02d %02d:%02d": the minute, as the subject and the body name it. */
static void sb_minute(struct sbuf *b, const struct civil *c)
{
    sb_u0(b, c->y, 4);
    sb_str(b, "-");
    sb_u0(b, c->mon, 2);
    sb_str(b, "-");
    sb_u0(b, c->day, 2);
    sb_str(b, " ");
    sb_u0(b, c->hour, 2);
    sb_str(b, ":");
    sb_u0(b, c->min, 2);
}

static const char *const wday_names[7] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const mon_names[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static void message_id(uint64_t seed, uint64_t index, char out[80])
{
    /* "<mb.%llu.%llu@mailbench.test>": at most 4 + 20 + 1 + 20 + 16 + 1 bytes */
    char d[20];
    size_t n = 0, i;
    memcpy(out, "<mb.", 4);
    n = 4;
    i = u64_text(seed, d);
    memcpy(out + n, d + i, 20 - i);
    n += 20 - i;
    out[n++] = '.';
    i = u64_text(index, d);
    memcpy(out + n, d + i, 20 - i);
    n += 20 - i;
    memcpy(out + n, "@mailbench.test>", 17);
}

/* "x.y%" of part/whole, rounded down, integers only. */
static void permille_text(uint64_t part, uint64_t whole, char out[32])
{
    uint64_t pm = whole ? part * 1000 / whole : 0;
    char d[20];
    size_t i = u64_text(pm / 10, d), n = 20 - i;
    memcpy(out, d + i, n);
    out[n++] = '.';
    out[n++] = (char)('0' + pm % 10);
    out[n++] = '%';
    out[n] = '\0';
}

static void render_headers(struct sbuf *b, const struct workload_params *p,
                           const struct workload_summary *s, const char *msgid)
{
    struct civil c = civil_from_unix(s->window_start);
    char pct[32];
    permille_text(s->class_count[5], s->events, pct);
    sb_str(b, "From: mailbench <" WORKLOAD_FROM ">\r\n");
    for (int i = 0; i < p->recipients; i++) {   /* "%sops+%d@example.test%s\r\n" */
        sb_str(b, i == 0 ? "To: ops+" : " ops+");
        sb_u(b, (uint64_t)i);
        sb_str(b, i + 1 < p->recipients ? "@example.test,\r\n" : "@example.test\r\n");
    }
    /* "Subject: [mailbench] Activity %04lld-%02d-%02d %02d:%02d UTC: %llu requests, %s 5xx" */
    sb_str(b, "Subject: [mailbench] Activity ");
    sb_minute(b, &c);
    sb_str(b, " UTC: ");
    sb_u(b, s->events);
    sb_str(b, " requests, ");
    sb_str(b, pct);
    sb_str(b, " 5xx\r\n");
    /* "Date: %s, %02d %s %04lld %02d:%02d:%02d +0000" */
    sb_str(b, "Date: ");
    sb_str(b, wday_names[c.wday]);
    sb_str(b, ", ");
    sb_u0(b, c.day, 2);
    sb_str(b, " ");
    sb_str(b, mon_names[c.mon - 1]);
    sb_str(b, " ");
    sb_u0(b, c.y, 4);
    sb_str(b, " ");
    sb_u0(b, c.hour, 2);
    sb_str(b, ":");
    sb_u0(b, c.min, 2);
    sb_str(b, ":");
    sb_u0(b, c.sec, 2);
    sb_str(b, " +0000\r\nMessage-ID: ");
    sb_str(b, msgid);
    sb_str(b, "\r\n");
    long long prev = workload_chain_prev(p, s->index);
    if (prev >= 0) {
        char parent[80], root[80];
        message_id(p->seed, (uint64_t)prev, parent);
        message_id(p->seed, s->index - s->index % (uint64_t)p->chain, root);
        sb_printf(b, "In-Reply-To: %s\r\n", parent);
        if (strcmp(root, parent) == 0)
            sb_printf(b, "References: %s\r\n", parent);
        else
            sb_printf(b, "References: %s\r\n %s\r\n", root, parent);
    }
    sb_str(b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\nX-Mailbench: seed=");
    sb_u(b, p->seed);
    sb_str(b, " email=");
    sb_u(b, s->index);
    sb_str(b, " events=");
    sb_u(b, s->events);
    sb_str(b, "\r\n\r\n");
}

#define U(x) ((unsigned long long)(x))

static void render_body(struct sbuf *b, const struct workload_params *p, const struct workload_summary *s)
{
    struct civil c = civil_from_unix(s->window_start), e = civil_from_unix(s->window_start + 60);
    /* "Activity summary for %04lld-%02d-%02d %02d:%02d\u2013%02d:%02d UTC\r\n"
     * "(mailbench email %llu, seed %llu)\r\n\r\n" */
    sb_str(b, "Activity summary for ");
    sb_minute(b, &c);
    sb_str(b, "\xe2\x80\x93");
    sb_u0(b, e.hour, 2);
    sb_str(b, ":");
    sb_u0(b, e.min, 2);
    sb_str(b, " UTC\r\n(mailbench email ");
    sb_u(b, s->index);
    sb_str(b, ", seed ");
    sb_u(b, p->seed);
    sb_str(b, ")\r\n\r\n");
    if (s->events == 0) {
        sb_str(b, "No requests in this window.\r\n\r\n");
    } else {
        sb_printf(b, "Requests: %llu (2xx %llu \xc2\xb7 3xx %llu \xc2\xb7 4xx %llu \xc2\xb7 5xx %llu)\r\n"
                  "Distinct users: %llu\r\n\r\n", U(s->events), U(s->class_count[2]),
                  U(s->class_count[3]), U(s->class_count[4]), U(s->class_count[5]),
                  U(s->distinct_users));
        sb_printf(b, "Latency (\xc2\xb5s)\r\n  p50   %10llu\r\n  p90   %10llu\r\n  p99   %10llu\r\n"
                  "  p99.9 %10llu\r\n  max   %10llu\r\n  mean  %10llu\r\n\r\n",
                  U(s->lat_p50_us), U(s->lat_p90_us), U(s->lat_p99_us), U(s->lat_p999_us),
                  U(s->lat_max_us), U(s->lat_mean_us));
        sb_printf(b, "Status  Requests\r\n");
        for (int i = 0; i < WORKLOAD_NSTATUS; i++)
            if (s->status_count[i])
                sb_printf(b, "  %3d   %8llu\r\n", statuses[i].code, U(s->status_count[i]));
        sb_printf(b, "\r\nTop endpoints                 Requests       5xx\r\n");
        for (int i = 0; i < s->n_top_endpoints; i++)
            sb_printf(b, "  %-26s %9llu %9llu\r\n", endpoints[s->top_endpoints[i].endpoint].name,
                      U(s->top_endpoints[i].count), U(s->top_endpoints[i].errors));
        sb_printf(b, "\r\nTop users     Requests\r\n");
        for (int i = 0; i < s->n_top_users; i++)
            sb_printf(b, "  user-%04u %9llu\r\n", (unsigned)s->top_users[i].user,
                      U(s->top_users[i].count));
        sb_printf(b, "\r\n");
    }
    sb_str(b, "\xe2\x80\x94 mailbench (synthetic data: the seed and email number reproduce it)\r\n");
}

/* Padding line k is a counter and a run of the alphabet starting at k % 62
 * (summary.h).  It is copied, not computed: the counter is kept in decimal
 * and incremented in place, and the run is a slice of the alphabet repeated
 * (at most 61 + 77 characters are read from it). */
#define PAD_ALPHA3 WORKLOAD_PAD_ALPHABET WORKLOAD_PAD_ALPHABET WORKLOAD_PAD_ALPHABET
static const char pad_pattern[] = PAD_ALPHA3;

struct pad_counter { char text[80]; size_t head; uint64_t k; };   /* text: room for n <= 77 */

static void pad_counter_set(struct pad_counter *c, uint64_t k)
{
    c->k = k;
    c->head = (size_t)snprintf(c->text, sizeof c->text, "%08llu ", U(k));
}

/* Writes the first n (<= 77) characters of padding line c->k and CRLF at w. */
static inline void pad_put(char *w, const struct pad_counter *c, size_t m, size_t n)
{
    if (n == 76 && c->head == 9) {          /* nearly every line: fixed sizes */
        memcpy(w, c->text, 9);
        memcpy(w + 9, pad_pattern + m, 67);
    } else if (n <= c->head) {
        memcpy(w, c->text, n);
    } else {
        memcpy(w, c->text, c->head);
        memcpy(w + c->head, pad_pattern + m, n - c->head);
    }
    memcpy(w + n, "\r\n", 2);
}

/* The 8 digits of a counter below 10^8 as the bytes of a little-endian
 * word (the last digit in the top byte), and its increment in the word. */
static bool pad_word_ok(void)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return true;
#else
    return false;
#endif
}

static inline uint64_t pad_word_next(uint64_t x)
{
    for (int sh = 56; sh >= 0; sh -= 8) {
        if (((x >> sh) & 0xff) != '9')
            return x + (1ULL << sh);
        x = (x & ~(0xffULL << sh)) | ((uint64_t)'0' << sh);
    }
    return x;       /* 99999999 -> 00000000: the caller stops using it at 10^8 */
}

/* 62 padding lines with their counters left blank ("        "): line i
 * holds the alphabet from position i, the same in every block of 62 lines.
 * Built once (read-only afterwards: thread-safe). */
#define PAD_TEMPLATE_BYTES (62 * 78)
static char pad_template_text[PAD_TEMPLATE_BYTES];
static pthread_once_t pad_template_once = PTHREAD_ONCE_INIT;

static void pad_template_build(void)
{
    for (int i = 0; i < 62; i++) {
        char *w = pad_template_text + 78 * i;
        memcpy(w, "         ", 9);
        memcpy(w + 9, pad_pattern + i, 67);
        memcpy(w + 76, "\r\n", 2);
    }
}

static const char *pad_template(void)
{
    pthread_once(&pad_template_once, pad_template_build);
    return pad_template_text;
}

/* Large messages are hashed as they are written, a block of lines at a
 * time while it is still in the cache, instead of in a second pass over
 * memory afterwards: h (NULL = not) has hashed b->data[0..*hashed). */
#define HASH_BLOCK_LINES 256   /* ~20 KB */

static void render_padding(struct sbuf *b, uint64_t target, struct digest_ctx *h, size_t *hashed)
{
    size_t heading = sizeof WORKLOAD_PAD_HEADING - 1 + 2;
    if (target < (uint64_t)b->len + heading + 2)
        return;
    uint64_t fill = target - b->len - heading, n = fill / 78, r = fill % 78;
    if (sb_reserve(b, (size_t)(target - b->len)) != 0)
        return;
    sb_add(b, WORKLOAD_PAD_HEADING "\r\n", heading);
    char *w = b->data + b->len;
    struct pad_counter c;
    /* The counter of nearly every line ("%08llu ", k < 10^8) is kept as its
     * 8 digits in a register and incremented there: kept in c.text, the
     * byte-wise increment followed by an 8-byte load of the same bytes
     * stalled every line on store forwarding (half of the render's time). */
    uint64_t digits = 0;
    bool fast = pad_word_ok();
    if (fast)
        memcpy(&digits, "00000000", 8);
    size_t m = 0;                           /* k % 62 */
    uint64_t k = 0;
    /* Whole blocks of 62 lines (the alphabet's period) are one copy of the
     * template, then their counters written over it. */
    uint64_t nblock = fast ? n - (r == 1) : 0;    /* lines that are 76 long */
    if (nblock > 100000000)
        nblock = 100000000;
    const char *tmpl = nblock >= 62 ? pad_template() : NULL;
    for (; tmpl && k + 62 <= nblock; k += 62) {
        memcpy(w, tmpl, PAD_TEMPLATE_BYTES);
        for (int i = 0; i < 62; i++, w += 78) {
            memcpy(w, &digits, 8);
            digits = pad_word_next(digits);
        }
        if (h && (k / 62) % 4 == 3) {       /* ~20 KB: hashed while in the cache */
            digest_update(h, b->data + *hashed, (size_t)(w - b->data) - *hashed);
            *hashed = (size_t)(w - b->data);
        }
    }
    for (; k < n; k++) {
        size_t len = (r == 1 && k == n - 1) ? 77 : 76;
        if (fast && len == 76 && k < 100000000) {
            memcpy(w, &digits, 8);
            w[8] = ' ';
            memcpy(w + 9, pad_pattern + m, 67);
            memcpy(w + 76, "\r\n", 2);
        } else {
            pad_counter_set(&c, k);
            pad_put(w, &c, m, len);
        }
        w += len + 2;
        if (fast)
            digits = pad_word_next(digits);
        if (++m == 62)
            m = 0;
        if (h && k % HASH_BLOCK_LINES == HASH_BLOCK_LINES - 1) {
            digest_update(h, b->data + *hashed, (size_t)(w - b->data) - *hashed);
            *hashed = (size_t)(w - b->data);
        }
    }
    if (r >= 2) {
        pad_counter_set(&c, n);
        pad_put(w, &c, m, (size_t)(r - 2));
        w += r;
    }
    b->len = (size_t)(w - b->data);
    b->data[b->len] = '\0';
}

char **workload_recipients(int n)
{
    if (n < 1)
        n = 1;
    size_t each = sizeof "ops+@example.test" + 11;
    char **v = malloc((size_t)n * (sizeof *v + each));
    if (v == NULL)
        return NULL;
    char *text = (char *)(v + n);
    for (int i = 0; i < n; i++) {           /* "ops+%d@example.test" */
        char d[20], *w = v[i] = text + (size_t)i * each;
        size_t k = u64_text((uint64_t)i, d);
        memcpy(w, "ops+", 4);
        memcpy(w + 4, d + k, 20 - k);
        memcpy(w + 4 + 20 - k, "@example.test", sizeof "@example.test");
    }
    return v;
}

int workload_render(const struct workload_params *p, const struct workload_summary *s,
                    struct workload_email *out)
{
    memset(out, 0, sizeof *out);
    struct sbuf b = { NULL, 0, 0, 0 };
    /* One allocation of the final size when padding makes it known (the
     * summary alone is under 4 KB with the default recipients). */
    b.cap = p->body_bytes > 4096 && p->body_bytes <= WORKLOAD_MAX_BODY_BYTES
            ? (size_t)p->body_bytes + 1 : 4096;
    b.data = malloc(b.cap);
    if (b.data == NULL)
        b.cap = 0, b.oom = 1;
    out->index = s->index;
    out->from = WORKLOAD_FROM;
    out->summary = *s;
    message_id(p->seed, s->index, out->message_id);
    render_headers(&b, p, s, out->message_id);
    render_body(&b, p, s);
    /* Hashed while rendered above 64 KB (see render_padding), else after. */
    struct digest_ctx hctx;
    size_t hashed = 0;
    bool stream = p->body_bytes > 65536 && !b.oom;
    if (stream)
        digest_init(&hctx);
    render_padding(&b, p->body_bytes, stream ? &hctx : NULL, &hashed);
    out->rcpt = workload_recipients(p->recipients);
    if (b.oom || b.data == NULL || out->rcpt == NULL) {
        free(b.data);
        free(out->rcpt);
        memset(out, 0, sizeof *out);
        errno = ENOMEM;
        return -1;
    }
    out->nrcpt = p->recipients > 0 ? p->recipients : 1;
    out->smtp_safe = 1;     /* by construction (summary.h); test_workload checks it */
    /* Fit the buffer to the message: it lives as long as its email is in
     * flight, and the doubling left up to half of it unused. */
    char *fit = b.cap > b.len + 1 + 512 ? realloc(b.data, b.len + 1) : NULL;
    out->data = fit ? fit : b.data;
    out->len = b.len;
    if (stream) {
        digest_update(&hctx, out->data + hashed, out->len - hashed);
        out->hash = digest_final(&hctx);
    } else {
        out->hash = digest_hash(out->data, out->len);
    }
    return 0;
}

int workload_build(const struct workload_params *p, uint64_t index, struct workload_email *out)
{
    struct workload_summary s;
    if (workload_summarize(p, index, &s) != 0) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    return workload_render(p, &s, out);
}

void workload_email_free(struct workload_email *e)
{
    free(e->data);
    free(e->rcpt);
    e->data = NULL;
    e->rcpt = NULL;
    e->len = 0;
    e->nrcpt = 0;
}

long long workload_chain_prev(const struct workload_params *p, uint64_t index)
{
    if (p->chain <= 1 || index % (uint64_t)p->chain == 0)
        return -1;
    return (long long)index - 1;
}

void workload_blocking_call(double seconds)
{
    if (!(seconds > 0))
        return;
    struct timespec req, rem;
    req.tv_sec = (time_t)seconds;
    req.tv_nsec = (long)((seconds - (double)req.tv_sec) * 1e9);
    if (req.tv_nsec >= 1000000000L)
        req.tv_nsec = 999999999L;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
}
