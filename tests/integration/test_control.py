"""doc/DESIGN.md §4-5 from outside: the control socket's counters are exact and agree across
formats (JSON, Prometheus, workers table, text), HTTP GET on the same socket and on
--metrics-listen, runtime settings published through RCU (each checked by what the
server then does, not only by `config`), socket-file ownership rules, the default
path, reuseecho-ctl's exit codes and `top`, and the `shutdown` command."""
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

CLOSED_KEYS = ("closed_eof", "closed_error", "closed_idle", "closed_limit", "closed_drain")


def sock_path():
    d = tempfile.mkdtemp(prefix="reuseecho-ctl-test-")
    return os.path.join(d, "control.sock")


def cleanup_path(path):
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


class ControlCase(unittest.TestCase):
    """Starts servers with a private control socket and stops them at the end."""

    def setUp(self):
        self.servers = []
        self.paths = []

    def tearDown(self):
        for srv in self.servers:
            if srv.alive():
                srv.kill()
        for p in self.paths:
            cleanup_path(p)

    def start(self, *args, path=None, **kw):
        if path is None:
            path = sock_path()
            self.paths.append(path)
        srv = retest.Server("--control", path, *args, **kw)
        srv.ctl = path
        self.servers.append(srv)
        return srv

    def stop(self, srv):
        self.assertEqual(srv.stop(), 0, srv.stderr())

    def assert_serving(self, srv):
        s = srv.connect()
        try:
            retest.echo_check(s, b"still here\n", timeout=10)
        finally:
            s.close()
        self.assertIn("accepted", retest.ctl_command(srv.ctl, "stats"))


