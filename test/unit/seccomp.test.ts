import { describe, expect, it } from 'vitest';
import { ARCHES, compileSeccomp, highestKnown, SECCOMP_RET, serializeBpf, type Arch } from '../../src/isolation/bpf.js';
import { CLONE_NS_FLAGS, EAFNOSUPPORT, ENOSYS, EPERM, policyFor, SECCOMP_POLICY, TIOCLINUX, TIOCSTI, type Rule } from '../../src/isolation/seccompPolicy.js';
import { runBpf } from './bpfInterpreter.js';

const ALLOW = SECCOMP_RET.ALLOW;
const KILL = SECCOMP_RET.KILL_PROCESS;
const err = (e: number) => SECCOMP_RET.ERRNO | e;

describe.each([ARCHES.x86_64, ARCHES.aarch64])('seccomp program for $name', (arch: Arch) => {
  // Strict's program: every rule but the ones for other profiles only (the system profile's is tested below).
  const prog = compileSeccomp(arch, policyFor('strict'));
  const nr = (name: string) => {
    const n = arch.table[name];
    if (n === undefined) throw new Error(`${name} not on ${arch.name}`);
    return n;
  };
  const verdict = (name: string, ...args: (number | bigint)[]) => runBpf(prog, { arch: arch.audit, nr: nr(name), args: args.map(BigInt) });

  it('kills every foreign architecture', () => {
    for (const audit of [0x40000003 /* i386 */, 0x40000028 /* arm */, ARCHES.x86_64.audit, ARCHES.aarch64.audit].filter((a) => a !== arch.audit)) {
      expect(runBpf(prog, { arch: audit, nr: 0 })).toBe(KILL);
    }
  });

  it('answers ENOSYS above the highest known number and for clone3', () => {
    expect(runBpf(prog, { arch: arch.audit, nr: highestKnown(arch) + 1 })).toBe(err(ENOSYS));
    expect(runBpf(prog, { arch: arch.audit, nr: 999 })).toBe(err(ENOSYS));
    expect(verdict('clone3')).toBe(err(ENOSYS));
  });

  it('refuses every listed syscall with its errno and allows the rest', () => {
    for (const rule of policyFor('strict').filter((r) => !r.when)) {
      for (const name of rule.syscalls) if (name in arch.table) expect(verdict(name), name).toBe(err(rule.errno));
    }
    for (const name of ['read', 'write', 'openat', 'execve', 'wait4', 'exit_group', 'ptrace', 'mmap']) expect(verdict(name), name).toBe(ALLOW);
  });

  it('refuses clone with any namespace flag, allows plain clone', () => {
    expect(verdict('clone', 0x11 /* SIGCHLD|... */)).toBe(ALLOW);
    expect(verdict('clone', 0x3d0f00 /* pthread_create flags */)).toBe(ALLOW);
    for (let bit = 0; bit < 32; bit++) {
      const flag = 1 << bit;
      if (CLONE_NS_FLAGS & flag) expect(verdict('clone', flag | 0x11)).toBe(err(EPERM));
    }
  });

  it('refuses TIOCSTI and TIOCLINUX by the low 32 bits of the request', () => {
    expect(verdict('ioctl', 0, TIOCSTI)).toBe(err(EPERM));
    expect(verdict('ioctl', 0, (1n << 32n) | BigInt(TIOCSTI))).toBe(err(EPERM));
    expect(verdict('ioctl', 0, TIOCLINUX)).toBe(err(EPERM));
    expect(verdict('ioctl', 0, 0x5401 /* TCGETS */)).toBe(ALLOW);
  });

  it('allows only harmless personalities', () => {
    expect(verdict('personality', 0)).toBe(ALLOW);
    expect(verdict('personality', 0xffffffff)).toBe(ALLOW);
    expect(verdict('personality', 0x0040000 /* ADDR_NO_RANDOMIZE */)).toBe(err(EPERM));
    expect(verdict('personality', 0x0400000 /* READ_IMPLIES_EXEC */)).toBe(err(EPERM));
  });

  it('allows only UNIX, INET, INET6 and NETLINK sockets', () => {
    for (const af of [1, 2, 10, 16]) expect(verdict('socket', af, 1, 0)).toBe(ALLOW);
    for (const af of [17 /* PACKET */, 40 /* VSOCK */, 38 /* ALG */, 4 /* IPX */, 3 /* AX25 */]) expect(verdict('socket', af, 1, 0)).toBe(err(EAFNOSUPPORT));
  });

  it('serializes 8 bytes per instruction, little-endian', () => {
    const bytes = serializeBpf(prog);
    expect(bytes.length).toBe(prog.length * 8);
    expect(bytes.readUInt16LE(0)).toBe(prog[0]!.code);
    expect(bytes.readUInt32LE(4)).toBe(prog[0]!.k);
  });
});

