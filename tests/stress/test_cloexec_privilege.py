#!/usr/bin/env python3
"""Descriptor hygiene and privilege: O_CLOEXEC everywhere, --user drops everything,
the control socket is private from its first instant, metrics stay on loopback.

1. Server (root) with 10 echo clients, a control client and an HTTP client on
   --metrics-listen connected: every fd in /proc/PID/fd except 0-2 has O_CLOEXEC
   (02000000 in the `flags:` of /proc/PID/fdinfo/FD).
2. `--metrics-listen PORT` (port only) listens on 127.0.0.1 only (/proc/net/tcp{,6}).
3. The control socket's mode is 0600 at the first instant it exists (lstat in a tight
   loop from spawn, 5 starts).
4. Peer check: a server running as root with --control-mode 0666 (so that the socket
   is reachable); a client running as nobody (child: setgroups([]), setgid, setuid
   65534) gets its connection closed without a single byte of reply; a root client gets
   a reply (control). With the default 0600 the nobody client cannot even connect.
5. `--user nobody`: every task's Uid and Gid lines are 65534 x 4, Groups is exactly
   65534; the server still echoes; its fds are all O_CLOEXEC too; exit 0 on SIGTERM.

Needs root (exit 77 otherwise) and a user `nobody`.
"""
import os
import pwd
import select
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stresslib as sl  # noqa: E402

O_CLOEXEC = 0o2000000


def fds_without_cloexec(pid):
    """([(fd, target, flags)] lacking O_CLOEXEC, number of fds checked)."""
    bad = []
    n = 0
    for name in os.listdir("/proc/%d/fd" % pid):
        fd = int(name)
        if fd <= 2:
            continue
        try:
            with open("/proc/%d/fdinfo/%d" % (pid, fd)) as f:
                info = f.read()
            target = os.readlink("/proc/%d/fd/%d" % (pid, fd))
        except OSError:
            continue
        n += 1
        flags = 0
        for line in info.splitlines():
            if line.startswith("flags:"):
                flags = int(line.split()[1], 8)
        if not flags & O_CLOEXEC:
            bad.append((fd, target, oct(flags)))
    return bad, n


def fd_kinds(pid):
    kinds = {}
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            continue
        k = t.split(":")[0] if ":" in t else ("anon" if t.startswith("anon") else "file")
        if t.startswith("anon_inode:"):
            k = t
        kinds[k] = kinds.get(k, 0) + 1
    return kinds


