#!/usr/bin/env python3
"""Install checks: `meson install --destdir` into a temporary directory, then

  --check list   the exact list of installed files, their contents where they are
                 ours to check (README, substituted unit, scrape config), and a few
                 properties of the unit (binary path, Type=, stop timeout above the
                 drain timeout, port agreement with prometheus.yml);
  --check unit   `systemd-analyze verify` on the installed unit (exit 77, skipped,
                 when systemd-analyze is missing).

Nothing is installed outside the temporary directory. The expected list is written
out here from the project's intent, not read back from meson's install plan, so a
file that starts or stops being installed fails the test until it is listed.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
PROGRAMS = ("reuseecho", "reuseecho-ctl", "echoload")
DOC_FILES = ("README.md", "prometheus.yml", "Containerfile")
SUPERVISOR_GRACE_S = 5  # src/supervisor.c RE_SUP_GRACE_MS: beyond --drain-timeout


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def partial_skip(what, why):
    """A check this test could not make while the rest passes: printed as a
    `SKIPPED:` line, which tests/check-skips fails CI on unless allow-listed."""
    print("SKIPPED: %s: %s" % (what, why))


def load_intro(build_root, what):
    path = os.path.join(build_root, "meson-info", "intro-%s.json" % what)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Build:
    def __init__(self, build_root):
        opts = {o["name"]: o["value"] for o in load_intro(build_root, "buildoptions")}
        self.prefix = opts["prefix"]
        self.bindir = os.path.join(self.prefix, opts["bindir"])
        self.mandir = os.path.join(self.prefix, opts["mandir"])
        self.docdir = os.path.join(self.prefix, opts["datadir"], "doc", "reuseecho")
        unit_dir = opts.get("systemd_unit_dir", "")
        if unit_dir == "":
            unit_dir = os.path.join(self.prefix, "lib", "systemd", "system")
        self.unit_dir = os.path.join(self.prefix, unit_dir)  # absolute stays absolute
        self.man_option = opts.get("man", "auto")
        targets = load_intro(build_root, "targets")
        self.man_pages = sorted(t["name"] for t in targets
                                if t["type"] == "custom" and re.fullmatch(r"[\w-]+\.1", t["name"]))
        self.version = load_intro(build_root, "projectinfo")["version"]
        deps = load_intro(build_root, "dependencies")
        self.libsystemd = any(d.get("name") == "libsystemd" for d in deps)

    @property
    def unit_path(self):
        return os.path.join(self.unit_dir, "reuseecho.service")


def install(meson, build_root, destdir):
    cmd = meson + ["install", "-C", build_root, "--destdir", destdir, "--no-rebuild", "--quiet"]
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=90)
    if r.returncode != 0:
        fail("%s exited %d:\n%s" % (" ".join(cmd), r.returncode,
                                     r.stdout.decode(errors="replace")))


def installed_files(destdir):
    found = set()
    for root, dirs, files in os.walk(destdir):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            found.add("/" + os.path.relpath(os.path.join(root, name), destdir))
    return found


def under(destdir, path):
    return os.path.join(destdir, path.lstrip("/"))


def parse_unit(text):
    """[Section] -> {key: [values]} for a systemd unit (no line continuations used)."""
    sections, cur = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            cur = sections.setdefault(m.group(1), {})
            continue
        if cur is None or "=" not in line:
            fail("unit: unexpected line %r" % line)
        k, v = line.split("=", 1)
        cur.setdefault(k.strip(), []).append(v.strip())
    return sections


def seconds(value):
    """systemd time span ('30', '30s', '1min 30s') to seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "ms": 0.001, "h": 3600}
    total = 0.0
    for num, unit in re.findall(r"([\d.]+)\s*([a-z]*)", value):
        if unit not in units:
            fail("unit: cannot read time span %r" % value)
        total += float(num) * units[unit]
    return total


def flag_value(argv, flag, default=None):
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return default


