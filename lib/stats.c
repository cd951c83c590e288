/* stats — run counters, the steady-state window, rusage, progress and the run JSON; see stats.h. */
#include "stats.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "digest.h"
#include "json.h"
#include "units.h"

#ifndef MAILBENCH_GIT_REV
#define MAILBENCH_GIT_REV "unknown"
#endif

#if defined(__clang__)
#define STATS_COMPILER __VERSION__
#elif defined(__GNUC__)
#define STATS_COMPILER "gcc " __VERSION__
#else
#define STATS_COMPILER "unknown"
#endif

/* ---------------------------------------------------------------- run */

double stats_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void stats_run_init(struct stats_run *s, uint64_t emails)
{
    memset(s, 0, sizeof *s);
    s->emails = emails;
    s->start_s = stats_now();
    stats_sample_threads(s);
}

/* ---------------------------------------------------------------- window */

/* The process's window.  Written by stats_window_start before the emails start
 * (before the threads model opens its gate: the mutex orders it; before the
 * async model starts its reactor threads); the snapshots are claimed with a
 * compare-and-swap, so one thread takes each.  What changes while the
 * emails run and is read by every thread is atomic (ThreadSanitizer-clean
 * with several threads ending emails and polling the window). */
static struct {
    double open_at;               /* window start, stats_now() time */
    _Atomic double close_at;      /* its nominal end (moves when it opens late) */
    _Atomic double limit_at;      /* the latest it may close, however few emails ended */
    long long min_count;          /* emails that must end in it before it closes */
    long long round;              /* emails that must end before it opens: a round (the
                                   * open loop: one, so that an email's latency has passed
                                   * and completions keep pace with the arrivals) */
    _Atomic long long count;      /* emails ended in it so far */
    _Atomic long long total;      /* emails ended since the start */
    double duration;              /* its nominal length (0: sized by --emails) */
    _Atomic double satisfied_at;  /* when count reached min_count (0: not yet) */
    _Atomic int closed;           /* it has closed, at closed_at */
    _Atomic double closed_at;     /* written once, by the closer, just after closed (-1 before) */
    _Atomic int state;            /* 0 not open yet, 1 open (first snapshot taken), 2 closed */
    _Atomic double t_open;        /* when the first snapshot was taken */
    double t_close;               /* when the second was (read after the threads are joined) */
    double cpu_open, cpu_close;   /* process CPU seconds then */
} win = { .open_at = 0, .close_at = INFINITY, .limit_at = INFINITY };

static double process_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A closed loop's window must hold rounds of the emails in flight in steady
 * state: at 10,000 connections, or 10 ms of CPU per email in one reactor
 * thread, the first emails end only after a fixed short window would have
 * closed, and all together.  So the warm-up lasts until a round has ended,
 * and the window past its nominal end until three rounds' worth (3 x the
 * emails in flight, at most 1,000) have ended in it, up to 10 x its length:
 * threads that share a core finish a round in one burst, and a window of
 * one or two bursts would read the rate by where it cut them.  An open
 * loop's window opens once the first email has ended (before that, at 50 ms
 * a reply, no email of the window's first 200 ms could end in it: the rate
 * read 70% of the offered); its arrivals stop at the nominal end: no
 * extension there. */
void stats_window_start(const struct cli_options *o, double start)
{
    win.open_at = start + o->warmup_s;
    win.duration = o->duration_s;
    win.close_at = o->duration_s > 0 ? win.open_at + o->duration_s : INFINITY;
    win.limit_at = o->duration_s > 0 ? win.open_at + 10 * o->duration_s : INFINITY;
    atomic_store(&win.total, 0);
    win.min_count = o->rate > 0 || o->duration_s <= 0 ? 0
                    : (3 * o->concurrency < 1000 ? 3 * o->concurrency : 1000);
    win.round = o->duration_s <= 0 ? 0
                : o->rate > 0 ? 1 : (o->concurrency < 1000 ? o->concurrency : 1000);
    atomic_store(&win.count, 0);
    win.satisfied_at = win.min_count == 0 ? win.open_at : 0;
    win.closed_at = -1;
    atomic_store(&win.closed, 0);
    atomic_store(&win.state, 0);
    stats_window_poll();
}

