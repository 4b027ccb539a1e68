import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // The run's cache of session base layers its test daemons share (test/integration/baseSeed.ts).
    globalSetup: ['test/globalSetup.ts'],
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          // Both cores (vitest's default on two is one worker); the projects below run after, one file at a time.
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          sequence: { groupOrder: 1 },
          include: ['test/integration/**/*.test.ts'],
          // One daemon per file, files one after another: they share the host.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
          pool: 'forks',
        },
      },
      {
        // The CLI's habits, exec and bad input again, with `enclave` run through
        // the native front end (the bin): what it answers itself must read the
        // same as the Node CLI, and what it hands on must reach it unchanged.
        test: {
          name: 'integration-front',
          sequence: { groupOrder: 2 },
          include: ['test/integration/cliHabits.test.ts', 'test/integration/exec.test.ts', 'test/integration/badInput.test.ts', 'test/integration/attach.test.ts'],
          env: { ENCLAVE_TEST_CLI: 'front' },
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
          pool: 'forks',
        },
      },
      {
        // Key files again with every test daemon keeping sessions made ahead
        // ([pool], src/sessions/pool.ts): their creates of the default shape
        // are hand-outs, and must behave as cold creates do. Only files with
        // such creates: volumes and eventStream create with volumes or limits
        // only (0 hand-outs, all cold), and the members' invisibility in the
        // event stream is pool.test.ts's.
        test: {
          name: 'integration-pool',
          sequence: { groupOrder: 3 },
          include: [
            'test/integration/secrets.test.ts',
            'test/integration/isolation.test.ts',
            'test/integration/ownership.test.ts',
            'test/integration/tenants.test.ts',
            'test/integration/lifecycle.test.ts',
          ],
          env: { ENCLAVE_TEST_POOL: 'workspace_bridge = 2,workspace_none = 1' },
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
          pool: 'forks',
        },
      },
      {
        test: {
          name: 'e2e',
          sequence: { groupOrder: 4 },
          include: ['test/e2e/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
          pool: 'forks',
        },
      },
    ],
  },
});
