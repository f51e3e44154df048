"""Prometheus semantics across a resize, computed the way Prometheus computes them.

A bounded churn load (connect, echo one message, close; counted client-side) runs
while `metrics` is scraped over the control socket every 50 ms; mid-way the worker
set shrinks (4 -> 2) or grows (2 -> 4). For every counter family, increase() is
worked out per series from that series' own samples (last - first, a drop counted
as a counter reset) and summed over the family's series, as
sum(increase(family[window])) does. Checked:
  - reuseecho_connections_accepted_total (process total, no worker label) and
    reuseecho_worker_connections_accepted_total (per worker) both match the
    client-side count of the window within 10%;
  - for every family, the per-worker twin's summed increase matches the process
    total's within 10% (absolute slack for families that hardly move);
  - no process-total counter ever decreases between two scrapes, and no series
    carries worker="retired";
  - reuseecho_accept_imbalance_ratio is finite in every scrape, including right
    after a grow when new workers have accepted nothing yet;
  - `reuseecho-ctl top` across a resize: a new worker has no rate until its second
    frame, a retired one disappears, the "all" row comes from the process totals.
"""
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

SCRAPE_S = 0.05
CHURN_S = 5.0           # total churn time; the resize happens at RESIZE_AT_S
RESIZE_AT_S = 2.0
CLIENTS = 3
RATE = 400              # connections per second per client, paced: ~6000 in a window
MAX_PER_CLIENT = int(RATE * (CHURN_S + 5))
MSG = retest.pattern(64, 9)
TOLERANCE = 0.10
SMALL = 50              # families whose process increase is below this: absolute slack
SMALL_SLACK = 5
PREFIX = "reuseecho_"
WORKER_PREFIX = "reuseecho_worker_"


def parse(text):
    """(types {family: type}, samples {(name, frozenset(labels)): value})."""
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
    samples = {}
    for name, labels, v in retest.parse_prometheus(text):
        samples[(name, frozenset(labels.items()))] = v
    return types, samples


def increases(scrapes):
    """{series key: increase} from each series' own samples, as Prometheus does:
    the sum of positive steps, a drop being a reset (the new value counts whole)."""
    prev = {}
    inc = {}
    for _, samples in scrapes:
        for key, v in samples.items():
            if key in prev:
                p = prev[key]
                inc[key] = inc.get(key, 0.0) + (v - p if v >= p else v)
            else:
                inc.setdefault(key, 0.0)
            prev[key] = v
    return inc


def family_sum(inc, name):
    return sum(v for (n, _), v in inc.items() if n == name)


class Churn:
    """CLIENTS threads: connect, echo MSG, close, paced at RATE a second each and at
    most MAX_PER_CLIENT, until stop; counts completions."""

    def __init__(self, srv):
        self.srv = srv
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.completed = 0
        self.failed = 0
        self.threads = [threading.Thread(target=self.run) for _ in range(CLIENTS)]

    def run(self):
        t0 = time.monotonic()
        for i in range(MAX_PER_CLIENT):
            delay = t0 + i / RATE - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            if self.stop.is_set():
                break
            try:
                s = socket.create_connection((self.srv.host, self.srv.port), timeout=5)
            except OSError:
                with self.lock:
                    self.failed += 1
                continue
            try:
                s.sendall(MSG)
                if retest.recv_exact(s, len(MSG)) != MSG:
                    raise AssertionError("echo mismatch")
                with self.lock:
                    self.completed += 1
            except (OSError, AssertionError):
                with self.lock:
                    self.failed += 1
            finally:
                s.close()

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)
            assert not t.is_alive(), "churn client stuck"


class Scraper:
    """Scrapes `metrics` every SCRAPE_S on one control connection."""

    def __init__(self, path):
        self.path = path
        self.stop = threading.Event()
        self.scrapes = []       # (monotonic time, samples)
        self.types = {}
        self.errors = []
        self.thread = threading.Thread(target=self.run)

    def scrape(self, c):
        types, samples = parse(c.cmd("metrics"))
        self.types.update(types)
        self.scrapes.append((time.monotonic(), samples))

    def run(self):
        try:
            with retest.ControlClient(self.path, timeout=5) as c:
                while not self.stop.is_set():
                    t0 = time.monotonic()
                    self.scrape(c)
                    self.stop.wait(max(0.0, SCRAPE_S - (time.monotonic() - t0)))
        except Exception as e:  # reported by the test
            self.errors.append(repr(e))


