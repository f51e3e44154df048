"""Shared code for the reuseecho benchmark scripts (bench/run-suite, bench/scale,
bench/compare, bench/zero-cost, bench/plot).  Python 3 standard library only.

Overview
--------
* Servers (reuseecho and the peers in bench/peers/) are started by this module,
  pinned with ``taskset -c`` to the server CPUs, in their own session, with
  stdout/stderr going to a log file that is polled for the ready line
  (``... listening on HOST:PORT``).  They are stopped by PID only: SIGTERM,
  then SIGKILL after a bounded wait.
* The load generator (``<build>/bench/echoload``) is run pinned to the loader
  CPUs with a hard timeout; its JSON object is parsed from stdout.
* Server CPU per echoed message: utime+stime of the server process
  (/proc/PID/stat fields 14 and 15, clock ticks) are sampled at two instants
  that lie strictly inside echoload's measured window (after its warm-up, a
  margin away from both ends).  That gives the server's CPU utilisation over
  the steady state; dividing by echoload's measured message rate gives CPU
  seconds per message.  Both are rates over the same steady state, so the
  exact alignment of the two windows does not matter.
* UDP cases (``proto: udp``) run the same way against each server's UDP form
  (reuseecho --udp, bench/peers/go-udp-echo, bench/peers/py-udp-echo.py; node
  has none): a message is an echoed datagram, and echoload's sent/lost counts
  give each case's loss (lost / sent over its runs).
* System calls per message: ``perf stat -e raw_syscalls:sys_enter`` attached
  to the server PID, started disabled and switched on/off through a control
  FIFO at the same two instants.  Enabling a syscall tracepoint slows every
  system call on the machine (loader included), so by default this is done in
  one extra "probe" run per case whose throughput/CPU figures are not used.
"""

import argparse
import atexit
import csv
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
PEERS = BENCH / "peers"
CLK_TCK = os.sysconf("SC_CLK_TCK")

READY_RE = re.compile(r"listening on (\S+):(\d+)")


class BenchError(Exception):
    """A fatal configuration/environment problem: stop the script."""


class Skip(Exception):
    """A server or case cannot run here (missing toolchain, missing input)."""


# --------------------------------------------------------------------------
# logging
# --------------------------------------------------------------------------
_quiet = False


def log(msg):
    if not _quiet:
        print(msg, file=sys.stderr, flush=True)


def warn(msg):
    print(f"warning: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# process registry: everything we start is ended by PID, nothing else
# --------------------------------------------------------------------------
_live = {}  # pid -> (Popen, name)


def _register(p, name):
    _live[p.pid] = (p, name)


def _unregister(p):
    _live.pop(p.pid, None)


def stop_process(p, name="process", term_wait=5.0, sig=signal.SIGTERM):
    """Send `sig` to p.pid (only that PID), wait up to term_wait, then SIGKILL.

    Returns the exit status (or None if it could not be reaped)."""
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=term_wait)
        except subprocess.TimeoutExpired:
            warn(f"{name} (pid {p.pid}) did not exit {term_wait:g}s after "
                 f"{signal.Signals(sig).name}; sending SIGKILL")
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                warn(f"{name} (pid {p.pid}) survived SIGKILL?")
    _unregister(p)
    return p.returncode


def cleanup_all():
    for pid, (p, name) in list(_live.items()):
        stop_process(p, name, term_wait=3.0)


class Interrupted(Exception):
    pass


def _on_signal(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def install_signal_handlers():
    atexit.register(cleanup_all)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, _on_signal)


# --------------------------------------------------------------------------
# CPUs
# --------------------------------------------------------------------------
def parse_cpu_list(text):
    """'0-2,5' -> [0, 1, 2, 5]"""
    cpus = set()
    text = (text or "").strip()
    if not text:
        raise ValueError("empty CPU list")
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            a, b = int(a), int(b)
            if b < a:
                raise ValueError(f"bad CPU range {part!r}")
            cpus.update(range(a, b + 1))
        else:
            cpus.add(int(part))
    if not cpus or min(cpus) < 0:
        raise ValueError(f"bad CPU list {text!r}")
    return sorted(cpus)


def fmt_cpu_list(cpus):
    return ",".join(str(c) for c in sorted(cpus))


def allowed_cpus():
    return sorted(os.sched_getaffinity(0))


