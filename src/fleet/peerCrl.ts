// What the fleet CA's revocation lists ([cluster.peer] crl) say, read once
// per reload: which certificates they revoke, whether each CA of the CA file
// has its list, and when each must be made again. OpenSSL checks every new
// handshake against the same lists (peerTls.ts); this is for what OpenSSL
// does not look at again: connections already open when the lists change,
// and a handshake begun under the lists before. The lists are parsed with
// @peculiar/asn1-x509; their signatures are OpenSSL's to check.
import { X509Certificate } from 'node:crypto';
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

/** A serial number as hex digits, upper case, without leading zeros (Node's and the CRL's alike). */
const serial = (hex: string) => hex.toUpperCase().replace(/^0+(?=.)/, '');

const subjectDer = (c: X509Certificate) => Buffer.from(AsnConvert.serialize(AsnConvert.parse(c.raw, Certificate).tbsCertificate.subject));
const issuerDer = (c: X509Certificate) => Buffer.from(AsnConvert.serialize(AsnConvert.parse(c.raw, Certificate).tbsCertificate.issuer));

interface List {
  /** The issuer's name (DER) and, if it is one of the CA file's, that CA. */
  issuer: Buffer;
  ca: X509Certificate | undefined;
  serials: Set<string>;
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
      return {
        issuer,
        ca: cas.find((c) => c.subject.equals(issuer))?.c,
        serials: new Set((tbs.revokedCertificates ?? []).map((r) => serial(Buffer.from(r.userCertificate).toString('hex')))),
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
   * Whether a list revokes this certificate or a CA certificate above it in
   * the chain the peer sent (by its issuer's list and its serial number).
   */
  revokes(cert: X509Certificate): boolean {
    if (!this.any) return false;
    // A peer's certificate points to its issuer's when the peer sent the chain (its root: to itself).
    for (let c: X509Certificate | undefined = cert, depth = 0; c && depth < 6; c = c.issuerCertificate?.fingerprint256 === c.fingerprint256 ? undefined : c.issuerCertificate, depth++) {
      const at = c;
      const s = serial(at.serialNumber);
      const hit = this.lists.filter((l) => l.serials.has(s));
      // Its issuer: a CA of the file that issued it (OpenSSL compares), else by name (a list of an intermediate: rare, parsed).
      if (hit.some((l) => (l.ca ? at.checkIssued(l.ca) : l.issuer.equals(issuerDer(at))))) return true;
    }
    return false;
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

  /** The first time a list of a CA of the file must be made again by, if any says. */
  get nextUpdate(): Date | undefined {
    const times = this.lists.filter((l) => l.ca && l.nextUpdate).map((l) => l.nextUpdate!.getTime());
    return times.length ? new Date(Math.min(...times)) : undefined;
  }
}

/** A certificate's subject on one line. */
function name(c: X509Certificate): string {
  return c.subject.replace(/\n/g, ', ');
}
