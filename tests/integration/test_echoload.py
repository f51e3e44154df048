#!/usr/bin/env python3
"""Integration test for bench/echoload (Python 3 stdlib only).

Usage: test_echoload.py ECHOLOAD REUSEECHO CORRUPT_ECHO

Runs echoload briefly in every mode against reuseecho and expects a clean run
(exit 0, no errors, no mismatches, msgs > 0); runs it against corrupt-echo
with corruption on and expects exit 1 with mismatches counted, and with
corruption off (--every 0) expects a clean run, so that a failure can be told
apart from a broken helper. Also checks usage errors exit 2.
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
REUSEECHO_READY = re.compile(
    r"^reuseecho: listening on (\S+):(\d+) with (\d+) workers?$")
CORRUPT_READY = re.compile(r"^corrupt-echo: listening on (\S+):(\d+)$")
JSON_KEYS = ("mode conns threads size depth duration_s msgs msgs_per_s mb_per_s "
             "p50_us p90_us p99_us p999_us max_us errors mismatches loader_cpu "
             "bytes window rate close").split()

failures = []


def check(ok, what):
    print("%s: %s" % ("ok" if ok else "FAIL", what), flush=True)
    if not ok:
        failures.append(what)
    return ok


def start_server(argv, ready_re):
    """Starts argv, waits (bounded) for its ready line; returns (proc, port)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + READY_TIMEOUT
    buf = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            stop_server(proc)
            raise RuntimeError("%s: no ready line within %.0f s" % (argv[0], READY_TIMEOUT))
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                rc = proc.wait(5)
                raise RuntimeError("%s exited (status %s) before its ready line" % (argv[0], rc))
            buf += chunk
    line = buf.split(b"\n", 1)[0].decode(errors="replace")
    m = ready_re.match(line)
    if not m:
        stop_server(proc)
        raise RuntimeError("%s: unexpected ready line %r" % (argv[0], line))
    return proc, int(m.group(2))


def stop_server(proc):
    """SIGTERM, bounded wait, then SIGKILL: only the process we started.
    Returns the exit status (a sanitizer report makes it non-zero)."""
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        return None


def echoload(exe, port, *args, duration=1.0, warmup=0.2, fmt="--json"):
    """Runs echoload; returns (exit status, parsed record or None, stderr)."""
    argv = [exe, "--port", str(port), "--duration", str(duration),
            "--warmup", str(warmup), fmt] + [str(a) for a in args]
    # echoload bounds itself to warmup + duration + 5 s after a 5 s setup.
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=duration + warmup + 20)
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace").strip()
    rec = None
    if fmt == "--json":
        lines = out.splitlines()
        if len(lines) == 1:
            try:
                rec = json.loads(lines[0])
            except ValueError:
                rec = None
    elif fmt == "--csv":
        lines = out.splitlines()
        if len(lines) == 2:
            keys, vals = lines[0].split(","), lines[1].split(",")
            if len(keys) == len(vals):
                rec = dict(zip(keys, vals))
    print("  $ %s\n    -> %d %s %s" % (" ".join(argv[1:]), p.returncode, out.strip(), err),
          flush=True)
    return p.returncode, rec, err


def expect_clean(label, rc, rec, min_msgs=1):
    if not check(rec is not None, "%s: one JSON object on stdout" % label):
        return
    missing = [k for k in JSON_KEYS if k not in rec]
    check(not missing, "%s: keys present (missing: %s)" % (label, missing))
    check(rc == 0, "%s: exit 0 (got %d)" % (label, rc))
    check(rec.get("errors") == 0, "%s: errors == 0 (got %s)" % (label, rec.get("errors")))
    check(rec.get("mismatches") == 0,
          "%s: mismatches == 0 (got %s)" % (label, rec.get("mismatches")))
    check((rec.get("msgs") or 0) >= min_msgs,
          "%s: msgs >= %d (got %s)" % (label, min_msgs, rec.get("msgs")))


