// Node SDK (rocketmq-client-nodejs 1.0.8): a SimpleConsumer that stays up for admin requests.
// usage: node stay.js ENDPOINT TOPIC GROUP
// Prints "READY <clientId>" once started and runs until its standard input closes.
'use strict';
const { SimpleConsumer } = require('rocketmq-client-nodejs');

const silent = { info() {}, warn() {}, error() {}, debug() {}, trace() {} };

async function main() {
  const [endpoints, topic, group] = process.argv.slice(2);
  const consumer = new SimpleConsumer({
    endpoints, consumerGroup: group, subscriptions: new Map([[topic, '*']]), awaitDuration: 5000,
    requestTimeout: 5000, logger: silent,
  });
  await consumer.startup();
  console.log(`READY ${consumer.clientId}`);
  await new Promise((resolve) => {
    process.stdin.on('end', resolve);
    process.stdin.on('close', resolve);
    process.stdin.resume();
  });
  await consumer.shutdown();
}

main().then(() => process.exit(0), (e) => { console.log(`FATAL ${e && e.stack ? e.stack : e}`); process.exit(1); });
