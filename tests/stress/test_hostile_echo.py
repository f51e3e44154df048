#!/usr/bin/env python3
"""Hostile byte patterns and write shapes all echo exactly.

1. random bytes (all 256 values) in random-size writes (1 B - 64 KiB, 32 MiB total),
   with zero-length writes (send(b"")) between them, read concurrently;
2. 100,000 1-byte writes (random values) as fast as the client can, TCP_NODELAY on,
   read concurrently;
3. a single 64 MiB sendall(), read by another thread.
Each echo is compared byte for byte; every value 0-255 must appear in the input.

Pass: 3 of 3 patterns exact (bytes back == bytes sent, same order), server exit 0.
Env: HOSTILE_RANDOM_MIB (32), HOSTILE_ONEBYTE (100000), HOSTILE_BIG_MIB (64).
"""
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402

RANDOM_TOTAL = int(sl.env_num("HOSTILE_RANDOM_MIB", 32, float) * sl.MiB)
ONEBYTE = sl.env_num("HOSTILE_ONEBYTE", 100000, int)
BIG = int(sl.env_num("HOSTILE_BIG_MIB", 64, float) * sl.MiB)


class Reader(threading.Thread):
    """Reads n bytes and compares them with expected (a bytes-like) as they arrive."""

    def __init__(self, sock, expected, timeout):
        super().__init__(daemon=True)
        self.sock = sock
        self.expected = memoryview(expected)
        self.timeout = timeout
        self.got = 0
        self.first_bad = None
        self.error = None

    def run(self):
        n = len(self.expected)
        buf = bytearray(1 << 20)
        mv = memoryview(buf)
        end = time.monotonic() + self.timeout
        try:
            while self.got < n:
                if time.monotonic() > end:
                    self.error = "timeout after %d of %d bytes" % (self.got, n)
                    return
                k = self.sock.recv_into(buf, min(len(buf), n - self.got))
                if k == 0:
                    self.error = "EOF after %d of %d bytes" % (self.got, n)
                    return
                if mv[:k] != self.expected[self.got:self.got + k]:
                    for j in range(k):
                        if buf[j] != self.expected[self.got + j]:
                            self.first_bad = self.got + j
                            break
                    self.error = "mismatch at byte %d" % self.first_bad
                    return
                self.got += k
        except OSError as e:
            self.error = "%s after %d bytes" % (e, self.got)


def check(name, srv, data, writer, timeout=120):
    s = srv.connect(timeout=timeout * sl.SCALE)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(timeout * sl.SCALE)
    rd = Reader(s, data, timeout * sl.SCALE)
    t = time.monotonic()
    rd.start()
    werr = None
    try:
        extra = writer(s)
    except OSError as e:
        werr = str(e)
        extra = ""
    rd.join(timeout * sl.SCALE + 5)
    el = time.monotonic() - t
    # Nothing more may come: half-close and expect EOF.
    tail = b""
    if rd.error is None and not rd.is_alive():
        try:
            s.shutdown(socket.SHUT_WR)
            tail = sl.retest.recv_until_eof(s, limit=1 << 20)
        except OSError as e:
            werr = werr or "after: %s" % e
    s.close()
    ok = rd.got == len(data) and rd.error is None and werr is None and tail == b""
    sl.log("%s: %d/%d bytes in %.2f s%s%s", name, rd.got, len(data), el,
           ", " + rd.error if rd.error else "", ", write: " + werr if werr else "")
    return ok, rd.got, el, extra, len(tail)


def main():
    srv = sl.start_server("--threads", 2)
    rnd = random.Random(862)
    try:
        # 1. Random sizes, all byte values, zero-length writes in between.
        sizes = []
        total = 0
        while total < RANDOM_TOTAL:
            n = min(RANDOM_TOTAL - total, rnd.choice((1, 2, 3, 7, 255, 256, 4096, 65535, 65536,
                                                      rnd.randrange(1, 65537))))
            sizes.append(n)
            total += n
        data1 = bytearray(os.urandom(total))
        data1[:256] = bytes(range(256))

        def w1(s):
            pos = 0
            zero = 0
            mv = memoryview(data1)
            for i, n in enumerate(sizes):
                if i % 7 == 0:
                    s.send(b"")
                    zero += 1
                s.sendall(mv[pos:pos + n])
                pos += n
            return "%d writes, %d zero-length" % (len(sizes), zero)
        ok1, got1, el1, info1, tail1 = check("random", srv, data1, w1)
        values = len(set(data1))
        sl.result("hostile.random_sizes", "%d/%d bytes exact in %.2f s (%s, %d distinct values)"
                  % (got1, total, el1, info1, values), "all bytes exact, 256 values",
                  ok1 and values == 256)

        # 2. 100,000 1-byte writes at full speed.
        data2 = os.urandom(ONEBYTE)

        def w2(s):
            t = time.monotonic()
            for i in range(ONEBYTE):
                s.send(data2[i:i + 1])
            el = time.monotonic() - t
            return "%.0f writes/s" % (ONEBYTE / max(el, 1e-9))
        ok2, got2, el2, info2, tail2 = check("one-byte", srv, data2, w2)
        sl.result("hostile.one_byte_writes", "%d/%d bytes exact in %.2f s (%s)"
                  % (got2, ONEBYTE, el2, info2), "all bytes exact", ok2)

        # 3. One 64 MiB sendall.
        data3 = os.urandom(BIG)

        def w3(s):
            s.sendall(data3)
            return "one sendall"
        ok3, got3, el3, info3, tail3 = check("64MiB", srv, data3, w3)
        sl.result("hostile.single_64mib_sendall", "%d/%d bytes exact in %.2f s"
                  % (got3, BIG, el3), "all bytes exact", ok3)
        st = sl.stats(srv)["total"]
        rc = srv.stop(30)
        sl.result("hostile.server_exit", "status %s, bytes in %d == out %d" %
                  (rc, st["bytes_received"], st["bytes_sent"]), "exit 0, in == out",
                  rc == 0 and st["bytes_received"] == st["bytes_sent"])
    finally:
        srv.kill()
    sl.finish()


if __name__ == "__main__":
    main()
