#!/usr/bin/env python3
"""The man page sources (doc/*.1.scd) against what the programs really do.

Nothing here is a hand-kept list: every name comes from the programs or the source.
  - every long flag printed by PROG --help is documented as an option term in its
    page, and every option term in the page is a flag --help prints;
  - every exit status and signal that --help mentions has an entry;
  - reuseecho(1): every Prometheus metric the running server emits (`metrics` on the
    control socket) has an entry under METRICS with its type, and no entry names a
    metric that is not emitted; every control command and argument word accepted by
    src/ctlproto.c and every HTTP path served by src/ctlcmd.c has an entry under
    CONTROL PROTOCOL (and no command entry names an unknown command); every key of
    the `config` and `features` replies is named; every signal src/supervisor.c
    handles has an entry under SIGNALS;
  - echoload(1): every key of the --json record has an entry under OUTPUT (and no
    entry names a key that is not emitted), every --mode has one under MODES;
  - reuseecho-ctl(1): names every command meant for it, and documents top.

Conventions in the .scd sources this relies on: an entry is a line that starts with
"*" (after optional tabs), e.g. "*-t*, *--threads* _N_" or "*reuseecho_workers*
(gauge)"; sections are "# NAME" / "## NAME" headings.
"""
import argparse
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

READY_RE = re.compile(rb"^reuseecho: listening on (\S+):(\d+) with (\d+) workers?$")
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
    return cond


def read_page(source_root, prog):
    with open(os.path.join(source_root, "doc", prog + ".1.scd"), encoding="utf-8") as f:
        return f.read()


def sections(text):
    """{heading: body} for '# X' and '## X' headings (a subsection is its own key)."""
    out, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"^#{1,2} (.+)$", line)
        if m:
            cur = m.group(1).strip()
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def entries(body, depth=None):
    """Definition-list terms: a line starting with "*" after `depth` tabs (any depth
    when None) whose next line is indented one tab deeper. Prose lines that happen
    to start with a bold word are not terms."""
    lines = body.splitlines()
    out = []
    for i, line in enumerate(lines[:-1]):
        m = re.match(r"^(\t*)\*", line)
        if not m or (depth is not None and len(m.group(1)) != depth):
            continue
        if lines[i + 1].startswith("\t" * (len(m.group(1)) + 1)):
            out.append(line.lstrip("\t"))
    return out


def bold_words(line):
    return re.findall(r"\*([^*\s][^*]*?)\*", line)


