"""Test helpers for reuseecho black-box tests (Python 3 stdlib only).

Every test talks to the real binary over real loopback sockets. Waits are bounded
polls of a condition (wait_until), never fixed sleeps alone.
"""
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

# One factor for every timing window: the meson test setups set it for slow builds
# (asan/tsan 3, valgrind 10). wait_until scales its deadline by it; tests scale their
# own windows with scaled().
SCALE = float(os.environ.get("REUSEECHO_TEST_SCALE", "1") or "1")


def scaled(seconds):
    """A timing window, stretched for sanitizer and valgrind builds."""
    return seconds * SCALE


READY_RE = re.compile(r"^reuseecho: listening on (\[[0-9a-fA-F:.%\w]+\]|[0-9.]+):(\d+) with (\d+) workers?$")
SKIP = 77


def binary(name="reuseecho"):
    """Path of a built program, from the environment meson sets (or ./build)."""
    env = {"reuseecho": "REUSEECHO_BIN", "echoload": "ECHOLOAD_BIN",
           "reuseecho-ctl": "REUSEECHO_CTL_BIN"}.get(name)
    if env and os.environ.get(env):
        return os.environ[env]
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    sub = {"reuseecho": "src", "reuseecho-ctl": "src", "echoload": "bench"}.get(name, "src")
    return os.path.join(root, "build", sub, name)


def wait_until(pred, timeout=5.0, interval=0.01, what="condition"):
    """Poll pred() until it returns a truthy value or the deadline (timeout seconds,
    times SCALE) passes."""
    timeout *= SCALE
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


