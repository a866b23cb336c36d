#!/usr/bin/env node
/*
 * Pusher protocol 7 conformance driver for the gateway.
 *
 * Drives the gateway with the REAL registry packages, pinned in package.json:
 *   - pusher-js 8 (its Node build, require('pusher-js')) as the WebSocket client,
 *   - pusher 5 (the server SDK) for the signed HTTP API and for channel authorization,
 *   - laravel-echo 2 on top of pusher-js.
 *
 * Run:   node conformance.js <case> [<case>...]
 * Env:   GATEWAY_HOST (default 127.0.0.1), GATEWAY_PORT (WebSocket and HTTP API share it),
 *        PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET, optional GATEWAY_PORT_B (second node, for
 *        cross-node cases; accepted, unused so far), CONFORMANCE_TIMEOUT_MS (default 5000),
 *        CONFORMANCE_DEBUG=1 (pusher-js log to stderr).
 * Out:   one stdout line per case, `ok <case>[ detail]` or `FAIL <case>: <reason>`; exit 0 only if
 *        every case passed. Every wait has a timeout, so a hang is a FAIL, and the process always exits.
 *
 * Cases: connect, public, private_ok, private_bad, batch, exclusion, unknown_key,
 *        bad_signature_http, echo_public (see the CASES table at the bottom).
 */
'use strict';

const crypto = require('crypto');
const util = require('util');
const PusherClient = require('pusher-js'); // resolves to dist/node/pusher.js
const PusherServer = require('pusher');

const TIMEOUT_MS = Number(process.env.CONFORMANCE_TIMEOUT_MS) || 5000;
const QUIET_MS = 500; // how long "nothing arrives" is watched for

const CONFIG = {
  host: process.env.GATEWAY_HOST || '127.0.0.1',
  port: Number(process.env.GATEWAY_PORT),
  portB: process.env.GATEWAY_PORT_B ? Number(process.env.GATEWAY_PORT_B) : null,
  appId: process.env.PUSHER_APP_ID,
  key: process.env.PUSHER_KEY,
  secret: process.env.PUSHER_SECRET,
};

if (process.env.CONFORMANCE_DEBUG) {
  PusherClient.log = (msg) => process.stderr.write(`[pusher-js] ${msg}\n`);
}

// ---------------------------------------------------------------- helpers

function configError() {
  const missing = ['GATEWAY_PORT', 'PUSHER_APP_ID', 'PUSHER_KEY', 'PUSHER_SECRET'].filter(
    (name) => !process.env[name]
  );
  if (missing.length) return `missing env ${missing.join(', ')}`;
  if (!Number.isInteger(CONFIG.port) || CONFIG.port <= 0) return `bad GATEWAY_PORT ${process.env.GATEWAY_PORT}`;
  return null;
}

function randomName(prefix) {
  return `${prefix}${crypto.randomBytes(6).toString('hex')}`;
}

function show(value) {
  return util.inspect(value, { depth: 5, breakLength: Infinity });
}

