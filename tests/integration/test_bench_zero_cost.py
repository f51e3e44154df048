"""bench/zero-cost: two reuseecho binaries, interleaved runs, one Markdown table.

Runs the script with the built reuseecho as both --before and --after (an A/A run)
on one 0.3 s pingpong case, twice, and checks the order of the runs (before, after,
before, after), the table's figures against the per-side medians it wrote in
results.json, and the setup errors (exit 2). The load average is read from a file
this test writes (REUSEECHO_BENCH_LOADAVG), so the verdict does not depend on the
machine's real load."""
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
SCRIPT = os.path.join(ROOT, "bench", "zero-cost")


class ZeroCost(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bench-zero-cost-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.tmp]))
        with open(os.path.join(self.tmp, "loadavg"), "w") as f:
            f.write("0.10 0.10 0.10 1/100 12345\n")
        self.env = dict(os.environ, REUSEECHO_BENCH_LOADAVG=os.path.join(self.tmp, "loadavg"))
        self.out = os.path.join(self.tmp, "out")

    def zero_cost(self, *args):
        cmd = [sys.executable, SCRIPT, "--build-dir", BUILD, "--duration", "0.3",
               "--warmup", "0.1", "--out", self.out, "--quiet"] + list(args)
        return subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=120)

    def test_interleaved_runs_and_table(self):
        exe = retest.binary()
        p = self.zero_cost("--before", exe, "--after", exe, "--cases", "pp64-d1",
                           "--repeat", "2")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(os.path.join(self.out, "runs.csv"), newline="") as f:
            runs = list(csv.DictReader(f))
        self.assertEqual([(r["server"], r["run"]) for r in runs],
                         [("before", "before-pp64-d1-r1"), ("after", "after-pp64-d1-r1"),
                          ("before", "before-pp64-d1-r2"), ("after", "after-pp64-d1-r2")])
        self.assertEqual({r["status"] for r in runs}, {"ok"})
        with open(os.path.join(self.out, "results.json")) as f:
            res = json.load(f)
        side = {r["server"]: r for r in res["summary"]}
        self.assertEqual(sorted(side), ["after", "before"])
        with open(os.path.join(self.out, "table.md")) as f:
            table = f.read()
        self.assertIn(table, p.stdout)
        rows = [l for l in table.splitlines() if l.startswith("| pp64-d1 |")]
        self.assertEqual([r.split(" | ")[1] for r in rows], ["msgs/s", "cpu us/msg", "p99 us"])
        for row, key, lo, hi in zip(rows, ("msgs_per_s", "server_cpu_us_per_msg", "p99_us"),
                                    ("msgs_per_s_min", "cpu_us_per_msg_min", "p99_us_min"),
                                    ("msgs_per_s_max", "cpu_us_per_msg_max", "p99_us_max")):
            b, a = side["before"], side["after"]
            cells = [c.strip() for c in row.strip("|").split("|")]
            self.assertEqual(cells[4], "%.3f" % (a[key] / b[key]), row)
            overlap = "yes" if a[lo] <= b[hi] and b[lo] <= a[hi] else "no"
            self.assertEqual(cells[7:], [overlap, "2/2, 2/2"], row)
        self.assertIn("medians of 2 interleaved runs each", table)
        self.assertRegex(table, r"\nRun: .*`bench/zero-cost --build-dir .* load average 0\.10 "
                                r"at start")

    def test_setup_errors(self):
        exe = retest.binary()
        missing = os.path.join(self.tmp, "no-such-reuseecho")
        for args, err in (
                (["--before", missing, "--after", exe],
                 "error: --before: %s is not an executable file" % missing),
                (["--before", exe, "--after", exe, "--cases", "udp-pp64-d1"],
                 "error: udp-pp64-d1: UDP cases are not offered here"),
                (["--before", exe, "--after", exe, "--cases", "rate64"],
                 "error: rate64 needs --rate")):
            with self.subTest(args=args):
                p = self.zero_cost(*args)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(err, p.stderr)


if __name__ == "__main__":
    retest.main()
