// A terminal's size as viewers ask for it: clamped, because a viewer's
// numbers size the pty and the screen mirror the daemon keeps.
import { z } from 'zod';

export interface Size {
  cols: number;
  rows: number;
}

const MAX_COLS = 1000;
const MAX_ROWS = 500;

export function clampSize(s: Size): Size {
  const clamp = (v: number, max: number) => Math.min(max, Math.max(1, Math.floor(Number.isFinite(v) ? v : 1)));
  return { cols: clamp(s.cols, MAX_COLS), rows: clamp(s.rows, MAX_ROWS) };
}

// The resize frame's payload (Docker's shape: {"Width":N,"Height":N}).
const ResizeFrame = z.object({ Width: z.number(), Height: z.number() });

export function parseResize(payload: Buffer): Size | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  const v = ResizeFrame.safeParse(raw);
  return v.success ? clampSize({ cols: v.data.Width, rows: v.data.Height }) : undefined;
}
