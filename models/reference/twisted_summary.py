#!/usr/bin/python3
"""twisted_summary.py — the email-summary workload sent with real Twisted.

The reference peer of the C models: the same workload (workloads/summary.py,
the Python port of workloads/summary.c, renders byte-identical messages for a given seed and email
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
import io
import math
import resource
import sys
import time

# The support beside this file: the C models' options, statistics, digest,
# retry policy and arrival schedule, ported (twisted_support.py), and the
# workload it renders (workloads/summary.py, which it imports).
from twisted_support import (  # noqa: E402
    PROG, Arrivals, Backoff, UsageError, digest_hash, now, parse_options, print_summary,
    run_json, RunStats, workload, write_json, xxhash, XXHASH_ERROR)

FROM = "reports@mailbench.test"         # WORKLOAD_FROM
EHLO_NAME = "client.mailbench.test"     # what models/mailer/async_mailer.c says
MAIL_FROM = b"MAIL FROM:<" + FROM.encode("ascii") + b">"


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
    __slots__ = ("index", "t0", "t_started", "t_reply", "attempt", "email", "session",
                 "slot", "chain_more")

    def __init__(self, index, slot=None, chain_more=False):
        self.index, self.t0, self.t_started, self.t_reply, self.attempt = index, 0.0, 0.0, 0.0, 0
        self.email = self.session = None
        self.slot, self.chain_more = slot, chain_more     # its chain's slot; an email after it


class Mailer:
    def __init__(self, o, reactor, stats):
        from twisted.internet import defer, task
        from twisted.python.failure import Failure
        self.defer, self.task, self.failure_type = defer, task, Failure
        self.smtp, self.error, self.open_session = build_classes()
        self.o, self.reactor, self.stats = o, reactor, stats
        self.rcpt = [f"ops+{i}@example.test".encode("ascii") for i in range(o["recipients"])]
        self.rcpt_lines = [b"RCPT TO:<" + r + b">" for r in self.rcpt]
        self.backoff = Backoff(o["seed"])
        self.sem = defer.DeferredSemaphore(o["concurrency"])
        # A chain is --per-session emails in the closed loop (mailer_unit), so
        # that each connection carries exactly --per-session emails.
        self.unit = o["chain"] if o["chain"] > 1 or o["rate"] > 0 else o["per-session"]
        self.nchains = -(-o["emails"] // self.unit)
        self.next_chain = self.chains_done = self.started = self.done = 0
        # Each --concurrency slot owns at most one session (the C models' rule).
        self.slots = [None] * o["concurrency"]
        self.free_slots = list(range(o["concurrency"] - 1, -1, -1))     # slot 0 on top
        self.live = 0           # connections open
        self.finished = False   # every chain has ended
        self.window_call = None
        self.arr = None         # open loop (--rate): the schedule and its queue
        self.arrive_call = None
        self.arrivals_over = False  # nothing more will be due

    # -- sessions
    def get_session(self, job):
        """The slot's session, or a new one (as a thread uses its connection)."""
        s = self.slots[job.slot]
        if s is not None:
            if s.usable():
                return self.defer.succeed(s)
            self.slots[job.slot] = None
            s.quit()            # the server closed it while it waited
        d = self.open_session(self)
        d.addTimeout(self.o["timeout"], self.reactor)
        d.addCallback(self.count_connection, job)
        return d

    def count_connection(self, session, job):
        self.stats.connections += 1
        self.slots[job.slot] = session
        return session

    def slot_has_more(self, job):
        """Will the job's slot send another email after this one?"""
        if not self.stats.window.may_start():
            return False
        if job.chain_more:
            return True
        if self.arr is not None:
            return not self.arrivals_over or bool(self.arr.fifo)
        return self.next_chain < self.nchains

    def put_session(self, s, job, over):
        """After an attempt, the blocking mailer's rule: a session in no state
        to go on is dropped; once the email is over, one that has carried
        --per-session emails, or whose slot has no more to send, is QUIT;
        else it stays with the slot.  Returns the QUIT's Deferred (fires once
        the connection is gone), or None."""
        if not s.usable():
            self.slots[job.slot] = None
            s.abort()
            return None
        if over and (s.sent >= self.o["per-session"] or not self.slot_has_more(job)):
            self.slots[job.slot] = None
            return s.quit()
        return None

    def connection_closed(self):
        self.live -= 1
        if self.finished and self.live == 0 and self.reactor.running:
            self.reactor.stop()

    # -- one attempt, and the retries
    def attempt(self, job):
        d = self.get_session(job)
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
        over = (not isinstance(result, self.failure_type) or self.permanent(result)
                or job.attempt >= self.o["retries"])        # as maybe_retry decides
        gone = self.put_session(s, job, over)
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

    def send_one(self, _, index, slot=None, chain_more=False):
        """One email, as callbacks on one Deferred; fires when it has ended.
        None once the window has closed (--duration): the chain stops.  In the
        open loop it starts no earlier than its intended start."""
        if self.stop_starting():
            return None
        job = Job(index, slot, chain_more)
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
        """Emails first..end-1, each started when the previous one has ended,
        on a slot of their own (given back before the token)."""
        slot = self.free_slots.pop()
        d = self.defer.succeed(None)
        for i in range(first, end):
            d.addCallback(self.send_one, i, slot, i + 1 < end)
        d.addBoth(self.free_slot, slot)
        return d

    def free_slot(self, result, slot):
        self.free_slots.append(slot)
        return result

    def start_chain(self):
        """Closed loop: the next chain in order (it waits for a token)."""
        if self.next_chain >= self.nchains or self.stop_starting():
            return
        self.run_chain_c(self.next_chain)

    def run_chain_c(self, c):
        """Chain c takes a token (the open loop calls it only when one is free)
        and sends its emails in order."""
        self.next_chain += 1
        first = c * self.unit
        d = self.sem.run(self.run_chain, first, min(first + self.unit, self.o["emails"]))
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
            # From a fresh clock, not t: pump_queue took time, and a delay
            # from t would put every arrival late by that much.
            self.arrive_call = self.reactor.callLater(max(nxt - now(), 0), self.arrive)
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
        """Once every chain that will run has ended: QUIT the slots' sessions,
        stop the timers, and stop the reactor once the connections are gone."""
        if self.finished or self.chains_done < self.nchains:
            return
        self.finished = True
        for call in (self.window_call, self.arrive_call):
            if call is not None and call.active():
                call.cancel()
        self.window_call = self.arrive_call = None
        for i, s in enumerate(self.slots):
            if s is not None:
                self.slots[i] = None
                s.quit()
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
