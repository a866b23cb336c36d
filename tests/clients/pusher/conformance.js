#!/usr/bin/env node
/*
 * Pusher protocol 7 conformance driver for the gateway.
 *
 * Drives the gateway with the REAL registry packages, pinned in package.json:
 *   - pusher-js 8 (its Node build, require('pusher-js')) as the WebSocket client,
 *   - pusher 5 (the server SDK) for the signed HTTP API, channel authorization and user sign-in,
 *   - laravel-echo 2 on top of pusher-js.
 * Helpers (timed waits, client and SDK factories) are in lib.js.
 *
 * Run:   node conformance.js <case> [<case>...]
 * Env:   GATEWAY_HOST (default 127.0.0.1), GATEWAY_PORT (WebSocket and HTTP API share it),
 *        PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET, GATEWAY_PORT_B (second node of the same cluster,
 *        needed by the cross_* cases only; they FAIL with a clear reason without it),
 *        CONFORMANCE_TIMEOUT_MS (default 5000), CONFORMANCE_DEBUG=1 (pusher-js log and every frame
 *        each client sends and receives, to stderr).
 * Out:   one stdout line per case, `ok <case>[ detail]` or `FAIL <case>: <reason>`; exit 0 only if
 *        every case passed. Every wait has a timeout, so a hang is a FAIL, and the process always exits.
 *
 * Cases (see the CASES table at the bottom):
 *   one node:   connect, public, private_ok, private_bad, batch, exclusion, unknown_key,
 *               bad_signature_http, echo_public, presence, presence_bad, client_events,
 *               client_events_public, client_rate, signin_send_to_user, terminate
 *   two nodes:  cross_trigger, cross_presence, cross_client_events, cross_send_to_user
 */
'use strict';

const crypto = require('crypto');
const {
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
  withFrames,
  errorCode,
  errorWithCode,
  connected,
  subscribed,
  signedIn,
  echoFor,
} = require('./lib');

// ---------------------------------------------------------------- cases: channels and the HTTP API

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

// ---------------------------------------------------------------- cases: presence

const { OBSERVER, ANN, caseQueries, caseWebhooks } = require('./cases_api');
const { caseDrainReconnect } = require('./cases_ops');

/**
 * Subscribes `client` to `name` and expects the gateway to refuse it with a channel-level
 * pusher:subscription_error (what pusher-js surfaces to `channel.bind('pusher:subscription_error')`);
 * a connection-level pusher:error instead is reported as such. Resolves with the error data.
 */
async function subscriptionRefused(client, name, succeeded) {
  const channel = client.subscribe(name);
  const connectionError = handled(
    waitFor(client, 'pusher:error', 'pusher:error').then((data) => {
      throw new Error(`got a connection-level pusher:error instead of a channel pusher:subscription_error: ${show(data)}`);
    })
  );
  return withFrames(
    Promise.race([
      waitFor(channel, 'pusher:subscription_error', `pusher:subscription_error on ${name}`, {
        'pusher:subscription_succeeded': succeeded,
      }),
      connectionError,
    ]),
    client
  );
}

/**
 * An Echo observer (join/here/joining/leaving) and one user with two tabs: the user joins once and
 * leaves once, when its last socket goes (pusher's presence is per user_id, not per socket).
 */
async function casePresence() {
  const name = randomName('presence-');
  const observer = await connected(newClient({ user: OBSERVER, label: 'observer' }));
  const echo = await echoFor(observer);
  const joining = recorder();
  const leaving = recorder();
  const here = recorder();
  // Echo's join() takes the name without 'presence-' and adds it.
  echo.join(name.slice('presence-'.length)).here(here.fn).joining(joining.fn).leaving(leaving.fn);
  const [[members]] = await withFrames(here.atLeast(1, `Echo here() on ${name}`), observer);
  expectEqual(members, [OBSERVER.user_info], "observer's here() (user_info of every member)");

  const tab1 = await connected(newClient({ user: ANN, label: 'tab1' }));
  const channel1 = await subscribed(tab1, name);
  const [[joined]] = await withFrames(joining.atLeast(1, `observer's joining() for ${ANN.user_id}`), observer);
  expectEqual(joined, ANN.user_info, "joining() argument (the member's user_info)");

  const selfAdded = collect(channel1, 'pusher:member_added');
  const tab2 = await connected(newClient({ user: ANN, label: 'tab2' }));
  const channel2 = await withFrames(subscribed(tab2, name), tab2);
  const m = channel2.members;
  const seen = [];
  m.each((member) => seen.push(member));
  if (m.count !== 2) throw new Error(`tab 2's members.count: expected 2, got ${m.count} (members ${show(seen)})`);
  expectEqual(m.get(OBSERVER.user_id), { id: OBSERVER.user_id, info: OBSERVER.user_info }, "tab 2's member 'obs'");
  expectEqual(m.get(ANN.user_id), { id: ANN.user_id, info: ANN.user_info }, "tab 2's member 'u1'");
  expectEqual(m.me && m.me.id, ANN.user_id, "tab 2's members.me.id");
  await sleep(QUIET_MS);
  expectEqual(joining.data(), [ANN.user_info], "observer's joining() calls after u1's second tab (must stay one)");
  expectEqual(selfAdded.data(), [], "member_added on tab 1 for its own user's second tab");

  tab1.disconnect();
  await sleep(QUIET_MS);
  expectEqual(leaving.data(), [], "observer's leaving() while u1 still has tab 2 open");

  tab2.disconnect();
  await withFrames(leaving.atLeast(1, `observer's leaving() after u1's last tab closed`), observer);
  await sleep(QUIET_MS);
  expectEqual(leaving.data(), [ANN.user_info], "observer's leaving() calls (exactly one, with u1's user_info)");
  const left = observer.channel(name).members;
  if (left.count !== 1) throw new Error(`observer's members.count after u1 left: expected 1, got ${left.count}`);
  return 'members=2 joining=1 leaving=1';
}

