"""Command line, start-up failures and the ready line, checked against the built binary.

--help is checked against the parser's own long_options table in src/config.c, read at
test time, so a flag added without help text fails here. Usage errors exit 2 with one
stderr line naming the flag; start-up failures exit 1 with one line naming the failing
call and the errno text; the ready line is the only stdout output."""
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRAPPER = os.environ.get("REUSEECHO_WRAPPER", "").split()
# Deadlines stretch when the server runs under a wrapper such as valgrind.
SCALE = retest.SCALE	# REUSEECHO_TEST_SCALE: 10 in the valgrind setup
# Keeps a mistakenly accepted value from starting a server on the default 0.0.0.0:7007.
SAFE = ["--bind", "127.0.0.1", "--port", "0"]


def command(args):
    return WRAPPER + [retest.binary()] + [str(a) for a in args]


def run(args, timeout=10.0, preexec_fn=None):
    return subprocess.run(command(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout * SCALE, preexec_fn=preexec_fn)


def config_source():
    with open(os.path.join(ROOT, "src", "config.c")) as f:
        return f.read()


def parser_options():
    """[(long name, has_arg, short letter or None)] from long_options in src/config.c."""
    text = config_source()
    m = re.search(r"struct\s+option\s+long_options\s*\[\s*\]\s*=\s*\{(.*?)\n\s*\}\s*;", text, re.S)
    assert m, "long_options table not found in src/config.c"
    rows = re.findall(r'\{\s*"([^"]+)"\s*,\s*(\w+)\s*,\s*[^,]+,\s*([^}\s]+)\s*\}', m.group(1))
    out = []
    for name, has_arg, val in rows:
        short = val[1] if re.fullmatch(r"'.'", val) else None
        out.append((name, has_arg, short))
    assert len(out) >= 10, "parsed only %r from long_options" % out
    return out


def parser_shorts():
    m = re.search(r'getopt_long\s*\([^"]*"([^"]*)"', config_source())
    assert m, "getopt_long optstring not found"
    return [c for c in m.group(1) if c != ":"]


def help_entries(text):
    """{long flag: entry text} from the Options: section of --help."""
    lines = text.split("\n")
    start = lines.index("Options:") + 1
    entries = {}
    cur = None
    for line in lines[start:]:
        if line == "":
            break
        m = re.match(r"^ {2,6}(?:-\w, )?--([a-z0-9][a-z0-9-]*)(.*)$", line)
        if m:
            cur = m.group(1)
            entries[cur] = line
        else:
            if cur is None or not line.startswith(" " * 8):
                raise AssertionError("unexpected help line %r" % line)
            entries[cur] += "\n" + line
    return entries


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


class Spawned:
    """A server whose whole stdout is kept (retest.Server keeps only the ready line)."""

    def __init__(self, args, preexec_fn=None, timeout=10.0):
        self.proc = subprocess.Popen(command(args), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=preexec_fn)
        self.out = b""
        self.err = b""
        deadline = time.monotonic() + timeout * SCALE
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError("no ready line; stdout %r" % self.out)
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.finish(5)
                    raise AssertionError("exited %s before ready: %r" %
                                         (self.proc.returncode, self.err))
                self.out += chunk
        m = retest.READY_RE.match(self.out.split(b"\n", 1)[0].decode())
        if not m:
            self.kill()
            raise AssertionError("bad ready line %r" % self.out)
        self.port = int(m.group(2))
        self.workers = int(m.group(3))

    def finish(self, timeout):
        out, err = self.proc.communicate(timeout=timeout * SCALE)
        self.out += out
        self.err += err
        return self.proc.returncode

    def stop(self, timeout=20.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.finish(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("server did not exit after SIGTERM")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError):
            pass


def cpu_list(cpus):
    """{0, 1, 2, 5} -> '0-2,5', as the server prints CPU sets."""
    out, cpus = [], sorted(cpus)
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else "%d-%d" % (cpus[i], cpus[j]))
        i = j + 1
    return ",".join(out)


def echo_once(host, port, payload, timeout=5.0):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout * SCALE)
        s.connect((host, port))
        s.sendall(payload)
        return retest.recv_exact(s, len(payload))
    finally:
        s.close()


