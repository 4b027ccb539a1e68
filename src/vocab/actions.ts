// Every action of the API the access policy decides on. A leaf.

export const ACTIONS = [
  'session.create',
  'session.list',
  'session.show',
  'session.exec',
  'session.attach',
  'session.destroy',
  /** Stopping a running session (its files stored) and starting it again. */
  'session.stop',
  'session.start',
  'session.refresh-auth',
  /** Publishing and unpublishing ports of a running session. */
  'session.publish',
  /** Reading a running session's writable layer and /home (enclave session snapshot). */
  'session.snapshot',
  /** Copying files into or out of a running session (enclave session cp): as strong as exec inside it. */
  'session.cp',
  'auth.set',
  'auth.list',
  'auth.remove',
  /** Declaring secrets (--auth, --env-token) at create. */
  'auth.use',
  'events.list',
  'volume.create',
  'volume.list',
  'volume.remove',
  /** Growing a volume (enclave volume resize). */
  'volume.resize',
  /** Reading a volume's contents as an archive (enclave volume export). */
  'volume.export',
  /** Mounting a volume in a session at create (scope self: one's own volumes). */
  'volume.use',
  /** Reading the daemon's config file again (enclave daemon reload): only the file's keys, never a caller's. */
  'daemon.reload',
  /** The fleet's nodes, their state and capacity (enclave node list). */
  'node.list',
  /** Cordoning and uncordoning a node: whether new sessions are placed on it. */
  'node.cordon',
  /** Removing a node that is gone for good from the fleet (enclave node remove). */
  'node.remove',
] as const;
export type Action = (typeof ACTIONS)[number];