class MetricsResize(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="reuseecho-metrics-")
        self.ctl = os.path.join(self.dir, "control.sock")
        self.srv = None

    def tearDown(self):
        if self.srv is not None and self.srv.alive():
            self.srv.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def quiet(self):
        """Wait until every accepted connection is closed and counted."""
        def done():
            t = retest.stats_json(self.ctl)["total"]
            closed = sum(v for k, v in t.items() if k.startswith("closed_"))
            return t["active"] == 0 and closed == t["accepted"]
        retest.wait_until(done, timeout=15, what="all connections closed")

    def run_window(self, threads_from, threads_to):
        """Churn with a resize in the middle; returns (scraper, churn)."""
        self.srv = retest.Server("--control", self.ctl, "--threads", threads_from, "--no-pin",
                                 "--control-timeout", "30")
        sc = Scraper(self.ctl)
        with retest.ControlClient(self.ctl, timeout=20) as c:
            sc.scrape(c)                        # window start: nothing in flight
            churn = Churn(self.srv)
            churn.start()
            sc.thread.start()
            time.sleep(RESIZE_AT_S)             # the load runs; bounded below
            t0 = time.monotonic()
            self.assertEqual(c.cmd("threads %d" % threads_to, timeout=20),
                             "OK threads %d\n" % threads_to)
            took = time.monotonic() - t0
            time.sleep(max(0.5, CHURN_S - RESIZE_AT_S - took))
            churn.join()
            self.quiet()
            want = threads_to
            retest.wait_until(lambda: len(retest.stats_json(self.ctl)["per_worker"]) == want,
                              timeout=15, what="%d workers listed" % want)
            sc.stop.set()
            sc.thread.join(10)
            self.assertFalse(sc.thread.is_alive())
            sc.scrape(c)                        # window end: nothing in flight
        self.assertEqual(sc.errors, [])
        self.assertGreater(len(sc.scrapes), int(CHURN_S / SCRAPE_S / 3))
        self.assertGreater(churn.completed, 200, "too little churn to compare")
        return sc, churn

    def check(self, sc, churn, label):
        inc = increases(sc.scrapes)
        counters = sorted(n for n, t in sc.types.items() if t == "counter")
        twins = [n for n in counters if n.startswith(WORKER_PREFIX)]
        self.assertIn(WORKER_PREFIX + "connections_accepted_total", twins)

        # No "retired" series anywhere; process totals carry no worker label and
        # never go down between two scrapes.
        prev = None
        for _, samples in sc.scrapes:
            for (name, labels), v in samples.items():
                self.assertNotIn(("worker", "retired"), labels, name)
                if (name.startswith(PREFIX) and not name.startswith(WORKER_PREFIX)
                        and name in counters):
                    self.assertNotIn("worker", dict(labels), name)
                    if prev is not None and (name, labels) in prev:
                        self.assertGreaterEqual(v, prev[(name, labels)],
                                                "%s%s went down" % (name, dict(labels)))
            ratio = samples[("reuseecho_accept_imbalance_ratio", frozenset())]
            self.assertTrue(math.isfinite(ratio) and ratio >= 1.0, ratio)
            prev = samples

        rows = []
        for twin in twins:
            proc = PREFIX + twin[len(WORKER_PREFIX):]
            self.assertIn(proc, counters, "%s has no process-total family" % twin)
            p, w = family_sum(inc, proc), family_sum(inc, twin)
            rows.append((proc[len(PREFIX):], p, w))
        true = churn.completed
        print("\n  %s: %d scrapes, client-side %d echoed (%d failed)"
              % (label, len(sc.scrapes), true, churn.failed), file=sys.stderr)
        print("  %-32s %14s %14s %7s" % ("family", "process inc", "per-worker inc", "diff"),
              file=sys.stderr)
        for name, p, w in rows:
            print("  %-32s %14d %14d %+6.1f%%" % (name, p, w, 100.0 * (w - p) / p if p else 0.0),
                  file=sys.stderr)
        for name, p, w in rows:
            if p < SMALL:
                self.assertLessEqual(abs(w - p), SMALL_SLACK, "%s: %d vs %d" % (name, w, p))
            else:
                self.assertLessEqual(abs(w - p), TOLERANCE * p, "%s: per-worker %d vs process %d"
                                     % (name, w, p))
        acc_p = family_sum(inc, PREFIX + "connections_accepted_total")
        acc_w = family_sum(inc, WORKER_PREFIX + "connections_accepted_total")
        print("  accepted: process %d, per-worker %d, client-side %d (+%d failed)"
              % (acc_p, acc_w, true, churn.failed), file=sys.stderr)
        for what, v in (("process", acc_p), ("per-worker", acc_w)):
            self.assertLessEqual(abs(v - true), TOLERANCE * true,
                                 "%s accepted increase %d vs %d echoed" % (what, v, true))

    def test_shrink_4_to_2(self):
        sc, churn = self.run_window(4, 2)
        self.check(sc, churn, "threads 4 -> 2")
        self.assertEqual(self.srv.stop(), 0, self.srv.stderr())

    def test_grow_2_to_4(self):
        sc, churn = self.run_window(2, 4)
        self.check(sc, churn, "threads 2 -> 4")
        # Grow again with no load: the two new workers have accepted nothing, the
        # others thousands. That is not infinite imbalance: the ratio leaves the
        # new ones out, and says so in JSON.
        with retest.ControlClient(self.ctl, timeout=20) as c:
            self.assertEqual(c.cmd("threads 6", timeout=20), "OK threads 6\n")
            retest.wait_until(lambda: len(c.json()["per_worker"]) == 6, timeout=10,
                              what="6 workers listed")
            js = c.json()
            _, samples = parse(c.cmd("metrics"))
        acc = {w["id"]: w["accepted"] for w in js["per_worker"]}
        self.assertEqual([acc[i] for i in (4, 5)], [0, 0], acc)
        self.assertEqual(js["imbalance"]["idle_workers"], 2)
        nonzero = [v for v in acc.values() if v > 0]
        ratio = samples[("reuseecho_accept_imbalance_ratio", frozenset())]
        self.assertAlmostEqual(ratio, max(nonzero) / min(nonzero), places=4)
        self.assertAlmostEqual(js["imbalance"]["max_min"], ratio, places=4)
        self.assertEqual(self.srv.stop(), 0, self.srv.stderr())

    def test_top_across_resize(self):
        """Frames of `top` on a pipe: 3 workers; after the first frame, threads 2
        (worker 2 leaves) and threads 3 (worker 3 arrives). Row fields: id cpu state
        active accept/s in out acceptq, where a rate is "-" or "<n>" / "<x> <unit>/s";
        the "all" row has no cpu and state."""
        self.srv = retest.Server("--control", self.ctl, "--threads", 3, "--no-pin")
        top = subprocess.Popen([retest.binary("reuseecho-ctl"), "-c", self.ctl, "--count", "15",
                                "top"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True)
        frames = []

        def next_frame():
            fr = ""
            while "balance:" not in fr:
                line = top.stdout.readline()
                self.assertTrue(line, "top ended mid-frame: %r after %r" % (fr, frames))
                fr += line
            rows = {}
            for ln in fr.splitlines():
                f = ln.split()
                if f and (f[0].isdigit() or f[0] == "all"):
                    rows[f[0]] = f
            frames.append((fr, rows))
            return fr, rows

        try:
            fr, rows = next_frame()
            self.assertIn("3 workers", fr)
            self.assertEqual(sorted(k for k in rows if k != "all"), ["0", "1", "2"], fr)
            for k in ("0", "1", "2"):
                self.assertEqual(rows[k][4:7], ["-", "-", "-"], fr)    # no rate yet
            self.assertEqual(rows["all"][2:5], ["-", "-", "-"], fr)
            self.assertIn("balance: no rates yet", fr)
            with retest.ControlClient(self.ctl, timeout=20) as c:
                self.assertEqual(c.cmd("threads 2", timeout=20), "OK threads 2\n")
                retest.wait_until(lambda: [w["id"] for w in c.json()["per_worker"]] == [0, 1],
                                  timeout=10, what="worker 2 gone")
                self.assertEqual(c.cmd("threads 3", timeout=20), "OK threads 3\n")
            for _ in range(5):
                self.srv.connect().close()
            # Frames until worker 3 has been in two of them (bounded by --count).
            seen3 = 0
            while seen3 < 2:
                fr, rows = next_frame()
                if "3" in rows:
                    seen3 += 1
            top.send_signal(2)
            _, err = top.communicate(timeout=10)
        finally:
            if top.poll() is None:
                top.kill()
                top.wait(5)
        self.assertEqual(top.returncode, 0, err)
        gone = False
        first3 = None
        for i, (fr, rows) in enumerate(frames[1:], 1):
            ids = sorted(k for k in rows if k != "all")
            if "2" not in ids:
                gone = True
            self.assertFalse(gone and "2" in ids, "worker 2 came back: %s" % fr)
            for k in ("0", "1"):
                self.assertRegex(rows[k][4], r"^\d+$", fr)             # own previous sample
            self.assertRegex(rows["all"][2], r"^\d+$", fr)             # from the totals
            if "3" in ids and first3 is None:
                first3 = i
                self.assertEqual(rows["3"][4:7], ["-", "-", "-"], fr)  # first sample: no rate
            elif "3" in ids:
                self.assertRegex(rows["3"][4], r"^\d+$", fr)
        self.assertTrue(gone)
        self.assertIsNotNone(first3)
        self.assertEqual(self.srv.stop(), 0, self.srv.stderr())


if __name__ == "__main__":
    retest.main()
