/* cli — the common options of every model; see cli.h for the contract.
 * One table drives the command line, the profile keys and the usage text,
 * so the three cannot disagree. */
#include "cli.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "profile.h"
#include "units.h"

enum kind {
    K_COUNT,        /* long long in [min, max] */
    K_SIZE,         /* uint64_t bytes, at most max */
    K_DURATION,     /* double seconds, in [min, max] microseconds */
    K_HOSTPORT,     /* server/host/port (units_parse_server; names resolved at the end) */
    K_PATH,         /* char[CLI_PATH_MAX] */
    K_FLAG,         /* int set to 1, takes no value */
    K_PROB,         /* double in [0, 1] */
    K_CHOICE,       /* char[16], one of the '|'-separated words in metavar */
    K_SEED,         /* uint64_t from a count in [0, LLONG_MAX] */
    K_HELP,
};

struct opt {
    const char *name;       /* long option name = profile key */
    enum kind kind;
    int side;               /* CLI_KEY_MODEL, CLI_KEY_SERVER or CLI_KEY_CLI */
    size_t off;             /* offset of the field in struct cli_options */
    long long min, max;     /* bounds (durations: microseconds) */
    const char *metavar;    /* shown in the usage */
    const char *help;       /* one line of usage */
};

#define O(f) offsetof(struct cli_options, f)
#define S(f) (offsetof(struct cli_options, srv) + offsetof(struct cli_server_params, f))
#define SEC 1000000LL

