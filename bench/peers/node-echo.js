#!/usr/bin/env node
// node-echo: a Node.js `net` TCP echo server, used as a comparison peer by
// bench/compare. One process, one event loop (libuv, epoll underneath).
//
// socket.pipe(socket) gives correct backpressure: when the kernel send
// buffer is full, write() returns false and the stream pauses reading until
// 'drain'. allowHalfOpen lets a client's FIN finish the echo first: pipe()
// ends our side once everything read has been written back.
//
// Usage: node node-echo.js [--host 127.0.0.1] [--port 0]
// Prints "node-echo: listening on HOST:PORT" once the listener is ready.
'use strict';

const net = require('net');

function usage(code) {
  const text =
    'usage: node node-echo.js [--host HOST] [--port PORT]\n' +
    'TCP echo server (Node.js net, socket.pipe(socket)).\n' +
    '  --host HOST   address to bind (default 127.0.0.1)\n' +
    '  --port PORT   port to bind, 0 picks a free one (default 0)\n' +
    'Prints "node-echo: listening on HOST:PORT" when ready.\n';
  (code === 0 ? process.stdout : process.stderr).write(text);
  process.exit(code);
}

let host = '127.0.0.1';
let port = 0;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const eq = a.indexOf('=');
  const key = eq > 0 ? a.slice(0, eq) : a;
  const val = () => (eq > 0 ? a.slice(eq + 1) : argv[++i]);
  if (key === '-h' || key === '--help') usage(0);
  else if (key === '--host') host = val();
  else if (key === '--port') {
    const v = val();
    port = Number(v);
    if (!/^\d+$/.test(v || '') || port > 65535) {
      process.stderr.write(`node-echo: bad --port ${v}\n`);
      usage(2);
    }
  } else {
    process.stderr.write(`node-echo: unknown argument ${a}\n`);
    usage(2);
  }
}

const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
  sock.setNoDelay(true); // older Node ignores the server option
  // Resets (ECONNRESET, EPIPE) are normal under churn/rst load: drop quietly.
  sock.on('error', () => sock.destroy());
  sock.pipe(sock);
});

server.on('error', (err) => {
  process.stderr.write(`node-echo: ${err.message}\n`);
  process.exit(1);
});

server.listen({ host, port, backlog: 4096 }, () => {
  const a = server.address();
  process.stdout.write(`node-echo: listening on ${a.address}:${a.port}\n`);
});

function shutdown() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
