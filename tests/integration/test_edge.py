"""doc/DESIGN.md §2-3, the edge-triggered rules done properly, checked from outside:
accept bursts, register-once / write-through / short-read-ends-the-drain (strace and
/proc/PID/fdinfo), fairness between a streamer and ping-pong clients, per-connection
backpressure, half-close, resets mid-transfer (and no SIGPIPE), and stale events when a
close and an fd-number reuse land in one epoll batch.

Every wait is a bounded poll; every loop is bounded in count and time; loopback only."""
import errno
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

MiB = 1 << 20
KiB = 1 << 10
EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x1, 0x4, 0x8, 0x10
EPOLLRDHUP, EPOLLET = 0x2000, 1 << 31
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                   "ThreadSanitizer", "runtime error:")


# --- helpers ---------------------------------------------------------------------

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def somaxconn():
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except OSError:
        return 4096


def rst_close(s):
    """close() with SO_LINGER {1, 0}: the peer gets a RST at once."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def server_tcp_rows(srv, state=None):
    """Rows of /proc/PID/net/tcp whose local port is the server's port (server-side
    sockets): [(state_hex, tx_queue, rx_queue, inode)]."""
    rows = []
    for path in ("/proc/%d/net/tcp" % srv.pid, "/proc/%d/net/tcp6" % srv.pid):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if int(p[1].rsplit(":", 1)[1], 16) != srv.port:
                        continue
                    if state is not None and p[3] != state:
                        continue
                    tx, rx = (int(x, 16) for x in p[4].split(":"))
                    rows.append((p[3], tx, rx, int(p[9])))
        except FileNotFoundError:
            pass
    return rows


def established_fds(srv):
    """The server's fds that are established connections on its port."""
    inodes = {r[3] for r in server_tcp_rows(srv, "01")}
    return sorted(fd for fd, t in srv.fd_targets().items()
                  if t.startswith("socket:[") and int(t[8:-1]) in inodes)


def worker_tids(srv):
    return [tid for tid, comm, _ in srv.tasks() if comm.startswith("reuseecho-w")]


def worker_epoll_fd(srv):
    """The epoll fd that watches the (single) worker's listener."""
    targets = srv.fd_targets()
    listen = srv.listening_inodes()
    lfds = {fd for fd, t in targets.items() if t.startswith("socket:[") and int(t[8:-1]) in listen}
    for fd, t in targets.items():
        if t == "anon_inode:[eventpoll]":
            tfds = {int(x) for x in re.findall(r"^tfd:\s*(\d+)", srv.fdinfo(fd), re.M)}
            if tfds & lfds:
                return fd
    raise AssertionError("no worker epoll fd found")


def exchange(s, data, timeout, shut=True, chunk=256 * KiB):
    """Send data (interleaved with reading, so no flow-control deadlock), then
    shutdown(SHUT_WR) when shut, and read until EOF (shut) or len(data) bytes.
    Returns (received bytes, eof_seen). Bounded by timeout."""
    s.setblocking(False)
    deadline = time.monotonic() + timeout
    view = memoryview(data)
    off = 0
    got = bytearray()
    eof = False
    shut_done = False
    if shut and not data:
        s.shutdown(socket.SHUT_WR)
        shut_done = True
    while True:
        if eof or (not shut and len(got) >= len(data)):
            break
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("exchange timed out: sent %d/%d, received %d, eof %s"
                                 % (off, len(data), len(got), eof))
        wl = [s] if off < len(data) else []
        r, w, _ = select.select([s], wl, [], min(left, 1.0))
        if w:
            try:
                off += s.send(view[off:off + chunk])
            except BlockingIOError:
                pass
            if off == len(data) and shut and not shut_done:
                s.shutdown(socket.SHUT_WR)
                shut_done = True
        if r:
            try:
                d = s.recv(MiB)
            except BlockingIOError:
                continue
            if not d:
                eof = True
            else:
                got += d
                if len(got) > len(data):
                    raise AssertionError("received %d bytes, more than the %d sent"
                                         % (len(got), len(data)))
    return bytes(got), eof


