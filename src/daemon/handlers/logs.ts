// GET /v1/sessions/{session}/logs[?follow=1]: the console's output as text,
// from its replay ring (terminal.ring_bytes), escape sequences stripped
// (src/terminal/plainText.ts). With follow, new output is sent as it comes
// (the ring is looked at every 100 ms) until the client goes or the console
// ends. A session without a running console says so; none is started.
import { ApiError } from '../../vocab/errors.js';
import { PlainText, skipPartialCharacter } from '../../terminal/plainText.js';
import type { Handlers } from '../dispatch.js';

const POLL_MS = 100;

export const logHandlers: Pick<Handlers, 'sessionLogs'> = {
  sessionLogs: {
    detail: ({ query }) => (query.follow ? 'logs --follow' : 'logs'),
    run: async (ctx, { target: row, query }, res) => {
      if (row.state !== 'running') throw new ApiError('conflict', `session ${row.id} is ${row.state}, not running: it has no console`);
      const console = ctx.consoles.running(row.id);
      if (!console) throw new ApiError('conflict', `session ${row.id} has no console: it starts on the first attach (enclave session attach), or at create with --console`);
      const ring = console.ring;
      const text = new PlainText();
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' });
      let offset = ring.end;
      res.write(text.push(skipPartialCharacter(ring.since(ring.start)!)));
      if (!query.follow) return void res.end();
      await new Promise<void>((done) => {
        let waiting = false;
        const stop = () => {
          clearInterval(timer);
          done();
        };
        const tick = () => {
          if (res.destroyed || res.writableEnded) return stop();
          if (waiting) return;
          const gone = ctx.consoles.running(row.id) !== console;
          let chunk = ring.since(offset);
          if (chunk === undefined) {
            // Output outran us (more than the ring between two looks, or a client that did not read).
            res.write(`\n[enclave: ${ring.start - offset} bytes of the console's output went by unsent]\n`);
            offset = ring.start;
            chunk = ring.since(offset)!;
          }
          offset += chunk.length;
          const t = chunk.length ? text.push(chunk) : undefined;
          if (t && t.length && !res.write(t)) {
            waiting = true;
            res.once('drain', () => (waiting = false));
          }
          if (gone) {
            res.end();
            stop();
          }
        };
        const timer = setInterval(tick, POLL_MS);
        res.on('close', stop);
      });
    },
  },
};
