import { describe, expect, it } from 'vitest';
import { Channel, decodeFrame, encodeFrame, exitCodeOf, exitStatusFor } from '../../src/terminal/channels.js';

describe('k8s v5 channel framing', () => {
  it('round-trips binary payloads byte for byte', () => {
    const payload = Buffer.from([0, 255, 0xf0, 0x9f, 0x98, 0x80, 10]);
    const f = decodeFrame(encodeFrame(Channel.stdout, payload))!;
    expect(f.channel).toBe(1);
    expect(Buffer.compare(f.payload, payload)).toBe(0);
    expect(decodeFrame(Buffer.alloc(0))).toBeUndefined();
  });
  it('reports exit codes the way the kubelet does', () => {
    expect(exitStatusFor(0, null)).toEqual({ status: 'Success' });
    const failed = exitStatusFor(3, null);
    expect(failed.reason).toBe('NonZeroExitCode');
    expect(exitCodeOf(failed)).toBe(3);
    const killed = exitStatusFor(null, 9);
    expect(exitCodeOf(killed)).toBe(137);
    expect(killed.details?.causes).toContainEqual({ reason: 'Signal', message: '9' });
    expect(exitCodeOf({ status: 'Failure' })).toBeUndefined();
  });
});