def cpu_type(text):
    try:
        cpus = parse_cpu_list(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    bad = [c for c in cpus if c not in allowed_cpus()]
    if bad:
        raise argparse.ArgumentTypeError(
            f"CPU(s) {fmt_cpu_list(bad)} not in this process's affinity mask "
            f"({fmt_cpu_list(allowed_cpus())})")
    return cpus


def split_cpus(server_cpus, loader_cpus):
    """Default loader CPUs = allowed CPUs minus server CPUs."""
    if loader_cpus is None:
        loader_cpus = [c for c in allowed_cpus() if c not in server_cpus]
        if not loader_cpus:
            warn(f"no CPU left for the loader besides server CPUs "
                 f"{fmt_cpu_list(server_cpus)}: loader shares them (results are "
                 f"degenerate: server and loader compete for the same cores)")
            loader_cpus = list(server_cpus)
    overlap = sorted(set(server_cpus) & set(loader_cpus))
    if overlap and set(loader_cpus) != set(server_cpus):
        warn(f"server and loader CPUs overlap on {fmt_cpu_list(overlap)}")
    return loader_cpus


def pinned_argv(cpus, argv):
    if shutil.which("taskset"):
        return ["taskset", "-c", fmt_cpu_list(cpus)] + list(argv)
    return list(argv)  # pinned by preexec fallback, see _preexec


def _preexec(cpus):
    def fn():
        if not shutil.which("taskset"):
            os.sched_setaffinity(0, cpus)
    return fn


# --------------------------------------------------------------------------
# /proc sampling
# --------------------------------------------------------------------------
def proc_cpu_ticks(pid):
    """(utime, stime) of the whole process in clock ticks (fields 14, 15)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read().decode("ascii", "replace")
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): field n is rest[n - 3]
    return int(rest[11]), int(rest[12])


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def proc_threads(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None


# Where the load average is read; tests point it at a file they write
# (tests/integration/test_bench_load.py) to exercise the LOADED marking.
LOADAVG_PATH = os.environ.get("REUSEECHO_BENCH_LOADAVG", "/proc/loadavg")


def loadavg():
    try:
        with open(LOADAVG_PATH) as f:
            return f.read().split()[0]
    except OSError:
        return ""


def load1():
    """The 1-minute load average as a float, or None where /proc/loadavg is missing."""
    v = loadavg()
    try:
        return float(v)
    except ValueError:
        return None


class LoadWatch:
    """The machine's load average around and during every run.

    A daemon thread samples /proc/loadavg every second. begin_run()/end_run()
    bracket one echoload run and return the 1-minute load before it, after it,
    and the highest sample in between. A run is LOADED when any of the three
    exceeds `limit` (default: the number of online CPUs): its figures measure the
    other work on the machine as much as the servers, and the scripts refuse to
    present them as publishable (bench/README.md, "Load and trust").
    The bench's own server and loader threads count too: keep their total at or
    under the CPU count (the default pinning does) so a quiet machine stays under.
    """

    def __init__(self, limit=None, period=1.0):
        self.cpus = os.cpu_count() or 1
        self.limit = float(limit) if limit is not None else float(self.cpus)
        self.period = period
        self.lock = threading.Lock()
        self.at_start = load1()
        self.max_all = self.at_start
        self.run_max = None
        self.loaded_runs = 0
        self.runs = 0
        t = threading.Thread(target=self._loop, name="loadwatch", daemon=True)
        t.start()

    def _note(self, v):
        if v is None:
            return
        if self.max_all is None or v > self.max_all:
            self.max_all = v
        if self.run_max is not None and v > self.run_max:
            self.run_max = v

    def _loop(self):
        while True:
            time.sleep(self.period)
            v = load1()
            with self.lock:
                self._note(v)

    def begin_run(self):
        v = load1()
        with self.lock:
            self.run_max = v if v is not None else -1.0
            self._note(v)
        return v

    def end_run(self, res):
        """Store load_before/load_max/load_after/loaded in the run record `res`."""
        v = load1()
        with self.lock:
            self._note(v)
            peak = self.run_max if self.run_max is not None and self.run_max >= 0 else None
            self.run_max = None
            self.runs += 1
            vals = [x for x in (res.get("load_before"), peak, v) if x is not None]
            loaded = bool(vals) and max(vals) > self.limit
            self.loaded_runs += loaded
        res["load_max"] = peak
        res["load_after"] = v
        res["loaded"] = loaded
        return loaded

    def summary(self):
        with self.lock:
            return {"cpus": self.cpus, "limit": self.limit, "at_start": self.at_start,
                    "max": self.max_all, "now": load1(), "runs": self.runs,
                    "loaded_runs": self.loaded_runs}


# --------------------------------------------------------------------------
# build dir, binaries, server specs
# --------------------------------------------------------------------------
def resolve_build_dir(arg):
    p = Path(arg)
    if p.is_absolute():
        return p
    if (Path.cwd() / p).exists():
        return (Path.cwd() / p).resolve()
    return (REPO / p).resolve()


def echoload_path(build):
    exe = build / "bench" / "echoload"
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        raise BenchError(f"load generator not found: {exe} (build it: meson setup "
                         f"{build.name} && meson compile -C {build.name}; or pass --build-dir)")
    return exe


SERVER_KINDS = ("reuseecho", "go", "node", "python")


class ServerSpec:
    """How to start one kind of server. `argv(workers, cpus)` -> list."""

    def __init__(self, name, argv_fn, env=None, multi_worker=False, version=""):
        self.name = name
        self.argv = argv_fn
        self.env = env or {}
        self.multi_worker = multi_worker
        self.version = version


def _tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


def _go_env(tmpdir):
    env = {"GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0"}
    home = os.environ.get("HOME", "")
    if not home or not os.access(home, os.W_OK):
        env["GOCACHE"] = str(Path(tmpdir) / "gocache")
        env["GOPATH"] = str(Path(tmpdir) / "gopath")
        env["HOME"] = str(tmpdir)
    return env


def _go_build(name, tmpdir):
    """Builds bench/peers/NAME with go into tmpdir; returns (go, binary). Raises Skip."""
    go = shutil.which("go")
    if not go:
        raise Skip("go: toolchain not found (Debian: apt-get install -y golang-go)")
    out = Path(tmpdir) / name
    env = dict(os.environ)
    env.update(_go_env(tmpdir))
    log(f"building {name} with {go} ...")
    try:
        r = subprocess.run([go, "build", "-o", str(out), "."], cwd=PEERS / name,
                           env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise Skip(f"go: 'go build' of {name} timed out")
    if r.returncode != 0:
        raise Skip(f"go: build of {name} failed:\n{r.stderr.strip()}")
    return go, out


def prepare_server(kind, build, tmpdir, server_args=()):
    """Return a ServerSpec, building what needs building. Raises Skip.

    The spec's .udp is the same server's UDP form (a ServerSpec of the same
    name) for the UDP cases, or None with the reason in .udp_skip."""
    spec = _prepare_tcp(kind, build, tmpdir, server_args)
    spec.udp, spec.udp_skip = None, None
    try:
        spec.udp = _prepare_udp(kind, build, tmpdir, server_args)
    except Skip as e:
        spec.udp_skip = str(e)
    return spec


def _prepare_udp(kind, build, tmpdir, server_args):
    extra = list(server_args)
    if kind == "reuseecho":
        exe = build / "src" / "reuseecho"
        help_text = _tool_output([str(exe), "--help"])
        if "--udp" not in help_text:
            raise Skip(f"reuseecho: {exe} has no --udp")
        return ServerSpec(
            "reuseecho",
            lambda workers, cpus: [str(exe), "--udp", "--threads", str(workers), "--port", "0",
                                   "--bind", "127.0.0.1", "--cpus", fmt_cpu_list(cpus)] + extra,
            multi_worker=True, version=_tool_version([str(exe), "--version"]))
    if kind == "go":
        go, out = _go_build("go-udp-echo", tmpdir)
        spec = ServerSpec("go", lambda workers, cpus: [str(out), "-addr", "127.0.0.1:0"] + extra,
                          multi_worker=True, version=_tool_version([go, "version"]))
        spec.env_fn = lambda workers: {"GOMAXPROCS": str(workers)}
        return spec
    if kind == "python":
        py = sys.executable or shutil.which("python3")
        script = PEERS / "py-udp-echo.py"
        return ServerSpec("python", lambda workers, cpus: [py, str(script), "--host", "127.0.0.1",
                                                           "--port", "0"] + extra,
                          version=platform.python_version())
    raise Skip(f"{kind}: no UDP echo peer")


def _tool_output(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return r.stdout + r.stderr
    except (OSError, subprocess.SubprocessError):
        return ""


def reuseecho_spec(exe, name="reuseecho", server_args=()):
    """The TCP ServerSpec of the reuseecho binary at `exe` (a Path), named `name`:
    bench/zero-cost runs two builds side by side as "before" and "after"."""
    extra = list(server_args)
    return ServerSpec(
        name,
        lambda workers, cpus: [str(exe), "--threads", str(workers), "--port", "0",
                               "--bind", "127.0.0.1", "--cpus", fmt_cpu_list(cpus)] + extra,
        multi_worker=True, version=_tool_version([str(exe), "--version"]))


def _prepare_tcp(kind, build, tmpdir, server_args):
    extra = list(server_args)
    if kind == "reuseecho":
        exe = build / "src" / "reuseecho"
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            raise Skip(f"reuseecho: {exe} not built (meson compile -C {build})")
        return reuseecho_spec(exe, server_args=server_args)
    if kind == "go":
        go, out = _go_build("go-echo", tmpdir)
        # GOMAXPROCS defaults to the CPUs in the affinity mask; set it
        # explicitly to the worker count so scale/compare runs are explicit.
        spec = ServerSpec("go", lambda workers, cpus: [str(out), "-addr", "127.0.0.1:0"] + extra,
                          multi_worker=True, version=_tool_version([go, "version"]))
        spec.env_fn = lambda workers: {"GOMAXPROCS": str(workers)}
        return spec
    if kind == "node":
        node = shutil.which("node") or shutil.which("nodejs")
        if not node:
            raise Skip("node: Node.js not found (Debian: apt-get install -y nodejs)")
        js = PEERS / "node-echo.js"
        return ServerSpec("node", lambda workers, cpus: [node, str(js), "--host", "127.0.0.1",
                                                         "--port", "0"] + extra,
                          version="node " + _tool_version([node, "--version"]))
    if kind == "python":
        py = sys.executable or shutil.which("python3")
        if not py:
            raise Skip("python: python3 not found")
        script = PEERS / "py-epoll-echo.py"
        return ServerSpec("python", lambda workers, cpus: [py, str(script), "--host", "127.0.0.1",
                                                           "--port", "0"] + extra,
                          version=platform.python_version())
    raise BenchError(f"unknown server kind {kind!r} (one of {', '.join(SERVER_KINDS)})")


class ServerProc:
    """One running server: started pinned, in its own session, logging to a file."""

    def __init__(self, spec, workers, cpus, logpath, start_timeout=15.0):
        self.spec = spec
        self.workers = workers
        self.cpus = list(cpus)
        self.logpath = Path(logpath)
        self.start_timeout = start_timeout
        self.p = None
        self.port = None

    @property
    def pid(self):
        return self.p.pid

    def start(self):
        argv = pinned_argv(self.cpus, self.spec.argv(self.workers, self.cpus))
        env = dict(os.environ)
        env.update(self.spec.env)
        env_fn = getattr(self.spec, "env_fn", None)
        if env_fn:
            env.update(env_fn(self.workers))
        self.logpath.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.logpath, "ab")
        logf.write(f"# {' '.join(argv)}\n".encode())
        logf.flush()
        offset = logf.tell()  # look for the ready line only in what this start writes
        try:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                      stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True,
                                      preexec_fn=_preexec(self.cpus))
        finally:
            logf.close()
        _register(self.p, self.spec.name)
        deadline = time.monotonic() + self.start_timeout
        while True:
            m = None
            try:
                with open(self.logpath, "rb") as f:
                    f.seek(offset)
                    m = READY_RE.search(f.read().decode(errors="replace"))
            except OSError:
                pass
            if m:
                self.port = int(m.group(2))
                break
            if self.p.poll() is not None:
                _unregister(self.p)
                raise Skip(f"{self.spec.name}: exited with status {self.p.returncode} "
                           f"before its ready line; log {self.logpath}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise Skip(f"{self.spec.name}: no ready line within {self.start_timeout:g}s; "
                           f"log {self.logpath}:\n{self.log_tail()}")
            time.sleep(0.02)
        # taskset exec()s the server, so our child's PID is the server's PID.
        comm = proc_comm(self.pid)
        if comm == "taskset":
            raise BenchError("taskset did not exec the server: PID sampling would be wrong")
        return self

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def log_tail(self, n=15):
        try:
            lines = self.logpath.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + l for l in lines[-n:])

    def stop(self):
        if self.p is not None:
            return stop_process(self.p, self.spec.name)
        return None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------
# perf: system calls of the server process
# --------------------------------------------------------------------------
class PerfSyscalls:
    """perf stat -e raw_syscalls:sys_enter -p PID, started disabled (-D -1)
    and switched on/off through a control FIFO, so the counted interval is the
    one we choose, not perf's start-up."""

    EVENT = "raw_syscalls:sys_enter"
    _probe = None  # (ok, reason)

    @classmethod
    def available(cls):
        if cls._probe is None:
            cls._probe = cls._check()
        return cls._probe

    @classmethod
    def _check(cls):
        perf = shutil.which("perf")
        if not perf:
            return False, "perf not found (Debian: apt-get install -y linux-perf)"
        try:
            r = subprocess.run([perf, "stat", "-x,", "-e", cls.EVENT, "-D", "-1",
                                "--control", "fd:0", "--", sys.executable, "-c", ""],
                               capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as e:
            return False, f"perf failed to run: {e}"
        if r.returncode != 0:
            msg = (r.stderr.strip().splitlines() or ["?"])[-1]
            return False, f"perf stat -e {cls.EVENT} unusable: {msg}"
        return True, "ok"

    def __init__(self, pid, workdir):
        self.pid = pid
        self.dir = Path(tempfile.mkdtemp(prefix="perf-", dir=workdir))
        self.ctl = self.dir / "ctl"
        self.ack = self.dir / "ack"
        self.outfile = self.dir / "perf.txt"
        self.p = None
        self.t_on = self.t_off = None

    def start(self):
        os.mkfifo(self.ctl)
        os.mkfifo(self.ack)
        # O_RDWR opens of a FIFO never block (Linux) and keep it open both ways.
        self.ctl_fd = os.open(self.ctl, os.O_RDWR)
        self.ack_fd = os.open(self.ack, os.O_RDWR | os.O_NONBLOCK)
        argv = ["perf", "stat", "-x,", "-e", self.EVENT, "-D", "-1",
                "--control", f"fifo:{self.ctl},{self.ack}", "-p", str(self.pid),
                "-o", str(self.outfile)]
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        _register(self.p, "perf")
        # 'disable' on disabled events is a no-op: it tells us perf is up.
        self._cmd("disable", timeout=20)
        return self

    def _cmd(self, word, timeout=5.0):
        import select
        os.write(self.ctl_fd, (word + "\n").encode())
        deadline = time.monotonic() + timeout
        buf = b""
        while b"ack" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.p.poll() is not None:
                raise BenchError(f"perf did not acknowledge '{word}'")
            r, _, _ = select.select([self.ack_fd], [], [], min(left, 0.2))
            if r:
                try:
                    buf += os.read(self.ack_fd, 64)
                except BlockingIOError:
                    pass
        return time.monotonic()

    def enable(self):
        self.t_on = self._cmd("enable")

    def disable(self):
        self.t_off = self._cmd("disable")

    def finish(self):
        """Stop perf (SIGINT: it prints its counts) and return the count or None."""
        count = None
        if self.p is not None:
            stop_process(self.p, "perf", term_wait=10, sig=signal.SIGINT)
        for fd in (getattr(self, "ctl_fd", None), getattr(self, "ack_fd", None)):
            if fd is not None:
                os.close(fd)
        try:
            for line in self.outfile.read_text(errors="replace").splitlines():
                f = line.split(",")
                if len(f) >= 3 and f[2].startswith(self.EVENT):
                    count = int(f[0]) if f[0].strip().isdigit() else None
        except OSError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
        return count

    @property
    def interval(self):
        if self.t_on is None or self.t_off is None:
            return None
        return self.t_off - self.t_on


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------
# name, echoload mode and knobs. A rate case's rate is filled in at run time
# from its "base" case's result (half its msgs/s) unless --rate is given.
# UDP cases: conns are flows; "stream" over UDP is pingpong with 64 full-MTU
# datagrams (1472 B: an Ethernet MTU less IP and UDP headers) in flight per flow.
SUITE = [
    {"case": "pp64-d1", "mode": "pingpong", "size": 64, "conns": 50, "depth": 1},
    {"case": "pp64-d8", "mode": "pingpong", "size": 64, "conns": 50, "depth": 8},
    {"case": "stream16k", "mode": "stream", "size": 16384, "conns": 8, "depth": None},
    {"case": "churn64", "mode": "churn", "size": 64, "conns": 32, "depth": None},
    {"case": "rate64", "mode": "rate", "size": 64, "conns": 50, "depth": None, "base": "pp64-d1"},
    {"case": "udp-pp64-d1", "proto": "udp", "mode": "pingpong", "size": 64, "conns": 50,
     "depth": 1},
    {"case": "udp-pp64-d8", "proto": "udp", "mode": "pingpong", "size": 64, "conns": 50,
     "depth": 8},
    {"case": "udp-stream1472", "proto": "udp", "mode": "pingpong", "size": 1472, "conns": 8,
     "depth": 64},
    {"case": "udp-rate64", "proto": "udp", "mode": "rate", "size": 64, "conns": 50,
     "depth": None, "base": "udp-pp64-d1"},
]
RATE_BASE = "pp64-d1"
CASE_NAMES = [c["case"] for c in SUITE]


def case_proto(case):
    return case.get("proto") or "tcp"


def rate_base(case):
    """The case whose msgs/s (halved) sets this rate case's offered load."""
    return case.get("base") or RATE_BASE


def select_cases(spec):
    if not spec:
        return [dict(c) for c in SUITE]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in CASE_NAMES]
    if bad:
        raise BenchError(f"unknown case(s) {', '.join(bad)}; known: {', '.join(CASE_NAMES)}")
    return [dict(c) for c in SUITE if c["case"] in names]


# --------------------------------------------------------------------------
# one loader run
# --------------------------------------------------------------------------
LOADER_KEYS = ["mode", "conns", "threads", "size", "depth", "duration_s", "msgs", "msgs_per_s",
               "mb_per_s", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "errors",
               "mismatches", "loader_cpu", "proto", "sent", "received", "lost", "late",
               "reordered", "duplicated", "corrupted", "loader_drops"]


def _num(x):
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)) and math.isfinite(x):
        return x
    try:
        v = float(x)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        return None


