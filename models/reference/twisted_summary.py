#!/usr/bin/python3
"""twisted_summary.py — the email-summary workload sent with real Twisted.

The reference peer of the C models: the same workload (tests/golden/workload/
reference.py renders byte-identical messages for a given seed and email
number), the same options (the subset that applies), the same retry policy as
lib/retry.c and the same "mailbench.run/1" JSON, model "twisted".  Run it with
/usr/bin/python3 (Debian's python3-twisted); bin/summary-twisted does.

It is written the way a Twisted user writes a bulk sender, and reads side by
side with models/mailer/async_mailer.c:

  * one connection is a subclass of twisted.mail.smtp.ESMTPClient, driven
    through the documented multi-message hooks (getMailTo, getMailData,
    sentMail) so that a session can carry --per-session emails.  Its
    exchange is the C models' (lib/smtp_client.c with cfg.pipelining, as
    every C model sends), so that "C against Twisted" compares languages,
    not protocols (issue 10): per email, on a fresh connection, greeting;
    EHLO; MAIL FROM, RCPT TO (x --recipients) and DATA in one write when
    the server offers PIPELINING; the text and its final "." in one write;
    QUIT once the session is done (after --per-session emails; the next
    email's MAIL/RCPT/DATA go right after the previous 250, no RSET).
    That is 4 round trips to the reply to ".", and one more to the 221.
    Stock ESMTPClient has no PIPELINING, sends RSET after every message
    (smtp.sendmail: greeting, EHLO, MAIL, RCPT, DATA, text, RSET, QUIT: 6
    round trips to the reply to ".", 8 in all, against 4 and 5) and writes
    the text and "." separately; subclassing is enough to
    change that, as a Twisted user would: the state methods smtpState_from
    (send the pipelined group), smtpState_data (one write), smtpState_msgSent
    (no RSET: the next message, or QUIT) are overridden, and the replies to
    the group are taken in order by one more state, smtpState_pipelined.
    Lock-step MAIL, RCPT, DATA (ESMTPClient's own states) remain for a
    server that does not offer PIPELINING.  RSET goes out, in front of the
    next MAIL, only after a failed transaction the server had accepted MAIL
    for; MAIL carries SIZE= when the server offers SIZE; a 421 ends the
    session without QUIT: all as lib/smtp_client.c.  TCP_NODELAY is set
    (stock sendmail() does not: Nagle + delayed ACK, see the DESIGN
    pitfalls) and no TLS context is built per message (stock sendmail()
    builds one);
  * concurrency: a DeferredSemaphore of --concurrency tokens; the unit that
    holds a token is a chain of --chain emails, each email's Deferred chained
    on the previous one's.  An email holds its token until its connection
    is closed (its QUIT's Deferred fires once the 221 is read and the
    socket closed), as the blocking models do; --quit-background frees it
    when QUIT is sent (a reactor's own advantage, measured apart).  Its
    latency ends at the reply to its final "." in either case;
  * temporary failures (4xx, a lost connection, a timeout) are retried with
    bounded exponential backoff and equal jitter (base 10 ms, cap 1 s, at most
    --retries) via task.deferLater; 5xx are permanent and counted by reason;
  * every connect + greeting and every message transaction is bounded by
    --timeout with Deferred.addTimeout (the Deferreds' cancellers abort the
    connection, as sendmail's does);
  * runs are sized by time as the C models' (--warmup, --duration; lib/
    stats.c's window): only emails ending in the window make the rate, the
    latency figures and the CPU per email, which is the process CPU read
    when the window opens and closes (time.process_time), so Python's
    start-up (~0.4 s of imports) is not in it;
  * the open loop (--rate R, issue 14), as models/mailer/async_mailer.c: the
    chains are due on lib/arrivals.c's schedule (--arrivals constant: chain c
    at start + c*K/R; poisson: exponential gaps of mean K/R from splitmix64
    seeded by seed ^ "arrivals", the C models' schedule for the same seed),
    admitted by a callLater at each due time into a FIFO (--max-queue N: an
    arrival finding N waiting is shed) and started only when the semaphore
    has a free token; email k of a chain starts no earlier than the chain's
    due time + k/R (task.deferLater).  Latency is from the intended start,
    service_p*_us from the actual start; start lateness, behind_schedule,
    scheduled = delivered + failed + shed + pending, as lib/stats.c.

Twisted's own retries (the factories' retries=5, immediate reconnects, no
back-off, 4xx after MAIL/RCPT/DATA never retried) and its missing default
timeout are not used: see README.md, "The Twisted reference".

Exit status: 0 all delivered, 3 some failed, 2 usage error, 1 internal error.
"""
import bisect
import io
import json
import math
import os
import platform
import resource
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "golden", "workload"))
import reference as workload  # noqa: E402  (the Python port of workloads/summary.c)

PROG = "summary-twisted"
MODEL = "twisted"
FROM = "reports@mailbench.test"         # WORKLOAD_FROM
EHLO_NAME = "client.mailbench.test"     # what models/mailer/async_mailer.c says
MAIL_FROM = b"MAIL FROM:<" + FROM.encode("ascii") + b">"
RETRY_BASE_S, RETRY_CAP_S = 0.010, 1.0  # RETRY_POLICY_DEFAULT
M64 = (1 << 64) - 1

# ---------------------------------------------------------------- digest (lib/digest.c)

try:
    import xxhash   # python3-xxhash; main() says so when it is missing
except ImportError as _e:
    xxhash, XXHASH_ERROR = None, _e


def digest_hash(data):
    """XXH3-64, seed 0, of the message's bytes: digest_hash() (python3-xxhash)."""
    return xxhash.xxh3_64_intdigest(data)


# ---------------------------------------------------------------- retry (lib/retry.c)

class Backoff:
    """retry_backoff(): attempt a waits uniform [d/2, d], d = min(cap, base*2^a);
    the jitter comes from splitmix64 seeded like async_mailer (rng = rand64(seed))."""

    def __init__(self, seed):
        self.state = seed & M64
        self.state = self.rand64()

    def rand64(self):
        self.state = (self.state + 0x9e3779b97f4a7c15) & M64
        return workload.mix64(self.state)

    def delay(self, attempt):
        d = RETRY_BASE_S
        for _ in range(attempt):
            if d >= RETRY_CAP_S:
                break
            d *= 2.0
        d = min(d, RETRY_CAP_S)
        u = (self.rand64() >> 11) * (1.0 / 9007199254740992.0)
        return d / 2.0 + u * d / 2.0


# ---------------------------------------------------------------- arrivals (lib/arrivals.c)

class Arrivals:
    """The open-loop schedule and its queue, as lib/arrivals.c: unit i (a
    chain) is due at t_i, constant (start + i/rate) or Poisson (t_0 = start,
    t_i = t_{i-1} + an exponential gap of mean 1/rate drawn from splitmix64
    seeded by seed ^ "arrivals": the same schedule as the C models for the
    same seed).  admit(now) moves every unit due by now into the FIFO (one
    that finds max_queue waiting is shed); pop() takes the oldest."""

    def __init__(self, start, rate, poisson, seed, max_queue, end, limit):
        from collections import deque
        self.start, self.rate, self.poisson = start, rate, poisson
        self.rng = (seed ^ 0x6172726976616c73) & M64
        self.t = []                     # Poisson: t_i drawn in order and kept
        self.end, self.limit, self.max_queue = end, limit, max_queue
        self.admitted = self.shed = self.peak = 0
        self.fifo = deque()

    def due(self, i):
        if not self.poisson:
            return self.start + i / self.rate
        t = self.t
        while len(t) <= i:
            self.rng = (self.rng + 0x9e3779b97f4a7c15) & M64
            u = ((workload.mix64(self.rng) >> 11) + 0.5) * (1.0 / 9007199254740992.0)   # (0, 1)
            t.append(self.start if not t else t[-1] - math.log(u) / self.rate)
        return t[i]

    def admit(self, now_s):
        """Admit (or shed) every unit due by now; when the next is due (inf: over)."""
        while self.admitted < self.limit:
            t = self.due(self.admitted)
            if t >= self.end:
                return math.inf
            if t > now_s:
                return t
            if self.max_queue > 0 and len(self.fifo) >= self.max_queue:
                self.shed += 1
            else:
                self.fifo.append(self.admitted)
                self.peak = max(self.peak, len(self.fifo))
            self.admitted += 1
        return math.inf

    def pop(self):
        return self.fifo.popleft() if self.fifo else None