/** channel_data other than the signed one (auth for u1, channel_data claiming admin) is refused with 401. */
async function casePresenceBad() {
  const name = randomName('presence-');
  const observer = await connected(newClient({ user: OBSERVER, label: 'observer' }));
  const watched = await subscribed(observer, name);
  const signer = sdk();
  const forger = await connected(
    newClient({
      label: 'forger',
      channelAuth: ({ socketId, channelName }) => ({
        auth: signer.authorizeChannel(socketId, channelName, { user_id: 'u1' }).auth,
        channel_data: JSON.stringify({ user_id: 'admin' }),
      }),
    })
  );
  const added = expectNothing(watched, 'pusher:member_added', 'the observer saw a member join with forged channel_data');
  const error = await subscriptionRefused(forger, name, 'subscription with channel_data differing from the signed one succeeded');
  if (!error || error.status !== 401) throw new Error(`pusher:subscription_error: expected status 401, got ${show(error)}`);
  await added;
  return `status=${error.status}`;
}

// ---------------------------------------------------------------- cases: client events

/**
 * A triggers a client event; B receives it and A does not. Resolves with B's [data, metadata].
 * pusher-js (core/channels/channel.ts) sends `channel.trigger()` as is once subscribed.
 */
async function clientEventCrosses(a, chA, b, chB, event, payload) {
  const atB = collect(chB, event);
  const echoed = expectNothing(chA, event, `client event echoed back to its sender ${a.label}`);
  if (!chA.trigger(event, payload)) throw new Error(`pusher-js did not send ${event} (connection ${a.connection.state})`);
  const [[data, metadata]] = await withFrames(atB.atLeast(1, `${event} at ${b.label}`), b);
  expectEqual(data, payload, `data of ${event} at ${b.label}`);
  await echoed;
  const errors = a.errors.filter((e) => errorCode(e) !== undefined);
  if (errors.length) throw new Error(`${a.label} got errors for a permitted client event: ${show(errors)}`);
  return [data, metadata];
}

async function caseClientEvents() {
  const [a, b] = await Promise.all([connected(newClient({ label: 'A' })), connected(newClient({ label: 'B' }))]);
  const priv = randomName('private-');
  const [pa, pb] = await Promise.all([subscribed(a, priv), subscribed(b, priv)]);
  await clientEventCrosses(a, pa, b, pb, 'client-typing', { x: 1 });

  // On presence channels the gateway adds the sender's user_id; pusher-js 7.1+ hands it to the
  // callback as its second argument, `metadata.user_id` (core/channels/presence_channel.ts).
  const ua = { user_id: randomName('ua-'), user_info: { name: 'A' } };
  const ub = { user_id: randomName('ub-'), user_info: { name: 'B' } };
  const [c, d] = await Promise.all([
    connected(newClient({ user: ua, label: 'presence A' })),
    connected(newClient({ user: ub, label: 'presence B' })),
  ]);
  const pres = randomName('presence-');
  const [qc, qd] = await Promise.all([subscribed(c, pres), subscribed(d, pres)]);
  const [, metadata] = await clientEventCrosses(c, qc, d, qd, 'client-typing', { x: 1 });
  if (!metadata || metadata.user_id !== ua.user_id) {
    throw new Error(`presence client event metadata: expected user_id ${show(ua.user_id)}, got ${show(metadata)}`);
  }
  return `private ok, presence user_id=${metadata.user_id}`;
}