static const struct opt opts[] = {
    { "server", K_HOSTPORT, CLI_KEY_MODEL, O(server), 1, 65535, "HOST:PORT",
      "SMTP server: an IPv4 address or a host name, port 1..65535" },
    { "emails", K_COUNT, CLI_KEY_MODEL, O(emails), 1, 1000000000, "N", "emails to send" },
    { "concurrency", K_COUNT, CLI_KEY_MODEL, O(concurrency), 1, 1000000, "C", "emails in flight at once" },
    { "threads", K_COUNT, CLI_KEY_MODEL, O(threads), 1, 100000, "T",
      "threads model: pool (default C); hybrid: CPU pool (default cores)" },
    { "recipients", K_COUNT, CLI_KEY_MODEL, O(recipients), 1, CLI_MAX_RECIPIENTS, "R", "recipients per email" },
    { "events", K_COUNT, CLI_KEY_MODEL, O(events), 0, CLI_MAX_EVENTS, "E",
      "application events summarised per email (CPU work)" },
    { "cpu-per-email", K_DURATION, CLI_KEY_MODEL, O(cpu_per_email_s), 0, 10 * SEC, "DUR",
      "CPU work per email as a time (e.g. 3ms): --events calibrated to it on this machine" },
    { "body-bytes", K_SIZE, CLI_KEY_MODEL, O(body_bytes), 0, (long long)CLI_MAX_BODY_BYTES, "B",
      "pad each message to B bytes (0: the summary only)" },
    { "per-session", K_COUNT, CLI_KEY_MODEL, O(per_session), 1, 1000000000, "K", "emails per SMTP connection" },
    { "chain", K_COUNT, CLI_KEY_MODEL, O(chain), 1, 1000000000, "K",
      "email i waits for email i-1 unless i % K == 0 (1: independent)" },
    { "join", K_COUNT, CLI_KEY_MODEL, O(join), 0, 1000000, "N",
      "every (N+1)th email waits for the N before it to end (gatherResults; 0: none)" },
    { "blocking", K_DURATION, CLI_KEY_MODEL, O(blocking_s), 0, 60 * SEC, "DUR",
      "a blocking call of DUR per email, in the model's thread" },
    { "retries", K_COUNT, CLI_KEY_MODEL, O(retries), 0, 1000, "N", "retries of a temporary failure" },
    { "timeout", K_DURATION, CLI_KEY_MODEL, O(timeout_s), 1, 86400 * SEC, "DUR", "each connect/reply; reactor models: set-up, each message" },
    { "seed", K_SEED, CLI_KEY_MODEL, O(seed), 0, LLONG_MAX, "S", "seed of the workload" },
    { "duration", K_DURATION, CLI_KEY_MODEL, O(duration_s), 0, 86400 * SEC, "DUR",
      "steady-state window: start emails for DUR after the warm-up, then drain (0: send --emails)" },
    { "warmup", K_DURATION, CLI_KEY_MODEL, O(warmup_s), 0, 3600 * SEC, "DUR",
      "emails ending in the first DUR count for verification only, not in the figures" },
    { "rate", K_COUNT, CLI_KEY_MODEL, O(rate), 0, 10000000, "R",
      "open loop: start R emails/s, latency from the intended start (0: closed loop)" },
    { "arrivals", K_CHOICE, CLI_KEY_MODEL, O(arrivals), 0, 0, "constant|poisson",
      "open loop: constant spacing 1/R, or Poisson arrivals of mean rate R (seeded)" },
    { "max-queue", K_COUNT, CLI_KEY_MODEL, O(max_queue), 0, 1000000000, "N",
      "open loop: at most N emails waiting to start; more are shed (0: unbounded)" },
    { "prebuild", K_FLAG, CLI_KEY_MODEL, O(prebuild), 0, 0, NULL,
      "build every email before the clock starts: time the SMTP machinery alone (needs --emails)" },
    { "quit-background", K_FLAG, CLI_KEY_MODEL, O(quit_background), 0, 0, NULL,
      "async/hybrid: free an email's slot when QUIT is sent (default: when the connection is closed)" },
    { "reactors", K_COUNT, CLI_KEY_MODEL, O(reactors), 1, CLI_MAX_REACTORS, "N",
      "async: N reactor threads, each a whole async model over its share (default 1; at most 4 x cores)" },
    { "blocking-in-pool", K_FLAG, CLI_KEY_MODEL, O(blocking_in_pool), 0, 0, NULL,
      "hybrid: run the --blocking call in the thread pool (deferToThread), not in the reactor" },
    { "no-errback", K_FLAG, CLI_KEY_MODEL, O(no_errback), 0, 0, NULL,
      "async/hybrid (teaching): no errback on an email's chain: a failure is reported unhandled" },
    { "trace", K_PATH, CLI_KEY_CLI, O(trace), 0, 0, "FILE",
      "write a timeline of the first --trace-emails emails to FILE (JSON lines)" },
    { "trace-emails", K_COUNT, CLI_KEY_CLI, O(trace_emails), 1, 1000, "K",
      "emails 0..K-1 are traced by --trace (default 3)" },
    { "profile", K_PATH, CLI_KEY_CLI, O(profile), 0, 0, "FILE", "read settings from FILE first (flags override it)" },
    { "json", K_PATH, CLI_KEY_CLI, O(json), 0, 0, "FILE", "write the run's JSON to FILE (- for stdout)" },
    { "progress", K_FLAG, CLI_KEY_CLI, O(progress), 0, 0, NULL, "print progress on stderr (default: if a TTY)" },
    { "dump-profile", K_FLAG, CLI_KEY_CLI, O(dump_profile), 0, 0, NULL,
      "print the resolved settings (with --profile's, checked) as JSON and exit" },
    { "start-at", K_COUNT, CLI_KEY_CLI, O(start_at_ms), 1000000000000LL, 99999999999999LL, "EPOCH_MS",
      "start at this wall-clock time, Unix ms (several load generators start together)" },
    { "help", K_HELP, CLI_KEY_CLI, 0, 0, 0, NULL, "print this help and exit" },
    /* Server side: profile only, for smtp-mock. */
    { "latency", K_DURATION, CLI_KEY_SERVER, S(latency_s), 0, 3600 * SEC, "DUR", "delay before each reply" },
    { "jitter", K_DURATION, CLI_KEY_SERVER, S(jitter_s), 0, 3600 * SEC, "DUR", "latency spread: uniform in latency +/- DUR" },
    { "tempfail", K_PROB, CLI_KEY_SERVER, S(tempfail), 0, 0, "P", "probability of a 4xx reply" },
    { "permfail", K_PROB, CLI_KEY_SERVER, S(permfail), 0, 0, "P", "probability of a 5xx reply" },
    { "drop", K_PROB, CLI_KEY_SERVER, S(drop), 0, 0, "P", "probability of a dropped connection" },
    { "stall", K_PROB, CLI_KEY_SERVER, S(stall), 0, 0, "P", "probability that the server stops answering" },
    { "latency-dist", K_CHOICE, CLI_KEY_SERVER, S(latency_dist), 0, 0, "fixed|uniform|exp", "latency distribution" },
    { "fault-stage", K_CHOICE, CLI_KEY_SERVER, S(fault_stage), 0, 0, "greeting|mail|rcpt|data|body", "where faults strike" },
    { "max-conns", K_COUNT, CLI_KEY_SERVER, S(max_conns), 1, 10000000, "N", "connections the server accepts at once" },
    { "max-size", K_SIZE, CLI_KEY_SERVER, S(max_size), 0, 1LL << 40, "SIZE", "message size limit" },
    { "max-rcpts", K_COUNT, CLI_KEY_SERVER, S(max_rcpts), 1, 1000000, "N", "recipients per message" },
    { "idle-timeout", K_DURATION, CLI_KEY_SERVER, S(idle_timeout_s), 0, 86400 * SEC, "DUR", "server closes idle sessions" },
    { "session-timeout", K_DURATION, CLI_KEY_SERVER, S(session_timeout_s), 0, 86400 * SEC, "DUR", "server ends sessions older than this" },
};
#define NOPTS (sizeof opts / sizeof opts[0])
_Static_assert(NOPTS <= CLI_MAX_KEYS, "raise CLI_MAX_KEYS");