/* When the window ends, once it has closed. */
static double closing_time(void)
{
    double sat = win.satisfied_at, close = win.close_at;
    return sat == 0 ? win.limit_at : sat > close ? sat : close;
}

/* Close it if its time has come; true once closed. */
static bool window_closes(double now)
{
    if (atomic_load(&win.closed))
        return true;
    if (now < win.close_at || (atomic_load(&win.count) < win.min_count && now < win.limit_at))
        return false;
    int expected = 0;
    if (atomic_compare_exchange_strong(&win.closed, &expected, 1))    /* its true end */
        win.closed_at = closing_time();
    return true;
}

bool stats_window_may_start(void)
{
    return win.close_at == INFINITY || !window_closes(stats_now());
}

static void window_snapshot(int from, double now)
{
    int expected = from;
    if (!atomic_compare_exchange_strong(&win.state, &expected, from + 1))
        return;                           /* another thread took it */
    if (from == 0) {
        win.t_open = now;
        win.cpu_open = process_cpu_s();
        if (win.duration > 0) {           /* the window runs from when it opened */
            win.close_at = now + win.duration;
            win.limit_at = now + 10 * win.duration;
        }
    } else {
        win.t_close = now;
        win.cpu_close = process_cpu_s();
    }
}

static void window_poll_at(double now)
{
    int st = atomic_load(&win.state);
    if (st == 0 && now >= win.open_at
        && (atomic_load(&win.total) >= win.round || now >= win.open_at + 10 * win.duration))
        window_snapshot(0, now);
    else if (st == 1 && win.close_at < INFINITY && window_closes(now))
        window_snapshot(1, now);
}

void stats_window_poll(void)
{
    window_poll_at(stats_now());
}

double stats_window_close_at(void)
{
    return win.close_at;
}

double stats_window_next(void)
{
    int st = atomic_load(&win.state);
    double now = stats_now();
    if (st == 0) {
        /* Past open_at the warm-up waits for its round of emails, which
         * each email's end polls for: the clock has only the fallback left
         * (open_at + 10 x duration).  Never a time already past: a caller
         * that sleeps until it would spin. */
        double t = now < win.open_at ? win.open_at : win.open_at + 10 * win.duration;
        return t > now ? t : now + 0.01;
    }
    if (st == 2 || win.close_at == INFINITY)
        return INFINITY;
    return now < win.close_at ? win.close_at : now + 0.01;   /* extended: look again soon */
}

/* Inside: after the warm-up, and before the nominal end, or the moment the
 * extension got its round of emails, or the limit. */
static bool in_window(double now)
{
    if (atomic_load(&win.state) == 0 || now < win.t_open)
        return false;
    if (atomic_load(&win.closed)) {
        double end = win.closed_at;
        return now < (end >= 0 ? end : closing_time());   /* the closer may not have written it yet */
    }
    double sat = win.satisfied_at, close = win.close_at;
    if (sat > 0)
        return now < (sat > close ? sat : close);
    return now < win.limit_at;
}

static void window_count(double now)
{
    atomic_fetch_add(&win.total, 1);
    if (in_window(now) && atomic_fetch_add(&win.count, 1) + 1 == win.min_count)
        win.satisfied_at = now + 1e-9;    /* just after: this email is inside */
}

/* The window as run: CPU per second between the snapshots, times the
 * window's length (the snapshots may lag its bounds by one poll). */
static void window_finish(struct stats_run *s, double now)
{
    window_poll_at(now);
    if (atomic_load(&win.state) == 0)
        window_snapshot(0, now);          /* ended before the warm-up did: an empty window */
    if (atomic_load(&win.state) == 1)
        window_snapshot(1, now);          /* ran out of emails before the window closed */
    double end = atomic_load(&win.closed) && win.closed_at < now ? win.closed_at : now;
    s->window_s = end > win.t_open ? end - win.t_open : 0;
    double span = win.t_close - win.t_open;
    s->cpu_window_s = span > 0 ? (win.cpu_close - win.cpu_open) / span * s->window_s : 0;
}