def fresh_echo(tc, srv, n=MiB, seed=99, timeout=30.0):
    """A new client echoes n bytes exactly, then sees EOF after its half-close."""
    data = retest.pattern(n, seed)
    s = srv.connect()
    try:
        got, eof = exchange(s, data, timeout)
    finally:
        s.close()
    tc.assertEqual(len(got), n, "fresh client: byte count")
    tc.assertTrue(got == data, "fresh client: echoed bytes differ from what was sent")
    tc.assertTrue(eof, "fresh client: no EOF after half-close")


def nb_connect(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    rc = s.connect_ex(addr)
    if rc not in (0, errno.EINPROGRESS):
        s.close()
        raise AssertionError("connect: %s" % os.strerror(rc))
    return s


def tag_roundtrip(socks, tags, timeout):
    """Each nonblocking socket (connect maybe in progress) sends its tag once the
    connect completed and must get exactly that tag back. Returns the count served;
    raises on a wrong byte. Single thread, one epoll."""
    ep = select.epoll()
    state = {}
    try:
        for s, tag in zip(socks, tags):
            ep.register(s.fileno(), select.EPOLLOUT)
            state[s.fileno()] = [s, tag, None]	# None: not sent yet; else bytes got
        deadline = time.monotonic() + timeout
        pending = len(state)
        served = 0
        while pending > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, ev in ep.poll(min(left, 0.5), maxevents=1024):
                st = state[fd]
                s, tag, got = st
                if got is None:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise AssertionError("connect failed: %s" % os.strerror(err))
                    n = s.send(tag)
                    if n != len(tag):
                        raise AssertionError("short send of a %d-byte tag on a fresh socket" % len(tag))
                    st[2] = b""
                    ep.modify(fd, select.EPOLLIN)
                    continue
                try:
                    d = s.recv(64)
                except BlockingIOError:
                    continue
                if not d:
                    raise AssertionError("EOF after %d of %d tag bytes" % (len(got), len(tag)))
                got += d
                st[2] = got
                if not tag.startswith(got):
                    raise AssertionError("tag %r echoed as %r" % (tag, got))
                if got == tag:
                    ep.unregister(fd)
                    pending -= 1
                    served += 1
        return served
    finally:
        ep.close()


class Progress:
    """Counts bytes a sender thread pushed; 'stalled' = no change for quiet seconds."""

    def __init__(self):
        self.n = 0
        self.error = None
        self.done = False

    def wait_stalled(self, quiet, timeout, what):
        deadline = time.monotonic() + timeout
        last, since = self.n, time.monotonic()
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            if self.error is not None:
                raise AssertionError("%s: sender failed: %r" % (what, self.error))
            if self.n != last:
                last, since = self.n, now
            elif now - since >= quiet:
                return last
            if now >= deadline:
                raise AssertionError("%s: sender still making progress after %.1fs (at %d bytes)"
                                     % (what, timeout, self.n))


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


class PatternStream:
    """A deterministic byte stream, period k = 8-byte k || B (B is 1 MiB of
    retest.pattern), verified incrementally so that 256 MiB is never held twice."""

    def __init__(self, seed):
        self.base = retest.pattern(MiB, seed)

    def period(self, k):
        return struct.pack("<Q", k) + self.base

    def chunks(self, total):
        k = 0
        sent = 0
        while sent < total:
            p = self.period(k)[:total - sent]
            yield p
            sent += len(p)
            k += 1


class StreamChecker:
    def __init__(self, ps):
        self.ps = ps
        self.k = 0
        self.cur = ps.period(0)
        self.off = 0
        self.total = 0

    def feed(self, data):
        mv = memoryview(data)
        i = 0
        while i < len(mv):
            take = min(len(mv) - i, len(self.cur) - self.off)
            if mv[i:i + take] != self.cur[self.off:self.off + take]:
                raise AssertionError("echoed stream differs within bytes [%d, %d)"
                                     % (self.total + i, self.total + i + take))
            i += take
            self.off += take
            if self.off == len(self.cur):
                self.k += 1
                self.cur = self.ps.period(self.k)
                self.off = 0
        self.total += len(mv)


# --- tests ------------------------------------------------------------------------

class Edge(unittest.TestCase):
    def setUp(self):
        self.socks = []

    def start(self, *args):
        srv = retest.Server(*args)
        self.addCleanup(self.finish, srv)
        return srv

    def finish(self, srv):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.socks = []
        alive = srv.alive()
        rc = srv.stop() if alive else srv.proc.returncode
        err = srv.stderr()
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, err, "sanitizer report in server stderr:\n" + err[-4000:])
        self.assertTrue(alive, "server died during the test (status %s); stderr: %s" % (rc, err[-2000:]))
        self.assertEqual(rc, 0, "graceful drain on SIGTERM exits 0; stderr: %s" % err[-2000:])

    def track(self, s):
        self.socks.append(s)
        return s

    def assert_alive(self, srv, what):
        self.assertTrue(srv.alive(), "%s: server died (status %s); stderr: %s"
                        % (what, srv.proc.poll(), srv.stderr()[-2000:]))

    def wait_fds(self, srv, base, timeout, what):
        """The server closed every connection the test dropped: its fd count is back."""
        try:
            retest.wait_until(lambda: srv.num_fds() <= base, timeout=timeout, interval=0.05,
                              what=what)
        except AssertionError:
            self.assert_alive(srv, what)
            raise AssertionError("%s: server still holds %d fds (baseline %d)"
                                 % (what, srv.num_fds(), base))

    # 1 --------------------------------------------------------------------------
    def test_accept_burst(self):
        """2,000 near-simultaneous connects to two workers: every one is accepted and
        served (accept-until-EAGAIN within a budget, resumed without a new edge)."""
        n = 2000
        if raise_nofile() < n + 200:
            self.skipTest("RLIMIT_NOFILE hard limit too low for %d sockets" % n)
        backlog = min(65535, max(somaxconn(), 4096))
        srv = self.start("--threads", 2, "--backlog", backlog)
        base = srv.num_fds()
        addr = (srv.host, srv.port)
        socks = []
        for _ in range(n):	# all connects first, as fast as one thread can issue them
            socks.append(self.track(nb_connect(addr)))
        tags = [struct.pack(">II", 0xE0000000 | i, (i * 2654435761) & 0xFFFFFFFF) for i in range(n)]
        self.assertEqual(len(set(tags)), n)
        served = tag_roundtrip(socks, tags, timeout=40.0)
        self.assertEqual(served, n, "connections served, of %d" % n)
        self.assertEqual(len(established_fds(srv)), n, "server holds every connection")
        for s in socks:
            s.close()
        self.socks = []
        self.wait_fds(srv, base, 20.0, "closing the burst")

    # 2 --------------------------------------------------------------------------
    def test_register_once_write_through_short_read(self):
        """strace the worker during 1,000 ping-pongs on an established connection:
        no epoll_ctl, every recv of a 64-byte message is followed at once by its send
        (write-through, no epoll_wait between), and no recv that only returns EAGAIN
        (a short read ends the drain). fdinfo shows the one registration's mask."""
        strace = shutil.which("strace")
        if strace is None:
            self.skipTest("strace not installed")
        srv = self.start("--threads", 1)
        s = self.track(srv.connect())
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"w" * 64)
        self.assertEqual(retest.recv_exact(s, 64), b"w" * 64)
        fds = established_fds(srv)
        self.assertEqual(len(fds), 1, "one connection")
        cfd = fds[0]

        # The registration: exactly one entry for the connection, mask
        # EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET (the kernel adds EPOLLERR|EPOLLHUP to every
        # EPOLL_CTL_ADD, so fdinfo reads 8000201d).
        ep = worker_epoll_fd(srv)
        lines = re.findall(r"^tfd:\s*(\d+)\s+events:\s*([0-9a-fA-F]+)", srv.fdinfo(ep), re.M)
        mine = [int(ev, 16) for fd, ev in lines if int(fd) == cfd]
        self.assertEqual(len(mine), 1, "connection fd %d registered once in epoll %d" % (cfd, ep))
        self.assertEqual(mine[0] & ~(EPOLLERR | EPOLLHUP), EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                         "events mask 0x%x" % mine[0])

        (wtid,) = worker_tids(srv)
        tmp = tempfile.NamedTemporaryFile(prefix="edge-strace-", suffix=".txt", delete=False)
        tmp.close()
        self.addCleanup(os.unlink, tmp.name)
        trerr = tempfile.TemporaryFile()
        self.addCleanup(trerr.close)
        tr = subprocess.Popen([strace, "-f", "-qq", "-s", "0",
                               "-e", "trace=epoll_ctl,recvfrom,sendto,read,write,epoll_wait,epoll_pwait",
                               "-p", str(srv.pid), "-o", tmp.name],
                              stdout=subprocess.DEVNULL, stderr=trerr)

        def detach():
            if tr.poll() is None:
                tr.send_signal(signal.SIGINT)
                try:
                    tr.wait(10)
                except subprocess.TimeoutExpired:
                    tr.kill()
                    tr.wait(5)
        self.addCleanup(detach)

        def traced():
            if tr.poll() is not None:
                return "exited"
            with open("/proc/%d/task/%d/status" % (srv.pid, wtid)) as f:
                return re.search(r"^TracerPid:\s*[1-9]", f.read(), re.M) is not None
        try:
            st = retest.wait_until(traced, timeout=10.0, what="strace to attach")
        except AssertionError:
            st = "timeout"
        if st is not True:
            detach()
            trerr.seek(0)
            self.skipTest("strace could not attach (%s): %s" % (st, trerr.read().decode(errors="replace")[-500:]))

        # TracerPid is set at PTRACE_SEIZE, before syscall tracing starts: probe with
        # 7-byte messages until one shows up in the trace (strace writes whole lines).
        def probe():
            s.sendall(b"p" * 7)
            self.assertEqual(retest.recv_exact(s, 7), b"p" * 7)
            with open(tmp.name) as f:
                return re.search(r"^%d\s+sendto\(%d,.*\)\s+= 7$" % (wtid, cfd), f.read(), re.M)
        retest.wait_until(probe, timeout=10.0, interval=0.05, what="strace to trace the worker")

        # Pace the client: send the next message only once the worker sleeps in
        # epoll_wait again. Otherwise a traced (slow) worker finds the next message
        # already queued, and a server that reads on to EAGAIN would rarely show it.
        def idle():
            base = "/proc/%d/task/%d/" % (srv.pid, wtid)
            with open(base + "stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(base + "wchan") as f:
                return state == "S" and "epoll" in f.read()
        try:
            retest.wait_until(idle, timeout=5.0, interval=0.001, what="worker idle in epoll_wait")
            pace = True
        except (AssertionError, OSError):
            pace = False	# wchan not readable here: run unpaced
        rounds = 1000
        for i in range(rounds):
            msg = struct.pack("<I", i) + b"%060d" % i
            s.sendall(msg)
            self.assertEqual(retest.recv_exact(s, 64), msg)
            if pace:
                retest.wait_until(idle, timeout=5.0, interval=0.0002, what="worker back in epoll_wait")
        detach()
        self.assert_alive(srv, "under strace")

        with open(tmp.name) as f:
            text = f.read()
        # Only what follows the last probe counts.
        last_probe = list(re.finditer(r"^%d\s+sendto\(%d,.*\)\s+= 7$" % (wtid, cfd), text, re.M))[-1]
        lines = text[last_probe.end():].splitlines()
        calls = []	# (tid, name, fd, result, errname) in order; resumed lines fold in
        call_re = re.compile(r"^(\d+)\s+(\w+)\((\d+),")
        res_re = re.compile(r"\s+=\s+(-?\d+)(?:\s+(E[A-Z]+))?")
        for ln in lines:
            m = call_re.match(ln)
            if not m:
                continue	# "<... resumed>" continuation or detach noise
            r = res_re.search(ln[ln.rfind(")"):]) if "unfinished" not in ln else None
            calls.append((int(m.group(1)), m.group(2), int(m.group(3)),
                          int(r.group(1)) if r else None, r.group(2) if r else None))

        ctl = [c for c in calls if c[1] == "epoll_ctl"]
        self.assertEqual(len(ctl), 0, "epoll_ctl calls in steady state, e.g. %r" % ctl[:3])
        sends = [c for c in calls if c[1] == "sendto" and c[2] == cfd]
        self.assertEqual(len(sends), rounds, "one send per message: %r" % sends[:5])
        self.assertTrue(all(c[3] == 64 for c in sends), "every send took 64 bytes: %r"
                        % [c for c in sends if c[3] != 64][:5])
        recvs = [c for c in calls if c[1] == "recvfrom" and c[2] == cfd]
        eagain = [c for c in recvs if c[4] == "EAGAIN"]
        self.assertLessEqual(len(recvs), rounds + 5, "recv calls for %d messages" % rounds)
        self.assertLessEqual(len(eagain), 5, "recv calls that only returned EAGAIN")
        self.assertEqual(sum(1 for c in recvs if c[3] == 64), rounds, "recvs that returned 64 bytes")
        # Write-through: the worker's next traced call after each 64-byte recv is the
        # send of those bytes, with no epoll_wait (no waiting for EPOLLOUT) between.
        wcalls = [c for c in calls if c[0] == wtid]
        for i, c in enumerate(wcalls):
            if c[1] == "recvfrom" and c[2] == cfd and c[3] == 64:
                nxt = wcalls[i + 1] if i + 1 < len(wcalls) else None
                self.assertTrue(nxt is not None and nxt[1] == "sendto" and nxt[2] == cfd and nxt[3] == 64,
                                "recv at call %d followed by %r, not the send" % (i, nxt))

    # 3 --------------------------------------------------------------------------
    def run_pingers(self, srv, nclients, duration):
        """nclients ping-pong clients, 64-byte messages, depth 1, from one thread for
        duration seconds. Returns (rtts in seconds, per-client counts)."""
        socks = []
        for _ in range(nclients):
            s = self.track(srv.connect())
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            socks.append(s)
        body = retest.pattern(56, 7)
        ep = select.epoll()
        st = {}
        rtts = []
        counts = [0] * nclients
        try:
            def send_next(i):
                s = socks[i]
                msg = struct.pack("<II", i, counts[i]) + body
                self.assertEqual(s.send(msg), 64)
                st[s.fileno()] = (i, msg, bytearray(), time.monotonic())
            for i, s in enumerate(socks):
                ep.register(s.fileno(), select.EPOLLIN)
                send_next(i)
            end = time.monotonic() + duration
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                for fd, _ in ep.poll(min(left, 0.2)):
                    i, msg, got, t0 = st[fd]
                    d = socks[i].recv(128)
                    self.assertTrue(d, "ping-pong client %d: EOF" % i)
                    got += d
                    if len(got) < 64:
                        continue
                    now = time.monotonic()
                    self.assertEqual(bytes(got), msg, "ping-pong client %d: echo differs" % i)
                    rtts.append(now - t0)
                    counts[i] += 1
                    if now < end:
                        send_next(i)
            # In flight at the end: the echo still has to come back (bounded).
            for fd, (i, msg, got, t0) in st.items():
                if len(got) < 64:
                    socks[i].settimeout(10.0)
                    rest = retest.recv_exact(socks[i], 64 - len(got))
                    self.assertEqual(bytes(got) + rest, msg)
        finally:
            ep.close()
            for s in socks:
                s.close()
        return rtts, counts

    def test_fairness_streamer_vs_pingpong(self):
        """One worker; a client streams 64 KiB chunks flat out while 20 ping-pong
        clients measure round trips. The per-turn read budget and the ready list keep
        the ping-pongers moving.

        Measured on the 2-core dev VM (64-byte RTTs seen by this Python client; the
        streamer moves 1.5-2.7 GiB in the 3 s):
          release build, quiet:  p99 0.2-1.8 ms alone; with the streamer p99 1.4-8.8 ms,
                                 max 6-45 ms, >= 3,400 round trips per client
          ASan+UBSan, quiet:     p99 0.2 ms alone; with the streamer p99 3.1-5.7 ms,
                                 max 8-27 ms, >= 5,100 round trips per client
          ASan+UBSan, 2 CPU hogs running: p99 up to 12.6 ms alone; with the streamer
                                 p99 8-28 ms, max 67 ms, >= 1,016 round trips per client
          mutants built to check this test: without the per-wakeup budget, or also
          reading on to EAGAIN: p99 12-330 ms, max 80-1000 ms, 137-2800 round trips
          per client; they fail here in about half the runs (the 64 KiB backpressure
          cap already limits how long one Python streamer can hold the worker). A
          worker monopolised for seconds fails every time.
        Bound: p99 < 50 ms (6x the worst quiet p99), raised to 10x the p99 measured
        alone in this run when the machine is that noisy, but never above 150 ms (still
        well below starvation); max < 500 ms; every client >= 500 round trips."""
        max_bound, min_rounds = 0.500, 500
        srv = self.start("--threads", 1)
        base_rtts, _ = self.run_pingers(srv, 20, 0.5)
        base_p99 = percentile(base_rtts, 0.99)
        p99_bound = min(0.150, max(0.050, 10 * base_p99))

        chunk = retest.pattern(64 * KiB, 3)
        rbuf_size = MiB
        ref = chunk * (rbuf_size // len(chunk) + 1)	# any offset into the echo, + 1 MiB
        st = self.track(srv.connect(timeout=15.0))
        stop = threading.Event()
        sent = Progress()
        recvd = Progress()

        def sender():
            try:
                while not stop.is_set():
                    st.sendall(chunk)
                    sent.n += len(chunk)
                st.shutdown(socket.SHUT_WR)
            except Exception as e:	# reported by the main thread
                sent.error = e

        def reader():
            buf = bytearray(rbuf_size)
            try:
                while True:
                    n = st.recv_into(buf)
                    if n == 0:
                        recvd.done = True
                        return
                    o = recvd.n % len(chunk)
                    if buf[:n] != ref[o:o + n]:
                        raise AssertionError("streamer echo differs at byte %d" % recvd.n)
                    recvd.n += n
            except Exception as e:
                recvd.error = e

        ts = [threading.Thread(target=sender, daemon=True), threading.Thread(target=reader, daemon=True)]
        for t in ts:
            t.start()
        try:
            retest.wait_until(lambda: recvd.n >= 4 * MiB or recvd.error, timeout=10.0,
                              what="the streamer to get going")
            rtts, counts = self.run_pingers(srv, 20, 3.0)
        finally:
            stop.set()
        for t in ts:
            t.join(20.0)
        self.assertFalse(any(t.is_alive() for t in ts), "streamer threads finished")
        self.assertIsNone(sent.error)
        self.assertIsNone(recvd.error)
        self.assertTrue(recvd.done, "streamer saw EOF")
        self.assertEqual(recvd.n, sent.n, "streamer: every byte echoed")
        p99, mx = percentile(rtts, 0.99), max(rtts)
        sys.stderr.write("\n  fairness: alone p99 %.2f ms; with streamer p50 %.2f p99 %.2f max %.2f ms, "
                         "min/client %d, streamer %.0f MiB\n"
                         % (base_p99 * 1e3, percentile(rtts, 0.5) * 1e3, p99 * 1e3, mx * 1e3,
                            min(counts), sent.n / MiB))
        self.assertGreaterEqual(sent.n, 64 * MiB, "the streamer really streamed")
        self.assertGreaterEqual(min(counts), min_rounds, "round trips per ping-pong client: %r" % counts)
        self.assertLess(p99, p99_bound, "p99 RTT with a streamer, bound %.0f ms (alone: %.2f ms)"
                        % (p99_bound * 1e3, base_p99 * 1e3))
        self.assertLess(mx, max_bound, "max RTT with a streamer")

    # 4 --------------------------------------------------------------------------
    def test_backpressure(self):
        """--conn-buffer 1M: a client that sends 256 MiB without reading makes the
        server stop reading (RSS stays flat); once it reads, every byte comes back in
        order, then EOF."""
        total = 256 * MiB
        srv = self.start("--threads", 1, "--conn-buffer", "1M")
        fresh_echo(self, srv, 64 * KiB)	# touch the scratch buffer and pools first
        rss0 = srv.rss_kb()
        ps = PatternStream(11)
        s = self.track(srv.connect(timeout=30.0))
        prog = Progress()

        def sender():
            try:
                for p in ps.chunks(total):
                    mv = memoryview(p)
                    off = 0
                    while off < len(mv):
                        n = s.send(mv[off:off + 256 * KiB])
                        off += n
                        prog.n += n
                s.shutdown(socket.SHUT_WR)
                prog.done = True
            except Exception as e:
                prog.error = e
        t = threading.Thread(target=sender, daemon=True)
        t.start()
        try:
            stalled_at = prog.wait_stalled(0.5, 30.0, "backpressure")
            rss1 = srv.rss_kb()
            growth = rss1 - rss0
            sys.stderr.write("\n  backpressure: sender stalled at %.1f MiB, server RSS %d -> %d kB (+%d kB)\n"
                             % (stalled_at / MiB, rss0, rss1, growth))
            self.assertLess(stalled_at, total, "the server read everything: no backpressure")
            self.assertLess(growth, 2 * 1024 + 8 * 1024, "server RSS growth (kB) while the client does not read")

            chk = StreamChecker(ps)
            buf = bytearray(MiB)
            deadline = time.monotonic() + 45.0
            eof = False
            while time.monotonic() < deadline:
                n = s.recv_into(buf)
                if n == 0:
                    eof = True
                    break
                chk.feed(memoryview(buf)[:n])
                if chk.total > total:
                    break
            self.assertTrue(eof, "EOF within the deadline (got %d of %d bytes)" % (chk.total, total))
            t.join(10.0)	# it shut down its side before EOF could come; let it return
            self.assertIsNone(prog.error)
            self.assertTrue(prog.done, "sender finished")
            self.assertEqual(chk.total, total, "every byte echoed")
        finally:
            try:
                s.shutdown(socket.SHUT_RDWR)	# wakes a sender still blocked on failure
            except OSError:
                pass
            t.join(10.0)

    # 5 --------------------------------------------------------------------------
    def test_half_close(self):
        """send N bytes, shutdown(SHUT_WR): exactly those N bytes come back, then EOF."""
        srv = self.start("--threads", 2)
        for n in (0, 1, 65536, 3333333, 10 * MiB):
            with self.subTest(n=n):
                data = retest.pattern(n, n)
                s = self.track(srv.connect())
                got, eof = exchange(s, data, 30.0)
                s.close()
                self.assertEqual(len(got), n, "bytes echoed")
                self.assertTrue(got == data, "echo differs from what was sent")
                self.assertTrue(eof, "EOF after the echo")

    # 6 --------------------------------------------------------------------------
    def fill_without_reading(self, socks, per_sock, timeout, quiet=0.3):
        """Nonblocking sends of a pattern until each socket took per_sock bytes or
        nothing moved for quiet seconds. Returns bytes sent per socket."""
        data = retest.pattern(per_sock, 5)
        sent = [0] * len(socks)
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        while time.monotonic() < deadline:
            moved = False
            for i, s in enumerate(socks):
                if sent[i] >= per_sock:
                    continue
                try:
                    n = s.send(data[sent[i]:sent[i] + 256 * KiB])
                except BlockingIOError:
                    continue
                sent[i] += n
                moved = moved or n > 0
            now = time.monotonic()
            if moved:
                last_progress = now
            if all(x >= per_sock for x in sent) or now - last_progress >= quiet:
                break
            if not moved:
                time.sleep(0.01)
        return sent

    def test_reset_mid_transfer(self):
        """50 clients send 4 MiB reading nothing, then RST while the server still has
        output for them; 20 more RST right after connecting. The server survives, closes
        every one of them, and a fresh client echoes 1 MiB exactly."""
        srv = self.start("--threads", 2)
        base = srv.num_fds()
        socks = []
        for _ in range(50):
            s = self.track(srv.connect())
            s.setblocking(False)
            socks.append(s)
        sent = self.fill_without_reading(socks, 4 * MiB, 20.0)
        self.assertTrue(all(x > 0 for x in sent))
        # The server has output it cannot send: its sockets' send queues are non-empty.
        pending = retest.wait_until(
            lambda: [r for r in server_tcp_rows(srv, "01") if r[1] > 0] or None, timeout=10.0,
            what="server-side send queues to fill")
        self.assertGreaterEqual(len(pending), 25, "server sockets with unsent output")
        early = [self.track(nb_connect((srv.host, srv.port))) for _ in range(20)]
        for s in socks + early:	# RST them all at nearly the same moment
            rst_close(s)
        self.socks = []
        self.wait_fds(srv, base, 20.0, "closing reset connections")
        self.assert_alive(srv, "after resets")
        fresh_echo(self, srv, MiB)

    def test_close_without_reading_no_sigpipe(self):
        """Clients that stop reading and close while the server still has echo output
        for them: the server's send fails (ECONNRESET/EPIPE); SIGPIPE must not kill it."""
        srv = self.start("--threads", 1)
        base = srv.num_fds()
        # (a) send up to 8 MiB, read nothing, close() normally.
        a = self.track(srv.connect())
        a.setblocking(False)
        self.assertGreater(self.fill_without_reading([a], 8 * MiB, 20.0)[0], 0)
        a.close()
        # (b) send 8 MiB ... interleaved: half-close, let the server queue its echo,
        # then close with the echo unread while the server is still flushing after EOF.
        b = self.track(srv.connect())
        b.setblocking(False)
        self.assertGreater(self.fill_without_reading([b], 8 * MiB, 20.0)[0], 0)
        b.shutdown(socket.SHUT_WR)
        retest.wait_until(lambda: [r for r in server_tcp_rows(srv, "01") if r[1] > 0] or
                          [r for r in server_tcp_rows(srv) if r[0] in ("08", "09")] or None,
                          timeout=10.0, what="the server to have output queued")
        b.close()
        # (c) several at once, for more chances that a send follows the reset.
        cs = [self.track(srv.connect()) for _ in range(10)]
        for c in cs:
            c.setblocking(False)
        self.fill_without_reading(cs, 2 * MiB, 20.0)
        for c in cs:
            c.close()
        self.socks = []
        self.wait_fds(srv, base, 20.0, "closing clients that did not read")
        self.assert_alive(srv, "after peers closed with unread echo")
        fresh_echo(self, srv, MiB)

    # 7 --------------------------------------------------------------------------
    def test_stale_events_fd_reuse(self):
        """Resets and new connects interleaved so that one epoll batch holds both a
        close and an accept4 that reuses the fd number: 20 rounds of 200 resets
        (with data queued both ways) interleaved with 200 connects. The server must
        survive (ASan would abort on a use-after-free) and every new connection must
        echo exactly. Traffic alone rarely puts a close and a later event for the same
        connection in one batch; test_debug_hooks.py provokes that case on cue."""
        raise_nofile()
        srv = self.start("--threads", 1)
        base = srv.num_fds()
        addr = (srv.host, srv.port)
        per, rounds = 200, 20
        filler = retest.pattern(64 * KiB, 21)

        def open_batch(r):
            socks = [self.track(nb_connect(addr)) for _ in range(per)]
            tags = [struct.pack(">IIII", 0xFEED, r, i, (r * per + i) * 2654435761 & 0xFFFFFFFF)
                    for i in range(per)]
            served = tag_roundtrip(socks, tags, timeout=20.0)
            self.assertEqual(served, per, "round %d: new connections served" % r)
            return socks

        old = open_batch(0)
        t0 = time.monotonic()
        for r in range(1, rounds + 1):
            self.assertLess(time.monotonic() - t0, 45.0, "rounds took too long")
            for s in old:	# data queued both ways: the server has input and output
                try:
                    s.send(filler)
                except BlockingIOError:
                    pass
            new = []
            for s in old:	# a reset, then a connect, 200 times, as fast as possible
                rst_close(s)
                new.append(self.track(nb_connect(addr)))
            self.assert_alive(srv, "round %d" % r)
            tags = [struct.pack(">IIII", 0xFEED, r, i, (r * per + i) * 2654435761 & 0xFFFFFFFF)
                    for i in range(per)]
            served = tag_roundtrip(new, tags, timeout=20.0)
            self.assertEqual(served, per, "round %d: new connections served" % r)
            old = new
        for s in old:
            s.close()
        self.wait_fds(srv, base, 20.0, "closing the last round")
        self.assert_alive(srv, "after %d rounds" % rounds)
        err = srv.stderr()
        for mark in SANITIZER_MARKS:
            self.assertNotIn(mark, err)
        fresh_echo(self, srv, MiB)


if __name__ == "__main__":
    retest.main()
