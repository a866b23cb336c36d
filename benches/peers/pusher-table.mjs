// Builds the Pusher peer-comparison table (markdown, on stdout) from what benches/peers/pusher.sh
// leaves in target/peers-pusher/. Kept separate so the table can be rebuilt without re-running:
//
//   node benches/peers/pusher-table.mjs target/peers-pusher 9000 100 2000 50 10 5 2
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';

const [dir, idleConns, idleChannels, subs, rate, duration, idleDuration, threads] = process.argv.slice(2);
if (!threads) {
  console.error('usage: node pusher-table.mjs OUT_DIR IDLE_CONNS IDLE_CHANNELS SUBS RATE DURATION IDLE_DURATION THREADS');
  process.exit(2);
}

const read = (name) => (existsSync(`${dir}/${name}`) ? readFileSync(`${dir}/${name}`, 'utf8').trim() : null);
const n = (v) => Number(v).toLocaleString('en-US');

/** The run NAME: its report, exit status, and whole-run CPU of its servers. */
function run(name) {
  const text = read(`${name}.json`);
  let report = null;
  try {
    report = text ? JSON.parse(text) : null;
  } catch {
    report = null;
  }
  const rc = read(`${name}.rc`);
  const cpu = read(`${name}.cpu`);
  const redis = read(`${name}.redis-cpu`);
  let cpuS = null;
  if (cpu) {
    const [ticks, hz] = cpu.split(/\s+/).map(Number);
    cpuS = ticks / hz;
  }
  return { name, report, rc: rc === null ? null : Number(rc), cpuS, redisS: redis === null ? null : Number(redis) };
}

const notes = [];
function note(text) {
  let i = notes.indexOf(text);
  if (i < 0) i = notes.push(text) - 1;
  return `[${i + 1}]`;
}