def process_listeners(pid):
    """{inode: port} for TCP listening sockets that this process holds."""
    mine = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            mine.add(int(t[8:-1]))
    res = {}
    for path in ("/proc/%d/net/tcp" % pid, "/proc/%d/net/tcp6" % pid):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] == "0A" and int(p[9]) in mine:
                        res[int(p[9])] = int(p[1].rsplit(":", 1)[1], 16)
        except FileNotFoundError:
            pass
    return res


class Help(unittest.TestCase):
    def test_help_documents_every_parser_flag(self):
        r = run(["--help"])
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.stderr, b"")
        text = r.stdout.decode()
        self.assertTrue(text.startswith("Usage: reuseecho"), text[:80])
        entries = help_entries(text)
        opts = parser_options()
        for name, has_arg, short in opts:
            with self.subTest(flag=name):
                self.assertTrue(name in entries, "--%s is accepted but not in --help" % name)
                entry = entries[name]
                if has_arg == "required_argument":
                    self.assertRegex(entry.split("\n")[0], r"--%s [\[A-Z]" % re.escape(name),
                                     "--%s: help shows no value placeholder" % name)
                    self.assertIn("default", entry, "--%s: help gives no default" % name)
                else:
                    self.assertNotRegex(entry.split("\n")[0], r"--%s [\[A-Z]" % re.escape(name))
                if short:
                    self.assertRegex(entry, r"^ +-%s, --%s\b" % (short, re.escape(name)))
        names = {o[0] for o in opts}
        for name in entries:
            self.assertIn(name, names, "--help documents --%s, which the parser rejects" % name)
        for c in parser_shorts():
            self.assertRegex(text, r"\n +-%s, --" % re.escape(c), "short option -%s" % c)
        self.assertIn("reuseecho: listening on ADDR:PORT with N workers", text)

    def test_short_help_same_text(self):
        a = run(["--help"])
        b = run(["-h"])
        self.assertEqual(b.returncode, 0)
        self.assertEqual(a.stdout, b.stdout)

    def test_version(self):
        for flag in ("--version", "-V"):
            r = run([flag])
            self.assertEqual(r.returncode, 0, flag)
            self.assertEqual(r.stderr, b"", flag)
            self.assertRegex(r.stdout.decode(), r"\Areuseecho \d+\.\d+\.\d+\n\Z", flag)
        with open(os.path.join(ROOT, "meson.build")) as f:
            m = re.search(r"\bversion\s*:\s*'(\d+\.\d+\.\d+)'", f.read())
        if m:
            self.assertEqual(r.stdout, ("reuseecho %s\n" % m.group(1)).encode())


BAD_VALUES = [
    ("--threads", "0"), ("--threads", "1025"), ("--threads", "-1"), ("--threads", "abc"),
    ("--threads", ""), ("--threads", " 4"), ("--threads", "0x4"),
    ("--port", "65536"), ("--port", "-1"), ("--port", "x"),
    ("--backlog", "0"), ("--backlog", "65536"),
    ("--max-conns", "x"), ("--max-conns", "-1"),
    ("--conn-buffer", "12Q"), ("--conn-buffer", "1K"), ("--conn-buffer", "2G"),
    ("--conn-buffer", "4095"),
    ("--idle-timeout", "-1"), ("--idle-timeout", "1.0001"), ("--idle-timeout", "abc"),
    ("--idle-timeout", "604801"),
    ("--drain-timeout", "x"),
    ("--cpus", "a"), ("--cpus", "3-1"), ("--cpus", "5-"), ("--cpus", ""), ("--cpus", "0,,1"),
    ("--bind", "foo"), ("--bind", "1.2.3"), ("--bind", "[::1"), ("--bind", ""),
    ("--log-level", "loud"),
]


