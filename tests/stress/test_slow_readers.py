#!/usr/bin/env python3
"""Slow readers: 100 clients each send 100 MiB and do not read for 10 s.

Phase 1 (STALL seconds): every slow client pushes as much as the kernel takes
(nonblocking; they block when the buffers fill) and reads nothing; 10 other clients
keep ping-ponging the whole time. Phase 2: the slow clients read (and keep sending);
each must get its stream back exactly. The streams are generated on the fly
(stresslib.Stream) and every received byte is compared with the regenerated stream,
so the test's own memory stays bounded. Server VmRSS is sampled every 50 ms from
start to end.

Pass: RSS max < 64 MiB; every ping-pong client completes >= 20 round trips during the
stall (and no ping-pong RTT > 2 s); 100 x 100 MiB echoed exactly, no reset.

Env: SLOW_MIB (per-client size, default 100), SLOW_CLIENTS (100), SLOW_STALL (10 s).
"""
import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402

SIZE = sl.env_num("SLOW_MIB", 100, int) * sl.MiB
NSLOW = sl.env_num("SLOW_CLIENTS", 100, int)
STALL = sl.env_num("SLOW_STALL", 10.0)
NPING = 10
RSS_LIMIT_KB = 64 * 1024


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.max_kb = 0
        self.samples = 0
        self.stop = threading.Event()

    def run(self):
        end = time.monotonic() + 3600
        while not self.stop.is_set() and time.monotonic() < end:
            try:
                self.max_kb = max(self.max_kb, sl.proc_rss_kb(self.pid))
                self.samples += 1
            except (OSError, ValueError):
                return
            self.stop.wait(0.05)


class PingPong(threading.Thread):
    def __init__(self, srv, idx, stop_at):
        super().__init__(daemon=True)
        self.srv = srv
        self.idx = idx
        self.stop_at = stop_at
        self.trips = 0
        self.max_rtt = 0.0
        self.error = None

    def run(self):
        try:
            s = self.srv.connect(timeout=5 * sl.SCALE)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            i = 0
            while time.monotonic() < self.stop_at and i < 1000000:
                msg = b"ping %d %d " % (self.idx, i) + bytes(40)
                t = time.monotonic()
                s.sendall(msg)
                got = sl.retest.recv_exact(s, len(msg))
                self.max_rtt = max(self.max_rtt, time.monotonic() - t)
                if got != msg:
                    raise AssertionError("ping-pong %d: mismatch" % self.idx)
                self.trips += 1
                i += 1
                time.sleep(0.005)
            s.close()
        except Exception as e:
            self.error = "%s: %s" % (type(e).__name__, e)


class Slow:
    __slots__ = ("i", "sock", "out", "inp", "sent", "got", "bad", "err")

    def __init__(self, i, sock):
        self.i = i
        self.sock = sock
        self.out = sl.Stream(1000 + i, SIZE)
        self.inp = sl.Stream(1000 + i, SIZE)
        self.sent = 0
        self.got = 0
        self.bad = False
        self.err = None