class Server:
    """A reuseecho process on an ephemeral loopback port."""

    def __init__(self, *args, bind="127.0.0.1", port=0, ready_timeout=10.0, preexec_fn=None,
                 extra_env=None, expect_ready=True):
        self.errfile = tempfile.TemporaryFile()
        cmd = [binary(), "--bind", bind, "--port", str(port)] + [str(a) for a in args]
        # The valgrind test setup runs the server (not the test) under valgrind.
        wrapper = os.environ.get("REUSEECHO_WRAPPER", "").split()
        cmd = wrapper + cmd
        env = dict(os.environ)
        if extra_env:
            env.update(extra_env)
        self.started_at = time.time()
        self.args = [str(a) for a in args]
        self.env = env
        self.control_path = None     # set once ready: the control socket this server made
        self.control_id = None       # (st_dev, st_ino) of that socket
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errfile,
                                     stdin=subprocess.DEVNULL, preexec_fn=preexec_fn, env=env)
        self.pid = self.proc.pid
        self.host = bind
        self.port = None
        self.workers = None
        self.ready_line = None
        if expect_ready:
            self._wait_ready(ready_timeout)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError("no ready line within %.1fs; stderr: %s" % (timeout, self.stderr()))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    rc = self.proc.wait(5)
                    raise AssertionError("server exited %s before ready; stderr: %s" % (rc, self.stderr()))
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        m = READY_RE.match(line)
        if not m:
            self.kill()
            raise AssertionError("bad ready line %r" % line)
        self.ready_line = line
        self.port = int(m.group(2))
        self.workers = int(m.group(3))
        self._note_control_socket()

    def _note_control_socket(self):
        """Remember the control socket this server created (path and inode), so that
        stop() can check that the server removed it on the way out."""
        path = control_path_of(self.args, self.port, self.env)
        if path is None:
            return
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        self.control_path = path
        self.control_id = (st.st_dev, st.st_ino, st.st_mtime_ns)

    def control_socket_left(self):
        """True when the control socket this server created is still at its path (a
        takeover successor's socket at the same path does not count)."""
        if self.control_id is None:
            return False
        try:
            st = os.lstat(self.control_path)
        except FileNotFoundError:
            return False
        # With the modification time: a file system may reuse our inode number for it.
        return (st.st_dev, st.st_ino, st.st_mtime_ns) == self.control_id

    def _remove_left_socket(self):
        if self.control_socket_left():
            try:
                os.unlink(self.control_path)
            except FileNotFoundError:
                pass

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read().decode(errors="replace")

    def connect(self, timeout=10.0):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((self.host, self.port))
        return s

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20.0, sig=signal.SIGTERM):
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("server did not exit within %.1fs" % timeout)
        self._close_streams()
        # Every way out but SIGKILL removes the control socket (a second signal too),
        # unless --user took away the right to, which the server then said at start-up.
        if self.control_socket_left():
            warned = "will be left behind at exit" in self.stderr()
            self._remove_left_socket()
            if not warned:
                raise AssertionError("server exited %s and left its control socket %s behind"
                                     % (rc, self.control_path))
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_streams()
        self._remove_left_socket()     # SIGKILL leaves it; do not leave it to the next run

    def _close_streams(self):
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def __del__(self):
        try:
            self.kill()
            self.errfile.close()
        except Exception:
            pass

    def alive(self):
        return self.proc.poll() is None

    # --- /proc views -------------------------------------------------------------

    def tasks(self):
        """[(tid, comm, cpus_allowed_list)] for every thread."""
        out = []
        base = "/proc/%d/task" % self.pid
        for tid in sorted(os.listdir(base), key=int):
            try:
                with open("%s/%s/comm" % (base, tid)) as f:
                    comm = f.read().strip()
                with open("%s/%s/status" % (base, tid)) as f:
                    st = f.read()
            except FileNotFoundError:
                continue
            m = re.search(r"^Cpus_allowed_list:\s*(\S+)", st, re.M)
            out.append((int(tid), comm, m.group(1) if m else ""))
        return out

    def fd_targets(self):
        """{fd: readlink target}"""
        res = {}
        base = "/proc/%d/fd" % self.pid
        for fd in os.listdir(base):
            try:
                res[int(fd)] = os.readlink("%s/%s" % (base, fd))
            except OSError:
                pass
        return res

    def fdinfo(self, fd):
        with open("/proc/%d/fdinfo/%d" % (self.pid, fd)) as f:
            return f.read()

    def rss_kb(self):
        with open("/proc/%d/status" % self.pid) as f:
            return int(re.search(r"^VmRSS:\s*(\d+)", f.read(), re.M).group(1))

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def num_fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def listening_inodes(self):
        """Socket inodes of this process's sockets that listen on our port (from /proc/net/tcp*)."""
        inodes = set()
        for path in ("/proc/%d/net/tcp" % self.pid, "/proc/%d/net/tcp6" % self.pid):
            try:
                with open(path) as f:
                    next(f)
                    for line in f:
                        p = line.split()
                        port = int(p[1].rsplit(":", 1)[1], 16)
                        if p[3] == "0A" and port == self.port:
                            inodes.add(int(p[9]))
            except FileNotFoundError:
                pass
        return inodes


def control_path_of(args, port, env=None):
    """The control socket path a server started with args (its command-line words)
    uses once it listens on port, by the server's rule: the last --control PATH, none
    for --control none, else $RUNTIME_DIRECTORY/reuseecho-PORT.sock,
    $XDG_RUNTIME_DIR/..., /run/... for root, /tmp/reuseecho-UID-PORT.sock."""
    env = os.environ if env is None else env
    path = ""
    for i, a in enumerate(args):
        if a == "--control" and i + 1 < len(args):
            path = args[i + 1]
        elif a.startswith("--control="):
            path = a.split("=", 1)[1]
    if path == "none":
        return None
    if path:
        return path
    d = env.get("RUNTIME_DIRECTORY", "")
    if d.startswith("/"):
        return "%s/reuseecho-%d.sock" % (d.split(":", 1)[0], port)
    d = env.get("XDG_RUNTIME_DIR", "")
    if d.startswith("/"):
        return "%s/reuseecho-%d.sock" % (d, port)
    if os.geteuid() == 0:
        return "/run/reuseecho-%d.sock" % port
    return "/tmp/reuseecho-%d-%d.sock" % (os.geteuid(), port)