describe('seccomp builder', () => {
  it('kills the x32 ABI on x86_64', () => {
    const prog = compileSeccomp(ARCHES.x86_64);
    expect(runBpf(prog, { arch: ARCHES.x86_64.audit, nr: 0x40000000 | 39 /* x32 getpid */ })).toBe(KILL);
    expect(runBpf(prog, { arch: ARCHES.x86_64.audit, nr: 39 })).toBe(ALLOW);
  });

  it('compiles long lists: hundreds of blocked calls and long value lists, all still correct', () => {
    const names = Object.keys(ARCHES.x86_64.table).filter((n) => !['read', 'write', 'exit_group', 'socket'].includes(n));
    const families = Array.from({ length: 300 }, (_, i) => i + 100);
    const policy: Rule[] = [
      { why: 'many', syscalls: names, errno: EPERM },
      { why: 'long list', syscalls: ['socket'], errno: EAFNOSUPPORT, when: { arg: 0, noneOf: families } },
    ];
    const prog = compileSeccomp(ARCHES.x86_64, policy);
    expect(prog.length).toBeGreaterThan(2 * names.length);
    for (const i of prog) expect(i.jt <= 255 && i.jf <= 255).toBe(true);
    const call = (name: string, ...args: number[]) => runBpf(prog, { arch: ARCHES.x86_64.audit, nr: ARCHES.x86_64.table[name]!, args: args.map(BigInt) });
    expect(call('openat')).toBe(err(EPERM));
    expect(call(names[names.length - 1]!)).toBe(err(EPERM));
    expect(call('read')).toBe(ALLOW);
    expect(call('socket', 100)).toBe(ALLOW);
    expect(call('socket', 399)).toBe(ALLOW);
    expect(call('socket', 2)).toBe(err(EAFNOSUPPORT));
    const oneOf: Rule[] = [{ why: 'x', syscalls: ['ioctl'], errno: EPERM, when: { arg: 1, oneOf: families } }];
    const p2 = compileSeccomp(ARCHES.x86_64, oneOf);
    expect(runBpf(p2, { arch: ARCHES.x86_64.audit, nr: 16, args: [0n, 399n] })).toBe(err(EPERM));
    expect(runBpf(p2, { arch: ARCHES.x86_64.audit, nr: 16, args: [0n, 5n] })).toBe(ALLOW);
  });

  it('refuses a policy naming a syscall no architecture has', () => {
    expect(() => compileSeccomp(ARCHES.x86_64, [{ why: 'typo', syscalls: ['unshre'], errno: EPERM }])).toThrow(/unknown syscall 'unshre'/);
  });
});

describe('seccomp per profile', () => {
  const arch = ARCHES.x86_64;
  const verdict = (prog: ReturnType<typeof compileSeccomp>, name: string) => runBpf(prog, { arch: arch.audit, nr: arch.table[name]!, args: [] });

  it('allows chroot under workspace only (sshd\'s privilege separation); every other rule is the same', () => {
    const workspace = compileSeccomp(arch, policyFor('workspace'));
    const strict = compileSeccomp(arch, policyFor('strict'));
    expect(verdict(workspace, 'chroot')).toBe(ALLOW);
    expect(verdict(strict, 'chroot')).toBe(err(EPERM));
    for (const name of ['mount', 'pivot_root', 'unshare', 'setns', 'open_tree', 'bpf', 'keyctl']) {
      expect(verdict(workspace, name), name).toBe(err(EPERM));
      expect(verdict(strict, name), name).toBe(err(EPERM));
    }
    expect(policyFor('strict')).toEqual(SECCOMP_POLICY.filter((r) => !r.only || r.only.includes('strict')));
    expect(policyFor('workspace').flatMap((r) => r.syscalls)).not.toContain('chroot');
    expect(policyFor('workspace').filter((r) => r.syscalls.includes('chroot'))).toEqual([]);
    expect(policyFor('strict').length - policyFor('workspace').length).toBe(1);
  });

  it('lets system mount, unshare, setns, pivot_root, chroot and clone namespaces; keeps the host-facing ones refused', () => {
    const system = compileSeccomp(arch, policyFor('system'));
    const call = (name: string, ...args: number[]) => runBpf(system, { arch: arch.audit, nr: arch.table[name]!, args: args.map(BigInt) });
    for (const name of ['mount', 'umount2', 'pivot_root', 'unshare', 'setns', 'chroot', 'open_tree', 'move_mount', 'fsopen', 'fsmount', 'fsconfig', 'mount_setattr', 'reboot']) expect(call(name), name).toBe(ALLOW);
    for (let bit = 0; bit < 32; bit++) if (CLONE_NS_FLAGS & (1 << bit)) expect(call('clone', (1 << bit) | 0x11)).toBe(ALLOW);
    for (const name of [
      'init_module', 'finit_module', 'delete_module', 'kexec_load', 'kexec_file_load', 'open_by_handle_at', 'bpf', 'perf_event_open',
      'clock_settime', 'settimeofday', 'adjtimex', 'clock_adjtime', 'swapon', 'swapoff', 'acct', 'quotactl', 'quotactl_fd', 'lookup_dcookie',
      'userfaultfd', 'iopl', 'ioperm', 'syslog', 'io_uring_setup', 'process_vm_readv', 'pidfd_getfd',
    ]) expect(call(name), name).toBe(err(EPERM));
    // Keyrings: refused as "not there", so runc carries on without one.
    for (const name of ['keyctl', 'add_key', 'request_key']) expect(call(name), name).toBe(err(ENOSYS));
    expect(call('clone3')).toBe(err(ENOSYS));
    expect(call('socket', 17 /* AF_PACKET */)).toBe(ALLOW);
    expect(call('socket', 40 /* AF_VSOCK */)).toBe(err(EAFNOSUPPORT));
    expect(call('socket', 38 /* AF_ALG */)).toBe(err(EAFNOSUPPORT));
    expect(call('ioctl', 0, TIOCSTI)).toBe(err(EPERM));
    // Every rule left out of system says why system may.
    for (const r of SECCOMP_POLICY.filter((x) => x.only && !x.only.includes('system'))) expect(r.why, r.syscalls.join(',')).toMatch(/[Ss]ystem/);
  });
});
