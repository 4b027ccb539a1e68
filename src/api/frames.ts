// Kubernetes v5.channel.k8s.io framing: each binary WebSocket message is one
// channel byte followed by the payload. Shared by the daemon's exec and
// attach, the CLI and the client library (src/client).
import type { ExecStatus } from './schemas.js';

export function encodeFrame(channel: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(payload.length + 1);
  out[0] = channel;
  out.set(payload, 1);
  return out;
}

export interface Frame {
  channel: number;
  payload: Buffer;
}

export function decodeFrame(data: Buffer): Frame | undefined {
  if (data.length === 0) return undefined;
  return { channel: data[0]!, payload: data.subarray(1) };
}

/** Status for channel 3, as the kubelet reports it (128+N for a signal). */
export function exitStatusFor(code: number | null, signal: number | null): ExecStatus {
  const exit = code ?? 128 + (signal ?? 0);
  if (exit === 0) return { status: 'Success' };
  const causes = [{ reason: 'ExitCode', message: String(exit) }];
  if (signal !== null) causes.push({ reason: 'Signal', message: String(signal) });
  return {
    status: 'Failure',
    message: `command terminated with non-zero exit code: ${exit}`,
    reason: 'NonZeroExitCode',
    details: { causes },
  };
}

/** Exit code carried by a channel-3 status; undefined when it carries none. */
export function exitCodeOf(status: ExecStatus): number | undefined {
  if (status.status === 'Success') return 0;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  if (!cause) return undefined;
  const n = Number(cause.message);
  return Number.isInteger(n) && n >= 0 && n <= 255 ? n : undefined;
}