def usage_checks(exe):
    for args in (["--bogus"], ["--port", "0"], ["--mode", "nope"], ["--size", "12Q"],
                 ["--mode", "rate"], ["--json", "--csv"], ["--host", "10.1.2.3"],
                 ["--host", "::2"], ["--threads", "4", "--conns", "2"], ["stray"]):
        p = subprocess.run([exe] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=10)
        err = p.stderr.decode(errors="replace").strip().splitlines()
        check(p.returncode == 2 and len(err) == 1,
              "usage %s: exit 2 with one stderr line (got %d, %r)" % (args, p.returncode, err))
    p = subprocess.run([exe, "--help"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       timeout=10)
    text = p.stdout.decode()
    flags = ("--mode --host --port --threads --conns --size --depth --window --rate --close "
             "--duration --warmup --json --csv --allow-remote --expect-close --expect-reset --help "
             "--version").split()
    missing = [f for f in flags if f not in text]
    check(p.returncode == 0 and not missing, "--help: exit 0, documents every flag "
          "(missing: %s)" % missing)


def closed_port_checks(exe):
    """Against a port nobody listens on echoload quits at once: it must say how long
    it really ran, not the --duration it was asked for (it printed 'duration 10.000 s'
    after 0.03 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on port now (bound, never listened, closed).
    t0 = time.monotonic()
    p = subprocess.run([exe, "--port", str(port), "--conns", "4"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=30)
    wall = time.monotonic() - t0
    out = p.stdout.decode(errors="replace")
    check(p.returncode == 1, "closed port: exit 1 (got %d)" % p.returncode)
    m = re.search(r"^  duration    (\d+\.\d{3}) s \(run ended early, (\d+\.\d{3}) s after "
                  r"start; asked for 1\.000 s warm-up \+ 10\.000 s\)$", out, re.M)
    if check(m is not None, "closed port: the duration line says the run ended early "
             "(got %r)" % out):
        check(m.group(1) == "0.000", "closed port: measured duration 0.000 s (got %s)"
              % m.group(1))
        check(float(m.group(2)) <= wall + 0.001,
              "closed port: ran %s s, no more than the %.3f s it took" % (m.group(2), wall))
    check(wall < 5, "closed port: quits at once (took %.2f s)" % wall)
    rc, rec, _ = echoload(exe, port, "--conns", "4", duration=10, warmup=1)
    if check(rec is not None, "closed port --json: one JSON object"):
        check(rec.get("duration_s") == 0 and rec.get("msgs_per_s") == 0,
              "closed port --json: duration_s 0 and msgs_per_s 0 (got %s, %s)"
              % (rec.get("duration_s"), rec.get("msgs_per_s")))


def main(argv):
    if len(argv) != 4:
        print("usage: test_echoload.py ECHOLOAD REUSEECHO CORRUPT_ECHO", file=sys.stderr)
        return 1
    exe, reuseecho, corrupt = argv[1:]
    for path in (exe, reuseecho, corrupt):
        if not os.access(path, os.X_OK):
            print("FAIL: %s is not an executable" % path)
            return 1
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
    except OSError as e:
        print("SKIPPED: echoload: no IPv4 loopback to test on (%s)" % e)
        return SKIP

    usage_checks(exe)
    closed_port_checks(exe)

    server = None
    try:
        server, port = start_server(
            [reuseecho, "--threads", "1", "--port", "0", "--bind", "127.0.0.1"],
            REUSEECHO_READY)
        runs = [
            ("pingpong depth 4, size 100", ["--mode", "pingpong", "--conns", "8",
                                            "--depth", "4", "--size", "100"], 1),
            ("pingpong 2 threads, size 16K", ["--mode", "pingpong", "--threads", "2",
                                              "--conns", "8", "--size", "16K"], 1),
            ("stream window 64K, chunk 1000", ["--mode", "stream", "--conns", "4",
                                               "--window", "64K", "--size", "1000"], 1),
            ("churn fin", ["--mode", "churn", "--close", "fin", "--conns", "8"], 1),
            ("churn rst", ["--mode", "churn", "--close", "rst", "--conns", "8"], 1),
            # 2000 msgs/s for 1 s: a server that keeps up completes all of them.
            ("rate 2000/s", ["--mode", "rate", "--rate", "2000", "--conns", "8",
                             "--size", "256"], 1000),
        ]
        for label, args, min_msgs in runs:
            rc, rec, _ = echoload(exe, port, *args)
            expect_clean("reuseecho " + label, rc, rec, min_msgs)
            if rec is not None:
                check(rec.get("duration_s") == 1.0, "reuseecho %s: duration_s 1.000, the whole "
                      "window (got %s)" % (label, rec.get("duration_s")))

        rc, rec, _ = echoload(exe, port, "--conns", "4", duration=0.5, fmt="--csv")
        check(rc == 0 and rec is not None and rec.get("errors") == "0"
              and rec.get("mismatches") == "0" and int(rec.get("msgs", "0")) > 0
              and all(k in rec for k in JSON_KEYS),
              "reuseecho --csv: header + one row with the JSON keys, clean run")
        check(server.poll() is None, "reuseecho still running after the load")
    finally:
        rc = stop_server(server)
    check(rc == 0, "reuseecho exits 0 on SIGTERM (got %s)" % rc)

    for every, corrupting in (("0", False), ("1000", True)):
        server = None
        try:
            server, port = start_server([corrupt, "--port", "0", "--every", every],
                                        CORRUPT_READY)
            rc, rec, _ = echoload(exe, port, "--conns", "4", "--size", "1K",
                                  duration=0.5, warmup=0)
            label = "corrupt-echo --every %s" % every
            if not corrupting:
                expect_clean(label, rc, rec)
            elif check(rec is not None, label + ": one JSON object on stdout"):
                check(rc == 1, "%s: exit 1 (got %d)" % (label, rc))
                check(rec.get("mismatches", 0) > 0,
                      "%s: mismatches > 0 (got %s)" % (label, rec.get("mismatches")))
                check(rec.get("errors") == 0,
                      "%s: errors == 0 (got %s)" % (label, rec.get("errors")))
        finally:
            stop_server(server)

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
