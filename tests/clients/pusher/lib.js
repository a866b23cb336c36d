/*
 * Helpers for conformance.js: configuration, timed waits, and pusher-js / server SDK factories.
 * Every wait here has a timeout, so a case built from them cannot hang.
 */
'use strict';

const crypto = require('crypto');
const util = require('util');
const PusherClient = require('pusher-js'); // resolves to dist/node/pusher.js
const PusherServer = require('pusher');

const TIMEOUT_MS = Number(process.env.CONFORMANCE_TIMEOUT_MS) || 5000;
const QUIET_MS = 500; // how long "nothing arrives" is watched for
const DEBUG = Boolean(process.env.CONFORMANCE_DEBUG);
const FRAMES_KEPT = 50; // per client, for failure messages

const CONFIG = {
  host: process.env.GATEWAY_HOST || '127.0.0.1',
  port: Number(process.env.GATEWAY_PORT),
  portB: process.env.GATEWAY_PORT_B ? Number(process.env.GATEWAY_PORT_B) : null,
  appId: process.env.PUSHER_APP_ID,
  key: process.env.PUSHER_KEY,
  secret: process.env.PUSHER_SECRET,
};

if (DEBUG) {
  PusherClient.log = (msg) => process.stderr.write(`[pusher-js] ${msg}\n`);
}

// ---------------------------------------------------------------- plumbing

function configError() {
  const missing = ['GATEWAY_PORT', 'PUSHER_APP_ID', 'PUSHER_KEY', 'PUSHER_SECRET'].filter(
    (name) => !process.env[name]
  );
  if (missing.length) return `missing env ${missing.join(', ')}`;
  if (!Number.isInteger(CONFIG.port) || CONFIG.port <= 0) return `bad GATEWAY_PORT ${process.env.GATEWAY_PORT}`;
  return null;
}

/** The second node's port, for cross-node cases; throws a clear reason when there is none. */
function portB() {
  if (!process.env.GATEWAY_PORT_B) throw new Error('GATEWAY_PORT_B is unset: this cross-node case needs a second node');
  if (!Number.isInteger(CONFIG.portB) || CONFIG.portB <= 0) throw new Error(`bad GATEWAY_PORT_B ${process.env.GATEWAY_PORT_B}`);
  return CONFIG.portB;
}

function randomName(prefix) {
  return `${prefix}${crypto.randomBytes(6).toString('hex')}`;
}

