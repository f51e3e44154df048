"""Shared helpers for the stress suite (tests/stress/*.py); Python 3 stdlib only.

Every stress test prints one or more lines
    RESULT name: figure (criterion) PASS|FAIL
and exits 0 when every criterion passed, 1 when one failed, 77 when it cannot run here
(with the reason on stderr). Every loop is bounded in count and in time.
"""
import hashlib
import json
import os
import resource
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import retest  # noqa: E402,F401

SKIP = 77
MiB = 1 << 20
WRAPPER = os.environ.get("REUSEECHO_WRAPPER", "").split()
# Deadlines (never pass criteria) stretch under a wrapper such as valgrind.
SCALE = 10.0 if WRAPPER else 1.0

_results = []
_servers = []       # every server started through start_server, scanned by finish()
SANITIZER_MARKS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer")


def log(fmt, *args):
    sys.stderr.write("  " + (fmt % args if args else fmt) + "\n")
    sys.stderr.flush()


def result(name, figure, criterion, ok):
    """Print one RESULT line and remember the verdict."""
    ok = bool(ok)
    _results.append((name, ok))
    sys.stdout.write("RESULT %s: %s (%s) %s\n" % (name, figure, criterion, "PASS" if ok else "FAIL"))
    sys.stdout.flush()
    return ok


def finish():
    """Exit 0 if every RESULT passed (and there was at least one), else 1. First, one
    more RESULT: no sanitizer report in the stderr of any server this test started."""
    if _servers:
        found = []
        for srv in _servers:
            try:
                err = srv.stderr()
            except (OSError, ValueError):
                continue
            for line in err.splitlines():
                if any(m in line for m in SANITIZER_MARKS):
                    found.append(line.strip()[:200])
        result("sanitizer_reports", "%d in the logs of %d server(s)%s"
               % (len(found), len(_servers), (": " + found[0]) if found else ""), "== 0",
               not found)
    failed = [n for n, ok in _results if not ok]
    if failed or not _results:
        sys.stdout.write("FAILED: %s\n" % (", ".join(failed) or "no result produced"))
        sys.exit(1)
    sys.exit(0)


def skip(reason):
    """Exit 77 with the `SKIPPED: what: why` line that tests/check-skips looks for."""
    what = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    if what.startswith("test_"):
        what = what[len("test_"):]
    sys.stdout.write("SKIPPED: %s: %s\n" % (what, " ".join(str(reason).split())))
    sys.stdout.flush()
    sys.exit(SKIP)


def env_num(name, default, kind=float):
    v = os.environ.get(name)
    return kind(v) if v not in (None, "") else default