def recv_exact(s, n):
    chunks = []
    got = 0
    while got < n:
        d = s.recv(min(1 << 20, n - got))
        if not d:
            raise AssertionError("EOF after %d of %d bytes" % (got, n))
        chunks.append(d)
        got += len(d)
    return b"".join(chunks)


def recv_until_eof(s, limit=1 << 31):
    chunks = []
    got = 0
    while True:
        d = s.recv(1 << 20)
        if not d:
            return b"".join(chunks)
        chunks.append(d)
        got += len(d)
        if got > limit:
            raise AssertionError("more than %d bytes" % limit)


def pattern(n, seed=0):
    """Deterministic, non-repeating-looking bytes."""
    import hashlib
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


def report_skip(what, why):
    """Print the one line every skip in this suite prints; tests/check-skips finds it
    in meson's test log, whether the test then exits 77 or passes."""
    sys.stdout.write("SKIPPED: %s: %s\n" % (what, " ".join(str(why).split())))
    sys.stdout.flush()


class ServerCase(unittest.TestCase):
    """A test case with one server at a time: a private directory holding the control
    socket (self.ctl), the server (self.srv, set by start()) and client sockets to close
    (self.socks). tearDown closes the sockets, kills a server still running (SIGKILL
    works on a stopped one too) and removes the directory."""
    dir_prefix = "reuseecho-"

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix=self.dir_prefix)
        self.ctl = os.path.join(self.dir, "control.sock")
        self.srv = None
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        if self.srv is not None and self.srv.alive():
            self.srv.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, *args, **kw):
        self.srv = Server("--control", self.ctl, *args, **kw)
        return self.srv


def main():
    """unittest entry point: exit 0 pass, 1 fail, 77 when any test was skipped.

    A file where one test skipped and the rest passed exits 77 too, so that meson
    shows SKIP rather than OK, and every skipped test is named on a `SKIPPED:` line
    for tests/check-skips (which fails CI on a skip not in tests/skip-allowlist.txt)."""
    prog = unittest.main(exit=False, verbosity=2)
    res = prog.result
    for test, why in res.skipped:
        report_skip(test.id().split(".", 1)[-1], why)
    if not res.wasSuccessful():
        sys.exit(1)
    if res.skipped:
        sys.exit(SKIP)
    sys.exit(0)


# --- control socket helpers ----------------------------------------------------------

def reply_end(buf):
    """Index of the "\\n" of the empty line that ends the first reply in buf, or -1.
    A reply ends at "\\n\\n" where the first "\\n" ends its last line."""
    if buf[:1] == b"\n":
        return 0
    i = buf.find(b"\n\n")
    return i + 1 if i >= 0 else -1