def parse_loader_json(text):
    """The last line of stdout that is a JSON object (or the whole text)."""
    for chunk in [text] + text.splitlines()[::-1]:
        chunk = chunk.strip()
        if chunk.startswith("{"):
            try:
                obj = json.loads(chunk)
                if isinstance(obj, dict):
                    return obj
            except ValueError:
                continue
    return None


def sleep_until(t):
    while True:
        d = t - time.monotonic()
        if d <= 0:
            return
        time.sleep(min(d, 0.05))


def loader_argv(echoload, case, cfg, port):
    argv = [str(echoload)]
    if case_proto(case) != "tcp":
        argv += ["--proto", case_proto(case)]
    argv += ["--mode", case["mode"], "--host", "127.0.0.1", "--port", str(port),
            # echoload refuses more threads than connections
            "--threads", str(min(cfg.loader_threads, case["conns"])),
            "--conns", str(case["conns"]),
            "--size", str(case["size"])]
    if case.get("depth"):
        argv += ["--depth", str(case["depth"])]
    if case["mode"] == "rate":
        argv += ["--rate", str(int(round(case["rate"])))]
    argv += ["--duration", f"{cfg.duration:g}", "--warmup", f"{cfg.warmup:g}", "--json"]
    argv += list(cfg.loader_args)
    return argv


