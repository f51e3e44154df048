#!/usr/bin/env python3
"""10,000 concurrent connections, each echoing one 32-byte message per second.

Server: --threads 2. Client: RLIMIT_NOFILE raised to the hard limit, CLIENT_THREADS
threads with one epoll each; connection i sends at t0 + i/N + k seconds (k = 0..D-1),
so the load is spread evenly over each second. Every message carries (conn, seq, send
time) and is compared byte for byte when it comes back.

Pass: 10,000 connected (none refused), 0 resets, 0 lost (every message echoed exactly),
0 mismatches, p99 RTT < 1000 ms (the send period); max RTT reported.

Env/args: LOAD10K_DURATION or argv[1] (seconds, default 30), LOAD10K_CONNS (default 10000).
"""
import errno
import os
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402

DURATION = int(sys.argv[1]) if len(sys.argv) > 1 else sl.env_num("LOAD10K_DURATION", 30, int)
CONNS = sl.env_num("LOAD10K_CONNS", 10000, int)
CLIENT_THREADS = 4
MSG = 32


def message(cid, seq, t_ns):
    # 4 + 4 + 8 + 16 = 32 bytes; the tail depends on (cid, seq) so any mix-up shows.
    tail = struct.pack("<IIII", cid ^ 0xA5A5A5A5, seq * 2654435761 & 0xffffffff,
                       (cid * 40503 + seq) & 0xffffffff, 0xdeadbeef ^ seq)
    return struct.pack("<IIQ", cid, seq, t_ns) + tail


class Conn:
    __slots__ = ("cid", "sock", "seq", "pending", "rbuf", "dead")

    def __init__(self, cid, sock):
        self.cid = cid
        self.sock = sock
        self.seq = 0
        self.pending = []      # messages sent, not yet echoed (oldest first)
        self.rbuf = b""
        self.dead = None


def connect_all(addr, n, deadline):
    """Open n connections in batches (nonblocking connect, wait for completion).
    Returns (socks, refused, other_errors)."""
    socks = []
    refused = 0
    errors = 0
    batch = 250
    ep = select.epoll()
    try:
        while len(socks) + refused + errors < n and time.monotonic() < deadline:
            want = min(batch, n - len(socks) - refused - errors)
            inflight = {}
            for _ in range(want):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                rc = s.connect_ex(addr)
                if rc not in (0, errno.EINPROGRESS):
                    s.close()
                    refused += rc == errno.ECONNREFUSED
                    errors += rc != errno.ECONNREFUSED
                    continue
                inflight[s.fileno()] = s
                ep.register(s.fileno(), select.EPOLLOUT)
            bdl = time.monotonic() + 30 * sl.SCALE
            while inflight and time.monotonic() < bdl:
                for fd, _ in ep.poll(1.0):
                    s = inflight.pop(fd)
                    ep.unregister(fd)
                    e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if e == 0:
                        socks.append(s)
                    else:
                        s.close()
                        refused += e == errno.ECONNREFUSED
                        errors += e != errno.ECONNREFUSED
            for fd, s in inflight.items():     # never completed
                ep.unregister(fd)
                s.close()
                errors += 1
    finally:
        ep.close()
    return socks, refused, errors


