/* smtp_server — see smtp_server.h.
 *
 * Shape (after Postfix's smtp-sink): a session is in one of a few named
 * states; a command line is looked up in a command table and its handler
 * checks the state, replies, and moves to the next state.  While in DATA the
 * bytes go through a small per-line state machine instead, which undoes
 * dot-stuffing and finds the final "." without buffering the text. */
#include "smtp_server.h"

#include "digest.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Session states: what the next command may be. */
enum server_state {
    ST_INIT,       /* greeted (or not yet): needs EHLO/HELO */
    ST_READY,      /* after EHLO/HELO, no transaction open */
    ST_MAIL,       /* MAIL accepted, no recipient yet */
    ST_RCPT,       /* at least one recipient: DATA may follow */
    ST_DATA,       /* receiving the message text */
    ST_NOSERVICE,  /* 554 greeting: only QUIT is served (RFC 5321 3.1) */
    ST_CLOSED      /* caller must send the output and close */
};

/* Where the DATA scanner is within a line.  Only CR LF ends a line: after a
 * bare LF the scanner stays in D_LINE, so a "." after it is text. */
enum data_state {
    D_BOL,         /* at the beginning of a line (after CR LF, or the 354) */
    D_DOT,         /* line began with "." */
    D_DOT_CR,      /* line began with ".\r" */
    D_LINE         /* inside a line */
};

/* Replies formatted once per session object (see smtp_server.canned). */
enum canned_reply { CANNED_GREETING, CANNED_HELO, CANNED_EHLO, CANNED_QUIT, CANNED_COUNT };

/* Per-session fields are set back by smtp_server_reset(), one by one. */
struct smtp_server {
    struct smtp_server_config cfg; /* copy of the caller's configuration */
    struct smtp_server_hooks hooks; /* copy of the caller's hooks */
    enum server_state state;   /* see server_state */
    unsigned long errors;      /* protocol errors replied so far */

    char line[SMTP_SERVER_MAX_CMD_LINE + 1]; /* command line being assembled */
    size_t line_len;           /* bytes in line[] */
    int line_overflow;         /* the current line exceeded the limit */

    char *out;                 /* reply bytes not yet taken by the caller */
    size_t out_len, out_cap;   /* used / allocated bytes of out */

    char *env;                 /* envelope: NUL-separated from, rcpt, rcpt... */
    size_t env_len, env_cap;   /* used / allocated bytes of env */
    size_t *rcpt_off;          /* offset in env of each recipient */
    const char **rcpt_ptr;     /* rcpt pointers handed to the message hook */
    unsigned nrcpts;           /* recipients accepted in this transaction */
    bool refused;              /* this transaction's MAIL or a RCPT was refused:
                                  a pipelining client's RCPT/DATA that follow
                                  get 503 but are not its mistake (RFC 2920) */

    enum data_state dstate;    /* DATA scanner position */
    int d_started;             /* the BODY stage was decided for this message */
    int d_cr;                  /* the last text byte was a CR (its LF not seen yet) */
    char d_bare;               /* first bare '\r' or '\n' in the text, or 0 */
    size_t dline_len;          /* octets of the current text line so far, the
                                  stuffing dot not counted (4.5.3.1.6) */
    int d_too_long;            /* a text line exceeded 1000 octets */
    int d_too_big;             /* the message exceeded max_size */
    uint64_t d_size;           /* unstuffed message bytes so far */
    struct digest_ctx d_digest; /* hash of the unstuffed bytes so far ... */
    const char *d_run_p;       /* ... but for these d_run_n bytes of the read */
    size_t d_run_n;            /* being fed, hashed in one update (digest_flush) */
    int in_headers;            /* still before the blank line */
    int msgid_fold;            /* Message-ID value is on a folded line */
    char hdr[SMTP_SERVER_MAX_TEXT_LINE + 1]; /* current header line */
    size_t hdr_len;            /* bytes in hdr[] (truncated to its size) */
    char msgid[SMTP_SERVER_MAX_TEXT_LINE + 1]; /* Message-ID (may hold NULs) */
    size_t msgid_len;          /* bytes in msgid[], 0 if none */
    char *body;                /* unstuffed text, only with cfg.keep_body */
    size_t body_len, body_cap; /* used / allocated bytes of body */

    /* The replies that name the host, formatted once (smtp_server_new) and
     * copied from here: no formatting per session once a session object is
     * reused (smtp_server_reset). */
    char *canned;              /* the texts, one after another */
    size_t canned_off[CANNED_COUNT], canned_len[CANNED_COUNT];
};

/* ---------------------------------------------------------------- buffers */

