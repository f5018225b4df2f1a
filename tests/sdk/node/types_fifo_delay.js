// Node SDK (rocketmq-client-nodejs 1.0.8): FIFO and delay messages against mqproxy (issue 5).
// usage: node types_fifo_delay.js ENDPOINT FIFO_TOPIC FIFO_GROUP DELAY_TOPIC DELAY_GROUP
// Both groups must start at the earliest offset (consumeFromWhere=EARLIEST). Records what happened;
// the Python test asserts. Prints "RESULT <json>" as its last line.
'use strict';
const { Producer, SimpleConsumer } = require('rocketmq-client-nodejs');

const silent = { info() {}, warn() {}, error() {}, debug() {}, trace() {} };

function view(m) {
  return {
    id: m.messageId, body: m.body.toString(), group: m.messageGroup ?? null, attempt: m.deliveryAttempt,
    delivery: m.deliveryTimestamp ? m.deliveryTimestamp.getTime() : null, recv: Date.now(),
  };
}

async function codeOf(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return e.code ?? String(e);
  }
}

async function main() {
  const [endpoints, fifoTopic, fifoGroup, delayTopic, delayGroup] = process.argv.slice(2);
  const out = { fifo: { sent: {}, batches: [], held: null, whileHeld: [] }, delay: {}, errors: [] };
  const producer = new Producer({ endpoints, requestTimeout: 5000, logger: silent });
  await producer.startup();

  // --- FIFO: two message groups, interleaved
  for (let i = 0; i < 4; i++) {
    for (const g of ['na', 'nb']) {
      const body = `${g}-${i}`;
      await producer.send({ topic: fifoTopic, messageGroup: g, body: Buffer.from(body) });
      (out.fifo.sent[g] = out.fifo.sent[g] || []).push(body);
    }
  }
  out.fifo.badGroupCode = await codeOf(producer.send({ topic: fifoTopic, messageGroup: 'g'.repeat(64),
    body: Buffer.from('x') }));
  const fc = new SimpleConsumer({ endpoints, consumerGroup: fifoGroup, subscriptions: new Map([[fifoTopic, '*']]),
    awaitDuration: 2000, requestTimeout: 5000, logger: silent });
  await fc.startup();
  let deadline = Date.now() + 30000;
  let first = [];
  while (first.length === 0 && Date.now() < deadline) first = await fc.receive(1, 2000);
  out.fifo.held = first.map(view)[0] ?? null;
  out.fifo.batches.push({ acked: false, messages: first.map(view) });
  // while the first one is in flight, its successor must not come
  const meanwhile = await fc.receive(1, 30000);
  for (const m of meanwhile) await fc.ack(m);
  out.fifo.batches.push({ acked: true, messages: meanwhile.map(view) });
  const done = new Set(meanwhile.map((m) => m.body.toString()));
  deadline = Date.now() + 60000;
  while (done.size < 8 && Date.now() < deadline) {
    const got = await fc.receive(4, 30000);
    for (const m of got) {
      await fc.ack(m);
      done.add(m.body.toString());
    }
    out.fifo.batches.push({ acked: true, messages: got.map(view) });
  }
  await fc.shutdown();

  // --- delay: two due in a few seconds, one recalled, one too far ahead
  const dc = new SimpleConsumer({ endpoints, consumerGroup: delayGroup, subscriptions: new Map([[delayTopic, '*']]),
    awaitDuration: 2000, requestTimeout: 5000, logger: silent });
  await dc.startup();
  const now = Date.now();
  const plan = [['nd-a', 3000], ['nd-recalled', 3500], ['nd-b', 4000]];
  out.delay.sent = {};
  for (const [body, ahead] of plan) {
    const due = now + ahead;
    const r = await producer.send({ topic: delayTopic, body: Buffer.from(body), deliveryTimestamp: new Date(due) });
    out.delay.sent[body] = { id: r.messageId, due, recallHandle: r.recallHandle ?? null };
  }
  try {
    const rr = await producer.recallMessage(delayTopic, out.delay.sent['nd-recalled'].recallHandle);
    out.delay.recalledId = rr.messageId;
  } catch (e) {
    out.delay.recallError = String(e);
  }
  out.delay.tooFarCode = await codeOf(producer.send({ topic: delayTopic, body: Buffer.from('far'),
    deliveryTimestamp: new Date(Date.now() + 24 * 3600 * 1000 + 120000) }));
  out.delay.received = [];
  deadline = Date.now() + 30000;
  while (out.delay.received.length < 2 && Date.now() < deadline) {
    const got = await dc.receive(16, 15000);
    for (const m of got) {
      out.delay.received.push(view(m));
      await dc.ack(m);
    }
  }
  // nd-recalled was due before nd-b: it would be here by now
  out.delay.after = (await dc.receive(16, 15000)).map(view);
  await dc.shutdown();
  await producer.shutdown();
  console.log(`RESULT ${JSON.stringify(out)}`);
}

main().catch((e) => {
  console.log(`RESULT ${JSON.stringify({ fatal: String(e && e.stack ? e.stack : e) })}`);
  process.exit(1);
});
