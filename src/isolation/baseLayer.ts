// The base layer of the default ("minimal") session root: what an operating
// system needs besides /usr, and nothing of the host's data. Built once per
// content (a hash of what it copies) under <state_dir>/rootfs, then shared
// read-only, idmapped, by every session; the host's /usr is the other layer.
//
//   /etc   an allowlist of the host's world-readable OS configuration
//          (loader cache, alternatives, PAM, apt/dpkg, certificates, ...),
//          with passwd/group/shadow generated from the host's system
//          accounts only (uid/gid < 1000 and nobody), no member lists, every
//          password locked; empty hosts and resolv.conf for the session's binds;
//          containers/ (podman's policy.json and registries.conf: without
//          them podman refuses every image, even a locally imported one)
//   /var   empty, but for a copy of the dpkg database (so dpkg and apt agree
//          with the /usr they see)
//   /bin /sbin /lib* merged-/usr links; empty /srv /opt /mnt /media /home /root
//
// A file is copied only if every user may read it on the host: a session
// sees nothing here it could not already read through the host's /usr.
import { createHash } from 'node:crypto';
import {
  chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync,
  type Stats,
} from 'node:fs';
import { join } from 'node:path';

/** Bumped when what the builder makes changes, so an old base is not reused. */
const FORMAT = 'base-v1';

/** /etc entries an OS userland needs (a directory is taken whole, filtered). */
export const ETC_ALLOW = [
  'adduser.conf', 'alternatives', 'apt', 'bash.bashrc', 'bindresvport.blacklist', 'ca-certificates', 'ca-certificates.conf', 'containers', 'debconf.conf',
  'debian_version', 'deluser.conf', 'dpkg', 'environment', 'ethertypes', 'gai.conf', 'gitconfig', 'host.conf', 'inputrc', 'issue', 'issue.net',
  'ld.so.cache', 'ld.so.conf', 'ld.so.conf.d', 'locale.alias', 'locale.gen', 'localtime', 'login.defs', 'magic', 'magic.mime', 'mime.types',
  'mke2fs.conf', 'nanorc', 'networks', 'nsswitch.conf', 'os-release', 'pam.conf', 'pam.d', 'perl', 'profile', 'profile.d', 'protocols',
  'python3', 'python3.11', 'rpc', 'security', 'services', 'shells', 'skel', 'ssl', 'terminfo', 'timezone', 'vim', 'xattr.conf',
];

/** Top-level directories of the root, with their modes; usr is /usr's mount point. */
const ROOT_DIRS: [string, number][] = [
  ['usr', 0o755], ['etc', 0o755], ['var', 0o755], ['home', 0o755], ['tmp', 0o1777], ['run', 0o755], ['proc', 0o555], ['sys', 0o555],
  ['dev', 0o755], ['root', 0o700], ['srv', 0o755], ['opt', 0o755], ['mnt', 0o755], ['media', 0o755],
];

const VAR_DIRS: [string, number][] = [
  ['backups', 0o755], ['cache', 0o755], ['lib', 0o755], ['local', 0o755], ['log', 0o755], ['mail', 0o2775], ['opt', 0o755], ['spool', 0o755], ['tmp', 0o1777],
];

export class BaseLayerError extends Error {}

interface Entry {
  rel: string;
  st: Stats;
  link?: string;
}

const worldReadable = (st: Stats) => (st.isDirectory() ? (st.mode & 0o005) === 0o005 : (st.mode & 0o004) !== 0);

/** The host entries below `root` the base copies: allowlisted, world-readable, regular files, directories and links only. */
function collect(root: string, names: string[], out: Entry[], prefix: string): void {
  for (const name of names) {
    const rel = join(prefix, name);
    let st: Stats;
    try {
      st = lstatSync(join(root, name));
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) out.push({ rel, st, link: readlinkSync(join(root, name)) });
    else if (!worldReadable(st)) continue;
    else if (st.isFile()) out.push({ rel, st });
    else if (st.isDirectory()) {
      out.push({ rel, st });
      collect(join(root, name), readdirSync(join(root, name)).sort(), out, rel);
    }
  }
}

/** The host's system accounts only: no operator's name or home, no member lists, no passwords. */
export function systemAccounts(passwd: string, group: string): { passwd: string; group: string; shadow: string; gshadow: string } {
  const keep = (id: string) => Number(id) < 1000 || Number(id) === 65534;
  const users = passwd.split('\n').map((l) => l.split(':')).filter((f) => f.length === 7 && /^\d+$/.test(f[2]!) && keep(f[2]!));
  const groups = group.split('\n').map((l) => l.split(':')).filter((f) => f.length === 4 && /^\d+$/.test(f[2]!) && keep(f[2]!));
  return {
    passwd: users.map((f) => [f[0], 'x', f[2], f[3], f[4], f[5], f[6]].join(':') + '\n').join(''),
    group: groups.map((f) => [f[0], 'x', f[2], ''].join(':') + '\n').join(''),
    shadow: users.map((f) => `${f[0]}:*:19000:0:99999:7:::\n`).join(''),
    gshadow: groups.map((f) => `${f[0]}:*::\n`).join(''),
  };
}