/* Grows *buf so that it holds need bytes; 0 on success, -1 out of memory. */
static int buf_reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    char *p = realloc(*buf, n);
    if (p == NULL)
        return -1;
    *buf = p;
    *cap = n;
    return 0;
}

static void reply_n(struct smtp_server *s, const char *text, size_t n)
{
    if (buf_reserve(&s->out, &s->out_cap, s->out_len + n) < 0)
        abort(); /* a few hundred bytes: nothing sensible to do without them */
    memcpy(s->out + s->out_len, text, n);
    s->out_len += n;
}

/* A literal's length is known at compile time; any other text is measured. */
#define reply(s, text) reply_n((s), (text), strlen(text))

static void reply_canned(struct smtp_server *s, enum canned_reply r)
{
    reply_n(s, s->canned + s->canned_off[r], s->canned_len[r]);
}

/* Formatted straight into the output, whatever its length: a reply is
 * never cut (a cut one would have no CRLF and the client would hang). */
static void replyf(struct smtp_server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void replyf(struct smtp_server *s, const char *fmt, ...)
{
    va_list ap;
    /* Straight into the free space (one formatting); measured and redone
     * only when it did not fit. */
    size_t room = s->out_cap - s->out_len;
    va_start(ap, fmt);
    int n = vsnprintf(room ? s->out + s->out_len : NULL, room, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < room) {
        s->out_len += (size_t)n;
        return;
    }
    if (n < 0 || buf_reserve(&s->out, &s->out_cap, s->out_len + (size_t)n + 1) < 0)
        abort();
    va_start(ap, fmt);
    vsnprintf(s->out + s->out_len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->out_len += (size_t)n;
}

/* Formats the replies that name the host (smtp_server.canned).  0, or -1
 * out of memory. */
static int canned_make(struct smtp_server *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return -1;
    const char *h = s->cfg.hostname;
    for (int r = 0; r < CANNED_COUNT; r++) {
        s->canned_off[r] = (size_t)ftell(f);
        switch ((enum canned_reply)r) {
        case CANNED_GREETING: fprintf(f, "220 %s ESMTP mailbench\r\n", h); break;
        case CANNED_HELO:     fprintf(f, "250 %s\r\n", h); break;
        case CANNED_EHLO:
            fprintf(f, "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n250 8BITMIME\r\n",
                    h, (unsigned long long)s->cfg.max_size);
            break;
        case CANNED_QUIT:     fprintf(f, "221 %s Bye\r\n", h); break;
        case CANNED_COUNT:    break;
        }
        s->canned_len[r] = (size_t)ftell(f) - s->canned_off[r];
    }
    if (fclose(f) != 0) {
        free(buf);
        return -1;
    }
    s->canned = buf;
    return 0;
}

/* A reply to input the client got wrong: counted as a protocol error. */
static void reply_error(struct smtp_server *s, const char *text)
{
    s->errors++;
    reply(s, text);
}

/* Appends a NUL-terminated string to the envelope; returns its offset. */
static size_t env_add(struct smtp_server *s, const char *str, size_t n)
{
    if (buf_reserve(&s->env, &s->env_cap, s->env_len + n + 1) < 0)
        abort();
    size_t off = s->env_len;
    memcpy(s->env + off, str, n);
    s->env[off + n] = '\0';
    s->env_len += n + 1;
    return off;
}

static void transaction_reset(struct smtp_server *s)
{
    s->env_len = 0;
    s->nrcpts = 0;
    s->body_len = 0;
    s->refused = false;
}

/* ----------------------------------------------------------- the message */

static enum smtp_server_verdict decide(struct smtp_server *s, enum smtp_server_stage st,
                                       const struct smtp_server_message *m)
{
    if (s->hooks.decide == NULL)
        return SMTP_SERVER_VERDICT_ACCEPT;
    return s->hooks.decide(s->hooks.arg, st, m);
}

/* The message (or the transaction in progress) as the hooks see it. */
static void message_view(struct smtp_server *s, struct smtp_server_message *m, int complete)
{
    memset(m, 0, sizeof *m);
    m->mail_from = s->env_len ? s->env : "";
    m->nrcpts = s->nrcpts;
    if (!complete)
        return;
    for (unsigned i = 0; i < s->nrcpts; i++)
        s->rcpt_ptr[i] = s->env + s->rcpt_off[i];
    m->rcpts = s->rcpt_ptr;
    m->size = s->d_size;
    m->hash = digest_final(&s->d_digest);
    m->message_id = s->msgid_len ? s->msgid : NULL;
    m->message_id_len = s->msgid_len;
    if (s->cfg.keep_body) {
        if (buf_reserve(&s->body, &s->body_cap, s->body_len + 1) < 0)
            abort();
        s->body[s->body_len] = '\0';
        m->body = s->body;
    }
}

/* "Message-ID: <x@y>" (any case, any spaces): copies the value to msgid,
 * every byte of it (a NUL is data, not the end: ids that differ after it
 * are different ids). */
static void header_line(struct smtp_server *s)
{
    size_t n = s->hdr_len;
    while (n > 0 && (s->hdr[n - 1] == '\n' || s->hdr[n - 1] == '\r'))
        n--;
    if (n == 0) {
        s->in_headers = 0;
        return;
    }
    const char *v, *end = s->hdr + n;
    if (s->msgid_fold && (s->hdr[0] == ' ' || s->hdr[0] == '\t')) {
        v = s->hdr;            /* the value folded onto the next line */
    } else if (s->msgid_len == 0 && n >= 11 && strncasecmp(s->hdr, "Message-ID:", 11) == 0) {
        v = s->hdr + 11;
    } else {
        s->msgid_fold = 0;
        return;
    }
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t len = (size_t)(end - v);
    s->msgid_fold = (len == 0);
    memmove(s->msgid, v, len);
    s->msgid[len] = '\0';
    s->msgid_len = len;
}

/* Hashes the bytes held back in the run (they are in the caller's buffer:
 * done before the feed returns and before the digest is read). */
static void digest_flush(struct smtp_server *s)
{
    if (s->d_run_n > 0) {
        digest_update(&s->d_digest, s->d_run_p, s->d_run_n);
        s->d_run_n = 0;
    }
}

/* n unstuffed bytes of the message; eol: they end the current line. */
static void data_emit(struct smtp_server *s, const char *p, size_t n, int eol)
{
    if (s->d_too_big)
        return;
    if (s->cfg.max_size && s->d_size + n > s->cfg.max_size) {
        s->d_too_big = 1;      /* keep reading to the final ".", then 552 */
        return;
    }
    s->d_size += n;
    /* Lines that follow one another in the read are hashed in one update:
     * only a stuffing dot or the end of the read breaks the run. */
    if (s->d_run_n > 0 && s->d_run_p + s->d_run_n == p) {
        s->d_run_n += n;
    } else {
        digest_flush(s);
        s->d_run_p = p;
        s->d_run_n = n;
    }
    if (s->cfg.keep_body) {
        if (buf_reserve(&s->body, &s->body_cap, s->body_len + n) < 0)
            abort();
        memcpy(s->body + s->body_len, p, n);
        s->body_len += n;
    }
    if (!s->in_headers)
        return;
    size_t room = sizeof s->hdr - 1 - s->hdr_len;
    size_t k = n < room ? n : room;
    memcpy(s->hdr + s->hdr_len, p, k);
    s->hdr_len += k;
    if (eol) {
        header_line(s);
        s->hdr_len = 0;
    }
}

static void data_begin(struct smtp_server *s)
{
    s->state = ST_DATA;
    s->dstate = D_BOL;
    s->d_started = 0;
    s->d_cr = 0;
    s->d_bare = 0;
    s->dline_len = 0;
    s->d_too_long = s->d_too_big = 0;
    s->d_size = 0;
    digest_init(&s->d_digest);
    s->d_run_n = 0;
    s->in_headers = 1;
    s->msgid_fold = 0;
    s->hdr_len = 0;
    s->msgid[0] = '\0';
    s->msgid_len = 0;
    s->body_len = 0;
}

/* The final "." arrived: check the limits, ask the hook, reply. */
static void data_end(struct smtp_server *s)
{
    s->state = ST_READY;
    if (s->d_bare == '\n') {
        reply_error(s, "554 Error: bare <LF> received\r\n");
    } else if (s->d_bare == '\r') {
        reply_error(s, "554 Error: bare <CR> received\r\n");
    } else if (s->d_too_long) {
        reply_error(s, "500 Line too long\r\n");
    } else if (s->d_too_big) {
        reply(s, "552 Message size exceeds fixed maximum message size\r\n");
    } else {
        struct smtp_server_message m;
        message_view(s, &m, 1);
        enum smtp_server_verdict v = decide(s, SMTP_SERVER_STAGE_DATA, &m);
        if ((v == SMTP_SERVER_VERDICT_ACCEPT || v == SMTP_SERVER_VERDICT_DROP) && s->hooks.message)
            s->hooks.message(s->hooks.arg, &m);
        switch (v) {
        case SMTP_SERVER_VERDICT_ACCEPT:   reply(s, "250 Ok: queued\r\n"); break;
        case SMTP_SERVER_VERDICT_TEMPFAIL:
            reply(s, "451 Requested action aborted: local error in processing\r\n");
            break;
        case SMTP_SERVER_VERDICT_PERMFAIL: reply(s, "554 Transaction failed\r\n"); break;
        case SMTP_SERVER_VERDICT_DROP:     s->state = ST_CLOSED; break;
        }
    }
    transaction_reset(s);
}

/* Text inside a line, up to and including the first LF in p[0..n); returns
 * the bytes consumed.  A CR must be followed by LF and an LF preceded by CR:
 * a bare one marks the message (refused at its end) and does not end the
 * line, so no "." after it can end DATA. */
static size_t data_text(struct smtp_server *s, const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    size_t k = nl ? (size_t)(nl - p) + 1 : n;
    if (s->d_cr && p[0] != '\n' && !s->d_bare)
        s->d_bare = '\r';      /* the CR that ended the last piece */
    for (const char *cr = memchr(p, '\r', k); cr && !s->d_bare;
         cr = memchr(cr + 1, '\r', (size_t)(p + k - cr - 1))) {
        if (cr + 1 == p + k)
            break;             /* the last byte: its LF may be in the next piece */
        if (cr[1] != '\n')
            s->d_bare = '\r';
    }
    int crlf = nl && (k >= 2 ? p[k - 2] == '\r' : s->d_cr);
    if (nl && !crlf && !s->d_bare)
        s->d_bare = '\n';
    s->d_cr = !nl && p[k - 1] == '\r';
    s->dline_len += k;
    data_emit(s, p, k, crlf);
    if (crlf) {
        if (s->dline_len > SMTP_SERVER_MAX_TEXT_LINE)
            s->d_too_long = 1;
        s->dstate = D_BOL;
    }
    return k;
}

/* Scans DATA text; returns the bytes consumed (fewer than n only when the
 * final "." was found: the rest are commands). */
static size_t data_consume(struct smtp_server *s, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        switch (s->dstate) {
        case D_BOL:
            s->dline_len = 0;
            s->d_cr = 0;
            if (p[i] == '.') {
                s->dstate = D_DOT;  /* not counted: stuffing, or the end */
                i++;
                continue;
            }
            s->dstate = D_LINE;
            break;
        case D_DOT:
            if (p[i] == '\r') {
                s->dstate = D_DOT_CR;
                i++;
                continue;
            }
            s->dstate = D_LINE;      /* a stuffed dot: dropped */
            break;
        case D_DOT_CR:
            if (p[i] == '\n') {
                digest_flush(s);
                data_end(s);
                return i + 1;
            }
            /* "." CR and then not LF: the dot was stuffing, the CR is bare. */
            if (!s->d_bare)
                s->d_bare = '\r';
            s->dline_len = 1;
            data_emit(s, "\r", 1, 0);
            s->dstate = D_LINE;
            break;
        case D_LINE:
            i += data_text(s, p + i, n - i);
            break;
        }
    }
    digest_flush(s);
    return n;
}

/* The first text after the 354 (SMTP_SERVER_STAGE_BODY): ask the hook.  Returns
 * 0 to go on, -1 when the session was closed. */
static int data_start(struct smtp_server *s)
{
    struct smtp_server_message m;
    s->d_started = 1;
    message_view(s, &m, 0);
    switch (decide(s, SMTP_SERVER_STAGE_BODY, &m)) {
    case SMTP_SERVER_VERDICT_ACCEPT:
        return 0;
    case SMTP_SERVER_VERDICT_TEMPFAIL:
    case SMTP_SERVER_VERDICT_PERMFAIL:
        replyf(s, "421 %s Service not available, closing transmission channel\r\n",
               s->cfg.hostname);
        break;
    case SMTP_SERVER_VERDICT_DROP:
        break;
    }
    transaction_reset(s);
    s->state = ST_CLOSED;
    return -1;
}

/* -------------------------------------------------------------- commands */

/* Skips "FROM:" / "TO:" (any case, spaces allowed after the colon) and
 * parses "<path>"; on success *path, *plen is the inside, returns the text
 * after '>'.  NULL on a syntax error. */
static const char *parse_path(const char *arg, const char *keyword,
                              const char **path, size_t *plen)
{
    size_t k = strlen(keyword);
    if (strncasecmp(arg, keyword, k) != 0)
        return NULL;
    arg += k;
    while (*arg == ' ')
        arg++;
    if (*arg != '<')
        return NULL;
    const char *close = strchr(arg, '>');
    if (close == NULL)
        return NULL;
    *path = arg + 1;
    *plen = (size_t)(close - arg - 1);
    for (size_t i = 0; i < *plen; i++)
        if ((*path)[i] == ' ' || (*path)[i] == '<')
            return NULL;
    return close + 1;
}

/* MAIL parameters: SIZE=n and BODY=7BIT|8BITMIME.  Returns 0 when fine,
 * else it has replied. */
static int mail_params(struct smtp_server *s, const char *p)
{
    while (*p) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        size_t n = strcspn(p, " ");
        if (n > 5 && strncasecmp(p, "SIZE=", 5) == 0) {
            char *end;
            unsigned long long v = strtoull(p + 5, &end, 10);
            if (end != p + n || !isdigit((unsigned char)p[5])) {
                reply_error(s, "501 Bad SIZE parameter\r\n");
                return -1;
            }
            if (s->cfg.max_size && v > s->cfg.max_size) {
                reply(s, "552 Message size exceeds fixed maximum message size\r\n");
                return -1;
            }
        } else if (!((n == 9 && strncasecmp(p, "BODY=7BIT", 9) == 0) ||
                     (n == 13 && strncasecmp(p, "BODY=8BITMIME", 13) == 0))) {
            reply_error(s, "555 MAIL FROM/RCPT TO parameters not recognized or not implemented\r\n");
            return -1;
        }
        p += n;
    }
    return 0;
}

