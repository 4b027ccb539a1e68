// What the fleet CA's revocation lists ([cluster.peer] crl) say, read once
// per reload: which certificates they revoke, whether each CA of the CA file
// has its list, and when each must be made again. OpenSSL checks every new
// handshake against the same lists (peerTls.ts); this is for what OpenSSL
// does not look at again: connections already open when the lists change,
// and a handshake begun under the lists before. The lists are parsed with
// @peculiar/asn1-x509; their signatures are OpenSSL's to check.
import { verify, X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate, CertificateList } from '@peculiar/asn1-x509';

/** Every CRL of a PEM file: OpenSSL takes one per call, so they are handed over one by one. */
export function crlBlocks(pem: Buffer): string[] {
  return pem.toString().match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g) ?? [];
}

/** Every certificate of a PEM file, in order. */
export function certsIn(pem: Buffer): X509Certificate[] {
  return (pem.toString().match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

/** A serial number as Node gives it (hex, a '-' if negative: OpenSSL's BN_bn2hex), as a number. */
const nodeSerial = (hex: string) => (hex.startsWith('-') ? -BigInt(`0x${hex.slice(1)}`) : BigInt(`0x${hex}`));
/** A serial number as a CRL holds it (DER INTEGER content: two's complement), as a number. */
function derSerial(b: Buffer): bigint {
  const v = BigInt(`0x${b.toString('hex') || '0'}`);
  return b.length > 0 && b[0]! >= 0x80 ? v - (1n << BigInt(8 * b.length)) : v;
}

/** The hash a CRL's signature algorithm names, for crypto.verify (null: the algorithm has its own, Ed25519). */
const SIGNATURE_HASHES: Record<string, string | null> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.3.101.112': null,
};

/** Whether `ca` signed this CRL (a CA of the same name that did not, during a move to a new CA key, is another's). */
function signedBy(list: CertificateList, ca: X509Certificate): boolean {
  const hash = SIGNATURE_HASHES[list.signatureAlgorithm.algorithm];
  if (hash === undefined || !list.tbsCertListRaw) return false;
  try {
    return verify(hash, Buffer.from(list.tbsCertListRaw), ca.publicKey, Buffer.from(list.signature));
  } catch {
    return false;
  }
}

const subjectDer = (c: X509Certificate) => Buffer.from(AsnConvert.serialize(AsnConvert.parse(c.raw, Certificate).tbsCertificate.subject));
const issuerDer = (c: X509Certificate) => Buffer.from(AsnConvert.serialize(AsnConvert.parse(c.raw, Certificate).tbsCertificate.issuer));

interface List {
  /** The issuer's name (DER) and, if it is one of the CA file's, that CA. */
  issuer: Buffer;
  ca: X509Certificate | undefined;
  serials: Set<bigint>;
  nextUpdate: Date | undefined;
}

export class Revocations {
  private constructor(
    private readonly lists: List[],
    private readonly cas: X509Certificate[],
  ) {}

  /** The lists of a CRL file, each matched to its CA in the CA file; throws one line if one does not parse. */
  static read(crl: Buffer, ca: Buffer): Revocations {
    const cas = certsIn(ca).map((c) => ({ c, subject: subjectDer(c) }));
    const lists = crlBlocks(crl).map((pem, i) => {
      let parsed: CertificateList;
      try {
        parsed = AsnConvert.parse(Buffer.from(pem.replace(/-----(BEGIN|END) X509 CRL-----/g, '').replace(/\s+/g, ''), 'base64'), CertificateList);
      } catch (e) {
        throw new Error(`cluster.peer.crl: its CRL number ${i + 1} does not parse: ${(e as Error).message}`);
      }
      const tbs = parsed.tbsCertList;
      const issuer = Buffer.from(AsnConvert.serialize(tbs.issuer));
      const named = cas.filter((c) => c.subject.equals(issuer));
      const ca = named.find((c) => signedBy(parsed, c.c))?.c;
      if (named.length > 0 && !ca) throw new Error(`cluster.peer.crl: its CRL number ${i + 1} names the CA '${name(named[0]!.c)}' of cluster.peer.ca as its issuer, and that CA did not sign it`);
      return {
        issuer,
        ca,
        serials: new Set((tbs.revokedCertificates ?? []).map((r) => derSerial(Buffer.from(r.userCertificate)))),
        nextUpdate: tbs.nextUpdate?.getTime(),
      };
    });
    return new Revocations(lists, cas.map((c) => c.c));
  }

  /** Whether any list revokes anything (else nothing need be looked at). */
  get any(): boolean {
    return this.lists.some((l) => l.serials.size > 0);
  }

  /**
   * Whether a list revokes a certificate of this chain (the peer's, then the
   * CA certificates above it that it sent), each by its issuer's list and
   * its serial number.
   */
  revokes(chain: readonly X509Certificate[]): boolean {
    if (!this.any) return false;
    try {
      return chain.some((c) => this.lists.some((l) => l.serials.has(nodeSerial(c.serialNumber)) && (l.ca ? c.checkIssued(l.ca) : l.issuer.equals(issuerDer(c)))));
    } catch {
      return true; // a certificate the peer sent that does not parse, named by a list (an intermediate's): refused, as unknown
    }
  }

  /** What every node would refuse the fleet for: a CA of the file with no list, or a list past its next update. One line, or undefined. */
  problem(now: number): string | undefined {
    for (const ca of this.cas) {
      if (!this.lists.some((l) => l.ca === ca)) return `cluster.peer.crl holds no CRL of the CA '${name(ca)}' of cluster.peer.ca (with a CRL file, every CA needs its own, an empty one if it revoked nothing)`;
    }
    const late = this.lists.find((l) => l.nextUpdate && l.nextUpdate.getTime() < now);
    if (late) return `cluster.peer.crl: the CRL of '${late.ca ? name(late.ca) : 'a CA not in cluster.peer.ca'}' is past its next update (${late.nextUpdate!.toISOString()}): make a new one (openssl ca -gencrl), or every node refuses the others`;
    return undefined;
  }

  /** The first time a list must be made again by, if any says (an intermediate's too: OpenSSL needs it as well). */
  get nextUpdate(): Date | undefined {
    const times = this.lists.filter((l) => l.nextUpdate).map((l) => l.nextUpdate!.getTime());
    return times.length ? new Date(Math.min(...times)) : undefined;
  }

  /** Whether the lists are to be made again soon (within three days: said then, by the daemon's log and doctor), or past it. */
  due(now: number): { next: Date; state: 'good' | 'soon' | 'past' } | undefined {
    const next = this.nextUpdate;
    if (!next) return undefined;
    const left = next.getTime() - now;
    return { next, state: left < 0 ? 'past' : left < 3 * 86_400_000 ? 'soon' : 'good' };
  }
}

/** A certificate's subject on one line. */
function name(c: X509Certificate): string {
  return c.subject.replace(/\n/g, ', ');
}
