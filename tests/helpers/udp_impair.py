#!/usr/bin/env python3
"""udp-impair: a UDP relay for tests that damages chosen echoload datagrams.

It sits between echoload (--proto udp) and a real UDP echo server: every
datagram from a client goes to the server unchanged, from a relay socket of
that client's own (so the server sees one source per flow), and every answer
goes back to the client, except those picked out by flow and sequence number
in echoload's header (flow u32, size u32, seq u64, send time u64; host byte
order, little-endian here), which are damaged on the way back:

  --drop FLOW:SEQ[,SEQ...]     never returned
  --dup FLOW:SEQ[,SEQ...]      returned twice (--copies N: N + 1 times, in a burst)
  --corrupt FLOW:SEQ[,...]     returned with its last byte flipped (XOR 0xff)
  --swap FLOW:SEQ[,...]        held until the flow's next answer, which goes
                               back first (one reordered datagram per entry);
                               released alone after 1 s if none comes
  --delay FLOW:SEQ[,...]       returned --delay-s seconds late (default 0.5)

Each option may be repeated. The picks are explicit, so a run is exactly
reproducible. One thread and a selector; stdlib only.

Usage: udp_impair.py --upstream HOST:PORT [--bind 127.0.0.1] [OPTIONS]
Prints "udp-impair: listening on HOST:PORT" once bound. On SIGTERM/SIGINT it
prints one JSON object of what it did ({"forwarded":..,"returned":..,
"dropped":..,"duplicated":..,"corrupted":..,"swapped":..,"delayed":..}) on
stdout and exits 0.
"""

import argparse
import heapq
import json
import selectors
import signal
import socket
import struct
import sys
import time

HDR = struct.Struct("<IIQQ")
MAX_DATAGRAM = 65535
SWAP_HOLD_S = 1.0


def picks(values):
    out = set()
    for v in values:
        flow, _, seqs = v.partition(":")
        if not seqs:
            raise argparse.ArgumentTypeError(f"{v!r}: expected FLOW:SEQ[,SEQ...]")
        for s in seqs.split(","):
            out.add((int(flow), int(s)))
    return out


def addr_type(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Relay:
    def __init__(self, args):
        self.up = args.upstream
        fam = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
        self.fam = socket.AF_INET6 if ":" in self.up[0] else socket.AF_INET
        self.front = socket.socket(fam, socket.SOCK_DGRAM)
        self.front.bind((args.bind, 0))
        self.front.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.front, selectors.EVENT_READ, None)
        self.clients = {}       # client address -> upstream socket
        self.drop = picks(args.drop)
        self.dup = picks(args.dup)
        self.corrupt = picks(args.corrupt)
        self.swap = picks(args.swap)
        self.delay = picks(args.delay)
        self.delay_s = args.delay_s
        self.copies = args.copies
        self.held = {}          # flow -> (deadline, client, datagram) held by --swap
        self.timers = []        # (due, n, client, datagram) delayed by --delay
        self.n = 0
        self.stats = dict.fromkeys(("forwarded", "returned", "dropped", "duplicated",
                                    "corrupted", "swapped", "delayed"), 0)

    def send_back(self, client, data):
        try:
            self.front.sendto(data, client)
            self.stats["returned"] += 1
        except OSError:
            pass  # the client went away: a test sees it as loss

    def from_client(self):
        while True:
            try:
                data, client = self.front.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return
            up = self.clients.get(client)
            if up is None:
                up = socket.socket(self.fam, socket.SOCK_DGRAM)
                up.connect(self.up)
                up.setblocking(False)
                self.clients[client] = up
                self.sel.register(up, selectors.EVENT_READ, client)
            try:
                up.send(data)
                self.stats["forwarded"] += 1
            except OSError:
                pass

    def from_server(self, up, client):
        while True:
            try:
                data = up.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError:
                return  # ICMP error from the server side: nothing to relay
            key = HDR.unpack_from(data)[::2] if len(data) >= HDR.size else None
            flow = key[0] if key else None
            if key in self.drop:
                self.stats["dropped"] += 1
                continue
            if key in self.corrupt:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
                self.stats["corrupted"] += 1
            if key in self.delay:
                self.n += 1
                heapq.heappush(self.timers, (time.monotonic() + self.delay_s, self.n,
                                             client, data))
                self.stats["delayed"] += 1
                continue
            if key in self.swap and flow not in self.held:
                self.held[flow] = (time.monotonic() + SWAP_HOLD_S, client, data)
                continue
            self.send_back(client, data)
            if key in self.dup:
                for _ in range(self.copies):
                    self.send_back(client, data)
                    self.stats["duplicated"] += 1
            if flow in self.held:
                _, hclient, hdata = self.held.pop(flow)
                self.send_back(hclient, hdata)
                self.stats["swapped"] += 1

    def expire(self, now):
        while self.timers and self.timers[0][0] <= now:
            _, _, client, data = heapq.heappop(self.timers)
            self.send_back(client, data)
        for flow, (due, client, data) in list(self.held.items()):
            if due <= now:
                del self.held[flow]
                self.send_back(client, data)

    def run(self):
        while True:
            now = time.monotonic()
            self.expire(now)
            dues = [t[0] for t in self.timers[:1]] + [h[0] for h in self.held.values()]
            timeout = max(0.0, min(dues) - now) if dues else None
            for key, _ in self.sel.select(timeout):
                if key.data is None:
                    self.from_client()
                else:
                    self.from_server(key.fileobj, key.data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", type=addr_type, required=True, metavar="HOST:PORT")
    ap.add_argument("--bind", default="127.0.0.1")
    for name in ("drop", "dup", "corrupt", "swap", "delay"):
        ap.add_argument("--" + name, action="append", default=[], metavar="FLOW:SEQ,...")
    ap.add_argument("--delay-s", type=float, default=0.5)
    ap.add_argument("--copies", type=int, default=1)
    args = ap.parse_args()
    try:
        relay = Relay(args)
    except (argparse.ArgumentTypeError, ValueError) as e:
        ap.error(str(e))

    def on_signal(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host, port = relay.front.getsockname()[:2]
    print(f"udp-impair: listening on {host}:{port}", flush=True)
    try:
        relay.run()
    finally:
        print(json.dumps(relay.stats), flush=True)


if __name__ == "__main__":
    sys.exit(main())
