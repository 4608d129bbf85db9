// Collection workload for pausewatch's V8 (Node.js) end-to-end test.
//
// Allocates short-lived objects at a high rate (young-generation
// collections: scavenges), keeps a rolling window of larger arrays alive
// long enough to be promoted and then dropped (old-generation growth, so
// V8 starts incremental marking and finishes it with Mark-Compact pauses),
// and asks for an explicit full collection now and then (`gc()`, needs
// --expose-gc). Reports its own run time and throughput when done.
//
// Run as: node --expose-gc --trace-gc --no-memory-reducer gc_alloc.js [SECONDS]
//
// Protocol (stderr, see xtask/src/scripted.rs): prints
// `pausewatch-workload: ready`, waits for a line on stdin, runs for SECONDS
// (default 3), prints `pausewatch-workload: done {json}` and exits when
// stdin closes. V8 prints the --trace-gc lines on stdout.
//
// The trace must cover exactly the collections the tracer sees. So the
// trace is switched on (v8.setFlagsFromString) only when the measured
// phase starts, after the tracer has attached, and off when it ends; the
// phase ends with a full collection, which also finishes any incremental
// marking in flight, so that no collection is left pending for a V8 task
// to run after the trace is off. --no-memory-reducer keeps V8 from running
// a memory-reducing collection on its own while the process idles.
'use strict';

const v8 = require('v8');

const PREFIX = 'pausewatch-workload: ';
const seconds = Number(process.argv[2] || 3);

function say(text) {
  // Synchronous for pipes and files on Linux, so lines are never lost.
  process.stderr.write(PREFIX + text + '\n');
}

if (typeof globalThis.gc !== 'function') {
  say('error this workload needs --expose-gc');
  process.exit(2);
}

function run() {
  v8.setFlagsFromString('--trace-gc');
  const t0 = process.hrtime.bigint();
  const deadline = t0 + BigInt(Math.round(seconds * 1e9));
  let young = [];
  let old = [];
  let rounds = 0;
  let checksum = 0;
  while (process.hrtime.bigint() < deadline) {
    for (let i = 0; i < 5000; i++) {
      young.push({ id: i, pair: [i, rounds] });
      if (young.length > 20000) young = [];
    }
    old.push(new Array(20000).fill(rounds));
    if (old.length > 400) old = old.slice(200);
    checksum = (checksum + young.length + old.length) | 0;
    rounds++;
    if (rounds % 2000 === 0) globalThis.gc();
  }
  young = null;
  old = null;
  globalThis.gc();
  v8.setFlagsFromString('--notrace-gc');
  const elapsedNs = Number(process.hrtime.bigint() - t0);
  say('done ' + JSON.stringify({
    elapsed_ns: elapsedNs,
    rounds: rounds,
    rounds_per_second: rounds / (elapsedNs / 1e9),
    checksum: checksum,
  }));
}

let started = false;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  if (!started && chunk.includes('\n')) {
    started = true;
    run();
  }
});
process.stdin.on('end', () => process.exit(0));
say('ready');
