// Builds the peer-comparison table (markdown, on stdout) from the loadtest JSON reports that
// benches/peers/run.sh leaves in target/peers/. Run by run.sh; kept separate so the table can be
// rebuilt from existing results without re-running the load:
//
//   node benches/peers/table.mjs target/peers 9000 10 5 2 gateway fastwebsockets ...
import { existsSync, readFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import os from 'node:os';

const [dir, idleConns, duration, idleDuration, threads, ...servers] = process.argv.slice(2);
if (!dir || servers.length === 0) {
  console.error('usage: node table.mjs OUT_DIR IDLE_CONNS DURATION IDLE_DURATION THREADS SERVER...');
  process.exit(2);
}

const LABELS = {
  gateway: 'gateway echo',
  'gateway-base': 'gateway echo (PEER_GATEWAY_BASE)',
  'tokio-tungstenite-4k': 'tokio-tungstenite (4 KiB)',
  'tokio-tungstenite-defaults': 'tokio-tungstenite (defaults)',
  fastwebsockets: 'fastwebsockets',
  'node-ws': 'Node ws',
  bun: 'Bun',
};

const idleLabel = Number(idleConns).toLocaleString('en-US');
const WORKLOADS = [
  { key: 'echo-100x20', title: 'echo 100 × 20 B, msg/s', field: 'msg_per_s', higherIsBetter: true },
  { key: 'echo-500x16384', title: 'echo 500 × 16 KiB, msg/s', field: 'msg_per_s', higherIsBetter: true },
  {
    key: `idle-${idleConns}`,
    title: `idle RSS bytes per connection at ${idleLabel}`,
    field: 'rss_per_conn_bytes',
    higherIsBetter: false,
  },
];

/** The loadtest report and exit status of one run, or null when it did not run. */
function load(server, workload) {
  const json = `${dir}/${server}-${workload}.json`;
  const rcFile = `${dir}/${server}-${workload}.rc`;
  const rc = existsSync(rcFile) ? Number(readFileSync(rcFile, 'utf8').trim()) : null;
  let report = null;
  if (existsSync(json)) {
    try {
      report = JSON.parse(readFileSync(json, 'utf8'));
    } catch {
      report = null;
    }
  }
  return { rc, report };
}

const notes = [];
function noteFor(text) {
  let i = notes.indexOf(text);
  if (i < 0) {
    notes.push(text);
    i = notes.length - 1;
  }
  return `[${i + 1}]`;
}

function fmtValue(w, v) {
  if (w.field === 'msg_per_s') return Math.round(v).toLocaleString('en-US');
  return Math.round(v).toLocaleString('en-US');
}

/** Value of one cell (number or null) and its text. */
function cell(server, w) {
  const { rc, report } = load(server, w.key);
  if (rc === null && !report) return { value: null, text: 'not run' };
  if (!report) return { value: null, text: `failed ${noteFor(`loadtest exited ${rc} with no report: see ${server}-${w.key}.log`)}` };
  const v = report[w.field];
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    return { value: null, text: `n/a ${noteFor(`report has no numeric ${w.field}: see ${server}-${w.key}.json`)}` };
  }
  let text = fmtValue(w, v);
  const problems = [];
  if (rc !== 0) problems.push(`loadtest exited ${rc}`);
  if (typeof report.connected === 'number' && typeof report.connections === 'number' && report.connected < report.connections) {
    problems.push(`${report.connected}/${report.connections} connected`);
  }
  for (const k of ['lost', 'duplicated', 'out_of_order']) {
    if (typeof report[k] === 'number' && report[k] > 0) problems.push(`${k} ${report[k]}`);
  }
  const errors = report.errors && typeof report.errors === 'object' ? Object.entries(report.errors).filter(([, n]) => n > 0) : [];
  if (errors.length) problems.push(`errors ${errors.map(([k, n]) => `${k}=${n}`).join(', ')}`);
  if (problems.length) text += ` ${noteFor(`${LABELS[server]}, ${w.title}: ${problems.join('; ')}`)}`;
  return { value: v, text };
}

