/*
 * Conformance cases of operations: a draining node (SIGTERM) closes pusher-js with 4200 and pusher-js
 * reconnects at once, through the load balancer, to the other node. Run through conformance.js; the
 * Rust test (tests/load_balancers.rs) signals the node the client landed on when it reads the
 * `ready <socket_id>` line.
 */
'use strict';

const { TIMEOUT_MS, newClient, connected, subscribed, randomName, sleep, sdk, sdkCall } = require('./lib');

/** Connects, prints `ready <socket_id>`, then waits to be moved to another node and still be served. */
async function caseDrainReconnect() {
  const client = await connected(newClient({ label: 'drained' }));
  const channel = randomName('public-drain');
  await subscribed(client, channel);
  const first = client.connection.socket_id;
  const states = [];
  client.connection.bind('state_change', (s) => states.push(s.current));
  process.stdout.write(`ready ${first}\n`);
  // The test drains this node now: pusher-js must come back, with a new socket, by itself.
  const deadline = Date.now() + 4 * TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (client.connection.state === 'connected' && client.connection.socket_id !== first) break;
    await sleep(20);
  }
  const second = client.connection.socket_id;
  if (second === first || client.connection.state !== 'connected') {
    throw new Error(`not reconnected: state=${client.connection.state} states=${states.join('>')}`);
  }
  if (states.includes('failed') || states.includes('unavailable')) {
    throw new Error(`reconnected through ${states.join('>')}: 4200 means reconnect at once`);
  }
  // pusher-js resubscribes by itself; a trigger reaches it on its new node.
  const channelObj = client.channel(channel);
  const got = new Promise((resolve) => channelObj.bind('after-drain', resolve));
  await sleep(200);
  await sdkCall(sdk().trigger(channel, 'after-drain', { ok: true }), 'trigger after the drain');
  const data = await Promise.race([got, sleep(TIMEOUT_MS).then(() => null)]);
  if (!data || data.ok !== true) throw new Error('no event on the resubscribed channel after the drain');
  return `from=${first} to=${second} states=${states.join('>')}`;
}

module.exports = { caseDrainReconnect };
