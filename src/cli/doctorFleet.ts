// `enclave doctor` on a fleet node ([cluster.peer]): would every other node
// take its node-to-node certificate, as the daemon checks it at start (the
// CA, the name, the revocation lists, which may revoke it), and when must
// those lists be made again (past that, every node refuses every other)?
// Warnings: a fleet node's channel is not what confines its sessions.
import type { Config } from '../config/schema.js';
import { loadPeerTls, peerMaterialProblem, type PeerTls } from '../fleet/peerTls.js';
import type { Check } from './doctor.js';

export async function fleetChecks(config: Config, now = Date.now()): Promise<Check[]> {
  const c = config.cluster;
  if (!c?.peer) return [];
  let tls: PeerTls | undefined;
  let problem: string | undefined;
  try {
    tls = loadPeerTls(c.peer);
    problem = await peerMaterialProblem(tls, c.node, now);
  } catch (e) {
    problem = (e as Error).message;
  }
  const checks: Check[] = [
    { name: 'node certificate', ok: problem === undefined, required: false, detail: problem ?? `${c.peer.cert} names node ${c.node}, signed by a CA of ${c.peer.ca}${c.peer.crl ? `, not revoked by ${c.peer.crl}` : ''}` },
  ];
  const due = tls?.revocations?.due(now);
  if (due) {
    const at = due.next.toISOString();
    const detail = { past: `past their next update (${at}): every node refuses every other; make new ones (openssl ca -gencrl) and reload every node`, soon: `to be made again before ${at}, within 3 days, or every node refuses every other`, good: `good until ${at}` }[due.state];
    checks.push({ name: 'revocation lists', ok: due.state === 'good', required: false, detail });
  }
  return checks;
}
