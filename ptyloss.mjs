import { spawn } from 'node-pty';
const n = Number(process.argv[2] ?? 100);
let lost = 0;
const load = process.argv[3] === 'load';
// Busy loop in the event loop to simulate a loaded daemon.
let busy; if (load) busy = setInterval(() => { const t = Date.now(); while (Date.now() - t < 15); }, 1);
for (let i = 0; i < n; i++) {
  const p = spawn('/bin/sh', ['-c', "yes tail-line | head -n 2000; printf last-words; exit 7"], { encoding: null, cols: 80, rows: 24 });
  const chunks = [];
  p.onData((d) => chunks.push(Buffer.from(d)));
  const code = await new Promise((r) => p.onExit((e) => r(e.exitCode)));
  await new Promise((r) => setTimeout(r, 30));
  const out = Buffer.concat(chunks).toString();
  if (!out.endsWith('last-words') || out.split('tail-line').length - 1 !== 2000) { lost++; if (lost < 4) console.log('run', i, 'len', out.length, JSON.stringify(out.slice(-30)), code); }
}
clearInterval(busy);
console.log(`${lost}/${n} lost`);
