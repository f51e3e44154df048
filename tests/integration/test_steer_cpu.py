"""--steer cpu: a new connection goes to the worker pinned to the CPU that processes
its SYN; on loopback that is the CPU the client runs on.

- With --cpus 0,1 --threads 2 --steer cpu, a client process pinned to CPU k
  (os.sched_setaffinity) opens 50 connections, each echoing one line: at least 48
  land on the worker pinned to CPU k, for each k. The locality counters
  (incoming_cpu_sampled/local, one accept in 16 sampled) are printed for --steer cpu
  and for --steer hash, whose spread is the kernel's and ignores the CPU.
- --steer cpu is refused at start-up, with a message that says why: where the kernel
  takes no reuseport classic BPF (simulated by REUSEECHO_DISABLE_CBPF=1; exit 1), with
  --no-pin (exit 2); --steer with another word is a usage error (exit 2).

Needs CPUs 0 and 1 in the affinity mask; bounded in count (200 connections per
client) and time; loopback only."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

NCONN = 50
NLOCAL = 200    # connections per CPU for the locality figures (1 in 16 sampled)

CLIENT = r"""
import os, socket, sys
cpu, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
os.sched_setaffinity(0, {cpu})
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    msg = b"cpu %d conn %d\n" % (cpu, i)
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        d = s.recv(64)
        if not d:
            sys.exit("EOF before echo")
        got += d
    if got != msg:
        sys.exit("bad echo %r" % got)
    socks.append(s)
for s in socks:
    s.close()
"""


def note(fmt, *args):
    sys.stdout.write("note: " + (fmt % args) + "\n")
    sys.stdout.flush()


def run_client(cpu, port, n):
    r = subprocess.run([sys.executable, "-c", CLIENT, str(cpu), str(port), str(n)],
                       capture_output=True, text=True, timeout=60 * retest.SCALE)
    if r.returncode != 0:
        raise AssertionError("client on CPU %d: %s" % (cpu, r.stderr.strip()))


class SteerCpu(retest.ServerCase):
    dir_prefix = "reuseecho-steercpu-"

    def setUp(self):
        super().setUp()
        if not {0, 1} <= os.sched_getaffinity(0):
            self.skipTest("needs CPUs 0 and 1 (affinity mask %s)" % sorted(os.sched_getaffinity(0)))

    def per_worker(self):
        return {w["id"]: w for w in retest.stats_json(self.ctl)["per_worker"]}

    def run_steer(self, mode, n):
        """Per CPU k: how many of n connections from CPU k each worker accepted."""
        srv = self.start("--cpus", "0,1", "--threads", 2, "--steer", mode)
        w = self.per_worker()
        self.assertEqual(sorted((i, w[i]["cpu"]) for i in w), [(0, 0), (1, 1)])
        landed = {}
        for cpu in (0, 1):
            before = self.per_worker()
            run_client(cpu, srv.port, n)
            after = self.per_worker()
            landed[cpu] = {i: after[i]["accepted"] - before[i]["accepted"] for i in after}
        w = self.per_worker()
        for i in sorted(w):
            s, loc = w[i]["incoming_cpu_sampled"], w[i]["incoming_cpu_local"]
            note("--steer %s: worker %d (CPU %d): accepted %d, locality %d of %d sampled "
                 "(%s)", mode, i, w[i]["cpu"], w[i]["accepted"], loc, s,
                 "%.0f%%" % (100.0 * loc / s) if s else "-")
        self.assertEqual(srv.stop(), 0)
        return landed, w

    def test_cpu_steering(self):
        landed, w = self.run_steer("cpu", NCONN)
        for cpu in (0, 1):
            note("--steer cpu: client on CPU %d: worker 0 got %d, worker 1 got %d of %d", cpu,
                 landed[cpu][0], landed[cpu][1], NCONN)
            self.assertEqual(landed[cpu][0] + landed[cpu][1], NCONN)
            self.assertGreaterEqual(landed[cpu][cpu], NCONN - 2)

    def test_locality_figures(self):
        """Locality per worker, --steer cpu against hash (printed; cpu must be the
        higher, and every sampled connection local)."""
        _, wc = self.run_steer("cpu", NLOCAL)
        _, wh = self.run_steer("hash", NLOCAL)
        share = {}
        for mode, w in (("cpu", wc), ("hash", wh)):
            s = sum(x["incoming_cpu_sampled"] for x in w.values())
            loc = sum(x["incoming_cpu_local"] for x in w.values())
            self.assertEqual(s, sum((x["accepted"] + 15) // 16 for x in w.values()))
            share[mode] = loc / s
        note("locality: --steer cpu %.0f%%, --steer hash %.0f%%", 100 * share["cpu"],
             100 * share["hash"])
        self.assertGreaterEqual(share["cpu"], 0.9)
        self.assertLess(share["hash"], share["cpu"])

    def test_refused_without_cbpf(self):
        srv = retest.Server("--control", self.ctl, "--steer", "cpu",
                            extra_env={"REUSEECHO_DISABLE_CBPF": "1"}, expect_ready=False)
        rc = srv.proc.wait(timeout=10 * retest.SCALE)
        err = srv.stderr()
        self.assertEqual(rc, 1, err)
        self.assertIn("--steer cpu: this kernel", err)
        self.assertIn("use --steer hash", err)

    def test_usage_errors(self):
        for args, what in ((["--steer", "cpu", "--no-pin"], "drop --no-pin"),
                           (["--steer", "rss"], "hash or cpu"),
                           (["--stall-steer", "0.1"], "out of range")):
            r = subprocess.run([retest.binary()] + args, capture_output=True, text=True,
                               timeout=10)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(what, r.stderr)


if __name__ == "__main__":
    retest.main()
