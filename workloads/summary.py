#!/usr/bin/env python3
"""workloads/summary.py — the email-summary workload (workloads/summary.c) in Python.

A second implementation written from the algorithm described in
workloads/summary.h, so that the spec is proven portable: tests/unit/
test_workload.c renders emails with both and requires identical bytes.  The
Python/Twisted reference model (models/reference/twisted_support.py) imports
it; the test helpers run it.

    workloads/summary.py [--seed S] [--index I] [--events E] [--recipients R]
                 [--body-bytes B] [--chain K]      writes the message to stdout
"""
import argparse
import datetime
import sys

M64 = (1 << 64) - 1
EPOCH = 1704067200  # 2024-01-01T00:00:00Z
ENDPOINTS = [("GET /api/orders", 30), ("GET /api/products", 24), ("POST /api/orders", 12),
             ("GET /api/users/me", 10), ("GET /health", 9), ("POST /api/login", 8),
             ("GET /api/search", 7), ("PUT /api/cart", 6), ("GET /static/app.js", 5),
             ("DELETE /api/cart/item", 4), ("GET /api/recommendations", 4),
             ("POST /api/payments", 3), ("GET /api/invoices", 3), ("PATCH /api/users/me", 2),
             ("POST /api/upload", 2), ("GET /admin/reports", 1)]
STATUSES = [(200, 850), (201, 880), (204, 900), (304, 920), (400, 940), (401, 950),
            (403, 955), (404, 975), (429, 980), (500, 990), (502, 995), (503, 1000)]
NUSERS = 10000
TOP_N = 5
PAD_HEADING = "-- appendix: padding to reach --body-bytes --"
PAD_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


class Rng:
    def __init__(self, seed, index):
        self.state = mix64(seed ^ mix64(index))

    def next(self):
        self.state = (self.state + 0x9e3779b97f4a7c15) & M64
        return mix64(self.state)


