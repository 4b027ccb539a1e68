// A JSON answer sent as a few buffers (a list: src/daemon/listJson.ts
// listParts) arrives as the same bytes, with their whole length announced.
import { createServer, request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sendJsonText } from '../../src/daemon/http.js';

function served(text: Parameters<typeof sendJsonText>[2]): Promise<{ length: string | undefined; body: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'send-json-'));
  const socketPath = join(dir, 's');
  const server = createServer((_req, res) => sendJsonText(res, 200, text));
  const answer = new Promise<{ length: string | undefined; body: string }>((resolve, reject) => {
    server.listen(socketPath, () => {
      const req = request({ socketPath, path: '/' }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ length: res.headers['content-length'], body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  });
  return answer.finally(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
}

describe('a JSON answer in buffers', () => {
  it('arrives whole, its length the sum of its parts, as a string or one buffer does', async () => {
    const parts = [Buffer.from('{"sessions":['), Buffer.from('{"id":"s-1","name":"é"}'), Buffer.from(',{"id":"s-2"}]}')];
    const whole = parts.map((b) => b.toString()).join('');
    expect(await served(parts)).toEqual({ length: String(Buffer.byteLength(whole)), body: whole });
    expect(await served(whole)).toEqual({ length: String(Buffer.byteLength(whole)), body: whole });
    expect(await served(Buffer.from(whole))).toEqual({ length: String(Buffer.byteLength(whole)), body: whole });
    expect(await served([])).toEqual({ length: '0', body: '' });
  });
});