def raise_nofile():
    """Soft RLIMIT_NOFILE := hard; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def tmpdir(prefix="restress-"):
    d = tempfile.mkdtemp(prefix=prefix)
    return d


def rmtree(d):
    shutil.rmtree(d, ignore_errors=True)


# --- private network namespace ---------------------------------------------------------

NETNS_ENV = "REUSEECHO_STRESS_IN_NETNS"


def in_netns():
    return os.environ.get(NETNS_ENV) == "1"


def unshare_works():
    """(True, "") when `unshare -n` works here, else (False, reason)."""
    if shutil.which("unshare") is None:
        return False, "unshare(1) not installed"
    try:
        p = subprocess.run(["unshare", "-n", "--", "true"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=20, universal_newlines=True)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "unshare -n: %s" % e
    if p.returncode != 0:
        return False, "unshare -n not permitted: %s" % p.stderr.strip()
    return True, ""


def reexec_in_netns(require=True):
    """Re-run this script inside `unshare -n --` (private loopback, sysctls, rules) and
    exit with its status. Inside (second call) bring lo up and return True. When
    unshare is not permitted: exit 77 if require, else return False."""
    if in_netns():
        r = subprocess.run(["ip", "link", "set", "lo", "up"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=20)
        if r.returncode != 0:
            # No ip(8): the sysfs-free way is not available in the stdlib; give up.
            skip("cannot bring lo up in the namespace: %s" % r.stdout.strip())
        return True
    ok, why = unshare_works()
    if not ok:
        if require:
            skip(why)
        log("no private netns: %s", why)
        return False
    env = dict(os.environ)
    env[NETNS_ENV] = "1"
    cmd = ["unshare", "-n", "--", sys.executable] + [os.path.abspath(sys.argv[0])] + sys.argv[1:]
    p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL)
    sys.exit(p.returncode)


def run_in_netns(argv, timeout):
    """Run argv inside a fresh `unshare -n` (lo up); returns CompletedProcess (text)."""
    env = dict(os.environ)
    env[NETNS_ENV] = "1"
    return subprocess.run(["unshare", "-n", "--"] + argv, env=env, stdin=subprocess.DEVNULL,
                          timeout=timeout)


def sysctl_write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


# --- server helpers ------------------------------------------------------------------

def start_server(*args, control=None, **kw):
    """retest.Server with an explicit control socket path (returned as srv.ctl)."""
    d = None
    if control is None:
        d = tmpdir()
        control = os.path.join(d, "control.sock")
    srv = retest.Server("--control", control, *args, **kw)
    srv.ctl = control
    srv.ctl_dir = d
    _servers.append(srv)
    return srv


def stats(srv_or_path, timeout=5.0):
    path = srv_or_path if isinstance(srv_or_path, str) else srv_or_path.ctl
    return retest.stats_json(path, timeout)


def ctl(srv_or_path, line, timeout=10.0):
    path = srv_or_path if isinstance(srv_or_path, str) else srv_or_path.ctl
    return retest.ctl_command(path, line, timeout)


def closed_total(tot):
    return sum(v for k, v in tot.items() if k.startswith("closed_"))


def proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def num_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_exit(proc, timeout):
    """Wait for a Popen to exit; returns (returncode or None, seconds waited)."""
    t0 = time.monotonic()
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
    return rc, time.monotonic() - t0


# --- echoload ------------------------------------------------------------------------

def echoload_argv(port, *args, host="127.0.0.1"):
    return [retest.binary("echoload"), "--host", host, "--port", str(port), "--json"] + \
        [str(a) for a in args]


def echoload(port, *args, host="127.0.0.1", timeout=120.0):
    """Run echoload to completion; returns (exit status, parsed JSON or None, stderr)."""
    p = subprocess.run(echoload_argv(port, *args, host=host), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout,
                       universal_newlines=True)
    return p.returncode, parse_echoload(p.stdout), p.stderr


def echoload_start(port, *args, host="127.0.0.1"):
    return subprocess.Popen(echoload_argv(port, *args, host=host), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            universal_newlines=True)


def echoload_wait(p, timeout):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=10)
        return None, parse_echoload(out), err + "\n(echoload killed: timeout)"
    return p.returncode, parse_echoload(out), err


def parse_echoload(out):
    for line in (out or "").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


# --- deterministic streams generated on the fly --------------------------------------

class Stream:
    """A long deterministic byte stream, distinct per seed and never periodic: chunk j
    (CHUNK bytes) is a 16-byte header (seed, j) followed by a slice of a 1 MiB+ random
    block starting at a position that depends on (seed, j). Bytes are produced on demand,
    so memory stays bounded (two chunks cached) whatever the length."""
    CHUNK = 256 * 1024
    _block = None
    _P = (1 << 20) + 4093

    def __init__(self, seed, length):
        if Stream._block is None:
            b = bytearray()
            i = 0
            while len(b) < Stream._P:
                b += hashlib.sha512(b"reuseecho-stress:%d" % i).digest()
                i += 1
            b = bytes(b[:Stream._P])
            Stream._block = b + b[:Stream.CHUNK]
        self.seed = seed
        self.length = length
        self._cache = {}

    def chunk(self, j):
        c = self._cache.get(j)
        if c is None:
            start = (self.seed * 1000003 + j * 7919 * 13) % Stream._P
            head = struct.pack("<QQ", self.seed, j)
            c = head + Stream._block[start:start + Stream.CHUNK - len(head)]
            if len(self._cache) >= 2:
                self._cache.clear()
            self._cache[j] = c
        return c

    def view(self, off, maxn=1 << 30):
        """A memoryview of the stream from off to the end of its chunk (at most maxn,
        never past the end of the stream)."""
        j, o = divmod(off, Stream.CHUNK)
        n = min(Stream.CHUNK - o, maxn, self.length - off)
        return memoryview(self.chunk(j))[o:o + n]

    def matches(self, off, data):
        """True when data equals the stream at off..off+len(data)."""
        mv = memoryview(data)
        pos = 0
        while pos < len(mv):
            if off + pos >= self.length:
                return False
            v = self.view(off + pos, len(mv) - pos)
            if mv[pos:pos + len(v)] != v:
                return False
            pos += len(v)
        return True


def percentile(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


# --- kernel counters -----------------------------------------------------------------

def snmp_counters():
    """{'TcpExt.TCPAbortOnData': n, 'Tcp.OutRsts': n, ...} for this network namespace."""
    out = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        with open(path) as f:
            lines = f.read().splitlines()
        for i in range(0, len(lines) - 1, 2):
            k = lines[i].split()
            v = lines[i + 1].split()
            if not k or k[0] != v[0]:
                continue
            pre = k[0].rstrip(":")
            for name, val in zip(k[1:], v[1:]):
                try:
                    out[pre + "." + name] = int(val)
                except ValueError:
                    pass
    return out


def tcp_sockets(pid=None):
    """[(state hex, local ip hex, local port, remote ip hex, remote port, inode)] from
    /proc/net/tcp (of this netns or of pid's)."""
    out = []
    base = "/proc/net" if pid is None else "/proc/%d/net" % pid
    for name in ("tcp", "tcp6"):
        try:
            with open(os.path.join(base, name)) as f:
                next(f)
                for line in f:
                    p = line.split()
                    lip, lport = p[1].rsplit(":", 1)
                    rip, rport = p[2].rsplit(":", 1)
                    out.append((p[3], lip, int(lport, 16), rip, int(rport, 16), int(p[9])))
        except FileNotFoundError:
            pass
    return out


def outq(sock):
    """SIOCOUTQ: bytes in the socket's send queue not yet acknowledged by the peer."""
    import fcntl
    import termios
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


# --- full-duplex stream clients ------------------------------------------------------

class DuplexClient:
    """One connection that sends a Stream and checks its echo as it arrives."""

    def __init__(self, sock, seed, length):
        sock.setblocking(False)
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.out = Stream(seed, length)
        self.inp = Stream(seed, length)
        self.length = length
        self.sent = 0
        self.got = 0
        self.err = None
        self.mismatch = False
        self.done = False
        self.stop_sending = False   # set to pause/stop the sending side

    def finished(self):
        return self.done or self.err is not None


def run_duplex(clients, deadline, tick=None, max_send=8, max_recv=8):
    """Drive every client until each got its whole stream back (done), failed (err),
    or the deadline passed. tick(now) is called at least every 50 ms; returning True
    from it ends the loop early. Returns the number of clients not finished."""
    ep = select.epoll()
    by_fd = {}
    masks = {}
    try:
        for c in clients:
            if c.finished():
                continue
            fd = c.sock.fileno()
            by_fd[fd] = c
            masks[fd] = select.EPOLLIN | (select.EPOLLOUT if c.sent < c.length else 0)
            ep.register(fd, masks[fd])
        left = len(by_fd)
        turns = 0
        while left and time.monotonic() < deadline and turns < 50000000:
            turns += 1
            if tick is not None and tick(time.monotonic()):
                break
            for fd, ev in ep.poll(0.05):
                c = by_fd.get(fd)
                if c is None or c.finished():
                    continue
                if ev & select.EPOLLOUT and not c.stop_sending:
                    try:
                        for _ in range(max_send):
                            if c.sent >= c.length:
                                break
                            c.sent += c.sock.send(c.out.view(c.sent))
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        c.err = "send after %d: %s" % (c.sent, e)
                if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and c.err is None:
                    try:
                        for _ in range(max_recv):
                            d = c.sock.recv(256 * 1024)
                            if not d:
                                c.err = "EOF after %d of %d echoed bytes" % (c.got, c.length)
                                break
                            if not c.inp.matches(c.got, d):
                                c.mismatch = True
                                c.err = "mismatch near byte %d" % c.got
                                break
                            c.got += len(d)
                            if c.got >= c.length:
                                c.done = True
                                break
                    except BlockingIOError:
                        pass
                    except OSError as e:
                        c.err = "recv after %d: %s" % (c.got, e)
                if c.finished():
                    ep.unregister(fd)
                    del by_fd[fd]
                    left -= 1
                    continue
                want = select.EPOLLIN | (select.EPOLLOUT if c.sent < c.length and
                                         not c.stop_sending else 0)
                if want != masks[fd]:
                    masks[fd] = want
                    ep.modify(fd, want)
        # Clients that paused sending get EPOLLOUT back when resumed by the next call.
        return left
    finally:
        ep.close()


def asan_build(binary=None):
    """True when the server binary is built with AddressSanitizer (its RSS then includes
    shadow memory and the free quarantine, so RSS bounds are reported, not asserted)."""
    path = binary or retest.binary()
    try:
        with open(path, "rb") as f:
            tail = b""
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    return False
                if b"__asan_init" in tail + chunk:
                    return True
                tail = chunk[-16:]
    except OSError:
        return False
