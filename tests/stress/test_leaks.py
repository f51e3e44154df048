#!/usr/bin/env python3
"""No fd or memory leak over 200,000 connect/echo/close cycles.

Warm-up: >= 5,000 cycles of every kind; then baseline = (fd count, VmRSS) with no
client connected. Main run: >= 200,000 cycles (counted by the server's `accepted`
delta and by the clients): echoload churn with FIN closes and with RST closes
(SO_LINGER 0), 32 concurrent cycles, in alternating runs; plus a Python part that
closes mid-send: it pushes up to 256 KiB without reading and closes, half of them
after the echo started to arrive (unread echo in the receive queue: the close is a
reset) and half at once.

Pass: cycles >= 200,000 with 0 echoload errors/mismatches; after a bounded wait
(15 s): fds == baseline, RSS - baseline <= 1 MiB, `active` == 0,
accepted == sum(closed_*).

Env: LEAKS_CYCLES (default 200000), LEAKS_MIDSEND (Python mid-send cycles, 10000).
"""
import os
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402

CYCLES = sl.env_num("LEAKS_CYCLES", 200000, int)
MIDSEND = sl.env_num("LEAKS_MIDSEND", 10000, int)
PAYLOAD = os.urandom(256 * 1024)


def midsend_cycles(srv, n, deadline):
    """n connect / push without reading / close cycles, in batches of 50."""
    done = 0
    errors = 0
    batch = 50
    while done < n and time.monotonic() < deadline:
        socks = []
        for _ in range(min(batch, n - done)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5 * sl.SCALE)
            try:
                s.connect((srv.host, srv.port))
            except OSError:
                errors += 1
                s.close()
                continue
            s.setblocking(False)
            try:
                s.send(PAYLOAD)
            except (BlockingIOError, ConnectionResetError, BrokenPipeError):
                pass
            socks.append(s)
        # Half of them: wait until echo bytes sit unread in the receive queue.
        wait_for = socks[::2]
        end = time.monotonic() + 1.0
        while wait_for and time.monotonic() < end:
            r, _, _ = select.select(wait_for, [], [], 0.1)
            wait_for = [s for s in wait_for if s not in r]
        for i, s in enumerate(socks):
            if i % 4 == 3:
                # Some explicitly abortive as well.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        done += len(socks)
    return done, errors


def churn(srv, close, seconds):
    rc, js, err = sl.echoload(srv.port, "--mode", "churn", "--close", close, "--conns", 32,
                              "--duration", seconds, "--warmup", 0, timeout=60 + seconds * 3)
    if js is None:
        return 0, 1, rc, err
    return js["msgs"], js["errors"] + js["mismatches"] + js.get("stuck", 0), rc, err


def quiesce(srv, timeout):
    sl.retest.wait_until(lambda: sl.stats(srv)["total"]["active"] == 0, timeout=timeout,
                         what="active == 0")


def main():
    sl.raise_nofile()
    srv = sl.start_server("--threads", 2)
    try:
        t_start = time.monotonic()
        # Warm-up: every kind of cycle, >= 5,000 in all.
        warm = 0
        for close in ("fin", "rst"):
            for _ in range(20):
                n, e, rc, err = churn(srv, close, 0.3)
                warm += n
                if n >= 2500:
                    break
        n, _ = midsend_cycles(srv, 1000, time.monotonic() + 60 * sl.SCALE)
        warm += n
        quiesce(srv, 15 * sl.SCALE)
        time.sleep(0.5)
        base_fds = srv.num_fds()
        base_rss = srv.rss_kb()
        st0 = sl.stats(srv)["total"]
        sl.log("warm-up %d cycles; baseline fds %d, RSS %d KiB", warm, base_fds, base_rss)

        # Main run.
        deadline = time.monotonic() + 300 * sl.SCALE
        kinds = {"fin": 0, "rst": 0, "midsend": 0}
        el_errors = 0
        el_bad_rc = 0
        py_errors = 0
        rss_peak = base_rss
        target_churn = max(0, CYCLES - MIDSEND)
        mid_per_round = max(1, MIDSEND // 10)
        i = 0
        while (kinds["fin"] + kinds["rst"] < target_churn or kinds["midsend"] < MIDSEND) \
                and time.monotonic() < deadline and i < 1000:
            close = ("fin", "rst")[i % 2]
            if kinds["fin"] + kinds["rst"] < target_churn:
                n, e, rc, err = churn(srv, close, 2)
                kinds[close] += n
                el_errors += e
                el_bad_rc += rc != 0
                if rc != 0:
                    sl.log("echoload %s rc %s: %s", close, rc, err.strip()[-300:])
            if kinds["midsend"] < MIDSEND:
                n, e = midsend_cycles(srv, min(mid_per_round, MIDSEND - kinds["midsend"]), deadline)
                kinds["midsend"] += n
                py_errors += e
            rss_peak = max(rss_peak, srv.rss_kb())
            i += 1
        total = sum(kinds.values())
        # Bounded wait for the server to settle.
        t_settle = time.monotonic()
        settle_ok = True
        try:
            sl.retest.wait_until(
                lambda: sl.stats(srv)["total"]["active"] == 0 and srv.num_fds() == base_fds,
                timeout=15 * sl.SCALE, what="active == 0 and fds == baseline")
        except AssertionError as e:
            settle_ok = False
            sl.log("%s", e)
        settle_s = time.monotonic() - t_settle
        fds = srv.num_fds()
        rss = srv.rss_kb()
        st = sl.stats(srv)["total"]
        accepted = st["accepted"] - st0["accepted"]
        balance = st["accepted"] - sl.closed_total(st) - st["active"]
        sl.log("cycles %s; server accepted %d; closed eof %d error %d; settle %.1f s; run %.0f s",
               kinds, accepted, st["closed_eof"] - st0["closed_eof"],
               st["closed_error"] - st0["closed_error"], settle_s, time.monotonic() - t_start)
        rc = srv.stop(30 * sl.SCALE)

        sl.result("leaks.cycles", "%d (fin %d, rst %d, mid-send %d), server accepted %d, "
                  "echoload errors %d, python connect errors %d"
                  % (total, kinds["fin"], kinds["rst"], kinds["midsend"], accepted, el_errors,
                     py_errors),
                  ">= %d, errors == 0" % CYCLES,
                  total >= CYCLES and accepted >= CYCLES and el_errors == 0 and el_bad_rc == 0
                  and py_errors == 0)
        sl.result("leaks.fds", "%d after vs %d baseline" % (fds, base_fds), "== baseline",
                  fds == base_fds and settle_ok)
        sl.result("leaks.rss_growth_kib", "%+d KiB (baseline %d KiB, after %d KiB, peak %d KiB)"
                  % (rss - base_rss, base_rss, rss, rss_peak),
                  "<= 1024 KiB" if not sl.asan_build() else "reported only: ASan build",
                  rss - base_rss <= 1024 or sl.asan_build())
        sl.result("leaks.active", "%d, accepted - closed - active = %d" % (st["active"], balance),
                  "active == 0, balance == 0", st["active"] == 0 and balance == 0)
        sl.result("leaks.server_exit", "status %s" % rc, "exit 0", rc == 0)
    finally:
        srv.kill()
    sl.finish()


if __name__ == "__main__":
    main()
