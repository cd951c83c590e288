#!/usr/bin/python3
"""Hostile clients against smtp-mock, for tests/integration/test_hostile_clients.sh.

  hostile_clients.py garbage PORT        bad bytes in one session; prints "name code ..."
  hostile_clients.py smuggle PORT        bare LF / CR before "." in DATA; prints "shape codes"
  hostile_clients.py slow PORT GAP SECS  one byte every GAP seconds for at most SECS;
                                         prints "closed CODE after T" or "open after T"
  hostile_clients.py noread PORT PID MB  send up to MB megabytes of NOOPs without reading,
                                         then a normal transaction on a second connection;
                                         prints "sent N other CODE rss_kb K"
  hostile_clients.py flood PORT N        hold one session, open N more at once; prints
                                         "greeted G refused R closed C silent S secs T held CODE"

Every wait is bounded (socket timeouts); replies are read as SMTP reply codes
("EOF" when the server closed, "RST" when it reset, "TIMEOUT").
"""
import errno
import os
import resource
import selectors
import socket
import sys
import time


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Replies:
    """Reads whole replies (the last line of a multi-line one) as codes."""

    def __init__(self, sock):
        self.s, self.buf = sock, b""

    def code(self):
        while True:
            while b"\r\n" in self.buf:
                line, self.buf = self.buf.split(b"\r\n", 1)
                if line[3:4] != b"-":
                    return line[:3].decode("ascii", "replace")
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return "TIMEOUT"
            except ConnectionResetError:
                return "RST"
            if not d:
                return "EOF"
            self.buf += d