/** Rejects with "timeout after N ms waiting for <what>" unless `promise` settles first. */
function withTimeout(promise, what, ms = TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms waiting for ${what}`)), ms);
  });
  return handled(Promise.race([promise, timeout]).finally(() => clearTimeout(timer)));
}

/**
 * Marks a promise as handled, so one that a case never awaits (because an earlier step threw) cannot
 * end the process as an unhandled rejection; awaiting it still throws.
 */
function handled(promise) {
  promise.catch(() => {});
  return promise;
}

/**
 * Waits for `event` on a pusher-js emitter (client, channel or connection); resolves with its data.
 * `failOn` maps other event names to a reason: if one of those fires first, the wait rejects.
 */
function waitFor(emitter, event, what, failOn = {}, ms = TIMEOUT_MS) {
  const bound = [];
  const on = (name, fn) => {
    emitter.bind(name, fn);
    bound.push([name, fn]);
  };
  const result = new Promise((resolve, reject) => {
    on(event, (data) => resolve(data));
    for (const [name, reason] of Object.entries(failOn)) {
      on(name, (data) => reject(new Error(`${reason}: ${show(data)}`)));
    }
  });
  return handled(withTimeout(result, what, ms).finally(() => bound.forEach(([name, fn]) => emitter.unbind(name, fn))));
}

/** Resolves if `event` does NOT fire on `emitter` within `ms`; rejects if it does. */
function expectNothing(emitter, event, what, ms = QUIET_MS) {
  return handled(new Promise((resolve, reject) => {
    const fn = (data) => {
      clearTimeout(timer);
      emitter.unbind(event, fn);
      reject(new Error(`${what}: got ${show(data)}`));
    };
    const timer = setTimeout(() => {
      emitter.unbind(event, fn);
      resolve();
    }, ms);
    emitter.bind(event, fn);
  }));
}

function expectEqual(actual, expected, what) {
  if (!util.isDeepStrictEqual(actual, expected)) {
    throw new Error(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

/** Server SDK instance; `secret` defaults to the right one. */
function sdk(secret = CONFIG.secret) {
  return new PusherServer({
    appId: CONFIG.appId,
    key: CONFIG.key,
    secret,
    host: CONFIG.host,
    port: String(CONFIG.port),
    useTLS: false,
    timeout: TIMEOUT_MS,
  });
}

const openClients = [];

/**
 * A pusher-js client configured for the gateway. `signer` is the SDK instance whose secret signs
 * private/presence channel authorizations. Records every connection error in `client.errors`.
 */
function newClient({ key = CONFIG.key, signer = sdk(), port = CONFIG.port } = {}) {
  const client = new PusherClient(key, {
    wsHost: CONFIG.host,
    wsPort: port,
    wssPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'mt1',
    channelAuthorization: {
      customHandler: (params, callback) => {
        try {
          callback(null, signer.authorizeChannel(params.socketId, params.channelName));
        } catch (err) {
          callback(err, null);
        }
      },
    },
  });
  client.errors = [];
  client.connection.bind('error', (err) => client.errors.push(err));
  openClients.push(client);
  return client;
}

function closeAllClients() {
  while (openClients.length) {
    try {
      openClients.pop().disconnect();
    } catch (_) {
      // already gone
    }
  }
}

/** Resolves once `client` is in state 'connected'; rejects early if pusher-js gives up. */
async function connected(client) {
  if (client.connection.state === 'connected') return client;
  try {
    await waitFor(client.connection, 'connected', "connection state 'connected'", {
      failed: "connection went to state 'failed'",
      disconnected: "connection went to state 'disconnected'",
    });
  } catch (err) {
    const last = client.errors.length ? `; last error ${show(client.errors[client.errors.length - 1])}` : '';
    throw new Error(`${err.message} (state=${client.connection.state}${last})`);
  }
  return client;
}

/** Subscribes `client` to `name`, resolving with the channel once the gateway confirms it. */
async function subscribed(client, name) {
  const channel = client.subscribe(name);
  await waitFor(channel, 'pusher:subscription_succeeded', `pusher:subscription_succeeded on ${name}`, {
    'pusher:subscription_error': `subscription to ${name} failed`,
  });
  return channel;
}

function expectStatus(response, status, what) {
  if (!response || response.status !== status) {
    throw new Error(`${what}: expected HTTP ${status}, got ${response && response.status}`);
  }
}

// ---------------------------------------------------------------- cases

async function caseConnect() {
  const client = await connected(newClient());
  expectEqual(client.connection.state, 'connected', 'connection.state');
  const socketId = client.connection.socket_id;
  if (!/^\d+\.\d+$/.test(String(socketId))) throw new Error(`socket_id ${show(socketId)} does not match /^\\d+\\.\\d+$/`);
  return `socket_id=${socketId}`;
}

async function casePublic() {
  const client = await connected(newClient());
  const name = randomName('public-');
  const channel = await subscribed(client, name);
  const received = waitFor(channel, 'greet', `event 'greet' on ${name}`);
  const response = await sdk().trigger(name, 'greet', { hello: 'world', n: 1 });
  expectStatus(response, 200, 'trigger');
  expectEqual(await received, { hello: 'world', n: 1 }, "data of 'greet'");
}

async function casePrivateOk() {
  const client = await connected(newClient());
  const name = randomName('private-');
  const channel = await subscribed(client, name);
  const payload = { secret: crypto.randomBytes(4).toString('hex') };
  const received = waitFor(channel, 'whisper', `event 'whisper' on ${name}`);
  expectStatus(await sdk().trigger(name, 'whisper', payload), 200, 'trigger');
  expectEqual(await received, payload, "data of 'whisper'");
}

async function casePrivateBad() {
  const client = await connected(newClient({ signer: sdk('wrong-secret') }));
  const name = randomName('private-');
  const channel = client.subscribe(name);
  // pusher-js emits 'pusher:subscription_error' on the channel only for a frame that names the channel;
  // a connection-level pusher:error (what hosted Pusher sends) is reported as such, to tell the two apart.
  const connectionError = handled(
    waitFor(client, 'pusher:error', 'pusher:error').then((data) => {
      throw new Error(`got a connection-level pusher:error instead of a channel pusher:subscription_error: ${show(data)}`);
    })
  );
  const error = await Promise.race([
    waitFor(channel, 'pusher:subscription_error', `pusher:subscription_error on ${name}`, {
      'pusher:subscription_succeeded': 'subscription with a wrongly signed auth succeeded',
    }),
    connectionError,
  ]);
  const arrivals = handled(Promise.all([
    expectNothing(channel, 'pusher:subscription_succeeded', 'subscription_succeeded after subscription_error'),
    expectNothing(channel, 'leak', `event delivered to a rejected subscription of ${name}`),
  ]));
  await sdk().trigger(name, 'leak', { should: 'not arrive' });
  await arrivals;
  return error && error.status !== undefined ? `status=${error.status}` : 'status=absent';
}

async function caseBatch() {
  const client = await connected(newClient());
  const [a, b] = [randomName('public-'), randomName('public-')];
  const [chA, chB] = await Promise.all([subscribed(client, a), subscribed(client, b)]);
  const received = handled(
    Promise.all([waitFor(chA, 'e1', `event 'e1' on ${a}`), waitFor(chB, 'e2', `event 'e2' on ${b}`)])
  );
  const response = await sdk().triggerBatch([
    { channel: a, name: 'e1', data: { i: 1 } },
    { channel: b, name: 'e2', data: { i: 2 } },
  ]);
  expectStatus(response, 200, 'triggerBatch');
  const [d1, d2] = await received;
  expectEqual(d1, { i: 1 }, "data of 'e1'");
  expectEqual(d2, { i: 2 }, "data of 'e2'");
}

async function caseExclusion() {
  const [a, b] = await Promise.all([connected(newClient()), connected(newClient())]);
  const name = randomName('public-');
  const [chA, chB] = await Promise.all([subscribed(a, name), subscribed(b, name)]);
  const socketId = a.connection.socket_id;
  const checks = handled(
    Promise.all([
      waitFor(chB, 'ping', `event 'ping' on B`),
      expectNothing(chA, 'ping', `event delivered to the excluded socket ${socketId}`),
    ])
  );
  const response = await sdk().trigger(name, 'ping', { from: 'sdk' }, { socket_id: socketId });
  expectStatus(response, 200, 'trigger');
  const [data] = await checks;
  expectEqual(data, { from: 'sdk' }, "data of 'ping' on B");
}

async function caseUnknownKey() {
  // pusher-js 8 (dist/node/pusher.js): a `pusher:error` with code 4001 as the handshake reply (or a close
  // with code 4001) maps to action 'refused' (4001..4099). The connection manager then emits 'error'
  // {type:'WebSocketError', error:{type:'PusherError', data:{code:4001, message}}} and calls
  // disconnect(): the state goes to 'disconnected' (never 'failed', which pusher-js only uses when no
  // transport is supported) and it does not retry. After a connection_established it would instead emit
  // {type:'PusherError', data:{code,...}} directly. Both shapes are accepted below.
  const client = newClient({ key: 'no-such-key' });
  const states = [client.connection.state]; // pusher-js starts connecting in its constructor
  client.connection.bind('state_change', (s) => states.push(s.current));
  try {
    await waitFor(client.connection, 'disconnected', "state 'disconnected' after the refusal", {
      connected: 'connected with an unknown key',
      failed: "state 'failed' (pusher-js uses 'disconnected' for refused connections)",
    });
  } catch (err) {
    throw new Error(`${err.message} (states ${states.join('>')}; errors ${show(client.errors)})`);
  }
  const codes = client.errors
    .map((e) => (e && e.data && e.data.code) || (e && e.error && e.error.data && e.error.data.code))
    .filter((c) => c !== undefined);
  if (!codes.includes(4001)) throw new Error(`no error with code 4001; errors ${show(client.errors)}`);
  await expectNothing(client.connection, 'connecting', 'pusher-js reconnected after a fatal 4001');
  expectEqual(client.connection.state, 'disconnected', 'final state');
  return `code=4001 state=${client.connection.state} states=${states.join('>')}`;
}

async function caseBadSignatureHttp() {
  let response;
  try {
    response = await sdk('wrong-secret').trigger(randomName('public-'), 'nope', { x: 1 });
  } catch (err) {
    if (err.status === 401) return 'status=401';
    const cause = err.error && err.error.message ? ` (${err.error.message})` : '';
    throw new Error(`expected status 401, got ${err.status === undefined ? `${err.message}${cause}` : err.status}`);
  }
  throw new Error(`trigger signed with the wrong secret succeeded with HTTP ${response && response.status}`);
}

async function caseEchoPublic() {
  // laravel-echo 2.x ships "type":"module" and its "require" export (dist/echo.common.js) is CJS code in a
  // .js file, so require('laravel-echo') throws; the ESM build loads fine through import().
  const { default: Echo } = await import('laravel-echo');
  const client = await connected(newClient());
  const echo = new Echo({ broadcaster: 'pusher', client, withoutInterceptors: true });
  const name = randomName('orders-');
  const channel = echo.channel(name);
  const received = withTimeout(
    new Promise((resolve) => channel.listen('.order.shipped', resolve)),
    `Echo listener '.order.shipped' on ${name}`
  );
  await withTimeout(new Promise((resolve) => channel.subscribed(resolve)), `Echo subscribed() on ${name}`);
  const payload = { order: 42, carrier: 'ups' };
  expectStatus(await sdk().trigger(name, 'order.shipped', payload), 200, 'trigger');
  expectEqual(await received, payload, "data of 'order.shipped'");
  if (echo.socketId() !== client.connection.socket_id) throw new Error('echo.socketId() differs from pusher-js');
}

const CASES = {
  connect: caseConnect,
  public: casePublic,
  private_ok: casePrivateOk,
  private_bad: casePrivateBad,
  batch: caseBatch,
  exclusion: caseExclusion,
  unknown_key: caseUnknownKey,
  bad_signature_http: caseBadSignatureHttp,
  echo_public: caseEchoPublic,
};

// ---------------------------------------------------------------- runner

let current = null;

function report(name, error, detail) {
  const line = error
    ? `FAIL ${name}: ${String(error && error.message ? error.message : error).replace(/\s+/g, ' ')}`
    : `ok ${name}${detail ? ` ${detail}` : ''}`;
  process.stdout.write(`${line}\n`);
}

process.on('uncaughtException', (err) => {
  report(current || 'driver', `uncaught exception: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  // Cases await every promise they assert on, so a stray one only needs a trace, not a verdict.
  process.stderr.write(`conformance.js: unhandled rejection during ${current || 'driver'}: ${err && err.message ? err.message : err}\n`);
});

async function main(names) {
  if (!names.length) {
    process.stderr.write(`usage: node conformance.js <case> [<case>...]\ncases: ${Object.keys(CASES).join(' ')}\n`);
    return 2;
  }
  const badConfig = configError();
  let failures = 0;
  for (const name of names) {
    current = name;
    let error = null;
    let detail;
    if (badConfig) error = badConfig;
    else if (!Object.prototype.hasOwnProperty.call(CASES, name)) error = `unknown case (known: ${Object.keys(CASES).join(' ')})`;
    else {
      try {
        // Safety net: a case is made of waits that each time out, but never let one run unbounded.
        detail = await withTimeout(CASES[name](), `case ${name} to finish`, 4 * TIMEOUT_MS);
      } catch (err) {
        error = err;
      }
    }
    closeAllClients();
    if (error) failures += 1;
    report(name, error, detail);
  }
  current = null;
  return failures ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    closeAllClients();
    process.exit(code);
  },
  (err) => {
    report('driver', err);
    process.exit(1);
  }
);