void stats_run_delivered(struct stats_run *s, uint64_t hash, uint64_t latency_us)
{
    double now = stats_now();
    window_poll_at(now);
    s->delivered++;
    s->digest += hash;
    bool in = in_window(now);         /* before counting: the email that completes a round is in */
    window_count(now);
    window_poll_at(now);              /* after it too: the warm-up's round may have just ended */
    if (in) {
        s->window_delivered++;
        if (s->window_first == 0)
            s->window_first = now;
        s->window_last = now;
        hist_record(&s->latency, latency_us);
    }
}

static void add_reason(struct stats_run *s, const char *reason, uint64_t n)
{
    char text[STATS_REASON_LEN];
    snprintf(text, sizeof text, "%s", reason && *reason ? reason : "unknown");
    for (int i = 0; i < s->nreasons; i++)
        if (strcmp(s->reason[i].text, text) == 0) {
            s->reason[i].count += n;
            return;
        }
    if (s->nreasons >= STATS_MAX_REASONS - 1 && strcmp(text, "other") != 0) {
        add_reason(s, "other", n);      /* the last slot is kept for "other" */
        return;
    }
    strcpy(s->reason[s->nreasons].text, text);
    s->reason[s->nreasons++].count = n;
}

void stats_run_service(struct stats_run *s, uint64_t service_us)
{
    if (in_window(stats_now()))
        hist_record(&s->service, service_us);
}

void stats_run_started(struct stats_run *s, double intended, double actual)
{
    double late = actual - intended;
    if (in_window(actual))                /* the warm-up's start-up is not the schedule's */
        hist_record(&s->lateness, late > 0 ? (uint64_t)(late * 1e6) : 0);
    if (late > 1e-3)
        s->behind++;
}

void stats_run_failed(struct stats_run *s, const char *reason)
{
    double now = stats_now();
    window_poll_at(now);
    s->failed++;
    bool in = in_window(now);
    window_count(now);
    window_poll_at(now);
    if (in)
        s->window_failed++;
    add_reason(s, reason, 1);
}

static void add_maybe(struct stats_run *s, uint64_t hash)
{
    s->maybe_delivered++;
    s->maybe_digest += hash;
    if (s->nmaybe < STATS_MAX_MAYBE)
        s->maybe_hash[s->nmaybe++] = hash;
}

void stats_run_failed_maybe(struct stats_run *s, const char *reason, uint64_t hash)
{
    stats_run_failed(s, reason);
    add_maybe(s, hash);
}

void stats_run_merge(struct stats_run *dst, const struct stats_run *src)
{
    dst->delivered += src->delivered;
    dst->failed += src->failed;
    dst->window_delivered += src->window_delivered;
    if (src->window_first > 0 && (dst->window_first == 0 || src->window_first < dst->window_first))
        dst->window_first = src->window_first;
    if (src->window_last > dst->window_last)
        dst->window_last = src->window_last;
    dst->window_failed += src->window_failed;
    dst->retries += src->retries;
    dst->connections += src->connections;
    dst->digest += src->digest;
    dst->maybe_delivered += src->maybe_delivered;
    dst->maybe_digest += src->maybe_digest;
    for (int i = 0; i < src->nmaybe && dst->nmaybe < STATS_MAX_MAYBE; i++)
        dst->maybe_hash[dst->nmaybe++] = src->maybe_hash[i];
    hist_merge(&dst->latency, &src->latency);
    hist_merge(&dst->service, &src->service);
    hist_merge(&dst->lateness, &src->lateness);
    dst->behind += src->behind;
    /* Open loop, each source with a schedule of its own (the async model's
     * reactors): the sums; the peak queue is the sum of the peaks, an upper
     * bound of the peak of the sum. */
    dst->scheduled += src->scheduled;
    dst->shed += src->shed;
    dst->pending += src->pending;
    dst->peak_queue += src->peak_queue;
    for (int i = 0; i < src->nreasons; i++)
        add_reason(dst, src->reason[i].text, src->reason[i].count);
    if (src->threads_peak > dst->threads_peak)
        dst->threads_peak = src->threads_peak;
}

long stats_sample_threads(struct stats_run *s)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %ld", &n) == 1)
            break;
    fclose(f);
    stats_run_note_threads(s, n);
    return n;
}

void stats_run_note_threads(struct stats_run *s, long threads)
{
    if (threads > s->threads_peak)
        s->threads_peak = threads;
}

