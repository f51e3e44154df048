#!/usr/bin/env python3
"""py-udp-echo: UDP echo server in the classic tutorial style.

A comparison peer for bench/compare's UDP cases: one process, one thread,
one blocking socket, and the loop every tutorial shows:

    while True:
        data, addr = sock.recvfrom(65535)
        sock.sendto(data, addr)

So it pays one recvfrom() and one sendto() system call per datagram, plus
the interpreter around them: that is the point of the comparison.

Beyond the tutorial it is hardened so that a benchmark cannot crash it: an
error on sendto() (the client's port went away: ECONNREFUSED from an earlier
ICMP error; a full buffer: ENOBUFS) drops that datagram and carries on, and
datagrams from source port 0 or the classic loop ports (7 echo, 9 discard,
13 daytime, 19 chargen, 37 time) are not answered, as BSD inetd does, so two
echo-type services cannot be made to ping-pong forever.

Usage: py-udp-echo.py [--host 127.0.0.1] [--port 0]
Prints "py-udp-echo: listening on HOST:PORT" once the socket is bound.
SIGTERM/SIGINT: exit 0.
"""

import argparse
import signal
import socket
import sys

MAX_DATAGRAM = 65535
LOOP_PORTS = frozenset((0, 7, 9, 13, 19, 37))


def main():
    ap = argparse.ArgumentParser(
        description="UDP echo server (classic recvfrom/sendto loop, hardened).")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=0,
                    help="port to bind, 0 picks a free one (default 0)")
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        print(f"py-udp-echo: bind {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    print(f"py-udp-echo: listening on {host}:{port}", flush=True)
    while True:
        try:
            data, addr = sock.recvfrom(MAX_DATAGRAM)
        except InterruptedError:
            continue
        except OSError:
            continue  # an ICMP error queued by an earlier sendto(): not fatal
        if addr[1] in LOOP_PORTS:
            continue
        try:
            sock.sendto(data, addr)
        except OSError:
            pass  # that client is gone or the buffer is full: drop it


if __name__ == "__main__":
    sys.exit(main())