/**
 * A client event on a public channel. pusher-js does not refuse it locally (Channel.trigger only
 * checks the 'client-' prefix), so the frame goes out; the gateway must answer with a pusher:error,
 * which pusher-js (core/connection/connection.ts) surfaces as connection 'error'
 * {type:'PusherError', data:{code, message}} and through the client's global emitter
 * (`pusher.bind('pusher:error')`, core/pusher.ts), and must deliver nothing to the other subscriber.
 */
async function caseClientEventsPublic() {
  const [a, b] = await Promise.all([connected(newClient({ label: 'A' })), connected(newClient({ label: 'B' }))]);
  const name = randomName('public-');
  const [pa, pb] = await Promise.all([subscribed(a, name), subscribed(b, name)]);
  const refused = waitFor(a, 'pusher:error', 'pusher:error for a client event on a public channel');
  const delivered = expectNothing(pb, 'client-x', 'client event on a public channel delivered to B');
  if (!pa.trigger('client-x', { a: 1 })) throw new Error(`pusher-js did not send client-x (connection ${a.connection.state})`);
  const error = await withFrames(refused, a);
  await delivered;
  const code = error && error.code !== undefined ? error.code : 'absent';
  return `pusher:error code=${code} message=${show(error && error.message)} state=${a.connection.state}`;
}

/** 30 client events at once: the gateway lets ~10 through (10/s, burst 10) and tells A with 4301. */
async function caseClientRate() {
  const SENT = 30;
  const [a, b] = await Promise.all([connected(newClient({ label: 'A' })), connected(newClient({ label: 'B' }))]);
  const name = randomName('private-');
  const [pa, pb] = await Promise.all([subscribed(a, name), subscribed(b, name)]);
  const atB = collect(pb, 'client-burst');
  const limited = errorWithCode(a, 4301, 'pusher:error code 4301 at A');
  for (let i = 0; i < SENT; i += 1) {
    if (!pa.trigger('client-burst', { i })) throw new Error(`pusher-js did not send client event ${i}`);
  }
  await withFrames(limited, a);
  await sleep(2 * QUIET_MS); // what was let through has arrived by now
  const got = atB.data().map((d) => d && d.i);
  const limitErrors = a.errors.filter((e) => errorCode(e) === 4301).length;
  const detail = `sent=${SENT} received=${got.length} errors4301=${limitErrors} state=${a.connection.state}`;
  if (got.length < 1 || got.length > 20) throw new Error(`B received ${got.length} of ${SENT}, expected 1..20 (${detail})`);
  if (got.some((i, k) => k > 0 && !(i > got[k - 1]))) throw new Error(`B received out of order or twice: ${show(got)}`);
  return detail;
}

// ---------------------------------------------------------------- cases: users

/** sendToUser reaches every socket signed in as the user (two tabs), and no other user. */
async function caseSigninSendToUser() {
  const userId = randomName('u-');
  const data = { id: userId, name: 'Ann' };
  const [tab1, tab2, other] = await Promise.all([
    signedIn(newClient({ userData: data, label: 'tab1' })),
    signedIn(newClient({ userData: data, label: 'tab2' })),
    signedIn(newClient({ userData: { id: randomName('u-'), name: 'Bob' }, label: 'other' })),
  ]);
  const received = handled(
    Promise.all([waitFor(tab1.user, 'hello', `'hello' at tab1`), waitFor(tab2.user, 'hello', `'hello' at tab2`)])
  );
  const leaked = expectNothing(other.user, 'hello', 'event for another user delivered');
  expectStatus(await sdkCall(sdk().sendToUser(userId, 'hello', { a: 1 }), 'sendToUser'), 200, 'sendToUser');
  const [d1, d2] = await withFrames(received, tab1, tab2);
  expectEqual(d1, { a: 1 }, "data of 'hello' at tab1");
  expectEqual(d2, { a: 1 }, "data of 'hello' at tab2");
  await leaked;
  return `user=${userId} sockets=2`;
}

/**
 * terminateUserConnections closes the user's socket with 4009; pusher-js (core/connection/protocol)
 * maps 4000..4099 to 'refused': connection 'error' with code 4009, state 'disconnected', no reconnect.
 */
