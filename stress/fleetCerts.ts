// The fleet's node-to-node TLS material for one run (npm run fleet, the
// fleet tests): a CA made for the run and, per node, a key and a
// certificate signed by it whose CN (and DNS name) is the node name, good
// as server and client (mutual TLS). openssl from Debian (.ci/setup):
// Node's crypto can make keys but not sign certificates.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface NodeCert {
  cert: string;
  key: string;
}

function openssl(args: string[]): void {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.error?.message ?? r.stderr.trim().split('\n').pop()}`);
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A CA (ca.crt, ca.key) in `dir`, made for this run only. */
export function makeCa(dir: string, cn = 'enclave-fleet-ca'): { ca: string; caKey: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  openssl(['req', '-x509', ...EC, '-keyout', caKey, '-out', ca, '-days', '7', '-subj', `/CN=${cn}`]);
  chmodSync(caKey, 0o600);
  return { ca, caKey };
}

/** A node's key and certificate (CN and DNS name: the node; `ips`: its IP names too), signed by the CA. */
export function makeNodeCert(dir: string, ca: { ca: string; caKey: string }, node: string, ips: string[] = []): NodeCert {
  const key = join(dir, `${node}.key`);
  const cert = join(dir, `${node}.crt`);
  const csr = join(dir, `${node}.csr`);
  const ext = join(dir, `${node}.ext`);
  writeFileSync(ext, `subjectAltName=${[`DNS:${node}`, ...ips.map((ip) => `IP:${ip}`)].join(',')}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl(['req', ...EC, '-keyout', key, '-out', csr, '-subj', `/CN=${node}`]);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.ca, '-CAkey', ca.caKey, '-CAcreateserial', '-out', cert, '-days', '7', '-extfile', ext]);
  chmodSync(key, 0o600);
  return { cert, key };
}

/** The [cluster.peer] section of a node's config; `crl`: the CA's revocation list, if the fleet keeps one. */
export function peerSection(listen: string, ca: string, c: NodeCert, crl?: string): string {
  return `[cluster.peer]\nlisten = "${listen}"\nca = "${ca}"\ncert = "${c.cert}"\nkey = "${c.key}"\n${crl ? `crl = "${crl}"\n` : ''}`;
}

/**
 * The CA's revocation list (PEM) at `out`, revoking exactly `certs` (their
 * files), valid `seconds` from now: what [cluster.peer] crl and etcd's
 * --client-crl-file read. `openssl ca` keeps its database in a directory of
 * its own, made afresh for each list and removed after.
 */
export function makeCrl(ca: { ca: string; caKey: string }, certs: string[], out: string, seconds = 7 * 86_400): void {
  const db = mkdtempSync(join(dirname(out), '.crl-'));
  try {
    const cnf = join(db, 'ca.cnf');
    writeFileSync(join(db, 'index.txt'), '');
    // The CA's key identifier in the list, so OpenSSL tells apart the lists of two CAs of one name (a CA rekeyed).
    writeFileSync(cnf, `[ca]\ndefault_ca = fleet\n[fleet]\ndatabase = ${join(db, 'index.txt')}\ncertificate = ${ca.ca}\nprivate_key = ${ca.caKey}\ndefault_md = sha256\ncrl_extensions = crl_ext\n[crl_ext]\nauthorityKeyIdentifier = keyid:always\n`);
    for (const c of certs) openssl(['ca', '-config', cnf, '-revoke', c]);
    openssl(['ca', '-config', cnf, '-gencrl', '-crlsec', String(seconds), '-out', out]);
  } finally {
    rmSync(db, { recursive: true, force: true });
  }
}