/** Marks a run that did not pass its own checks. */
function flag(r) {
  if (!r.report) return r.rc === null ? '' : ` ${note(`${r.name}: loadtest exited ${r.rc} with no report, see ${r.name}.log`)}`;
  const p = [];
  if (r.rc !== 0) p.push(`loadtest exited ${r.rc}`);
  if (r.report.connected < r.report.connections) p.push(`${r.report.connected} of ${r.report.connections} connected`);
  const e = Object.entries(r.report.errors || {});
  if (e.length) p.push(`errors: ${e.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  return p.length ? ` ${note(`${r.name}: ${p.join('; ')}`)}` : '';
}

const cell = (r, f) => (r.report ? f(r.report, r) : r.rc === null ? 'not run' : 'failed') + flag(r);
const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}×` : '—');
const value = (r, f) => (r.report ? f(r.report, r) : null);

const gwP = { idle: run('gateway-pusher-idle'), fanout: run('gateway-pusher-fanout'), cluster: run('gateway-pusher-cluster') };
const gwV = { idle: run('gateway-v1-idle'), fanout: run('gateway-v1-fanout') };
const sock = { idle: run('sockudo-idle'), fanout: run('sockudo-fanout'), cluster: run('sockudo-cluster') };

const mem = (x) => x.rss_per_conn_bytes;
const rate1 = (x) => x.msg_per_s;
const perCpu = (x) => x.received_per_server_cpu_s;
const lat = (x) => `${x.latency_ms.p50.toFixed(1)} / ${x.latency_ms.p99.toFixed(1)}`;
const ldo = (x) => `${x.lost} / ${x.duplicated} / ${x.out_of_order}`;
const withRedis = (x, r) => (r.redisS !== null && x.server_cpu_s ? x.messages_received / (x.server_cpu_s + r.redisS) : null);

const rows = [];
const row = (title, f, better, opts = {}) => {
  const cells = [gwP, gwV, sock].map((s) => {
    const r = s[opts.key];
    if (!r) return '—';
    return cell(r, (x, rr) => {
      const v = f(x, rr);
      return v === null || v === undefined ? 'n/a' : typeof v === 'number' ? n(Math.round(v)) : v;
    });
  });
  let q = '';
  if (better) {
    const a = value(gwP[opts.key], f);
    const b = value(sock[opts.key], f);
    q = typeof a === 'number' && typeof b === 'number' ? ratio(a, b) : '—';
  }
  rows.push(`| ${title} | ${cells.join(' | ')} | ${q} |`);
};

const idleLabel = n(idleConns);
row(`idle: RSS bytes per subscribed connection at ${idleLabel}`, mem, true, { key: 'idle' });
row(`fan-out, 1 node: deliveries/s`, rate1, true, { key: 'fanout' });
row(`fan-out, 1 node: server CPU s while measuring`, (x) => x.server_cpu_s?.toFixed(2), false, { key: 'fanout' });
row(`fan-out, 1 node: **deliveries per server CPU-second**`, perCpu, true, { key: 'fanout' });
row(`fan-out, 1 node: latency p50 / p99 ms`, lat, false, { key: 'fanout' });
row(`fan-out, 1 node: lost / duplicated / reordered`, ldo, false, { key: 'fanout' });
row(`2 nodes + Redis: deliveries/s`, rate1, true, { key: 'cluster' });
row(`2 nodes + Redis: node CPU s (A + B) while measuring`, (x) => x.server_cpu_s?.toFixed(2), false, { key: 'cluster' });
row(`2 nodes + Redis: **deliveries per node CPU-second**`, perCpu, true, { key: 'cluster' });
row(`2 nodes + Redis: Redis CPU s (whole run)`, (x, r) => r.redisS?.toFixed(2), false, { key: 'cluster' });
row(`2 nodes + Redis: deliveries per (nodes + Redis) CPU-second`, withRedis, true, { key: 'cluster' });
row(`2 nodes + Redis: latency p50 / p99 ms`, lat, false, { key: 'cluster' });
row(`2 nodes + Redis: lost / duplicated / reordered`, ldo, false, { key: 'cluster' });

const out = [];
const versions = (read('versions') || '').split('\n').filter(Boolean).join(', ');
out.push(`Pusher peers, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${os.cpus().length} CPUs, load average before the first run ${read('loadavg') ?? '?'}; ${versions}.`);
out.push(`Idle: ${idleLabel} connections subscribed over ${idleChannels} public channels, held ${idleDuration} s, fresh server process. Fan-out: ${n(subs)} subscribers of one channel, ${rate} HTTP API publishes/s for ${duration} s (signed, one request per connection, sequential). Single node: ${threads} shards / worker threads; 2 nodes: 1 each, subscribers on B, publishes to A.`);
out.push('');
out.push('| workload | gateway (Pusher) | gateway (v1) | Sockudo | gateway Pusher / Sockudo |');
out.push('| --- | ---: | ---: | ---: | ---: |');
out.push(...rows);
out.push('');

const goals = [];
const mg = value(gwP.idle, mem), ms = value(sock.idle, mem), mv = value(gwV.idle, mem);
if (mg && ms) goals.push(`memory per connection: gateway ${(mg / ms).toFixed(2)}× Sockudo's (goal ≤ 0.33×): ${mg / ms <= 1 / 3 ? 'met' : 'NOT met'}`);
const cg = value(gwP.fanout, perCpu), cs = value(sock.fanout, perCpu);
if (cg && cs) goals.push(`deliveries per server CPU-second, 1 node: gateway ${(cg / cs).toFixed(2)}× Sockudo's (goal ≥ 2×): ${cg / cs >= 2 ? 'met' : 'NOT met'}`);
const kg = value(gwP.cluster, perCpu), ks = value(sock.cluster, perCpu);
if (kg && ks) goals.push(`deliveries per node CPU-second, 2 nodes: gateway ${(kg / ks).toFixed(2)}× Sockudo's (goal ≥ 2×): ${kg / ks >= 2 ? 'met' : 'NOT met'}`);
if (mg && mv) goals.push(`a Pusher connection costs ${n(Math.round(mg))} B against ${n(Math.round(mv))} B for v1 (goal: no more): ${mg <= mv * 1.02 ? 'met' : 'NOT met'} (within the ~2% noise of the idle figure)`);
for (const g of goals) out.push(`- ${g}`);
if (notes.length) {
  out.push('');
  notes.forEach((t, i) => out.push(`[${i + 1}] ${t}`));
}
console.log(out.join('\n'));
