#!/usr/bin/env python3
"""README's Installing commands, run as written, install under /usr even when build/
already exists from the quick start (configured with meson's default /usr/local).

`meson setup build --prefix=/usr` silently kept /usr/local in that case. This test
copies the source tree to a temporary directory, sets up build/ there the quick
start's way, runs the shell block under "## Installing" unchanged with DESTDIR
pointing into the temporary directory (meson install honours it), and checks that
the programs landed under /usr/bin and nothing under /usr/local.
Exit 0 pass, 1 fail.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

PROGRAMS = ("reuseecho", "reuseecho-ctl", "echoload")


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def installing_block(readme):
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^## Installing\n(.*?)^## ", text, re.S | re.M)
    if m is None:
        fail("README.md has no '## Installing' section")
    b = re.search(r"^```sh\n(.*?)^```", m.group(1), re.S | re.M)
    if b is None:
        fail("README.md's Installing section has no ```sh block")
    return b.group(1)


def run(cmd, cwd, env, what, shell=False):
    r = subprocess.run(cmd, cwd=cwd, env=env, shell=shell, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240,
                       executable="/bin/bash" if shell else None)
    if r.returncode != 0:
        fail("%s exited %d:\n%s" % (what, r.returncode, r.stdout.decode(errors="replace")[-3000:]))
    return r.stdout.decode(errors="replace")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--meson", required=True)
    a = ap.parse_args()

    block = installing_block(os.path.join(a.source_root, "README.md"))
    if "--prefix=/usr" not in block:
        fail("the Installing block does not set --prefix=/usr:\n" + block)
    print("Installing block:\n" + block)
    env = dict(os.environ)
    # README says `meson`: the one this build uses comes first on PATH.
    env["PATH"] = os.path.dirname(os.path.abspath(a.meson)) + os.pathsep + env.get("PATH", "")
    with tempfile.TemporaryDirectory(prefix="reuseecho-readme-install-") as tmp:
        src = os.path.join(tmp, "src")
        dest = os.path.join(tmp, "dest")
        shutil.copytree(a.source_root, src, symlinks=True,
                        ignore=lambda d, names: [n for n in names
                                                 if n == ".git" or n.startswith("build")])
        # The quick start's configuration: meson's default prefix.
        run([a.meson, "setup", "build"], src, env, "meson setup build (the quick start)")
        env["DESTDIR"] = dest
        run("set -euo pipefail\n" + block, src, env, "README's Installing block", shell=True)
        missing = [p for p in PROGRAMS if not os.access(os.path.join(dest, "usr", "bin", p),
                                                        os.X_OK)]
        if missing:
            fail("not installed under /usr/bin: %s" % missing)
        if os.path.exists(os.path.join(dest, "usr", "local")):
            found = [os.path.relpath(os.path.join(r, f), dest)
                     for r, _, fs in os.walk(os.path.join(dest, "usr", "local")) for f in fs]
            fail("files installed under /usr/local after README's commands: %s" % found[:5])
        print("ok: README's Installing commands on an existing build/ install %s under "
              "/usr/bin and nothing under /usr/local" % ", ".join(PROGRAMS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
