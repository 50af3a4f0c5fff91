// Redaction throughput: 1 MB of log-like text against 1,000 values (×~18 forms each). Prints bench lines.
import { randomBytes } from 'node:crypto';
import { createRedactor } from '../src/modules/redaction/index.ts';

const values = Array.from({ length: 1000 }, () => randomBytes(18).toString('base64url'));
let t = performance.now();
const r = createRedactor(values);
const buildMs = performance.now() - t;
const words = ['request', 'completed', 'status', '200', 'GET', '/v1/secrets', 'tenant', 'id', 'responseTime', 'ok', '{"a":1}'];
let text = '';
let i = 0;
while (text.length < 1_000_000) {
  text += words[i % words.length] + ' ';
  if (i % 500 === 0) text += values[i % values.length] + ' ';
  i++;
}
r.redact(text); // warm up
const rounds = 20;
t = performance.now();
for (let n = 0; n < rounds; n++) r.redact(text);
const ms = (performance.now() - t) / rounds;
console.log(`bench redaction_build_1000_values_ms ${buildMs.toFixed(1)} ms`);
console.log(`bench redaction_mb_per_s ${(text.length / 1e6 / (ms / 1000)).toFixed(1)} MB/s`);