static void cmd_helo(struct smtp_server *s, const char *arg)
{
    if (*arg == '\0') {
        reply_error(s, "501 Syntax: HELO hostname\r\n");
        return;
    }
    transaction_reset(s);
    s->state = ST_READY;
    reply_canned(s, CANNED_HELO);
}

static void cmd_ehlo(struct smtp_server *s, const char *arg)
{
    if (*arg == '\0') {
        reply_error(s, "501 Syntax: EHLO hostname\r\n");
        return;
    }
    transaction_reset(s);
    s->state = ST_READY;
    reply_canned(s, CANNED_EHLO);
}

static void cmd_mail(struct smtp_server *s, const char *arg)
{
    if (s->state == ST_INIT) {
        reply_error(s, "503 Error: send HELO/EHLO first\r\n");
        return;
    }
    if (s->state != ST_READY) {
        reply_error(s, "503 Error: nested MAIL command\r\n");
        return;
    }
    const char *path;
    size_t plen;
    const char *rest = parse_path(arg, "FROM:", &path, &plen);
    if (rest == NULL || (*rest != '\0' && *rest != ' ')) {
        reply_error(s, "501 Syntax: MAIL FROM:<address>\r\n");
        return;
    }
    if (mail_params(s, rest) < 0)
        return;
    transaction_reset(s);
    env_add(s, path, plen);
    struct smtp_server_message m;
    message_view(s, &m, 0);
    switch (decide(s, SMTP_SERVER_STAGE_MAIL, &m)) {
    case SMTP_SERVER_VERDICT_ACCEPT:   s->state = ST_MAIL; reply(s, "250 Ok\r\n"); break;
    case SMTP_SERVER_VERDICT_TEMPFAIL:
        transaction_reset(s);
        s->refused = true;
        reply(s, "451 Temporary failure, try again later\r\n");
        break;
    case SMTP_SERVER_VERDICT_PERMFAIL:
        transaction_reset(s);
        s->refused = true;
        reply(s, "550 Sender rejected\r\n");
        break;
    case SMTP_SERVER_VERDICT_DROP:     s->state = ST_CLOSED; break;
    }
}

