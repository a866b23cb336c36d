// Bun.serve WebSocket echo server for the gateway's peer comparison (benches/peers/run.sh).
// Every text and binary message is sent back with its type (Bun sends a string as text and a
// buffer as binary). One JS thread. Prints `listening <host>:<port>` once bound. Needs `bun`.
//
//   bun echo-bun.mjs [--port PORT] [--host HOST]     (PORT 0: any free port)

function parse(argv) {
  const opts = { port: 0, host: '127.0.0.1' };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[++i];
    if (value === undefined) usage(`${flag} needs a value`);
    if (flag === '--port') opts.port = Number(value);
    else if (flag === '--host') opts.host = value;
    else usage(`unknown argument ${flag}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) usage('bad --port');
  return opts;
}

function usage(msg) {
  console.error(`echo-bun: ${msg}\nusage: bun echo-bun.mjs [--port PORT] [--host HOST]`);
  process.exit(2);
}

if (typeof Bun === 'undefined') usage('run this with bun, not node');

const { port, host } = parse(process.argv.slice(2));
const server = Bun.serve({
  port,
  hostname: host,
  fetch(req, srv) {
    if (srv.upgrade(req)) return undefined;
    return new Response('WebSocket upgrade required', { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    idleTimeout: 0,
    message(ws, message) {
      ws.send(message);
    },
  },
});
process.stdout.write(`listening ${server.hostname}:${server.port}\n`);
process.on('SIGTERM', () => process.exit(0));
