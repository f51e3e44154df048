"""tests/check-skips against synthetic meson test logs: every kind of skip is found,
an allow-list entry (whole test or one part) lets exactly that skip through, and an
entry without a reason is refused."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(os.path.dirname(HERE), "check-skips")


def entry(name, result, stdout=""):
    return {"name": "reuseecho:integration / " + name, "result": result, "stdout": stdout}


class CheckSkips(unittest.TestCase):
    def run_check(self, entries, allow):
        with tempfile.TemporaryDirectory() as d:
            os.mkdir(os.path.join(d, "meson-logs"))
            with open(os.path.join(d, "meson-logs", "testlog.json"), "w") as f:
                for e in entries:
                    f.write(json.dumps(e) + "\n")
            path = os.path.join(d, "allow.txt")
            with open(path, "w") as f:
                f.write(allow)
            p = subprocess.run([sys.executable, CHECK, d, path], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True, timeout=30)
            return p.returncode, p.stdout

    def test_reads_the_last_runs_log(self):
        """After `meson test --setup asan` the log is testlog-asan.json: the newest
        testlog*.json is the one read, whatever its setup name."""
        with tempfile.TemporaryDirectory() as d:
            logs = os.path.join(d, "meson-logs")
            os.mkdir(logs)
            old = os.path.join(logs, "testlog.json")
            new = os.path.join(logs, "testlog-asan.json")
            with open(old, "w") as f:
                f.write(json.dumps(entry("cli", "OK")) + "\n")
            with open(new, "w") as f:
                f.write(json.dumps(entry("edge", "SKIP", "SKIPPED: edge: why\n")) + "\n")
            os.utime(old, (1000, 1000))
            allow = os.path.join(d, "allow.txt")
            open(allow, "w").close()
            p = subprocess.run([sys.executable, CHECK, d, allow], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True, timeout=30)
            self.assertEqual(p.returncode, 1, p.stdout)
            self.assertIn("NOT ALLOWED edge:edge: why", p.stdout)

    def test_clean_run_passes(self):
        rc, out = self.run_check([entry("cli", "OK", "ok\n"), entry("edge", "OK")], "")
        self.assertEqual(rc, 0, out)
        self.assertIn("2 test(s), 0 skip(s), 0 not in", out)

    def test_exit_77_without_a_line_fails(self):
        rc, out = self.run_check([entry("install_unit", "SKIP", "nothing said\n")], "")
        self.assertEqual(rc, 1, out)
        self.assertIn("NOT ALLOWED install_unit:install_unit: exit 77 without a SKIPPED: line", out)

    def test_skip_inside_a_passing_test_fails(self):
        rc, out = self.run_check(
            [entry("control", "OK", "SKIPPED: ControlTest.test_top_tmux: tmux not installed\n")], "")
        self.assertEqual(rc, 1, out)
        self.assertIn("NOT ALLOWED control:ControlTest.test_top_tmux: tmux not installed", out)

    def test_allowlist_part_allows_only_that_part(self):
        log = [entry("cli", "SKIP", "SKIPPED: CliTest.test_ipv6: no IPv6 loopback\n"
                                    "SKIPPED: CliTest.test_taskset: no taskset\n")]
        rc, out = self.run_check(log, "cli:CliTest.test_ipv6 the sandbox has no ::1\n")
        self.assertEqual(rc, 1, out)
        self.assertIn("allowed   cli:CliTest.test_ipv6", out)
        self.assertIn("NOT ALLOWED cli:CliTest.test_taskset", out)
        self.assertIn("2 skip(s), 1 not in", out)

    def test_allowlist_whole_test(self):
        log = [entry("zero_loss", "OK", "SKIPPED: zero_loss.netns: unshare -n not permitted\n")]
        rc, out = self.run_check(log, "# comment\n\nzero_loss no netns in this sandbox\n")
        self.assertEqual(rc, 0, out)
        self.assertIn("allowed   zero_loss:zero_loss.netns", out)

    def test_entry_without_reason_is_refused(self):
        rc, out = self.run_check([entry("cli", "OK")], "cli\n")
        self.assertEqual(rc, 2, out)
        self.assertIn("has no reason", out)


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
    import retest
    retest.main()