static void cmd_rcpt(struct smtp_server *s, const char *arg)
{
    if (s->state != ST_MAIL && s->state != ST_RCPT) {
        if (s->refused)
            reply(s, "503 Error: need MAIL command\r\n");
        else
            reply_error(s, "503 Error: need MAIL command\r\n");
        return;
    }
    const char *path;
    size_t plen;
    const char *rest = parse_path(arg, "TO:", &path, &plen);
    if (rest == NULL || plen == 0) {
        reply_error(s, "501 Syntax: RCPT TO:<address>\r\n");
        return;
    }
    while (*rest == ' ')
        rest++;
    if (*rest != '\0') {
        reply_error(s, "555 MAIL FROM/RCPT TO parameters not recognized or not implemented\r\n");
        return;
    }
    if (s->nrcpts >= s->cfg.max_rcpts) {
        reply(s, "452 Too many recipients\r\n");
        return;
    }
    struct smtp_server_message m;
    message_view(s, &m, 0);
    switch (decide(s, SMTP_SERVER_STAGE_RCPT, &m)) {
    case SMTP_SERVER_VERDICT_ACCEPT:
        s->rcpt_off[s->nrcpts++] = env_add(s, path, plen);
        s->state = ST_RCPT;
        reply(s, "250 Ok\r\n");
        break;
    case SMTP_SERVER_VERDICT_TEMPFAIL:
        s->refused = true;
        reply(s, "450 Mailbox temporarily unavailable\r\n");
        break;
    case SMTP_SERVER_VERDICT_PERMFAIL:
        s->refused = true;
        reply(s, "550 Mailbox unavailable\r\n");
        break;
    case SMTP_SERVER_VERDICT_DROP:     s->state = ST_CLOSED; break;
    }
}

