// The steps a session is made of, in order, each with its undo:
//   reserve -> cgroups -> firewall -> files -> plan -> launch -> watch -> restore -> prepare -> boot -> publish
// Create and start run them up (src/sessions/pipeline.ts); a failed step
// undoes it and every step before it; stop and destroy undo them all (a
// stop's reserve undo keeps the name, address, ports, volumes and secrets);
// a re-adopted session enters at "watch". Undos come from what is recorded (the row, its kernel objects),
// so they work the same after a crash, and the kernel comes before the
// database: a full disk never leaves a session's processes, cgroups or link.
import { existsSync, rmSync } from 'node:fs';
import { ApiError } from '../vocab/errors.js';
import type { Limits } from '../vocab/limitTable.js';
import { cgroupPids, createSessionCgroup, killCgroup, removeCgroup, sessionCgroupDirs, sessionCgroupView, versionOf, type CgroupDir } from '../isolation/cgroups.js';
import { bootPlanFor } from '../isolation/bootPlan.js';
import { delegateCgroup, delegationRefused, removeDescendants } from '../isolation/cgroupDelegation.js';
import { placeSession } from '../isolation/cpuPlacement.js';
import { rangeForSlot } from '../isolation/idRange.js';
import type { SessionPlan } from '../isolation/plan.js';
import { planView } from '../isolation/planView.js';
import { addon } from '../native/addon.js';
import { hostIfName, intToIp } from '../network/addressing.js';
import { linkExists } from '../network/hostNetwork.js';
import { writeSessionFiles } from '../network/sessionFiles.js';
import type { CreateSecrets } from '../secrets/sessionSecrets.js';
import { dropSnapshotCgroups } from '../snapshots/snapshotCgroups.js';
import type { SessionRow } from '../store/sessionStore.js';
import { fullDisk, pruneHistory, type Kit } from './kit.js';
import { describeFailure, launchInit } from './launch.js';
import type { Step } from './pipeline.js';
import { planFor, sessionDir } from './planning.js';
import type { Session } from './session.js';
import { prepareArgv, prepareSession } from './prepare.js';
import { removeStored, restoreFiles } from './stored.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long a booted systemd may take to open its bus before the create or start fails. */
const BOOT_READY_MS = 60_000;

/** What the steps of one session pass along. */
export interface Bring {
  kit: Kit;
  session: Session;
  /** Set by reserve (create), or the recorded row (adoption, destroy). */
  row?: SessionRow;
  /** Reserves the row: the store's insert, with the owner's budget in its transaction (create only). */
  reserve?: () => SessionRow;
  secrets?: CreateSecrets;
  dirs: CgroupDir[];
  limits: Limits;
  /** The session's own hosts and resolv.conf, bound over the root's. */
  files?: { source: string; target: string }[];
  plan?: SessionPlan;
  launched?: { pid: number; startTime: string };
  /** A link the kernel is still removing: its lease is held until it is gone. */
  linkPending?: string;
  /** How the session ends when its steps are undone: stopped keeps what a start needs (and its stored files). */
  end: { state: 'stopped' | 'destroyed' | 'failed'; error?: string | undefined; storedBytes?: number | undefined };
  /** A start: the stored files to replay once its init runs. */
  restoreFrom?: { path: string; zstd: boolean };
  /** Re-adoption after a restart: the ports' elements are in the table already; a host port that cannot be held again is logged, not fatal. */
  adopting?: boolean;
  /** Volumes mounted read-write in this run whatever the session declares (CreateExtra.writable: a drain's copy). */
  writable?: ReadonlySet<string>;
  /** Volumes made here by another session moved with this one, still marked as its (CreateExtra.joins): volume id to that session. */
  joins?: ReadonlyMap<string, string>;
}

const row = (c: Bring): SessionRow => {
  if (!c.row) throw new Error(`session ${c.session.id}: no row`);
  return c.row;
};

const reserve: Step<Bring> = {
  name: 'reserve',
  up: (c) => {
    c.row = c.reserve!();
    if (c.secrets) c.kit.secrets.store.recordHeld(c.row.id, c.secrets.held);
  },
  // The final state, with the slot and records given back; ended, the lease,
  // ports and stored files too. Stopped, the rest stays for its start.
  down: async (c) => {
    if (!c.row) return;
    const { kit, session, end } = c;
    const linkPending = c.linkPending !== undefined;
    // Kernel before database: the elements of its published ports, which
    // start-up loaded for a session whose re-adoption then failed (it never
    // reached the publish step; for any other, that step's undo did it).
    await kit.publisher.unpublish(session.id);
    try {
      if (end.state === 'stopped') session.settleStopped({ linkPending, storedBytes: end.storedBytes, lastError: end.error });
      else session.settle(end.state, end.error, linkPending);
    } catch (e) {
      if (!fullDisk(kit, e)) throw e;
      kit.settler.later(session.id, { state: end.state, lastError: end.error, linkPending, storedBytes: end.storedBytes });
      return;
    } finally {
      if (c.linkPending) kit.links.retire(session.id, c.linkPending);
    }
    if (end.state !== 'stopped') removeStored(kit.config, session.id);
    pruneHistory(kit);
  },
};

