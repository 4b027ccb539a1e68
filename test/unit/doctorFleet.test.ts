// `enclave doctor` on a fleet node (src/cli/doctorFleet.ts): its
// node-to-node certificate judged as the daemon judges it at start, and
// its revocation lists' next update, warned of three days ahead.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetChecks } from '../../src/cli/doctorFleet.js';
import { parseConfig } from '../../src/config/load.js';
import { makeCa, makeCrl, makeNodeCert } from '../../stress/fleetCerts.js';

describe('doctor on a fleet node', () => {
  const dir = mkdtempSync(join(tmpdir(), 'enclave-doctor-fleet-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const ca = makeCa(join(dir, 'pki'));
  const node = makeNodeCert(join(dir, 'pki'), ca, 'n1');
  const crl = join(dir, 'crl.pem');
  const config = (peer: string) => parseConfig(`[cluster]\nendpoints = ["http://127.0.0.1:2379"]\nnode = "n1"\n[cluster.peer]\nlisten = "127.0.0.1:7440"\n${peer}`, 'x.toml');
  const files = `ca = "${ca.ca}"\ncert = "${node.cert}"\nkey = "${node.key}"\n`;
  const shown = async (peer: string, now?: number) => (await fleetChecks(config(peer), now)).map((c) => [c.name, c.ok, c.required, c.detail]);

  it('says nothing of a node without the channel, and judges the certificate of one with it', async () => {
    expect(await fleetChecks(parseConfig('', 'x.toml'))).toEqual([]);
    expect(await shown(files)).toEqual([['node certificate', true, false, `${node.cert} names node n1, signed by a CA of ${ca.ca}`]]);
    const other = makeNodeCert(mkdtempSync(join(dir, 'o-')), ca, 'n2');
    expect(await shown(`ca = "${ca.ca}"\ncert = "${other.cert}"\nkey = "${other.key}"\n`)).toEqual([['node certificate', false, false, "cluster.peer.cert names 'n2', not this node (n1)"]]);
  });

  it('with revocation lists: revoked or not, and when they must be made again', async () => {
    // Valid 5 days: the certificates here are good for 7.
    makeCrl(ca, [], crl, 5 * 86_400);
    const good = await fleetChecks(config(`${files}crl = "${crl}"\n`));
    expect(good.map((c) => [c.name, c.ok])).toEqual([
      ['node certificate', true],
      ['revocation lists', true],
    ]);
    expect(good[0]!.detail).toBe(`${node.cert} names node n1, signed by a CA of ${ca.ca}, not revoked by ${crl}`);
    const next = Date.parse(/good until (\S+)$/.exec(good[1]!.detail)![1]!);
    expect(next).toBeGreaterThan(Date.now() + 4 * 86_400_000);
    // A day before, and past it (the certificate is then refused as the daemon would refuse it).
    expect(await shown(`${files}crl = "${crl}"\n`, next - 86_400_000)).toEqual([
      ['node certificate', true, false, expect.any(String)],
      ['revocation lists', false, false, `to be made again before ${new Date(next).toISOString()}, within 3 days, or every node refuses every other`],
    ]);
    const past = await shown(`${files}crl = "${crl}"\n`, next + 1000);
    expect(past[0]).toEqual(['node certificate', false, false, expect.stringMatching(/^cluster\.peer\.crl: the CRL of 'CN=enclave-fleet-ca' is past its next update/)]);
    expect(past[1]).toEqual(['revocation lists', false, false, expect.stringMatching(/^past their next update/)]);
    makeCrl(ca, [node.cert], crl);
    expect((await shown(`${files}crl = "${crl}"\n`))[0]).toEqual(['node certificate', false, false, 'cluster.peer.cert (or a CA above it) is revoked by cluster.peer.crl: every node refuses this node']);
  });
});
