#!/usr/bin/env python3
"""The supervisor keeps serving while a worker is stalled, and `set` says ERR when it
cannot allocate the new settings.

Needs the debug-hooks build (meson -Ddebug_hooks=true): the binary is
REUSEECHO_DEBUG_BIN if set, else REUSEECHO_BIN; exit 77 when `debug stall` answers
`ERR unknown command`.

1. --threads 2, `debug stall 0 3000`; then `set idle-timeout 7` and SIGTERM right
   behind it: the set answers within 300 ms (it used to wait in synchronize_rcu for
   the whole stall, with the signal queued behind it) and the drain's log line comes
   within 300 ms; the process drains and exits 0 once the stall ends.
2. REUSEECHO_DEBUG_FAIL_ALLOC=set: `set idle-timeout 5` answers
   `ERR set idle-timeout: out of memory, nothing changed` and `config` still says 0.
"""
import os
import signal
import sys
import time

if os.environ.get("REUSEECHO_DEBUG_BIN"):
    os.environ["REUSEECHO_BIN"] = os.environ["REUSEECHO_DEBUG_BIN"]

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402

STALL_MS = 3000
BOUND = 0.3 * sl.SCALE


def stalled_worker():
    srv = sl.start_server("--threads", 2, "--no-pin")
    probe = sl.ctl(srv, "debug stall 0 1")
    if "unknown command" in probe:
        sl.skip("this build has no debug hooks (%s); build with -Ddebug_hooks=true and set "
                "REUSEECHO_DEBUG_BIN" % probe.strip())
    time.sleep(0.05)  # the 1 ms probe stall is over
    r = sl.ctl(srv, "debug stall 0 %d" % STALL_MS)
    sl.result("stall.command", r.strip(), "starts with OK", r.startswith("OK"))
    time.sleep(0.1)  # the worker is inside its stall (online, no quiescent state)
    # The `set` goes out, and SIGTERM right behind it: both must be served.
    c = sl.retest.ControlClient(srv.ctl, timeout=10 * sl.SCALE)
    t0 = time.monotonic()
    c.send(b"set idle-timeout 7\n")
    srv.send_signal(signal.SIGTERM)
    r = c.read_reply()
    t_set = time.monotonic() - t0
    c.close()
    while "draining" not in srv.stderr() and time.monotonic() - t0 < 5 * sl.SCALE:
        time.sleep(0.002)
    t_sig = time.monotonic() - t0
    sl.result("stall.set_reply", r.strip(), "OK idle-timeout 7000 ms",
              r == "OK idle-timeout 7000 ms\n")
    sl.result("stall.set_latency_s", "%.3f" % t_set, "< %.2f" % BOUND, t_set < BOUND)
    sl.result("stall.sigterm_latency_s", "%.3f" % t_sig, "< %.2f" % BOUND, t_sig < BOUND)
    rc = srv.proc.wait(STALL_MS / 1000.0 + 10 * sl.SCALE)
    sl.result("stall.exit_status", rc, "== 0", rc == 0)


def set_alloc_failure():
    srv = sl.start_server("--threads", 1, "--no-pin",
                          extra_env={"REUSEECHO_DEBUG_FAIL_ALLOC": "set"})
    r = sl.ctl(srv, "set idle-timeout 5")
    want = "ERR set idle-timeout: out of memory, nothing changed\n"
    sl.result("set_enomem.reply", r.strip(), want.strip(), r == want)
    cfg = sl.ctl(srv, "config")
    sl.result("set_enomem.unchanged", "idle-timeout 0" in cfg.splitlines(), "True",
              "idle-timeout 0" in cfg.splitlines())
    rc = srv.stop()
    sl.result("set_enomem.exit_status", rc, "== 0", rc == 0)


def main():
    stalled_worker()
    set_alloc_failure()
    sl.finish()


if __name__ == "__main__":
    main()
