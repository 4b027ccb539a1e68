// Kubernetes v5.channel.k8s.io framing, as the terminal and the daemon name
// it: the codec lives in src/api/frames.ts (the client library uses it too).
export { Channel, K8S_V5_PROTOCOL, type ChannelId } from '../api/protocol.js';
export { decodeFrame, encodeFrame, exitCodeOf, exitStatusFor, type Frame } from '../api/frames.js';
