#!/usr/bin/env python3
"""Zero loss across restarts and resizes under connection churn.

(a) A second plain instance on a live port refuses within 1 s: exit 1,
    "Address already in use".
(b) Under echoload churn (--conns 16, >= 2,000 connects/s), a --takeover restart
    (new instance, same fixed port and control socket, --takeover; the old one exits
    0) loses no connection: echoload errors == mismatches == stuck == 0. ZL_RUNS
    times, chained (each new instance is the next one's old instance).
(c) `threads 8` -> `threads 2` under the same churn loses none; ZL_RUNS times (grown
    back to 8 between runs), plus one run with REUSEECHO_DISABLE_CBPF=1 on the server
    whose losses are only REPORTED (no assertion): that is what the hole costs
    without steering.
(b) and (c) run in the host namespace (net.ipv4.tcp_migrate_req is whatever the host
has, 0 here; `features` must say listener_handover cbpf) and, when `unshare -n`
works, again inside a private namespace with tcp_migrate_req=1 set there (never on
the host; `features` must say cbpf+migrate).

Env: ZL_RUNS (default 5), ZL_SECONDS (echoload duration per run, default 3).
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402

RUNS = sl.env_num("ZL_RUNS", 5, int)
SECONDS = sl.env_num("ZL_SECONDS", 3.0)
MIN_RATE = 2000.0
ACTION_AT = 1.0


def churn_start(port):
    return sl.echoload_start(port, "--mode", "churn", "--conns", 16, "--duration", SECONDS,
                             "--warmup", 0)


def churn_verdict(p):
    rc, js, err = sl.echoload_wait(p, SECONDS + 60 * sl.SCALE)
    if js is None:
        return rc, 0, 0.0, 1, err.strip()[-300:]
    lost = js["errors"] + js["mismatches"] + js.get("stuck", 0)
    return rc, js["msgs"], js["msgs"] / max(js["duration_s"], 1e-9), lost, err.strip()[-300:]


def features(srv):
    out = sl.ctl(srv, "features")
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        if k == "listener_handover":
            return v.strip()
    return "?"


def part_a(tag, tmp):
    port = sl.retest.free_tcp_port()
    a = sl.start_server("--threads", 2, port=port, control=os.path.join(tmp, "a.sock"))
    try:
        t = time.monotonic()
        p = subprocess.run([sl.retest.binary(), "--bind", "127.0.0.1", "--port", str(port),
                            "--threads", "2", "--control", os.path.join(tmp, "a2.sock")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                           timeout=30, universal_newlines=True)
        took = time.monotonic() - t
        msg = "Address already in use" in p.stderr
        still = a.alive() and sl.echoload(port, "--mode", "pingpong", "--conns", 2, "--duration",
                                          0.3, "--warmup", 0)[0] == 0
        sl.result("%s.second_instance_refused" % tag,
                  "exit %d after %.3f s, message %s, first instance still serves: %s"
                  % (p.returncode, took, "yes" if msg else "no: %r" % p.stderr.strip()[-200:],
                     still),
                  "exit 1 within 1 s with 'Address already in use'",
                  p.returncode == 1 and took <= 1.0 and msg and still)
        assert a.stop(30) == 0
    finally:
        a.kill()


def part_b(tag, tmp, want_feature):
    port = sl.retest.free_tcp_port()
    ctlp = os.path.join(tmp, "tk-%d.sock" % port)
    cur = sl.start_server("--threads", 2, port=port, control=ctlp)
    feat = features(cur)
    totals = []
    failures = []
    rates = []
    takeover_s = []
    try:
        for i in range(RUNS):
            p = churn_start(port)
            time.sleep(ACTION_AT)
            t = time.monotonic()
            new = sl.start_server("--threads", 2, "--takeover", port=port, control=ctlp,
                                  ready_timeout=30 * sl.SCALE)
            old_rc, waited = sl.wait_exit(cur.proc, 30 * sl.SCALE)
            takeover_s.append(time.monotonic() - t)
            rc, msgs, rate, lost, err = churn_verdict(p)
            totals.append(lost)
            rates.append(rate)
            if rc != 0 or lost or old_rc != 0:
                failures.append("run %d: echoload rc %s lost %d, old exit %s: %s"
                                % (i, rc, lost, old_rc, err))
            cur.kill()
            cur = new
        rc_last = cur.stop(30)
    finally:
        cur.kill()
    for f in failures:
        sl.log("%s: %s", tag, f)
    sl.result("%s.takeover_lost" % tag,
              "%d lost over %d takeovers (per run %s; churn %.0f-%.0f conn/s; old exited after "
              "%.2f-%.2f s)" % (sum(totals), RUNS, totals, min(rates), max(rates),
                                min(takeover_s), max(takeover_s)),
              "0 lost, every old instance exits 0, churn >= %.0f/s" % MIN_RATE,
              not failures and sum(totals) == 0 and min(rates) >= MIN_RATE and rc_last == 0)
    sl.result("%s.takeover_features" % tag, "listener_handover %s" % feat,
              "== %s" % want_feature, feat == want_feature)


def resize_runs(tag, n, extra_env=None, assert_zero=True):
    srv = sl.start_server("--threads", 8, extra_env=extra_env)
    feat = features(srv)
    totals = []
    rates = []
    failures = []
    shrink_s = []
    try:
        for i in range(n):
            p = churn_start(srv.port)
            time.sleep(ACTION_AT)
            t = time.monotonic()
            r = sl.ctl(srv, "threads 2", timeout=30)
            if not r.startswith("OK"):
                failures.append("run %d: threads 2 -> %r" % (i, r))
            try:
                sl.retest.wait_until(lambda: sl.stats(srv)["workers"] == 2, timeout=30 * sl.SCALE,
                                     what="2 workers")
            except AssertionError as e:
                failures.append("run %d: %s" % (i, e))
            shrink_s.append(time.monotonic() - t)
            rc, msgs, rate, lost, err = churn_verdict(p)
            totals.append(lost)
            rates.append(rate)
            if (rc != 0 or lost) and assert_zero:
                failures.append("run %d: echoload rc %s lost %d: %s" % (i, rc, lost, err))
            if i + 1 < n:
                r = sl.ctl(srv, "threads 8", timeout=30)
                sl.retest.wait_until(lambda: sl.stats(srv)["workers"] == 8, timeout=30 * sl.SCALE,
                                     what="8 workers")
        st = sl.stats(srv)
        rc_srv = srv.stop(30)
    finally:
        srv.kill()
    for f in failures:
        sl.log("%s: %s", tag, f)
    return feat, totals, rates, failures, shrink_s, rc_srv, st


def part_c(tag, want_feature):
    feat, totals, rates, failures, shrink_s, rc, st = resize_runs(tag, RUNS)
    mig = "%s/%s" % (st["features"].get("tcp_migrate_req_success"),
                     st["features"].get("tcp_migrate_req_failure"))
    sl.result("%s.resize_lost" % tag,
              "%d lost over %d shrinks 8->2 (per run %s; churn %.0f-%.0f conn/s; shrink done in "
              "%.2f-%.2f s; kernel migrate success/failure %s)"
              % (sum(totals), RUNS, totals, min(rates), max(rates), min(shrink_s), max(shrink_s),
                 mig),
              "0 lost, churn >= %.0f/s" % MIN_RATE,
              not failures and sum(totals) == 0 and min(rates) >= MIN_RATE and rc == 0)
    sl.result("%s.resize_features" % tag, "listener_handover %s" % feat, "== %s" % want_feature,
              feat == want_feature)


def part_c_nocbpf(tag):
    feat, totals, rates, failures, shrink_s, rc, st = resize_runs(
        tag, 1, extra_env={"REUSEECHO_DISABLE_CBPF": "1"}, assert_zero=False)
    sl.result("%s.resize_no_cbpf_lost" % tag,
              "%d connections lost in 1 shrink 8->2 without steering (listener_handover %s, "
              "churn %.0f conn/s)" % (sum(totals), feat, rates[0] if rates else 0),
              "reported only", True)


def netns_part():
    tmp = sl.tmpdir()
    try:
        sl.sysctl_write("/proc/sys/net/ipv4/tcp_migrate_req", 1)
        part_b("zero_loss.netns", tmp, "cbpf+migrate")
        part_c("zero_loss.netns", "cbpf+migrate")
    finally:
        sl.rmtree(tmp)
    sl.finish()


def main():
    if "--netns-part" in sys.argv:
        sl.reexec_in_netns(require=True)
        netns_part()
        return
    sl.raise_nofile()
    tmp = sl.tmpdir()
    host_mig = open("/proc/sys/net/ipv4/tcp_migrate_req").read().strip()
    want = "cbpf+migrate" if host_mig == "1" else "cbpf"
    sl.log("host net.ipv4.tcp_migrate_req = %s", host_mig)
    try:
        part_a("zero_loss.host", tmp)
        part_b("zero_loss.host", tmp, want)
        part_c("zero_loss.host", want)
        part_c_nocbpf("zero_loss.host")
    finally:
        sl.rmtree(tmp)
    ok, why = sl.unshare_works()
    if ok:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "--netns-part"],
                           stdin=subprocess.DEVNULL, timeout=600)
        sl.result("zero_loss.netns_part", "exit %d" % p.returncode, "exit 0", p.returncode == 0)
    else:
        sl.log("netns part skipped: %s", why)
        # Printed for tests/check-skips: the test still passes, but CI fails on
        # this line unless tests/skip-allowlist.txt allows it.
        sys.stdout.write("SKIPPED: zero_loss.netns: %s\n" % why)
    sl.finish()


if __name__ == "__main__":
    main()