# ---------------------------------------------------------------- options (lib/cli.c)

class UsageError(Exception):
    pass


def parse_decimal(s):
    i = 0
    while i < len(s) and s[i].isdigit():
        i += 1
    j = i
    if j < len(s) and s[j] == ".":
        j += 1
        while j < len(s) and s[j].isdigit():
            j += 1
    if not any(c.isdigit() for c in s[:j]) or not s[:j].isascii():
        raise ValueError(s)
    return float(s[:j]), s[j:]


def parse_duration(s):
    v, unit = parse_decimal(s)
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}.get(unit)
    if scale is None:
        if unit == "" and v == 0.0:
            scale = 1.0
        else:
            raise ValueError(s)
    if v * scale > 86400.0 * 365:
        raise ValueError(s)
    return v * scale


def parse_size(s):
    k = 0
    while k < len(s) and "0" <= s[k] <= "9":
        k += 1
    if k == 0:
        raise ValueError(s)
    shift = {"": 0, "b": 0, "k": 10, "kb": 10, "m": 20, "mb": 20, "g": 30, "gb": 30}.get(s[k:].lower())
    if shift is None or int(s[:k]) > (1 << (62 - shift)):
        raise ValueError(s)
    return int(s[:k]) << shift


def parse_count(s):
    body, mul = (s[:-1], 1000) if s[-1:] in ("k", "K") else (s, 1)
    if not body or not (body.lstrip("-").isdigit() and body.lstrip("-").isascii()) or body.count("-") > (body[0] == "-"):
        raise ValueError(s)
    return int(body) * mul


def parse_prob(s):
    v, rest = parse_decimal(s)
    if rest == "%":
        v /= 100.0
    elif rest:
        raise ValueError(s)
    if not 0.0 <= v <= 1.0:
        raise ValueError(s)
    return v


def is_ipv4(host):
    """A dotted IPv4 address as inet_pton reads it (no leading zeros): units_is_ipv4."""
    try:
        socket.inet_pton(socket.AF_INET, host)
        return True
    except (OSError, ValueError):
        return False


def is_hostname(host):
    """An RFC 1123 host name no resolver would take for a number (units.c is_hostname)."""
    if not 0 < len(host) < 254 or not host.isascii():
        return False
    labels = host.split(".")
    for label in labels:
        if not 0 < len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
        if not all(c.isalnum() or c == "-" for c in label):
            return False
    if labels[-1].isdigit():            # RFC 1123 2.1, RFC 3696 2: a numeric TLD
        return False
    try:
        socket.inet_aton(host)          # "0x7f000001": getaddrinfo's numbers
        return False
    except (OSError, ValueError):
        return True


def parse_hostport(s):
    """HOST:PORT as units_parse_server: HOST an IPv4 address as written or a host
    name ("localhost" = 127.0.0.1), PORT 1..65535 in plain decimal."""
    host, colon, port = s.rpartition(":")
    if (not colon or not port.isascii() or not port.isdigit() or len(port) > 5
            or (port[0] == "0" and len(port) > 1) or not 1 <= int(port) <= 65535):
        raise ValueError(s)
    if host == "localhost":
        return "127.0.0.1", int(port)
    if not is_ipv4(host) and not is_hostname(host):
        raise ValueError(s)
    return host, int(port)


def resolve_server(o, from_flag):
    """A host name is looked up once, at start (IPv4), as lib/cli.c does."""
    host, port = parse_hostport(o["server"])
    if not is_ipv4(host):
        try:
            host = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
        except (OSError, UnicodeError) as e:
            why = getattr(e, "strerror", None) or str(e)
            if from_flag:
                raise UsageError(f"--server: cannot resolve '{host}' (in '{o['server']}'): {why}") from None
            raise UsageError(f"{o['profile']}: server = {o['server']}: cannot resolve '{host}': {why}") from None
    return host, port


SEC = 1_000_000
# name: (kind, min, max, metavar, help); kinds as in lib/cli.c.
MODEL_OPTS = {
    "server": ("hostport", 1, 65535, "HOST:PORT", "SMTP server: an IPv4 address or a host name, port 1..65535"),
    "emails": ("count", 1, 1_000_000_000, "N", "emails to send"),
    "concurrency": ("count", 1, 1_000_000, "C", "emails in flight at once (a DeferredSemaphore)"),
    "recipients": ("count", 1, 1000, "R", "recipients per email"),
    "events": ("count", 0, 10_000_000, "E", "application events summarised per email (CPU work)"),
    "body-bytes": ("size", 0, 256 << 20, "B", "pad each message to B bytes (0: the summary only)"),
    "per-session": ("count", 1, 1_000_000_000, "K", "emails per SMTP connection"),
    "chain": ("count", 1, 1_000_000_000, "K", "email i waits for email i-1 unless i % K == 0 (1: independent)"),
    "blocking": ("duration", 0, 60 * SEC, "DUR", "a blocking call of DUR per email, in the reactor thread"),
    "retries": ("count", 0, 1000, "N", "retries of a temporary failure"),
    "timeout": ("duration", 1, 86400 * SEC, "DUR", "timeout per connect+greeting and per message (addTimeout)"),
    "seed": ("count", 0, (1 << 63) - 1, "S", "seed of the workload"),
    "duration": ("duration", 0, 86400 * SEC, "DUR",
                 "steady-state window: start emails for DUR after the warm-up, then drain (0: send --emails)"),
    "warmup": ("duration", 0, 3600 * SEC, "DUR",
               "emails ending in the first DUR count for verification only, not in the figures"),
    "rate": ("count", 0, 10_000_000, "R",
             "open loop: start R emails/s, latency from the intended start (0: closed loop)"),
    "arrivals": ("choice", 0, 0, "constant|poisson",
                 "open loop: constant spacing 1/R, or Poisson arrivals of mean rate R (seeded)"),
    "max-queue": ("count", 0, 1_000_000_000, "N",
                  "open loop: at most N emails waiting to start; more are shed (0: unbounded)"),
    "quit-background": ("flag", 0, 0, None,
                        "free an email's slot when QUIT is sent (default: when the connection is closed)"),
}
CLI_OPTS = {
    "profile": ("path", 0, 0, "FILE", "read settings from FILE first (flags override it)"),
    "json": ("path", 0, 0, "FILE", "write the run's JSON to FILE (- for stdout)"),
    "progress": ("flag", 0, 0, None, "print progress on stderr (default: if a TTY)"),
    "start-at": ("count", 1_000_000_000_000, 99_999_999_999_999, "EPOCH_MS",
                 "start at this wall-clock time, Unix ms (several load generators start together)"),
    "help": ("help", 0, 0, None, "print this help and exit"),
}
SERVER_KEYS = {
    "latency": "duration", "jitter": "duration", "tempfail": "prob", "permfail": "prob",
    "drop": "prob", "stall": "prob", "latency-dist": ("fixed", "uniform", "exp"),
    "fault-stage": ("greeting", "mail", "rcpt", "data", "body"), "max-conns": "count",
    "max-size": "size", "max-rcpts": "count", "idle-timeout": "duration",
    "session-timeout": "duration",
}
UNSUPPORTED = {
    "threads": "runs one reactor thread; --threads sizes the pools of the threads and hybrid models",
    "cpu-per-email": "does not calibrate its CPU work (the C models do): give --events N instead "
                     "(Python costs ~20-40x the C models' CPU per event)",
}


def expected(kind, lo, hi, meta=None):
    if kind == "count":
        return f"a whole number from {lo} to {hi}"
    if kind == "size":
        return f"a size in bytes up to {hi >> 20}MB (e.g. 512, 100KB, 2MB)"
    if kind == "duration":
        f = lambda us: f"{us // SEC}s" if us >= SEC and us % SEC == 0 else ("0" if us == 0 else f"{us}us")  # noqa: E731
        return f"a duration from {f(lo)} to {f(hi)} with its unit (e.g. 250us, 10ms, 1.5s)"
    if kind == "choice":
        return f"one of {meta}"
    if kind == "hostport":
        return ("HOST:PORT with HOST an IPv4 address such as 127.0.0.1 or a host name "
                "(not empty, no IPv6) and PORT a number from 1 to 65535")
    return "a file name"