def help_text(path):
    r = subprocess.run([path, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=10)
    if r.returncode != 0:
        sys.exit("FAIL: %s --help exited %d" % (path, r.returncode))
    return r.stdout.decode()


def help_flags(text):
    """Long flags that --help lists as options: the first --flag on an indented line."""
    flags = set()
    for line in text.splitlines():
        m = re.match(r"^\s+(?:-\w,\s+)?(--[a-z][a-z0-9-]*)", line)
        if m:
            flags.add(m.group(1))
    return flags


def check_options(prog, help_txt, page):
    secs = sections(page)
    opts = secs.get("OPTIONS", "")
    documented = set()
    for line in entries(opts, depth=0):
        documented |= {w for w in bold_words(line) if w.startswith("--")}
    flags = help_flags(help_txt)
    check(flags, "%s --help lists no long flags" % prog)
    for f in sorted(flags - documented):
        check(False, "%s(1): flag %s (in --help) has no entry under OPTIONS" % (prog, f))
    for f in sorted(documented - flags):
        check(False, "%s(1): OPTIONS documents %s, which --help does not list" % (prog, f))

    # Exit statuses and signals that --help mentions.
    m = re.search(r"Exit status:(.*)", help_txt, re.S | re.I)
    codes = set(re.findall(r"\b(\d)\b", m.group(1))) if check(m, "%s --help: no exit status" % prog) else set()
    exit_entries = {w for l in entries(secs.get("EXIT STATUS", ""), 0) for w in bold_words(l)}
    for c in sorted(codes):
        check(c in exit_entries, "%s(1): exit status %s (in --help) has no entry under EXIT STATUS"
              % (prog, c))
    sig_body = secs.get("SIGNALS", "")
    for s in sorted(set(re.findall(r"\bSIG[A-Z]+\b", help_txt))):
        check(re.search(r"\*%s\*" % s, sig_body), "%s(1): %s (in --help) not under SIGNALS" % (prog, s))
    return flags


class Server:
    def __init__(self, binary, tmp):
        self.sock = os.path.join(tmp, "ctl.sock")
        self.err = open(os.path.join(tmp, "stderr"), "w+b")
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", "0", "--threads", "2",
             "--control", self.sock], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self.err)
        deadline, buf = time.monotonic() + 10, b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            r = select.select([self.proc.stdout], [], [], max(left, 0))[0] if left > 0 else []
            if not r:
                self.stop()
                sys.exit("FAIL: no ready line from the server within 10 s")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                self.stop()
                sys.exit("FAIL: server exited before its ready line: %s" % self.stderr())
            buf += chunk
        m = READY_RE.match(buf.split(b"\n")[0])
        if not m:
            self.stop()
            sys.exit("FAIL: unexpected ready line %r" % buf)
        self.port = int(m.group(2))

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def command(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.sock)
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not (buf.endswith(b"\n\n") or buf == b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        text = buf.decode()
        if text.startswith("ERR "):
            sys.exit("FAIL: %r answered %s" % (line, text.strip()))
        return text

    def stop(self):
        """SIGTERM; returns the exit status (non-zero after a sanitizer report)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.err.close()
        return self.proc.returncode


def ctlproto_words(source_root):
    with open(os.path.join(source_root, "src", "ctlproto.c"), encoding="utf-8") as f:
        src = f.read()
    cmds = set(re.findall(r'ONE_WORD\("([\w-]+)"', src))
    cmds |= set(re.findall(r'strcmp\(tok\[0\],\s*"([\w-]+)"\)', src))
    args = set(re.findall(r'strcmp\(tok\[1\],\s*"([\w-]+)"\)', src))
    args |= set(re.findall(r'\[RE_KEY_\w+\]\s*=\s*"([\w-]+)"', src))
    return cmds, args


def http_paths(source_root):
    with open(os.path.join(source_root, "src", "ctlcmd.c"), encoding="utf-8") as f:
        return set(re.findall(r'strcmp\(req\.path,\s*"(/[^"]*)"\)', f.read()))


def handled_signals(source_root):
    with open(os.path.join(source_root, "src", "supervisor.c"), encoding="utf-8") as f:
        return set(re.findall(r"sigaddset\(&\w+,\s*(SIG[A-Z]+)\)", f.read()))


def check_server_page(page, server, source_root):
    secs = sections(page)

    # Metrics: names and types exactly as emitted.
    text = server.command("metrics")
    types = dict(re.findall(r"^# TYPE (\w+) (\w+)$", text, re.M))
    samples = {re.match(r"^([a-zA-Z_:][\w:]*)", l).group(1)
               for l in text.splitlines() if l and not l.startswith("#")}
    check(types, "metrics: no # TYPE lines in the server's reply")
    check(samples <= set(types), "metrics: samples without # TYPE: %s" % (samples - set(types)))
    doc = {}
    for line in entries(secs.get("METRICS", ""), 0):
        m = re.match(r"^\*(reuseecho_\w+)\*\s*\((\w+)", line)
        if check(m, "reuseecho(1) METRICS: entry %r is not '*name* (type...)'" % line):
            doc[m.group(1)] = m.group(2)
    for name in sorted(types):
        if check(name in doc, "reuseecho(1): metric %s (emitted) has no entry under METRICS" % name):
            check(doc[name] == types[name], "reuseecho(1): metric %s is a %s, the page says %s"
                  % (name, types[name], doc[name]))
    for name in sorted(set(doc) - set(types)):
        check(False, "reuseecho(1): METRICS documents %s, which the server does not emit" % name)

    # Control commands and their argument words, from the parser.
    ctl = secs.get("CONTROL PROTOCOL", "")
    cmds, args = ctlproto_words(source_root)
    check(len(cmds) >= 10, "src/ctlproto.c: found only %s commands; extraction broken?" % sorted(cmds))
    top = entries(ctl, 0)
    top_words = {bold_words(l)[0].split()[0] for l in top if bold_words(l)}
    for c in sorted(cmds):
        check(c in top_words, "reuseecho(1): control command '%s' (src/ctlproto.c) has no entry "
              "under CONTROL PROTOCOL" % c)
    for w in sorted(top_words - cmds):
        check(False, "reuseecho(1): CONTROL PROTOCOL documents command '%s', which "
              "src/ctlproto.c does not accept" % w)
    all_words = {w for l in entries(ctl) for b in bold_words(l) for w in b.split()}
    for a in sorted(args):
        check(a in all_words, "reuseecho(1): control argument '%s' (src/ctlproto.c) has no "
              "entry under CONTROL PROTOCOL" % a)

    # HTTP paths, from the server.
    http = secs.get("HTTP", "")
    paths = http_paths(source_root)
    check(paths, "src/ctlcmd.c: no HTTP paths found; extraction broken?")
    http_entries = {b for l in entries(http, 0) for b in bold_words(l)}
    for p in sorted(paths):
        check(p in http_entries, "reuseecho(1): HTTP path %s has no entry under HTTP" % p)
    index = re.findall(r"(/\w+)", server_http_index(server))
    for p in index:
        check(p in paths, "GET / lists %s, which src/ctlcmd.c does not serve" % p)

    # Keys of the config and features replies.
    for cmd in ("config", "features"):
        for line in server.command(cmd).splitlines():
            if line.strip():
                key = line.split()[0]
                check(re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(key), ctl),
                      "reuseecho(1): '%s' key %s is not named under CONTROL PROTOCOL" % (cmd, key))

    # Signals the supervisor handles.
    sig_body = secs.get("SIGNALS", "")
    for s in sorted(handled_signals(source_root) | {"SIGPIPE"}):
        check(re.search(r"\*%s\*" % s, sig_body), "reuseecho(1): %s not under SIGNALS" % s)


def server_http_index(server):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(server.sock)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.decode().partition("\r\n\r\n")
    check(head.startswith("HTTP/1.") and " 200 " in head.split("\r\n")[0], "GET /: %r" % head)
    return body


def check_echoload_page(page, echoload, help_txt, port):
    secs = sections(page)
    r = subprocess.run([echoload, "--port", str(port), "--conns", "2", "--duration", "0.2",
                        "--warmup", "0", "--json"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if not check(r.returncode == 0, "echoload --json exited %d: %s"
                 % (r.returncode, r.stderr.decode(errors="replace"))):
        return
    keys = list(json.loads(r.stdout.decode()).keys())
    documented = {w for l in entries(secs.get("OUTPUT", ""), 0) for w in bold_words(l)}
    for k in keys:
        check(k in documented, "echoload(1): output key %s (from --json) has no entry under OUTPUT" % k)
    for k in sorted(documented - set(keys)):
        check(False, "echoload(1): OUTPUT documents %s, which --json does not emit" % k)
    m = re.search(r"--mode ([\w|]+)", help_txt)
    modes = m.group(1).split("|") if check(m, "echoload --help: no --mode line") else []
    mode_entries = {w for l in entries(secs.get("MODES", ""), 0) for w in bold_words(l)}
    for mode in modes:
        check(mode in mode_entries, "echoload(1): mode %s has no entry under MODES" % mode)


def check_ctl_page(page, help_txt):
    """Every command reuseecho-ctl --help lists (its "Commands:" paragraph) is named
    in bold in reuseecho-ctl(1); top has its own section."""
    m = re.search(r"Commands:(.*?)(?:\n\s*\n|Exit status)", help_txt, re.S)
    if not check(m, "reuseecho-ctl --help: no Commands: paragraph"):
        return
    listed = re.sub(r"\([^)]*\)", "", m.group(1))
    words = set()
    for item in re.split(r",|\band\b", listed):
        words |= {w for w in item.split() if re.fullmatch(r"[a-z][a-z-]*", w)}
    check("top" in words and "stats" in words,
          "reuseecho-ctl --help Commands: parsed as %s" % sorted(words))
    bold = {w for b in re.findall(r"\*([^*\n]+)\*", page) for w in b.split()}
    for w in sorted(words):
        check(w in bold, "reuseecho-ctl(1): command word '%s' (in --help) is not named" % w)
    check("TOP" in sections(page), "reuseecho-ctl(1): no TOP section")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--reuseecho", required=True)
    ap.add_argument("--reuseecho-ctl", required=True)
    ap.add_argument("--echoload", required=True)
    a = ap.parse_args()

    programs = {"reuseecho": a.reuseecho, "reuseecho-ctl": a.reuseecho_ctl,
                "echoload": a.echoload}
    pages, helps = {}, {}
    for prog, path in programs.items():
        pages[prog] = read_page(a.source_root, prog)
        helps[prog] = help_text(path)
        n = len(check_options(prog, helps[prog], pages[prog]))
        print("checked %s: %d long flags from --help" % (prog, n))

    with tempfile.TemporaryDirectory(prefix="reuseecho-man-") as tmp:
        server = Server(a.reuseecho, tmp)
        try:
            check_server_page(pages["reuseecho"], server, a.source_root)
            check_echoload_page(pages["echoload"], a.echoload, helps["echoload"], server.port)
        finally:
            rc = server.stop()
        if rc != 0:
            failures.append("reuseecho exited %s on SIGTERM (a sanitizer report?)" % rc)
    check_ctl_page(pages["reuseecho-ctl"], helps["reuseecho-ctl"])

    if failures:
        for f in failures:
            print("FAIL: " + f)
        return 1
    print("ok: man page sources match --help, the server's metrics and protocol, "
          "and echoload's output")
    return 0


if __name__ == "__main__":
    sys.exit(main())