class Usage(unittest.TestCase):
    def usage_error(self, args, names):
        r = run(args)
        self.assertEqual(r.returncode, 2, "%r: rc %s, stderr %r" % (args, r.returncode, r.stderr))
        self.assertEqual(r.stdout, b"", args)
        err = r.stderr.decode(errors="replace")
        self.assertTrue(err.endswith("\n") and err.count("\n") == 1,
                        "%r: not exactly one stderr line: %r" % (args, err))
        self.assertTrue(err.startswith("reuseecho: "), err)
        self.assertTrue(err[:-1].isprintable(),
                        "%r: unprintable bytes in %r" % (args, err))
        for n in names:
            self.assertIn(n, err, "%r: message does not name %s" % (args, n))
        return err

    def test_bad_values(self):
        for flag, value in BAD_VALUES:
            with self.subTest(flag=flag, value=value):
                names = [flag, "'%s'" % value]
                self.usage_error(SAFE + [flag, value], names)
                if value:
                    self.usage_error(SAFE + ["%s=%s" % (flag, value)], names)

    def test_short_flags_name_the_long_flag(self):
        self.usage_error(SAFE + ["-t", "0"], ["--threads", "'0'"])
        self.usage_error(SAFE + ["-p", "70000"], ["--port", "'70000'"])
        self.usage_error(SAFE + ["-b", "foo"], ["--bind", "'foo'"])

    def test_unknown_option(self):
        self.usage_error(SAFE + ["--bogus"], ["--bogus"])
        self.usage_error(SAFE + ["-x"], ["-x"])

    def test_missing_value(self):
        self.usage_error(SAFE + ["--port"], ["--port", "missing value"])
        self.usage_error(SAFE + ["--threads"], ["--threads", "missing value"])

    def test_stray_argument(self):
        self.usage_error(SAFE + ["stray"], ["stray"])
        self.usage_error(["stray"] + SAFE, ["stray"])

    def test_value_given_to_flag_without_one(self):
        # getopt_long reports "--no-pin=1" with optopt = the flag's value (256+), which
        # is not a printable short-option letter.
        self.usage_error(SAFE + ["--no-pin=1"], ["--no-pin"])
        self.usage_error(SAFE + ["--help=x"], ["--help"])


class StartupFailure(unittest.TestCase):
    def startup_error(self, args, needles, within=None, rc=1):
        t0 = time.monotonic()
        r = run(args)
        took = time.monotonic() - t0
        self.assertEqual(r.returncode, rc, "%r: rc %s, stderr %r" % (args, r.returncode, r.stderr))
        self.assertEqual(r.stdout, b"", "no ready line on failure")
        err = r.stderr.decode(errors="replace")
        self.assertTrue(err.endswith("\n") and err.count("\n") == 1,
                        "%r: not exactly one stderr line: %r" % (args, err))
        self.assertTrue(err.startswith("reuseecho: error: "), err)
        for n in needles:
            self.assertIn(n, err)
        if within is not None:
            self.assertLess(took, within * SCALE, "exit took %.2fs" % took)
        return err

    def test_address_in_use(self):
        first = retest.Server("--threads", 2)
        try:
            port = first.port
            self.assertEqual(echo_once("127.0.0.1", port, b"before"), b"before")
            self.startup_error(["--bind", "127.0.0.1", "--port", port, "--threads", 2],
                               ["bind", "127.0.0.1:%d" % port, "Address already in use"],
                               within=1.0)
            # Also when the second asks for 0.0.0.0 on the same port.
            self.startup_error(["--bind", "0.0.0.0", "--port", port, "--threads", 1],
                               ["bind", "Address already in use"], within=1.0)
            self.assertTrue(first.alive())
            # The first instance still serves, and only it does: no listener leaked.
            for i in range(8):
                self.assertEqual(echo_once("127.0.0.1", port, b"after%d" % i), b"after%d" % i)
            self.assertEqual(len(first.listening_inodes()), 2)
        finally:
            self.assertEqual(first.stop(), 0, first.stderr())

    def test_non_local_address(self):
        self.startup_error(["--bind", "192.0.2.1", "--port", "0"],
                           ["bind", "192.0.2.1", "Cannot assign requested address"])

    def test_cpu_outside_affinity(self):
        # A CPU the process may not use cannot be satisfied: a usage error (exit 2)
        # naming the flag and the CPUs that are allowed.
        allowed = os.sched_getaffinity(0)
        outside = min(set(range(max(allowed) + 2)) - allowed)
        want = "(allowed CPUs: %s)" % cpu_list(allowed)
        for cpu in (1000, outside):
            with self.subTest(cpu=cpu):
                err = self.startup_error(SAFE + ["--cpus", cpu], [want], rc=2)
                self.assertEqual(err, "reuseecho: error: --cpus %d: CPU %d is not one this "
                                 "process may use %s\n" % (cpu, cpu, want))
        # One good CPU and one bad one: still refused, naming the bad one.
        self.startup_error(SAFE + ["--cpus", "%d,%d" % (min(allowed), outside)],
                           ["--cpus %d,%d: CPU %d is not" % (min(allowed), outside, outside),
                            want], rc=2)