long stats_peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    long kb = -1;
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
                break;
        fclose(f);
    }
    if (kb >= 0)
        return kb;
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

void stats_run_finish(struct stats_run *s)
{
    double now = stats_now();
    s->wall_s = now - s->start_s;
    window_finish(s, now);
    if (win.close_at < INFINITY)          /* sized by time: the emails it got to */
        s->emails = s->delivered + s->failed;
    stats_sample_threads(s);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        s->cpu_user_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6;
        s->cpu_sys_s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
        s->max_rss_kb = stats_peak_rss_kb();
        s->ctx_voluntary = ru.ru_nvcsw;
        s->ctx_involuntary = ru.ru_nivcsw;
    }
}

/* ---------------------------------------------------------------- JSON */

/* The rate in the window (the whole run when there is no warm-up or duration):
 * deliveries between the window's first and last, over that span, so that a
 * slow model's rate is not rounded to a whole number of emails per window
 * (at 37 emails/s a 1 s window would give 37 or 38: 2.7% apart; at 2/s in
 * 3 s, 5 or 6: 17% apart, decided by which side of the window's end an
 * email ending on it falls); with fewer than 3, or 100 and more (where
 * rounding is small and a burst of completions would make the span short),
 * or deliveries in bursts, count over the window's length. */
static double per_second(const struct stats_run *s)
{
    double span = s->window_last - s->window_first, n = (double)s->window_delivered;
    /* Only when the deliveries are spread over the window: n evenly spaced
     * span (n - 1) / n of it.  Bursts (20 threads sharing one core finish
     * their CPU work together, every round) leave most of the window empty,
     * and (n - 1) / span would read a burst as the rate (400/s for 57). */
    if (n >= 3 && n < 100 && span > 0 && span >= 0.8 * s->window_s * (n - 1) / n)
        return (n - 1) / span;
    return s->window_s > 0 ? (double)s->window_delivered / s->window_s : 0.0;
}

static void json_params(FILE *f, const struct cli_options *o)
{
    fprintf(f, "\"params\":{\"server\":");
    json_write_string(f, o->server);
    fprintf(f, ",\"emails\":%lld,\"concurrency\":%lld,\"threads\":%lld,\"recipients\":%lld,"
            "\"events\":%lld,\"body_bytes\":%llu,\"per_session\":%lld,\"chain\":%lld,"
            "\"blocking_us\":%lld,\"retries\":%lld,\"timeout_s\":%.9g,\"seed\":%llu,\"rate\":%lld,"
            "\"warmup_s\":%.6g,\"duration_s\":%.6g,\"quit_background\":%s,"
            "\"arrivals\":\"%s\",\"max_queue\":%lld,\"prebuild\":%s,\"reactors\":%lld,"
            "\"profile\":", o->emails, o->concurrency, o->threads, o->recipients, o->events,
            (unsigned long long)o->body_bytes, o->per_session, o->chain,
            (long long)llround(o->blocking_s * 1e6), o->retries, o->timeout_s,
            (unsigned long long)o->seed, o->rate, o->warmup_s, o->duration_s,
            o->quit_background ? "true" : "false", o->arrivals[0] ? o->arrivals : "constant",
            o->max_queue, o->prebuild ? "true" : "false", o->reactors);
    if (o->profile[0])
        json_write_string(f, o->profile);
    else
        fputs("null", f);
    if (o->cpu_per_email_set)       /* --cpu-per-email: what was asked, what was chosen */
        fprintf(f, ",\"cpu_per_email_us\":%.3f,\"calibration\":{\"asked_us\":%.3f,"
                "\"events\":%lld,\"ns_per_event\":%.3f,\"measured_us\":%.3f,\"base_us\":%.3f,"
                "\"rounds\":%d,\"took_s\":%.4f}", o->cpu_per_email_s * 1e6,
                o->cpu_per_email_s * 1e6, o->calib.events, o->calib.ns_per_event,
                o->calib.measured_s * 1e6, o->calib.base_s * 1e6, o->calib.rounds,
                o->calib.took_s);
    fputs("},", f);
}