/** The recorded kernel objects of a kind that this daemon would have made for the session; any other is logged and forgotten. */
function ours(c: Bring, kind: 'cgroup' | 'veth'): string[] {
  const { kit, session } = c;
  const mine = new Set([...sessionCgroupDirs(kit.layout, kit.config.cgroups.parent, session.id, true).map((d) => `cgroup ${d.path}`), `veth ${hostIfName(session.id)}`]);
  const refs: string[] = [];
  for (const o of kit.store.kernelObjects(session.id)) {
    if (o.kind !== kind) continue;
    if (mine.has(`${o.kind} ${o.ref}`)) refs.push(o.ref);
    else session.log.warn({ kind: o.kind, ref: o.ref }, 'ignored a kernel object this daemon does not own');
  }
  return refs;
}

const cgroups: Step<Bring> = {
  name: 'cgroups',
  up: (c) => {
    const r = row(c);
    // A system session's cgroups are its root's to divide (cgroupDelegation.ts); fail closed where that is unsafe.
    const refused = r.profile === 'system' ? delegationRefused(c.kit.layout, c.dirs) : undefined;
    if (refused) throw new ApiError('confinement_failed', `session ${c.session.id} could not be confined: its cgroups cannot be delegated: ${refused}`);
    const owner = r.profile === 'system' ? rangeForSlot(c.kit.config.ids, r.id_slot!).hostBase : undefined;
    const cpus = placeSession(c.kit.layout, c.kit.config.cgroups.parent, c.limits.cpu_percent);
    for (const dir of c.dirs) {
      createSessionCgroup(dir, c.limits, c.kit.config.limits.oom, cpus);
      if (owner !== undefined) delegateCgroup(dir, { uid: owner, gid: owner });
    }
  },
  down: async (c) => {
    const deadline = Date.now() + 10_000;
    for (const ref of ours(c, 'cgroup')) {
      const version = versionOf(c.kit.layout, ref);
      for (;;) {
        // A snapshot's cgroups and the sub-cgroups a system session made first: an rmdir of a cgroup with a child fails.
        dropSnapshotCgroups(ref, version);
        removeDescendants(ref, version);
        killCgroup(ref, version);
        if (cgroupPids(ref).length === 0 && removeCgroup(ref)) break;
        if (Date.now() > deadline) throw new ApiError('internal', `cgroup ${ref} of session ${c.session.id} still has processes`);
        await sleep(5);
      }
    }
  },
};

const firewall: Step<Bring> = {
  name: 'firewall',
  up: async (c) => {
    const lease = c.kit.store.leaseOf(row(c).id);
    if (lease === undefined) return;
    // Before the link exists: a session without its element could send nothing at all.
    await c.kit.bindings.bind(lease).catch((e: Error) => {
      throw new ApiError('confinement_failed', `session ${c.session.id} could not be confined: cannot bind its address ${intToIp(lease)} in the firewall: ${e.message.trim()}`);
    });
  },
  // Not while the link is still on the bridge: its address is held until it is gone.
  down: (c) => {
    const lease = c.kit.store.leaseOf(c.session.id);
    if (lease !== undefined && c.linkPending === undefined) c.session.unbind(lease);
  },
};

const files: Step<Bring> = {
  name: 'files',
  up: (c) => {
    c.files = writeSessionFiles(sessionDir(c.kit.config, c.session.id), row(c).hostname, c.kit.store.leaseOf(c.session.id));
  },
  down: (c) => rmSync(sessionDir(c.kit.config, c.session.id), { recursive: true, force: true }),
};

const plan: Step<Bring> = {
  name: 'plan',
  up: async (c) => {
    const { kit } = c;
    const r = row(c);
    const lease = kit.store.leaseOf(r.id);
    const delivery = c.secrets!.delivery;
    const injected = { files: delivery.files.map((f) => ({ path: f.path, mode: f.mode, gid: f.gid })), env: delivery.env, envFiles: delivery.envFiles, shared: delivery.groups.length > 0 };
    const volumes = [];
    for (const v of kit.store.volumeIdsOf(r.id)) {
      const readonly = v.readonly && !c.writable?.has(v.id);
      volumes.push({ source: await kit.volumes.mountFor(v.id, readonly, r.id, c.joins?.get(v.id)), target: v.target, readonly });
    }
    const cgroups = c.dirs.map((d) => d.path);
    c.plan = planFor(r, c.limits, kit.config, kit.host!, { cgroups, cgroupView: sessionCgroupView(kit.layout, c.dirs), lease, files: c.files!, injected, profile: r.profile, volumes, boot: r.init === 'systemd' ? bootPlanFor(r.id) : undefined });
    // Stored before anything executes it: what the session is made of, for good.
    // Secret values are not in it: they travel as blobs on the helper's stdin.
    kit.store.setPlan(r.id, JSON.stringify(c.plan));
    if (kit.host!.lxcfsDown !== undefined && kit.config.sessions.lxcfs === 'on') {
      c.session.log.warn({ why: kit.host!.lxcfsDown }, 'lxcfs does not serve: this session reads the kernel\'s /proc/meminfo, cpuinfo, stat, uptime, loadavg, swaps (the host\'s numbers) until it is stopped and started again with lxcfs serving');
    }
  },
  down: () => undefined, // the stored plan goes with the row
};