static void cmd_data(struct smtp_server *s, const char *arg)
{
    if (s->state != ST_RCPT) {
        const char *text = s->state == ST_MAIL ? "503 Error: need RCPT command\r\n"
                                               : "503 Error: need MAIL command\r\n";
        if (s->refused)
            reply(s, text);
        else
            reply_error(s, text);
        return;
    }
    if (*arg != '\0') {
        reply_error(s, "501 Syntax: DATA\r\n");
        return;
    }
    data_begin(s);
    reply(s, "354 End data with <CR><LF>.<CR><LF>\r\n");
}

static void cmd_rset(struct smtp_server *s, const char *arg)
{
    if (*arg != '\0') {
        reply_error(s, "501 Syntax: RSET\r\n");
        return;
    }
    transaction_reset(s);
    if (s->state != ST_INIT)
        s->state = ST_READY;
    reply(s, "250 Ok\r\n");
}

static void cmd_noop(struct smtp_server *s, const char *arg)
{
    (void)arg;                 /* RFC 5321 4.1.1.9: a parameter is allowed */
    reply(s, "250 Ok\r\n");
}

static void cmd_vrfy(struct smtp_server *s, const char *arg)
{
    if (*arg == '\0') {
        reply_error(s, "501 Syntax: VRFY address\r\n");
        return;
    }
    reply(s, "252 Cannot VRFY user, but will accept message and attempt delivery\r\n");
}

