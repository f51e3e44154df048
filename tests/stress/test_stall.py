#!/usr/bin/env python3
"""A stalled worker is detected, reported and recovers without losing a connection.

Needs the debug-hooks build (meson -Ddebug_hooks=true): the binary is
REUSEECHO_DEBUG_BIN if set, else REUSEECHO_BIN; exit 77 when `debug stall` answers
`ERR unknown command`.

With --threads 2: `debug stall 1 2000`; at once open 50 connections, each sending one
message (the kernel queues some of them to worker 1's listener). Within 1.5 s of the
command (1.6 s for the log line, left as it was when the watchdog ran every 500 ms;
it now wakes when a heartbeat passes 1 s): the stderr log has
the stall line for worker 1, /metrics shows
reuseecho_worker_stalled{worker="1"} 1, /healthz (HTTP over the control socket)
answers 503. After the stall: all 50 connections echo (worker 1 accepted > 0 of them),
the log has the recovery line, /healthz is 200 again.
"""
import os
import re
import select
import sys
import time

if os.environ.get("REUSEECHO_DEBUG_BIN"):
    os.environ["REUSEECHO_BIN"] = os.environ["REUSEECHO_DEBUG_BIN"]

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402

STALL_MS = 2000
LIMIT = 1.5
# The supervisor's watchdog wakes when a heartbeat passes RE_STALL_MS, so the log line
# comes about 1.0 s after the stall starts; the bound is the one set when it checked
# every 500 ms (1.0-1.5 s), plus 0.1 s of slack for scheduling.
LOG_LIMIT = 1.6
NCONN = 50
STALL_RE = re.compile(r"worker 1: event loop has not turned for \d+ ms")
BACK_RE = re.compile(r"worker 1: event loop turns again")


def stalled_metric(srv):
    for name, labels, v in sl.retest.parse_prometheus(sl.ctl(srv, "metrics")):
        if name == "reuseecho_worker_stalled" and labels.get("worker") == "1":
            return v
    return None


def healthz(srv):
    return sl.retest.http_get_unix(srv.ctl, "/healthz")[0]


def per_worker_accepted(srv):
    return {w["id"]: w["accepted"] for w in sl.stats(srv)["per_worker"]}


def main():
    srv = sl.start_server("--threads", 2)
    try:
        probe = sl.ctl(srv, "debug stall 1 1")
        if "unknown command" in probe:
            sl.skip("this build has no debug hooks (%s); build with -Ddebug_hooks=true and set "
                    "REUSEECHO_DEBUG_BIN" % probe.strip())
        time.sleep(0.2)
        acc0 = per_worker_accepted(srv)
        assert healthz(srv) == 200
        t0 = time.monotonic()
        r = sl.ctl(srv, "debug stall 1 %d" % STALL_MS)
        if not r.startswith("OK"):
            sl.result("stall.command", r.strip(), "OK", False)
            sl.finish()
        conns = []
        for i in range(NCONN):
            s = srv.connect(timeout=10 * sl.SCALE)
            s.sendall(b"stalled-%02d\n" % i)
            conns.append(s)
        seen = {"log": None, "metric": None, "503": None}
        end = t0 + LIMIT + 3.0
        while None in seen.values() and time.monotonic() < end:
            now = time.monotonic() - t0
            if seen["log"] is None and STALL_RE.search(srv.stderr()):
                seen["log"] = now
            if seen["metric"] is None and stalled_metric(srv) == 1:
                seen["metric"] = now
            if seen["503"] is None and healthz(srv) == 503:
                seen["503"] = now
            time.sleep(0.02)
        # Connections echo once the worker turns again (worker 0's at once).
        echoed = 0
        before_end = 0
        got = {i: b"" for i in range(NCONN)}
        want = {i: b"stalled-%02d\n" % i for i in range(NCONN)}
        by_sock = {s: i for i, s in enumerate(conns)}
        t_echo = 0.0
        end = t0 + STALL_MS / 1000.0 + 10 * sl.SCALE
        while echoed < NCONN and time.monotonic() < end:
            r, _, _ = select.select([s for s, i in by_sock.items() if len(got[i]) < len(want[i])],
                                    [], [], 0.1)
            for s in r:
                i = by_sock[s]
                d = s.recv(64)
                if not d:
                    sl.log("conn %d: EOF after %r", i, got[i])
                    del by_sock[s]
                    continue
                got[i] += d
                if len(got[i]) >= len(want[i]):
                    t_echo = time.monotonic() - t0
                    if got[i] == want[i]:
                        echoed += 1
                        before_end += t_echo < STALL_MS / 1000.0
        for s in conns:
            s.close()
        t200 = None
        try:
            sl.retest.wait_until(lambda: healthz(srv) == 200, timeout=5 * sl.SCALE,
                                 what="healthz 200")
            t200 = time.monotonic() - t0
        except AssertionError:
            pass
        try:
            back = bool(sl.retest.wait_until(lambda: BACK_RE.search(srv.stderr()),
                                             timeout=3 * sl.SCALE, what="recovery log line"))
        except AssertionError:
            back = False
        acc1 = per_worker_accepted(srv)
        on1 = acc1.get(1, 0) - acc0.get(1, 0)
        on0 = acc1.get(0, 0) - acc0.get(0, 0)
        metric_after = stalled_metric(srv)
        rc = srv.stop(30)
        fmt = lambda v: "never" if v is None else "%.2f s" % v  # noqa: E731
        sl.result("stall.detected", "log %s, metric %s, healthz 503 %s after the command"
                  % (fmt(seen["log"]), fmt(seen["metric"]), fmt(seen["503"])),
                  "log <= %.1f s, metric and healthz <= %.1f s" % (LOG_LIMIT, LIMIT),
                  seen["log"] is not None and seen["log"] <= LOG_LIMIT and
                  seen["metric"] is not None and seen["metric"] <= LIMIT and
                  seen["503"] is not None and seen["503"] <= LIMIT)
        sl.result("stall.queued_served", "%d/%d echoed (worker 1 accepted %d, worker 0 %d; %d echoed "
                  "during the stall; last at %.2f s)" % (echoed, NCONN, on1, on0, before_end,
                                                               t_echo),
                  "== %d, worker 1 > 0" % NCONN, echoed == NCONN and on1 > 0)
        sl.result("stall.recovered", "healthz 200 at %s, stalled metric %s, recovery log line %s"
                  % (fmt(t200), metric_after, "yes" if back else "no"),
                  "healthz 200 within %.1f s of the stall's end, metric 0" % (LIMIT + 1.0),
                  t200 is not None and t200 <= STALL_MS / 1000.0 + LIMIT + 1.0 and
                  metric_after == 0 and back)
        sl.result("stall.server_exit", "status %s" % rc, "exit 0", rc == 0)
    finally:
        srv.kill()
    sl.finish()


if __name__ == "__main__":
    main()