const launch: Step<Bring> = {
  name: 'launch',
  up: async (c) => {
    const result = await launchInit(c.plan!, c.secrets!.delivery.files.map((f) => f.content));
    if (!result.ok) throw new ApiError('confinement_failed', `session ${c.session.id} could not be confined: ${describeFailure(result)}`, undefined, { step: result.step, errno: result.errno });
    c.launched = { pid: result.pid, startTime: result.startTime };
  },
  down: async (c) => {
    await c.session.killInit();
    for (const link of ours(c, 'veth')) {
      // A session that ran: its link goes with its netns, off this path
      // (linkReaper.ts). A create that failed may have left it in ours.
      if (c.row?.state === 'creating') addon().deleteLink(link);
      else if (linkExists(link)) c.linkPending = link;
    }
  },
};

const watch: Step<Bring> = {
  name: 'watch',
  up: (c) => {
    const r = row(c);
    const init = c.launched ?? (r.init_pid !== null && r.init_start_time !== null ? { pid: r.init_pid, startTime: r.init_start_time } : undefined);
    if (!init) throw new Error('no init recorded');
    // A create is running from here; a start once its files are back and its ports published (Session.start).
    if (c.launched && r.state === 'creating') c.session.running(init.pid, init.startTime);
    // Throws when the PID is no longer the recorded process: the session cannot be re-adopted.
    c.session.watchInit(init.pid, init.startTime, c.launched !== undefined);
  },
  down: (c) => c.session.unwatch(),
};

/** A start's files, replayed inside it; nothing to undo (the session's layer goes with it). */
const restore: Step<Bring> = {
  name: 'restore',
  up: async (c) => {
    if (!c.restoreFrom) return;
    const r = row(c);
    // Its init, before the session is 'running' (Session.agent() waits for that).
    const agent = c.kit.agents.for(r.id, () => planView(c.plan!).control);
    await restoreFiles(agent, r.hostname, c.restoreFrom, c.kit.config.sessions.snapshot_timeout_ms);
  },
  down: () => undefined,
};

/** Root's SSH key and sshd, shared secrets' groups: given inside once its files are back; nothing to undo (they go with the session). */
const prepare: Step<Bring> = {
  name: 'prepare',
  up: async (c) => {
    const r = row(c);
    const input = { mode: c.restoreFrom ? ('start' as const) : ('create' as const), sshKey: r.ssh_key, groups: c.secrets?.delivery.groups ?? [] };
    if (!prepareArgv(input)) return;
    const agent = c.kit.agents.for(r.id, () => planView(c.plan!).control);
    await prepareSession(agent, r.hostname, input, c.session.log);
  },
  down: () => undefined,
};

/**
 * --init systemd: its init starts systemd once the session's files are
 * back and prepared, so it boots from the /etc it was left with; fails
 * closed (the create or start is undone, with systemd's reason). A
 * re-adopted session's systemd never stopped. Nothing to undo: a stop or
 * destroy asks it to halt (agent.c), and its PID namespace ends with it.
 */
const boot: Step<Bring> = {
  name: 'boot',
  up: async (c) => {
    const r = row(c);
    if (r.init === null || c.adopting) return;
    const agent = c.kit.agents.for(r.id, () => planView(c.plan!).control);
    await agent.boot().catch((e: Error) => {
      throw new ApiError('confinement_failed', `session ${c.session.id} could not boot ${r.init}: ${e.message}`);
    });
    // Ready once its manager answers on its private bus (what systemctl uses): the caller can use it at once.
    const bus = `/proc/${c.launched!.pid}/root/run/systemd/private`;
    for (const deadline = Date.now() + BOOT_READY_MS; !existsSync(bus); await sleep(20)) {
      if (Date.now() > deadline) throw new ApiError('confinement_failed', `session ${c.session.id} could not boot ${r.init}: it did not open its bus (/run/systemd/private) within ${BOOT_READY_MS / 1000} s`);
    }
  },
  down: () => undefined,
};

const publish: Step<Bring> = {
  name: 'publish',
  up: async (c) => {
    const { kit } = c;
    if (c.adopting) {
      // Start-up loaded the elements with the table: the ports never stopped answering
      // (a stopping one's too: a stop the daemon did not finish may leave it running).
      if (c.row?.state === 'running' || c.row?.state === 'stopping') kit.publisher.holdAgain(c.session.id);
      return;
    }
    const lease = kit.store.leaseOf(c.session.id);
    const ports = kit.store.portsOf(c.session.id);
    if (lease === undefined || ports.length === 0) return;
    await kit.publisher.publish(c.session.id, lease, ports);
  },
  down: (c) => c.kit.publisher.unpublish(c.session.id),
};

export const STEPS: readonly Step<Bring>[] = [reserve, cgroups, firewall, files, plan, launch, watch, restore, prepare, boot, publish];
