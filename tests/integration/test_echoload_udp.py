#!/usr/bin/env python3
"""Integration test for echoload --proto udp (Python 3 stdlib only).

Usage: test_echoload_udp.py ECHOLOAD REUSEECHO PY_UDP_ECHO UDP_IMPAIR

The echo server is reuseecho --udp when this build's reuseecho has it, else
the tutorial-style Python UDP peer (bench/peers/py-udp-echo.py). Checks:
  * clean runs (pingpong with depth over 8 flows and 2 threads, rate, sizes 24,
    1472 and 65507, IPv6 with 65527, the largest over 2 flows): every datagram sent comes back intact,
    exit 0, the UDP keys are present and exact;
  * each detector, through tests/helpers/udp_impair.py damaging chosen
    datagrams by flow and sequence number: 7 dropped -> lost 7; 5 duplicated ->
    duplicated 5; 3 pairs swapped -> reordered 3; 2 corrupted -> corrupted 2
    and exit 1; delayed past --loss-timeout -> lost and late, also for one
    declared lost after the window closes; and no lost datagram's wait shows
    up as latency (max_us stays under the timeout); the
    automatic loss timeout tunes itself below its 1 s start; a burst of 20000
    copies is split exactly between duplicated and loader_drops;
  * usage errors exit 2 with one line; a closed port exits 1 at once.
Exit 0 pass, 1 fail, 77 skip (only when IPv4 loopback is unavailable).
"""
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

SKIP = 77
READY_TIMEOUT = 10.0
UDP_KEYS = ("proto sent received lost late reordered duplicated corrupted loss_timeout_s "
            "loss_timeout_auto loader_drops").split()
ANY_READY = re.compile(r"listening on \[?([0-9a-fA-F:.]+)\]?:(\d+)")

failures = []


def check(ok, what):
    print("%s: %s" % ("ok" if ok else "FAIL", what), flush=True)
    if not ok:
        failures.append(what)
    return ok


def start(argv):
    """Starts argv, waits (bounded) for its 'listening on HOST:PORT' line."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + READY_TIMEOUT
    buf = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            stop(proc)
            raise RuntimeError("%s: no ready line within %.0f s" % (argv[0], READY_TIMEOUT))
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                rc = proc.wait(5)
                raise RuntimeError("%s exited (status %s) before its ready line" % (argv[0], rc))
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode(errors="replace")
    m = ANY_READY.search(line)
    if not m:
        stop(proc)
        raise RuntimeError("%s: unexpected ready line %r" % (argv[0], line))
    return proc, int(m.group(2))


def stop(proc):
    """SIGTERM, bounded wait, then SIGKILL: only the process we started.
    Returns (exit status, rest of its stdout)."""
    if proc is None:
        return None, ""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=5)
    return proc.returncode, out.decode(errors="replace")


# Clean runs wait this long before calling a datagram lost: a shared, loaded
# test machine stalls processes for tens of milliseconds, and a datagram that
# is only slow must not fail a run that checks lost == 0.
SCALE = float(os.environ.get("REUSEECHO_TEST_SCALE", "1") or "1")
CLEAN_TIMEOUT = str(2 * SCALE)
# The detector runs' loss timeout: a lost datagram would show up as a latency of
# at least this much, so max_us under it proves it did not. A stall longer than it
# (twice it at the end of a run, where echoload listens one more timeout for late
# answers) would turn answers in flight into lost and late ones.
TIMEOUT_S = 1.0 * SCALE


def echoload(exe, port, *args, duration=1.0, warmup=0.0, host="127.0.0.1", auto=False):
    """Runs echoload --proto udp --json; returns (exit status, record or None).
    Without a --loss-timeout in args it passes CLEAN_TIMEOUT, unless auto."""
    argv = [exe, "--proto", "udp", "--host", host, "--port", str(port),
            "--duration", str(duration), "--warmup", str(warmup), "--json"]
    argv += [str(a) for a in args]
    if "--loss-timeout" not in argv and not auto:
        argv += ["--loss-timeout", CLEAN_TIMEOUT]
    # echoload bounds itself: 5 s set-up, then warmup + duration + loss timeout + 5 s.
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=duration + warmup + 25)
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace").strip()
    rec = None
    lines = out.splitlines()
    if len(lines) == 1:
        try:
            rec = json.loads(lines[0])
        except ValueError:
            rec = None
    print("  $ %s\n    -> %d %s %s" % (" ".join(argv[1:]), p.returncode, out.strip(), err),
          flush=True)
    return p.returncode, rec


def expect(label, rec, **want):
    """Each key of want equals the record's value exactly."""
    if not check(rec is not None, "%s: one JSON object on stdout" % label):
        return False
    for k, v in want.items():
        check(rec.get(k) == v, "%s: %s == %r (got %r)" % (label, k, v, rec.get(k)))
    return True


