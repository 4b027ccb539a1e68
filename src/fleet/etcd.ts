// The fleet's etcd client (npm etcd3: leases, watches, transactions), made
// from the [cluster] section. One per daemon.
import { readFileSync } from 'node:fs';
import { Etcd3 } from 'etcd3';
import type { Config } from '../config/schema.js';

export type ClusterConfig = NonNullable<Config['cluster']>;

export function etcdClient(c: ClusterConfig): Etcd3 {
  const credentials = c.tls ? { rootCertificate: readFileSync(c.tls.ca), certChain: readFileSync(c.tls.cert), privateKey: readFileSync(c.tls.key) } : undefined;
  return new Etcd3({ hosts: c.endpoints, ...(credentials ? { credentials } : {}), dialTimeout: 3000 });
}

/** A key's value and its modification revision (0: the key does not exist), for a compare-and-swap. */
export async function getWithRev(etcd: Etcd3, k: string): Promise<{ value: string | null; rev: string }> {
  const r = await etcd.get(k).exec();
  const kv = r.kvs[0];
  return kv ? { value: kv.value.toString(), rev: kv.mod_revision } : { value: null, rev: '0' };
}

/** Every key under a prefix, with its value as text. */
export async function getPrefix(etcd: Etcd3, p: string): Promise<Map<string, string>> {
  const r = await etcd.getAll().prefix(p).strings();
  return new Map(Object.entries(r));
}