static const struct opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

int cli_key_side(const char *key)
{
    const struct opt *d = find_opt(key, strlen(key));
    return d ? d->side : -1;
}

void cli_defaults(struct cli_options *o, const char *model)
{
    memset(o, 0, sizeof *o);
    o->model = model;
    strcpy(o->server, "127.0.0.1:2525");
    strcpy(o->host, "127.0.0.1");
    o->port = 2525;
    strcpy(o->arrivals, "constant");
    o->emails = 0;              /* unset: 1000, or with --duration no cap (cli_parse_to) */
    o->concurrency = 10;
    o->recipients = 1;
    o->events = 1000;
    o->per_session = 1;
    o->chain = 1;
    o->trace_emails = 3;
    o->retries = 5;
    o->timeout_s = 30.0;
    o->seed = 1;
    o->reactors = 1;
    strcpy(o->srv.latency_dist, "fixed");
    strcpy(o->srv.fault_stage, "data");
    o->srv.max_conns = 100000;
    o->srv.max_size = 100ULL << 20;
    o->srv.max_rcpts = 1000;
    o->srv.idle_timeout_s = 60.0;
}

/* A duration bound (microseconds) as the user would type it. */
static void format_bound(long long us, char *buf, size_t len)
{
    if (us >= SEC && us % SEC == 0)
        snprintf(buf, len, "%llds", us / SEC);
    else
        units_format_duration((double)us / SEC, buf, len);
}

/* What a valid value of `d` looks like, for error messages. */
static void expected(const struct opt *d, char *buf, size_t len)
{
    char lo[32], hi[32];
    switch (d->kind) {
    case K_COUNT: case K_SEED:
        snprintf(buf, len, "a whole number from %lld to %lld", d->min, d->max);
        break;
    case K_SIZE:
        snprintf(buf, len, "a size in bytes up to %lldMB (e.g. 512, 100KB, 2MB)", d->max >> 20);
        break;
    case K_DURATION:
        format_bound(d->min, lo, sizeof lo);
        format_bound(d->max, hi, sizeof hi);
        snprintf(buf, len, "a duration from %s to %s with its unit (e.g. 250us, 10ms, 1.5s)", lo, hi);
        break;
    case K_HOSTPORT:
        snprintf(buf, len, "HOST:PORT with HOST an IPv4 address such as 127.0.0.1 or a host "
                 "name (not empty, no IPv6) and PORT a number from 1 to 65535");
        break;
    case K_PROB:
        snprintf(buf, len, "a probability from 0 to 1 or a percentage (e.g. 0.05, 5%%)");
        break;
    case K_CHOICE:
        snprintf(buf, len, "one of %s", d->metavar);
        break;
    default:
        snprintf(buf, len, "a file name");
    }
}

/* Parses `value` for `d` and stores it; -1 if it is not valid. */
static int store(struct cli_options *o, const struct opt *d, const char *value)
{
    char *field = (char *)o + d->off;
    long long n;
    uint64_t u;
    double x;
    switch (d->kind) {
    case K_COUNT:
        if (units_parse_count(value, d->min, d->max, &n) != 0) return -1;
        memcpy(field, &n, sizeof n);
        return 0;
    case K_SEED:
        if (units_parse_count(value, d->min, d->max, &n) != 0) return -1;
        u = (uint64_t)n;
        memcpy(field, &u, sizeof u);
        return 0;
    case K_SIZE:
        if (units_parse_size(value, &u) != 0 || u > (uint64_t)d->max) return -1;
        memcpy(field, &u, sizeof u);
        return 0;
    case K_DURATION:
        if (units_parse_duration(value, &x) != 0 || x * SEC < (double)d->min - 0.5 ||
            x * SEC > (double)d->max + 0.5)
            return -1;
        memcpy(field, &x, sizeof x);
        return 0;
    case K_PROB:
        if (units_parse_prob(value, &x) != 0) return -1;
        memcpy(field, &x, sizeof x);
        return 0;
    case K_HOSTPORT: {
        char host[UNITS_HOST_MAX];
        int port;
        if (strlen(value) >= sizeof o->server || units_parse_server(value, host, &port) != 0)
            return -1;
        strcpy(o->server, value);
        /* An address is final; a name is resolved once the last --server or
         * profile key has been read (resolve_server), so that a name which
         * a flag overrides is never looked up. */
        if (units_is_ipv4(host))
            strcpy(o->host, host);
        else
            o->host[0] = '\0';
        o->port = port;
        return 0;
    }
    case K_CHOICE: {
        size_t len = strlen(value);     /* a whole word of "a|b|c" */
        for (const char *w = d->metavar; w; w = strchr(w, '|'), w = w ? w + 1 : w)
            if (len > 0 && len < 16 && strncmp(w, value, len) == 0 && (w[len] == '|' || w[len] == '\0')) {
                strcpy(field, value);
                return 0;
            }
        return -1;
    }
    case K_PATH:
        if (*value == '\0' || strlen(value) >= CLI_PATH_MAX) return -1;
        strcpy(field, value);
        return 0;
    default:
        return -1;
    }
}

