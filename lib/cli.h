/* cli — the options every model shares (bin/summary-{sync,threads,async,hybrid}):
 * one struct, one parser for argv and --profile files, one usage text.
 *
 * Typical model main():
 *
 *     struct cli_options o;
 *     int rc = cli_parse(argc, argv, "sync", &o);
 *     if (rc != 0)
 *         return rc == 1 ? 0 : 2;          // 1 = --help printed, 2 = usage error printed
 *     struct workload_params wp;
 *     mailer_workload_params(&o, &wp);     // models/mailer/mailer.h
 *
 * Precedence: built-in defaults, then the --profile file (wherever --profile
 * appears on the command line), then the flags, which override its keys.
 * Each option may be given once: a second one is an error ("--emails given
 * twice ('1' and '2')"), as is a key given twice in a profile.  Both
 * "--name value" and "--name=value".
 *
 * Errors a user can make (unknown option, missing or bad value, an option
 * given twice, unknown or duplicated profile key, an option the model does
 * not use) print one line naming the option or FILE:LINE and the value, then
 * "Try 'summary-MODEL --help'.", and return 2.  So does a profile whose keys
 * cannot all hold at once (cli_check_profile).
 *
 * --server HOST:PORT (units_parse_server): HOST an IPv4 address read strictly
 * ("0127.0.0.1" is refused, never read as octal) or a host name, which is
 * resolved once here (getaddrinfo, IPv4) so the whole run goes to one
 * address; a name that does not resolve is a usage error.  HOST may not be
 * empty; PORT is plain decimal 1..65535.  No IPv6.
 *
 * --threads T is 1 or more; leave it out for the model's default.  The
 * one-thread models (sync, async) refuse it rather than ignore it.
 *
 * --reactors N (async only; sync, threads and hybrid refuse it, even N = 1,
 * as they refuse --threads when they would ignore it): 1..4 x the cores.
 *
 * Values use lib/units: durations "250us" "10ms" "1.5s" ("0" alone is fine),
 * sizes "512" "100KB" "2M" (powers of 1024), counts "1000" "10k".
 *
 * Profile keys are the long option names without "--".  The server-side keys
 * (smtp-mock's options: latency, jitter, latency-dist, tempfail, permfail,
 * drop, fault-stage, max-conns, max-size, max-rcpts, idle-timeout; defaults
 * as smtp-mock's) are accepted in a profile only, stored in o.srv, and ignored
 * by the models: they let the sweep runner start smtp-mock from the same
 * profile.  --profile, --json, --progress and --help are command-line only. */
#ifndef MAILBENCH_CLI_H
#define MAILBENCH_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "units.h"

#define CLI_PATH_MAX 1024
#define CLI_MAX_KEYS 64     /* room for every option / profile key */

/* Server-side settings read from a profile (for smtp-mock; models ignore them). */
struct cli_server_params {
    double latency_s;       /* latency: delay before each reply, seconds */
    double jitter_s;        /* jitter: latency uniform in latency +/- jitter, seconds */
    double tempfail;        /* tempfail: probability of a 4xx reply per transaction */
    double permfail;        /* permfail: probability of a 5xx reply per transaction */
    double drop;            /* drop: probability of dropping the connection */
    double stall;           /* stall: probability of never replying again */
    char latency_dist[16];  /* latency-dist: fixed|uniform|exp (default fixed) */
    char fault_stage[16];   /* fault-stage: where faults strike: greeting|mail|rcpt|data|body (default data) */
    long long max_conns;    /* max-conns: concurrent sessions accepted (default 100000) */
    uint64_t max_size;      /* max-size: message size limit, bytes (default 100MB) */
    long long max_rcpts;    /* max-rcpts: recipients per message (default 1000) */
    double idle_timeout_s;  /* idle-timeout: server closes idle sessions after this (default 60s, 0 = never) */
    double session_timeout_s; /* session-timeout: total time a session may last (0 = no limit) */
    char args[512];         /* the keys that were set, as smtp-mock flags: "--latency 5ms ..." */
};

