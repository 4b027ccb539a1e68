// What a stored plan says about the session it made: its root (the host
// root, or layers with overlays and an upper), and its control socket. Read
// by op name and argument name through the generated contract (readOp), so
// no caller indexes op arguments by position. Only the ops asked about are
// read: a stored plan of an older daemon, whose other ops have shapes the
// table no longer has, reads the same.
import { posix } from 'node:path';
import { readOp, type OpArgs, type OpName } from '../native/contract.gen.js';
import { controlPath, PlanError, type SessionPlan } from './plan.js';

/** An overlay of the root: a read-only layer (with the session's writes on top, if it has an upper) at a directory. */
export interface PlanOverlay {
  /** Where, relative to the session's "/" ("usr"). */
  at: string;
  /** Its layer: an index into layers. */
  layer: number;
  /** The layer's host path. */
  source: string;
}

/** A mount of the session's read-only root and the host path it shows. */
export interface RootMount {
  /** In the session, absolute ("/", "/usr"). */
  at: string;
  /** On the host. */
  source: string;
}

export class PlanView {
  /** The control socket the session's init listens on (host path). */
  readonly control: string;
  /** The rootfs op: the directory the root is bound on, and what is bound there (the host root, or the first layer). */
  readonly rootfs: { newroot: string; source: string };
  /** The idmapped read-only layers' host paths, in order (layer i is index i); empty for a host root. */
  readonly layers: readonly string[];
  /** The layer mounted as "/", or undefined (a host root). */
  readonly rootLayer: number | undefined;
  /** The writable layer's tmpfs data ("mode=0755,size=...,nr_inodes=..."), or undefined: no writable root. */
  readonly upper: string | undefined;
  /** The overlays on the root, in plan order. */
  readonly overlays: readonly PlanOverlay[];

  constructor(private readonly plan: SessionPlan) {
    this.control = controlPath(plan);
    const rootfs = one(plan, 'rootfs');
    if (!rootfs) throw new PlanError('the plan has no rootfs op');
    this.rootfs = { newroot: rootfs.newroot, source: rootfs.source };
    this.layers = all(plan, 'layer').map((l) => l.source);
    this.rootLayer = one(plan, 'root')?.layer;
    this.upper = one(plan, 'upper')?.data;
    this.overlays = all(plan, 'overlay').map((o) => ({ at: o.at, layer: o.layer, source: this.layer(o.layer, 'overlay') }));
    if (this.rootLayer !== undefined) this.layer(this.rootLayer, 'root');
  }

  private layer(n: number, what: string): string {
    const source = this.layers[n];
    if (source === undefined) throw new PlanError(`the plan's ${what} op names layer ${n}; it has ${this.layers.length}`);
    return source;
  }

  /** Where volumes are mounted, relative to the session's "/" ("srv/data"): their mount points in the layer are not the layer's files. */
  volumeTargets(): string[] {
    return all(this.plan, 'volume-at').map((v) => v.at);
  }

  /** The read-only root's mounts: "/" first, then each overlay. A host root is one mount, its rootfs. */
  mounts(): RootMount[] {
    if (this.layers.length === 0) return [{ at: '/', source: this.rootfs.source }];
    return [{ at: '/', source: this.layer(this.rootLayer ?? 0, 'root') }, ...this.overlays.map((o) => ({ at: `/${o.at}`, source: o.source }))];
  }

  /**
   * The host path that holds `path` (absolute, in the session) in the
   * session's read-only root as it was created: the deepest mount over it.
   * What the session wrote in its own layer is not looked at.
   */
  hostPath(path: string): string {
    const [m] = this.mounts()
      .filter((x) => x.at === '/' || path === x.at || path.startsWith(`${x.at}/`))
      .sort((a, b) => b.at.length - a.at.length);
    return posix.join(m!.source, path.slice(m!.at.length));
  }
}

/** A stored plan's view; throws a PlanError for a plan whose root or control it cannot read. */
export function planView(plan: SessionPlan): PlanView {
  return new PlanView(plan);
}

function all<N extends OpName>(plan: SessionPlan, name: N): OpArgs[N][] {
  return plan.ops
    .filter((o) => o.op === name)
    .map((o) => {
      let args: OpArgs[N] | undefined;
      try {
        args = readOp(o, name);
      } catch (e) {
        throw new PlanError(`the plan's ${name} op: ${(e as Error).message}`);
      }
      if (!args) throw new PlanError(`the plan's ${name} op has ${o.args.length} arguments; this daemon reads ${name} ops of another shape`);
      return args;
    });
}

function one<N extends OpName>(plan: SessionPlan, name: N): OpArgs[N] | undefined {
  return all(plan, name)[0];
}