static void json_machine(FILE *f)
{
    struct utsname u;
    char kernel[2 * sizeof u.release + 2] = "unknown";
    if (uname(&u) == 0)
        snprintf(kernel, sizeof kernel, "%s %s", u.sysname, u.release);
    fprintf(f, "\"machine\":{\"cores\":%ld,\"kernel\":", sysconf(_SC_NPROCESSORS_ONLN));
    json_write_string(f, kernel);
    fputs(",\"compiler\":", f);
    json_write_string(f, STATS_COMPILER);
    fputs("}", f);
}

void stats_run_fprint_json(FILE *f, const struct cli_options *o, const char *model,
                           const struct stats_run *s)
{
    const struct hist *h = &s->latency;
    char digest[17];
    fputs("{\"schema\":\"mailbench.run/1\",\"model\":", f);
    json_write_string(f, model);
    fputc(',', f);
    json_params(f, o);
    fprintf(f, "\"emails\":%llu,\"delivered\":%llu,\"failed\":%llu,\"retries\":%llu,"
            "\"failure_reasons\":{", (unsigned long long)s->emails,
            (unsigned long long)s->delivered, (unsigned long long)s->failed,
            (unsigned long long)s->retries);
    for (int i = 0; i < s->nreasons; i++) {
        fputs(i ? "," : "", f);
        json_write_string(f, s->reason[i].text);
        fprintf(f, ":%llu", (unsigned long long)s->reason[i].count);
    }
    fprintf(f, "},\"connections\":%llu,\"wall_s\":%.6f,\"emails_per_s\":%.3f,"
            "\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,\"p999_us\":%llu,\"max_us\":%llu,"
            "\"mean_us\":%.1f,\"latency_mode\":\"%s\",\"cpu_user_s\":%.6f,\"cpu_sys_s\":%.6f,"
            "\"max_rss_kb\":%ld,\"ctx_voluntary\":%ld,\"ctx_involuntary\":%ld,"
            "\"threads_peak\":%ld,\"digest\":\"%s\"",
            (unsigned long long)s->connections, s->wall_s, per_second(s),
            (unsigned long long)hist_percentile(h, 50), (unsigned long long)hist_percentile(h, 90),
            (unsigned long long)hist_percentile(h, 99), (unsigned long long)hist_percentile(h, 99.9),
            (unsigned long long)h->max, hist_mean(h), o->rate > 0 ? "open" : "closed",
            s->cpu_user_s, s->cpu_sys_s, s->max_rss_kb, s->ctx_voluntary, s->ctx_involuntary,
            s->threads_peak, digest_hex(s->digest, digest));
    fprintf(f, ",\"window_s\":%.6f,\"window_delivered\":%llu,\"window_failed\":%llu,"
            "\"cpu_window_s\":%.6f,\"cpu_per_email_us\":%.3f",
            s->window_s, (unsigned long long)s->window_delivered,
            (unsigned long long)s->window_failed, s->cpu_window_s,
            s->window_delivered + s->window_failed
                ? s->cpu_window_s * 1e6 / (double)(s->window_delivered + s->window_failed) : 0.0);
    const struct hist *sv = &s->service, *lt = &s->lateness;
    fprintf(f, ",\"service_p50_us\":%llu,\"service_p99_us\":%llu,\"service_p999_us\":%llu,"
            "\"scheduled\":%lld,\"shed\":%lld,\"pending\":%lld,\"peak_queue\":%lld,"
            "\"behind_schedule\":%llu,\"start_lateness_p99_us\":%llu,\"max_lag_us\":%llu,"
            "\"over_10x_median_share\":%.6f",
            (unsigned long long)hist_percentile(sv, 50), (unsigned long long)hist_percentile(sv, 99),
            (unsigned long long)hist_percentile(sv, 99.9), s->scheduled, s->shed, s->pending,
            s->peak_queue, (unsigned long long)s->behind,
            (unsigned long long)hist_percentile(lt, 99), (unsigned long long)lt->max,
            hist_share_above(h, 10 * hist_percentile(h, 50)));
    fprintf(f, ",\"maybe_delivered\":%llu,\"maybe_digest\":\"%s\",\"maybe_hashes\":[",
            (unsigned long long)s->maybe_delivered, digest_hex(s->maybe_digest, digest));
    for (int i = 0; i < s->nmaybe; i++)
        fprintf(f, "%s\"%s\"", i ? "," : "", digest_hex(s->maybe_hash[i], digest));
    fputs("],\"latency_hist\":", f);      /* the buckets, for merging runs exactly */
    hist_fprint_json(f, &s->latency);
    fputs(",\"service_hist\":", f);
    hist_fprint_json(f, &s->service);
    fputs(",\"lateness_hist\":", f);
    hist_fprint_json(f, &s->lateness);
    fputs(",\"git_rev\":", f);
    json_write_string(f, MAILBENCH_GIT_REV);
    fputc(',', f);
    json_machine(f);
    fputs("}\n", f);
}