def expect_clean(label, rc, rec, **want):
    if not expect(label, rec, proto="udp", errors=0, mismatches=0, lost=0, late=0,
                  reordered=0, duplicated=0, corrupted=0, loader_drops=0, **want):
        return
    missing = [k for k in UDP_KEYS if k not in rec]
    check(not missing, "%s: UDP keys present (missing: %s)" % (label, missing))
    check(rc == 0, "%s: exit 0 (got %d)" % (label, rc))
    check(rec.get("sent", 0) > 0 and rec.get("received") == rec.get("sent"),
          "%s: received == sent > 0 (got %s of %s)" % (label, rec.get("received"),
                                                      rec.get("sent")))
    check(rec.get("msgs", 0) > 0, "%s: msgs > 0 (got %s)" % (label, rec.get("msgs")))


def usage_checks(exe):
    for args in (["--proto", "sctp"], ["--proto", "udp", "--mode", "stream"],
                 ["--proto", "udp", "--mode", "churn"], ["--proto", "udp", "--size", "23"],
                 ["--proto", "udp", "--size", "65508"],
                 ["--proto", "udp", "--host", "::1", "--size", "65528"],
                 ["--loss-timeout", "1"], ["--proto", "udp", "--loss-timeout", "0"]):
        p = subprocess.run([exe] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=10)
        err = p.stderr.decode(errors="replace").strip().splitlines()
        check(p.returncode == 2 and len(err) == 1,
              "usage %s: exit 2 with one stderr line (got %d, %r)" % (args, p.returncode, err))
    p = subprocess.run([exe, "--help"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       timeout=10)
    text = p.stdout.decode()
    check(p.returncode == 0 and "--proto" in text and "--loss-timeout" in text,
          "--help documents --proto and --loss-timeout")


def closed_port_check(exe):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing is bound to port now: the first datagram draws ICMP port unreachable.
    t0 = time.monotonic()
    rc, rec = echoload(exe, port, "--conns", "4", duration=10)
    wall = time.monotonic() - t0
    check(rc == 1, "udp closed port: exit 1 (got %d)" % rc)
    if expect("udp closed port", rec, msgs=0, received=0, lost=0):
        check(rec.get("errors") == 4, "udp closed port: errors == 4, one per flow (got %s)"
              % rec.get("errors"))
    check(wall < 5, "udp closed port: quits at once (took %.2f s)" % wall)


def reuseecho_has_udp(reuseecho):
    p = subprocess.run([reuseecho, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, timeout=10)
    return b"--udp" in p.stdout


def echo_argv(reuseecho, pyecho, host):
    if reuseecho_has_udp(reuseecho):
        return [reuseecho, "--udp", "--threads", "2", "--port", "0", "--bind", host]
    return [sys.executable, pyecho, "--host", host, "--port", "0"]


def impaired(exe, impair, port, label, impair_args, load_args, duration=1.0, auto=False,
             **want):
    """One echoload run through the relay; returns (exit status, record)."""
    relay = None
    try:
        relay, rport = start([sys.executable, impair, "--upstream", "127.0.0.1:%d" % port]
                             + impair_args)
        rc, rec = echoload(exe, rport, *load_args, duration=duration, auto=auto)
    finally:
        _, out = stop(relay)
    stats = None
    for line in out.splitlines():
        if line.startswith("{"):
            stats = json.loads(line)
    print("    relay: %s" % stats, flush=True)
    expect(label, rec, **want)
    if rec is not None:
        check(rec.get("sent") == rec.get("received") + rec.get("lost") + rec.get("corrupted"),
              "%s: sent == received + lost + corrupted (%s, %s, %s, %s)"
              % (label, rec.get("sent"), rec.get("received"), rec.get("lost"),
                 rec.get("corrupted")))
        # A lost datagram's wait is never a latency: nothing measured may reach
        # the loss timeout (auto: its 1 s start and cap; it ends lower).
        limit = 1e6 if auto else rec.get("loss_timeout_s", 0) * 1e6
        check(rec.get("max_us", 1e9) < limit,
              "%s: max_us < %.0f, lost datagrams give no latency (got %s)"
              % (label, limit, rec.get("max_us")))
    return rc, rec


def detector_checks(exe, impair, port):
    # 2 flows, 4 datagrams in flight each; every pick lies within the first
    # few thousand sequence numbers, which a 1 s run passes many times over.
    # Drops lie 1200 apart, more than the 1024 sequence numbers a flow
    # remembers: each is declared lost (its slot reused) before the next, so a
    # flow never has all 4 slots waiting out a timeout.
    load = ["--conns", "2", "--depth", "4", "--loss-timeout", str(TIMEOUT_S)]
    drops = ["--drop", "0:100,1300,2500,3700", "--drop", "1:100,1300,2500"]
    rc, _ = impaired(exe, impair, port, "drop 7", drops, load,
                     lost=7, late=0, duplicated=0, reordered=0, corrupted=0, errors=0)
    check(rc == 0, "drop 7: loss is reported, exit 0 (got %d)" % rc)
    rc, _ = impaired(exe, impair, port, "duplicate 5", ["--dup", "1:50,60,70,80,90"], load,
                     duplicated=5, lost=0, late=0, reordered=0, corrupted=0, errors=0)
    check(rc == 0, "duplicate 5: exit 0 (got %d)" % rc)
    rc, _ = impaired(exe, impair, port, "swap 3 pairs", ["--swap", "0:200,300", "--swap", "1:400"],
                     load, reordered=3, lost=0, late=0, duplicated=0, corrupted=0, errors=0)
    check(rc == 0, "swap 3 pairs: exit 0 (got %d)" % rc)
    rc, _ = impaired(exe, impair, port, "corrupt 2", ["--corrupt", "0:150,250"],
                     load + ["--size", "200"], corrupted=2, mismatches=2, lost=0, late=0,
                     duplicated=0, reordered=0, errors=0)
    check(rc == 1, "corrupt 2: exit 1 (got %d)" % rc)
    # 20000 copies of one answer in a burst overflow the loader's own socket:
    # every copy is either read (duplicated) or dropped there (loader_drops).
    rc, rec = impaired(exe, impair, port, "flood 20000 copies", ["--dup", "0:100", "--copies",
                                                                "20000"],
                       ["--conns", "1", "--loss-timeout", str(TIMEOUT_S)], lost=0, late=0,
                       reordered=0, corrupted=0, errors=0)
    if rec is not None:
        check(rec.get("duplicated", 0) + rec.get("loader_drops", 0) == 20000,
              "flood: duplicated + loader_drops == 20000 (got %s + %s)"
              % (rec.get("duplicated"), rec.get("loader_drops")))
        if rec.get("loader_drops") == 0:
            print("note: the loader kept up with the flood; loader_drops not exercised")
    # Without --loss-timeout the timeout tunes itself to 10 x the recent p99,
    # within [50 ms, 1 s]: loopback round trips are far below 100 ms, so it ends
    # under the 1 s it starts from. So short a timeout may call a datagram that a
    # loaded machine merely stalled lost, and then late when it comes: the 7
    # dropped are the ones lost and never late.
    rc, rec = impaired(exe, impair, port, "auto timeout: drop 7", drops,
                       ["--conns", "2", "--depth", "4"], auto=True, duplicated=0,
                       reordered=0, corrupted=0, errors=0, loss_timeout_auto=True)
    if rec is not None:
        check(rec.get("lost", 0) - rec.get("late", 0) == 7,
              "auto timeout: lost - late == 7 (got %s - %s)" % (rec.get("lost"), rec.get("late")))
        check(0.05 <= rec.get("loss_timeout_s", 0) < 1.0,
              "auto timeout: tuned into [0.05, 1) s (got %s)" % rec.get("loss_timeout_s"))
    # Late after its timeout, twice: at 300 datagrams/s per flow (rate mode) the
    # slot still remembers the datagram when it comes back 1.5 timeouts late (a
    # ring of 1024 lasts 3.4 s); in fast pingpong a ring's worth of later
    # datagrams has gone out by then, the slot was reused and declared it lost,
    # and it comes back from behind the window. In the rate run flow 1's
    # datagram 590 is scheduled at 1181/600 s, just before the 2 s window
    # closes: it is declared lost after it, and comes back late only because
    # echoload then listens one more timeout for stragglers.
    delay = str(1.5 * TIMEOUT_S)
    rc, _ = impaired(exe, impair, port, "rate: delay 2 past the timeout",
                     ["--delay", "1:30,590", "--delay-s", delay],
                     ["--mode", "rate", "--rate", "600", "--conns", "2", "--loss-timeout",
                      str(TIMEOUT_S)], duration=2.0, lost=2, late=2, duplicated=0,
                     reordered=0, corrupted=0, errors=0, sent=1200, received=1198)
    check(rc == 0, "rate: delay 2: exit 0 (got %d)" % rc)
    rc, _ = impaired(exe, impair, port, "pingpong: delay 1 past the window",
                     ["--delay", "1:120", "--delay-s", delay], load, duration=2.0,
                     lost=1, late=1, duplicated=0, reordered=0, corrupted=0, errors=0)
    check(rc == 0, "pingpong: delay 1: exit 0 (got %d)" % rc)


def main(argv):
    if len(argv) != 5:
        print("usage: test_echoload_udp.py ECHOLOAD REUSEECHO PY_UDP_ECHO UDP_IMPAIR",
              file=sys.stderr)
        return 1
    exe, reuseecho, pyecho, impair = argv[1:]
    for path in (exe, reuseecho):
        if not os.access(path, os.X_OK):
            print("FAIL: %s is not an executable" % path)
            return 1
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
    except OSError as e:
        print("SKIPPED: echoload udp: no IPv4 loopback to test on (%s)" % e)
        return SKIP

    usage_checks(exe)
    closed_port_check(exe)

    server = None
    try:
        argv_srv = echo_argv(reuseecho, pyecho, "127.0.0.1")
        print("echo server: %s" % " ".join(argv_srv), flush=True)
        server, port = start(argv_srv)
        rc, rec = echoload(exe, port, "--conns", "8", "--threads", "2", "--depth", "4")
        expect_clean("pingpong 8 flows depth 4", rc, rec, depth=4, conns=8)
        # Open loop at 2000/s for exactly 1 s with no warm-up: 2000 datagrams.
        rc, rec = echoload(exe, port, "--mode", "rate", "--rate", "2000", "--conns", "8",
                           "--size", "256")
        expect_clean("rate 2000/s", rc, rec, msgs=2000, sent=2000, bytes=2000 * 256)
        # 65507 B datagrams over 2 flows: 8 of them in flight at once would
        # overflow a default 208 KiB server receive buffer (a real loss, counted).
        for size, flows in ((24, 8), (1472, 8), (65507, 2)):
            rc, rec = echoload(exe, port, "--conns", flows, "--size", size, duration=0.5)
            expect_clean("size %d" % size, rc, rec, size=size)
        detector_checks(exe, impair, port)
        check(server.poll() is None, "echo server still running after the load")
    finally:
        stop(server)

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        have6 = True
    except OSError:
        have6 = False
    if have6:
        server = None
        try:
            server, port = start(echo_argv(reuseecho, pyecho, "::1"))
            rc, rec = echoload(exe, port, "--conns", "2", "--size", "65527", duration=0.5,
                               host="::1")
            expect_clean("IPv6 size 65527", rc, rec, size=65527)
        finally:
            stop(server)
    else:
        print("note: no IPv6 loopback here, IPv6 run left out", flush=True)

    if failures:
        print("%d check(s) failed:\n  %s" % (len(failures), "\n  ".join(failures)))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        print("FAIL: %s" % e)
        sys.exit(1)
