#!/usr/bin/python3
"""aiosmtpd_server.py — an SMTP server mailbench did not write, for the peer tests.

  aiosmtpd_server.py --stats FILE [--listen HOST]
        Serves SMTP with Debian's python3-aiosmtpd on HOST (default 127.0.0.1),
        port 0.  Its first stdout line (flushed) is "listening on HOST:PORT",
        as smtp-mock's.  Every message is accepted (250).  On SIGTERM or SIGINT
        it stops listening and writes FILE: a JSON object with the same field
        names as smtp-mock's stats for what it can count —
          {"schema": "mailbench.peer/1", "server": "aiosmtpd <version>",
           "connections", "messages", "unique_messages", "duplicates",
           "recipients", "bytes", "digest"}
        — then exits 0.

  aiosmtpd_server.py --sink-dump DIR
        Prints "messages M unique_messages U digest HEX" for the message files
        Postfix's `smtp-sink -d DIR/...` wrote into DIR (see sink_dump_message).

The digest is lib/digest.c's: digest_hash (XXH3-64, seed 0, python3-xxhash)
of each message's bytes as received — the DATA after
undoing dot-stuffing, CRLF line ends kept, without the final ".\\r\\n" — summed
mod 2^64 over the FIRST copy of each distinct Message-ID (a message without
one always counts), printed as 16 lowercase hex digits.

What aiosmtpd hands the DATA hook (1.4.x, decode_data=False): it reads the
DATA lines with readuntil(b"\\r\\n") (CRLF kept), stops at the line ".\\r\\n"
(not included), removes one leading "." from every line that has one, and
joins them: envelope.original_content is those bytes, and envelope.content is
the same bytes object (it is only decoded to str when decode_data=True).  So
original_content is exactly the rendered message; it is what is hashed.
Note that aiosmtpd 1.4 does not advertise PIPELINING in its EHLO reply.
"""
import argparse
import asyncio
import json
import os
import signal
import sys

import xxhash

MASK = (1 << 64) - 1


def digest_hash(data):
    """lib/digest.c digest_hash(): XXH3-64 with seed 0."""
    return xxhash.xxh3_64_intdigest(bytes(data))


def message_id(msg):
    """The Message-ID header's value (unfolded, stripped) or None.

    Only the header section (up to the first empty line) is searched, the
    first Message-ID header wins, like lib/smtp_server.c."""
    head = msg.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines):
        if line[:11].lower() == b"message-id:":
            value = line[11:]
            for cont in lines[i + 1:]:
                if not cont[:1] in (b" ", b"\t"):
                    break
                value += cont
            return value.strip() or None
    return None


class Tally:
    """What the server counts: smtp-mock's field names, same meanings."""

    def __init__(self):
        self.connections = 0     # TCP connections accepted
        self.messages = 0        # accepted transactions, duplicates included
        self.recipients = 0      # accepted RCPTs of those transactions
        self.bytes = 0           # message bytes of those transactions
        self.ids = set()         # distinct Message-IDs seen so far
        self.unique = 0          # first copies (and messages without an ID)
        self.digest = 0          # sum of digest_hash of the first copies, mod 2^64

    def add(self, msg, nrcpts):
        self.messages += 1
        self.recipients += nrcpts
        self.bytes += len(msg)
        mid = message_id(msg)
        if mid is not None:
            if mid in self.ids:
                return
            self.ids.add(mid)
        self.unique += 1
        self.digest = (self.digest + digest_hash(msg)) & MASK

    def as_json(self, server):
        return {"schema": "mailbench.peer/1", "server": server,
                "connections": self.connections, "messages": self.messages,
                "unique_messages": self.unique,
                "duplicates": self.messages - self.unique,
                "recipients": self.recipients, "bytes": self.bytes,
                "digest": "%016x" % self.digest}


def sink_dump_message(raw):
    """The message bytes inside one smtp-sink -d dump file, or None.

    The file is: smtp-sink's own headers (X-Client-Addr, ..., X-Rcpt-Args)
    ending with a three-line "Received:" header, then the message as received
    (dot-stuffing undone) with LF line ends, then one empty line.  Our
    messages use CRLF only, so turning LF back into CRLF restores the bytes."""
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"Received: from "):
            j = i + 1
            while j < len(lines) and lines[j][:1] == b"\t":
                j += 1
            body = lines[j:]
            # The message ends in "\n" and the dump adds "\n": two empty tails.
            if len(body) < 2 or body[-1] != b"" or body[-2] != b"":
                return None
            return b"\r\n".join(body[:-2]) + b"\r\n"
    return None


def sink_dump(directory):
    tally = Tally()
    bad = 0
    for root, _, files in os.walk(directory):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                msg = sink_dump_message(f.read())
            if msg is None:
                bad += 1
            else:
                tally.add(msg, 0)
    print("messages %d unique_messages %d digest %016x unparsed %d"
          % (tally.messages, tally.unique, tally.digest, bad))
    return 0 if bad == 0 else 1


async def serve(host, stats_path):
    import aiosmtpd
    from aiosmtpd.smtp import SMTP

    tally = Tally()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            msg = envelope.original_content
            assert isinstance(msg, bytes)
            tally.add(msg, len(envelope.rcpt_tos))
            return "250 2.0.0 OK"

    class CountingSMTP(SMTP):
        def connection_made(self, transport):
            tally.connections += 1
            super().connection_made(transport)

    loop = asyncio.get_running_loop()
    handler = Handler()
    # A fixed hostname: the default, socket.getfqdn(), may wait for DNS.
    server = await loop.create_server(
        lambda: CountingSMTP(handler, hostname="aiosmtpd.test", loop=loop),
        host, 0)
    port = server.sockets[0].getsockname()[1]
    print("listening on %s:%d" % (host, port), flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    tmp = stats_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(tally.as_json("aiosmtpd " + aiosmtpd.__version__), f, indent=2)
        f.write("\n")
    os.replace(tmp, stats_path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stats", help="JSON written on SIGTERM")
    p.add_argument("--listen", default="127.0.0.1", help="address (port is always 0)")
    p.add_argument("--sink-dump", metavar="DIR", help="digest of smtp-sink -d files")
    a = p.parse_args()
    if a.sink_dump:
        return sink_dump(a.sink_dump)
    if not a.stats:
        p.error("--stats FILE is required")
    asyncio.run(serve(a.listen, a.stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