static void cmd_quit(struct smtp_server *s, const char *arg)
{
    (void)arg;
    reply_canned(s, CANNED_QUIT);
    s->state = ST_CLOSED;
}

/* The command table: a NULL handler is a command we know but do not do. */
static const struct command {
    const char *name;
    void (*handler)(struct smtp_server *s, const char *arg);
} commands[] = {
    { "EHLO", cmd_ehlo }, { "HELO", cmd_helo }, { "MAIL", cmd_mail },
    { "RCPT", cmd_rcpt }, { "DATA", cmd_data }, { "RSET", cmd_rset },
    { "NOOP", cmd_noop }, { "QUIT", cmd_quit }, { "VRFY", cmd_vrfy },
    { "EXPN", NULL }, { "HELP", NULL }, { "TURN", NULL }, { "ETRN", NULL },
    { "BDAT", NULL }, { "AUTH", NULL }, { "STARTTLS", NULL },
};

static const char *const cmd_names[SMTP_SERVER_CMD_COUNT] = {
    "EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "other",
};

const char *smtp_server_cmd_name(enum smtp_server_cmd c)
{
    return (unsigned)c < SMTP_SERVER_CMD_COUNT ? cmd_names[c] : "?";
}

/* Counts a command line by its verb (SMTP_SERVER_CMD_OTHER: another verb,
 * or not a command at all). */
static void count_command(struct smtp_server *s, enum smtp_server_cmd c)
{
    if (s->cfg.counts)
        s->cfg.counts->commands[c]++;
}

/* The four octets of a verb as one number, ASCII letters folded to lower
 * case (x | 0x20 is a lower-case letter only when x is a letter). */
#define VERB4(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

static uint32_t verb4(const char *v)
{
    uint32_t k = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z')
            ch |= 0x20;
        k |= (uint32_t)ch << (8 * i);
    }
    return k;
}