/* Why option `d` does not apply to `model`, or NULL if it does.  An option a
 * model would ignore is refused, as the Twisted reference refuses it. */
static const char *not_for_model(const struct opt *d, const char *model)
{
    if (strcmp(model, "smtp-mock") == 0)     /* the server ignores every model key */
        return NULL;
    if (strcmp(d->name, "threads") == 0 && (strcmp(model, "sync") == 0 || strcmp(model, "async") == 0))
        return "runs one thread; --threads sizes the pools of the threads and hybrid models";
    if (strcmp(d->name, "quit-background") == 0 && strcmp(model, "async") != 0
        && strcmp(model, "hybrid") != 0)
        return "blocks on every reply: only a reactor model can read the 221 in the background";
    if (strcmp(d->name, "reactors") == 0 && strcmp(model, "async") != 0)
        return "has no reactor threads to multiply: --reactors N runs N copies of the async model";
    if (strcmp(d->name, "no-errback") == 0 && strcmp(model, "async") != 0
        && strcmp(model, "hybrid") != 0)
        return "has no Deferreds: only a reactor model's chain can lack an errback";
    if (strcmp(d->name, "blocking-in-pool") == 0 && strcmp(model, "hybrid") != 0)
        return "has no thread pool beside a reactor: only the hybrid can defer the call to a thread";
    return NULL;
}

/* A server key's flag for smtp-mock, appended to o->srv.args. */
static void add_server_arg(struct cli_options *o, const char *name, const char *value)
{
    size_t used = strlen(o->srv.args);
    snprintf(o->srv.args + used, sizeof o->srv.args - used, "%s--%s %s",
             used ? " " : "", name, value);
}

static int profile_setting(void *ctx, const char *key, const char *value, char *err, size_t errlen)
{
    struct cli_options *o = ctx;
    const struct opt *d = find_opt(key, strlen(key));
    char exp[160];
    if (d == NULL) {
        snprintf(err, errlen, "unknown key '%s'", key);
        return -1;
    }
    if (d->side == CLI_KEY_CLI) {
        snprintf(err, errlen, "'%s' is a command-line option, not allowed in a profile", key);
        return -1;
    }
    const char *why = not_for_model(d, o->model);
    if (why) {
        snprintf(err, errlen, "'%s = %s' is not used by summary-%s, which %s", key, value,
                 o->model, why);
        return -1;
    }
    if (store(o, d, value) != 0) {
        expected(d, exp, sizeof exp);
        snprintf(err, errlen, "bad value '%s' for '%s': expected %s", value, key, exp);
        return -1;
    }
    if (d->side == CLI_KEY_SERVER)
        add_server_arg(o, key, value);
    o->profile_line[d - opts] = profile_current_line();
    if (strcmp(key, "cpu-per-email") == 0)
        o->cpu_per_email_set = 1;
    return 0;
}

int cli_key_line(const struct cli_options *o, const char *key)
{
    const struct opt *d = find_opt(key, strlen(key));
    return d ? o->profile_line[d - opts] : 0;
}

/* "FILE:LINE: message" naming the line of `key`, the hint, and 2. */
__attribute__((format(printf, 4, 5)))
static int profile_error(FILE *err, const struct cli_options *o, const char *key,
                         const char *fmt, ...)
{
    va_list ap;
    fprintf(err, "%s:%d: ", o->profile, cli_key_line(o, key));
    va_start(ap, fmt);
    vfprintf(err, fmt, ap);
    va_end(ap);
    fprintf(err, "\nTry '%s%s --help'.\n", strchr(o->model, '-') ? "" : "summary-", o->model);
    return 2;
}

int cli_load_profile(struct cli_options *o, const char *path, FILE *err)
{
    if (*path == '\0' || strlen(path) >= sizeof o->profile) {
        fprintf(err, "%s: --profile: bad file name '%s'\n", o->model, path);
        return 2;
    }
    strcpy(o->profile, path);
    if (profile_load(path, profile_setting, o, err) != 0) {
        fprintf(err, "Try '%s%s --help'.\n", strchr(o->model, '-') ? "" : "summary-", o->model);
        return 2;
    }
    return cli_check_profile(o, err);
}

