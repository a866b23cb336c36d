/*
 * Conformance cases of the backend's side: the server SDK's channel queries (get) and the webhooks the
 * gateway posts, validated by the SDK. Run through conformance.js (see its header).
 */
'use strict';

const {
  TIMEOUT_MS,
  randomName,
  show,
  sleep,
  expectEqual,
  expectStatus,
  sdk,
  sdkCall,
  newClient,
  connected,
  subscribed,
} = require('./lib');

const OBSERVER = { user_id: 'obs', user_info: { name: 'Observer' } };
const ANN = { user_id: 'u1', user_info: { name: 'Ann' } };

/** The SDK's get(): channel lists, one channel's info, a presence channel's users. */
async function caseQueries() {
  const presence = randomName('presence-q');
  const plain = randomName('public-q');
  const a = await connected(newClient({ user: ANN, label: 'a' }));
  const b = await connected(newClient({ user: OBSERVER, label: 'b' }));
  await subscribed(a, presence);
  await subscribed(b, presence);
  await subscribed(a, plain);
  await subscribed(b, plain);
  const server = sdk();
  const body = async (path, params) => {
    const res = await sdkCall(server.get({ path, params }), `get ${path}`);
    expectStatus(res, 200, `get ${path}`);
    return res.json();
  };
  const all = await body('/channels', {});
  for (const name of [presence, plain]) {
    if (!all.channels || !(name in all.channels)) throw new Error(`/channels lacks ${name}: ${show(all)}`);
  }
  const counted = await body('/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
  expectEqual(counted.channels[presence], { user_count: 2 }, `user_count of ${presence}`);
  const one = await body(`/channels/${plain}`, { info: 'subscription_count' });
  expectEqual(one, { occupied: true, subscription_count: 2 }, `/channels/${plain}`);
  const users = await body(`/channels/${presence}/users`, {});
  const ids = users.users.map((u) => u.id).sort();
  expectEqual(ids, [ANN.user_id, OBSERVER.user_id].sort(), `/channels/${presence}/users`);
  const empty = await body(`/channels/${randomName('none-')}`, {});
  expectEqual(empty, { occupied: false }, 'an empty channel');
  return 'channels ok, users ok';
}

/**
 * Webhooks as the gateway posts them, checked by the SDK's own webhook(...).isValid() and
 * getEvents(): occupied, client_event, member_added, then member_removed and vacated once the client
 * leaves (after the gateway's grace). Needs WEBHOOK_PORT: the app's webhook URL points there.
 */
async function caseWebhooks() {
  const port = Number(process.env.WEBHOOK_PORT);
  if (!port) throw new Error('WEBHOOK_PORT is unset: the app needs a webhook pointing at this driver');
  const http = require('http');
  const server = sdk();
  const received = [];
  let invalid = 0;
  const listener = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => { raw += c; });
    req.on('end', () => {
      const hook = server.webhook({ headers: req.headers, rawBody: raw });
      if (hook.isValid()) received.push(...hook.getEvents());
      else invalid += 1;
      res.writeHead(200);
      res.end();
    });
  });
  await new Promise((resolve) => listener.listen(port, '127.0.0.1', resolve));
  try {
    const priv = randomName('private-w');
    const presence = randomName('presence-w');
    const a = await connected(newClient({ user: ANN, label: 'a' }));
    const ch = await subscribed(a, priv);
    ch.trigger('client-hello', { n: 1 });
    await subscribed(a, presence);
    const until = async (n, what) => {
      const deadline = Date.now() + TIMEOUT_MS;
      while (received.length < n && Date.now() < deadline) await sleep(20);
      if (received.length < n) throw new Error(`${what}: ${received.length} events of ${n}: ${show(received)}`);
    };
    await until(4, 'occupied, client_event, member_added');
    a.disconnect();
    await until(7, 'member_removed and two vacated');
    if (invalid) throw new Error(`${invalid} webhook POSTs failed the SDK's isValid()`);
    const seen = received.map((e) => `${e.name} ${e.channel}${e.user_id ? ` ${e.user_id}` : ''}`).sort();
    const want = [
      `channel_occupied ${priv}`,
      `client_event ${priv}`,
      `channel_occupied ${presence}`,
      `member_added ${presence} ${ANN.user_id}`,
      `member_removed ${presence} ${ANN.user_id}`,
      `channel_vacated ${priv}`,
      `channel_vacated ${presence}`,
    ].sort();
    expectEqual(seen, want, 'webhook events');
    const client = received.find((e) => e.name === 'client_event');
    expectEqual(JSON.parse(client.data), { n: 1 }, 'client_event data');
    expectEqual(client.event, 'client-hello', 'client_event event');
    return `events=${received.length} all valid`;
  } finally {
    listener.close();
  }
}

module.exports = { OBSERVER, ANN, caseQueries, caseWebhooks };