/* One complete command line in s->line (without CR LF, NUL-terminated). */
static void command_line(struct smtp_server *s)
{
    char *verb = s->line;
    size_t vlen = strcspn(verb, " ");
    const char *arg = verb + vlen;
    while (*arg == ' ')
        arg++;
    /* The common verbs: one comparison of four octets each, no table walk. */
    enum smtp_server_cmd cmd = SMTP_SERVER_CMD_OTHER;
    void (*handler)(struct smtp_server *, const char *) = NULL;
    if (vlen == 4) {
        switch (verb4(verb)) {
        case VERB4('e', 'h', 'l', 'o'): cmd = SMTP_SERVER_CMD_EHLO; handler = cmd_ehlo; break;
        case VERB4('h', 'e', 'l', 'o'): cmd = SMTP_SERVER_CMD_HELO; handler = cmd_helo; break;
        case VERB4('m', 'a', 'i', 'l'): cmd = SMTP_SERVER_CMD_MAIL; handler = cmd_mail; break;
        case VERB4('r', 'c', 'p', 't'): cmd = SMTP_SERVER_CMD_RCPT; handler = cmd_rcpt; break;
        case VERB4('d', 'a', 't', 'a'): cmd = SMTP_SERVER_CMD_DATA; handler = cmd_data; break;
        case VERB4('r', 's', 'e', 't'): cmd = SMTP_SERVER_CMD_RSET; handler = cmd_rset; break;
        case VERB4('n', 'o', 'o', 'p'): cmd = SMTP_SERVER_CMD_NOOP; handler = cmd_noop; break;
        case VERB4('q', 'u', 'i', 't'): cmd = SMTP_SERVER_CMD_QUIT; handler = cmd_quit; break;
        default: break;
        }
    }
    count_command(s, cmd);
    if (s->state == ST_NOSERVICE) {
        if (cmd == SMTP_SERVER_CMD_QUIT)
            cmd_quit(s, arg);
        else
            reply(s, "503 Error: no SMTP service here\r\n");
        return;
    }
    if (handler) {
        handler(s, arg);
        return;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const struct command *c = &commands[i];
        if (strlen(c->name) == vlen && strncasecmp(verb, c->name, vlen) == 0) {
            if (c->handler)
                c->handler(s, arg);
            else
                reply_error(s, "502 Error: command not implemented\r\n");
            return;
        }
    }
    reply_error(s, "500 Error: command not recognized\r\n");
}

/* Adds a piece of a command line; past the limit only remembers that. */
static void line_append(struct smtp_server *s, const char *p, size_t n)
{
    if (s->line_len + n > SMTP_SERVER_MAX_CMD_LINE) {
        s->line_overflow = 1;
        return;
    }
    memcpy(s->line + s->line_len, p, n);
    s->line_len += n;
}

/* The LF of a command line arrived: the line is s->line[0..line_len). */
static void line_done(struct smtp_server *s)
{
    size_t n = s->line_len;
    if (n > 0 && s->line[n - 1] == '\r')
        n--;
    /* The 512-octet limit includes CR LF, so the text may have 510. */
    if (s->line_overflow || n + 2 > SMTP_SERVER_MAX_CMD_LINE) {
        count_command(s, SMTP_SERVER_CMD_OTHER);
        reply_error(s, "500 Line too long\r\n");
    } else if (memchr(s->line, '\0', n) != NULL) {
        /* Not the command before the NUL ("QUIT\0x" is not QUIT): the
         * handlers read the line as a C string. */
        count_command(s, SMTP_SERVER_CMD_OTHER);
        reply_error(s, "500 Error: NUL in command line\r\n");
    } else {
        s->line[n] = '\0';
        command_line(s);
    }
    s->line_len = 0;
    s->line_overflow = 0;
}

/* ------------------------------------------------------------ public API */

struct smtp_server *smtp_server_new(const struct smtp_server_config *config,
                                    const struct smtp_server_hooks *hooks)
{
    if (config->hostname && !smtp_server_hostname_valid(config->hostname))
        return NULL;
    /* aligned: the XXH3 state in d_digest wants 64 bytes (digest.h) */
    size_t size = (sizeof(struct smtp_server) + 63) & ~(size_t)63;
    struct smtp_server *s = aligned_alloc(64, size);
    if (s == NULL)
        return NULL;
    memset(s, 0, size);
    s->cfg = *config;
    if (s->cfg.hostname == NULL)
        s->cfg.hostname = "localhost";
    if (s->cfg.max_rcpts == 0)
        s->cfg.max_rcpts = 100;
    if (hooks)
        s->hooks = *hooks;
    /* both recipient arrays in one allocation (rcpt_ptr follows rcpt_off) */
    s->rcpt_off = malloc(s->cfg.max_rcpts * (sizeof *s->rcpt_off + sizeof *s->rcpt_ptr));
    if (s->rcpt_off == NULL)
        goto err;
    s->rcpt_ptr = (const char **)(void *)(s->rcpt_off + s->cfg.max_rcpts);
    if (canned_make(s) < 0)
        goto err;
    s->state = ST_INIT;
    return s;
err:
    smtp_server_free(s);
    return NULL;
}