async function caseTerminate() {
  const userId = randomName('u-');
  const victim = await signedIn(newClient({ userData: { id: userId }, label: 'victim' }));
  const bystander = await signedIn(newClient({ userData: { id: randomName('u-') }, label: 'bystander' }));
  const states = [victim.connection.state];
  victim.connection.bind('state_change', (s) => states.push(s.current));
  const down = waitFor(victim.connection, 'disconnected', "victim state 'disconnected'", {
    connecting: 'pusher-js is reconnecting: the close was not a 4000..4099 refusal',
  });
  expectStatus(await sdkCall(sdk().terminateUserConnections(userId), 'terminateUserConnections'), 200, 'terminateUserConnections');
  try {
    await withFrames(down, victim);
  } catch (err) {
    throw new Error(`${err.message} (states ${states.join('>')}; errors ${show(victim.errors)})`);
  }
  const codes = victim.errors.map(errorCode).filter((c) => c !== undefined);
  if (!codes.includes(4009)) throw new Error(`no error with code 4009; errors ${show(victim.errors)}`);
  await expectNothing(victim.connection, 'connecting', 'pusher-js reconnected after a 4009');
  expectEqual(victim.connection.state, 'disconnected', "victim's final state");
  expectEqual(bystander.connection.state, 'connected', "another user's socket after the termination");
  return `code=4009 states=${states.join('>')}`;
}

// ---------------------------------------------------------------- cases: two nodes (GATEWAY_PORT_B)

/** A client on node B receives what the SDK triggers through node A. */
async function caseCrossTrigger() {
  const port = portB();
  const client = await connected(newClient({ port, label: 'on B' }));
  const name = randomName('public-');
  const channel = await subscribed(client, name);
  const received = waitFor(channel, 'greet', `event 'greet' on ${name} at node B`);
  const payload = { hello: 'node B', n: 2 };
  expectStatus(await sdkCall(sdk().trigger(name, 'greet', payload), 'trigger via node A'), 200, 'trigger via node A');
  expectEqual(await withFrames(received, client), payload, "data of 'greet' at node B");
}

/** An Echo observer on node A sees a member of node B join and leave. */
async function caseCrossPresence() {
  const port = portB();
  const name = randomName('presence-');
  const observer = await connected(newClient({ user: OBSERVER, label: 'observer on A' }));
  const echo = await echoFor(observer);
  const joining = recorder();
  const leaving = recorder();
  const here = recorder();
  echo.join(name.slice('presence-'.length)).here(here.fn).joining(joining.fn).leaving(leaving.fn);
  await withFrames(here.atLeast(1, `Echo here() on ${name}`), observer);

  const member = await connected(newClient({ user: ANN, port, label: 'member on B' }));
  const channel = await subscribed(member, name);
  const [[joined]] = await withFrames(joining.atLeast(1, `observer's joining() for ${ANN.user_id} (on node B)`), observer);
  expectEqual(joined, ANN.user_info, "joining() argument (the member's user_info)");
  if (channel.members.count !== 2) {
    throw new Error(`members.count at node B: expected 2 (obs on A, u1 on B), got ${channel.members.count}`);
  }

  member.disconnect();
  await withFrames(leaving.atLeast(1, `observer's leaving() after the member on node B left`), observer);
  await sleep(QUIET_MS);
  expectEqual(joining.data(), [ANN.user_info], "observer's joining() calls");
  expectEqual(leaving.data(), [ANN.user_info], "observer's leaving() calls");
  return 'joining=1 leaving=1';
}

/** A client event from node A reaches a subscriber on node B. */
async function caseCrossClientEvents() {
  const port = portB();
  const [a, b] = await Promise.all([
    connected(newClient({ label: 'A on A' })),
    connected(newClient({ port, label: 'B on B' })),
  ]);
  const name = randomName('private-');
  const [pa, pb] = await Promise.all([subscribed(a, name), subscribed(b, name)]);
  await clientEventCrosses(a, pa, b, pb, 'client-typing', { x: 1 });
}

/** sendToUser through node A reaches the user signed in on node B. */
async function caseCrossSendToUser() {
  const port = portB();
  const userId = randomName('u-');
  const client = await signedIn(newClient({ userData: { id: userId, name: 'Ann' }, port, label: 'user on B' }));
  const received = waitFor(client.user, 'hello', `'hello' at node B`);
  expectStatus(await sdkCall(sdk().sendToUser(userId, 'hello', { a: 1 }), 'sendToUser via node A'), 200, 'sendToUser via node A');
  expectEqual(await withFrames(received, client), { a: 1 }, "data of 'hello' at node B");
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
  presence: casePresence,
  presence_bad: casePresenceBad,
  client_events: caseClientEvents,
  client_events_public: caseClientEventsPublic,
  client_rate: caseClientRate,
  signin_send_to_user: caseSigninSendToUser,
  terminate: caseTerminate,
  queries: caseQueries,
  webhooks: caseWebhooks,
  drain_reconnect: caseDrainReconnect,
  cross_trigger: caseCrossTrigger,
  cross_presence: caseCrossPresence,
  cross_client_events: caseCrossClientEvents,
  cross_send_to_user: caseCrossSendToUser,
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