/* Of the keys named, the one set last in the profile (NULL if none is). */
static const char *last_set(const struct cli_options *o, const char *const *keys)
{
    const char *last = NULL;
    for (int i = 0; keys[i]; i++)
        if (cli_key_line(o, keys[i]) > (last ? cli_key_line(o, last) : 0))
            last = keys[i];
    return last;
}

int cli_check_profile(const struct cli_options *o, FILE *err)
{
    const struct cli_server_params *v = &o->srv;
    char a[32], b[32];
    int dist_set = cli_key_line(o, "latency-dist") > 0;
    int uniform = strcmp(v->latency_dist, "uniform") == 0
                  || (!dist_set && cli_key_line(o, "jitter") > 0);
    if (uniform && v->jitter_s > v->latency_s + 1e-12)
        return profile_error(err, o, cli_key_line(o, "jitter") ? "jitter" : "latency-dist",
                             "jitter = %s is more than latency = %s: smtp-mock draws uniformly in "
                             "latency +/- jitter and the mean delay must stay the latency",
                             units_format_duration(v->jitter_s, a, sizeof a),
                             units_format_duration(v->latency_s, b, sizeof b));
    static const char *const faults[] = { "tempfail", "permfail", "drop", "stall", NULL };
    if (v->tempfail + v->permfail + v->drop + v->stall > 1.0 + 1e-9)
        return profile_error(err, o, last_set(o, faults), "'%s': tempfail + permfail + drop + "
                             "stall add up to %g, more than 1", last_set(o, faults),
                             v->tempfail + v->permfail + v->drop + v->stall);
    if (strcmp(v->fault_stage, "body") == 0 && v->permfail > 0)
        return profile_error(err, o, "permfail", "'permfail' cannot be used with fault-stage = "
                             "body (there is no 5xx reply in the middle of DATA)");
    if (cli_key_line(o, "events") > 0 && cli_key_line(o, "cpu-per-email") > 0)
        return profile_error(err, o, cli_key_line(o, "events") > cli_key_line(o, "cpu-per-email")
                             ? "events" : "cpu-per-email", "'events' and 'cpu-per-email' both set "
                             "the CPU work per email (lines %d and %d): keep one",
                             cli_key_line(o, "events"), cli_key_line(o, "cpu-per-email"));
    struct rlimit rl;
    if (cli_key_line(o, "concurrency") > 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0
        && rl.rlim_max != RLIM_INFINITY && (long long)rl.rlim_max < o->concurrency + 64)
        return profile_error(err, o, "concurrency", "'concurrency = %lld' needs %lld file "
                             "descriptors (a socket per email in flight, + 64), but this "
                             "process can get at most %llu (ulimit -Hn): lower it or raise "
                             "the hard limit", o->concurrency, o->concurrency + 64,
                             (unsigned long long)rl.rlim_max);
    return 0;
}

static void dump_value(FILE *f, const struct cli_options *o, const struct opt *d)
{
    const char *field = (const char *)o + d->off;
    long long n;
    uint64_t u;
    double x;
    char buf[32];
    switch (d->kind) {
    case K_COUNT:
        memcpy(&n, field, sizeof n);
        fprintf(f, "%lld", n);
        break;
    case K_SIZE: case K_SEED:
        memcpy(&u, field, sizeof u);
        fprintf(f, "%llu", (unsigned long long)u);
        break;
    case K_DURATION: {
        memcpy(&x, field, sizeof x);
        long long us = llround(x * 1e6);
        if (us == 0)
            snprintf(buf, sizeof buf, "0");
        else if (us % SEC == 0)
            snprintf(buf, sizeof buf, "%llds", us / SEC);
        else if (us % 1000 == 0)
            snprintf(buf, sizeof buf, "%lldms", us / 1000);
        else
            snprintf(buf, sizeof buf, "%lldus", us);
        json_write_string(f, buf);
        break;
    }
    case K_PROB:
        memcpy(&x, field, sizeof x);
        fprintf(f, "%.9g", x);
        break;
    case K_FLAG: {
        int on;
        memcpy(&on, field, sizeof on);
        fputs(on ? "true" : "false", f);
        break;
    }
    default:            /* K_HOSTPORT, K_CHOICE, K_PATH: the string */
        json_write_string(f, field);
    }
}