void smtp_server_reset(struct smtp_server *s)
{
    /* Everything but what outlives a session: the configuration, the hooks,
     * the buffers (emptied) and the canned replies.  The large arrays (line,
     * header, Message-ID, the hash state) are not cleared: their lengths
     * are, and data_begin() starts the hash.  A field added to the
     * session must be added here too (test_reset_reuses). */
    s->state = ST_INIT;
    s->errors = 0;
    s->line_len = 0;
    s->line_overflow = 0;
    s->out_len = 0;
    s->env_len = 0;
    s->nrcpts = 0;
    s->refused = false;
    s->dstate = D_BOL;
    s->d_started = s->d_cr = 0;
    s->d_bare = 0;
    s->dline_len = 0;
    s->d_too_long = s->d_too_big = 0;
    s->d_size = 0;
    s->d_run_p = NULL;
    s->d_run_n = 0;
    s->in_headers = s->msgid_fold = 0;
    s->hdr_len = 0;
    s->msgid_len = 0;
    s->body_len = 0;
}

void smtp_server_free(struct smtp_server *s)
{
    if (s == NULL)
        return;
    free(s->canned);
    free(s->out);
    free(s->env);
    free(s->rcpt_off);         /* rcpt_ptr is in the same block */
    free(s->body);
    free(s);
}

int smtp_server_greeting(struct smtp_server *s)
{
    struct smtp_server_message m;
    message_view(s, &m, 0);
    switch (decide(s, SMTP_SERVER_STAGE_GREETING, &m)) {
    case SMTP_SERVER_VERDICT_ACCEPT:
        reply_canned(s, CANNED_GREETING);
        break;
    case SMTP_SERVER_VERDICT_TEMPFAIL:
        replyf(s, "421 %s Service not available, closing transmission channel\r\n",
               s->cfg.hostname);
        s->state = ST_CLOSED;
        break;
    case SMTP_SERVER_VERDICT_PERMFAIL:
        replyf(s, "554 %s No SMTP service here\r\n", s->cfg.hostname);
        s->state = ST_NOSERVICE;
        break;
    case SMTP_SERVER_VERDICT_DROP:
        s->state = ST_CLOSED;
        break;
    }
    return s->state == ST_CLOSED ? SMTP_SERVER_CLOSE : SMTP_SERVER_OK;
}

int smtp_server_feed(struct smtp_server *s, const char *data, size_t len)
{
    const char *p = data, *end = data + len;
    size_t out_before = s->out_len;
    while (p < end && s->state != ST_CLOSED) {
        if (s->state == ST_DATA) {
            if (!s->d_started && data_start(s) < 0)
                break;
            p += data_consume(s, p, (size_t)(end - p));
            continue;
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            line_append(s, p, (size_t)(end - p));
            break;
        }
        line_append(s, p, (size_t)(nl - p));
        line_done(s);
        p = nl + 1;
    }
    if (s->cfg.counts && s->out_len > out_before)
        s->cfg.counts->reply_batches++;
    return s->state == ST_CLOSED ? SMTP_SERVER_CLOSE : SMTP_SERVER_OK;
}

void smtp_server_shutdown(struct smtp_server *s, const char *text)
{
    if (s->state == ST_CLOSED)
        return;
    replyf(s, "421 %s %s\r\n", s->cfg.hostname, text);
    s->state = ST_CLOSED;
}

const char *smtp_server_output(const struct smtp_server *s, size_t *len)
{
    *len = s->out_len;
    return s->out;
}

void smtp_server_output_consume(struct smtp_server *s, size_t n)
{
    if (n >= s->out_len) {
        s->out_len = 0;
        return;
    }
    memmove(s->out, s->out + n, s->out_len - n);
    s->out_len -= n;
}

/* One label of a domain: 1..63 letters, digits, '-', no '-' at either end. */
static int label_valid(const char *p, size_t n)
{
    if (n == 0 || n > 63 || p[0] == '-' || p[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];      /* ASCII, whatever the locale */
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

int smtp_server_hostname_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 255)
        return 0;
    if (name[0] == '[') {      /* an address literal, RFC 5321 4.1.3 */
        char addr[256];
        unsigned char bin[16];
        if (name[n - 1] != ']' || n < 3)
            return 0;
        snprintf(addr, sizeof addr, "%.*s", (int)(n - 2), name + 1);
        if (strncasecmp(addr, "IPv6:", 5) == 0)
            return inet_pton(AF_INET6, addr + 5, bin) == 1;
        return inet_pton(AF_INET, addr, bin) == 1;
    }
    for (const char *p = name;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!label_valid(p, len))
            return 0;
        if (dot == NULL)
            return 1;
        p = dot + 1;
    }
}

unsigned long smtp_server_protocol_errors(const struct smtp_server *s) { return s->errors; }

int smtp_server_in_data(const struct smtp_server *s) { return s->state == ST_DATA; }
