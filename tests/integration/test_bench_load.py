"""The bench scripts' load guard: a run on a machine whose load average exceeds the
CPU count (or --max-load) is marked LOADED in the output, the tables and results,
and the script exits 4 unless --allow-loaded; every table says which run it comes
from. The load average is read from a file this test writes
(REUSEECHO_BENCH_LOADAVG), so the verdict does not depend on the machine's real
load. Each run is one 0.3 s pingpong case against reuseecho on loopback."""
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


class BenchLoad(unittest.TestCase):
    def run_suite(self, load, *extra):
        tmp = tempfile.mkdtemp(prefix="bench-load-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", tmp]))
        with open(os.path.join(tmp, "loadavg"), "w") as f:
            f.write("%s 0.50 0.40 1/100 12345\n" % load)
        env = dict(os.environ, REUSEECHO_BENCH_LOADAVG=os.path.join(tmp, "loadavg"))
        out = os.path.join(tmp, "out")
        cmd = [sys.executable, os.path.join(ROOT, "bench", "run-suite"), "--build-dir", BUILD,
               "--duration", "0.3", "--warmup", "0.1", "--repeat", "1", "--cases", "pp64-d1",
               "--syscalls", "off", "--max-load", "2", "--out", out, "--quiet"] + list(extra)
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=120)
        with open(os.path.join(out, "results.json")) as f:
            res = json.load(f)
        with open(os.path.join(out, "table.txt")) as f:
            table = f.read()
        self.out = out
        return p, res, table

    def plot_titles(self):
        """Titles bench/plot writes into its gnuplot scripts (written with or
        without gnuplot installed)."""
        plots = os.path.join(self.out, "plots")
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "plot"), self.out, "--out",
                        plots], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        titles = []
        for name in sorted(os.listdir(plots)):
            if name.endswith(".gp"):
                with open(os.path.join(plots, name)) as f:
                    titles += [l for l in f.read().splitlines() if l.startswith("set multiplot")]
        self.assertTrue(titles, "bench/plot wrote no gnuplot script")
        return titles

    def test_quiet_run_is_not_marked(self):
        p, res, table = self.run_suite("0.25")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotIn("LOADED", p.stdout + p.stderr + table)
        self.assertEqual(res["load"]["loaded_runs"], 0)
        self.assertEqual(res["load"]["limit"], 2.0)
        self.assertEqual([r["loaded"] for r in res["runs"]], [False])
        self.assertEqual(res["runs"][0]["load_before"], 0.25)
        self.assertEqual(res["runs"][0]["load_after"], 0.25)
        # The table says which run it comes from: date, command, load.
        prov = [l for l in table.splitlines() if l.startswith("Run: ")]
        self.assertEqual(len(prov), 1, table)
        self.assertIn(res["started"], prov[0])
        self.assertIn("`bench/run-suite --build-dir", prov[0])
        self.assertIn("load average 0.25 at start, 0.25 max, 0.25 at end", prov[0])
        for t in self.plot_titles():
            self.assertIn("\\nrun: run-suite %s, load max 0.25 on" % res["started"], t)
            self.assertNotIn("LOADED", t)

    def test_loaded_run_is_marked_and_refused(self):
        p, res, table = self.run_suite("4.50")
        self.assertEqual(p.returncode, 4, p.stdout + p.stderr)
        self.assertIn("exit 4: LOADED runs", p.stderr)
        self.assertEqual(res["load"]["loaded_runs"], 1)
        self.assertTrue(res["runs"][0]["loaded"])
        self.assertTrue(res["summary"][0]["loaded"])
        self.assertIn("4.50 LOADED", table)
        self.assertIn("LOADED RUN: the load average exceeded 2 in 1 of 1 runs (max 4.50)", table)
        for t in self.plot_titles():
            self.assertIn("LOADED RUN, NOT FIT TO PUBLISH - run: run-suite %s, load max 4.50 on"
                          % res["started"], t)

    def test_allow_loaded_keeps_the_marks(self):
        p, res, table = self.run_suite("4.50", "--allow-loaded")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("LOADED RUN:", table)
        self.assertIn("4.50 LOADED", table)


if __name__ == "__main__":
    retest.main()