def run_loader_once(echoload, case, cfg, server, logdir, tag, perf_mode=False):
    """Run echoload once against `server`; sample server CPU (and syscalls
    if perf_mode) inside the measured window. Returns a result dict."""
    argv = pinned_argv(cfg.loader_cpus, loader_argv(echoload, case, cfg, server.port))
    res = {"run": tag, "probe": bool(perf_mode), "status": "ok", "loader_argv": argv}
    W, D = cfg.warmup, cfg.duration
    margin = min(0.25, 0.1 * D)
    perf = None
    if perf_mode:
        perf = PerfSyscalls(server.pid, cfg.tmpdir)
        try:
            perf.start()
        except (BenchError, OSError) as e:
            res["perf_error"] = str(e)
            perf.finish()
            perf = None
    out_path = logdir / f"{tag}.stdout"
    err_path = logdir / f"{tag}.stderr"
    res["loadavg"] = loadavg()
    res["load_before"] = cfg.load_watch.begin_run()
    with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                             start_new_session=True, preexec_fn=_preexec(cfg.loader_cpus))
        _register(p, "echoload")
        try:
            s0 = s1 = None
            sleep_until(t0 + W + margin)
            if p.poll() is None and server.alive():
                if perf:
                    perf.enable()
                s0 = (time.monotonic(), proc_cpu_ticks(server.pid))
                sleep_until(t0 + W + D - margin)
                if p.poll() is None and server.alive():
                    s1 = (time.monotonic(), proc_cpu_ticks(server.pid))
                    if perf:
                        perf.disable()
            limit = t0 + W + D + cfg.grace
            try:
                p.wait(timeout=max(0.1, limit - time.monotonic()))
            except subprocess.TimeoutExpired:
                res["status"] = "timeout"
                warn(f"echoload exceeded {W + D + cfg.grace:g}s; stopping it (pid {p.pid})")
                stop_process(p, "echoload", term_wait=3)
        finally:
            if p.poll() is None:
                stop_process(p, "echoload", term_wait=3)
            _unregister(p)
            syscalls = perf.finish() if perf else None
    res["wall_s"] = round(time.monotonic() - t0, 3)
    if cfg.load_watch.end_run(res):
        warn(f"{tag}: LOADED: load average {fmt_load(res)} exceeded {cfg.load_watch.limit:g} "
             f"(the CPU count unless --max-load): these figures are not fit to publish")
    res["exit"] = p.returncode
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    obj = parse_loader_json(stdout)
    if res["status"] == "ok" and p.returncode not in (0, 1):
        res["status"] = "usage" if p.returncode == 2 else f"exit-{p.returncode}"
        res["stderr_tail"] = stderr.strip().splitlines()[-5:]
    if obj is None:
        if res["status"] == "ok":
            res["status"] = "no-json"
        res["stderr_tail"] = stderr.strip().splitlines()[-5:]
    else:
        for k in LOADER_KEYS:
            res[k] = obj.get(k)
        res["loader_json"] = obj
        if res["msgs_per_s"] is None and _num(obj.get("msgs")) and _num(obj.get("duration_s")):
            res["msgs_per_s"] = obj["msgs"] / obj["duration_s"]
    if res["status"] == "ok" and p.returncode == 1:
        res["status"] = "errors"
    if not server.alive():
        res["status"] = "server-died"
    # server CPU over the sampled steady-state window
    rate = _num(res.get("msgs_per_s"))
    if s0 and s1 and s1[0] > s0[0]:
        dt = s1[0] - s0[0]
        du = s1[1][0] - s0[1][0]
        ds = s1[1][1] - s0[1][1]
        util = (du + ds) / CLK_TCK / dt
        res["sample_s"] = round(dt, 4)
        res["server_cpu_util"] = util
        res["server_user_share"] = du / (du + ds) if du + ds > 0 else None
        res["server_cpu_us_per_msg"] = util * 1e6 / rate if rate else None
    else:
        res["server_cpu_util"] = res["server_user_share"] = res["server_cpu_us_per_msg"] = None
        if res["status"] == "ok":
            res["status"] = "no-sample"
    if perf_mode:
        iv = perf.interval if perf else None
        res["syscalls"] = syscalls
        res["perf_interval_s"] = iv
        res["syscalls_per_msg"] = (syscalls / (rate * iv)) if (syscalls is not None and rate
                                                                and iv) else None
    return res