void cli_dump(FILE *f, const struct cli_options *o)
{
    fputs("{\"schema\": \"mailbench.profile/1\", \"profile\": ", f);
    if (o->profile[0])
        json_write_string(f, o->profile);
    else
        fputs("null", f);
    for (int side = CLI_KEY_MODEL; side <= CLI_KEY_SERVER; side++) {
        fprintf(f, ",\n \"%s\": {", side == CLI_KEY_MODEL ? "model" : "server");
        int first = 1;
        for (size_t i = 0; i < NOPTS; i++) {
            if (opts[i].side != side || opts[i].kind == K_HELP)
                continue;
            fprintf(f, "%s\"%s\": ", first ? "" : ", ", opts[i].name);
            if (strcmp(opts[i].name, "cpu-per-email") == 0 && !o->cpu_per_email_set)
                fputs("null", f);           /* not asked: --events holds the CPU work */
            else
                dump_value(f, o, &opts[i]);
            first = 0;
        }
        fputs("}", f);
    }
    fputs(",\n \"lines\": {", f);
    int first = 1;
    for (size_t i = 0; i < NOPTS; i++)
        if (o->profile_line[i]) {
            fprintf(f, "%s\"%s\": %d", first ? "" : ", ", opts[i].name, o->profile_line[i]);
            first = 0;
        }
    fputs("}}\n", f);
}

/* One line "summary-MODEL: <message>", the hint, and 2 (the exit status). */
__attribute__((format(printf, 3, 4)))
static int usage_error(FILE *err, const char *model, const char *fmt, ...)
{
    va_list ap;
    fprintf(err, "summary-%s: ", model);
    va_start(ap, fmt);
    vfprintf(err, fmt, ap);
    va_end(ap);
    fprintf(err, "\nTry 'summary-%s --help'.\n", model);
    return 2;
}

/* Splits argv[*i] into its option and value (consuming argv[*i+1] if
 * needed).  Returns 0, 1 for --help, 2 after printing an error. */
static int next_opt(int argc, char **argv, int *i, const char *model, FILE *err,
                    const struct opt **d, const char **value)
{
    const char *a = argv[*i];
    if (strcmp(a, "-h") == 0)
        return 1;
    if (strncmp(a, "--", 2) != 0)
        return usage_error(err, model, "unexpected argument '%s'", a);
    const char *eq = strchr(a + 2, '=');
    size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    *d = find_opt(a + 2, len);
    if (*d == NULL || (*d)->side == CLI_KEY_SERVER)
        return usage_error(err, model, "unknown option '%s'%s", a,
                           *d ? " (a server setting: put it in a profile or give it to smtp-mock)" : "");
    if ((*d)->kind == K_HELP)
        return 1;
    if ((*d)->kind == K_FLAG) {
        if (eq)
            return usage_error(err, model, "--%s takes no value (got '%s')", (*d)->name, eq + 1);
        *value = NULL;
        return 0;
    }
    if (eq) {
        *value = eq + 1;
    } else if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) == 0) {
        /* "--emails --seed 3": no value here was ever a number or a name
         * (--json=--x still works for a file that really starts so). */
        return usage_error(err, model, "--%s: missing value (got the option '%s')",
                           (*d)->name, argv[*i + 1]);
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        return usage_error(err, model, "--%s: missing value", (*d)->name);
    }
    return 0;
}

/* --profile FILE must be a readable regular file: say so naming the option
 * (profile_load's own messages name FILE:LINE for what is inside). */
static int check_readable(const char *path, FILE *err, const char *model)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return usage_error(err, model, "--profile: cannot read '%s': %s", path, strerror(errno));
    int dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    close(fd);
    if (dir)
        return usage_error(err, model, "--profile: '%s' is a directory", path);
    return 0;
}

/* --json FILE is written at the end of a run: refuse at the start a path
 * that cannot be written (missing directory, a directory, no permission),
 * rather than lose the run.  Nothing is created here. */
static int check_writable(const char *path, FILE *err, const char *model)
{
    struct stat st;
    char dir[CLI_PATH_MAX];
    if (strcmp(path, "-") == 0)
        return 0;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return usage_error(err, model, "--json: '%s' is a directory", path);
        if (access(path, W_OK) != 0)
            return usage_error(err, model, "--json: cannot write '%s': %s", path, strerror(errno));
        return 0;
    }
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        strcpy(dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) != 0)
        return usage_error(err, model, "--json: cannot write '%s': %s", path, strerror(errno));
    return 0;
}

/* Pass 1: find --help, bad syntax, an option given twice and the one
 * --profile, and apply the profile.  Each option may appear once: "the last
 * wins" would let a forgotten early flag (or a script's default) be silently
 * dropped, and the first-wins reading is just as plausible. */