int stats_run_write_json(const struct cli_options *o, const char *model,
                         const struct stats_run *s, const char *path)
{
    if (path == NULL || *path == '\0')
        return 0;
    if (strcmp(path, "-") == 0) {
        stats_run_fprint_json(stdout, o, model, s);
        return fflush(stdout) == 0 ? 0 : -1;
    }
    char tmp[CLI_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        fprintf(stderr, "summary-%s: cannot write %s: %s\n", model, tmp, strerror(errno));
        return -1;
    }
    stats_run_fprint_json(f, o, model, s);
    int bad = ferror(f), err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (!bad && rename(tmp, path) != 0) {
        bad = 1;
        err = errno;
    }
    if (bad) {
        fprintf(stderr, "summary-%s: cannot write %s: %s\n", model, path, strerror(err));
        unlink(tmp);
        return -1;
    }
    return 0;
}

void stats_run_print_summary(FILE *f, const char *model, const struct cli_options *o,
                             const struct stats_run *s)
{
    const struct hist *h = &s->latency;
    char p50[32], p99[32], max[32];
    units_format_duration((double)hist_percentile(h, 50) * 1e-6, p50, sizeof p50);
    units_format_duration((double)hist_percentile(h, 99) * 1e-6, p99, sizeof p99);
    units_format_duration((double)h->max * 1e-6, max, sizeof max);
    fprintf(f, "summary-%s: %llu/%llu delivered, %llu failed, %llu retries, %.3fs, %.1f emails/s\n",
            model, (unsigned long long)s->delivered, (unsigned long long)s->emails,
            (unsigned long long)s->failed, (unsigned long long)s->retries, s->wall_s, per_second(s));
    fprintf(f, "summary-%s: latency p50 %s p99 %s max %s (%s loop); cpu %.2fs user %.2fs sys; "
            "%.1f MB RSS; %ld threads\n", model, p50, p99, max, o->rate > 0 ? "open" : "closed",
            s->cpu_user_s, s->cpu_sys_s, (double)s->max_rss_kb / 1024.0, s->threads_peak);
}

/* ---------------------------------------------------------------- progress */

void stats_progress_init(struct stats_progress *p, const struct cli_options *o, const char *model)
{
    memset(p, 0, sizeof *p);
    p->enabled = o->progress || isatty(STDERR_FILENO);
    p->model = model;
    p->total = o->emails > 0 ? (uint64_t)o->emails : 0;
    p->start = p->last = stats_now();
}

void stats_progress_tick(struct stats_progress *p, uint64_t done, struct stats_run *s)
{
    if (!p->enabled)
        return;
    double now = stats_now();
    if (now - p->last < 1.0)
        return;
    p->last = now;
    if (s)
        stats_sample_threads(s);
    fprintf(stderr, "\rsummary-%s: delivered %llu/%llu, %.0f/s ", p->model,
            (unsigned long long)done, (unsigned long long)p->total,
            now > p->start ? (double)done / (now - p->start) : 0.0);
    p->printed = 1;
}

void stats_progress_done(struct stats_progress *p)
{
    if (p->printed)
        fputc('\n', stderr);
    p->printed = 0;
}

int stats_run_end(const struct cli_options *o, const char *model, struct stats_run *s,
                  struct stats_progress *p)
{
    stats_progress_done(p);
    stats_run_finish(s);
    stats_run_print_summary(stderr, model, o, s);
    if (stats_run_write_json(o, model, s, o->json) != 0)
        return 1;
    return s->failed == 0 ? 0 : 3;
}