class ReadyLine(unittest.TestCase):
    def test_one_worker_is_singular(self):
        srv = Spawned(SAFE + ["--threads", 1, "--control", "none"])
        rc = srv.stop()
        self.assertEqual(rc, 0, srv.err)
        self.assertEqual(srv.out.decode(),
                         "reuseecho: listening on 127.0.0.1:%d with 1 worker\n" % srv.port)
        self.assertIn("reuseecho: info: 1 worker on 127.0.0.1:%d (pinned: yes)" % srv.port,
                      srv.err.decode())
        self.assertNotIn("1 workers", srv.err.decode())

    def test_exactly_one_stdout_line_ipv4(self):
        srv = Spawned(SAFE + ["--threads", 2])
        try:
            self.assertEqual(echo_once("127.0.0.1", srv.port, b"hello"), b"hello")
        finally:
            rc = srv.stop()
        self.assertEqual(rc, 0, srv.err)
        self.assertEqual(srv.out.decode(),
                         "reuseecho: listening on 127.0.0.1:%d with 2 workers\n" % srv.port)
        self.assertNotEqual(srv.port, 0)

    def test_ipv6_loopback(self):
        if not ipv6_loopback():
            self.skipTest("no IPv6 loopback")
        srv = Spawned(["--bind", "::1", "--port", "0", "--threads", 1])
        try:
            self.assertEqual(echo_once("::1", srv.port, b"six"), b"six")
            with self.assertRaises(ConnectionRefusedError):
                echo_once("127.0.0.1", srv.port, b"four")
        finally:
            rc = srv.stop()
        self.assertEqual(rc, 0, srv.err)
        self.assertEqual(srv.out.decode(),
                         "reuseecho: listening on [::1]:%d with 1 worker\n" % srv.port)

    def test_bracketed_bind_accepted(self):
        if not ipv6_loopback():
            self.skipTest("no IPv6 loopback")
        srv = Spawned(["--bind", "[::1]", "--port", "0", "--threads", 1])
        try:
            self.assertEqual(echo_once("::1", srv.port, b"x"), b"x")
        finally:
            self.assertEqual(srv.stop(), 0, srv.err)
        self.assertEqual(srv.out.decode(),
                         "reuseecho: listening on [::1]:%d with 1 worker\n" % srv.port)

    def test_ipv6_any_is_dual_stack(self):
        if not ipv6_loopback():
            self.skipTest("no IPv6 loopback")
        srv = Spawned(["--bind", "::", "--port", "0", "--threads", 2])
        try:
            for i in range(4):
                self.assertEqual(echo_once("127.0.0.1", srv.port, b"v4-%d" % i), b"v4-%d" % i)
                self.assertEqual(echo_once("::1", srv.port, b"v6-%d" % i), b"v6-%d" % i)
        finally:
            rc = srv.stop()
        self.assertEqual(rc, 0, srv.err)
        self.assertEqual(srv.out.decode(),
                         "reuseecho: listening on [::]:%d with 2 workers\n" % srv.port)

    def test_port_zero_shared_by_every_worker(self):
        srv = retest.Server("--threads", 4)
        socks = []
        try:
            self.assertEqual(srv.workers, 4)
            # Every listener the process holds is on the ready line's port: one per worker.
            listeners = process_listeners(srv.pid)
            self.assertEqual(sorted(listeners.values()), [srv.port] * 4, listeners)
            # Connections on that port reach every worker (SO_REUSEPORT spreads them):
            # each worker's epoll ends up watching at least one client socket.
            lset = set(listeners)

            def per_epoll_clients():
                counts = []
                for fd, t in srv.fd_targets().items():
                    if t != "anon_inode:[eventpoll]":
                        continue
                    tfds = [int(x) for x in re.findall(r"^tfd:\s*(\d+)", srv.fdinfo(fd), re.M)]
                    targets = srv.fd_targets()
                    socks_ = [x for x in tfds if targets.get(x, "").startswith("socket:[")]
                    if any(int(targets[x][8:-1]) in lset for x in socks_):
                        counts.append(sum(1 for x in socks_ if int(targets[x][8:-1]) not in lset))
                return counts

            for i in range(400):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5 * SCALE)
                socks.append(s)
                msg = b"conn %d" % i
                s.sendall(msg)
                self.assertEqual(retest.recv_exact(s, len(msg)), msg)
                if i + 1 >= 40:
                    counts = per_epoll_clients()
                    if len(counts) == 4 and min(counts) > 0:
                        break
            counts = per_epoll_clients()
            self.assertEqual(len(counts), 4, "one epoll per worker with a listener")
            self.assertEqual(sum(counts), len(socks))
            self.assertGreater(min(counts), 0, "a worker got no connection: %r" % counts)
        finally:
            for s in socks:
                s.close()
            self.assertEqual(srv.stop(), 0, srv.stderr())


