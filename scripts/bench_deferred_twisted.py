#!/usr/bin/python3
"""bench_deferred_twisted -- the three figures of tests/bench/bench_deferred.c
measured on Twisted's own Deferred (run with /usr/bin/python3, which has
Twisted 22.4).  Same work per operation as the C benchmark:
  callback  one callback added to a chain and run (chains of 1000)
  deferred  one Deferred created, fired (with one callback)
  chained   a callback returns an unfired inner Deferred, the inner fires,
            the outer resumes (2 Deferreds)
Prints "name ns_per_op" lines, best of several rounds.
Usage: bench_deferred_twisted.py [scale]"""
import sys
import time

from twisted.internet.defer import Deferred


def inc(r):
    return r + 1


def store(r):
    return r


def bench_callbacks(chains):
    k = 1000
    t0 = time.perf_counter()
    for _ in range(chains):
        d = Deferred()
        for _ in range(k):
            d.addCallback(inc)
        d.callback(0)
    return (time.perf_counter() - t0) * 1e9 / (chains * k)


def bench_deferreds(n):
    t0 = time.perf_counter()
    for i in range(n):
        d = Deferred()
        d.addCallback(store)
        d.callback(i)
    return (time.perf_counter() - t0) * 1e9 / n


def bench_chained(n):
    t0 = time.perf_counter()
    for i in range(n):
        outer, inner = Deferred(), Deferred()
        outer.addCallback(lambda _, inner=inner: inner)
        outer.addCallback(store)
        outer.callback(None)
        inner.callback(i)
    return (time.perf_counter() - t0) * 1e9 / n


def best(fn, n, rounds=3):
    return min(fn(n) for _ in range(rounds))


def main():
    try:
        scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
        if not scale > 0:
            raise ValueError
    except ValueError:
        sys.stderr.write("bench_deferred_twisted: bad scale %r (want a positive number)\n" % sys.argv[1])
        sys.exit(2)
    print("callback %.2f" % best(bench_callbacks, max(1, int(100 * scale))))
    print("deferred %.2f" % best(bench_deferreds, max(1, int(100000 * scale))))
    print("chained %.2f" % best(bench_chained, max(1, int(50000 * scale))))


if __name__ == "__main__":
    main()
