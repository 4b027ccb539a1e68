// The browser page end to end in headless Chromium (Debian's, driven by
// playwright-core): sign in, create a session, type into its console, see the
// output, keep a screenshot as an artifact.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { isRoot, TestDaemon } from '../integration/harness.js';
import { repoRoot } from '../../src/native/addon.js';

const CHROMIUM = '/usr/bin/chromium';
const port = 30000 + ((process.pid + 7919) % 20000);
export const ARTIFACTS = join(repoRoot, 'test-artifacts');

describe.skipIf(!isRoot)('browser page (root, headless Chromium)', () => {
  const d = new TestDaemon({ topConfig: `listen = "127.0.0.1:${port}"\n` });
  let browser: Browser;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (npm run setup does)`);
    await d.start();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Chromium as root needs --no-sandbox; the rest keeps it off the network.
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await d.cleanup();
  });

  it('signs in, creates a session, and runs a command in its terminal', { timeout: 60_000 }, async () => {
    const token = readFileSync(join(d.stateDir, 'listen-token'), 'utf8').trim();
    const page = await browser.newPage({ viewport: { width: 1100, height: 600 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.fill('#token', token);
    await page.click('#login button');
    await page.waitForSelector('#app:not([hidden])');
    await page.click('#create');
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('attached to'));
    await page.waitForFunction(() => (document.querySelector('.xterm-rows') as HTMLElement | null)?.innerText.includes('#'), undefined, { timeout: 15_000 });
    await page.click('#term');
    await page.keyboard.type('echo hello-$RANDOM');
    await page.keyboard.press('Enter');
    // The shell's answer: hello- and digits, on a line of its own.
    await page.waitForFunction(() => /^hello-\d+\s*$/m.test((document.querySelector('.xterm-rows') as HTMLElement).innerText), undefined, { timeout: 15_000 });
    const screen = await page.evaluate(() => (document.querySelector('.xterm-rows') as HTMLElement).innerText);
    expect(screen).toMatch(/echo hello-\$RANDOM/);
    expect(screen).toMatch(/^hello-\d+\s*$/m);
    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'browser-terminal.png');
    await page.screenshot({ path: shot });
    expect(statSync(shot).size).toBeGreaterThan(1000);
    expect(errors).toEqual([]);
    // The session it made is a real one.
    const list = (await d.api('GET', '/v1/sessions')).body as { sessions: { state: string }[] };
    expect(list.sessions.map((s) => s.state)).toEqual(['running']);
  });
});