class StartupLog(unittest.TestCase):
    """The start-up info line names every endpoint, and a worker count above the CPU
    count is warned about once, saying what it costs."""

    def info_line(self, err, port):
        lines = [l for l in err.splitlines() if l.startswith("reuseecho: info: ") and
                 " on 127.0.0.1:%d (pinned" % port in l]
        self.assertEqual(len(lines), 1, err)
        return lines[0]

    def test_metrics_address_logged(self):
        mport = retest.free_tcp_port()
        srv = Spawned(SAFE + ["--threads", 1, "--control", "none",
                              "--metrics-listen", "127.0.0.1:%d" % mport])
        self.assertEqual(srv.stop(), 0, srv.err)
        line = self.info_line(srv.err.decode(), srv.port)
        self.assertIn(", control none, metrics 127.0.0.1:%d, " % mport, line)

    def test_metrics_off_logged(self):
        srv = Spawned(SAFE + ["--threads", 1, "--control", "none"])
        self.assertEqual(srv.stop(), 0, srv.err)
        self.assertIn(", control none, metrics off, ", self.info_line(srv.err.decode(), srv.port))

    def test_threads_above_cpus_warns_once(self):
        ncpu = len(os.sched_getaffinity(0))
        srv = Spawned(SAFE + ["--threads", ncpu + 1, "--control", "none"])
        self.assertEqual(srv.workers, ncpu + 1)
        self.assertEqual(srv.stop(), 0, srv.err)
        warns = [l for l in srv.err.decode().splitlines() if l.startswith("reuseecho: warn: ")]
        self.assertEqual(warns, [
            "reuseecho: warn: --threads %d is more than the %d CPU%s workers may use: workers "
            "sharing a CPU take turns on it, which adds context switches and queueing delay "
            "and no throughput; %d or fewer avoids it"
            % (ncpu + 1, ncpu, "" if ncpu == 1 else "s", ncpu)])

    def test_threads_at_cpus_does_not_warn(self):
        ncpu = len(os.sched_getaffinity(0))
        srv = Spawned(SAFE + ["--threads", ncpu, "--control", "none"])
        self.assertEqual(srv.stop(), 0, srv.err)
        self.assertNotIn("warn:", srv.err.decode())