const header = ['workload', ...servers.map((s) => LABELS[s] ?? s)];
const rows = [];
for (const w of WORKLOADS) {
  const cells = servers.map((s) => cell(s, w));
  rows.push([w.title, ...cells.map((c) => c.text)]);
  const gw = servers.includes('gateway') ? cell('gateway', w).value : null;
  rows.push([
    '↳ gateway / peer',
    ...cells.map((c) => (gw !== null && c.value ? `${(gw / c.value).toFixed(2)}×` : '–')),
  ]);
}

// Latency detail for the echo rows (p50 / p99 round trip, ms).
const latRows = [];
for (const w of WORKLOADS.filter((w) => w.field === 'msg_per_s')) {
  latRows.push([
    w.title.replace(', msg/s', ', RTT p50 / p99 ms'),
    ...servers.map((s) => {
      const l = load(s, w.key).report?.latency_ms;
      return l && typeof l.p50 === 'number' && typeof l.p99 === 'number' ? `${l.p50.toFixed(2)} / ${l.p99.toFixed(2)}` : '–';
    }),
  ]);
}

/** Server CPU over one run: { cores, perCpuSecond } from NAME-WORKLOAD.cpu, or null. */
function cpu(server, w) {
  const f = `${dir}/${server}-${w.key}.cpu`;
  if (!existsSync(f)) return null;
  const [ticks, hz, wallMs] = readFileSync(f, 'utf8').trim().split(/\s+/).map(Number);
  if (!(hz > 0 && wallMs > 0)) return null;
  const cpuS = ticks / hz;
  const received = load(server, w.key).report?.messages_received;
  return {
    cores: cpuS / (wallMs / 1000),
    perCpuSecond: typeof received === 'number' && cpuS > 0 ? received / cpuS : null,
  };
}
for (const w of WORKLOADS.filter((w) => w.field === 'msg_per_s')) {
  const name = w.title.replace(', msg/s', '');
  const c = servers.map((s) => cpu(s, w));
  latRows.push([`${name}, server CPU (cores)`, ...c.map((x) => (x ? x.cores.toFixed(2) : '–'))]);
  latRows.push([
    `${name}, msgs per server CPU-second`,
    ...c.map((x) => (x?.perCpuSecond ? Math.round(x.perCpuSecond).toLocaleString('en-US') : '–')),
  ]);
}

function table(head, body) {
  const line = (r) => `| ${r.join(' | ')} |`;
  return [line(head), line(head.map((_, i) => (i === 0 ? '---' : '---:'))), ...body.map(line)].join('\n');
}

function sh(cmd) {
  try {
    return execSync(cmd, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '?';
  }
}

const loadavg = existsSync(`${dir}/loadavg`) ? readFileSync(`${dir}/loadavg`, 'utf8').trim() : '?';
const rev = sh(`git -C "${dir}/../.." rev-parse --short HEAD`);
const dirty = sh(`git -C "${dir}/../.." status --porcelain --untracked-files=no`) ? ' (uncommitted changes)' : '';
const out = [
  '# Peer comparison: gateway echo vs. other WebSocket servers',
  '',
  `${new Date().toISOString()} · ${os.hostname()} · ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}) · ` +
    `Linux ${os.release()} · gateway ${rev}${dirty}`,
  `Each server: ${threads} worker threads / shards (Node ws and Bun: one JS thread). Echo: ${duration} s per ` +
    `workload, closed loop (one message in flight per connection), binary frames. Idle: ${idleLabel} connections ` +
    `held ${idleDuration} s on a fresh server process. Client and server share the same cores. ` +
    `Load average before the first run: ${loadavg}.`,
  '',
  table(header, rows),
  '',
  'Ratio: above 1 the gateway does more msg/s than the peer; for idle memory, below 1 it uses less.',
  '',
  table(['echo detail', ...header.slice(1)], latRows),
  '',
  'Server CPU: user + system time of the server process over the whole loadtest run (connect, ' +
    'measure, close) divided by its wall time; the load generator used the rest of the cores. ' +
    'Messages per server CPU-second is the server-side cost, less sensitive to how the shared cores ' +
    'were split between client and server.',
];
if (notes.length) {
  out.push('', ...notes.map((n, i) => `[${i + 1}] ${n}`));
}
console.log(out.join('\n'));