class ControlClient:
    """One connection to a control socket (Unix stream, line protocol).

    cmd("stats") sends one line and returns the reply as text without its
    terminating empty line (so it ends with "\\n", like reuseecho-ctl's stdout).
    Every read is bounded by a timeout."""

    def __init__(self, path, timeout=5.0):
        self.path = path
        self.timeout = timeout
        self.buf = b""
        self.sock = unix_connect(path, timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("control reply timed out; have %r" % self.buf[:200])
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise AssertionError("control reply timed out; have %r" % self.buf[:200])
        d = self.sock.recv(1 << 16)
        if not d:
            raise EOFError("control connection closed; have %r" % self.buf[:200])
        self.buf += d

    def read_reply_bytes(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            i = reply_end(self.buf)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + 1:]
                return out
            self._fill(deadline)

    def read_reply(self, timeout=None):
        return self.read_reply_bytes(timeout).decode("utf-8", errors="replace")

    def cmd(self, line, timeout=None):
        self.send(line + "\n" if isinstance(line, str) else line + b"\n")
        return self.read_reply(timeout)

    def json(self, timeout=None):
        import json
        return json.loads(self.cmd("stats json", timeout))

    def read_until_eof(self, timeout=None):
        """Everything up to EOF (a reset counts as EOF). Returns (bytes, reset)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        reset = False
        while True:
            try:
                self._fill(deadline)
            except EOFError:
                break
            except ConnectionResetError:
                reset = True
                break
        out, self.buf = self.buf, b""
        return out, reset


def stats_json(path, timeout=5.0):
    with ControlClient(path, timeout) as c:
        return c.json()


def ctl_command(path, line, timeout=5.0):
    with ControlClient(path, timeout) as c:
        return c.cmd(line)


def run_ctl(*args, timeout=20.0, env=None):
    """Run reuseecho-ctl; returns subprocess.CompletedProcess (text, both streams)."""
    return subprocess.run([binary("reuseecho-ctl")] + [str(a) for a in args],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, env=env,
                          universal_newlines=True)


def http_request(sock, raw, timeout=5.0):
    """Send a raw HTTP request on a connected socket, read to EOF; returns
    (status, {lower-case header: value}, body bytes). The socket is closed."""
    try:
        sock.settimeout(timeout)
        if isinstance(raw, str):
            raw = raw.encode()
        sock.sendall(raw)
        deadline = time.monotonic() + timeout
        data = b""
        while True:
            if time.monotonic() > deadline:
                raise AssertionError("HTTP reply timed out; have %r" % data[:200])
            try:
                d = sock.recv(1 << 16)
            except ConnectionResetError:
                break
            if not d:
                break
            data += d
    finally:
        sock.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError("no HTTP head in %r" % data[:300])
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise AssertionError("bad status line %r" % lines[0])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers, body


def unix_connect(path, timeout=5.0):
    """Connect to a Unix stream socket. A full accept queue makes a non-blocking
    AF_UNIX connect fail with EAGAIN instead of waiting: retry until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.005)
        except Exception:
            s.close()
            raise


def http_get_unix(path, target, method="GET", version="1.1", timeout=5.0):
    return http_request(unix_connect(path, timeout),
                        "%s %s HTTP/%s\r\nHost: localhost\r\n\r\n" % (method, target, version),
                        timeout)


PROM_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
PROM_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


def parse_prometheus(text):
    """[(name, {label: value}, float)] for every sample line of a text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = PROM_SAMPLE_RE.match(line)
        if not m:
            raise AssertionError("unparsable sample line %r" % line)
        labels = {}
        if m.group(2):
            pos = 0
            lab = m.group(2)
            while pos < len(lab):
                lm = PROM_LABEL_RE.match(lab, pos)
                if not lm:
                    raise AssertionError("bad labels in %r" % line)
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def free_tcp_port(host="127.0.0.1"):
    """A port that was free a moment ago (bind port 0, close)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def echo_check(s, data, timeout=30.0):
    """Send data and read the echo concurrently (select loop, so a large payload
    never deadlocks on full buffers); raise unless every byte comes back in order."""
    old = s.gettimeout()
    s.setblocking(False)
    sent = 0
    got = 0
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    try:
        while got < len(data):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("echo timed out: sent %d, got %d of %d" % (sent, got, len(data)))
            r, w, _ = select.select([s], [s] if sent < len(data) else [], [], left)
            if w:
                try:
                    sent += s.send(view[sent:sent + (1 << 18)])
                except BlockingIOError:
                    pass
            if r:
                try:
                    d = s.recv(1 << 18)
                except BlockingIOError:
                    continue
                if not d:
                    raise AssertionError("EOF after %d of %d echoed bytes" % (got, len(data)))
                if d != data[got:got + len(d)]:
                    raise AssertionError("echo mismatch at byte %d" % got)
                got += len(d)
    finally:
        s.settimeout(old)
    return got
