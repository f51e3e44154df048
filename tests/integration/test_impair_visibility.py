"""The impairment settings are visible everywhere an operator or a script looks:
config, features, stats (text and JSON, line protocol and HTTP), the Prometheus
exposition (checked with promtool), reuseecho-ctl top's header, a warning at
start-up and a log line on every change. Only the visibility: what each impairment
does to a connection is tested elsewhere. Real server, real control socket."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import retest  # noqa: E402
import unittest  # noqa: E402

PROMTOOL = "/usr/bin/promtool"
KINDS = ("delay", "jitter", "bandwidth", "close_after", "reset_after", "accept_off")
DEFAULTS = {"delay": "0 ms", "jitter": "0 ms", "bandwidth": "0", "close-after": "0",
            "reset-after": "0", "share": "100", "accept": "on"}
WARNING = "this instance misbehaves on purpose; do not benchmark it"


class Visibility(retest.ServerCase):
    def config(self):
        out = {}
        for ln in retest.ctl_command(self.ctl, "config").splitlines():
            k, _, v = ln.partition(" ")
            out[k] = v
        return out

    def features(self):
        return dict(ln.split(" ", 1) for ln in
                    retest.ctl_command(self.ctl, "features").splitlines())

    def text_line(self):
        """The second line of `stats`."""
        return retest.ctl_command(self.ctl, "stats").splitlines()[1]

    def metrics(self):
        """(active per kind, share ratio) from GET /metrics, after promtool passed it."""
        st, _, body = retest.http_get_unix(self.ctl, "/metrics")
        self.assertEqual(st, 200)
        text = body.decode()
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout), (0, ""), "promtool complains")
        self.assertEqual(text.count("# TYPE reuseecho_impairment_active gauge\n"), 1)
        self.assertEqual(text.count("# TYPE reuseecho_impairment_share_ratio gauge\n"), 1)
        active, ratio = {}, []
        for name, labels, value in retest.parse_prometheus(text):
            if name == "reuseecho_impairment_active":
                self.assertNotIn(labels["kind"], active)
                active[labels["kind"]] = value
            elif name == "reuseecho_impairment_share_ratio":
                ratio.append(value)
        self.assertEqual(len(ratio), 1)
        return active, ratio[0]

    def top_header(self):
        """The lines of reuseecho-ctl top's header, up to its blank line."""
        r = retest.run_ctl("-c", self.ctl, "--count", "1", "top", timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split("\n\n", 1)[0].splitlines()

    def set(self, key, value, reply):
        self.assertEqual(retest.ctl_command(self.ctl, "set %s %s" % (key, value)),
                         "OK %s\n" % reply)

    def logged(self, line):
        retest.wait_until(lambda: line in self.srv.stderr(), what="log line %r" % line)

    def setUp(self):
        super().setUp()
        if not os.path.exists(PROMTOOL):
            self.skipTest("%s missing (Debian package prometheus)" % PROMTOOL)

    def test_start_flags_then_cleared_at_run_time(self):
        self.start("--threads", "2", "--delay", "50ms", "--share", "30")
        self.assertIn("warn: impairments set (delay=50ms,share=30%): " + WARNING,
                      self.srv.stderr())

        self.assertEqual({k: v for k, v in self.config().items() if k in DEFAULTS},
                         dict(DEFAULTS, delay="50 ms", share="30"))
        f = self.features()
        self.assertEqual((f["service"], f["impairments"]), ("echo", "delay=50ms,share=30%"))
        self.assertEqual(self.text_line(), "impairments: delay 50 ms, share 30%")
        want = {"active": True, "delay_ms": 50, "jitter_ms": 0, "bandwidth": 0,
                "close_after": 0, "reset_after": 0, "share": 30, "accept": "on"}
        self.assertEqual(retest.stats_json(self.ctl)["impairments"], want)
        st, _, body = retest.http_get_unix(self.ctl, "/stats")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["impairments"], want)
        self.assertEqual(self.metrics(), (dict(dict.fromkeys(KINDS, 0), delay=1), 0.3))
        self.assertEqual(self.top_header()[1:],
                         ["IMPAIRED: delay 50 ms, share 30% (not a benchmark)"])

        # delay off: share alone impairs nothing, but is still a setting in force.
        self.set("delay", "0", "delay 0 ms")
        self.logged("info: set delay 0 ms (impairments: share=30%)\n")
        self.assertEqual(self.features()["impairments"], "share=30%")
        self.assertEqual(self.text_line(), "impairments: share 30%")
        j = retest.stats_json(self.ctl)["impairments"]
        self.assertEqual((j["active"], j["delay_ms"], j["share"]), (False, 0, 30))
        self.assertEqual(self.metrics(), (dict.fromkeys(KINDS, 0), 0.3))
        self.assertEqual(self.top_header()[1:], [], "top says IMPAIRED with nothing impaired")

        self.set("share", "100", "share 100")
        self.logged("info: set share 100 (impairments: none)\n")
        self.assertEqual({k: v for k, v in self.config().items() if k in DEFAULTS}, DEFAULTS)
        self.assertEqual(self.features()["impairments"], "none")
        self.assertEqual(self.text_line(), "impairments: none")
        self.assertEqual(retest.stats_json(self.ctl)["impairments"],
                         dict(want, active=False, delay_ms=0, share=100))
        self.assertEqual(self.metrics(), (dict.fromkeys(KINDS, 0), 1.0))
        self.assertEqual(self.top_header()[1:], [])
        self.assertEqual(self.srv.stop(), 0)

    def test_every_kind_set_at_run_time(self):
        self.start("--threads", "1")
        self.assertNotIn(WARNING, self.srv.stderr())
        self.assertEqual(self.features()["impairments"], "none")
        self.assertEqual(self.text_line(), "impairments: none")
        self.assertEqual(self.metrics(), (dict.fromkeys(KINDS, 0), 1.0))
        self.assertEqual(self.top_header()[1:], [])

        self.set("accept", "off", "accept off")
        self.logged("info: set accept off (impairments: accept=off)\n")
        self.assertEqual(retest.stats_json(self.ctl)["impairments"]["active"], True)
        self.assertEqual(self.metrics(), (dict(dict.fromkeys(KINDS, 0), accept_off=1), 1.0))
        self.assertEqual(self.top_header()[1:], ["IMPAIRED: accept off (not a benchmark)"])

        for key, value, reply in (("jitter", "10ms", "jitter 10 ms"),
                                  ("bandwidth", "1M", "bandwidth 1048576"),
                                  ("close-after", "100000", "close-after 100000"),
                                  ("reset-after", "5K", "reset-after 5120"),
                                  ("share", "0", "share 0"),
                                  ("delay", "0.25", "delay 250 ms")):
            self.set(key, value, reply)
            self.logged("info: set %s (impairments: " % reply)
        self.assertEqual({k: v for k, v in self.config().items() if k in DEFAULTS},
                         {"delay": "250 ms", "jitter": "10 ms", "bandwidth": "1048576",
                          "close-after": "100000", "reset-after": "5120", "share": "0",
                          "accept": "off"})
        described = ("delay=250ms,jitter=10ms,bandwidth=1048576,close-after=100000,"
                     "reset-after=5120,share=0%,accept=off")
        self.assertEqual(self.features()["impairments"], described)
        self.logged("(impairments: %s)\n" % described)
        people = ("delay 250 ms, jitter 10 ms, bandwidth 1048576, close-after 100000, "
                  "reset-after 5120, share 0%, accept off")
        self.assertEqual(self.text_line(), "impairments: " + people)
        self.assertEqual(retest.stats_json(self.ctl)["impairments"],
                         {"active": True, "delay_ms": 250, "jitter_ms": 10,
                          "bandwidth": 1048576, "close_after": 100000, "reset_after": 5120,
                          "share": 0, "accept": "off"})
        self.assertEqual(self.metrics(), (dict.fromkeys(KINDS, 1), 0.0))
        self.assertEqual(self.top_header()[1:], ["IMPAIRED: %s (not a benchmark)" % people])

        # A bad value changes nothing and names the key.
        r = retest.ctl_command(self.ctl, "set share 101")
        self.assertTrue(r.startswith("ERR share: "), r)
        self.assertEqual(self.config()["share"], "0")
        self.assertEqual(self.srv.stop(), 0)


if __name__ == "__main__":
    retest.main()