# --------------------------------------------------------------------------
# one case = repeats (+ probe) against a fresh server
# --------------------------------------------------------------------------
SUMMARY_FIELDS = [
    "script", "server", "workers", "server_cpus", "loader_cpus", "case", "mode", "size", "conns",
    "depth", "rate", "proto", "status", "repeats_ok", "repeats", "msgs_per_s", "mb_per_s", "p50_us",
    "p90_us", "p99_us", "p999_us", "max_us", "errors", "mismatches", "loader_cpu", "load_max",
    "loaded",
    "server_cpu_util", "server_cpu_us_per_msg", "server_user_share", "syscalls_per_msg",
    "msgs_per_s_min", "msgs_per_s_max", "cpu_us_per_msg_min", "cpu_us_per_msg_max",
    "sent", "lost", "loss", "loader_drops", "reordered", "duplicated", "note",
]
RUN_FIELDS = [
    "script", "server", "workers", "case", "run", "probe", "status", "exit", "wall_s", "loadavg",
    "load_before", "load_max", "load_after", "loaded",
    "duration_s", "msgs", "msgs_per_s", "mb_per_s", "p50_us", "p90_us", "p99_us", "p999_us",
    "max_us", "errors", "mismatches", "loader_cpu", "sample_s", "server_cpu_util",
    "server_cpu_us_per_msg", "server_user_share", "syscalls", "perf_interval_s",
    "syscalls_per_msg", "proto", "sent", "received", "lost", "late", "reordered", "duplicated",
    "corrupted", "loader_drops",
]
MEDIAN_KEYS = ["msgs_per_s", "mb_per_s", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
               "server_cpu_util", "server_cpu_us_per_msg", "server_user_share"]