def convert(kind, lo, hi, value, meta=None):
    """The value of an option, or ValueError."""
    if kind == "choice":                # a whole word of "a|b" (lib/cli.c K_CHOICE)
        if 0 < len(value) < 16 and value in meta.split("|"):
            return value
        raise ValueError(value)
    if kind == "count":
        v = parse_count(value)
        if not lo <= v <= hi:
            raise ValueError(value)
        return v
    if kind == "size":
        v = parse_size(value)
        if v > hi:
            raise ValueError(value)
        return v
    if kind == "duration":
        v = parse_duration(value)
        if v * SEC < lo - 0.5 or v * SEC > hi + 0.5:
            raise ValueError(value)
        return v
    if kind == "hostport":
        parse_hostport(value)
        return value
    if kind == "flag" or not value:     # a flag has no value (a profile cannot set one)
        raise ValueError(value)
    return value


def defaults():
    return {"server": "127.0.0.1:2525", "emails": 0, "concurrency": 10, "recipients": 1,
            "events": 1000, "body-bytes": 0, "per-session": 1, "chain": 1, "blocking": 0.0,
            "retries": 5, "timeout": 30.0, "seed": 1, "rate": 0, "duration": 0.0, "warmup": 0.0,
            "arrivals": "constant", "max-queue": 0, "quit-background": False, "profile": None,
            "json": None, "progress": False, "start-at": 0}


def usage(f):
    f.write(f"Usage: {PROG} [OPTIONS]\n"
            "Send emails summarising synthetic application activity to an SMTP server\n"
            "and measure the run (model: twisted, the Python/Twisted reference).\n\nOptions:\n")
    for name, (kind, lo, hi, meta, text) in list(MODEL_OPTS.items()) + list(CLI_OPTS.items()):
        left = f"--{name}" + (f" {meta}" if meta else "")
        f.write(f"  {left:<22} {text}\n")
    f.write("\nDefaults: --server 127.0.0.1:2525 --emails 1000 (with --duration: no cap) --concurrency 10\n"
            "  --recipients 1 --events 1000 --body-bytes 0 --per-session 1 --chain 1 --blocking 0\n"
            "  --retries 5 --timeout 30s --seed 1 --rate 0 --arrivals constant --max-queue 0\n"
            "  --warmup 0 --duration 0\n"
            "\nThe SMTP exchange is the C models' (lib/smtp_client.c): EHLO, then MAIL, RCPT...\n"
            "and DATA in one write when the server offers PIPELINING, the text and its final\n"
            "\".\" in one write, no RSET after a delivered message, QUIT after the last one.\n"
            "An email holds its --concurrency slot until its connection is closed (the 221\n"
            "read), or until QUIT is sent with --quit-background; its latency ends at the\n"
            "reply to its final \".\".  --duration/--warmup: only emails ending in the window\n"
            "make the rate, the latency figures and the CPU per email (the process CPU\n"
            "over the window: Python's start-up and imports are not in it).\n"
            "--rate R (open loop): chain c is due at its intended start (lib/arrivals.c's\n"
            "schedule: constant spacing --chain/R, or Poisson gaps from the seed), waits in a\n"
            "FIFO until a slot is free (--max-queue N bounds it: an arrival finding N waiting\n"
            "is shed), email k of it not before the chain's start + k/R; latency from the\n"
            "intended start, service_p*_us from the actual start.\n"
            "\nNot supported here (exit 2): --threads (any value: one reactor thread), --cpu-per-email.\n"
            "A profile's server keys are accepted and ignored, as by the C models; flags\n"
            "override the profile's keys.\n"
            "Values: durations 250us, 10ms, 1.5s; sizes 512, 100KB, 2MB; counts 1000 or 10k.\n"
            "Each option may be given once (a second one is an error: \"--emails given twice\").\n"
            "--server HOST:PORT: HOST is an IPv4 address, read as written (no octal or\n"
            "short forms), or a host name, looked up once at start; the host must be named\n"
            "(\":2525\" is refused); no IPv6.  PORT is 1 to 65535, digits only.\n"
            "Exit status: 0 all delivered, 3 some failed, 2 usage error.\n")


def apply(o, name, value, where):
    """Stores --name value (from argv, where = "", or a profile, where =
    "FILE:LINE: ") or raises UsageError; the messages are lib/cli.c's."""
    if name in UNSUPPORTED:
        if where:
            raise UsageError(f"{where}'{name} = {value}' is not used by {PROG}, which {UNSUPPORTED[name]}")
        raise UsageError(f"--{name} {value}: not used by {PROG}, which {UNSUPPORTED[name]}")
    kind, lo, hi, meta, _ = MODEL_OPTS.get(name) or CLI_OPTS[name]
    try:
        o[name] = convert(kind, lo, hi, value, meta)
    except ValueError:
        if where:
            raise UsageError(f"{where}bad value '{value}' for '{name}': "
                             f"expected {expected(kind, lo, hi, meta)}") from None
        raise UsageError(f"--{name}: bad value '{value}': expected {expected(kind, lo, hi, meta)}") from None