class SdNotify(unittest.TestCase):
    """Type=notify: READY=1 with a STATUS naming the address once every worker
    listens, STOPPING=1 when a drain begins. Only in a build with libsystemd."""

    def test_ready_and_stopping(self):
        if os.environ.get("REUSEECHO_HAVE_SYSTEMD") != "1":
            self.skipTest("the server was built without libsystemd (libsystemd-dev), so "
                          "sd_notify is compiled out")
        d = tempfile.mkdtemp(prefix="reuseecho-notify-")
        path = os.path.join(d, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(path)
            sock.settimeout(5 * SCALE)
            srv = retest.Server("--threads", 1, "--control", "none",
                                extra_env={"NOTIFY_SOCKET": path})
            try:
                msg = sock.recv(4096).decode()
                self.assertEqual(msg, "READY=1\nSTATUS=serving 127.0.0.1:%d with 1 worker, "
                                 "control none" % srv.port)
            finally:
                self.assertEqual(srv.stop(), 0, srv.stderr())  # one SIGTERM: a drain
            msg = sock.recv(4096).decode()
            self.assertTrue(msg.startswith("STOPPING=1\nSTATUS=draining ("), msg)
        finally:
            sock.close()
            os.unlink(path) if os.path.exists(path) else None
            os.rmdir(d)


class DefaultThreads(unittest.TestCase):
    def test_default_is_affinity_count(self):
        srv = Spawned(SAFE)
        try:
            self.assertEqual(srv.workers, len(os.sched_getaffinity(0)))
        finally:
            self.assertEqual(srv.stop(), 0, srv.err)

    def test_default_under_taskset_is_one(self):
        cpu = min(os.sched_getaffinity(0))
        srv = Spawned(SAFE, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        try:
            self.assertEqual(srv.workers, 1)
            self.assertEqual(echo_once("127.0.0.1", srv.port, b"one"), b"one")
        finally:
            self.assertEqual(srv.stop(), 0, srv.err)

    def test_default_under_taskset_command(self):
        allowed = sorted(os.sched_getaffinity(0))
        taskset = "/usr/bin/taskset"
        if not os.access(taskset, os.X_OK):
            self.skipTest("no taskset")
        cpus = ",".join(str(c) for c in allowed[:2])
        p = subprocess.Popen([taskset, "-c", cpus] + command(SAFE), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = retest.wait_until(lambda: select.select([p.stdout], [], [], 0.05)[0]
                                     and p.stdout.readline(), timeout=10 * SCALE,
                                     what="ready line")
            m = retest.READY_RE.match(line.decode().rstrip("\n"))
            self.assertTrue(m, line)
            self.assertEqual(int(m.group(3)), min(2, len(allowed)))
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            p.communicate(timeout=20 * SCALE)
        self.assertEqual(p.returncode, 0)

    def test_default_counts_cpus_list(self):
        cpu = min(os.sched_getaffinity(0))
        srv = Spawned(SAFE + ["--cpus", cpu])
        try:
            self.assertEqual(srv.workers, 1)
        finally:
            self.assertEqual(srv.stop(), 0, srv.err)


if __name__ == "__main__":
    retest.main()