function show(value) {
  return util.inspect(value, { depth: 5, breakLength: Infinity });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
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

/**
 * Records calls of its `fn` (each as the array of arguments, so a pusher-js `metadata` second argument
 * is kept); `atLeast(n, what)` waits until n calls have arrived. For callbacks such as Echo's joining().
 */
function recorder() {
  const items = [];
  const waiters = [];
  const fn = (...args) => {
    items.push(args);
    for (const w of waiters.filter((w) => items.length >= w.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(items.slice());
    }
  };
  return {
    fn,
    items,
    /** First arguments only (the event data). */
    data: () => items.map((args) => args[0]),
    atLeast(n, what, ms = TIMEOUT_MS) {
      if (items.length >= n) return Promise.resolve(items.slice());
      return withTimeout(new Promise((resolve) => waiters.push({ n, resolve })), what, ms);
    },
  };
}

/** A recorder bound to `event` on a pusher-js emitter; `stop()` unbinds it. */
function collect(emitter, event) {
  const rec = recorder();
  emitter.bind(event, rec.fn);
  rec.stop = () => emitter.unbind(event, rec.fn);
  return rec;
}

function expectEqual(actual, expected, what) {
  if (!util.isDeepStrictEqual(actual, expected)) {
    throw new Error(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

function expectStatus(response, status, what) {
  if (!response || response.status !== status) {
    throw new Error(`${what}: expected HTTP ${status}, got ${response && response.status}`);
  }
}

// ---------------------------------------------------------------- server SDK

/** Server SDK instance; `secret` defaults to the right one, `port` to node A's. */
function sdk(secret = CONFIG.secret, port = CONFIG.port) {
  return new PusherServer({
    appId: CONFIG.appId,
    key: CONFIG.key,
    secret,
    host: CONFIG.host,
    port: String(port),
    useTLS: false,
    timeout: TIMEOUT_MS,
  });
}

/** Awaits an SDK request; an HTTP error becomes "<what>: HTTP <status> <body>". */
async function sdkCall(promise, what) {
  try {
    return await promise;
  } catch (err) {
    if (err && err.status !== undefined) throw new Error(`${what}: HTTP ${err.status} ${show(err.body)}`);
    throw new Error(`${what}: ${err && err.message ? err.message : err}`);
  }
}

// ---------------------------------------------------------------- pusher-js clients

const openClients = [];

/**
 * A pusher-js client configured for the gateway.
 *   key, port       app key and node (default node A)
 *   signer          SDK instance whose secret signs channel authorizations and user sign-ins
 *   user            presence data {user_id, user_info}, signed into presence-* authorizations
 *   channelAuth     (params) => auth data: replaces the default channel authorization entirely
 *   userData        {id, ...}: the user `client.signin()` authenticates as
 *   label           name used in frame logs and failure messages
 * Records every connection error in `client.errors` and the last incoming frames in `client.frames`.
 */
function newClient({ key = CONFIG.key, signer = sdk(), port = CONFIG.port, user, channelAuth, userData, label } = {}) {
  const options = {
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
          if (channelAuth) return callback(null, channelAuth(params));
          const presence = user && params.channelName.startsWith('presence-') ? user : undefined;
          return callback(null, signer.authorizeChannel(params.socketId, params.channelName, presence));
        } catch (err) {
          return callback(err, null);
        }
      },
    },
  };
  if (userData) {
    options.userAuthentication = {
      customHandler: (params, callback) => {
        try {
          callback(null, signer.authenticateUser(params.socketId, userData));
        } catch (err) {
          callback(err, null);
        }
      },
    };
  }
  const client = new PusherClient(key, options);
  client.label = label || `client${openClients.length + 1}`;
  client.errors = [];
  client.frames = [];
  client.connection.bind('error', (err) => client.errors.push(err));
  client.connection.bind('message', (frame) => {
    client.frames.push(frame);
    if (client.frames.length > FRAMES_KEPT) client.frames.shift();
    if (DEBUG) process.stderr.write(`[frames ${client.label}] <- ${JSON.stringify(frame)}\n`);
  });
  if (DEBUG) {
    const send = client.connection.send_event.bind(client.connection);
    client.connection.send_event = (name, data, channel) => {
      process.stderr.write(`[frames ${client.label}] -> ${JSON.stringify({ event: name, channel, data })}\n`);
      return send(name, data, channel);
    };
  }
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

/** The last frames `client` received, compact, for failure messages. */
function framesOf(client, last = 8) {
  const frames = client.frames.slice(-last).map((f) => JSON.stringify(f));
  return `${client.label} frames: ${frames.length ? frames.join(' ') : '(none)'}`;
}

/** Runs `promise`; on failure, appends the frames the given clients received to the reason. */
async function withFrames(promise, ...clients) {
  try {
    return await promise;
  } catch (err) {
    throw new Error(`${err.message} [${clients.map((c) => framesOf(c)).join('; ')}]`);
  }
}

/**
 * The Pusher error codes in a connection error as pusher-js reports it: {type:'PusherError', data:{code}}
 * (a pusher:error frame, or a close code) or {type:'WebSocketError', error:{type:'PusherError', data:{code}}}
 * (the connection manager's 'refused'/'backoff'/'retry' actions).
 */
function errorCode(err) {
  if (!err) return undefined;
  if (err.data && err.data.code !== undefined) return err.data.code;
  if (err.error && err.error.data && err.error.data.code !== undefined) return err.error.data.code;
  return undefined;
}

/** Resolves with the first connection error of `client` whose Pusher code is `code` (one already seen counts). */
function errorWithCode(client, code, what, ms = TIMEOUT_MS) {
  const seen = client.errors.find((e) => errorCode(e) === code);
  if (seen) return Promise.resolve(seen);
  let fn;
  const found = new Promise((resolve) => {
    fn = (err) => {
      if (errorCode(err) === code) resolve(err);
    };
    client.connection.bind('error', fn);
  });
  return handled(withTimeout(found, what, ms).finally(() => client.connection.unbind('error', fn)));
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

/**
 * Signs `client` (created with `userData`) in and resolves once its events can arrive: pusher-js
 * (core/user.ts) resolves `user.signinDonePromise` on pusher:signin_success (and on failure, with
 * `user.user_data` left null), then subscribes to `#server-to-user-<id>`; this also waits for that
 * subscription's pusher_internal:subscription_succeeded.
 */
async function signedIn(client) {
  await connected(client);
  let onError;
  const signinError = new Promise((_, reject) => {
    onError = (data) => reject(new Error(`pusher:signin_error ${show(data)}`));
    client.user.bind('pusher:signin_error', onError);
  });
  client.signin();
  try {
    await withFrames(withTimeout(Promise.race([client.user.signinDonePromise, signinError]), 'user.signinDonePromise'), client);
  } finally {
    client.user.unbind('pusher:signin_error', onError);
  }
  if (!client.user.user_data) {
    throw new Error(`sign-in did not succeed (no pusher:signin_success; errors ${show(client.errors)}) [${framesOf(client)}]`);
  }
  const channel = client.user.serverToUserChannel;
  if (!channel) throw new Error('pusher-js has no #server-to-user channel after sign-in');
  if (!channel.subscribed) {
    await withFrames(
      waitFor(channel, 'pusher:subscription_succeeded', `pusher:subscription_succeeded on ${channel.name}`, {
        'pusher:subscription_error': `subscription to ${channel.name} failed`,
      }),
      client
    );
  }
  return client;
}

/** laravel-echo on top of a pusher-js client (ESM-only build, loaded with import()). */
async function echoFor(client) {
  // laravel-echo 2.x ships "type":"module" and its "require" export (dist/echo.common.js) is CJS code in a
  // .js file, so require('laravel-echo') throws; the ESM build loads fine through import().
  const { default: Echo } = await import('laravel-echo');
  return new Echo({ broadcaster: 'pusher', client, withoutInterceptors: true });
}

module.exports = {
  CONFIG,
  TIMEOUT_MS,
  QUIET_MS,
  configError,
  portB,
  randomName,
  show,
  sleep,
  withTimeout,
  handled,
  waitFor,
  expectNothing,
  recorder,
  collect,
  expectEqual,
  expectStatus,
  sdk,
  sdkCall,
  newClient,
  closeAllClients,
  framesOf,
  withFrames,
  errorCode,
  errorWithCode,
  connected,
  subscribed,
  signedIn,
  echoFor,
};
