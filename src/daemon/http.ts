// Small HTTP helpers: bounded JSON bodies, JSON replies, JSON errors.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError } from '../vocab/errors.js';

export const MAX_BODY_BYTES = 64 * 1024;

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  sendJsonText(res, status, JSON.stringify(body), headers);
}

/** JSON serialized already (src/daemon/madeLists.ts): its text, its bytes, or its bytes in a few buffers (a list: written corked, one writev, not copied into one). */
export function sendJsonText(res: ServerResponse, status: number, text: string | Buffer | readonly Buffer[], headers: Record<string, string> = {}): void {
  const length = typeof text === 'string' ? Buffer.byteLength(text) : Buffer.isBuffer(text) ? text.length : text.reduce((n, b) => n + b.length, 0);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': length, 'x-content-type-options': 'nosniff' });
  if (typeof text === 'string' || Buffer.isBuffer(text)) {
    res.end(text);
    return;
  }
  // Corked: one writev for all of them (end() uncorks).
  res.cork();
  for (const b of text) res.write(b);
  res.end();
}

export function sendError(res: ServerResponse, err: ApiError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, err.status, err.toJSON());
}

/** Read and parse a JSON body of at most MAX_BODY_BYTES. */
export function readJsonBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const type = req.headers['content-type'];
    if (type !== undefined && !/^application\/json\b/i.test(type)) {
      reject(new ApiError('unsupported_media_type', `content-type must be application/json, got '${type}'`));
      req.resume();
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      reject(new ApiError('payload_too_large', `body of ${declared} bytes exceeds the limit of ${MAX_BODY_BYTES}`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        failed = true;
        reject(new ApiError('payload_too_large', `body exceeds the limit of ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('error', (e) => reject(e));
    req.on('end', () => {
      if (failed) return;
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve({});
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(new ApiError('invalid_request', `body is not valid JSON: ${(e as Error).message}`));
      }
    });
  });
}