def summarize(seed, index, events):
    rng = Rng(seed, index)
    status_count = [0] * len(STATUSES)
    classes = [0] * 6
    ep_count = [0] * len(ENDPOINTS)
    ep_err = [0] * len(ENDPOINTS)
    users = {}
    lat = []
    for _ in range(events):
        a, b, c, d = rng.next(), rng.next(), rng.next(), rng.next()
        x, cum, ep = a % 130, 0, len(ENDPOINTS) - 1
        for i, (_, w) in enumerate(ENDPOINTS[:-1]):
            cum += w
            if x < cum:
                ep = i
                break
        y, st = b % 1000, 0
        while y >= STATUSES[st][1]:
            st += 1
        latency, t = 200 + c % 5000, (c >> 32) % 100
        if t < 1:
            latency += 100000 + (c >> 40) % 900000
        elif t < 6:
            latency *= 2 + (c >> 48) % 19
        user = min(d % NUSERS, (d >> 32) % NUSERS)
        code = STATUSES[st][0]
        status_count[st] += 1
        classes[code // 100] += 1
        ep_count[ep] += 1
        ep_err[ep] += code >= 500
        lat.append(latency)
        users[user] = users.get(user, 0) + 1
    lat.sort()
    n = len(lat)

    def pct(q):
        return lat[max(1, (n * q + 999) // 1000) - 1] if n else 0
    top_eps = [i for i in sorted(range(len(ENDPOINTS)), key=lambda i: (-ep_count[i], i))
               if ep_count[i] > 0][:TOP_N]
    return {
        "index": index, "events": n, "window": EPOCH + (seed % 3650) * 86400 + index * 60,
        "status": status_count, "classes": classes,
        "p": [pct(500), pct(900), pct(990), pct(999)], "max": lat[-1] if n else 0,
        "mean": sum(lat) // n if n else 0, "distinct": len(users),
        "top_eps": [(i, ep_count[i], ep_err[i]) for i in top_eps],
        "top_users": sorted(users.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N],
    }


def msgid(seed, index):
    return f"<mb.{seed}.{index}@mailbench.test>"


def render(seed, index, events=1000, recipients=1, body_bytes=0, chain=1):
    """The message bytes of email `index`, exactly as workload_build() makes them."""
    s = summarize(seed, index, events)
    t = datetime.datetime.fromtimestamp(s["window"], datetime.timezone.utc)
    e = datetime.datetime.fromtimestamp(s["window"] + 60, datetime.timezone.utc)
    wday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][t.weekday()]
    mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][t.month - 1]
    n = s["events"]
    pm = s["classes"][5] * 1000 // n if n else 0
    h = ["From: mailbench <reports@mailbench.test>"]
    for i in range(recipients):
        h.append(("To: " if i == 0 else " ") + f"ops+{i}@example.test" + ("," if i + 1 < recipients else ""))
    h.append(f"Subject: [mailbench] Activity {t:%Y-%m-%d %H:%M} UTC: {n} requests, {pm // 10}.{pm % 10}% 5xx")
    h.append(f"Date: {wday}, {t.day:02d} {mon} {t.year:04d} {t:%H:%M:%S} +0000")
    h.append(f"Message-ID: {msgid(seed, index)}")
    if chain > 1 and index % chain != 0:
        parent, root = msgid(seed, index - 1), msgid(seed, index - index % chain)
        h.append(f"In-Reply-To: {parent}")
        h.append(f"References: {parent}" if root == parent else f"References: {root}\r\n {parent}")
    h += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
          "Content-Transfer-Encoding: 8bit", f"X-Mailbench: seed={seed} email={index} events={n}", ""]
    b = [f"Activity summary for {t:%Y-%m-%d %H:%M}\u2013{e:%H:%M} UTC",
         f"(mailbench email {index}, seed {seed})", ""]
    if n == 0:
        b += ["No requests in this window.", ""]
    else:
        c = s["classes"]
        b += [f"Requests: {n} (2xx {c[2]} \u00b7 3xx {c[3]} \u00b7 4xx {c[4]} \u00b7 5xx {c[5]})",
              f"Distinct users: {s['distinct']}", "", "Latency (\u00b5s)"]
        for name, v in zip(["p50  ", "p90  ", "p99  ", "p99.9"], s["p"] + []):
            b.append(f"  {name} {v:10d}")
        b += [f"  max   {s['max']:10d}", f"  mean  {s['mean']:10d}", "", "Status  Requests"]
        b += [f"  {code:3d}   {cnt:8d}" for (code, _), cnt in zip(STATUSES, s["status"]) if cnt]
        b += ["", "Top endpoints                 Requests       5xx"]
        b += [f"  {ENDPOINTS[i][0]:<26} {cnt:9d} {err:9d}" for i, cnt, err in s["top_eps"]]
        b += ["", "Top users     Requests"]
        b += [f"  user-{u:04d} {cnt:9d}" for u, cnt in s["top_users"]]
        b.append("")
    b.append("\u2014 mailbench (synthetic data: the seed and email number reproduce it)")
    msg = ("\r\n".join(h) + "\r\n" + "\r\n".join(b) + "\r\n").encode("utf-8")
    return msg + padding(len(msg), body_bytes)


def pad_text(k, length):
    head = f"{k:08d} "
    return (head + "".join(PAD_ALPHABET[(k % 62 + j) % 62] for j in range(length)))[:length]


def padding(size, target):
    heading = len(PAD_HEADING) + 2
    if target < size + heading + 2:
        return b""
    fill = target - size - heading
    n, r = divmod(fill, 78)
    lines = [PAD_HEADING] + [pad_text(k, 77 if (r == 1 and k == n - 1) else 76) for k in range(n)]
    if r >= 2:
        lines.append(pad_text(n, r - 2))
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--recipients", type=int, default=1)
    ap.add_argument("--body-bytes", type=int, default=0)
    ap.add_argument("--chain", type=int, default=1)
    a = ap.parse_args()
    sys.stdout.buffer.write(render(a.seed, a.index, a.events, a.recipients, a.body_bytes, a.chain))


if __name__ == "__main__":
    main()