def median_of(runs, key):
    vals = [_num(r.get(key)) for r in runs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def run_case(ctx, spec, workers, server_cpus, case):
    """Start a fresh server, run the case cfg.repeat times (+ one perf probe
    run), stop the server. Returns (summary_row, runs). A UDP case runs
    against spec.udp, the same server's UDP form."""
    cfg = ctx.cfg
    udp = case_proto(case) == "udp"
    label = f"{spec.name}-w{workers}-{case['case']}"
    logdir = ctx.out / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    runs = []
    note = []
    row = {"script": ctx.script, "server": spec.name, "workers": workers,
           "server_cpus": fmt_cpu_list(server_cpus), "loader_cpus": fmt_cpu_list(cfg.loader_cpus),
           "case": case["case"], "mode": case["mode"], "size": case["size"],
           "conns": case["conns"], "depth": case.get("depth") or "",
           "rate": round(case["rate"]) if case.get("rate") else "", "repeats": cfg.repeat,
           "proto": case_proto(case)}
    if udp:
        if getattr(spec, "udp", None) is None:
            why = getattr(spec, "udp_skip", None) or f"{spec.name}: no UDP form"
            row.update({"status": "skipped", "repeats_ok": 0, "note": why.splitlines()[0]})
            log(f"  {label}: skipped: {why.splitlines()[0]}")
            return row, runs
        spec = spec.udp
    perf_ok, perf_reason = (False, "disabled (--syscalls off)")
    if cfg.syscalls != "off":
        perf_ok, perf_reason = PerfSyscalls.available()
    server = ServerProc(spec, workers, server_cpus, logdir / f"{label}.server.log")
    try:
        server.start()
        threads = proc_threads(server.pid)
        log(f"  {label}: server pid {server.pid} port {server.port} threads {threads} "
            f"cpus {fmt_cpu_list(server_cpus)}; loader cpus {fmt_cpu_list(cfg.loader_cpus)} "
            f"(load {loadavg()})")
        plan = [(f"{label}-r{i + 1}", cfg.syscalls == "inline" and perf_ok)
                for i in range(cfg.repeat)]
        if cfg.syscalls == "separate" and perf_ok:
            plan.append((f"{label}-probe", True))
        for tag, perf_mode in plan:
            if not server.alive():
                log(f"  {label}: server died; restarting it")
                note.append("server restarted")
                server.stop()
                server.start()
            r = run_loader_once(ctx.echoload, case, cfg, server, logdir, tag, perf_mode)
            r.update({"script": ctx.script, "server": spec.name, "workers": workers,
                      "case": case["case"]})
            runs.append(r)
            ctx.add_run(r)
            log("    " + fmt_run(r))
            if r["status"] == "usage":
                note.append("echoload usage error: " + " | ".join(r.get("stderr_tail") or []))
                break
    except Skip as e:
        row.update({"status": "skipped", "repeats_ok": 0, "note": str(e).splitlines()[0]})
        warn(str(e))
        return row, runs
    finally:
        server.stop()

    main_runs = [r for r in runs if not r["probe"] or cfg.syscalls == "inline"]
    good = [r for r in main_runs if r["status"] == "ok"]
    row["repeats_ok"] = len(good)
    use = good
    if not good:
        use = [r for r in main_runs if _num(r.get("msgs_per_s"))]
        row["status"] = "failed" if not use else "errors"
    else:
        row["status"] = "ok" if len(good) == len(main_runs) else "partial"
    bad = sorted({r["status"] for r in main_runs if r["status"] != "ok"})
    if bad:
        note.append("run status: " + ",".join(bad))
    for k in MEDIAN_KEYS:
        row[k] = median_of(use, k)
    row["errors"] = sum(int(_num(r.get("errors")) or 0) for r in main_runs)
    row["mismatches"] = sum(int(_num(r.get("mismatches")) or 0) for r in main_runs)
    if udp:
        # Over every main run, warm-ups included: loss is rare, so pool it.
        for k in ("sent", "lost", "loader_drops", "reordered", "duplicated"):
            row[k] = sum(int(_num(r.get(k)) or 0) for r in main_runs)
        row["loss"] = row["lost"] / row["sent"] if row["sent"] else None
        if row["loader_drops"]:
            note.append(f"echoload's own sockets dropped {row['loader_drops']} answers: not all "
                        f"of the {row['lost']} lost are the server's")
    lc = [r.get("loader_cpu") for r in use if r.get("loader_cpu") is not None]
    if lc and all(_num(x) is not None for x in lc):
        row["loader_cpu"] = statistics.median(_num(x) for x in lc)
    elif lc:
        row["loader_cpu"] = json.dumps(lc[len(lc) // 2], sort_keys=True)
    vals = [_num(r.get("msgs_per_s")) for r in use if _num(r.get("msgs_per_s"))]
    row["msgs_per_s_min"] = min(vals) if vals else None
    row["msgs_per_s_max"] = max(vals) if vals else None
    vals = [_num(r.get("server_cpu_us_per_msg")) for r in use
            if _num(r.get("server_cpu_us_per_msg"))]
    row["cpu_us_per_msg_min"] = min(vals) if vals else None
    row["cpu_us_per_msg_max"] = max(vals) if vals else None
    if perf_ok:
        probe = [r for r in runs if r["probe"]]
        row["syscalls_per_msg"] = median_of(probe, "syscalls_per_msg")
        if row["syscalls_per_msg"] is None:
            note.append("syscalls: perf run gave no count")
    else:
        row["syscalls_per_msg"] = None
        note.append(f"syscalls: {perf_reason}")
    if cfg.syscalls == "inline" and perf_ok:
        note.append("perf inline: CPU figures include tracepoint overhead")
    util = _num(row.get("server_cpu_util"))
    if util is not None and case["mode"] != "rate":
        cap = min(workers, len(server_cpus)) if spec.multi_worker else 1
        if util < 0.85 * cap:
            note.append(f"server not saturated ({util * 100:.0f}% of {cap} CPU): "
                        f"loader/latency-bound, compare CPU per message")
    lcpu = _num(row.get("loader_cpu"))
    if lcpu is not None and lcpu >= 0.9:
        # echoload's loader_cpu: busy share of its threads' cores (0..1)
        note.append(f"loader saturated ({lcpu * 100:.0f}% of its cores)" +
                    (": latencies are loader-bound" if case["mode"] == "rate" else ""))
    peaks = [x for r in runs for x in (r.get("load_before"), r.get("load_max"),
                                       r.get("load_after")) if x is not None]
    row["load_max"] = max(peaks) if peaks else None
    row["loaded"] = any(r.get("loaded") for r in runs)
    if row["loaded"]:
        note.insert(0, f"LOADED: load average up to {row['load_max']:g} > "
                       f"{cfg.load_watch.limit:g}, not fit to publish")
    row["note"] = "; ".join(note)
    return row, runs


def load_cell(r):
    """Table cell: the highest load average seen around a case, LOADED past the limit."""
    v = _num(r.get("load_max"))
    loaded = r.get("loaded") in (True, "True", "true", "1")
    return ("-" if v is None else f"{v:.2f}") + (" LOADED" if loaded else "")


LOAD_COL = ("load max", load_cell)


def fmt_load(res):
    """'0.52 before, 1.10 max, 0.61 after' for one run record."""
    def f(x):
        return "-" if x is None else f"{x:.2f}"
    return (f"{f(res.get('load_before'))} before, {f(res.get('load_max'))} max, "
            f"{f(res.get('load_after'))} after")


def fmt_num(v, digits=3):
    v = _num(v)
    if v is None:
        return "-"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.{digits}g}M" if a < 1e9 else f"{v / 1e9:.{digits}g}G"
    if a >= 1e4:
        return f"{v / 1e3:.{digits}g}k"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def fmt_pct(v):
    v = _num(v)
    return "-" if v is None else f"{v * 100:.0f}%"


def fmt_loss(r):
    """Table cell: a UDP case's lost/sent as a percentage, '-' for TCP."""
    v = _num(r.get("loss"))
    if v is None:
        return "-"
    return "0" if v == 0 else f"{v * 100:.3g}%"


LOSS_COL = ("loss", fmt_loss)


def fmt_run(r):
    s = (f"{r['run']}: {r['status']} msgs/s={fmt_num(r.get('msgs_per_s'))} "
         f"p99={fmt_num(r.get('p99_us'))}us cpu/msg={fmt_num(r.get('server_cpu_us_per_msg'))}us "
         f"util={fmt_pct(r.get('server_cpu_util'))} load {fmt_load(r)}"
         f"{' LOADED' if r.get('loaded') else ''}")
    if r.get("probe"):
        s += f" syscalls/msg={fmt_num(r.get('syscalls_per_msg'))}"
        if r.get("perf_error"):
            s += f" perf error: {r['perf_error']}"
    if r.get("stderr_tail") and r["status"] != "ok":
        s += "\n      " + "\n      ".join(r["stderr_tail"])
    return s


# --------------------------------------------------------------------------
# configuration, output dir, results files
# --------------------------------------------------------------------------
def positive_float(s):
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return v


def nonneg_float(s):
    v = float(s)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return v


def add_common_args(ap, server_cpus_default="0", repeat_default=3, cases_default=None,
                    syscalls_default="separate"):
    g = ap.add_argument_group("common options")
    g.add_argument("--build-dir", default="build", metavar="DIR",
                   help="meson build dir holding src/reuseecho and bench/echoload (default: build)")
    g.add_argument("--duration", type=positive_float, default=10.0, metavar="S",
                   help="measured seconds per run (default 10)")
    g.add_argument("--warmup", type=nonneg_float, default=2.0, metavar="S",
                   help="echoload warm-up seconds before measuring (default 2)")
    g.add_argument("--repeat", type=positive_int, default=repeat_default, metavar="R",
                   help=f"runs per case; medians are reported (default {repeat_default})")
    g.add_argument("--out", metavar="DIR",
                   help="output directory (default bench/out/<timestamp>)")
    g.add_argument("--cases", metavar="LIST", default=cases_default,
                   help=f"subset of cases, comma separated (default "
                        f"{cases_default or 'all: ' + ','.join(CASE_NAMES)})")
    g.add_argument("--rate", type=positive_float, metavar="MSGS_PER_S",
                   help="offered rate for rate64 and udp-rate64 (default: half the measured "
                        "msgs/s of pp64-d1 and udp-pp64-d1)")
    if server_cpus_default is not None:
        g.add_argument("--server-cpus", type=cpu_type, default=None, metavar="LIST",
                       help=f"CPUs for the server (default {server_cpus_default})")
    g.add_argument("--loader-cpus", type=cpu_type, default=None, metavar="LIST",
                   help="CPUs for echoload (default: every allowed CPU not given to the server)")
    g.add_argument("--loader-threads", type=positive_int, metavar="N",
                   help="echoload --threads (default: number of loader CPUs)")
    g.add_argument("--loader-arg", action="append", default=[], metavar="ARG",
                   help="extra argument passed to echoload (repeatable), e.g. --loader-arg=--close=rst")
    g.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument passed to the server (repeatable), e.g. --server-arg=--no-pin")
    g.add_argument("--syscalls", choices=("separate", "inline", "off"), default=syscalls_default,
                   help="count server system calls with perf: in one extra probe run per case "
                        "(separate: keeps tracepoint overhead out of the CPU figures), "
                        f"during every run (inline), or not at all (off) (default "
                        f"{syscalls_default})")
    g.add_argument("--grace", type=positive_float, default=None, metavar="S",
                   help="extra seconds echoload may take beyond warm-up+duration before it is "
                        "killed (default 10 + duration/2)")
    g.add_argument("--max-load", type=positive_float, default=None, metavar="LOAD",
                   help="a run whose 1-minute load average exceeds LOAD before, during or after "
                        "it is LOADED: marked in every output and table, and the script exits 4 "
                        "(default: the number of online CPUs)")
    g.add_argument("--allow-loaded", action="store_true",
                   help="exit as usual even when runs were LOADED (they stay marked)")
    g.add_argument("--quiet", action="store_true", help="less progress output on stderr")
    return ap


class Config:
    pass


def make_config(args, server_cpus):
    global _quiet
    _quiet = args.quiet
    cfg = Config()
    cfg.duration = args.duration
    cfg.warmup = args.warmup
    cfg.repeat = args.repeat
    cfg.syscalls = args.syscalls
    cfg.grace = args.grace if args.grace else 10.0 + args.duration / 2
    cfg.loader_cpus = split_cpus(server_cpus, args.loader_cpus)
    cfg.loader_threads = args.loader_threads or len(cfg.loader_cpus)
    cfg.loader_args = list(args.loader_arg)
    cfg.server_args = list(args.server_arg)
    cfg.rate = args.rate
    cfg.allow_loaded = args.allow_loaded
    cfg.load_watch = LoadWatch(args.max_load)
    if cfg.load_watch.at_start is not None and cfg.load_watch.at_start > cfg.load_watch.limit:
        warn(f"the machine is busy before any run: load average {cfg.load_watch.at_start:g} > "
             f"{cfg.load_watch.limit:g}; every run will be marked LOADED")
    cfg.build = resolve_build_dir(args.build_dir)
    cfg.tmpdir = tempfile.mkdtemp(prefix="reuseecho-bench-")
    atexit.register(shutil.rmtree, cfg.tmpdir, True)
    return cfg


def default_server_cpus():
    """CPU 0 if allowed, else the first allowed CPU."""
    cpus = allowed_cpus()
    return [0] if 0 in cpus else cpus[:1]


def default_out_dir():
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = BENCH / "out"
    d = base / stamp
    i = 2
    while d.exists():
        d = base / f"{stamp}-{i}"
        i += 1
    return d


def git_head():
    """Commit of the checkout, read from .git without running git."""
    try:
        gitdir = REPO / ".git"
        if gitdir.is_file():  # worktree: "gitdir: PATH"
            gitdir = Path(gitdir.read_text().split(":", 1)[1].strip())
        head = (gitdir / "HEAD").read_text().strip()
        if head.startswith("ref:"):
            ref = head.split(None, 1)[1]
            p = gitdir / ref
            if p.exists():
                return p.read_text().strip()
            common = gitdir / "commondir"  # a worktree keeps its branches there
            if common.is_file():
                gitdir = (gitdir / common.read_text().strip()).resolve()
                p = gitdir / ref
                if p.exists():
                    return p.read_text().strip()
            packed = gitdir / "packed-refs"
            if packed.exists():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
            return ref
        return head
    except (OSError, IndexError):
        return ""


def host_info():
    info = {"kernel": platform.release(), "machine": platform.machine(),
            "cpus_online": os.cpu_count(), "cpus_allowed": fmt_cpu_list(allowed_cpus()),
            "clk_tck": CLK_TCK, "python": platform.python_version(), "loadavg": loadavg()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["governor"] = Path(
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    except OSError:
        pass
    return info


class Context:
    """Output directory + incremental result files (rewritten after every case,
    so an interrupted run keeps what it measured)."""

    def __init__(self, script, args, cfg, out=None):
        self.script = script
        self.cfg = cfg
        self.out = Path(out).resolve() if out else default_out_dir()
        self.out.mkdir(parents=True, exist_ok=True)
        if self.out.parent == BENCH / "out":
            gi = self.out.parent / ".gitignore"
            if not gi.exists():
                gi.write_text("# benchmark output, not source\n*\n")
        self.echoload = None
        self.runs = []
        self.summary = []
        self.skipped = {}
        self.meta = {
            "script": script,
            "argv": sys.argv,
            "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "git_head": git_head(),
            "host": host_info(),
            "config": {k: (str(v) if isinstance(v, Path) else v)
                       for k, v in vars(cfg).items() if k not in ("tmpdir", "load_watch")},
            "method": {
                "server_cpu": "utime+stime of the server process (/proc/PID/stat fields 14,15) "
                              "sampled at warmup+margin and warmup+duration-margin after echoload "
                              "starts; cpu_us_per_msg = (CPU s / wall s over that window) * 1e6 "
                              "/ echoload msgs_per_s; medians over repeats",
                "syscalls": "perf stat -e raw_syscalls:sys_enter -p PID enabled over the same "
                            "window (mode: %s)" % cfg.syscalls,
            },
            "servers": {},
        }
        perf_ok, reason = PerfSyscalls.available() if cfg.syscalls != "off" else (False, "off")
        self.meta["perf"] = {"usable": perf_ok, "reason": reason}
        if cfg.syscalls != "off" and not perf_ok:
            warn(f"system calls per message not measured: {reason}")

    def set_echoload(self, path):
        self.echoload = path
        self.meta["echoload"] = str(path)

    def add_server(self, spec, argv_example, udp_argv=None):
        self.meta["servers"][spec.name] = {"version": spec.version, "argv": argv_example,
                                           "udp_argv": udp_argv,
                                           "udp_skip": getattr(spec, "udp_skip", None)}
        self.write()

    def add_run(self, r):
        self.runs.append(r)
        self.write()

    def add_summary(self, row):
        self.summary.append(row)
        self.write()

    def loaded(self):
        return self.cfg.load_watch.summary()["loaded_runs"] > 0

    def provenance(self):
        """Lines that say which run a table comes from: date, command, commit, load."""
        ld = self.cfg.load_watch.summary()

        def f(x):
            return "-" if x is None else f"{x:.2f}"
        cmd = " ".join([f"bench/{self.script}"] + [a if a and " " not in a else repr(a)
                                                    for a in sys.argv[1:]])
        lines = [f"Run: {self.meta['started']}, `{cmd}`, commit {(self.meta['git_head'] or '?')[:12]}, "
                 f"load average {f(ld['at_start'])} at start, {f(ld['max'])} max, "
                 f"{f(ld['now'])} at end on {ld['cpus']} CPUs."]
        if ld["loaded_runs"]:
            lines.insert(0, f"LOADED RUN: the load average exceeded {ld['limit']:g} in "
                            f"{ld['loaded_runs']} of {ld['runs']} runs (max {f(ld['max'])}): "
                            f"these figures measure the other work on the machine too and are "
                            f"not fit to publish; rerun on a quiet machine.")
        return lines

    def finish(self, rc):
        """The exit status: 4 when runs were LOADED and --allow-loaded was not given."""
        self.write()
        if self.loaded():
            for line in self.provenance()[:1]:
                print("\n*** " + line + " ***", file=sys.stderr)
            if not self.cfg.allow_loaded:
                print("exit 4: LOADED runs (pass --allow-loaded to exit as usual; the marks "
                      "stay)", file=sys.stderr)
                return 4
        return rc

    def write(self):
        self.meta["finished"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self.meta["load"] = self.cfg.load_watch.summary()
        data = dict(self.meta)
        data["skipped"] = self.skipped
        data["summary"] = self.summary
        data["runs"] = self.runs
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
        tmp.replace(self.out / "results.json")
        write_csv(self.out / "summary.csv", SUMMARY_FIELDS, self.summary)
        write_csv(self.out / "runs.csv", RUN_FIELDS, self.runs)


def _csv_val(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return v


def write_csv(path, fields, rows):
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_val(r.get(k)) for k in fields})
    tmp.replace(path)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------
# running a whole suite for one server configuration
# --------------------------------------------------------------------------
def run_cases(ctx, spec, workers, server_cpus, cases, rate_from=None):
    """Run `cases` for one server config; returns the rows. A rate case gets
    its rate from cfg.rate, else from `rate_from` (a dict: base case name ->
    rate), else from half of this run's result for its base case."""
    rows = []
    bases = dict(rate_from or {})
    own = rate_from is None
    for case in cases:
        if case["mode"] == "rate":
            rate = ctx.cfg.rate or bases.get(rate_base(case))
            if not rate:
                msg = (f"{case['case']}: no rate: {rate_base(case)} gave no throughput in this "
                       f"run (run it too, or pass --rate)")
                warn(msg)
                row = {"script": ctx.script, "server": spec.name, "workers": workers,
                       "case": case["case"], "mode": "rate", "status": "skipped", "note": msg}
                ctx.add_summary(row)
                rows.append(row)
                continue
            case = dict(case, rate=rate)
        row, _ = run_case(ctx, spec, workers, server_cpus, case)
        ctx.add_summary(row)
        rows.append(row)
        if own and _num(row.get("msgs_per_s")):
            bases[case["case"]] = row["msgs_per_s"] / 2
    return rows


def print_table(rows, cols, out=sys.stdout):
    """rows: list of dicts; cols: list of (header, key or fn)."""
    cells = [[h for h, _ in cols]]
    for r in rows:
        line = []
        for _, k in cols:
            v = k(r) if callable(k) else r.get(k)
            line.append(v if isinstance(v, str) else fmt_num(v))
        cells.append(line)
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(cols))]
    text = []
    for n, c in enumerate(cells):
        text.append("  ".join(str(x).rjust(w) if i else str(x).ljust(w)
                              for i, (x, w) in enumerate(zip(c, widths))).rstrip())
        if n == 0:
            text.append("  ".join("-" * w for w in widths))
    s = "\n".join(text) + "\n"
    out.write(s)
    return s


def main_wrapper(fn):
    """Run fn() with signal handling and tidy error reporting; exit code."""
    install_signal_handlers()
    try:
        return fn()
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted) as e:
        print(f"\ninterrupted ({e}); stopping what was started", file=sys.stderr)
        return 130
    finally:
        cleanup_all()
