// Node `ws` echo server for the gateway's peer comparison (benches/peers/run.sh).
// Every text and binary message is sent back with its type; pings are answered by ws itself.
// One JS thread, as in the published Node numbers. Prints `listening <host>:<port>` once bound.
//
//   node echo-ws.mjs [--port PORT] [--host HOST]     (PORT 0: any free port)
import { WebSocketServer } from 'ws';

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
  console.error(`echo-ws: ${msg}\nusage: node echo-ws.mjs [--port PORT] [--host HOST]`);
  process.exit(2);
}

const { port, host } = parse(process.argv.slice(2));
const wss = new WebSocketServer({ port, host, backlog: 65535, perMessageDeflate: false, clientTracking: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => {
  const a = wss.address();
  process.stdout.write(`listening ${a.address}:${a.port}\n`);
});
wss.on('error', (e) => {
  console.error(`echo-ws: ${e.message}`);
  process.exit(1);
});
process.on('SIGTERM', () => process.exit(0));
