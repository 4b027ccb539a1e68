// The dashboard end to end in headless Chromium (Debian's, driven by
// playwright-core), as a person would use it for a day: sign in, create a
// session from the form (a name and a memory limit; a refused one shows the
// daemon's error in one line), attach, watch `stty size` follow the window
// as it grows and as it shrinks, stop, start, destroy after a confirmation,
// see a session made elsewhere appear without a reload, and stay signed in
// across a daemon restart. Screenshots are kept in test-artifacts/.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { isRoot, listenPort, TestDaemon } from '../integration/harness.js';
import { repoRoot } from '../../src/native/addon.js';

const CHROMIUM = '/usr/bin/chromium';
const port = listenPort(4);
export const ARTIFACTS = join(repoRoot, 'test-artifacts');

/** The text of the terminal shown (the active tab's). */
const ACTIVE_ROWS = '#terminals .term-host:not([hidden]) .xterm-rows';
const card = (name: string) => `.session[data-name="${name}"]`;

describe.skipIf(!isRoot)('dashboard (root, headless Chromium)', () => {
  const d = new TestDaemon({ topConfig: `listen = "127.0.0.1:${port}"\n` });
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const problems: string[] = [];
  let probe = 0;

  async function shot(name: string): Promise<void> {
    mkdirSync(ARTIFACTS, { recursive: true });
    const path = join(ARTIFACTS, name);
    await page.screenshot({ path });
    // A real picture: a PNG, and more than a blank page's few hundred bytes.
    expect(readFileSync(path).subarray(1, 4).toString()).toBe('PNG');
    expect(statSync(path).size).toBeGreaterThan(15_000);
  }

  /** Type a command into the shown terminal and wait for a line of its output matching `out`. */
  async function run(command: string, out: RegExp): Promise<RegExpMatchArray> {
    await page.click('#terminals .term-host:not([hidden])[data-attached]');
    await page.keyboard.type(command);
    await page.keyboard.press('Enter');
    const handle = await page.waitForFunction(
      ([sel, src]) => {
        const m = new RegExp(src, 'm').exec((document.querySelector(sel) as HTMLElement | null)?.innerText ?? '');
        return m ? [...m] : null;
      },
      [ACTIVE_ROWS, out.source] as const,
      { timeout: 20_000 },
    );
    return (await handle.jsonValue()) as RegExpMatchArray;
  }

  /** rows x cols as the session's shell sees them. */
  async function sttySize(): Promise<[number, number]> {
    const n = ++probe;
    const m = await run(`echo Z${n}-$(stty size | tr ' ' x)`, new RegExp(`^Z${n}-(\\d+)x(\\d+)\\s*$`));
    return [Number(m[1]), Number(m[2])];
  }

  /**
   * Resize the window; once the terminal shown has fitted itself to its
   * pane (it says its size in data-size), the shell must see that size (the
   * console applies a resize a moment after it arrives: a few asks).
   */
  async function resizeTo(width: number, height: number, before: string): Promise<[number, number]> {
    await page.setViewportSize({ width, height });
    const shown = await (await page.waitForFunction((b) => {
      const size = (document.querySelector('#terminals .term-host:not([hidden])') as HTMLElement).dataset.size;
      return size !== b ? size : null;
    }, before)).jsonValue();
    const seen: string[] = [];
    while (seen.length < 10) {
      const [r, c] = await sttySize();
      seen.push(`${r}x${c}`);
      if (seen.at(-1) === shown) return [r, c];
    }
    throw new Error(`at ${width}x${height} the terminal is ${shown}, and the shell saw ${seen.join(', ')}`);
  }

  const shownSize = () => page.$eval('#terminals .term-host:not([hidden])', (e) => (e as HTMLElement).dataset.size!);

  const noOverflow = () => page.evaluate(() => document.documentElement.scrollWidth <= innerWidth && document.documentElement.scrollHeight <= innerHeight);

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (npm run setup does)`);
    await d.start();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Chromium as root needs --no-sandbox; the rest keeps it off the network.
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    context = await browser.newContext({ viewport: { width: 1100, height: 650 } });
    page = await context.newPage();
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    // A CSP violation is a console error: the page must need nothing the policy refuses.
    page.on('console', (m) => m.type() === 'error' && /Content Security Policy|Refused to/.test(m.text()) && problems.push(m.text()));
  });
  // What the page looked like when a step failed, beside the other pictures.
  afterEach(async ({ task }) => {
    if (task.result?.state === 'fail' && page) await page.screenshot({ path: join(ARTIFACTS, `failed-${task.name.split(' ').slice(0, 3).join('-')}.png`) }).catch(() => undefined);
  });
  afterAll(async () => {
    await browser?.close();
    await d.cleanup();
  });

  it('signs in with the token and keeps only an HttpOnly, SameSite=Strict cookie', { timeout: 30_000 }, async () => {
    const token = readFileSync(join(d.stateDir, 'listen-token'), 'utf8').trim();
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForSelector('#login-view:not([hidden])');
    await page.fill('#token', 'not-the-token');
    await page.click('#login button');
    await page.waitForFunction(() => document.getElementById('login-error')!.textContent!.includes('not the token'));
    await page.fill('#token', token);
    await page.click('#login button');
    await page.waitForSelector('#app:not([hidden])');
    await page.waitForSelector('#live.on');
    const cookies = await context.cookies();
    expect(cookies.map((c) => [c.name, c.httpOnly, c.sameSite])).toEqual([[`enclave-${port}`, true, 'Strict']]);
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage, ...sessionStorage }));
    expect(stored).not.toContain(token);
  });

  it('creates a session from the form: a refusal in one line, then a name, a memory limit, a volume and a port', { timeout: 60_000 }, async () => {
    expect((await d.api('POST', '/v1/volumes', { name: 'code', size_mb: 16 })).status).toBe(201);
    await page.click('#new-session');
    await page.waitForSelector('#create-dialog[open]');
    await page.fill('#create-form input[name="name"]', 'Not A Name');
    await page.fill('#create-form input[name="memory_mb"]', '256');
    await page.click('#create-submit');
    const error = await page.waitForFunction(() => document.getElementById('create-error')!.textContent || null);
    const line = (await error.jsonValue()) as string;
    expect(line).toMatch(/name/);
    expect(line).not.toContain('\n');
    await page.fill('#create-form input[name="name"]', 'dash');
    await page.click('#create-volumes button.add');
    await page.fill('#create-form input[aria-label="volume name"]', 'code');
    await page.fill('#create-form input[aria-label="mount point"]', '/home/code');
    await page.click('#create-ports button.add');
    await page.fill('#create-form input[aria-label="host port"]', String(port + 1));
    await page.fill('#create-form input[aria-label="session port"]', '8000');
    await shot('dashboard-create.png');
    await page.click('#create-submit');
    await page.waitForSelector('#create-dialog:not([open])', { state: 'attached' });
    await page.waitForSelector(`${card('dash')}[data-state="running"]`);
    const s = await d.show('dash');
    expect(s.limits.memory_mb).toBe(256);
    expect(s.network.published).toEqual([{ host_ip: '127.0.0.1', host_port: port + 1, session_port: 8000 }]);
    expect(s.volumes).toEqual([{ name: 'code', target: '/home/code', readonly: false }]);
    // The card says what the list says, and its stats arrive.
    const text = await page.innerText(card('dash'));
    expect(text).toContain(s.id);
    expect(text).toContain('uid 0');
    expect(text).toContain(s.network.address!);
    expect(text).toContain(`127.0.0.1:${port + 1} → 8000`);
    await page.waitForFunction((sel) => /CPU \d/.test(document.querySelector(sel)!.textContent!) && /\d (B|KiB|MiB|GiB) \/ 256 MiB/.test(document.querySelector(sel)!.textContent!), card('dash'));
  });

  it('attaches in a tab, and the terminal follows the window as it shrinks and as it grows', { timeout: 90_000 }, async () => {
    // The create opened its console in a tab.
    await page.waitForSelector('.tab.active[data-id]');
    await run('echo hello-$((6*7))', /^hello-42\s*$/);
    const initial = await shownSize();
    const [rows, cols] = initial.split('x').map(Number) as [number, number];
    // Shrinking (what never worked before: the terminal stayed as large as it had been).
    const small = await resizeTo(700, 450, initial);
    expect(small[0]).toBeLessThan(rows);
    expect(small[1]).toBeLessThan(cols);
    expect(await noOverflow()).toBe(true);
    const large = await resizeTo(1300, 800, `${small[0]}x${small[1]}`);
    expect(large[0]).toBeGreaterThan(rows);
    expect(large[1]).toBeGreaterThan(cols);
    expect(await noOverflow()).toBe(true);
    await resizeTo(1100, 650, `${large[0]}x${large[1]}`);
    await shot('dashboard-terminal.png');
  });

  it('shows a session made elsewhere at once, and consoles of two sessions in tabs', { timeout: 60_000 }, async () => {
    await d.create({ name: 'from-api' });
    await page.waitForSelector(`${card('from-api')}[data-state="running"]`);
    await page.click(`${card('from-api')} [data-act="attach"]`);
    await page.waitForSelector('.tab.active[data-id] >> text=from-api');
    await run('hostname; echo in-$((1+1))', /^in-2\s*$/);
    expect(await page.locator('.tab').count()).toBe(2);
    // Back to the first tab: its screen is as it was.
    await page.click('.tab >> text=dash');
    expect(await page.innerText(ACTIVE_ROWS)).toContain('hello-42');
    await page.waitForFunction((sel) => /CPU \d/.test(document.querySelector(sel)!.textContent!), card('from-api'));
    await shot('dashboard-list.png');
  });

  it('stops and starts a session with its files, and destroys it after asking', { timeout: 90_000 }, async () => {
    await run('echo kept > /root/mark && echo written', /^written\s*$/);
    await page.click(`${card('dash')} [data-act="stop"]`);
    await page.waitForSelector(`${card('dash')}[data-state="stopped"]`);
    await page.waitForSelector('.tab.ended >> text=dash');
    await page.click(`${card('dash')} [data-act="start"]`);
    await page.waitForSelector(`${card('dash')}[data-state="running"]`);
    await page.click(`${card('dash')} [data-act="attach"]`);
    await page.waitForSelector('.tab.active:not(.ended) >> text=dash');
    await run('cat /root/mark', /^kept\s*$/);

    // Destroy asks; Cancel keeps it.
    await page.click(`${card('dash')} [data-act="destroy"]`);
    await page.waitForSelector('#confirm-dialog[open]');
    expect(await page.innerText('#confirm-text')).toContain('Destroy dash?');
    await page.click('#confirm-cancel');
    await page.waitForSelector('#confirm-dialog:not([open])', { state: 'attached' });
    expect((await d.show('dash')).state).toBe('running');
    await page.click(`${card('dash')} [data-act="destroy"]`);
    await page.click('#confirm-ok');
    await page.waitForSelector(card('dash'), { state: 'detached' });
    expect((await d.show('dash')).state).toBe('destroyed');
    await page.waitForSelector('.tab.ended >> text=dash');
  });

  it('stays signed in across a daemon restart: the list, the console and a reload', { timeout: 90_000 }, async () => {
    await page.click('.tab >> text=from-api');
    await d.stop();
    await d.start();
    // The stream came back by itself with the cookie: a session made now appears.
    await d.create({ name: 'after-restart' });
    await page.waitForSelector(`${card('after-restart')}[data-state="running"]`);
    // The console resumed (its shell lived on in the session).
    await run('echo again-$((40+2))', /^again-42\s*$/);
    await page.reload();
    await page.waitForSelector('#app:not([hidden])');
    expect(await page.isHidden('#login-view')).toBe(true);
    await page.waitForSelector(card('after-restart'));
    // Sign-out ends it.
    await page.click('#sign-out');
    await page.waitForSelector('#login-view:not([hidden])');
    await page.reload();
    await page.waitForSelector('#login-view:not([hidden])');
    expect(problems).toEqual([]);
  });
});
