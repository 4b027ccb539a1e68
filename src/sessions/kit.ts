// What every session of a daemon shares: its configuration, state, the
// host's facts found at start, and the kernel-facing helpers. One object,
// made by the manager and handed to each session and step.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { CgroupLayout } from '../isolation/cgroups.js';
import { KernelLog } from '../isolation/kernelLog.js';
import { AddressBindings, PortForwards } from '../network/firewall.js';
import type { HostNetwork } from '../network/hostNetwork.js';
import { LinkReaper } from '../network/linkReaper.js';
import { PortPublisher } from '../network/publish.js';
import type { SessionSecrets } from '../secrets/sessionSecrets.js';
import { diskFullMessage, isDiskFull } from '../store/diskFull.js';
import type { OomStore } from '../store/oomStore.js';
import type { SessionStore } from '../store/sessionStore.js';
import type { Volumes } from '../volumes/volumes.js';
import { Agents } from './agent.js';
import type { HostFacts } from './planning.js';
import { Settler } from './settle.js';
import { SessionReports } from './stats.js';

export interface ManagerOptions {
  config: Config;
  secrets: SessionSecrets;
  store: SessionStore;
  /** The OOM kills in the session rows. */
  oom: OomStore;
  layout: CgroupLayout;
  log: Logger;
  volumes: Volumes;
}

export interface Kit {
  config: Config;
  store: SessionStore;
  oom: OomStore;
  layout: CgroupLayout;
  log: Logger;
  /** The published ports: their elements in the firewall, their host ports held. */
  publisher: PortPublisher;
  volumes: Volumes;
  secrets: SessionSecrets;
  agents: Agents;
  /** Links of ended sessions the kernel is still removing; their leases are held until then. */
  links: LinkReaper;
  /** The anti-spoofing element of each lease. */
  bindings: AddressBindings;
  settler: Settler;
  /** An ended session's link is gone: its address is free (false: not recorded yet, ask again). */
  linkGone: (id: string) => boolean;
  counters: { creates: number; createFailures: number; destroys: number; stops: number; starts: number };
  /** Who the kernel's OOM killer killed (its log). */
  kernelLog: KernelLog;
  /** Who hears of what the kernel did in a session (the daemon: the audit trail), and of state changes (its event stream). */
  listeners: KernelListeners;
  /** What sessions use and their OOM kills, read from the kernel. */
  reports: SessionReports;
  /** Found on the host at start, the same for every session's plan. */
  host: HostFacts | undefined;
  hostNet: HostNetwork | undefined;
}

/** An OOM kill the kernel counted in a session: its count now, how many are new, and the last victim its log named. */
export interface OomEvent {
  session: string;
  kills: number;
  added: number;
  victim: { command: string; pid: number } | undefined;
  at: string;
}

export interface KernelListeners {
  oom?: (e: OomEvent) => void;
  /** A session's state changed (the daemon: its event stream). */
  changed?: (session: string) => void;
}

/** A write that a full disk may refuse without stopping what is under way (it is logged). */
export function bestEffort(kit: Kit, id: string, write: () => void): void {
  try {
    write();
  } catch (e) {
    if (!isDiskFull(e, kit.config.state_dir)) throw e;
    kit.log.child({ session: id }).warn({ state_dir: kit.config.state_dir }, 'the state dir is full: a state change was not recorded');
  }
}

export const fullDisk = (kit: Kit, e: unknown) => isDiskFull(e, kit.config.state_dir);
export const fullDiskMessage = (kit: Kit) => diskFullMessage(kit.config.state_dir);

export function pruneHistory(kit: Kit): void {
  const keep = kit.config.sessions.keep_history;
  const pruned = kit.store.pruneHistory(keep);
  if (pruned > 0) kit.log.debug({ pruned, keep }, 'pruned ended sessions (sessions.keep_history)');
}

/**
 * The kit of a daemon. `ending` hears an adopted init announce its exit
 * code; `live` finds a session the daemon holds; `linkGone` frees the address of an ended session once its link is
 * gone (false: the disk is full, ask again).
 */
export function createKit(o: ManagerOptions, ending: (id: string, code: number) => void, live: (id: string) => { checkOom(): { kills: number } | undefined } | undefined): Kit {
  const links = new LinkReaper({ log: o.log, gone: (id) => linkGone(kit, id) });
  let reports: SessionReports | undefined;
  const kit: Kit = {
    ...o,
    agents: new Agents(o.log, ending),
    links,
    bindings: new AddressBindings(o.config.network.table),
    publisher: new PortPublisher(o.log, new PortForwards(o.config.network.table)),
    settler: new Settler(o.store, o.config.state_dir, o.log),
    counters: { creates: 0, createFailures: 0, destroys: 0, stops: 0, starts: 0 },
    kernelLog: new KernelLog(),
    listeners: {},
    host: undefined,
    hostNet: undefined,
    linkGone: (id) => linkGone(kit, id),
    get reports() {
      return (reports ??= new SessionReports(kit, live));
    },
  };
  return kit;
}

function linkGone(kit: Kit, id: string): boolean {
  try {
    const lease = kit.store.leaseOf(id);
    if (lease !== undefined) {
      kit.bindings.unbind(lease).catch((e: Error) => {
        if (!/No such file or directory/.test(e.message)) kit.log.child({ session: id }).warn({ err: e.message }, 'cannot remove the anti-spoofing element of a released address');
      });
    }
    kit.store.linkGone(id);
    pruneHistory(kit); // a row whose link was still going was kept past keep_history
    return true;
  } catch (e) {
    if (!isDiskFull(e, kit.config.state_dir)) kit.log.child({ session: id }).error({ err: (e as Error).message }, 'cannot release the address of a session whose link is gone');
    return false;
  }
}