struct cli_options {
    const char *model;      /* "sync", "threads", "async" or "hybrid" (as given to parse) */
    char server[UNITS_HOST_MAX + 8];  /* --server as typed, e.g. "127.0.0.1:2525" */
    char host[64];          /* the address to connect to, dotted IPv4: HOST itself, or
                             * the address HOST resolved to ("localhost": 127.0.0.1) */
    int port;               /* its port, 1..65535 */
    long long emails;       /* --emails: emails to send in the run, >= 1 */
    long long concurrency;  /* --concurrency: emails in flight at once, >= 1 */
    long long threads;      /* --threads: threads model: pool size; hybrid: CPU pool size;
                             * 1..100000 (refused by sync and async).
                             * 0 = not given: the model picks (threads: = concurrency,
                             * hybrid: = cores) and must store the value it used here
                             * before stats_run_write_json, so the JSON shows it. */
    long long recipients;   /* --recipients: RCPT TO per email, 1..1000 */
    long long events;       /* --events: requests summarised per email (CPU work), 0..10M */
    double cpu_per_email_s; /* --cpu-per-email: the CPU work per email as a time; the model
                             * calibrates --events to it once before its run (mailer_prepare) */
    int cpu_per_email_set;  /* --cpu-per-email given (flag, or the profile's key unless the
                             * --events flag overrides it): events come from the calibration */
    struct cli_calibration { /* filled by the calibration (models/mailer/mailer.c) */
        long long events;   /* the events per email chosen */
        double ns_per_event;/* measured CPU per event at that count (base excluded), ns */
        double measured_s;  /* measured CPU of one build at that count, seconds */
        double base_s;      /* measured CPU of one build at 0 events, seconds */
        double took_s;      /* CPU the calibration took */
        int rounds;         /* measurements made */
    } calib;
    uint64_t body_bytes;    /* --body-bytes: target message size, bytes; 0 = summary only */
    long long per_session;  /* --per-session: emails per SMTP connection, >= 1 */
    long long chain;        /* --chain: chains of K dependent emails; 1 = all independent */
    long long join;         /* --join N: email i with i % (N+1) == N is a summary of the N before
                             * it and starts only once they have all ended (async: gatherResults;
                             * threads: a condition variable); 0 = none.  Not with --chain > 1
                             * or --rate */
    double blocking_s;      /* --blocking: a blocking call per email, seconds; 0 = none */
    long long retries;      /* --retries: retries of a temporarily failed email, 0..1000 */
    double timeout_s;       /* --timeout, seconds, > 0: blocking models bound each connect and each
                             * reply; reactor models the connect+greeting+EHLO and each message
                             * (deferred_add_timeout) */
    uint64_t seed;          /* --seed: seeds the workload (and retry jitter) */
    long long rate;         /* --rate: open loop at this many emails/s; 0 = closed loop */
    char arrivals[16];      /* --arrivals (open loop): "constant" spacing or "poisson" */
    long long max_queue;    /* --max-queue (open loop): emails due but waiting for a slot; one
                             * arriving to a full queue is shed; 0 = unbounded */
    double warmup_s;        /* --warmup: emails ending before start + warmup are not in the figures */
    double duration_s;      /* --duration: > 0: the run is sized by time (start emails until
                             * start + warmup + duration; --emails is then only a cap); 0: by
                             * --emails (stats_window_*, stats.h) */
    int prebuild;           /* --prebuild: build every email before the clock starts (--emails) */
    int quit_background;    /* --quit-background (async, hybrid): an email's concurrency slot is
                             * freed when QUIT is sent and the 221 is read in the background;
                             * 0 (default): held until the connection is closed, like the
                             * blocking models, which read the 221 before their next email */
    long long reactors;     /* --reactors (async only): reactor threads, each a whole async model
                             * over its share of the emails, the concurrency and the rate;
                             * 1..min(CLI_MAX_REACTORS, 4 x cores), default 1 (refused by the
                             * other models, even 1).  The JSON records the number run, which
                             * is fewer when there are fewer emails in flight than reactors */
    char trace[CLI_PATH_MAX];   /* --trace: write a timeline of the first --trace-emails emails
                                 * as JSON lines to FILE (lib/trace.h); "" = none */
    long long trace_emails;     /* --trace-emails: how many emails (indexes 0..K-1) --trace follows */
    int no_errback;             /* --no-errback (async, hybrid; teaching): each email's chain has no
                                 * errback recording a failure, so a failed email's Deferred is
                                 * released holding its Failure and the library reports it */
    int blocking_in_pool;       /* --blocking-in-pool (hybrid): the --blocking call runs in the
                                 * thread pool with the build step (deferToThread), not in the
                                 * reactor thread */
    char profile[CLI_PATH_MAX]; /* --profile: the file applied, "" if none */
    char json[CLI_PATH_MAX];    /* --json: where to write the run JSON, "-" = stdout, "" = none */
    int progress;           /* --progress: print progress on stderr even when it is not a TTY */
    int dump_profile;       /* --dump-profile: print the resolved settings as JSON and exit 0 */
    long long start_at_ms;  /* --start-at: wall-clock time (Unix epoch, ms) to start at: the start
                             * barrier of several load generators (cli_wait_start); 0: now */
    struct cli_server_params srv;   /* server-side profile keys (ignored by the models) */
    int profile_line[CLI_MAX_KEYS]; /* the --profile line that set each key (0: not set);
                                     * see cli_key_line */
};

