// Who the OOM killer killed: the kernel log's oom-kill lines, as /dev/kmsg gives them.
import { describe, expect, it } from 'vitest';
import { parseOomRecord } from '../../src/isolation/kernelLog.js';
import { cgroupName } from '../../src/isolation/cgroups.js';
import { oomReason, withReason } from '../../src/daemon/exec.js';
import { exitStatusFor } from '../../src/terminal/channels.js';

describe('kernel log', () => {
  it('reads the victim of an oom-kill record: its memcg, command and host PID', () => {
    const rec =
      '6,91234,8754453710,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/enclave/s-0123456789,task_memcg=/enclave/s-0123456789,task=python3,pid=28144,uid=1000000000\n';
    expect(parseOomRecord(rec)).toEqual({ memcg: '/enclave/s-0123456789', command: 'python3', pid: 28144, seq: 91234 });
    // The uid is printed signed: host IDs above 2^31 are negative.
    expect(parseOomRecord('6,2,3,-;oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/p/s-1,task_memcg=/p/s-1,task=zstd,pid=3397,uid=-417609216')).toMatchObject({ command: 'zstd', pid: 3397 });
    // A command name with a comma still ends at the last ",pid=".
    expect(parseOomRecord('6,1,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/a,task_memcg=/a/b,task=a,b,pid=7,uid=0')).toMatchObject({ memcg: '/a/b', command: 'a,b', pid: 7 });
  });

  it('ignores every other record', () => {
    expect(parseOomRecord('3,5,6,-;Memory cgroup out of memory: Killed process 28144 (python3) total-vm:221368kB')).toBeUndefined();
    expect(parseOomRecord('6,5,6,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null)')).toBeUndefined();
    expect(parseOomRecord('no separator')).toBeUndefined();
  });

  it('names a session cgroup as the kernel does', () => {
    expect(cgroupName('enclave', 's-0123456789')).toBe('/enclave/s-0123456789');
    expect(cgroupName('/a/b/', 's-0123456789')).toBe('/a/b/s-0123456789');
  });
});

describe('exec status with an OOM reason', () => {
  const oom = { added: 1, victim: { command: 'probe', pid: 42 }, limitMb: 64 };

  it('says "killed: out of memory" when SIGKILL ended the command, and keeps the exit code for Kubernetes clients', () => {
    const reason = oomReason(oom, { code: null, signal: 9 })!;
    expect(reason).toBe("killed: out of memory (the session's memory limit is 64 MiB; the kernel's last victim: probe, host pid 42)");
    const st = withReason(exitStatusFor(null, 9), reason);
    expect(st.reason).toBe('NonZeroExitCode');
    expect(st.message).toBe(`command terminated with non-zero exit code: 137: ${reason}`);
    expect(st.details!.causes).toEqual([
      { reason: 'ExitCode', message: '137' },
      { reason: 'Signal', message: '9' },
      { reason: 'OOMKilled', message: reason },
    ]);
  });

  it('names the victim when the command failed after another process was killed', () => {
    expect(oomReason({ ...oom, victim: { command: 'zstd', pid: 9 } }, { code: 2, signal: null })).toBe(
      "out of memory: the kernel killed zstd, host pid 9 in the session while the command ran (the session's memory limit is 64 MiB)",
    );
    expect(oomReason({ ...oom, added: 2, victim: null }, { code: 2, signal: null })).toContain('killed 2 processes');
  });

  it('adds nothing without OOM kills, or to a success', () => {
    expect(oomReason(undefined, { code: null, signal: 9 })).toBeUndefined();
    expect(withReason(exitStatusFor(0, null), 'x')).toEqual({ status: 'Success' });
  });
});