static int apply_profile(int argc, char **argv, struct cli_options *o, FILE *out, FILE *err)
{
    const char *path = NULL;
    const char *given[NOPTS] = { NULL };    /* each option's value ("" for a flag) */
    for (int i = 1; i < argc; i++) {
        const struct opt *d = NULL;
        const char *value = NULL;
        int rc = next_opt(argc, argv, &i, o->model, err, &d, &value);
        if (rc == 1)
            cli_usage(out, o->model);
        if (rc != 0)
            return rc;
        const char **first = &given[d - opts];
        if (*first && d->kind == K_FLAG)
            return usage_error(err, o->model, "--%s given twice", d->name);
        if (*first)
            return usage_error(err, o->model, "--%s given twice ('%s' and '%s')", d->name,
                               *first, value);
        *first = value ? value : "";
        if (d->kind == K_PATH && strcmp(d->name, "profile") == 0) {
            if (store(o, d, value) != 0)
                return usage_error(err, o->model, "--profile: bad file name '%s'", value);
            path = value;
        }
    }
    if (path && check_readable(path, err, o->model) != 0)
        return 2;
    if (path && profile_load(path, profile_setting, o, err) != 0) {
        fprintf(err, "Try 'summary-%s --help'.\n", o->model);
        return 2;
    }
    if (path && given[find_opt("events", 6) - opts] != NULL)
        o->cpu_per_email_set = 0;           /* --events overrides the profile's cpu-per-email */
    if (given[find_opt("events", 6) - opts] && given[find_opt("cpu-per-email", 13) - opts])
        return usage_error(err, o->model, "--events and --cpu-per-email both set the CPU work "
                           "per email: give one");
    return path ? cli_check_profile(o, err) : 0;
}

/* A host name in --server is looked up once, here, and the run uses that
 * address throughout: no lookup per connection (a blocking call in the
 * reactor models, and a run whose address could change midway).  IPv4 only,
 * as the models connect; the name is known not to read as a number
 * (units_parse_server), so getaddrinfo cannot take it for one. */
static int resolve_server(struct cli_options *o, int from_flag, FILE *err)
{
    char name[UNITS_HOST_MAX];
    int port;
    if (o->host[0] != '\0')
        return 0;
    int valid = units_parse_server(o->server, name, &port) == 0;
    assert(valid);                          /* store() took it */
    (void)valid;
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        const char *why = rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc);
        if (from_flag)
            return usage_error(err, o->model, "--server: cannot resolve '%s' (in '%s'): %s",
                               name, o->server, why);
        return usage_error(err, o->model, "%s: server = %s: cannot resolve '%s': %s",
                           o->profile, o->server, name, why);
    }
    const struct sockaddr_in *sin = (const struct sockaddr_in *)res->ai_addr;
    inet_ntop(AF_INET, &sin->sin_addr, o->host, sizeof o->host);
    freeaddrinfo(res);
    return 0;
}

int cli_parse_to(int argc, char **argv, const char *model, struct cli_options *o,
                 FILE *out, FILE *err)
{
    cli_defaults(o, model);
    int rc = apply_profile(argc, argv, o, out, err);
    if (rc != 0)
        return rc;
    int server_flag = 0;                    /* --server was on the command line */
    for (int i = 1; i < argc; i++) {       /* pass 2: the flags, over the profile */
        const struct opt *d = NULL;
        const char *value = NULL;
        next_opt(argc, argv, &i, model, err, &d, &value);      /* checked in pass 1 */
        const char *why = not_for_model(d, model);
        if (why)
            return usage_error(err, model, "--%s %s: not used by summary-%s, which %s", d->name,
                               value ? value : "", model, why);
        server_flag |= d->kind == K_HOSTPORT;
        if (d->kind == K_FLAG) {
            int one = 1;
            memcpy((char *)o + d->off, &one, sizeof one);
        } else if (strcmp(d->name, "cpu-per-email") == 0 && store(o, d, value) == 0) {
            o->cpu_per_email_set = 1;
        } else if (strcmp(d->name, "profile") != 0 && store(o, d, value) != 0) {
            char exp[160];
            expected(d, exp, sizeof exp);
            fprintf(err, "summary-%s: --%s: bad value '%s': expected %s\n", model, d->name, value, exp);
            fprintf(err, "Try 'summary-%s --help'.\n", model);
            return 2;
        }
    }
    if (resolve_server(o, server_flag, err) != 0)
        return 2;
    if (o->prebuild && o->duration_s > 0)
        return usage_error(err, model, "--prebuild builds --emails emails before the run: it "
                           "needs a run sized by --emails, not --duration");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    if (o->reactors > 4 * (long long)cores)
        return usage_error(err, model, "--reactors %lld: at most 4 x the %ld cores (%ld); one "
                           "reactor per core is the point", o->reactors, cores, 4 * cores);
    if (o->join > 0 && (o->chain > 1 || o->rate > 0))
        return usage_error(err, model, "--join %lld: a summary joins independent emails in a "
                           "closed loop: not with --chain > 1 or --rate", o->join);
    if (o->emails == 0)                     /* not given: a run sized by time has no cap */
        o->emails = o->duration_s > 0 ? 1000000000 : 1000;
    if (o->dump_profile) {
        cli_dump(out, o);
        return 1;
    }
    if (o->start_at_ms > 0) {               /* a typo of minutes or a value in seconds */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if (o->start_at_ms > (long long)now.tv_sec * 1000 + 3600 * 1000LL)
            return usage_error(err, model, "--start-at %lld is more than an hour from now",
                               o->start_at_ms);
    }
    return o->json[0] ? check_writable(o->json, err, model) : 0;
}