/** Merged /usr is what the base's links assume; the host must have it. */
function mergedUsrLinks(hostRoot: string): [string, string][] {
  const links: [string, string][] = [];
  for (const name of ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32']) {
    const p = join(hostRoot, name);
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    if (!st.isSymbolicLink()) {
      if (name === 'bin' || name === 'sbin' || name === 'lib') {
        throw new BaseLayerError(`the host's /${name} is not a link into /usr: the minimal session root needs a merged-/usr host (Debian 12 and later); set sessions.rootfs to a root directory instead`);
      }
      continue;
    }
    links.push([name, readlinkSync(p)]);
  }
  return links;
}

export interface BaseLayer {
  path: string;
  /** Built now (false: an identical one was there). */
  built: boolean;
}

/**
 * The base layer for this host's current /etc and dpkg database: reused when
 * its content hash matches, else built beside and renamed into place (a
 * crash leaves a .tmp the next start removes). `maxId` bounds the owners it
 * keeps: a file whose owner the session's range cannot show becomes root's.
 */
export function prepareBaseLayer(rootfsDir: string, maxId: number, hostRoot = '/'): BaseLayer {
  const links = mergedUsrLinks(hostRoot);
  const etc: Entry[] = [];
  collect(join(hostRoot, 'etc'), ETC_ALLOW, etc, 'etc');
  const dpkg: Entry[] = [];
  collect(join(hostRoot, 'var/lib'), ['dpkg'], dpkg, 'var/lib');
  const passwd = readFileSync(join(hostRoot, 'etc/passwd'), 'utf8');
  const group = readFileSync(join(hostRoot, 'etc/group'), 'utf8');

  const h = createHash('sha256').update(FORMAT).update(JSON.stringify(links)).update(passwd).update(group).update(String(maxId));
  for (const e of [...etc, ...dpkg]) h.update(`${e.rel}\0${e.st.mode}\0${e.st.uid}\0${e.st.gid}\0${e.st.size}\0${e.st.mtimeMs}\0${e.link ?? ''}\n`);
  const name = `base-${h.digest('hex').slice(0, 16)}`;
  const path = join(rootfsDir, name);
  mkdirSync(rootfsDir, { recursive: true, mode: 0o700 });
  if (existsSync(path)) return { path, built: false };

  const tmp = `${path}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { mode: 0o755 });
  const own = (p: string, st: Stats) => chownSync(p, st.uid < maxId ? st.uid : 0, st.gid < maxId ? st.gid : 0);
  try {
    chmodExact(tmp, 0o755);
    for (const [dir, mode] of ROOT_DIRS) mkdirSync(join(tmp, dir), { mode });
    for (const [dir, mode] of VAR_DIRS) mkdirSync(join(tmp, 'var', dir), { mode });
    for (const [dir, mode] of [...ROOT_DIRS, ...VAR_DIRS.map(([d, m]) => [`var/${d}`, m] as [string, number])]) chmodExact(join(tmp, dir), mode);
    for (const [link, target] of links) symlinkSync(target, join(tmp, link));
    symlinkSync('/run', join(tmp, 'var/run'));
    symlinkSync('/run/lock', join(tmp, 'var/lock'));
    for (const e of [...etc, ...dpkg]) {
      const dst = join(tmp, e.rel);
      if (e.link !== undefined) symlinkSync(e.link, dst);
      else if (e.st.isDirectory()) mkdirSync(dst, { mode: e.st.mode & 0o7777 });
      else copyFileSync(join(hostRoot, e.rel), dst);
      if (e.link === undefined) {
        chmodExact(dst, e.st.mode & 0o7777);
        own(dst, e.st);
      }
    }
    const acc = systemAccounts(passwd, group);
    const shadowGid = Number(group.split('\n').map((l) => l.split(':')).find((f) => f[0] === 'shadow')?.[2] ?? 0);
    const write = (rel: string, body: string, mode: number, gid = 0) => {
      writeFileSync(join(tmp, rel), body, { mode });
      chmodExact(join(tmp, rel), mode);
      chownSync(join(tmp, rel), 0, gid < maxId ? gid : 0);
    };
    write('etc/passwd', acc.passwd, 0o644);
    write('etc/group', acc.group, 0o644);
    write('etc/shadow', acc.shadow, 0o640, shadowGid);
    write('etc/gshadow', acc.gshadow, 0o640, shadowGid);
    // Bind targets for the session's own files, and what tools expect to find.
    write('etc/hosts', '', 0o644);
    write('etc/resolv.conf', '', 0o644);
    write('etc/hostname', '', 0o644);
    write('etc/machine-id', '', 0o444);
    symlinkSync('../proc/self/mounts', join(tmp, 'etc/mtab'));
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw new BaseLayerError(`cannot build the session base layer in ${rootfsDir}: ${(e as Error).message}`);
  }
  return { path, built: true };
}

/** umask must not narrow a mode the base asks for. */
function chmodExact(p: string, mode: number): void {
  chmodSync(p, mode);
}

/** Base layers and leftover builds no session uses any more. */
export function sweepBaseLayers(rootfsDir: string, inUse: Set<string>): string[] {
  if (!existsSync(rootfsDir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(rootfsDir)) {
    const p = join(rootfsDir, name);
    if (!name.startsWith('base-') || inUse.has(p)) continue;
    rmSync(p, { recursive: true, force: true });
    removed.push(p);
  }
  return removed;
}