def transaction(port, tag, body=b"hello\r\n"):
    """A normal message on a new session: the DATA reply code."""
    s = connect(port)
    r = Replies(s)
    r.code()
    s.sendall(b"EHLO ok\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
    codes = [r.code() for _ in range(4)]
    if codes[-1] != "354":
        return "/".join(codes)
    s.sendall(b"Message-ID: <" + tag.encode() + b"@hostile>\r\n\r\n" + body + b".\r\nQUIT\r\n")
    c = r.code()
    s.close()
    return c


def garbage(port):
    s = connect(port)
    r = Replies(s)
    out = []

    def ask(name, data, n=1):
        try:
            s.sendall(data)
        except OSError as e:
            out.append("%s send-failed:%s" % (name, e.errno))
            return
        out.append("%s %s" % (name, " ".join(r.code() for _ in range(n))))

    out.append("greeting " + r.code())
    ask("binary-garbage", bytes(range(1, 256)).replace(b"\n", b"").replace(b"\r", b"") + b"\r\n")
    ask("nul-in-command", b"NO\x00OP\r\n")
    ask("bare-lf-command", b"NOOP\n")
    ask("command-513-octets", b"NOOP " + b"x" * 506 + b"\r\n")
    ask("command-512-octets", b"NOOP " + b"x" * 505 + b"\r\n")
    # No reply is due before the line ends (the server waits, up to its
    # idle timeout); then one 500, and the 5 MB were never held in memory.
    ask("line-5MB-then-crlf", b"y" * 5000000 + b"\r\n")
    ask("unknown-verb", b"EXPN root\r\n")
    ask("ehlo", b"EHLO hostile\r\n")
    ask("nul-in-argument", b"MAIL FROM:<a\x00b@x>\r\n")
    ask("rset", b"RSET\r\n")
    ask("mail-rcpt-data", b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n", 3)
    ask("text-line-1001-octets", b"Message-ID: <long@hostile>\r\n\r\n" + b"z" * 999 + b"\r\n.\r\n")
    ask("mail-rcpt-data", b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n", 3)
    ask("over-max-size", b"Message-ID: <big@hostile>\r\n\r\n" + (b"w" * 98 + b"\r\n") * 200 + b".\r\n")
    ask("mail-rcpt-data", b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n", 3)
    ask("nul-in-text", b"Message-ID: <nul@hostile>\r\n\r\nhel\x00lo\r\n.\r\n")
    # RFC 5321 4.5.3.1.6: the stuffing dot is not counted in the 1000
    # octets: a text line of 998 octets starting with "." is sent as 999.
    ask("mail-rcpt-data", b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n", 3)
    ask("dot-line-998", b"Message-ID: <dot998@hostile>\r\n\r\n.." + b"d" * 997 + b"\r\n.\r\n")
    # Message-IDs that differ only after a NUL are two messages, not a
    # duplicate (the server compares every byte).
    for tag in (b"b", b"c"):
        ask("mail-rcpt-data", b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n", 3)
        ask("msgid-nul-" + tag.decode(), b"Message-ID: <a\x00" + tag + b"@hostile>\r\n\r\nx\r\n.\r\n")
    # NUL in a command line: refused whole, not read as the command before it.
    for name, cmd in (("nul-after-noop", b"NOOP\x00junk\r\n"), ("nul-after-rset", b"RSET\x00\r\n"),
                      ("nul-after-quit", b"QUIT\x00now\r\n")):
        ask(name, cmd)
    ask("still-answers", b"NOOP\r\n")
    s.close()
    # Garbage then an abrupt close, then a fresh session still works.
    g = connect(port)
    g.sendall(os.urandom(65536))
    g.close()
    out.append("after-random-close " + transaction(port, "after-garbage"))
    out.append("smtplib-dot-line-998 " + smtplib_dot_line(port))
    print("\n".join(out))


def smtplib_dot_line(port):
    """Python's smtplib sending an ordinary message with a 998-octet line
    that starts with "." (smtplib stuffs it to 999): the DATA reply code."""
    import smtplib
    msg = b"Message-ID: <smtplib-dot@hostile>\r\n\r\n." + b"s" * 997 + b"\r\nend\r\n"
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail("a@x", ["b@x"], msg)
        return "250"
    except smtplib.SMTPResponseException as e:
        return str(e.smtp_code)
    except (OSError, smtplib.SMTPException) as e:
        return "error:" + type(e).__name__


def smuggle(port):
    """SMTP smuggling: DATA ends only at <CR><LF>.<CR><LF>.  A bare LF or CR
    before the "." never ends it: the smuggled commands stay message text,
    and the message is refused (554) at the real end, as Postfix does with
    smtpd_forbid_bare_newline.  One session; prints "name code" per shape
    (one reply each: never a 250, never the smuggled transaction's)."""
    s = connect(port)
    r = Replies(s)
    out = ["greeting " + r.code()]
    s.sendall(b"EHLO smuggler\r\n")
    r.code()
    smuggled = (b"MAIL FROM:<evil@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n"
                b"Message-ID: <evil@hostile>\r\n\r\nevil\r\n.\r\n")
    for name, shape in (("lf-dot-crlf", b"\n.\r\n"), ("lf-dot-lf", b"\n.\n"),
                        ("cr-dot-crlf", b"\r.\r\n"), ("crlf-dot-lf", b"\r\n.\n"),
                        ("crlf-dot-cr", b"\r\n.\r")):
        s.sendall(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
        codes = [r.code() for _ in range(3)]
        s.sendall(b"Message-ID: <smuggle@hostile>\r\n\r\nhi" + shape + smuggled + b"NOOP\r\n")
        codes += [r.code() for _ in range(2)]     # the end of DATA, then NOOP's
        out.append("%s %s" % (name, "/".join(codes)))
    s.sendall(b"QUIT\r\n")
    out.append("quit " + r.code())
    s.close()
    print("\n".join(out))


def slow(port, gap, secs):
    s = connect(port, timeout=gap + 2)
    r = Replies(s)
    r.code()
    t0 = time.time()
    msg = b"NOOP\r\n" * 1000
    i = 0
    s.settimeout(0.01)
    while time.time() - t0 < secs:
        try:
            s.send(msg[i:i + 1])
        except OSError:
            break
        i += 1
        end = time.time() + gap
        while time.time() < end:
            try:
                d = s.recv(4096)
            except socket.timeout:
                continue
            except ConnectionResetError:
                d = b""
            r.buf += d
            if not d or b"421" in r.buf:
                s.settimeout(2)
                code = "421" if b"421" in r.buf else "EOF"
                r.buf = b""
                tail = r.code()        # after the 421: the server closes
                print("closed %s after %.1f then %s" % (code, time.time() - t0, tail))
                return
    print("open after %.1f" % (time.time() - t0))


def rss_kb(pid):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def noread(port, pid, mb):
    s = connect(port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.setblocking(False)
    chunk = b"NOOP\r\n" * 10000
    sent, t0, last = 0, time.time(), time.time()
    peak = rss_kb(pid)
    while sent < mb * 1e6 and time.time() - last < 1.0 and time.time() - t0 < 10:
        try:
            sent += s.send(chunk)
            last = time.time()
        except BlockingIOError:
            time.sleep(0.01)
        peak = max(peak, rss_kb(pid))
    other = transaction(port, "while-one-does-not-read")
    peak = max(peak, rss_kb(pid))
    print("sent %d other %s rss_kb %d" % (sent, other, peak))
    s.close()


def flood(port, n):
    held = connect(port)
    hr = Replies(held)
    first = hr.code()
    socks = []
    t0 = time.time()
    for _ in range(n):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno not in (errno.EINPROGRESS,):
                c.close()
                continue
        socks.append(c)
    sel = selectors.DefaultSelector()
    for c in socks:
        sel.register(c, selectors.EVENT_READ)
    got = {"220": 0, "421": 0, "closed": 0}
    pending = len(socks)
    deadline = time.time() + 20
    while pending and time.time() < deadline:
        for key, _ in sel.select(timeout=0.5):
            c = key.fileobj
            try:
                d = c.recv(512)
            except OSError:
                d = b""
            k = d[:3].decode("ascii", "replace") if d else "closed"
            got[k if k in got else "closed"] += 1
            sel.unregister(c)
            pending -= 1
    secs = time.time() - t0
    # The session opened before the flood still works, while the others are open.
    held.sendall(b"EHLO held\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
    codes = [hr.code() for _ in range(4)]
    held.sendall(b"Message-ID: <held@hostile>\r\n\r\nstill here\r\n.\r\n")
    codes.append(hr.code())
    for c in socks:
        c.close()
    print("greeted %d refused %d closed %d silent %d secs %.1f held %s %s" % (
        got["220"], got["421"], got["closed"], pending, secs, first, "/".join(codes)))


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "garbage":
        garbage(port)
    elif cmd == "smuggle":
        smuggle(port)
    elif cmd == "slow":
        slow(port, float(sys.argv[3]), float(sys.argv[4]))
    elif cmd == "noread":
        noread(port, sys.argv[3], float(sys.argv[4]))
    elif cmd == "flood":
        flood(port, int(sys.argv[3]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