/* Every in-flight email may hold a socket: lift the soft descriptor limit
 * to the hard one, and say so when even that is short of the concurrency. */
static void raise_fd_limit(const struct cli_options *o)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (long long)rl.rlim_cur < o->concurrency + 64)
        fprintf(stderr, "summary-%s: warning: only %llu file descriptors for --concurrency %lld"
                " (raise the hard limit: ulimit -Hn)\n",
                o->model, (unsigned long long)rl.rlim_cur, o->concurrency);
}

void cli_wait_start(const struct cli_options *o)
{
    if (o->start_at_ms <= 0)
        return;
    struct timespec at = { .tv_sec = (time_t)(o->start_at_ms / 1000),
                           .tv_nsec = (long)(o->start_at_ms % 1000) * 1000000L }, now;
    clock_gettime(CLOCK_REALTIME, &now);
    double late = (double)(now.tv_sec - at.tv_sec) + (double)(now.tv_nsec - at.tv_nsec) * 1e-9;
    if (late > 0.1)
        fprintf(stderr, "summary-%s: --start-at %lld had passed %.3fs ago: starting now\n",
                o->model, o->start_at_ms, late);
    while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &at, NULL) == EINTR)
        ;
}

int cli_parse(int argc, char **argv, const char *model, struct cli_options *o)
{
    int rc = cli_parse_to(argc, argv, model, o, stdout, stderr);
    if (rc == 0)
        raise_fd_limit(o);
    return rc;
}

void cli_usage(FILE *f, const char *model)
{
    struct cli_options d;
    cli_defaults(&d, model);
    fprintf(f, "Usage: summary-%s [OPTIONS]\n"
            "Send emails summarising synthetic application activity to an SMTP server\n"
            "and measure the run (model: %s).\n\nOptions:\n", model, model);
    for (size_t i = 0; i < NOPTS && opts[i].side != CLI_KEY_SERVER; i++) {
        char left[40];
        snprintf(left, sizeof left, "--%s%s%s", opts[i].name, opts[i].metavar ? " " : "",
                 opts[i].metavar ? opts[i].metavar : "");
        fprintf(f, "  %-22s %s\n", left, opts[i].help);
    }
    fprintf(f, "\nDefaults: --server %s --emails %lld (with --duration: no cap) --concurrency %lld\n"
            "  --recipients %lld --events %lld --body-bytes 0 --per-session %lld --chain %lld\n"
            "  --blocking 0 --retries %lld --timeout 30s --seed 1 --rate 0 --warmup 0 --duration 0;\n"
            "  without --threads the model's pool (threads: C, hybrid: the cores; --threads 0\n"
            "  is refused)\n",
            d.server, 1000LL, d.concurrency, d.recipients, d.events, d.per_session, d.chain,
            d.retries);
    fprintf(f, "\nValues: durations 250us, 10ms, 1.5s (\"0\" alone is fine); sizes 512, 100KB, 2MB;\n"
            "counts 1000 or 10k.  --name=value works too.  Each option may be given once\n"
            "(a second one is an error: \"--emails given twice\").\n"
            "--server HOST:PORT: HOST is an IPv4 address, read as written (no octal or\n"
            "short forms), or a host name, looked up once at start; the host must be named\n"
            "(\":2525\" is refused); no IPv6.  PORT is 1 to 65535, digits only.\n"
            "\nA profile (workloads/profiles/NAME.conf) holds 'key = value' lines, the keys\n"
            "being the option names without '--'; flags on the command line override it\n"
            "wherever --profile appears.  A profile may also set the server's keys (latency,\n"
            "jitter, latency-dist, tempfail, permfail, drop, stall, fault-stage, max-conns,\n"
            "max-size, max-rcpts, idle-timeout, session-timeout), which this program\n"
            "ignores and smtp-mock uses.\n"
            "\nExit status 2 on a usage error.\n");
}
