// `enclave node list|cordon|uncordon|drain|remove`: the fleet's nodes (fleet mode).
import { ROUTES } from '../api/routes.js';
import type { FleetNode } from '../api/fleetSchemas.js';
import { json, table } from '../api/render.js';
import { callRoute } from './client.js';

function nodeTable(me: string, nodes: readonly FleetNode[]): string {
  return table(
    ['NAME', 'STATE', 'SESSIONS', 'MEMORY MiB', 'DISK FREE MiB', 'ENDPOINT'],
    nodes.map((n) => [n.name === me ? `${n.name} *` : n.name, n.state, `${n.sessions}/${n.capacity.slots}`, `${n.used_memory_mb}/${n.capacity.memory_mb}`, String(n.capacity.disk_mb), n.endpoint]),
  );
}

export async function nodeCommand(sub: string | undefined, args: string[], o: { socket: string; json: boolean }): Promise<number> {
  if (sub === 'list') {
    const r = await callRoute(o.socket, ROUTES.nodeList);
    process.stdout.write(o.json ? json(r) : nodeTable(r.node, r.nodes));
    return 0;
  }
  const name = args[0]!;
  if (sub === 'drain') {
    const r = await callRoute(o.socket, ROUTES.nodeDrain, { body: { name } });
    if (o.json) process.stdout.write(json(r));
    else {
      // Its stopped sessions move to other nodes, with what follows them (src/fleet/moveKit.ts); the rest are listed.
      process.stdout.write(`${name} drained: no new sessions go to it, and its stopped ones move to other nodes with their secrets and volumes (those sharing a volume together; root's shared secrets only where root shares the same value); ${r.sessions.length} placed there now${r.sessions.length ? ':' : ''}\n`);
      if (r.sessions.length) process.stdout.write(table(['ID', 'NAME', 'OWNER', 'PLACED'], r.sessions.map((s) => [s.id, s.name ?? '-', String(s.owner_uid), s.placed_at])));
    }
    return 0;
  }
  if (sub === 'remove') {
    const r = await callRoute(o.socket, ROUTES.nodeRemove, { body: { name } });
    if (o.json) process.stdout.write(json(r));
    else {
      process.stdout.write(`${name} removed from the fleet${r.lost ? `; ${r.lost} of its sessions stay listed lost until their owners destroy them` : ''}\n`);
      // The removal is etcd's record alone: the node's certificate still opens every other node until the CA's list revokes it.
      process.stderr.write(`its certificate (with [cluster.peer]) still admits it to the other nodes until it expires: revoke it in [cluster.peer] crl and reload every node (docs/fleet.md, "Revoking a node")\n`);
    }
    return 0;
  }
  await callRoute(o.socket, sub === 'cordon' ? ROUTES.nodeCordon : ROUTES.nodeUncordon, { body: { name } });
  process.stdout.write(`${name} ${sub === 'cordon' ? 'cordoned: no new sessions go to it' : 'uncordoned'}\n`);
  return 0;
}