def check_list(b, destdir, source_root):
    expected = {os.path.join(b.bindir, p) for p in PROGRAMS}
    expected |= {os.path.join(b.docdir, f) for f in DOC_FILES}
    expected.add(b.unit_path)
    want_pages = ["%s.1" % p for p in PROGRAMS]
    if b.man_pages:
        if b.man_pages != sorted(want_pages):
            fail("man page targets %s, expected %s" % (b.man_pages, sorted(want_pages)))
        expected |= {os.path.join(b.mandir, "man1", p) for p in want_pages}
    elif shutil.which("scdoc") and b.man_option != "disabled":
        fail("scdoc is on PATH and -Dman=%s, but the build has no man pages "
             "(reconfigure the build directory)" % b.man_option)
    else:
        partial_skip("install.man_pages", "no man pages in this build (scdoc not found or "
                     "-Dman=disabled): share/man/man1 not checked")

    got = installed_files(destdir)
    missing, extra = sorted(expected - got), sorted(got - expected)
    if missing or extra:
        fail("installed file list differs:\n  missing: %s\n  unexpected: %s"
             % (missing or "-", extra or "-"))
    print("ok: %d files installed, exactly the expected list" % len(got))

    for p in PROGRAMS:
        path = under(destdir, os.path.join(b.bindir, p))
        if not os.access(path, os.X_OK):
            fail("%s is not executable" % path)
        r = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10)
        if r.returncode != 0 or not r.stdout.decode().startswith(p + " "):
            fail("installed %s --version: exit %d, %r" % (p, r.returncode, r.stdout))
    print("ok: installed programs run (--version)")

    for f in ("README.md",):
        with open(os.path.join(source_root, f), "rb") as a, \
                open(under(destdir, os.path.join(b.docdir, f)), "rb") as c:
            if a.read() != c.read():
                fail("installed %s differs from the source" % f)
    for f in ("prometheus.yml", "Containerfile"):
        with open(os.path.join(source_root, "deploy", f), "rb") as a, \
                open(under(destdir, os.path.join(b.docdir, f)), "rb") as c:
            if a.read() != c.read():
                fail("installed %s differs from deploy/%s" % (f, f))

    for page in (want_pages if b.man_pages else []):
        with open(under(destdir, os.path.join(b.mandir, "man1", page)), encoding="utf-8") as f:
            text = f.read()
        name = page[:-2]
        th = '.TH "%s" "1" ' % name
        th_line = next((l for l in text.splitlines() if l.startswith(th)), None)
        if th_line is None:
            fail("%s: no .TH header for %s(1)" % (page, name))
        if not th_line.endswith('"reuseecho %s"' % b.version):
            fail("%s: header %r does not carry version %s" % (page, th_line, b.version))
        if "@VERSION@" in text:
            fail("%s: @VERSION@ not substituted" % page)
        if shutil.which("groff"):
            r = subprocess.run(["groff", "-man", "-z", "-ww", "-Tutf8"], input=text.encode(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            if r.returncode != 0 or r.stderr:
                fail("%s: groff warnings:\n%s" % (page, r.stderr.decode(errors="replace")))
    if b.man_pages:
        print("ok: man pages have their headers%s" %
              (" and render without groff warnings" if shutil.which("groff") else ""))
        if not shutil.which("groff"):
            partial_skip("install.groff", "groff not found (Debian package 'groff-base'): "
                         "man pages not rendered")

    # The unit: substituted, pointing at the installed server, sane stop timing.
    with open(under(destdir, b.unit_path), encoding="utf-8") as f:
        text = f.read()
    if re.search(r"@\w+@", text):
        fail("unit: unsubstituted %s" % re.search(r"@\w+@", text).group(0))
    svc = parse_unit(text).get("Service") or fail("unit: no [Service]")
    exec_start = svc.get("ExecStart", [""])[-1].split()
    if not exec_start or exec_start[0] != os.path.join(b.bindir, "reuseecho"):
        fail("unit: ExecStart runs %r, not %s" % (exec_start[:1], os.path.join(b.bindir, "reuseecho")))
    want_type = "notify" if b.libsystemd else "exec"
    if svc.get("Type") != [want_type]:
        fail("unit: Type=%s, expected %s (libsystemd %s)"
             % (svc.get("Type"), want_type, "found" if b.libsystemd else "not found"))
    for key, value in (("DynamicUser", "yes"), ("RuntimeDirectory", "reuseecho"),
                       ("CapabilityBoundingSet", ""), ("NoNewPrivileges", "yes"),
                       ("ProtectSystem", "strict"), ("KillSignal", "SIGTERM"),
                       ("Restart", "on-failure"), ("LimitNOFILE", "1048576")):
        if svc.get(key) != [value]:
            fail("unit: %s=%s, expected %r" % (key, svc.get(key), value))
    if "AmbientCapabilities" in svc:
        fail("unit: AmbientCapabilities must stay a commented example")
    drain = float(flag_value(exec_start, "--drain-timeout", "10").rstrip("s"))
    stop = seconds(svc.get("TimeoutStopSec", ["90"])[-1])
    if stop <= drain + SUPERVISOR_GRACE_S:
        fail("unit: TimeoutStopSec=%gs does not exceed --drain-timeout %gs + %ds grace"
             % (stop, drain, SUPERVISOR_GRACE_S))
    print("ok: unit runs %s, Type=%s, TimeoutStopSec %gs > drain %gs + %ds"
          % (exec_start[0], want_type, stop, drain, SUPERVISOR_GRACE_S))

    # The sample scrape config scrapes what the unit serves.
    listen = flag_value(exec_start, "--metrics-listen")
    if listen is None:
        fail("unit: no --metrics-listen, but prometheus.yml expects one")
    if ":" not in listen:
        listen = "127.0.0.1:" + listen
    elif listen.startswith(":"):
        listen = "127.0.0.1" + listen
    with open(under(destdir, os.path.join(b.docdir, "prometheus.yml")), encoding="utf-8") as f:
        targets = re.findall(r"^\s*-\s*([\w.\[\]:]+:\d+)\s*$", f.read(), re.M)
    if listen not in targets:
        fail("prometheus.yml targets %s do not include the unit's --metrics-listen %s"
             % (targets, listen))
    print("ok: prometheus.yml scrapes %s, the unit's --metrics-listen" % listen)
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "config",
                            under(destdir, os.path.join(b.docdir, "prometheus.yml"))],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        if r.returncode != 0:
            fail("promtool check config:\n" + r.stdout.decode(errors="replace"))
        print("ok: promtool check config prometheus.yml")
    else:
        partial_skip("install.promtool", "promtool not found (Debian package 'prometheus'): "
                     "prometheus.yml syntax not checked")


def check_unit(b, destdir):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("SKIPPED: install_unit: systemd-analyze not found (Debian package 'systemd'); "
              "the unit was not verified")
        sys.exit(SKIP)
    # systemd-analyze verify checks that ExecStart= names an executable, which here
    # lives under the destdir: verify a copy whose ExecStart points there (check
    # `list` asserts the real path). Nothing else is changed.
    with open(under(destdir, b.unit_path), encoding="utf-8") as f:
        text = f.read()
    real = os.path.join(b.bindir, "reuseecho")
    staged = under(destdir, real)
    text, n = re.subn(r"^(ExecStart=)%s(\s)" % re.escape(real), r"\g<1>%s\g<2>" % staged, text,
                      flags=re.M)
    if n != 1:
        fail("unit: expected one ExecStart=%s ..." % real)
    with tempfile.TemporaryDirectory(prefix="reuseecho-unit-") as d:
        unit = os.path.join(d, "reuseecho.service")
        with open(unit, "w", encoding="utf-8") as f:
            f.write(text)
        cmd = [analyze, "verify"]
        env = dict(os.environ)
        if b.man_pages:
            # Documentation=man:... must name pages that this install provides.
            env["MANPATH"] = under(destdir, b.mandir)
        else:
            partial_skip("install_unit.man", "no man pages in this build: verifying with --man=no")
            cmd.append("--man=no")
        cmd.append(unit)
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60)
        out = r.stdout.decode(errors="replace")
        if r.returncode != 0 or out.strip():
            fail("%s: exit %d\n%s" % (" ".join(cmd), r.returncode, out))
        print("ok: systemd-analyze verify: no findings")
        r = subprocess.run([analyze, "security", "--offline=yes", unit], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        m = re.search(r"Overall exposure level for \S+: (.*)", r.stdout.decode(errors="replace"))
        if m:
            print("info: systemd-analyze security: %s" % m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-root", required=True)
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--meson", default=None)
    ap.add_argument("--check", choices=("list", "unit"), required=True)
    a = ap.parse_args()

    meson = [a.meson] if a.meson else ([shutil.which("meson")] if shutil.which("meson") else None)
    if meson is None:
        print("SKIPPED: install: no meson command to run `meson install` with")
        sys.exit(SKIP)
    b = Build(a.build_root)
    with tempfile.TemporaryDirectory(prefix="reuseecho-destdir-") as destdir:
        install(meson, a.build_root, destdir)
        if a.check == "list":
            check_list(b, destdir, a.source_root)
        else:
            check_unit(b, destdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
