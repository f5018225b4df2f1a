// Node SDK (rocketmq-client-nodejs 1.0.8) scenario against mqproxy.
// usage: node basic.js ENDPOINT TOPIC GROUP
// Prints "RESULT <json>" as its last line.
'use strict';
const { Producer, SimpleConsumer, PushConsumer, ConsumeResult } = require('rocketmq-client-nodejs');

const silent = { info() {}, warn() {}, error() {}, debug() {}, trace() {} };

async function main() {
  const [endpoints, topic, group] = process.argv.slice(2);
  const out = { sent: [], received: [], errors: [] };
  const consumer = new SimpleConsumer({
    endpoints, consumerGroup: group, subscriptions: new Map([[topic, 'TagA']]), awaitDuration: 5000,
    requestTimeout: 5000, logger: silent,
  });
  await consumer.startup();
  // first (empty) long poll starts the group at the queue's end before anything is sent
  const firstPoll = consumer.receive(16, 15000).catch((e) => { out.errors.push(String(e)); return []; });
  await new Promise((r) => setTimeout(r, 1000));
  const producer = new Producer({ endpoints, requestTimeout: 5000, logger: silent });
  await producer.startup();
  for (let i = 0; i < 3; i++) {
    const receipt = await producer.send({
      topic, tag: 'TagA', keys: [`key-${i}`], properties: new Map([['color', 'blue'], ['idx', String(i)]]),
      body: Buffer.from(`node-A${i}`),
    });
    out.sent.push(receipt.messageId);
  }
  await producer.send({ topic, tag: 'TagB', body: Buffer.from('node-B') });
  try {
    await producer.send({ topic: 'TBW102', body: Buffer.from('x') });
    out.badTopicCode = null;
  } catch (e) {
    out.badTopicCode = e.code ?? null;
    out.badTopicError = String(e);
  }
  let got = await firstPoll;
  const deadline = Date.now() + 30000;
  while (got.length < 3 && Date.now() < deadline) {
    got = got.concat(await consumer.receive(16, 15000));
  }
  out.received = got.map((m) => ({
    id: m.messageId, tag: m.tag, keys: m.keys, attempt: m.deliveryAttempt,
    props: Object.fromEntries(m.properties), body: m.body.toString(),
  }));
  if (got.length >= 3) {
    await consumer.ack(got[0]);
    await consumer.ack(got[1]);
    await consumer.changeInvisibleDuration(got[2], 1000);
    let again = [];
    const d2 = Date.now() + 30000;
    while (again.length === 0 && Date.now() < d2) again = await consumer.receive(16, 15000);
    out.redelivered = again.map((m) => ({ id: m.messageId, attempt: m.deliveryAttempt }));
    for (const m of again) await consumer.ack(m);
  }
  try {
    await consumer.receive(1, 5000);
    out.badInvisibleCode = null;
  } catch (e) {
    out.badInvisibleCode = e.code ?? null;
  }
  await consumer.shutdown();

  // PushConsumer: every message of a second batch arrives through the listener
  const seen = [];
  const push = new PushConsumer({
    endpoints, consumerGroup: `${group}-push`, subscriptions: new Map([[topic, '*']]), requestTimeout: 5000,
    logger: silent,
    messageListener: { async consume(m) { seen.push(m.body.toString()); return ConsumeResult.SUCCESS; } },
  });
  await push.startup();
  await new Promise((r) => setTimeout(r, 2000));
  for (let i = 0; i < 3; i++) await producer.send({ topic, tag: 'TagP', body: Buffer.from(`node-P${i}`) });
  const d3 = Date.now() + 30000;
  while (seen.filter((b) => b.startsWith('node-P')).length < 3 && Date.now() < d3) {
    await new Promise((r) => setTimeout(r, 200));
  }
  out.pushed = seen;
  await push.shutdown();
  await producer.shutdown();
  process.stdout.write(`\nRESULT ${JSON.stringify(out)}\n`);
  process.exit(0);
}

main().catch((e) => {
  process.stdout.write(`\nRESULT ${JSON.stringify({ fatal: String(e && e.stack || e) })}\n`);
  process.exit(1);
});