def as_nobody_connect(path, timeout=5.0):
    """In a child running as nobody: connect to path, send 'stats', read to EOF.
    Returns ('refused', errno text) | ('closed', n bytes received) | ('open', n)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(path)
            except OSError as e:
                os.write(w, b"refused %s" % e.strerror.encode())
                os._exit(0)
            got = 0
            state = b"open"
            try:
                s.sendall(b"stats\n")
                end = time.monotonic() + timeout
                while time.monotonic() < end:
                    d = s.recv(4096)
                    if not d:
                        state = b"closed"
                        break
                    got += len(d)
            except ConnectionResetError:
                state = b"closed"
            except socket.timeout:
                pass
            except BrokenPipeError:
                state = b"closed"
            os.write(w, b"%s %d" % (state, got))
        except BaseException as e:    # noqa: B902 - report anything from the child
            os.write(w, b"error %r" % (e,))
        os._exit(0)
    os.close(w)
    out = b""
    end = time.monotonic() + timeout + 10
    while time.monotonic() < end and len(out) < 65536:
        ready, _, _ = select.select([r], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            break
        d = os.read(r, 4096)
        if not d:
            break
        out += d
    os.close(r)
    if not out:
        os.kill(pid, 9)
    os.waitpid(pid, 0)
    kind, _, rest = out.decode().partition(" ")
    return kind, rest


def first_mode(binary, ctl_path, timeout=10.0):
    """Spawn a server and lstat ctl_path in a tight loop until it exists; returns the
    mode seen first (or None), then stops the server."""
    p = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", "0", "--threads", "1",
                          "--control", ctl_path], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    mode = None
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            try:
                st = os.lstat(ctl_path)
            except FileNotFoundError:
                continue
            mode = st.st_mode
            break
    finally:
        p.terminate()
        p.wait(20)
    return mode


def main():
    if os.geteuid() != 0:
        sl.skip("needs root (--user, setuid for the peer-credential client)")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        sl.skip("no user 'nobody'")
    mport = sl.retest.free_tcp_port()
    d = sl.tmpdir()
    try:
        # 1 + 2: root server with everything open.
        srv = sl.start_server("--threads", 2, "--metrics-listen", mport,
                              control=os.path.join(d, "c.sock"))
        try:
            clients = []
            for i in range(10):
                s = srv.connect()
                s.sendall(b"hi %d" % i)
                sl.retest.recv_exact(s, len(b"hi %d" % i))
                clients.append(s)
            ctlc = sl.retest.ControlClient(srv.ctl)
            ctlc.cmd("stats")
            http = socket.create_connection(("127.0.0.1", mport), timeout=5)
            http.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")     # request left open
            sl.retest.wait_until(lambda: sl.stats(srv)["total"]["active"] == 10, timeout=10,
                                 what="10 active")
            time.sleep(0.2)
            bad, n = fds_without_cloexec(srv.pid)
            kinds = fd_kinds(srv.pid)
            sl.result("cloexec.root_server", "%d of %d fds (>2) without O_CLOEXEC %s; kinds %s"
                      % (len(bad), n, bad, kinds), "== 0, >= 16 checked", not bad and n >= 16)
            listen = [(ip, port) for st_, ip, port, rip, rport, ino in sl.tcp_sockets()
                      if st_ == "0A" and port == mport]
            loop = [x for x in listen if x[0] == "0100007F"]
            sl.result("metrics_listen.loopback_only",
                      "port-only --metrics-listen %d: %d listener(s) on 127.0.0.1, %d elsewhere %s"
                      % (mport, len(loop), len(listen) - len(loop), listen),
                      "1 on 127.0.0.1, 0 elsewhere", len(loop) == 1 and len(listen) == 1)
            for s in clients:
                s.close()
            ctlc.close()
            http.close()
            rc = srv.stop(30)
            sl.result("cloexec.root_server_exit", "status %s" % rc, "exit 0", rc == 0)
        finally:
            srv.kill()

        # 3: mode at first sight.
        modes = []
        for i in range(5):
            path = os.path.join(d, "first-%d.sock" % i)
            m = first_mode(sl.retest.binary(), path)
            modes.append(m)
            try:
                os.unlink(path)
            except OSError:
                pass
        perms = [None if m is None else oct(stat.S_IMODE(m)) for m in modes]
        sl.result("control.mode_at_creation", "first lstat over 5 starts: %s" % perms,
                  "0o600 and a socket every time",
                  all(m is not None and stat.S_ISSOCK(m) and stat.S_IMODE(m) == 0o600
                      for m in modes))

        # 4: SO_PEERCRED check.
        pub = os.path.join(d, "pub")
        os.mkdir(pub)
        os.chmod(pub, 0o755)
        os.chmod(d, 0o755)
        srv = sl.start_server("--threads", 1, "--control-mode", "0666",
                              control=os.path.join(pub, "c.sock"))
        try:
            mode = oct(stat.S_IMODE(os.lstat(srv.ctl).st_mode))
            kind, rest = as_nobody_connect(srv.ctl)
            root_reply = sl.ctl(srv, "stats")
            sl.result("control.peer_uid_refused",
                      "socket mode %s; nobody client: %s %s; root client: %d-byte reply"
                      % (mode, kind, rest, len(root_reply)),
                      "nobody: closed with 0 bytes; root: reply",
                      mode == "0o666" and kind == "closed" and rest == "0" and len(root_reply) > 50)
            srv.stop(30)
        finally:
            srv.kill()
        srv = sl.start_server("--threads", 1, control=os.path.join(pub, "d.sock"))
        try:
            kind, rest = as_nobody_connect(srv.ctl)
            sl.result("control.default_mode_blocks_others", "nobody client on a 0600 socket: %s %s"
                      % (kind, rest), "refused (Permission denied)",
                      kind == "refused" and "ermission" in rest)
            srv.stop(30)
        finally:
            srv.kill()

        # 5: --user nobody.
        srv = sl.start_server("--threads", 2, "--user", "nobody",
                              control=os.path.join(pub, "n.sock"))
        try:
            bad_tasks = []
            ntasks = 0
            for tid in os.listdir("/proc/%d/task" % srv.pid):
                try:
                    with open("/proc/%d/task/%s/status" % (srv.pid, tid)) as f:
                        status = f.read()
                except OSError:
                    continue
                ntasks += 1
                fields = {}
                for line in status.splitlines():
                    k, _, v = line.partition(":")
                    fields[k] = v.split()
                if fields.get("Uid") != ["65534"] * 4 or fields.get("Gid") != ["65534"] * 4 or \
                        fields.get("Groups") != ["65534"]:
                    bad_tasks.append((tid, fields.get("Uid"), fields.get("Gid"),
                                      fields.get("Groups")))
            s = srv.connect()
            payload = os.urandom(100000)
            echoed = sl.retest.echo_check(s, payload) == len(payload)
            s.close()
            bad, n = fds_without_cloexec(srv.pid)
            sl.result("user_nobody.credentials", "%d of %d tasks not 65534 everywhere %s"
                      % (len(bad_tasks), ntasks, bad_tasks),
                      "0 of >= 4 tasks (Uid, Gid x4 and Groups == 65534)",
                      not bad_tasks and ntasks >= 4)
            sl.result("user_nobody.echo_and_cloexec", "echo %s; %d of %d fds without O_CLOEXEC"
                      % ("exact" if echoed else "FAILED", len(bad), n), "exact, 0", echoed and not bad)
            rc = srv.stop(30)
            sl.result("user_nobody.exit", "status %s" % rc, "exit 0", rc == 0)
            if rc != 0:
                sl.log("server stderr: %s", srv.stderr()[-500:])
        finally:
            srv.kill()
    finally:
        sl.rmtree(d)
    sl.finish()


if __name__ == "__main__":
    main()
