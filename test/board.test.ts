// The live operations board, in a real browser: Debian's Chromium driven by playwright-core.
import { existsSync, mkdirSync } from 'node:fs';
import type { Socket } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from './helpers/app.js';
import { createWorld, type World } from './helpers/world.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = 'test-artifacts';
const chromiumMissing = !existsSync(CHROMIUM);
// Under CI the browser is part of the toolchain (.ci/run installs it): missing, the test fails.
const skipBrowser = chromiumMissing && process.env.CI !== 'true';
if (skipBrowser) console.warn(`skipped: the board's browser tests need ${CHROMIUM} (apt-get install chromium)`);

let t: TestApp;
let w: World;
let opsToken: string;
const orders: Record<'normal' | 'late' | 'risk' | 'held', any> = {} as any;

beforeAll(async () => {
  t = await startTestApp();
  w = await createWorld(t);
  opsToken = await t.token({ role: 'ops', sub: 'wall-screen' });
  const hour = 3600_000;
  orders.normal = await w.createOrder({ externalRef: 'PO-NORMAL-1', product: '2-layer FR4 50x50mm' });
  // Promised a minute ago: late from the start.
  orders.late = await w.createOrder({
    externalRef: 'PO-LATE-1',
    product: '6-layer HDI 120x90mm',
    promisedAt: new Date(Date.now() - 60_000).toISOString(),
  });
  // Promised in 10 h with 52 h of work along the longest path: at risk, not late.
  orders.risk = await w.createOrder({
    externalRef: 'PO-RISK-1',
    product: '4-layer ENIG 80x60mm',
    promisedAt: new Date(Date.now() + 10 * hour).toISOString(),
  });
  orders.held = await w.createOrder({ externalRef: 'PO-HELD-1', customerId: w.customerB.id, engineerId: undefined });
  await w.post(w.fab.api, orders.normal.id, { type: 'stage_completed', stage: 'review' });
  await w.post(w.fab.api, orders.normal.id, { type: 'stage_progress', stage: 'cam', progress: 40 });
  await w.post(w.ops, orders.held.id, { type: 'hold', cause: 'engineering_query', reason: 'drill file and stack-up disagree' });
});

afterAll(async () => {
  await t?.close();
});

