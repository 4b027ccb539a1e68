// The CLI's usage text, apart from everything else: `enclave --help` and an
// unknown command print it without loading the commands (zod, clients).
import { LIMIT_FLAGS_USAGE } from '../vocab/limitTable.js';
export const VOLUME_USAGE = `  enclave volume create NAME [--size MB]       an ext4 image of MB (the quota), loop-mounted on the host
  enclave volume list [--json]                 sizes and used bytes (df's "Used")
  enclave volume show NAME [--json]
  enclave volume remove NAME                  refused while a live session mounts it
  enclave volume resize NAME --size MB        grow it, online (sessions see the new size); never shrinks
  enclave volume export NAME -o FILE [--compression zstd|none]
                                             its contents as a tar (zstd); refused while a session may write it
  enclave volume import NAME FILE [--size MB]  a new volume from such an archive (FILE read as you),
                                             unpacked in a helper session; --size within your budget`;

export const USAGE = `usage: enclave [--socket PATH] COMMAND

  enclave daemon [--config FILE] [--state-dir DIR] [--socket PATH] [--listen 127.0.0.1:PORT]
  enclave daemon --cleanup [--config FILE]   remove the bridge and nftables table (no live sessions)
  enclave daemon reload                      the daemon reads its config file again (also SIGHUP): prints
                                             the keys applied and those that need a restart
  enclave session create [--name N] [--network bridge|none] [--profile workspace|strict|system]
                         ${LIMIT_FLAGS_USAGE}
                         [--publish 127.0.0.1:HOSTPORT:SESSIONPORT]... [--console]
                         [--volume NAME:/PATH[:ro]]... [--from SNAPSHOT [--no-settings]]
                         [--env K=V]... [--auth [UID:]PROVIDER[:USER,...]]... [--env-token [UID:]NAME[:USER,...]]...
                         (:USER,...: users inside who may read it too, group secret-NAME)
                         [--idle-timeout DURATION] [--ssh-key FILE.pub] [--json]   DURATION: 30s, 10m, 2h, 1d; 0 never
                         --ssh-key: root's authorized key; sshd on port 22 inside (publish it: --publish 2222:22)
  enclave session list [--all] [--json]
  enclave session show ID|NAME [--json]
  enclave session exec ID|NAME [--tty] [--env K=V]... [--cwd DIR] -- CMD [ARG...]
  enclave session cp [-a|--archive] SESSION:/PATH HOSTPATH|-   and   enclave session cp [-a] HOSTPATH|- SESSION:/PATH
                                             copy files (directories recursively, symlinks as symlinks) as docker cp does;
                                             SESSION is an ID, NAME or UID:NAME; - is a tar on stdout or stdin;
                                             -a keeps owners (the host's into the session, the session's onto the host: root)
  enclave session attach ID|NAME [--ro] [--detach-keys ctrl-p,ctrl-q]
  enclave session stop ID|NAME [--json]     end its processes, store its root layer and /home (compressed);
                                             name, address, ports, volumes and secrets stay
  enclave session start ID|NAME [--json]    run it again from what stop stored
  enclave session destroy ID|NAME [--force | --timeout SECONDS]
                                             running or stopped: gone, with its stored files;
                                             SIGTERM (and SIGHUP to its terminals), SIGKILL after
                                             sessions.stop_grace_ms or SECONDS; --force: SIGKILL at once
  enclave session stats [ID|NAME] [--watch] [--json]
                                             CPU, memory, tasks, network, layer, /home, /tmp and volume
                                             bytes, from the kernel; without ID every running session
                                             you may see; --watch redraws every second until Ctrl-C
                                             (with --json: one line of JSON per reading)
  enclave session logs ID|NAME [--follow]    the console's output as text (escape sequences stripped);
                                             --follow streams new output until Ctrl-C
  enclave session refresh-auth ID|NAME       rewrite its secret files from the store
  enclave session snapshot ID|NAME -o FILE [--compression zstd|none] [--with-volumes]
                                             its writable root layer, /home and settings, while it runs
                                             (frozen); --with-volumes: its volumes' contents too
                                             --from takes its settings (a flag wins), --no-settings files only
  enclave session publish ID|NAME [127.0.0.1:]HOSTPORT:SESSIONPORT    while it runs
  enclave session unpublish ID|NAME [127.0.0.1:]HOSTPORT
${VOLUME_USAGE}
  enclave auth set NAME [--shared]           value from stdin (a hidden prompt on a terminal);
                                             --shared (root): others may use it as 0:NAME
  enclave auth list [--all] [--json]         your secrets (--all: everyone's, if you may see all)
  enclave auth remove NAME
  enclave events [--session ID|NAME] [--since TIME] [--limit N] [--action A] [--user U] [--reads] [--json]
                                             the audit trail, one line per event; TIME is ISO 8601 or
                                             30s, 10m, 2h, 7d ago; A an action or a family (session.*);
                                             U a uid or user name; allowed reads only with --reads
  enclave doctor [--config FILE] [--repair] [--json]
                                             host checks, database integrity, orphans, lock holders;
                                             --repair removes the orphans it lists, nothing else

NAME is one of yours; another owner's session, volume or secret is UID:NAME (a session also by its id).
The socket defaults to $ENCLAVE_SOCKET, else /run/enclave/enclave.sock.
`;
