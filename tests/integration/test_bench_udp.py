"""The bench scripts' UDP cases: bench/run-suite runs udp-pp64-d1 and udp-rate64
against a server's UDP form (the Python peer, and reuseecho --udp when the build
has it), passes --proto udp to echoload, reports loss from echoload's counts and
gives udp-rate64 half of udp-pp64-d1's rate. Runs are 0.3 s on loopback; the load
average is read from a file this test writes (REUSEECHO_BENCH_LOADAVG), so the
verdict does not depend on the machine's real load."""
import csv
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.dirname(os.path.dirname(retest.binary()))


class BenchUdp(unittest.TestCase):
    def run_suite(self, server):
        tmp = tempfile.mkdtemp(prefix="bench-udp-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", tmp]))
        with open(os.path.join(tmp, "loadavg"), "w") as f:
            f.write("0.10 0.10 0.10 1/100 12345\n")
        env = dict(os.environ, REUSEECHO_BENCH_LOADAVG=os.path.join(tmp, "loadavg"))
        out = os.path.join(tmp, "out")
        cmd = [sys.executable, os.path.join(ROOT, "bench", "run-suite"), "--build-dir", BUILD,
               "--server", server, "--duration", "0.3", "--warmup", "0.1", "--repeat", "1",
               "--cases", "udp-pp64-d1,udp-rate64", "--syscalls", "off", "--out", out,
               "--quiet"]
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=120)
        with open(os.path.join(out, "results.json")) as f:
            res = json.load(f)
        with open(os.path.join(out, "summary.csv"), newline="") as f:
            rows = {r["case"]: r for r in csv.DictReader(f)}
        return p, res, rows

    def check_server(self, server):
        p, res, rows = self.run_suite(server)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(sorted(rows), ["udp-pp64-d1", "udp-rate64"])
        for case, r in rows.items():
            self.assertEqual(r["status"], "ok", r)
            self.assertEqual(r["proto"], "udp", r)
            self.assertGreater(int(r["sent"]), 0, r)
            # loss is lost / sent pooled over the case's runs, exactly.
            self.assertAlmostEqual(float(r["loss"]), int(r["lost"]) / int(r["sent"]), places=6)
            self.assertGreater(float(r["server_cpu_us_per_msg"]), 0, r)
        # udp-rate64 follows its own base case: half udp-pp64-d1's msgs/s (from
        # results.json: summary.csv rounds to 6 digits).
        base = [r for r in res["summary"] if r["case"] == "udp-pp64-d1"][0]["msgs_per_s"]
        self.assertEqual(int(rows["udp-rate64"]["rate"]), round(base / 2))
        for run in res["runs"]:
            argv = run["loader_argv"]
            self.assertEqual(argv[argv.index("--proto") + 1], "udp", argv)
            self.assertEqual(run["proto"], "udp")
        self.assertIn(" loss ", p.stdout.splitlines()[2] + " ", p.stdout)
        self.assertIsNotNone(res["servers"][server]["udp_argv"])

    def test_python_udp_peer(self):
        self.check_server("python")

    def test_reuseecho_udp(self):
        help_text = subprocess.run([retest.binary(), "--help"], stdout=subprocess.PIPE,
                                   universal_newlines=True, timeout=10).stdout
        if "--udp" not in help_text:
            self.skipTest("this reuseecho has no --udp")
        self.check_server("reuseecho")


if __name__ == "__main__":
    retest.main()
