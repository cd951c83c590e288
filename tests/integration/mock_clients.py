#!/usr/bin/python3
"""Clients that mailbench did not write, driving smtp-mock in the integration tests.

  mock_clients.py smtplib HOST PORT N     N messages with Python's smtplib, retrying
                                          4xx and dropped connections (up to 20 tries)
  mock_clients.py twisted HOST PORT N     N messages with twisted.mail.smtp.sendmail
  mock_clients.py dialog HOST PORT        send each stdin line (CRLF added), one at a
                                          time, print each reply's code ("EOF" if closed)
  mock_clients.py idle HOST PORT SECS     read the greeting, stay silent, print what
                                          the server says next and whether it closed

smtplib/twisted print "delivered D failed F attempts A digest HEX": HEX is the
mailbench digest (lib/digest.h: XXH3-64 per message, summed mod 2^64)
of the delivered messages as the server must hold them (CRLF line ends).
"""
import socket
import sys
import time

import xxhash

MASK = (1 << 64) - 1


def digest_hash(data):
    """lib/digest.h: XXH3-64 with seed 0."""
    return xxhash.xxh3_64_intdigest(bytes(data))


def message(i, tag):
    """Message i, LF line ends; a line starting with '.' checks dot-stuffing."""
    lines = ["From: sender@example.org", "To: rcpt%d@example.org" % i,
             "Subject: %s message %d" % (tag, i),
             "Message-ID: <%s-%d@mailbench.test>" % (tag, i), "",
             "Hello %d." % i, ".a line that starts with a dot", "..two dots", "",
             "x" * (i % 300), "end"]
    return "\n".join(lines) + "\n"


def wire(msg):
    return msg.replace("\n", "\r\n").encode()


def run_smtplib(host, port, n):
    import smtplib
    delivered = failed = attempts = 0
    digest = 0
    for i in range(n):
        msg = wire(message(i, "smtplib"))
        for _ in range(20):
            attempts += 1
            try:
                with smtplib.SMTP(host, port, timeout=10) as s:
                    s.sendmail("sender@example.org", ["rcpt%d@example.org" % i], msg)
                delivered += 1
                digest = (digest + digest_hash(msg)) & MASK
                break
            except smtplib.SMTPResponseException as e:
                if e.smtp_code >= 500:
                    failed += 1
                    break
            except (smtplib.SMTPServerDisconnected, smtplib.SMTPRecipientsRefused,
                    ConnectionError) as e:
                if isinstance(e, smtplib.SMTPRecipientsRefused) and \
                        min(c for c, _ in e.recipients.values()) >= 500:
                    failed += 1
                    break
        else:
            failed += 1
    print("delivered %d failed %d attempts %d digest %016x" % (delivered, failed, attempts, digest))


def run_twisted(host, port, n):
    from twisted.internet import defer, reactor
    from twisted.mail.smtp import sendmail
    result = {"ok": 0, "fail": 0, "digest": 0}

    def one(i):
        msg = message(i, "twisted")
        d = sendmail(host, "sender@example.org", ["rcpt%d@example.org" % i],
                     msg.encode(), port=port)

        def ok(_):
            result["ok"] += 1
            result["digest"] = (result["digest"] + digest_hash(wire(msg))) & MASK

        def err(f):
            result["fail"] += 1
            sys.stderr.write("twisted: %s\n" % f.getErrorMessage())
        d.addCallbacks(ok, err)
        return d

    d = defer.gatherResults([one(i) for i in range(n)])
    d.addBoth(lambda _: reactor.stop())
    reactor.callLater(30, reactor.stop)
    reactor.run()
    print("delivered %d failed %d attempts %d digest %016x"
          % (result["ok"], result["fail"], n, result["digest"]))


class Conn:
    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("latin-1")

    def reply(self):
        """The code of one (possibly multi-line) reply, or 'EOF'."""
        while True:
            line = self.line()
            if line is None:
                return "EOF"
            if len(line) < 4 or line[3] != "-":
                return line[:3]


def run_dialog(host, port):
    c = Conn(host, port)
    print(c.reply())
    for text in sys.stdin.buffer.read().split(b"\n"):
        if not text:
            continue
        try:
            c.s.sendall(text + b"\r\n")
            print(c.reply())
        except OSError:
            print("EOF")
        sys.stdout.flush()


def run_idle(host, port, secs):
    c = Conn(host, port)
    print(c.reply())
    start = time.time()
    c.s.settimeout(secs)
    try:
        print(c.reply())
        print(c.reply())
    except socket.timeout:
        print("TIMEOUT")
    print("after %.1fs" % (time.time() - start), file=sys.stderr)


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "smtplib":
        run_smtplib(host, port, int(sys.argv[4]))
    elif mode == "twisted":
        run_twisted(host, port, int(sys.argv[4]))
    elif mode == "dialog":
        run_dialog(host, port)
    elif mode == "idle":
        run_idle(host, port, float(sys.argv[4]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
