// Wire constants of exec and attach, in one place: the daemon, the CLI and
// the browser page (served as /protocol.js) all import them from here. No
// imports of its own, so a browser can load the compiled file as it is.

/** Kubernetes exec framing: one channel byte, then the payload. */
export const K8S_V5_PROTOCOL = 'v5.channel.k8s.io';
/** Our attach subprotocol: k8s v5 framing plus server events, acks and snapshots. */
export const ATTACH_PROTOCOL = 'v1.attach.enclave.dev';

export const Channel = {
  stdin: 0,
  stdout: 1,
  stderr: 2,
  /** Exit status, as the kubelet reports it (JSON). */
  status: 3,
  /** Terminal size from the client: {"Width":..,"Height":..}. */
  resize: 4,
  /** Server events (JSON), attach protocol only. */
  events: 5,
  /** Client acks of output received (decimal offset), attach protocol only. */
  ack: 6,
  /** A screen snapshot to draw before live output, attach protocol only. */
  snapshot: 7,
  /** Payload: the channel being closed (stdin). */
  close: 255,
} as const;
export type ChannelId = (typeof Channel)[keyof typeof Channel];

/** Trailers of the stream routes: "complete BYTES", set only when the stream is whole. */
export const SNAPSHOT_TRAILER = 'x-enclave-snapshot';
export const EXPORT_TRAILER = 'x-enclave-export';
