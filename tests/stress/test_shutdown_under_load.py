#!/usr/bin/env python3
"""SIGTERM under load: every byte a client sent before the signal comes back, then EOF.

200 clients stream 4 MiB (32 MiB for group B below) each full-duplex (reads interleaved with writes). Once 40% of
the total is sent, every client stops sending and keeps reading until its send queue
is empty (SIOCOUTQ == 0: the server's kernel acknowledged every byte it was handed).
Half the clients (group A) do that; the other half (group B) stop reading instead and
push until every buffer is full (server paused by backpressure, its receive queue full).
Then SIGTERM (--drain-timeout 10). Group A must receive exactly what it sent; group B
at least every byte the server's kernel acknowledged before the signal (sent - SIOCOUTQ)
and at most what it sent, exact; then EOF (no reset) for all. The server exits 0
within the drain timeout.

Pass: 200/200 exact + EOF; 0 resets; exit 0 within 10 s of the signal.
Env: SHUT_CLIENTS (200), SHUT_MIB (4), SHUT_B_MIB (32).
"""
import os
import select
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402

NCLIENTS = sl.env_num("SHUT_CLIENTS", 200, int)
SIZE = int(sl.env_num("SHUT_MIB", 4, float) * sl.MiB)
# Group B's streams are longer than every buffer on the path together, so that it is
# still mid-transfer, and the server paused by backpressure, when the signal comes.
SIZE_B = int(sl.env_num("SHUT_B_MIB", 32, float) * sl.MiB)
DRAIN = 10


def push_without_reading(clients, seconds):
    """Group B: send until EAGAIN, read nothing, for `seconds` (the server's buffers,
    receive queue and our send queue fill up)."""
    end = time.monotonic() + seconds
    socks = {c.sock.fileno(): c for c in clients}
    while time.monotonic() < end:
        _, w, _ = select.select([], list(socks), [], 0.05)
        for fd in w:
            c = socks[fd]
            try:
                for _ in range(4):
                    if c.sent >= c.length:
                        break
                    c.sent += c.sock.send(c.out.view(c.sent))
            except BlockingIOError:
                pass
            except OSError as e:
                c.err = "push: %s" % e
                del socks[fd]


def main():
    sl.raise_nofile()
    srv = sl.start_server("--threads", 2, "--drain-timeout", DRAIN)
    clients = []
    try:
        clients = [sl.DuplexClient(srv.connect(timeout=10 * sl.SCALE), 100 + i,
                                   SIZE if i % 2 == 0 else SIZE_B)
                   for i in range(NCLIENTS)]
        group_a = clients[0::2]     # stop sending, read until every byte is acknowledged
        group_b = clients[1::2]     # stop reading, push until the buffers are full
        target = 0.4 * NCLIENTS * SIZE     # 40% of group A's total, both groups sending
        t0 = time.monotonic()
        sl.run_duplex(clients, t0 + 120 * sl.SCALE,
                      tick=lambda now: sum(c.sent for c in clients) >= target, max_send=2)
        for c in group_a:
            c.stop_sending = True
        push_without_reading(group_b, 1.0)
        for c in group_a:
            c.length = c.inp.length = c.sent
            if c.got >= c.sent and c.err is None:
                c.done = True
        sl.run_duplex(group_a, time.monotonic() + 60 * sl.SCALE,
                      tick=lambda now: all(sl.outq(c.sock) == 0 for c in group_a))
        unacked_a = sum(sl.outq(c.sock) for c in group_a)
        # Group B: what the server's kernel acknowledged is a lower bound of what must
        # come back; what we handed to our kernel is the upper bound.
        acked_b = [c.sent - sl.outq(c.sock) for c in group_b]
        st = sl.stats(srv)["total"]
        t_sig = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        sent = sum(c.sent for c in clients)
        owed = sum(c.sent - c.got for c in clients)
        owed_b_min = sum(a - c.got for a, c in zip(acked_b, group_b))
        mid = sum(1 for c in clients if 0 < c.sent < c.length)
        sl.log("SIGTERM with %.1f MiB sent (%d clients mid-transfer), %.1f MiB not yet echoed "
               "(group B: >= %.1f MiB acknowledged by the server but not echoed); group A "
               "unacknowledged %d B; server active %d, backpressure pauses %d",
               sent / sl.MiB, mid, owed / sl.MiB, owed_b_min / sl.MiB, unacked_a, st["active"],
               st["backpressure_pauses"])
        for c in group_b:
            c.stop_sending = True
            c.length = c.inp.length = c.sent
            if c.got >= c.sent and c.err is None:
                c.done = True
        # Everything owed, then EOF.
        sl.run_duplex(clients, t_sig + 60 * sl.SCALE)
        ok_a = sum(1 for c in group_a if c.done and c.got == c.sent)
        # Group B: an EOF is fine once at least the acknowledged bytes came back.
        ok_b = 0
        full_b = 0
        for a, c in zip(acked_b, group_b):
            if c.mismatch or c.got > c.sent:
                continue
            if c.done or (c.err and c.err.startswith("EOF after") and c.got >= a):
                ok_b += 1
                full_b += c.got == c.sent
        eof = sum(1 for c in group_b if c.err and c.err.startswith("EOF after"))
        resets = 0
        extra = 0
        pending = {c.sock.fileno(): c for c in clients if c.done}
        ep = select.epoll()
        for fd in pending:
            ep.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
        end = time.monotonic() + 30 * sl.SCALE
        while pending and time.monotonic() < end:
            for fd, ev in ep.poll(0.2):
                c = pending.get(fd)
                if c is None:
                    continue
                try:
                    d = c.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    resets += 1
                    d = b""
                else:
                    if d:
                        extra += len(d)
                        continue
                    eof += 1
                ep.unregister(fd)
                del pending[fd]
        ep.close()
        for c in clients:
            c.sock.close()      # the clients close after the server's FIN
        rc, waited = sl.wait_exit(srv.proc, DRAIN + 20)
        exit_s = time.monotonic() - t_sig
        errs = [(i, c.err) for i, c in enumerate(clients) if c.err and
                not c.err.startswith("EOF after")][:5]
        resets += sum(1 for c in clients if c.err and not c.err.startswith("EOF after"))
        sl.log("group A exact %d/%d, group B ok %d/%d (%d got every byte handed to the kernel), "
               "EOF %d, resets %d, extra bytes %d, errors %s; exit %s after %.2f s",
               ok_a, len(group_a), ok_b, len(group_b), full_b, eof, resets, extra, errs, rc, exit_s)
        for line in srv.stderr().splitlines()[-3:]:
            sl.log("server: %s", line)

        sl.result("shutdown.echoed_before_signal",
                  "%d/%d clients got back every byte sent before SIGTERM (%.1f MiB sent, "
                  "%.1f MiB not yet echoed at the signal), EOF %d, resets %d, extra %d B"
                  % (ok_a + ok_b, NCLIENTS, sent / sl.MiB, owed / sl.MiB, eof, resets, extra),
                  "== %d (acknowledged bytes exact) + EOF, 0 resets" % NCLIENTS,
                  ok_a + ok_b == NCLIENTS and eof == NCLIENTS and resets == 0 and extra == 0
                  and unacked_a == 0)
        sl.result("shutdown.exit", "status %s after %.2f s" % (rc, exit_s),
                  "exit 0 within --drain-timeout %d s" % DRAIN, rc == 0 and exit_s <= DRAIN)
    finally:
        for c in clients:
            c.sock.close()
        srv.kill()
    sl.finish()


if __name__ == "__main__":
    main()