def main():
    sl.raise_nofile()
    srv = sl.start_server("--threads", 2)
    sampler = Sampler(srv.pid)
    sampler.start()
    try:
        slow = []
        for i in range(NSLOW):
            s = srv.connect(timeout=5 * sl.SCALE)
            s.setblocking(False)
            slow.append(Slow(i, s))
        by_fd = {c.sock.fileno(): c for c in slow}
        ep = select.epoll()
        for c in slow:
            ep.register(c.sock.fileno(), select.EPOLLOUT)
        t_stall = time.monotonic()
        stall_end = t_stall + STALL
        pings = [PingPong(srv, k, stall_end) for k in range(NPING)]
        for p in pings:
            p.start()
        # Phase 1: write only, until the stall ends. Sockets whose buffers are full get
        # no EPOLLOUT edge (level-triggered registration, so they are simply not ready).
        full = set()
        while time.monotonic() < stall_end:
            for fd, ev in ep.poll(min(0.2, max(0.0, stall_end - time.monotonic()))):
                c = by_fd[fd]
                try:
                    for _ in range(64):
                        if c.sent >= SIZE:
                            break
                        c.sent += c.sock.send(c.out.view(c.sent))
                except BlockingIOError:
                    pass
                except OSError as e:
                    c.err = "phase 1 send: %s" % e
                    ep.unregister(fd)
                    continue
                if c.sent >= SIZE:
                    ep.unregister(fd)
                    full.add(fd)
        in_at_stall = [c.sent for c in slow]
        for p in pings:
            p.join(10 * sl.SCALE)
        ping_trips = [p.trips for p in pings]
        ping_err = [p.error for p in pings if p.error]
        ping_max = max(p.max_rtt for p in pings)
        st = sl.stats(srv)
        sl.log("stall: the slow clients got %.1f MiB in (min %.2f, max %.2f MiB per client); "
               "ping-pong trips %s; server backpressure pauses %d; RSS max so far %d KiB",
               sum(in_at_stall) / sl.MiB, min(in_at_stall) / sl.MiB, max(in_at_stall) / sl.MiB,
               ping_trips, st["total"]["backpressure_pauses"], sampler.max_kb)

        # Phase 2: read and write until every stream is back.
        for c in slow:
            fd = c.sock.fileno()
            mask = select.EPOLLIN | (select.EPOLLOUT if c.sent < SIZE else 0)
            if c.err:
                continue
            try:
                ep.register(fd, mask)
            except FileExistsError:
                ep.modify(fd, mask)
        t2 = time.monotonic()
        deadline = t2 + 300 * sl.SCALE
        open_ = sum(1 for c in slow if not c.err)
        while open_ and time.monotonic() < deadline:
            for fd, ev in ep.poll(0.5):
                c = by_fd[fd]
                if ev & select.EPOLLOUT and c.sent < SIZE:
                    try:
                        for _ in range(8):
                            if c.sent >= SIZE:
                                break
                            c.sent += c.sock.send(c.out.view(c.sent))
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        c.err = "send: %s" % e
                    if c.sent >= SIZE and not c.err:
                        ep.modify(fd, select.EPOLLIN)
                if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and not c.err:
                    try:
                        for _ in range(8):
                            d = c.sock.recv(256 * 1024)
                            if not d:
                                c.err = "EOF after %d of %d bytes" % (c.got, SIZE)
                                break
                            if not c.inp.matches(c.got, d):
                                c.bad = True
                                c.err = "mismatch near byte %d" % c.got
                                break
                            c.got += len(d)
                            if c.got >= SIZE:
                                break
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        c.err = "recv: %s" % e
                if c.err or c.got >= SIZE:
                    ep.unregister(fd)
                    open_ -= 1
        t_read = time.monotonic() - t2
        ep.close()
        for c in slow:
            c.sock.close()
        sl.retest.wait_until(lambda: sl.stats(srv)["total"]["active"] == 0, timeout=20 * sl.SCALE,
                             what="active == 0")
        sampler.stop.set()
        sampler.join(5)
        rc = srv.stop(30 * sl.SCALE)

        ok_streams = sum(1 for c in slow if c.got == SIZE and c.sent == SIZE and not c.err)
        errs = [(c.i, c.err) for c in slow if c.err]
        sl.log("phase 2 took %.1f s; errors: %s", t_read, errs[:5])
        asan = sl.asan_build()
        sl.result("slow_readers.rss_max_mib", "%.1f MiB over %d samples" % (sampler.max_kb / 1024.0,
                  sampler.samples), "< 64 MiB" if not asan else "reported only: ASan build",
                  (asan or sampler.max_kb < RSS_LIMIT_KB) and sampler.samples > 10)
        sl.result("slow_readers.pingpong_during_stall",
                  "min %d round trips per client in %.0f s (%s), max RTT %.0f ms, errors %d"
                  % (min(ping_trips), STALL, ",".join(map(str, ping_trips)), ping_max * 1000,
                     len(ping_err)),
                  ">= 20 each, max RTT < 2000 ms, errors == 0",
                  min(ping_trips) >= 20 and ping_max < 2.0 and not ping_err)
        sl.result("slow_readers.accepted_during_stall", "%.1f MiB total, %.2f MiB per client (min)"
                  % (sum(in_at_stall) / sl.MiB, min(in_at_stall) / sl.MiB),
                  "reported (> 0 per client)", min(in_at_stall) > 0)
        sl.result("slow_readers.echo_exact", "%d of %d clients got %d MiB back exactly in %.1f s"
                  % (ok_streams, NSLOW, SIZE // sl.MiB, t_read),
                  "== %d" % NSLOW, ok_streams == NSLOW)
        sl.result("slow_readers.server_exit", "status %s" % rc, "exit 0", rc == 0)
        if ping_err:
            sl.log("ping-pong errors: %s", ping_err)
    finally:
        sampler.stop.set()
        srv.kill()
    sl.finish()


if __name__ == "__main__":
    main()
