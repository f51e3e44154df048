#!/usr/bin/env python3
"""py-epoll-echo: edge-triggered epoll TCP echo server in the classic tutorial style.

A comparison peer for bench/compare: one process, one thread, one epoll
instance, written the way the well-known tutorials teach it:

  * the listener and every connection are registered EPOLLIN | EPOLLET;
  * on a listener edge: accept() until EAGAIN;
  * on a read edge: recv() until EAGAIN, append to the connection's output
    buffer, then epoll_ctl(MOD) to add EPOLLOUT;
  * on a write edge: send() until the buffer is empty or EAGAIN; once empty,
    epoll_ctl(MOD) back to EPOLLIN only.

So it pays two epoll_ctl calls, an extra epoll_wait wake-up and one wasted
recv() (the one that returns EAGAIN) per message: that is the point of the
comparison (see doc/DESIGN.md §2).

Beyond the tutorial it is hardened so that a benchmark cannot crash it:
binary-safe (bytes only, never decoded), resets/EPIPE close just that
connection, EOF from the client finishes sending what is owed and then
shuts down our side (a half-closed client still receives its echo), fds are
closed only at the end of an event batch (so accept() cannot reuse a number
that a later event in the same batch still refers to), and EMFILE/ENFILE on
accept() is retried on a timer instead of hanging the edge-triggered
listener.

Usage: py-epoll-echo.py [--host 127.0.0.1] [--port 0]
Prints "py-epoll-echo: listening on HOST:PORT" once the listener is ready.
"""

import argparse
import errno
import select
import signal
import socket
import sys

RECV_SIZE = 64 * 1024
IN = select.EPOLLIN | select.EPOLLET
INOUT = select.EPOLLIN | select.EPOLLOUT | select.EPOLLET
ACCEPT_RETRY_S = 0.1


class Conn:
    __slots__ = ("sock", "fd", "out", "eof", "dead", "want_out")

    def __init__(self, sock):
        self.sock = sock
        self.fd = sock.fileno()
        self.out = bytearray()
        self.eof = False
        self.dead = False
        self.want_out = False


class Server:
    def __init__(self, host, port):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(4096)
        self.lsock.setblocking(False)
        self.ep = select.epoll()
        self.ep.register(self.lsock.fileno(), IN)
        self.conns = {}
        self.to_close = []
        self.accept_blocked = False

    # -- connection helpers -------------------------------------------------
    def kill(self, c):
        """Unregister now, close at the end of the batch."""
        if c.dead:
            return
        c.dead = True
        try:
            self.ep.unregister(c.fd)
        except OSError:
            pass
        self.conns.pop(c.fd, None)
        self.to_close.append(c)

    def finish(self, c):
        """Client sent EOF and everything owed is sent: half-close, then close."""
        try:
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.kill(c)

    def set_out(self, c, want):
        if c.want_out == want or c.dead:
            return
        try:
            self.ep.modify(c.fd, INOUT if want else IN)
            c.want_out = want
        except OSError:
            self.kill(c)

    # -- event handlers -------------------------------------------------------
    def do_accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except BlockingIOError:
                self.accept_blocked = False
                return
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The ET listener will not signal again for connections
                    # already queued: retry on a timer.
                    self.accept_blocked = True
                    return
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                raise
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = Conn(s)
            self.conns[c.fd] = c
            self.ep.register(c.fd, IN)

    def do_read(self, c):
        while not c.eof:
            try:
                data = c.sock.recv(RECV_SIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError:  # ECONNRESET, ETIMEDOUT, ...
                self.kill(c)
                return
            if not data:
                c.eof = True
                break
            c.out += data
        if c.out:
            self.set_out(c, True)
        elif c.eof:
            self.finish(c)

    def do_write(self, c):
        while c.out:
            try:
                n = c.sock.send(c.out)
            except BlockingIOError:
                return  # keep EPOLLOUT, wait for the next edge
            except InterruptedError:
                continue
            except OSError:  # EPIPE, ECONNRESET
                self.kill(c)
                return
            del c.out[:n]
        if c.eof:
            self.finish(c)
        else:
            self.set_out(c, False)

    def run(self):
        lfd = self.lsock.fileno()
        while True:
            timeout = ACCEPT_RETRY_S if self.accept_blocked else -1
            events = self.ep.poll(timeout, 1024)
            if self.accept_blocked:
                self.do_accept()
            for fd, ev in events:
                if fd == lfd:
                    self.do_accept()
                    continue
                c = self.conns.get(fd)
                if c is None or c.dead:
                    continue  # stale event for a connection closed in this batch
                if ev & select.EPOLLIN:
                    self.do_read(c)
                if not c.dead and ev & select.EPOLLOUT:
                    self.do_write(c)
                if not c.dead and ev & (select.EPOLLERR | select.EPOLLHUP):
                    # HUP: both directions shut; ERR: e.g. reset. Whatever
                    # could be read was read above.
                    self.kill(c)
            for c in self.to_close:
                c.sock.close()
            self.to_close.clear()


def main():
    ap = argparse.ArgumentParser(
        description="Edge-triggered epoll TCP echo server (classic tutorial style, hardened).")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0, help="port to bind, 0 picks a free one (default 0)")
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        srv = Server(args.host, args.port)
    except OSError as e:
        print(f"py-epoll-echo: bind {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    host, port = srv.lsock.getsockname()[:2]
    print(f"py-epoll-echo: listening on {host}:{port}", flush=True)
    srv.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