/* Parses argv (argv[0] is ignored) for model `model` into *o.  Returns 0 on
 * success; 1 after printing the usage on stdout (--help: exit 0); 2 after
 * printing an error and a hint on stderr (exit 2). */
int cli_parse(int argc, char **argv, const char *model, struct cli_options *o);

/* The same with the streams given (tests capture them with open_memstream). */
int cli_parse_to(int argc, char **argv, const char *model, struct cli_options *o,
                 FILE *out, FILE *err);

/* The defaults alone: server 127.0.0.1:2525, emails 1000, concurrency 10,
 * threads 0 (model's choice), recipients 1, events 1000, body-bytes 0,
 * per-session 1, chain 1, blocking 0, retries 5, timeout 30s, seed 1,
 * rate 0 (closed loop), no profile, no JSON. */
void cli_defaults(struct cli_options *o, const char *model);

/* --start-at: sleeps until o->start_at_ms (CLOCK_REALTIME) if it is in the
 * future; says so on stderr when it had already passed by more than 100 ms.
 * Every model calls it (models/mailer/mailer.c mailer_prepare) after its
 * set-up, just before its clock starts. */
void cli_wait_start(const struct cli_options *o);

/* Prints the full usage text for `model` on f. */
void cli_usage(FILE *f, const char *model);

/* The option bounds the workload can take (workloads/summary.h's
 * WORKLOAD_MAX_*: models/mailer/mailer.c checks at compile time that the two
 * agree, so lib/ never includes a workload header). */
#define CLI_MAX_EVENTS     10000000LL
#define CLI_MAX_RECIPIENTS 1000
#define CLI_MAX_BODY_BYTES (256ULL << 20)
#define CLI_MAX_REACTORS   1024     /* --reactors; also at most 4 x the cores (checked after parsing) */

/* Which side a profile key belongs to: CLI_KEY_MODEL, CLI_KEY_SERVER,
 * CLI_KEY_CLI (command line only), or -1 if unknown.  smtp-mock uses it to
 * skip the model keys of a shared profile. */
enum { CLI_KEY_MODEL = 0, CLI_KEY_SERVER = 1, CLI_KEY_CLI = 2 };
int cli_key_side(const char *key);

/* The line of o->profile that set `key`, or 0 if the profile did not. */
int cli_key_line(const struct cli_options *o, const char *key);

/* Checks across keys of a profile, each error naming FILE:LINE and the key
 * (the line of the key that makes the set impossible):
 *   - jitter above latency with a uniform distribution (smtp-mock's rule);
 *   - tempfail + permfail + drop + stall above 1; permfail with
 *     fault-stage body;
 *   - concurrency (+ 64 descriptors of overhead) above the hard
 *     RLIMIT_NOFILE this process can raise its limit to: the run could not
 *     open a socket per email in flight (client and smtp-mock alike).
 * Returns 0, or 2 after printing the message on err.  cli_parse
 * runs it after loading a profile; smtp-mock too. */
int cli_check_profile(const struct cli_options *o, FILE *err);

/* Applies the profile at `path` to *o (already holding the defaults,
 * cli_defaults) with every check above; for programs other than the
 * models (smtp-mock passes model "smtp-mock": every model key is then
 * accepted and left to the models, the server keys land in o->srv and
 * o->srv.args).  Returns 0, or 2 after printing "FILE:LINE: ..." on err. */
int cli_load_profile(struct cli_options *o, const char *path, FILE *err);

/* --dump-profile: the resolved settings (defaults, profile, flags) as one
 * JSON object on f, schema "mailbench.profile/1": {"profile": FILE|null,
 * "model": {key: value}, "server": {key: value}, "lines": {key: line}}, keys
 * as in a profile; durations as strings the options take ("5ms"), sizes in
 * bytes, probabilities as numbers.  scripts/sweep reads profiles this way,
 * so the rules live in one parser. */
void cli_dump(FILE *f, const struct cli_options *o);

#endif