describe('GET /board and its assets', () => {
  it('serves the page with a self-only Content-Security-Policy and no inline script', async () => {
    const r = await t.api.get('/board');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = r.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    // Every <script> has a src: nothing inline for the policy to refuse.
    const scripts = [...r.text.matchAll(/<script\b[^>]*>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [tag, body] of scripts) {
      expect(tag).toMatch(/\ssrc="\/board\//);
      expect(body!.trim()).toBe('');
    }
    expect(r.text).not.toMatch(/\sstyle="/);
    expect((await t.api.get('/board/')).status).toBe(200);
  });

  it('serves its scripts, sheet and the two libraries from the installed packages, with content types and ETags', async () => {
    const expected: Record<string, string> = {
      '/board/board.js': 'text/javascript; charset=utf-8',
      '/board/board.css': 'text/css; charset=utf-8',
      '/board/favicon.svg': 'image/svg+xml',
      '/board/vendor/socket.io.esm.min.js': 'text/javascript; charset=utf-8',
      '/board/vendor/chart.umd.min.js': 'text/javascript; charset=utf-8',
    };
    for (const [path, type] of Object.entries(expected)) {
      const r = await t.api.get(path);
      expect(r.status, path).toBe(200);
      expect(r.headers.get('content-type'), path).toBe(type);
      const etag = r.headers.get('etag');
      expect(etag, path).toBeTruthy();
      expect((await t.api.get(path, { 'if-none-match': etag! })).status, path).toBe(304);
    }
    expect((await t.api.get('/board/vendor/socket.io.esm.min.js')).text).toContain('Socket.IO');
    expect((await t.api.get('/board/vendor/chart.umd.min.js')).text).toContain('Chart.js v4');
    expect((await t.api.get('/board/%2e%2e/package.json')).status).toBe(404);
    expect((await t.api.get('/board/nothing.js')).status).toBe(404);
  });

  it('is not part of the API contract', async () => {
    const doc = (await t.api.get('/openapi.json')).body;
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/board'))).toEqual([]);
  });
});

describe.skipIf(skipBrowser)('the board in headless Chromium', () => {
  let browser: Browser;
  const tcp = new Set<Socket>();

  beforeAll(async () => {
    if (chromiumMissing) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    t.app.server.on('connection', (s: Socket) => {
      tcp.add(s);
      s.on('close', () => tcp.delete(s));
    });
    mkdirSync(ARTIFACTS, { recursive: true });
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** A wall-screen-sized page that records what the browser complains about and every URL it asks for. */
  async function openPage(hash = '') {
    const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
    const problems: string[] = [];
    const urls: string[] = [];
    const apiAuth: string[] = [];
    const failed: string[] = [];
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    page.on('response', (r) => {
      if (r.status() >= 400) failed.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
    });
    page.on('request', (r) => {
      urls.push(r.url());
      if (new URL(r.url()).pathname.startsWith('/v1/')) apiAuth.push(r.headers().authorization ?? '');
    });
    const response = await page.goto(`${t.baseUrl}/board${hash}`);
    return { page, problems, urls, apiAuth, failed, response: response! };
  }

  const text = (page: Page, testId: string) => page.locator(`[data-testid="${testId}"]`).innerText();

  it('shows the counters and lists, live, with the token taken from the fragment and kept out of every URL', async () => {
    const { page, problems, urls, apiAuth, response } = await openPage(`#token=${opsToken}`);
    expect(response.headers()['content-security-policy']).toContain("default-src 'self'");

    await page.waitForSelector('body[data-connection="live"]', { timeout: 10_000 });
    // The token left the address bar at once, and never was in a URL the browser requested.
    expect(page.url()).toBe(`${t.baseUrl}/board`);
    expect(urls.filter((u) => u.includes(opsToken))).toEqual([]);
    expect(await page.evaluate(() => (globalThis as any).sessionStorage.getItem('orderstream.board.token'))).toBe(opsToken);

    // Counters: as the API computes them, and as this world makes them.
    const summaryReply = await w.ops.get('/v1/ops/summary?window=7d');
    if (summaryReply.status === 404) {
      console.warn('GET /v1/ops/summary is 404: the counter assertions are skipped');
    } else {
      expect(summaryReply.status).toBe(200);
      const s = summaryReply.body;
      expect(s.orders).toMatchObject({ late: 1, atRisk: 1, onHold: 1 });
      await expect.poll(() => text(page, 'count-late'), { timeout: 5000 }).toBe('1');
      expect(await text(page, 'count-at-risk')).toBe('1');
      expect(await text(page, 'count-on-hold')).toBe('1');
      expect(await text(page, 'count-open')).toBe(String(s.orders.open));
      expect(await text(page, 'count-silent')).toBe(String(s.orders.silent));
      expect(await text(page, 'count-in-transit')).toBe(String(s.orders.inTransit));
      // The WIP chart is drawn (a canvas with pixels), the customers' countries listed.
      expect(await page.locator('#wip-chart').evaluate((c: any) => c.width > 0 && c.height > 0)).toBe(true);
      const countries = await text(page, 'countries');
      expect(countries).toContain('Germany');
      expect(countries).toContain('United States');
      expect(await text(page, 'factory-league')).toMatch(/factory/i);
    }
    await expect.poll(() => text(page, 'late-list'), { timeout: 5000 }).toContain('PO-LATE-1');
    expect(await text(page, 'late-list')).toContain('Acme Robotics');
    expect(await text(page, 'at-risk-list')).toContain('PO-RISK-1');
    expect(await text(page, 'late-list')).not.toContain('PO-RISK-1');

    // An event posted through the API appears in the ticker within seconds, without a reload.
    await page.evaluate(() => ((globalThis as any).notReloaded = true));
    await w.post(w.ops, orders.normal.id, { type: 'note', text: 'customer asked for an X-ray report' });
    await expect.poll(() => text(page, 'ticker'), { timeout: 5000 }).toContain('customer asked for an X-ray report');
    await expect.poll(() => text(page, 'ticker'), { timeout: 3000 }).toContain('PO-NORMAL-1'); // looked up by id

    // Counters follow events too: a second hold.
    await w.post(w.ops, orders.normal.id, { type: 'hold', cause: 'material', reason: 'laminate shortage' });
    if (summaryReply.status !== 404) await expect.poll(() => text(page, 'count-on-hold'), { timeout: 6000 }).toBe('2');
    await w.post(w.ops, orders.normal.id, { type: 'resumed', reason: 'laminate arrived' });

    // Every API call carried the token in the Authorization header.
    expect(apiAuth.length).toBeGreaterThan(0);
    expect(apiAuth.every((a) => a === `Bearer ${opsToken}`)).toBe(true);
    expect(await page.evaluate(() => (globalThis as any).notReloaded)).toBe(true);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('reconnects by itself and resumes after its last cursor: nothing missed while away', async () => {
    const { page, problems } = await openPage(`#token=${opsToken}`);
    await page.waitForSelector('body[data-connection="live"]', { timeout: 10_000 });
    await page.evaluate(() => ((globalThis as any).notReloaded = true));
    await w.post(w.fab.api, orders.normal.id, { type: 'stage_progress', stage: 'cam', progress: 60 });
    await expect.poll(() => text(page, 'ticker'), { timeout: 5000 }).toContain('60%');

    // Cut every connection and keep the board from coming back while an event is posted.
    await page.route('**/socket.io/**', (route) => route.abort());
    for (const s of tcp) s.destroy();
    await page.waitForSelector('body:not([data-connection="live"])', { timeout: 5000 });
    await w.post(w.fab.api, orders.normal.id, { type: 'stage_progress', stage: 'cam', progress: 85 });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await text(page, 'ticker')).not.toContain('85%');

    await page.unroute('**/socket.io/**');
    await page.waitForSelector('body[data-connection="live"]', { timeout: 20_000 });
    await expect.poll(() => text(page, 'ticker'), { timeout: 5000 }).toContain('85%');
    const ticker = await text(page, 'ticker');
    expect(ticker.split('60%').length - 1).toBe(1); // the resume repeats nothing
    expect(await page.evaluate(() => (globalThis as any).notReloaded)).toBe(true);
    // Aborted polls while cut off are expected console noise; nothing else is.
    expect(problems.filter((p) => !/socket\.io|ERR_FAILED|ERR_CONNECTION|Failed to load resource/.test(p))).toEqual([]);
    await page.close();
  });

  it('asks for a token when the URL has none, and refuses a bad one with a message', async () => {
    const { page, problems, failed } = await openPage();
    const dialog = page.locator('#sign-in');
    await expect.poll(() => dialog.isVisible()).toBe(true);
    await page.fill('#token-input', 'not-a-token');
    await page.click('#sign-in button[type="submit"]');
    await expect.poll(() => page.locator('#sign-in-error').innerText(), { timeout: 5000 }).toMatch(/refused/i);

    await page.fill('#token-input', opsToken);
    await page.click('#sign-in button[type="submit"]');
    await page.waitForSelector('body[data-connection="live"]', { timeout: 10_000 });
    expect(await dialog.isVisible()).toBe(false);
    await expect.poll(() => text(page, 'late-list'), { timeout: 5000 }).toContain('PO-LATE-1');
    // A customer token is not enough for the board.
    const customerToken = await t.token({ role: 'customer', customerId: w.customerA.id });
    await page.evaluate((tok) => {
      (globalThis as any).location.hash = `token=${tok}`;
    }, customerToken);
    await expect.poll(() => page.locator('#sign-in-error').innerText(), { timeout: 5000 }).toMatch(/ops or admin/i);
    expect(page.url()).toBe(`${t.baseUrl}/board`);
    // What failed: the API refusing those tokens, and perhaps a poll of the socket the board dropped then.
    expect(failed.filter((f) => !/^40[13] GET \/v1\//.test(f) && !/^400 \w+ \/socket\.io\//.test(f))).toEqual([]);
    expect(problems.filter((p) => !/Failed to load resource/.test(p))).toEqual([]);
    await page.close();
  });

  it('looks like a wall screen: a screenshot with live events is kept as a test artifact', async () => {
    // A little more activity, so the ticker and the charts have something to show.
    const more = [];
    for (let i = 0; i < 6; i++) {
      more.push(
        await w.createOrder({
          externalRef: `PO-20${40 + i}`,
          product: ['2-layer FR4 100x80mm', '4-layer ENIG 60x40mm', 'PCBA 6-layer 160x100mm'][i % 3],
          customerId: i % 2 ? w.customerB.id : w.customerA.id,
          engineerId: undefined,
          promisedAt: new Date(Date.now() + (i < 2 ? -3600_000 * (i + 2) : 86400_000 * (i + 1))).toISOString(),
        }),
      );
    }
    const { page, problems } = await openPage(`#token=${opsToken}`);
    await page.waitForSelector('body[data-connection="live"]', { timeout: 10_000 });
    for (const [i, o] of more.entries()) {
      await w.post(w.fab.api, o.id, { type: 'stage_completed', stage: 'review' });
      if (i % 2) await w.post(w.fab.api, o.id, { type: 'stage_progress', stage: 'cam', progress: 30 + i * 10, quantityGood: 48 });
      if (i === 3) await w.post(w.assembly.api, o.id, { type: 'stage_started', stage: 'components' });
      if (i === 4)
        await w.post(w.fab.api, o.id, {
          type: 'quality_issue',
          stage: 'cam',
          severity: 'major',
          description: 'annular ring below spec on 3 panels',
        });
    }
    await w.post(w.ops, more[5].id, { type: 'hold', cause: 'material', reason: 'waiting for Rogers 4350B laminate' });
    // Two deliveries, one of them after its promise: an on-time rate of 50 %.
    for (const o of [more[0], more[2]]) {
      await w.post(w.fab.api, o.id, { type: 'stage_completed', stage: 'cam' });
      await w.post(w.fab.api, o.id, { type: 'stage_completed', stage: 'drilling' });
      await w.post(w.assembly.api, o.id, { type: 'stage_completed', stage: 'components' });
      await w.post(w.assembly.api, o.id, { type: 'stage_completed', stage: 'smt', quantityGood: 50 });
      await w.post(w.logistics.api, o.id, {
        type: 'shipped',
        carrier: 'DHL Express',
        trackingNumber: `JD0146000${o.externalRef.slice(-2)}`,
      });
      await w.post(w.logistics.api, o.id, { type: 'delivered' });
    }
    await expect.poll(() => text(page, 'ticker'), { timeout: 5000 }).toContain('annular ring');
    const summaryReply = await w.ops.get('/v1/ops/summary?window=7d');
    if (summaryReply.status === 200) {
      expect(summaryReply.body.delivered).toMatchObject({ count: 2, onTime: 1, onTimeRate: 0.5 });
      await expect.poll(() => text(page, 'on-time-rate'), { timeout: 5000 }).toBe('50%');
    }
    await new Promise((r) => setTimeout(r, 2500)); // the debounced refresh, then the chart's animation
    await page.screenshot({ path: `${ARTIFACTS}/board.png` });
    expect(existsSync(`${ARTIFACTS}/board.png`)).toBe(true);
    expect(problems).toEqual([]);
    await page.close();
  });
});
