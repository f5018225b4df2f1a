// Node SDK (rocketmq-client-nodejs 1.0.8) over TLS (sslEnabled): send, then receive and ack.
// usage: GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=CERT node tls.js ENDPOINT TOPIC GROUP N
// Prints "RESULT <json>" as its last line.
'use strict';
const { Producer, SimpleConsumer } = require('rocketmq-client-nodejs');

const silent = { info() {}, warn() {}, error() {}, debug() {}, trace() {} };

async function main() {
  const [endpoints, topic, group, n] = process.argv.slice(2);
  const out = { sent: [], received: [], errors: [] };
  const common = { endpoints, sslEnabled: true, requestTimeout: 5000, logger: silent };
  const producer = new Producer(common);
  await producer.startup();
  for (let i = 0; i < Number(n); i++) {
    out.sent.push((await producer.send({ topic, tag: 'T', body: Buffer.from(`tls-${i}`) })).messageId);
  }
  await producer.shutdown();
  const consumer = new SimpleConsumer({
    ...common, consumerGroup: group, subscriptions: new Map([[topic, '*']]), awaitDuration: 5000,
  });
  await consumer.startup();
  const deadline = Date.now() + 30000;
  while (out.received.length < out.sent.length && Date.now() < deadline) {
    for (const m of await consumer.receive(16, 15000)) {
      out.received.push(m.messageId);
      await consumer.ack(m);
    }
  }
  await consumer.shutdown();
  process.stdout.write(`\nRESULT ${JSON.stringify(out)}\n`);
  process.exit(0);
}

main().catch((e) => {
  process.stdout.write(`\nRESULT ${JSON.stringify({ fatal: String(e && e.stack || e) })}\n`);
  process.exit(1);
});