def load_profile(o, path):
    """--profile FILE, as lib/cli.c's check_readable + lib/profile.c."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise UsageError(f"--profile: '{path}' is a directory") from None
    except OSError as e:
        raise UsageError(f"--profile: cannot read '{path}': {e.strerror}") from None
    if b"\0" in data:
        raise UsageError(f"{path}: not a text file")
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    seen = {}                               # key: the line it was first set on
    for n, line in enumerate(lines, 1):
        for i, c in enumerate(line):       # a '#' after whitespace starts a comment
            if c == "#" and (i == 0 or line[i - 1] in " \t"):
                line = line[:i]
                break
        line = line.strip(" \t\r")
        if not line:
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(" \t"), value.strip(" \t")
        where = f"{path}:{n}: "
        if not eq:
            raise UsageError(f"{where}expected 'key = value', got '{line}'")
        if not key:
            raise UsageError(f"{where}missing key before '='")
        if not value:
            raise UsageError(f"{where}missing value for '{key}'")
        if key in seen:
            raise UsageError(f"{where}'{key}' set twice (first on line {seen[key]})")
        seen[key] = n
        if key in SERVER_KEYS:
            k = SERVER_KEYS[key]
            ok = value in k if isinstance(k, tuple) else True
            try:
                if ok and not isinstance(k, tuple):
                    {"duration": parse_duration, "prob": parse_prob, "count": parse_count,
                     "size": parse_size}[k](value)
            except ValueError:
                ok = False
            if not ok:
                raise UsageError(f"{where}bad value '{value}' for '{key}'")
        elif key in CLI_OPTS:
            raise UsageError(f"{where}'{key}' is a command-line option, not allowed in a profile")
        elif key in MODEL_OPTS or key in UNSUPPORTED:
            apply(o, key, value, where)
        else:
            raise UsageError(f"{where}unknown key '{key}'")


def split_args(argv):
    """[(name, value)] from argv; value None for flags; 'help' ends parsing.
    Each option may appear once, as in lib/cli.c."""
    out, i, given = [], 0, {}
    while i < len(argv):
        a = argv[i]
        if a == "-h":
            return [("help", None)]
        if not a.startswith("--"):
            raise UsageError(f"unexpected argument '{a}'")
        name, eq, value = a[2:].partition("=")
        known = name in MODEL_OPTS or name in CLI_OPTS or name in UNSUPPORTED
        if not known:
            hint = (" (a server setting: put it in a profile or give it to smtp-mock)"
                    if name in SERVER_KEYS else "")
            raise UsageError(f"unknown option '{a}'{hint}")
        if name == "help":
            return [("help", None)]
        if (MODEL_OPTS.get(name) or CLI_OPTS.get(name) or ("",))[0] == "flag":
            if eq:
                raise UsageError(f"--{name} takes no value (got '{value}')")
            out.append((name, None))
        elif eq:
            out.append((name, value))
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            i += 1
            out.append((name, argv[i]))
        elif i + 1 < len(argv):
            raise UsageError(f"--{name}: missing value (got the option '{argv[i + 1]}')")
        else:
            raise UsageError(f"--{name}: missing value")
        value = out[-1][1]
        if name in given and value is None:
            raise UsageError(f"--{name} given twice")
        if name in given:
            raise UsageError(f"--{name} given twice ('{given[name]}' and '{value}')")
        given[name] = value
        i += 1
    return out


def parse_options(argv):
    """The options as a dict, None for --help (printed), or UsageError."""
    o = defaults()
    args = split_args(argv)
    if args and args[0][0] == "help":
        usage(sys.stdout)
        return None
    profiles = [v for k, v in args if k == "profile"]      # one at most (split_args)
    if profiles:
        if not profiles[0]:
            raise UsageError("--profile: bad file name ''")
        o["profile"] = profiles[0]
        load_profile(o, profiles[0])
    for name, value in args:
        if value is None:                   # a flag: --progress, --quit-background
            o[name] = True
        elif name != "profile":
            apply(o, name, value, "")
    o["host"], o["port"] = resolve_server(o, any(k == "server" for k, _ in args))
    if o["start-at"] and o["start-at"] > int(time.time() * 1000) + 3600 * 1000:
        raise UsageError(f"--start-at {o['start-at']} is more than an hour from now")
    if o["emails"] == 0:                    # not given: a run sized by time has no cap
        o["emails"] = 1_000_000_000 if o["duration"] > 0 else 1000
    check_writable(o["json"])
    return o


def check_writable(path):
    """--json is written at the end: refuse at the start a path that cannot be."""
    if not path or path == "-":
        return
    if os.path.isdir(path):
        raise UsageError(f"--json: '{path}' is a directory")
    target = path if os.path.exists(path) else (os.path.dirname(path) or ".")
    if not os.access(target, os.W_OK):
        raise UsageError(f"--json: cannot write '{path}': "
                         f"{'Permission denied' if os.path.exists(target) else 'No such file or directory'}")


# ---------------------------------------------------------------- measurement (lib/stats.c)

def now():
    return time.monotonic()


def proc_status(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


class Window:
    """The steady-state window (lib/stats.c's mb_window_*).  start() is called
    when the emails start: the window opens at start + warmup and closes at
    start + warmup + duration (never, without a duration).  Emails that end
    inside it make the figures; the process CPU time is read when it opens
    and when it closes (poll_at from the Mailer's timers at those instants
    and from every email's end), so Python's start-up, the imports and the
    drain after the window are not in the CPU per email."""

    def __init__(self):
        self.open_at, self.close_at = 0.0, math.inf
        self.state = 0                  # 0 not open yet, 1 open, 2 closed
        self.t_open = self.t_close = self.cpu_open = self.cpu_close = 0.0

    def start(self, o, start):
        self.open_at = start + o["warmup"]
        self.close_at = self.open_at + o["duration"] if o["duration"] > 0 else math.inf
        self.state = 0
        self.poll_at(now())

    def may_start(self):
        """May another email start?  False once the window has closed."""
        return self.close_at == math.inf or now() < self.close_at

    def snapshot(self, t):
        if self.state == 0:
            self.t_open, self.cpu_open = t, time.process_time()
        else:
            self.t_close, self.cpu_close = t, time.process_time()
        self.state += 1

    def poll_at(self, t):
        if self.state == 0 and t >= self.open_at or self.state == 1 and t >= self.close_at:
            self.snapshot(t)

    def next(self):
        """The next instant poll_at has work to do, or inf."""
        return self.open_at if self.state == 0 else self.close_at if self.state == 1 else math.inf

    def contains(self, t):
        return self.open_at <= t < self.close_at

    def finish(self, t):
        """(window_s, cpu_window_s): the window as run, closed now if still open;
        the CPU per second between the snapshots times the window's length."""
        self.poll_at(t)
        if self.state == 0:
            self.snapshot(t)            # ended before the warm-up did: an empty window
        if self.state == 1:
            self.snapshot(t)            # ran out of emails before the window closed
        end = min(t, self.close_at)
        window_s = end - self.open_at if end > self.open_at else 0.0
        span = self.t_close - self.t_open
        return window_s, (self.cpu_close - self.cpu_open) / span * window_s if span > 0 else 0.0


class RunStats:
    """mb_run_stats: counters, exact latency samples (emails ending in the
    window only), failure reasons; in the open loop also the service times
    (from the actual start), the start lateness and the schedule's counts."""

    def __init__(self, emails):
        self.emails, self.delivered, self.failed, self.retries = emails, 0, 0, 0
        self.connections, self.digest = 0, 0
        self.latencies_us = []          # from the intended start (open loop) or the start
        self.service_us = []            # from the actual start (mb_run_service)
        self.lateness_us = []           # actual start - intended, starts in the window
        self.behind = 0                 # emails started more than 1 ms late (all)
        self.scheduled = self.shed = self.pending = self.peak_queue = 0     # mailer_arrivals_end
        self.reasons = {}
        self.threads_peak = 0
        self.window = Window()
        self.window_delivered = self.window_failed = 0
        self.window_first = self.window_last = 0.0  # first and last delivery in the window
        self.sample_threads()
        self.start_s = now()

    def sample_threads(self):
        self.threads_peak = max(self.threads_peak, proc_status("Threads"))

    def record_delivered(self, hash_, latency_us):
        t = now()
        self.window.poll_at(t)
        self.delivered += 1
        self.digest = (self.digest + hash_) & M64
        if self.window.contains(t):
            self.window_delivered += 1
            if self.window_first == 0:
                self.window_first = t
            self.window_last = t
            self.latencies_us.append(latency_us)

    def record_service(self, service_us):
        """mb_run_service: a delivered email's time from its actual start."""
        if self.window.contains(now()):
            self.service_us.append(service_us)

    def record_started(self, intended, actual):
        """mb_run_started (open loop): how late the email started."""
        late = actual - intended
        if self.window.contains(actual):        # the warm-up's start-up is not the schedule's
            self.lateness_us.append(int(late * 1e6) if late > 0 else 0)
        if late > 1e-3:
            self.behind += 1

    def record_failed(self, reason):
        t = now()
        self.window.poll_at(t)
        self.failed += 1
        if self.window.contains(t):
            self.window_failed += 1
        reason = reason[:79]
        if reason not in self.reasons and len(self.reasons) >= 31:
            reason = "other"
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def per_second(self):
        """The rate in the window: deliveries between its first and last over
        that span (10 or more), else over the window's length (stats.c)."""
        span = self.window_last - self.window_first
        if self.window_delivered >= 10 and span > 0:
            return (self.window_delivered - 1) / span
        return self.window_delivered / self.window_s if self.window_s > 0 else 0.0

    def finish(self):
        t = now()
        self.wall_s = t - self.start_s
        self.window_s, self.cpu_window_s = self.window.finish(t)
        if self.window.close_at < math.inf:     # sized by time: the emails it got to
            self.emails = self.delivered + self.failed
        self.sample_threads()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu_user_s, self.cpu_sys_s = ru.ru_utime, ru.ru_stime
        hwm = proc_status("VmHWM")
        self.max_rss_kb = hwm if hwm >= 0 else ru.ru_maxrss
        self.ctx_voluntary, self.ctx_involuntary = ru.ru_nvcsw, ru.ru_nivcsw


def percentile(sorted_us, q):
    """Nearest rank over the sorted samples: the smallest with >= q% at or below it."""
    n = len(sorted_us)
    if n == 0:
        return 0
    rank = max(1, -(-int(round(q * 10)) * n // 1000))     # ceil(n * q / 100), q in 0.1 steps
    return sorted_us[min(rank, n) - 1]


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD"],
                               capture_output=True, timeout=10).returncode != 0
        return (rev or "unknown") + ("-dirty" if rev and dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def share_above(sorted_us, us):
    """The share of the samples above us (mb_hist_share_above, exact)."""
    n = len(sorted_us)
    return (n - bisect.bisect_right(sorted_us, us)) / n if n else 0.0


def hist_json(samples):
    """The samples as lib/stats.c's histogram JSON (mb_hist_fprint_json: the
    same log-linear buckets, exact below 256 us, 128 per power of two), so
    that scripts/merge-runs can merge this model's runs like the C models'."""
    counts = {}
    for v in samples:
        v = int(v)
        if v < 256:
            i = v
        elif v > 0xFFFFFFFF:
            i = 256 + 24 * 128 - 1
        else:
            e = v.bit_length() - 1
            i = 256 + (e - 8) * 128 + ((v >> (e - 7)) & 127)
        counts[i] = counts.get(i, 0) + 1
    ints = [int(v) for v in samples]
    return {"scheme": "mb-loglinear/1", "linear": 256, "sub": 128, "count": len(ints),
            "sum": sum(ints), "min": min(ints) if ints else 0, "max": max(ints) if ints else 0,
            "overflow": sum(1 for v in ints if v > 0xFFFFFFFF),
            "buckets": [[i, counts[i]] for i in sorted(counts)]}


def run_json(o, s):
    import twisted
    lat, svc, late = sorted(s.latencies_us), sorted(s.service_us), sorted(s.lateness_us)
    u = os.uname()
    return {
        "schema": "mailbench.run/1", "model": MODEL,
        "params": {"server": o["server"], "emails": o["emails"], "concurrency": o["concurrency"],
                   "threads": 1, "recipients": o["recipients"], "events": o["events"],
                   "body_bytes": o["body-bytes"], "per_session": o["per-session"],
                   "chain": o["chain"], "blocking_us": round(o["blocking"] * 1e6),
                   "retries": o["retries"], "timeout_s": o["timeout"], "seed": o["seed"],
                   "rate": o["rate"], "warmup_s": o["warmup"], "duration_s": o["duration"],
                   "quit_background": o["quit-background"], "arrivals": o["arrivals"],
                   "max_queue": o["max-queue"], "prebuild": False, "reactors": 1,
                   "profile": o["profile"]},
        "emails": s.emails, "delivered": s.delivered, "failed": s.failed, "retries": s.retries,
        "failure_reasons": s.reasons, "connections": s.connections,
        "wall_s": round(s.wall_s, 6),
        "emails_per_s": round(s.per_second(), 3),
        "p50_us": percentile(lat, 50), "p90_us": percentile(lat, 90),
        "p99_us": percentile(lat, 99), "p999_us": percentile(lat, 99.9),
        "max_us": lat[-1] if lat else 0,
        "mean_us": round(sum(lat) / len(lat), 1) if lat else 0.0,
        "latency_mode": "open" if o["rate"] > 0 else "closed",
        "cpu_user_s": round(s.cpu_user_s, 6), "cpu_sys_s": round(s.cpu_sys_s, 6),
        "max_rss_kb": s.max_rss_kb, "ctx_voluntary": s.ctx_voluntary,
        "ctx_involuntary": s.ctx_involuntary, "threads_peak": s.threads_peak,
        "digest": f"{s.digest:016x}",
        "window_s": round(s.window_s, 6), "window_delivered": s.window_delivered,
        "window_failed": s.window_failed, "cpu_window_s": round(s.cpu_window_s, 6),
        "cpu_per_email_us": round(s.cpu_window_s * 1e6 / (s.window_delivered + s.window_failed), 3)
        if s.window_delivered + s.window_failed else 0.0,
        "service_p50_us": percentile(svc, 50), "service_p99_us": percentile(svc, 99),
        "service_p999_us": percentile(svc, 99.9),
        "scheduled": s.scheduled, "shed": s.shed, "pending": s.pending, "peak_queue": s.peak_queue,
        "behind_schedule": s.behind, "start_lateness_p99_us": percentile(late, 99),
        "max_lag_us": late[-1] if late else 0,
        "over_10x_median_share": round(share_above(lat, 10 * percentile(lat, 50)), 6),
        # No maybe_delivered / maybe_digest / maybe_hashes: twisted.mail does
        # not say whether a lost connection came after the final "." (README).
        "latency_hist": hist_json(lat), "service_hist": hist_json(svc),
        "lateness_hist": hist_json(late),
        "git_rev": git_rev(),
        "machine": {"cores": os.cpu_count(), "kernel": f"{u.sysname} {u.release}",
                    "compiler": f"CPython {platform.python_version()}, Twisted {twisted.__version__}"},
    }


def write_json(obj, path):
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise SystemExit(f"{PROG}: cannot write {path}: {e.strerror}") from None


def fmt_us(us):
    if us == 0:
        return "0"
    if us < 1000:
        return f"{us}us"
    return f"{us / 1000:.4g}ms" if us < SEC else f"{us / SEC:.4g}s"


def print_summary(o, s):
    lat = sorted(s.latencies_us)
    rate = s.per_second()
    mode = "open" if o["rate"] > 0 else "closed"
    sys.stderr.write(f"{PROG}: {s.delivered}/{s.emails} delivered, {s.failed} failed, "
                     f"{s.retries} retries, {s.wall_s:.3f}s, {rate:.1f} emails/s\n")
    sys.stderr.write(f"{PROG}: latency p50 {fmt_us(percentile(lat, 50))} p99 {fmt_us(percentile(lat, 99))} "
                     f"max {fmt_us(lat[-1] if lat else 0)} ({mode} loop); cpu {s.cpu_user_s:.2f}s user "
                     f"{s.cpu_sys_s:.2f}s sys; {s.max_rss_kb / 1024:.1f} MB RSS; {s.threads_peak} threads\n")


# ---------------------------------------------------------------- the SMTP session

def build_classes():
    """The Twisted classes, defined once Twisted is imported (so --help and
    usage errors work, and say so, without it)."""
    from collections import deque
    from twisted.internet import error, protocol
    from twisted.internet.defer import Deferred, succeed
    from twisted.mail import smtp

    SUCCESS = smtp.SUCCESS
    STAGES = {b"EHLO": "EHLO", b"HELO": "EHLO", b"MAIL": "MAIL", b"RCPT": "RCPT",
              b"DATA": "DATA", b"RSET": "RSET", b"QUIT": "QUIT"}   # smtp_client_stage_name

    class SessionLost(error.ConnectionLost):
        """The connection ended while a reply was awaited; `stage` names the
        command it was awaited for, in the C client's words ("RCPT:
        connection lost after RCPT, before reply"); `reason` is Twisted's."""

        def __init__(self, stage, reason):
            what = "before greeting" if stage == "greeting" else f"after {stage}, before reply"
            error.ConnectionLost.__init__(self, f"{stage}: connection lost {what}")
            self.stage, self.reason = stage, reason

    class Session(smtp.ESMTPClient):
        """One SMTP connection carrying up to --per-session emails, with the
        C client's exchange (lib/smtp_client.c, cfg.pipelining = true).

        ESMTPClient's states do the greeting, EHLO (HELO fallback) and, when
        the server does not offer PIPELINING, the lock-step MAIL, RCPT...,
        DATA (smtpState_to, smtpState_toOrData).  Overridden:
          * esmtpState_serverConfig notes PIPELINING and SIZE;
          * smtpState_from starts a message: with PIPELINING, [RSET] MAIL,
            RCPT... and DATA in one write, their replies taken in order by
            smtpState_pipelined; it parks when no email is waiting (send()
            resumes it) and sends QUIT once the session is released;
          * smtpState_data writes the text and its final "." in one write
            (stock Twisted streams it with a FileSender and writes "." alone);
          * smtpState_msgSent ends a message without stock Twisted's RSET:
            RSET is sent, in front of the next MAIL, only after a failed
            transaction the server had accepted MAIL for (as the C client);
          * a 421 ends the session without QUIT (the server is closing).
        The Deferreds: `ready` fires with the session once EHLO is answered;
        each send() fires when the reply to "." is 2xx, or fails with
        SMTPDeliveryError (the server's code) or the reason the connection
        was lost; each quit() fires once the connection is closed."""
        requireAuthentication = False       # as smtp.sendmail() sets them
        requireTransportSecurity = False
        heloFallback = True

        def __init__(self, factory):
            smtp.ESMTPClient.__init__(self, None, None, EHLO_NAME, logsize=8)
            self.factory = factory
            self.ready = factory.ready      # fired by smtpState_from the first time
            self.current = None             # (email, Deferred) in transaction
            self.waiting = None             # (email, Deferred) given while a message ends
            self.parked = False             # in smtpState_from with nothing to send
            self.closing = False            # QUIT at the next chance; never reused
            self.lost = False               # connectionLost seen
            self.gone = []                  # quit()'s Deferreds, fired by connectionLost
            self.sent = 0                   # transactions ended on this connection
            self.stage = "greeting"         # the reply awaited (lock-step): the last command sent
            self.pipelining = False         # the server offers PIPELINING
            self.size_limit = 0             # its SIZE (0: none): MAIL carries SIZE=n
            self.pending_rset = False       # RSET goes out in front of the next MAIL
            self.due = deque()              # pipelined commands whose replies are awaited
            self.mail_ok = False            # the server accepted this transaction's MAIL
            self.failure = None             # (code, resp): the transaction's first failure
            self.mail_line = None           # lock-step: MAIL, sent once RSET is answered

        def connectionMade(self):
            # One write per flight is not enough: without TCP_NODELAY a
            # write after an unacknowledged one waits for the delayed ACK.
            self.transport.setTcpNoDelay(True)
            self.factory.run.live += 1
            smtp.ESMTPClient.connectionMade(self)

        # -- the pool's view
        def usable(self):
            return self.parked or (self.current is None and self.waiting is None
                                   and not self.closing and not self.lost and self.ready is None)

        def send(self, email):
            d = Deferred(lambda _: self.abort())
            self.waiting = (email, d)
            if self.parked:
                self.parked = False
                self.smtpState_from(250, b"")
            return d

        def quit(self):
            """QUIT after the message in progress (if any).  The Deferred
            fires once the connection is closed: the 221 read and the socket
            closed, or the connection lost; cancelling it drops the connection."""
            self.closing = True
            if self.lost:
                return succeed(None)
            d = Deferred(lambda _: self.abort())
            self.gone.append(d)
            if self.parked:
                self.parked = False
                self._disconnectFromServer()
            return d

        def abort(self):
            self.closing = True
            if not self.lost:
                self.transport.abortConnection()

        # -- writing
        def sendLine(self, line):
            self.stage = STAGES.get(line[:4], "end of data")
            smtp.ESMTPClient.sendLine(self, line)

        def send_group(self, lines):
            """Several commands in one write (RFC 2920: DATA last)."""
            if self.debug:
                for line in lines:
                    self.log.append(b">>> " + line)
            self.transport.write(b"\r\n".join(lines) + b"\r\n")

        def where(self):
            return self.due[0] if self.due else self.stage

        def fail(self, code, resp):
            if self.failure is None:        # the first failure is the reason
                self.failure = (code, resp)

        # -- ESMTPClient's states
        def esmtpState_serverConfig(self, code, resp):
            for line in resp.splitlines()[1:]:     # the keywords after the greeting line
                word, _, arg = line.partition(b" ")
                word = word.upper()
                if word == b"PIPELINING":
                    self.pipelining = True
                elif word == b"SIZE":       # "SIZE" [SP 1*DIGIT] in 64 bits, else no limit
                    self.size_limit = int(arg) if arg.isdigit() and int(arg) < 1 << 64 else 0
            smtp.ESMTPClient.esmtpState_serverConfig(self, code, resp)

        def smtpState_from(self, code, resp):
            if self.ready is not None:      # EHLO answered: the session is open
                d, self.ready = self.ready, None
                self.parked = True
                d.callback(self)
            elif self.closing:
                self._disconnectFromServer()   # QUIT
            elif self.waiting is not None:
                self.start_message()
            else:
                self.parked = True

        def start_message(self):
            self.current, self.waiting = self.waiting, None
            email = self.current[0]
            self._from = FROM
            self.toAddressesResult, self.successAddresses = [], []
            self.failure, self.mail_ok = None, False
            if self.size_limit and email.size > self.size_limit:
                self.fail(552, (f"5.3.4 message size {email.size} exceeds the server's SIZE "
                                f"limit {self.size_limit} (not sent)").encode("ascii"))
                self._from = None
                self.sentMail(552, self.failure[1], 0, [], self.log)
                self.smtpState_from(552, b"")
                return
            mail = MAIL_FROM + (b" SIZE=%d" % email.size if self.size_limit else b"")
            if self.pipelining:
                lines = [b"RSET"] if self.pending_rset else []
                lines += [mail] + email.rcpt_lines + [b"DATA"]
                self.due.extend(line[:4].decode("ascii") for line in lines)
                self.pending_rset = False
                self._expected = range(0, 1000)    # every reply to smtpState_pipelined
                self._okresponse = self.smtpState_pipelined
                self.send_group(lines)
            elif self.pending_rset:         # lock-step: RSET, then MAIL
                self.pending_rset = False
                self.mail_line = mail
                self._expected = range(0, 1000)
                self._okresponse = self.smtpState_rset
                self.sendLine(b"RSET")
            else:
                self.send_mail(mail)

        def smtpState_rset(self, code, resp):
            if code == 421:                 # the server is closing the session
                self.fail(code, resp)
                return self.smtpState_msgSent(code, resp)
            self.send_mail(self.mail_line)  # any other reply is ignored (RFC 5321 4.1.1.5)

        def send_mail(self, mail):
            self._expected = [250]
            self._okresponse = self.smtpState_to
            self._failresponse = self.smtpTransferFailed
            self.sendLine(mail)

        def smtpState_to(self, code, resp):
            self.mail_ok = True
            return smtp.ESMTPClient.smtpState_to(self, code, resp)

        def smtpState_pipelined(self, code, resp):
            """The replies to [RSET] MAIL, RCPT... and DATA, in order."""
            what = self.due.popleft()
            if code == 421:                 # the server is closing the session
                self.due.clear()
                self.fail(code, resp)
                return self.smtpState_msgSent(code, resp)
            if what == "MAIL":
                self.mail_ok = code in SUCCESS
                if not self.mail_ok:
                    self.fail(code, resp)
            elif what == "RCPT":
                addr = self.current[0].rcpt[len(self.toAddressesResult)]
                self.toAddressesResult.append((addr, code, resp))
                if code in SUCCESS:
                    self.successAddresses.append(addr)
            elif what == "DATA":
                if not self.successAddresses and self.toAddressesResult:
                    self.fail(*self.toAddressesResult[-1][1:])    # every RCPT refused
                if code == 354 and self.failure is not None:
                    # DATA accepted without recipients: end the empty
                    # message (RFC 2920 3.1), whatever the server says of it.
                    self._okresponse = self.smtpState_msgSent
                    self.stage = "end of data"
                    self.send_group([b"."])
                elif code == 354:
                    self.smtpState_data(code, resp)
                else:
                    self.fail(code, resp)
                    self.smtpState_msgSent(code, resp)
            # RSET: its reply is ignored (RFC 5321 4.1.1.5)

        def smtpState_data(self, code, resp):
            chunk = self.transformChunk(self.getMailData().read())   # "\n" -> CRLF, dot-stuffed
            self.stage = "end of data"
            self._expected = SUCCESS
            self._okresponse = self.smtpState_msgSent
            self._failresponse = self.smtpTransferFailed
            if self.debug:
                self.log.append(b">>> .")
            self.transport.write(chunk + (b".\r\n" if chunk.endswith(b"\r\n") else b"\r\n.\r\n"))

        def smtpState_msgSent(self, code, resp):
            if self._from is not None:
                if self.failure is None and code not in SUCCESS:
                    refused = [a for a in self.toAddressesResult if a[1] not in SUCCESS]
                    if refused and not self.successAddresses:
                        self.fail(refused[-1][1], refused[-1][2])
                    else:
                        self.fail(code, resp)
                self.pending_rset = self.failure is not None and self.mail_ok
                self.closing = self.closing or code == 421     # not back to the pool
                self._from = None
                fcode, fresp = self.failure or (code, resp)
                self.sentMail(fcode, fresp, len(self.successAddresses), self.toAddressesResult, self.log)
            self.toAddressesResult = []
            if code == 421:                 # no QUIT: close, as the server does
                self.closing = True
                self.transport.loseConnection()
            else:
                self.smtpState_from(code, resp)

        def smtpTransferFailed(self, code, resp):
            if code == 421:
                self.fail(code, resp)
            smtp.ESMTPClient.smtpTransferFailed(self, code, resp)

        # -- the message hooks
        def getMailFrom(self):
            return FROM

        def getMailTo(self):
            return self.current[0].rcpt

        def getMailData(self):
            return io.BytesIO(self.current[0].wire)

        def sentMail(self, code, resp, numOk, addresses, log):
            (email, d), self.current = self.current, None
            self.sent += 1
            if code in SUCCESS:
                d.callback(email)
            else:
                d.errback(smtp.SMTPDeliveryError(code, resp, None, addresses))

        def sendError(self, exc):
            self.closing = True
            if getattr(exc, "code", None) == 421:
                self.smtpState_disconnect(-1, None)     # the server is closing: no QUIT
            else:
                smtp.ESMTPClient.sendError(self, exc)   # QUIT, or drop the connection
            self.fail_pending(exc)

        def connectionLost(self, reason):
            smtp.ESMTPClient.connectionLost(self, reason)
            self.lost = self.closing = True
            self.parked = False
            self.factory.run.connection_closed()
            self.fail_pending(SessionLost(self.where(), reason))
            gone, self.gone = self.gone, []
            for d in gone:
                if not d.called:
                    d.callback(None)

        def fail_pending(self, why):
            for pending in (self.ready, self.current and self.current[1], self.waiting and self.waiting[1]):
                if pending is not None and not pending.called:
                    pending.errback(why)
            self.ready = self.current = self.waiting = None

    class SessionFactory(protocol.ClientFactory):
        """One connection attempt; `ready` is its Deferred (see open_session)."""

        def __init__(self, run, ready):
            self.run, self.ready, self.session = run, ready, None
            self.cancelled = False      # the canceller ran: CancelledError wins

        def buildProtocol(self, addr):
            self.session = Session(self)
            return self.session

        def clientConnectionFailed(self, connector, reason):
            if not self.cancelled and not self.ready.called:
                self.ready.errback(reason)

    def open_session(run):
        """A Deferred firing with a greeted Session; cancelling it aborts the
        connection (or the connect), as smtp.sendmail()'s canceller does."""
        def cancel(_):
            factory.cancelled = True
            if factory.session is not None:
                factory.session.abort()
            elif connector.state == "connecting":
                connector.stopConnecting()
        ready = Deferred(cancel)
        factory = SessionFactory(run, ready)
        connector = run.reactor.connectTCP(run.o["host"], run.o["port"], factory,
                                           timeout=run.o["timeout"])
        return ready

    return smtp, error, open_session


# ---------------------------------------------------------------- the run (models/mailer/async_mailer.c)

class Email:
    """One built email: what the transaction needs and what the stats record."""
    __slots__ = ("index", "rcpt", "rcpt_lines", "wire", "size", "hash")


class Job:
    """One email in progress (struct async_job).  t0: its intended start (the
    open loop's schedule; in the closed loop, its start); t_started: when it
    started."""
    __slots__ = ("index", "t0", "t_started", "t_reply", "attempt", "email", "session")

    def __init__(self, index):
        self.index, self.t0, self.t_started, self.t_reply, self.attempt = index, 0.0, 0.0, 0.0, 0
        self.email = self.session = None


class Mailer:
    def __init__(self, o, reactor, stats):
        from twisted.internet import defer, task
        self.defer, self.task = defer, task
        self.smtp, self.error, self.open_session = build_classes()
        self.o, self.reactor, self.stats = o, reactor, stats
        self.rcpt = [f"ops+{i}@example.test".encode("ascii") for i in range(o["recipients"])]
        self.rcpt_lines = [b"RCPT TO:<" + r + b">" for r in self.rcpt]
        self.backoff = Backoff(o["seed"])
        self.sem = defer.DeferredSemaphore(o["concurrency"])
        self.nchains = -(-o["emails"] // o["chain"])
        self.next_chain = self.chains_done = self.started = self.done = 0
        self.idle = []          # sessions waiting for an email
        self.live = 0           # connections open
        self.finished = False   # every chain has ended
        self.window_call = None
        self.arr = None         # open loop (--rate): the schedule and its queue
        self.arrive_call = None
        self.arrivals_over = False  # nothing more will be due

    # -- sessions
    def get_session(self):
        while self.idle:
            s = self.idle.pop()
            if s.usable():
                return self.defer.succeed(s)
            s.quit()            # the server closed it while it waited
        d = self.open_session(self)
        d.addTimeout(self.o["timeout"], self.reactor)
        d.addCallback(self.count_connection)
        return d

    def count_connection(self, session):
        self.stats.connections += 1
        return session

    def put_session(self, s):
        """Back to the pool if it may carry another email, else QUIT (or drop
        it if it is in no state to say goodbye).  Returns the QUIT's Deferred
        (fires once the connection is gone), or None."""
        more = self.done + 1 < self.o["emails"]     # an email after this one
        if s.usable() and s.sent < self.o["per-session"] and more:
            self.idle.append(s)
            return None
        if s.usable():
            return s.quit()
        s.abort()
        return None

    def connection_closed(self):
        self.live -= 1
        if self.finished and self.live == 0 and self.reactor.running:
            self.reactor.stop()

    # -- one attempt, and the retries
    def attempt(self, job):
        d = self.get_session()
        d.addCallback(self.send_on_session, job)
        d.addBoth(self.release_session, job)
        d.addErrback(self.maybe_retry, job)
        return d

    def send_on_session(self, session, job):
        job.session = session
        d = session.send(job.email)
        d.addTimeout(self.o["timeout"], self.reactor)
        d.addBoth(self.stamp_reply, job)
        return d

    def stamp_reply(self, result, job):
        """The message's reply is in: the email's latency ends here, whatever
        the teardown that follows."""
        job.t_reply = now()
        return result

    def release_session(self, result, job):
        """Give the session back.  When it is quit, the email keeps its
        concurrency slot until the connection is gone, as the blocking models
        do (they read the 221 before their next email); --quit-background
        frees the slot at once and reads the 221 in the background."""
        if job.session is None:
            return result
        s, job.session = job.session, None
        gone = self.put_session(s)
        if gone is None or self.o["quit-background"]:
            return result
        gone.addTimeout(self.o["timeout"], self.reactor)    # a server that never answers QUIT
        gone.addBoth(lambda _: result)
        return gone

    def permanent(self, failure):
        code = getattr(failure.value, "code", -1)
        return isinstance(code, int) and 500 <= code < 600

    def maybe_retry(self, failure, job):
        if self.permanent(failure) or job.attempt >= self.o["retries"]:
            return failure
        delay = self.backoff.delay(job.attempt)
        job.attempt += 1
        self.stats.retries += 1
        return self.task.deferLater(self.reactor, delay, self.attempt, job)

    # -- one email
    def build(self, job):
        o = self.o
        data = workload.render(o["seed"], job.index, o["events"], o["recipients"], o["body-bytes"], o["chain"])
        e = Email()
        e.index, e.rcpt, e.rcpt_lines, e.hash = job.index, self.rcpt, self.rcpt_lines, digest_hash(data)
        e.size = len(data)                      # MAIL's SIZE=, as the C client counts it
        e.wire = data.replace(b"\r\n", b"\n")   # Twisted's sender turns "\n" into CRLF
        job.email = e
        return job

    def send_email(self, job):
        return self.attempt(job)

    def delivered(self, result, job):
        lat, svc = job.t_reply - job.t0, job.t_reply - job.t_started
        self.stats.record_delivered(job.email.hash, int(lat * 1e6) if lat > 0 else 0)
        self.stats.record_service(int(svc * 1e6) if svc > 0 else 0)
        return result

    def failed(self, failure, job):
        self.stats.record_failed(self.reason(failure))
        return None             # handled: the run goes on

    def email_end(self, result, job):
        self.done += 1
        return None

    def due(self, index):
        """Open loop: email k of chain c is due at the chain's due time + k/R
        (mailer_email_due)."""
        c, k = divmod(index, self.o["chain"])
        return self.arr.due(c) + k / self.o["rate"]

    def send_one(self, _, index):
        """One email, as callbacks on one Deferred; fires when it has ended.
        None once the window has closed (--duration): the chain stops.  In the
        open loop it starts no earlier than its intended start."""
        if self.stop_starting():
            return None
        job = Job(index)
        if self.arr is not None:
            job.t0 = self.due(index)
            wait = job.t0 - now()
            if wait > 0:
                return self.task.deferLater(self.reactor, wait, self.email_go, job)
        return self.email_go(job)

    def email_go(self, job):
        self.started += 1
        job.t_started = now()
        if self.arr is not None:
            self.stats.record_started(job.t0, job.t_started)
        else:
            job.t0 = job.t_started
        if self.o["blocking"] > 0:
            time.sleep(self.o["blocking"])      # stalls every connection: the point
        d = self.defer.maybeDeferred(self.build, job)
        d.addCallback(self.send_email)
        d.addCallbacks(self.delivered, self.failed, callbackArgs=(job,), errbackArgs=(job,))
        d.addBoth(self.email_end, job)
        return d

    # -- chains and the semaphore
    def stop_starting(self):
        """The steady-state window has closed (--duration): nothing new starts."""
        if self.stats.window.may_start():
            return False
        self.nchains = self.next_chain
        return True

    def run_chain(self, first, end):
        """Emails first..end-1, each started when the previous one has ended."""
        d = self.defer.succeed(None)
        for i in range(first, end):
            d.addCallback(self.send_one, i)
        return d

    def start_chain(self):
        """Closed loop: the next chain in order (it waits for a token)."""
        if self.next_chain >= self.nchains or self.stop_starting():
            return
        self.run_chain_c(self.next_chain)

    def run_chain_c(self, c):
        """Chain c takes a token (the open loop calls it only when one is free)
        and sends its emails in order."""
        self.next_chain += 1
        first = c * self.o["chain"]
        d = self.sem.run(self.run_chain, first, min(first + self.o["chain"], self.o["emails"]))
        d.addBoth(self.chain_end)

    def pump_queue(self):
        """Open loop: start waiting chains while a slot is free."""
        while self.sem.tokens > 0 and not self.stop_starting():
            c = self.arr.pop()
            if c is None:
                break
            self.run_chain_c(c)
        # No more arrivals and nothing waiting (or no more starts): the
        # chains that will run are those started.
        if self.arrivals_over and (not self.arr.fifo or not self.stats.window.may_start()):
            self.nchains = self.next_chain

    def arrive(self):
        """Open loop: admit the chains that are due (a full queue sheds them),
        start what the free slots allow, come back when the next one is due."""
        self.arrive_call = None
        t = now()
        nxt = self.arr.admit(t)
        self.arrivals_over = nxt == math.inf
        self.pump_queue()
        if not self.arrivals_over and not self.finished:
            self.arrive_call = self.reactor.callLater(max(nxt - t, 0), self.arrive)
        self.run_over_check()

    def chain_end(self, result):
        self.chains_done += 1
        if self.arr is not None:
            self.pump_queue()
        else:
            self.start_chain()
        self.run_over_check()
        return None

    def run_over_check(self):
        """Once every chain that will run has ended: QUIT the idle sessions,
        stop the timers, and stop the reactor once the connections are gone."""
        if self.finished or self.chains_done < self.nchains:
            return
        self.finished = True
        for call in (self.window_call, self.arrive_call):
            if call is not None and call.active():
                call.cancel()
        self.window_call = self.arrive_call = None
        while self.idle:
            self.idle.pop().quit()
        if self.live == 0:
            self.reactor.stop()
        else:   # a server that never answers QUIT must not keep us here
            self.reactor.callLater(self.o["timeout"], self.reactor.stop)

    def arrivals_end(self):
        """mailer_arrivals_end: the schedule's counts, in emails (a chain
        counts its emails)."""
        if self.arr is None:
            return
        k, s = self.o["chain"], self.stats
        s.scheduled = min(self.arr.admitted * k, self.o["emails"])
        s.shed = self.arr.shed * k
        s.pending = len(self.arr.fifo) * k
        s.peak_queue = self.arr.peak

    def window_due(self):
        """The window's CPU snapshots, taken on time."""
        self.window_call = None
        w = self.stats.window
        w.poll_at(now())
        if w.next() < math.inf and not self.finished:
            self.window_call = self.reactor.callLater(max(w.next() - now(), 0), self.window_due)

    def start(self):
        self.stats.start_s = now()      # the run's clock: the reactor is up, the imports done
        self.stats.window.start(self.o, self.stats.start_s)
        self.window_due()
        if self.o["rate"] > 0:
            self.arr = Arrivals(self.stats.start_s, self.o["rate"] / self.o["chain"],
                                self.o["arrivals"] == "poisson", self.o["seed"], self.o["max-queue"],
                                self.stats.window.close_at, self.nchains)
            self.nchains = math.inf     # unknown until the arrivals are over
            self.arrive()
            return
        for _ in range(min(self.o["concurrency"], self.nchains)):
            self.start_chain()

    # -- failure reasons, in the C models' words where they have one
    def reason(self, failure):
        v, smtp, error = failure.value, self.smtp, self.error
        if isinstance(v, smtp.SMTPClientError) and v.code > 0:
            resp = v.resp.decode("utf-8", "replace") if isinstance(v.resp, bytes) else str(v.resp)
            return f"{v.code} {resp.splitlines()[0] if resp else ''}".rstrip()
        if isinstance(v, self.defer.TimeoutError):
            return f"Deferred timed out after {self.o['timeout']:g} seconds"
        if isinstance(v, error.ConnectionRefusedError):
            return "connect: Connection refused"
        if isinstance(v, (error.ConnectionDone, error.ConnectionLost)):
            return str(v.args[0]) if v.args else "connection lost"
        if isinstance(v, smtp.SMTPClientError):
            resp = v.resp.decode("utf-8", "replace") if isinstance(v.resp, bytes) else str(v.resp)
            return resp.splitlines()[0] if resp else type(v).__name__
        return f"{type(v).__name__}: {v}"


# ---------------------------------------------------------------- main

def raise_fd_limit(o):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < o["concurrency"] + 64:
        sys.stderr.write(f"{PROG}: warning: only {soft} file descriptors for --concurrency "
                         f"{o['concurrency']} (raise the hard limit: ulimit -Hn)\n")


def main(argv):
    try:
        import twisted  # noqa: F401  (first: without it nothing here can run)
    except ImportError as e:
        sys.stderr.write(f"{PROG}: Twisted is not available to {sys.executable} ({e}); "
                         "install python3-twisted\n")
        return 1
    if xxhash is None:
        sys.stderr.write(f"{PROG}: xxhash is not available to {sys.executable} "
                         f"({XXHASH_ERROR}); install python3-xxhash\n")
        return 1
    try:
        o = parse_options(argv)
    except UsageError as e:
        sys.stderr.write(f"{PROG}: {e}\nTry '{PROG} --help'.\n")
        return 2
    if o is None:
        return 0
    from twisted.internet import reactor, task
    raise_fd_limit(o)
    if o["start-at"]:                       # --start-at: the load generators' barrier
        wait = o["start-at"] / 1000.0 - time.time()
        if wait < -0.1:
            sys.stderr.write(f"{PROG}: --start-at {o['start-at']} had passed {-wait:.3f}s ago: starting now\n")
        while wait > 0:
            time.sleep(wait)
            wait = o["start-at"] / 1000.0 - time.time()
    stats = RunStats(o["emails"])
    m = Mailer(o, reactor, stats)
    progress = o["progress"] or sys.stderr.isatty()
    if progress:
        def tick():
            stats.sample_threads()
            el = now() - stats.start_s
            sys.stderr.write(f"\r{PROG}: delivered {m.done}/{o['emails']}, "
                             f"{m.done / el if el > 0 else 0:.0f}/s ")
        ticker = task.LoopingCall(tick)
        ticker.start(1.0, now=False)
    reactor.callWhenRunning(m.start)
    reactor.run(installSignalHandlers=True)
    if progress:
        sys.stderr.write("\n")
    # Stopped by a signal or the QUIT guard before every email ended: the
    # rest failed (sized by time: the emails started and not ended).
    # Open loop: the emails never started are shed or pending instead.
    planned = m.started if o["duration"] > 0 or o["rate"] > 0 else o["emails"]
    for _ in range(planned - stats.delivered - stats.failed):
        stats.record_failed("not sent: run interrupted")
    m.arrivals_end()
    stats.finish()
    print_summary(o, stats)
    if o["json"]:
        write_json(run_json(o, stats), o["json"])
    return 0 if stats.failed == 0 else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