class Worker(threading.Thread):
    def __init__(self, conns, n_total, t0, duration):
        super().__init__(daemon=True)
        self.conns = conns
        self.n_total = n_total
        self.t0 = t0
        self.duration = duration
        self.rtts = []
        self.sent = 0
        self.echoed = 0
        self.mismatches = 0
        self.resets = 0
        self.eofs = 0
        self.short_sends = 0
        self.exc = None

    def run(self):
        try:
            self._run()
        except Exception as e:      # reported by the main thread
            self.exc = e

    def _run(self):
        ep = select.epoll()
        by_fd = {}
        for c in self.conns:
            by_fd[c.sock.fileno()] = c
            ep.register(c.sock.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        # Schedule: conn with global id cid sends at t0 + cid/N + k.
        sched = sorted(self.conns, key=lambda c: c.cid)
        offs = [c.cid / self.n_total for c in sched]
        k = 0        # current round
        idx = 0      # next conn in this round
        end_send = self.t0 + self.duration
        hard_end = end_send + 15 * sl.SCALE
        outstanding = lambda: sum(len(c.pending) for c in self.conns)  # noqa: E731
        turns = 0
        while turns < 100000000:
            turns += 1
            now = time.monotonic()
            # Send everything due.
            while k < self.duration and self.t0 + k + offs[idx] <= now:
                c = sched[idx]
                if c.dead is None:
                    m = message(c.cid, c.seq, time.monotonic_ns())
                    try:
                        n = c.sock.send(m)
                        if n != MSG:
                            self.short_sends += 1   # never expected with 32 bytes
                            c.dead = "short send"
                        else:
                            c.pending.append(m)
                            c.seq += 1
                            self.sent += 1
                    except (ConnectionResetError, BrokenPipeError):
                        c.dead = "reset"
                        self.resets += 1
                    except BlockingIOError:
                        c.dead = "send EAGAIN"
                idx += 1
                if idx == len(sched):
                    idx = 0
                    k += 1
            if k >= self.duration:
                if outstanding() == 0 or now > hard_end:
                    break
                timeout = 0.2
            else:
                timeout = max(0.0, self.t0 + k + offs[idx] - time.monotonic())
            for fd, ev in ep.poll(min(timeout, 0.2)):
                c = by_fd[fd]
                try:
                    d = c.sock.recv(4096)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    if c.dead is None:
                        c.dead = "reset"
                        self.resets += 1
                    ep.unregister(fd)
                    continue
                if not d:
                    if c.dead is None:
                        c.dead = "eof"
                        self.eofs += 1
                    ep.unregister(fd)
                    continue
                t_ns = time.monotonic_ns()
                c.rbuf += d
                while len(c.rbuf) >= MSG:
                    got, c.rbuf = c.rbuf[:MSG], c.rbuf[MSG:]
                    if not c.pending or got != c.pending[0]:
                        self.mismatches += 1
                        if c.pending:
                            c.pending.pop(0)
                        continue
                    c.pending.pop(0)
                    self.echoed += 1
                    self.rtts.append((t_ns - struct.unpack_from("<Q", got, 8)[0]) / 1e6)
        ep.close()


def main():
    limit = sl.raise_nofile()
    need = CONNS + 200
    if limit < need:
        sl.skip("RLIMIT_NOFILE hard limit %d < %d needed for %d connections" % (limit, need, CONNS))
    srv = sl.start_server("--threads", 2)
    try:
        t_conn = time.monotonic()
        socks, refused, errors = connect_all((srv.host, srv.port), CONNS,
                                             time.monotonic() + 120 * sl.SCALE)
        conn_s = time.monotonic() - t_conn
        sl.log("connected %d in %.2fs (refused %d, other errors %d)", len(socks), conn_s,
               refused, errors)
        active = sl.retest.wait_until(
            lambda: (lambda a: a if a == len(socks) else 0)(sl.stats(srv)["total"]["active"]),
            timeout=30 * sl.SCALE, what="server active == %d" % len(socks))
        conns = [Conn(i, s) for i, s in enumerate(socks)]
        t0 = time.monotonic() + 0.5
        workers = [Worker(conns[i::CLIENT_THREADS], len(conns), t0, DURATION)
                   for i in range(CLIENT_THREADS)]
        rss_max = 0
        for w in workers:
            w.start()
        bound = time.monotonic() + DURATION + 60 * sl.SCALE
        while any(w.is_alive() for w in workers) and time.monotonic() < bound:
            rss_max = max(rss_max, srv.rss_kb())
            time.sleep(0.5)
        hung = sum(w.is_alive() for w in workers)
        for w in workers:
            if w.exc:
                raise w.exc
        sent = sum(w.sent for w in workers)
        echoed = sum(w.echoed for w in workers)
        resets = sum(w.resets for w in workers) + sum(w.eofs for w in workers)
        mism = sum(w.mismatches for w in workers)
        lost = sum(len(c.pending) for c in conns)
        dead = sum(1 for c in conns if c.dead)
        rtts = sorted(r for w in workers for r in w.rtts)
        p50 = sl.percentile(rtts, 50)
        p99 = sl.percentile(rtts, 99)
        mx = rtts[-1] if rtts else 0.0
        expected = len(conns) * DURATION
        sl.log("sent %d echoed %d lost %d mismatches %d resets/eof %d dead %d; server RSS max %d KiB",
               sent, echoed, lost, mism, resets, dead, rss_max)
        for c in conns:
            c.sock.close()
        sl.retest.wait_until(lambda: sl.stats(srv)["total"]["active"] == 0, timeout=30 * sl.SCALE,
                             what="active == 0 after the clients closed")
        rc = srv.stop(30 * sl.SCALE)

        sl.result("load_10k.connected", "%d of %d in %.1f s, refused %d, errors %d, server active %d"
                  % (len(socks), CONNS, conn_s, refused, errors, active),
                  "== %d, refused == 0" % CONNS,
                  len(socks) == CONNS and refused == 0 and errors == 0 and active == CONNS)
        sl.result("load_10k.echoed", "%d of %d msgs (%d s x %d conns), lost %d, mismatches %d, "
                  "resets %d" % (echoed, expected, DURATION, len(conns), lost, mism, resets),
                  "echoed == sent == conns x duration, lost == resets == mismatches == 0",
                  echoed == sent == expected and lost == 0 and mism == 0 and resets == 0
                  and dead == 0 and hung == 0)
        sl.result("load_10k.rtt_ms", "p50 %.2f p99 %.2f max %.2f" % (p50, p99, mx),
                  "p99 < 1000 ms", rtts and p99 < 1000.0)
        sl.result("load_10k.server_exit", "status %s, RSS max %.1f MiB" % (rc, rss_max / 1024.0),
                  "exit 0", rc == 0)
    finally:
        srv.kill()
    sl.finish()


if __name__ == "__main__":
    main()