class Exactness(ControlCase):
    NCLIENTS = 37
    SIZE = 100003

    def test_counts_exact_in_every_format(self):
        srv = self.start("--threads", 4)
        errors = []

        def client(i):
            try:
                s = srv.connect(timeout=30)
                try:
                    retest.echo_check(s, retest.pattern(self.SIZE, seed=i), timeout=60)
                finally:
                    s.close()
            except Exception as e:  # reported below
                errors.append("client %d: %r" % (i, e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(self.NCLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        retest.wait_until(lambda: retest.stats_json(srv.ctl)["total"]["closed_eof"] == self.NCLIENTS,
                          timeout=15, what="%d closed_eof" % self.NCLIENTS)

        with retest.ControlClient(srv.ctl) as c:
            js = c.json()
            metrics = c.cmd("metrics")
            table = c.cmd("workers")
            text = c.cmd("stats")
        tot = js["total"]
        nbytes = self.NCLIENTS * self.SIZE
        self.assertEqual(nbytes, 3700111)
        self.assertEqual(tot["accepted"], self.NCLIENTS)
        self.assertEqual(tot["bytes_received"], nbytes)
        self.assertEqual(tot["bytes_sent"], nbytes)
        self.assertEqual(tot["closed_eof"], self.NCLIENTS)
        for k in CLOSED_KEYS[1:]:
            self.assertEqual(tot[k], 0, k)
        self.assertEqual(tot["active"], 0)
        self.assertEqual(js["workers"], 4)
        self.assertEqual(len(js["per_worker"]), 4)
        # Every counter: per-worker rows plus retired add up to the total.
        for key, value in tot.items():
            s = js["retired"][key] + sum(w[key] for w in js["per_worker"])
            self.assertEqual(s, value, "per_worker + retired != total for %s" % key)

        # Prometheus agrees (these counters no longer move).
        samples = retest.parse_prometheus(metrics)

        def prom_sum(name, **labels):
            vals = [v for n, lab, v in samples if n == name
                    and all(lab.get(k) == x for k, x in labels.items())]
            self.assertTrue(vals, "no samples of %s %s" % (name, labels))
            return int(sum(vals))

        # Process totals carry no worker label; per-worker twins only live workers.
        self.assertEqual({"worker" in lab for n, lab, _ in samples
                          if n == "reuseecho_connections_accepted_total"}, {False})
        workers_seen = {lab["worker"] for n, lab, _ in samples
                        if n == "reuseecho_worker_connections_accepted_total"}
        self.assertEqual(workers_seen, {"0", "1", "2", "3"})
        for name, key in (("connections_accepted_total", "accepted"),
                          ("bytes_received_total", "bytes_received"),
                          ("bytes_sent_total", "bytes_sent")):
            self.assertEqual(prom_sum("reuseecho_" + name), tot[key])
            self.assertEqual(prom_sum("reuseecho_worker_" + name),
                             sum(w[key] for w in js["per_worker"]))
        self.assertEqual(prom_sum("reuseecho_connections_closed_total", reason="eof"), self.NCLIENTS)
        self.assertEqual(prom_sum("reuseecho_worker_connections_closed_total", reason="eof"),
                         self.NCLIENTS)
        self.assertEqual(prom_sum("reuseecho_connections_active"), 0)
        self.assertEqual(prom_sum("reuseecho_worker_connections_active"), 0)
        for w in js["per_worker"]:
            self.assertEqual(prom_sum("reuseecho_worker_connections_accepted_total",
                                      worker=str(w["id"])), w["accepted"])

        # The workers table: one row per worker, columns add up.
        lines = table.splitlines()
        hdr = lines[0].split()
        self.assertEqual(hdr[:13], ["id", "cpu", "tid", "state", "active", "accepted", "closed",
                                    "bytes_in", "bytes_out", "recv_calls", "send_calls",
                                    "acceptq", "acceptq_max"])
        rows = [dict(zip(hdr, ln.split())) for ln in lines[1:]]
        self.assertEqual(len(rows), 4, table)
        ret = js["retired"]
        self.assertEqual(sum(int(r["accepted"]) for r in rows) + ret["accepted"], self.NCLIENTS)
        self.assertEqual(sum(int(r["closed"]) for r in rows) + sum(ret[k] for k in CLOSED_KEYS),
                         self.NCLIENTS)
        self.assertEqual(sum(int(r["bytes_in"]) for r in rows) + ret["bytes_received"], nbytes)
        self.assertEqual(sum(int(r["bytes_out"]) for r in rows) + ret["bytes_sent"], nbytes)
        self.assertEqual(sum(int(r["active"]) for r in rows), 0)

        self.assertRegex(text, r"\baccepted %d\b" % self.NCLIENTS)
        self.stop(srv)


class Formats(ControlCase):
    def promtool(self, text):
        r = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=text,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout), (0, ""), "promtool complains")

    def test_promtool_live_metrics(self):
        if not os.path.exists("/usr/bin/promtool"):
            self.skipTest("/usr/bin/promtool missing")
        srv = self.start("--threads", 3)
        s = srv.connect()
        retest.echo_check(s, b"x" * 1000)
        s.close()
        text = retest.ctl_command(srv.ctl, "metrics")
        self.assertIn("reuseecho_connections_accepted_total", text)
        self.promtool(text)
        if shutil.which("curl") is None:
            self.stop(srv)
            self.skipTest("curl missing (the line-protocol output passed)")
        r = subprocess.run(["curl", "-sS", "-f", "--max-time", "10", "--unix-socket", srv.ctl,
                            "http://localhost/metrics"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("reuseecho_workers 3", r.stdout)
        self.promtool(r.stdout)
        self.stop(srv)

    def test_http_on_control_socket(self):
        srv = self.start("--threads", 2)
        st, hdr, body = retest.http_get_unix(srv.ctl, "/stats")
        self.assertEqual(st, 200)
        self.assertTrue(hdr["content-type"].startswith("application/json"), hdr)
        self.assertEqual(int(hdr["content-length"]), len(body))
        js = json.loads(body)
        self.assertEqual(js["workers"], 2)
        self.assertEqual(js["port"], srv.port)

        st, hdr, body = retest.http_get_unix(srv.ctl, "/healthz")
        self.assertEqual((st, body.strip()), (200, b"ok"))
        st, hdr, body = retest.http_get_unix(srv.ctl, "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(hdr["content-type"].startswith("text/plain; version=0.0.4"), hdr)
        self.assertIn(b"reuseecho_workers 2\n", body)
        st, _, _ = retest.http_get_unix(srv.ctl, "/metrics?x=1")
        self.assertEqual(st, 200)

        self.assertEqual(retest.http_get_unix(srv.ctl, "/nope")[0], 404)
        st, hdr, _ = retest.http_get_unix(srv.ctl, "/metrics", method="POST")
        self.assertEqual(st, 405)
        self.assertIn("GET", hdr.get("allow", ""))

        st, _, body = retest.http_get_unix(srv.ctl, "/healthz", version="1.0")
        self.assertEqual((st, body.strip()), (200, b"ok"))
        st, hdr, body = retest.http_request(retest.unix_connect(srv.ctl),
                                            "GET /stats HTTP/1.0\r\n\r\n")
        self.assertEqual(st, 200)
        json.loads(body)

        st, hdr, body = retest.http_get_unix(srv.ctl, "/metrics", method="HEAD")
        self.assertEqual(st, 200)
        self.assertEqual(body, b"")
        self.assertGreater(int(hdr["content-length"]), 0)
        self.assert_serving(srv)
        self.stop(srv)

    def test_metrics_listen_tcp(self):
        port = retest.free_tcp_port()
        srv = self.start("--threads", 2, "--metrics-listen", "127.0.0.1:%d" % port)

        def tcp():
            return socket.create_connection(("127.0.0.1", port), timeout=5)

        st, hdr, body = retest.http_request(tcp(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(st, 200)
        names = {n for n, _, _ in retest.parse_prometheus(body.decode())}
        self.assertIn("reuseecho_workers", names)
        st, hdr, body = retest.http_request(tcp(), "GET /stats HTTP/1.0\r\n\r\n")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["port"], srv.port)
        st, _, body = retest.http_request(tcp(), "GET /healthz HTTP/1.1\r\n\r\n")
        self.assertEqual((st, body.strip()), (200, b"ok"))
        # The line protocol is not offered over TCP.
        st, _, _ = retest.http_request(tcp(), "stats\n")
        self.assertEqual(st, 400)
        self.assert_serving(srv)
        self.stop(srv)

    def test_metrics_listen_without_control_socket(self):
        port = retest.free_tcp_port()
        srv = retest.Server("--threads", 1, "--control", "none", "--metrics-listen", str(port))
        self.servers.append(srv)
        st, _, body = retest.http_request(socket.create_connection(("127.0.0.1", port), timeout=5),
                                          "GET /healthz HTTP/1.1\r\n\r\n")
        self.assertEqual((st, body.strip()), (200, b"ok"))
        self.stop(srv)


class RuntimeConfig(ControlCase):
    def config(self, srv):
        out = {}
        for ln in retest.ctl_command(srv.ctl, "config").splitlines():
            k, _, v = ln.partition(" ")
            out[k] = v
        return out

    def test_max_conns(self):
        srv = self.start("--threads", 2)
        with retest.ControlClient(srv.ctl) as c:
            self.assertEqual(c.cmd("set max-conns 2"), "OK max-conns 2\n")
        self.assertEqual(self.config(srv)["max-conns"], "2")
        a, b = srv.connect(), srv.connect()
        retest.echo_check(a, b"a" * 100)
        retest.echo_check(b, b"b" * 100)
        third = None
        with self.assertRaises(ConnectionResetError):
            # The reset may already be there when connect() checks SO_ERROR.
            third = srv.connect()
            third.sendall(b"hello")
            d = third.recv(100)
            self.fail("third connection not reset (got %r)" % d)
        if third is not None:
            third.close()
        retest.echo_check(a, retest.pattern(50000, 1))
        retest.echo_check(b, retest.pattern(50000, 2))
        self.assertEqual(retest.stats_json(srv.ctl)["total"]["closed_limit"], 1)
        a.close()
        b.close()
        retest.ctl_command(srv.ctl, "set max-conns 0")
        retest.wait_until(lambda: retest.stats_json(srv.ctl)["total"]["active"] == 0, 10,
                          what="connections closed")
        socks = [srv.connect() for _ in range(4)]
        for s in socks:
            retest.echo_check(s, b"unlimited")
            s.close()
        self.stop(srv)

    def test_set_is_logged_with_units(self):
        # "set idle-timeout 250ms" was logged as a bare "250": the log says what the
        # reply says, unit included.
        srv = self.start("--threads", 1)
        for line, reply in (("set idle-timeout 250ms", "idle-timeout 250 ms"),
                            ("set idle-timeout 1.5", "idle-timeout 1500 ms"),
                            ("set drain-timeout 3", "drain-timeout 3000 ms"),
                            ("set max-conns 7", "max-conns 7")):
            self.assertEqual(retest.ctl_command(srv.ctl, line), "OK %s\n" % reply)
            retest.wait_until(lambda: "reuseecho: info: set %s\n" % reply in srv.stderr(),
                              timeout=5, what="'set %s' in the log" % reply)
        self.assertNotRegex(srv.stderr(), r"set idle-timeout \d+\n")
        self.stop(srv)

    def test_idle_timeout(self):
        srv = self.start("--threads", 2)
        before = srv.connect()
        retest.echo_check(before, b"ping")
        t_before = time.monotonic()
        self.assertEqual(retest.ctl_command(srv.ctl, "set idle-timeout 0.5"),
                         "OK idle-timeout 500 ms\n")

        self.assertEqual(self.config(srv)["idle-timeout"], "0.500")
        after = srv.connect()
        retest.echo_check(after, b"pong")
        t_after = time.monotonic()
        for s, t0, what in ((before, t_before, "connection older than the set"),
                            (after, t_after, "connection newer than the set")):
            s.settimeout(5)
            self.assertEqual(s.recv(10), b"", what)
            dt = time.monotonic() - t0
            self.assertTrue(0.4 <= dt <= 2.5, "%s closed after %.2fs" % (what, dt))
            s.close()
        self.assertEqual(retest.stats_json(srv.ctl)["total"]["closed_idle"], 2)
        # Off again: an idle connection survives.
        retest.ctl_command(srv.ctl, "set idle-timeout 0")
        self.assertEqual(self.config(srv)["idle-timeout"], "0")
        s = srv.connect()
        retest.echo_check(s, b"1")
        time.sleep(1.2)
        retest.echo_check(s, b"2")
        s.close()
        self.stop(srv)

    def test_conn_buffer_backpressure(self):
        srv = self.start("--threads", 2)
        self.assertEqual(retest.ctl_command(srv.ctl, "set conn-buffer 8K"),
                         "OK conn-buffer 8192\n")
        self.assertEqual(self.config(srv)["conn-buffer"], "8192")
        pauses0 = retest.stats_json(srv.ctl)["total"]["backpressure_pauses"]
        rss0 = srv.rss_kb()
        total = 64 << 20
        data = os.urandom(total)
        s = srv.connect(timeout=60)
        sent = [0]
        err = []

        def sender():
            try:
                view = memoryview(data)
                while sent[0] < total:
                    sent[0] += s.send(view[sent[0]:sent[0] + (1 << 20)])
            except Exception as e:
                err.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        # Not reading: the pipe fills, the server stops reading at 8K of unsent output.
        retest.wait_until(lambda: retest.stats_json(srv.ctl)["total"]["backpressure_pauses"] > pauses0,
                          timeout=15, what="backpressure pause")

        def stalled():
            a = sent[0]
            time.sleep(0.3)
            return sent[0] == a and a < total
        retest.wait_until(stalled, timeout=15, what="sender blocked by backpressure")
        rss_max = 0
        for _ in range(5):
            rss_max = max(rss_max, srv.rss_kb())
            time.sleep(0.05)
        self.assertLess(rss_max - rss0, 32 * 1024,
                        "server RSS grew %d KiB while the client did not read" % (rss_max - rss0))
        # Now read: every byte comes back, in order.
        got = 0
        while got < total:
            d = s.recv(1 << 20)
            self.assertTrue(d, "EOF after %d of %d bytes" % (got, total))
            self.assertTrue(d == data[got:got + len(d)], "mismatch at byte %d" % got)
            got += len(d)
        t.join(30)
        self.assertEqual(err, [])
        s.close()
        self.assertLess(srv.rss_kb() - rss0, 32 * 1024)
        self.stop(srv)

    def test_drain_timeout(self):
        srv = self.start("--threads", 1)
        self.assertEqual(retest.ctl_command(srv.ctl, "set drain-timeout 0.5"),
                         "OK drain-timeout 500 ms\n")
        self.assertEqual(self.config(srv)["drain-timeout"], "0.500")
        # A client that never closes: the drain sends it FIN at once, then waits
        # drain-timeout (not the default 10 s) for the client's side before exiting.
        s = srv.connect()
        retest.echo_check(s, b"held open")
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        s.settimeout(5)
        self.assertEqual(s.recv(10), b"")
        rc = srv.proc.wait(10)
        dt = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.stderr())
        self.assertTrue(0.4 <= dt <= 4.0, "drained in %.2fs with drain-timeout 0.5" % dt)
        s.close()

    def test_bad_values(self):
        srv = self.start("--threads", 1)
        with retest.ControlClient(srv.ctl) as c:
            for line in ("set max-conns -1", "set max-conns x", "set max-conns 100000001",
                         "set idle-timeout abc", "set idle-timeout -1",
                         "set conn-buffer 1K", "set conn-buffer 2G", "set conn-buffer 12Q",
                         "set drain-timeout 1e9", "set nope 1", "set max-conns",
                         "set max-conns 1 2", "set"):
                r = c.cmd(line)
                self.assertTrue(r.startswith("ERR ") and r.count("\n") == 1, (line, r))
                self.assertIn("accepted", c.cmd("stats"), line)
        cfg = self.config(srv)
        self.assertEqual((cfg["max-conns"], cfg["idle-timeout"], cfg["conn-buffer"],
                          cfg["drain-timeout"]), ("0", "0", "262144", "10"))
        self.assert_serving(srv)
        self.stop(srv)


class Permissions(ControlCase):
    def test_default_mode_0600(self):
        srv = self.start("--threads", 1)
        st = os.stat(srv.ctl)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.stop(srv)

    def test_control_mode(self):
        srv = self.start("--threads", 1, "--control-mode", "0660")
        self.assertEqual(stat.S_IMODE(os.stat(srv.ctl).st_mode), 0o660)
        self.assert_serving(srv)
        self.stop(srv)

    def test_regular_file_untouched(self):
        path = sock_path()
        self.paths.append(path)
        with open(path, "wb") as f:
            f.write(b"precious\n")
        st0 = os.stat(path)
        srv = retest.Server("--threads", 1, "--control", path, expect_ready=False)
        self.servers.append(srv)
        rc = srv.proc.wait(15)
        self.assertEqual(rc, 1)
        self.assertIn(path, srv.stderr())
        st1 = os.stat(path)
        self.assertEqual((st1.st_ino, st1.st_mode, st1.st_size, st1.st_mtime_ns),
                         (st0.st_ino, st0.st_mode, st0.st_size, st0.st_mtime_ns))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"precious\n")

    def test_stale_socket_replaced(self):
        path = sock_path()
        self.paths.append(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
        self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        with self.assertRaises(ConnectionRefusedError):
            retest.unix_connect(path)
        srv = self.start("--threads", 1, path=path)
        self.assertEqual(retest.ctl_command(path, "health"), "OK\n")
        self.assert_serving(srv)
        self.stop(srv)
        self.assertFalse(os.path.lexists(path))

    def test_second_instance_refused(self):
        first = self.start("--threads", 1)
        ino = os.stat(first.ctl).st_ino
        second = retest.Server("--threads", 1, "--control", first.ctl, expect_ready=False)
        self.servers.append(second)
        self.assertEqual(second.proc.wait(15), 1)
        self.assertIn(first.ctl, second.stderr())
        self.assertEqual(os.stat(first.ctl).st_ino, ino)
        self.assertEqual(retest.ctl_command(first.ctl, "health"), "OK\n")
        self.assert_serving(first)
        self.stop(first)

    def test_socket_removed_on_sigterm(self):
        srv = self.start("--threads", 1)
        self.assertTrue(os.path.exists(srv.ctl))
        self.stop(srv)
        self.assertFalse(os.path.lexists(srv.ctl))

    def test_control_none(self):
        d = tempfile.mkdtemp(prefix="reuseecho-rd-")
        self.paths.append(os.path.join(d, "x"))
        srv = retest.Server("--threads", 1, "--control", "none",
                            extra_env={"RUNTIME_DIRECTORY": d})
        self.servers.append(srv)
        self.assertEqual(os.listdir(d), [])
        inodes = {int(t[8:-1]) for t in srv.fd_targets().values() if t.startswith("socket:[")}
        with open("/proc/net/unix") as f:
            next(f)
            named = [ln.split() for ln in f if len(ln.split()) >= 8]
        mine = [p for p in named if int(p[6]) in inodes]
        self.assertEqual(mine, [], "the server owns a named Unix socket")
        # The default path may exist as a stale leftover of an earlier process that had
        # the same ephemeral port and was killed; only one made by this server counts.
        default = "/run/reuseecho-%d.sock" % srv.port
        if os.path.lexists(default):
            self.assertLess(os.lstat(default).st_mtime, srv.started_at,
                            "%s created by a server started with --control none" % default)
        self.stop(srv)


class EnvSansRuntimeDirs:
    """os.environ without RUNTIME_DIRECTORY / XDG_RUNTIME_DIR while active."""
    KEYS = ("RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR")

    def __enter__(self):
        self.saved = {k: os.environ.pop(k) for k in self.KEYS if k in os.environ}
        return dict(os.environ)

    def __exit__(self, *exc):
        os.environ.update(self.saved)


class DefaultPath(ControlCase):
    def test_default_path(self):
        with EnvSansRuntimeDirs() as env:
            srv = retest.Server("--threads", 1)
            self.servers.append(srv)
            if os.geteuid() == 0:
                path = "/run/reuseecho-%d.sock" % srv.port
            else:
                path = "/tmp/reuseecho-%d-%d.sock" % (os.geteuid(), srv.port)
            self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode), path)
            r = retest.run_ctl("--port", srv.port, "stats", env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("accepted", r.stdout)
            r = retest.run_ctl("--port", srv.port, "config", env=env)
            self.assertIn("control %s\n" % path, r.stdout)
        self.stop(srv)
        self.assertFalse(os.path.lexists(path))

    def test_runtime_directory(self):
        d = tempfile.mkdtemp(prefix="reuseecho-rd-")
        self.paths.append(os.path.join(d, "x"))
        with EnvSansRuntimeDirs() as env:
            env["RUNTIME_DIRECTORY"] = d
            srv = retest.Server("--threads", 1, extra_env={"RUNTIME_DIRECTORY": d})
            self.servers.append(srv)
            path = os.path.join(d, "reuseecho-%d.sock" % srv.port)
            self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
            self.assertFalse(os.path.lexists("/run/reuseecho-%d.sock" % srv.port))
            r = retest.run_ctl("--port", srv.port, "health", env=env)
            self.assertEqual((r.returncode, r.stdout), (0, "OK\n"), r.stderr)
        self.stop(srv)
        self.assertFalse(os.path.lexists(path))


class Ctl(ControlCase):
    def test_exit_codes(self):
        srv = self.start("--threads", 2)
        for cmd in ("features", "config", "help"):
            r = retest.run_ctl("-c", srv.ctl, *cmd.split())
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, retest.ctl_command(srv.ctl, cmd))
            self.assertTrue(r.stdout.endswith("\n") and not r.stdout.endswith("\n\n"), r.stdout)
        r = retest.run_ctl("-c", srv.ctl, "stats", "json")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(json.loads(r.stdout)["workers"], 2)
        r = retest.run_ctl("-c", srv.ctl, "set", "max-conns", "7")
        self.assertEqual((r.returncode, r.stdout), (0, "OK max-conns 7\n"))
        for bad in (("set", "max-conns", "x"), ("bogus",), ("threads", "0")):
            r = retest.run_ctl("-c", srv.ctl, *bad)
            self.assertEqual(r.returncode, 1, bad)
            self.assertTrue(r.stdout.startswith("ERR "), r.stdout)
        r = retest.run_ctl("-c", os.path.join(os.path.dirname(srv.ctl), "missing.sock"), "stats")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertIn("missing.sock", r.stderr)
        self.assertEqual(retest.run_ctl("-c", srv.ctl).returncode, 2)
        self.assertEqual(retest.run_ctl("--bogus-option", "stats").returncode, 2)
        self.assert_serving(srv)
        self.stop(srv)

    FRAME_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(running|draining|stalled)\s", re.M)

    def test_top_pipe(self):
        srv = self.start("--threads", 3)
        r = retest.run_ctl("-c", srv.ctl, "--count", "2", "top", timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\033", r.stdout, "escape codes on a pipe")
        frames = r.stdout.split("reuseecho-ctl top:")[1:]
        self.assertEqual(len(frames), 2, r.stdout)
        for fr in frames:
            ids = sorted(int(m.group(1)) for m in self.FRAME_ROW.finditer(fr))
            self.assertEqual(ids, [0, 1, 2], fr)
        self.stop(srv)

    def test_top_tmux(self):
        tmux = shutil.which("tmux")
        if tmux is None:
            self.skipTest("tmux not installed")
        srv = self.start("--threads", 2)
        sockname = "reuseecho-test-%d" % os.getpid()
        base = [tmux, "-L", sockname, "-f", "/dev/null"]
        sess = "top"

        def tm(*args):
            return subprocess.run(base + list(args), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, universal_newlines=True, timeout=10)
        try:
            cmd = "%s -c %s top" % (retest.binary("reuseecho-ctl"), srv.ctl)
            r = tm("new-session", "-d", "-s", sess, "-x", "140", "-y", "40", cmd)
            self.assertEqual(r.returncode, 0, r.stdout)

            def screen():
                out = tm("capture-pane", "-p", "-t", sess).stdout
                ids = sorted(int(m.group(1)) for m in self.FRAME_ROW.finditer(out))
                return out if "reuseecho-ctl top:" in out and ids == [0, 1] else None
            retest.wait_until(screen, timeout=10, interval=0.1, what="top on the tmux screen")
            tm("send-keys", "-t", sess, "q")
            retest.wait_until(lambda: tm("has-session", "-t", sess).returncode != 0, timeout=5,
                              interval=0.05, what="top to quit on q")
        finally:
            tm("kill-server")
        self.assert_serving(srv)
        self.stop(srv)


class Shutdown(ControlCase):
    def test_shutdown_command(self):
        srv = self.start("--threads", 2)
        self.assert_serving(srv)
        with retest.ControlClient(srv.ctl) as c:
            self.assertEqual(c.cmd("shutdown"), "OK draining\n")
        self.assertEqual(srv.proc.wait(15), 0, srv.stderr())
        self.assertFalse(os.path.lexists(srv.ctl))


if __name__ == "__main__":
    retest.main()
