// The live operations board: a plain ES module, no build step.
// Data: the REST API, with the ops token in the Authorization header (never in a URL).
// Live: Socket.IO namespace /v1, topic `all`, resumed after the last cursor on every reconnect.
import { io } from '/board/vendor/socket.io.esm.min.js';

const TOKEN_KEY = 'orderstream.board.token';
const CURSOR_KEY = 'orderstream.board.cursor';
const WINDOW = '7d';
const LIST_LIMIT = 15;
const REFRESH_MIN_INTERVAL_MS = 2000; // at most one refresh per 2 s, however many events arrive
const REFRESH_EVERY_MS = 30_000; // and one every 30 s anyway: late and at risk change with time alone
const TICKER_MAX = 60;
const REQUEST_TIMEOUT_MS = 15_000;
const LOOKUPS_PER_MINUTE = 120; // orders the ticker names that the lists have not shown

// Catalogue order, so the WIP chart reads like the shop floor (see src/world/catalogue.ts).
const STAGE_ORDER = [
  'review',
  'cam',
  'cutting',
  'inner_layers',
  'drilling',
  'plating',
  'outer_imaging',
  'pattern_plating',
  'etching',
  'solder_mask',
  'silkscreen',
  'surface_finish',
  'routing',
  'electrical_test',
  'final_qc',
  'stencil',
  'components',
  'smt',
  'aoi',
  'through_hole',
  'functional_test',
  'packing',
  'shipping',
];
const ACRONYMS = new Set(['cam', 'smt', 'aoi', 'qc', 'dfm']);

const $ = (id) => document.getElementById(id);
const regionNames = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(['en'], { type: 'region' }) : null;

const state = {
  token: null,
  lastCursor: sessionStorage.getItem(CURSOR_KEY) || undefined,
  socket: null,
  retryTimer: null,
  retryDelay: 1000,
  expiryTimer: null,
  factories: new Map(), // id → {name, country}
  factoriesLoadedAt: 0,
  customers: new Map(), // id → {name, country} | null
  orders: new Map(), // id → {ref, product}
  orderLookups: [], // ids waiting for a lookup, for the ticker
  orderLookupsRunning: 0,
  lookupTimes: [],
  lookupTimer: null,
  seen: new Set(), // ids of recent events: a resume never shows one twice
  seenOrder: [],
  pending: [], // events received, not yet drawn
  flushTimer: null,
  eventTimes: [],
  lastEventAt: null,
  lastDataAt: null,
  wipChart: null,
  values: new Map(), // counter id → last text, to flash changes
};

/* ---------------------------------------------------------------- formatting */

const pad = (n) => String(n).padStart(2, '0');
const clockTime = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
const shortId = (id) => String(id).slice(0, 8);
const int = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : '—');

function duration(minutes) {
  const m = Math.max(0, Math.round(Math.abs(minutes)));
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 && h < 10 ? `${h}h ${m % 60}m` : `${h}h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
}

function hours(h) {
  if (h === null || h === undefined) return '—';
  if (h < 48) return `${h < 10 ? Math.round(h * 10) / 10 : Math.round(h)}h`;
  return `${Math.round((h / 24) * 10) / 10}d`;
}

const percent = (rate) => (rate === null || rate === undefined ? '—' : `${Math.round(rate * 1000) / 10}%`);
const rateClass = (rate) => (rate === null || rate === undefined ? '' : rate >= 0.95 ? 'good' : rate >= 0.85 ? 'warn' : 'bad');

function stageName(code) {
  return String(code)
    .split('_')
    .map((w) => (ACRONYMS.has(w) ? w.toUpperCase() : w))
    .join(' ');
}

function countryName(code) {
  try {
    return regionNames?.of(code) ?? code;
  } catch {
    return code;
  }
}

/** A small element builder: el('span', {class: 'x'}, 'text', child). Text is always text, never HTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
  return node;
}

/* ---------------------------------------------------------------- the token */

/** `#token=…` from the address bar: kept in this tab's sessionStorage, then removed from the visible URL. */
function takeTokenFromUrl() {
  const hash = location.hash.replace(/^#/, '');
  if (!hash) return null;
  const params = new URLSearchParams(hash);
  const token = params.get('token');
  if (token === null) return null;
  params.delete('token');
  const rest = params.toString();
  history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
  return token.trim() || null;
}

function claimsOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, '=')));
  } catch {
    return null;
  }
}

function signIn(token) {
  const claims = claimsOf(token);
  if (claims?.exp && claims.exp * 1000 <= Date.now()) {
    showSignIn('That token has expired: mint a new one.');
    return;
  }
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('who').textContent = claims?.sub ? `${claims.sub}${claims.role ? ` · ${claims.role}` : ''}` : '';
  $('sign-out').hidden = false;
  clearTimeout(state.expiryTimer);
  if (claims?.exp) {
    const left = claims.exp * 1000 - Date.now();
    if (left < 2 ** 31 - 1) state.expiryTimer = setTimeout(() => signOut('The token has expired: sign in again.'), left);
  }
  const dialog = $('sign-in');
  if (dialog.open) dialog.close();
  start();
}

function signOut(message) {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(state.expiryTimer);
  clearTimeout(state.retryTimer);
  if (state.socket) {
    state.socket.removeAllListeners();
    state.socket.io.removeAllListeners();
    state.socket.disconnect();
    state.socket = null;
  }
  $('who').textContent = '';
  $('sign-out').hidden = true;
  setConnection('off', 'signed out');
  showSignIn(message);
}

function showSignIn(message) {
  const error = $('sign-in-error');
  error.textContent = message ?? '';
  error.hidden = !message;
  const dialog = $('sign-in');
  if (!dialog.open) dialog.showModal();
  $('token-input').focus();
}

/* ---------------------------------------------------------------- the API */

class HttpError extends Error {
  constructor(status, problem) {
    super(problem?.detail ?? problem?.title ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  try {
    const res = await fetch(path, {
      headers: { authorization: `Bearer ${state.token}`, accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      signal: abort.signal,
    });
    if (!res.ok) {
      let problem = null;
      try {
        problem = await res.json();
      } catch {
        /* not a problem document */
      }
      throw new HttpError(res.status, problem);
    }
    return await res.json();
  } finally {
    clearTimeout(timer);
  }
}

/** 401 and 403 end the session: nothing on the board can be read with this token. */
function refusedCredentials(err) {
  if (!(err instanceof HttpError)) return false;
  if (err.status === 401) signOut(`The token was refused: ${err.message}`);
  else if (err.status === 403) signOut('This token may not read the board: it needs the ops or admin role.');
  else return false;
  return true;
}

async function loadFactories(force = false) {
  if (!force && Date.now() - state.factoriesLoadedAt < 60_000) return;
  state.factoriesLoadedAt = Date.now();
  let after;
  for (let page = 0; page < 25; page++) {
    const body = await api(`/v1/factories?limit=200${after ? `&after=${after}` : ''}`);
    for (const f of body.items) state.factories.set(f.id, { name: f.name, country: f.country });
    if (!body.nextAfter) break;
    after = body.nextAfter;
  }
}

async function customer(id) {
  if (state.customers.has(id)) return state.customers.get(id);
  try {
    const c = await api(`/v1/customers/${id}`);
    state.customers.set(id, { name: c.name, country: c.country });
  } catch (err) {
    if (refusedCredentials(err)) throw err;
    state.customers.set(id, null);
  }
  return state.customers.get(id);
}

/* ---------------------------------------------------------------- refreshing */

const refresh = { timer: null, running: false, again: false, last: 0 };

/** Asks for a refresh: coalesced, and never more often than every REFRESH_MIN_INTERVAL_MS. */
function requestRefresh() {
  if (!state.token) return;
  if (refresh.running) {
    refresh.again = true;
    return;
  }
  if (refresh.timer) return;
  const wait = Math.max(300, refresh.last + REFRESH_MIN_INTERVAL_MS - Date.now());
  refresh.timer = setTimeout(runRefresh, wait);
}

async function runRefresh() {
  clearTimeout(refresh.timer);
  refresh.timer = null;
  if (!state.token) return;
  refresh.running = true;
  refresh.last = Date.now();
  try {
    await refreshAll();
  } finally {
    refresh.running = false;
    if (refresh.again) {
      refresh.again = false;
      requestRefresh();
    }
  }
}

async function refreshAll() {
  const [summary, late, risk] = await Promise.allSettled([
    api(`/v1/ops/summary?window=${WINDOW}`),
    // Unfinished orders only: one delivered after its promise is late too, but nothing to chase now.
    api(`/v1/orders?late=true&status=open,on_hold,shipped&sort=-lateness&limit=${LIST_LIMIT}`),
    // Worst first: due soonest.
    api(`/v1/orders?atRisk=true&sort=-lateness&limit=${LIST_LIMIT}`),
    loadFactories().catch(() => undefined),
  ]);
  for (const r of [summary, late, risk]) if (r.status === 'rejected' && refusedCredentials(r.reason)) return;

  const failures = [summary, late, risk].filter(
    (r) => r.status === 'rejected' && !(r.reason instanceof HttpError && r.reason.status === 404),
  );
  if (failures.length) {
    const reason = failures[0].reason;
    const since = state.lastDataAt ? `; showing data from ${clockTime(state.lastDataAt)}` : '';
    showBanner(
      `Cannot refresh the board (${reason instanceof HttpError ? `${reason.status} ${reason.message}` : reason.message || 'network error'})${since}. Retrying.`,
    );
  } else {
    hideBanner();
    state.lastDataAt = new Date();
  }

  if (summary.status === 'fulfilled') renderSummary(summary.value);
  else if (summary.reason instanceof HttpError && summary.reason.status === 404) renderSummaryMissing();
  markStale(['counters', 'panel-wip', 'panel-factories', 'panel-countries'], summary.status === 'rejected');

  const lists = [
    [late, 'late-list', 'late-total', 'panel-late', renderLateItem, summary.value?.orders?.late],
    [risk, 'risk-list', 'risk-total', 'panel-risk', renderRiskItem, summary.value?.orders?.atRisk],
  ];
  for (const [result, listId, totalId, panel, renderItem, total] of lists) {
    markStale([panel], result.status === 'rejected');
    if (result.status !== 'fulfilled') continue;
    const items = result.value.items;
    for (const o of items) rememberOrder(o.id, o.externalRef, o.product);
    const ids = [...new Set(items.map((o) => o.customerId))];
    try {
      await Promise.all(ids.map((id) => customer(id)));
    } catch {
      return; // credentials refused: signed out
    }
    renderOrderList($(listId), items, renderItem, total);
    const count = typeof total === 'number' ? int(total) : `${items.length}${result.value.nextCursor ? '+' : ''}`;
    $(totalId).textContent = `${count} ${count === '1' ? 'order' : 'orders'}`;
  }
}

/** Hides the rows that would be cut at the bottom of their panel: whole rows only, from afar. */
function fit(container) {
  const rows = [...container.children];
  for (const row of rows) row.hidden = false;
  const panel = container.closest('.panel');
  const bottom =
    Math.min(
      container.getBoundingClientRect().bottom,
      panel.getBoundingClientRect().bottom - parseFloat(getComputedStyle(panel).paddingBottom),
    ) + 1;
  for (const row of rows) if (row.getBoundingClientRect().bottom > bottom) row.hidden = true;
}
const fitAll = () => ['late-list', 'risk-list', 'country-bars', 'factory-rows'].forEach((id) => fit($(id)));

function markStale(ids, stale) {
  for (const id of ids) document.querySelector(`.${id}`)?.classList.toggle('stale', stale);
}

function showBanner(text, kind = 'error') {
  const b = $('banner');
  b.textContent = text;
  b.className = `banner${kind === 'info' ? ' info' : ''}`;
  b.hidden = false;
}
function hideBanner() {
  $('banner').hidden = true;
}

/* ---------------------------------------------------------------- rendering */

function setCounter(id, text, nonzero) {
  const node = $(id);
  if (state.values.has(id) && state.values.get(id) !== text) {
    node.classList.remove('flash');
    void node.offsetWidth; // restart the animation
    node.classList.add('flash');
  }
  state.values.set(id, text);
  node.textContent = text;
  node.classList.toggle('nonzero', Boolean(nonzero));
}

function renderSummary(s) {
  const o = s.orders;
  setCounter('c-open', int(o.open));
  $('c-open-sub').textContent =
    typeof o.overrun === 'number' ? `${int(o.overrun)} overrun · ${int(o.lateStart)} late start` : '\u00a0';
  setCounter('c-late', int(o.late), o.late > 0);
  setCounter('c-atrisk', int(o.atRisk), o.atRisk > 0);
  setCounter('c-onhold', int(o.onHold), o.onHold > 0);
  setCounter('c-silent', int(o.silent), o.silent > 0);
  setCounter('c-transit', int(o.inTransit));
  const d = s.delivered;
  $('c-window').textContent = s.window;
  setCounter('c-ontime', percent(d.onTimeRate));
  for (const c of ['good', 'warn', 'bad']) $('c-ontime').classList.toggle(c, rateClass(d.onTimeRate) === c);
  $('c-ontime-box').dataset.tone =
    d.onTimeRate === null ? 'neutral' : { good: 'good', warn: 'warn', bad: 'bad' }[rateClass(d.onTimeRate)];
  $('c-ontime-sub').textContent = d.count ? `${int(d.onTime)} of ${int(d.count)} delivered` : `no deliveries in ${s.window}`;
  setCounter('c-lead', hours(d.leadTimeHours.p50));
  $('c-lead-sub').textContent =
    d.leadTimeHours.p90 === null ? 'creation to delivery' : `p90 ${hours(d.leadTimeHours.p90)} · creation to delivery`;
  $('as-of').textContent = `as of ${clockTime(new Date(s.asOf))}`;

  renderWip(s.wipByStage);
  renderFactories(s.factories);
  renderCountries(s.customersByCountry);
}

function renderSummaryMissing() {
  for (const id of ['c-open', 'c-late', 'c-atrisk', 'c-onhold', 'c-silent', 'c-transit', 'c-ontime', 'c-lead'])
    setCounter(id, '—');
  $('as-of').textContent = 'summary not available';
  $('wip-empty').textContent = 'the summary endpoint is not available';
  $('wip-empty').hidden = false;
}

function renderOrderList(list, items, renderItem, total) {
  const rows = items.map(renderItem);
  if (!items.length) rows.push(el('li', { class: 'more' }, 'none'));
  else if (typeof total === 'number' && total > items.length)
    rows.push(el('li', { class: 'more' }, `… and ${int(total - items.length)} more`));
  list.replaceChildren(...rows);
  fit(list);
}

function orderRef(o) {
  return o.externalRef || shortId(o.id);
}

function customerLine(o) {
  const c = state.customers.get(o.customerId);
  return c ? `${c.name} (${c.country})` : shortId(o.customerId);
}

function stageChips(stages) {
  const span = el('span');
  (stages.length ? stages : ['—']).slice(0, 3).forEach((s, i) => {
    if (i) span.append(' ');
    span.append(el('span', { class: 'stage' }, stageName(s)));
  });
  if (stages.length > 3) span.append(` +${stages.length - 3}`);
  return span;
}

function renderLateItem(o) {
  return el(
    'li',
    { dataset: { order: o.id } },
    el('div', { class: 'ref' }, orderRef(o), el('span', { class: 'product' }, o.product)),
    el('div', { class: 'big' }, duration(o.lateByMinutes), el('small', {}, 'late')),
    el(
      'div',
      { class: 'meta' },
      customerLine(o),
      ' · ',
      stageChips(o.currentStages),
      o.status === 'on_hold' ? ' · on hold' : o.status === 'shipped' ? ' · in transit' : '',
      dueMoved(o),
    ),
  );
}

/** Late and at risk are judged against the due date: the promise moved by the customer's holds. */
const dueOf = (o) => new Date(o.dueAt ?? o.promisedAt).getTime();

function dueMoved(o) {
  const moved = (dueOf(o) - new Date(o.promisedAt).getTime()) / 60_000;
  return moved >= 1 ? ` · due +${duration(moved)} (customer hold)` : '';
}

function renderRiskItem(o) {
  const dueIn = (dueOf(o) - Date.now()) / 60_000;
  const over = o.projectedAt ? (new Date(o.projectedAt).getTime() - dueOf(o)) / 60_000 : null;
  return el(
    'li',
    { dataset: { order: o.id } },
    el('div', { class: 'ref' }, orderRef(o), el('span', { class: 'product' }, o.product)),
    el(
      'div',
      { class: 'big' },
      `due in ${duration(dueIn)}`,
      el('small', {}, over !== null ? `projected +${duration(over)}` : 'projected late'),
    ),
    el('div', { class: 'meta' }, customerLine(o), ' · ', stageChips(o.currentStages), dueMoved(o)),
  );
}

/** Draws the value at the end of each bar: readable from afar without axes. */
const barValues = {
  id: 'barValues',
  afterDatasetsDraw(chart) {
    const { ctx } = chart;
    const meta = chart.getDatasetMeta(0);
    ctx.save();
    ctx.fillStyle = '#e8eef4';
    ctx.font = `600 ${Math.round(rootPx() * 0.9)}px ${getComputedStyle(document.body).fontFamily}`;
    ctx.textBaseline = 'middle';
    meta.data.forEach((bar, i) => {
      const v = chart.data.datasets[0].data[i];
      ctx.fillText(String(v), bar.x + 6, bar.y);
    });
    ctx.restore();
  },
};

const rootPx = () => parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;

function stageRank(code) {
  const i = STAGE_ORDER.indexOf(code);
  return i === -1 ? STAGE_ORDER.length : i;
}

function renderWip(rows) {
  const sorted = [...rows].sort((a, b) => stageRank(a.stage) - stageRank(b.stage) || a.stage.localeCompare(b.stage));
  // An order working on two branches at once (fabrication and components) counts in both stages.
  $('wip-total').textContent = sorted.length ? `${sorted.length} ${sorted.length === 1 ? 'stage' : 'stages'}` : '';
  // Bars keep a readable thickness: the box grows with the stages, up to the panel's height.
  $('wip-chart').parentElement.style.setProperty('--rows', String(Math.max(sorted.length, 3)));
  $('wip-empty').textContent = 'no work in progress';
  $('wip-empty').hidden = sorted.length > 0;
  const labels = sorted.map((r) => stageName(r.stage));
  const data = sorted.map((r) => r.orders);
  const Chart = globalThis.Chart;
  if (!Chart) return; // the chart library did not load: the counters and lists still work
  if (!state.wipChart) {
    const px = rootPx();
    state.wipChart = new Chart($('wip-chart'), {
      type: 'bar',
      data: {
        labels,
        datasets: [
          {
            data,
            backgroundColor: '#4cc2ff',
            hoverBackgroundColor: '#7fd4ff',
            borderRadius: 3,
            barPercentage: 0.78,
            categoryPercentage: 0.92,
            maxBarThickness: px * 2,
          },
        ],
      },
      options: {
        indexAxis: 'y',
        responsive: true,
        maintainAspectRatio: false,
        animation: { duration: 350 },
        layout: { padding: { right: px * 2.5 } },
        plugins: { legend: { display: false }, tooltip: { enabled: false } },
        scales: {
          x: {
            beginAtZero: true,
            ticks: { color: '#8a99a8', precision: 0, font: { size: px * 0.8 } },
            grid: { color: '#223040' },
            border: { color: '#223040' },
          },
          y: {
            ticks: { color: '#e8eef4', autoSkip: false, font: { size: px * 0.9 } },
            grid: { display: false },
            border: { color: '#223040' },
          },
        },
      },
      plugins: [barValues],
    });
  } else {
    state.wipChart.data.labels = labels;
    state.wipChart.data.datasets[0].data = data;
    state.wipChart.update();
  }
}

function renderFactories(rows) {
  const body = $('factory-rows');
  if (!rows.length) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: 6, class: 'rank' }, `no stages completed in ${WINDOW}`)));
    return;
  }
  body.replaceChildren(
    ...rows
      .slice(0, 12)
      .map((f, i) =>
        el(
          'tr',
          {},
          el('td', { class: 'rank' }, i + 1),
          el('td', { title: `${f.name} (${countryName(f.country)})` }, el('span', { class: 'country' }, f.country), f.name),
          el('td', { class: 'num' }, int(f.stagesCompleted)),
          el('td', { class: `num ${rateClass(f.onTimeRate)}` }, percent(f.onTimeRate)),
          el('td', { class: 'num' }, f.averageDelayHours === null ? '—' : `${hours(f.averageDelayHours)}`),
          el('td', { class: 'num' }, int(f.wip)),
        ),
      ),
  );
  fit(body);
}

function renderCountries(rows) {
  const sorted = [...rows].sort((a, b) => b.openOrders - a.openOrders || a.country.localeCompare(b.country));
  const max = Math.max(1, ...sorted.map((r) => r.openOrders));
  const list = $('country-bars');
  if (!sorted.length) {
    list.replaceChildren(el('li', { class: 'empty' }, 'no open orders'));
    return;
  }
  list.replaceChildren(
    ...sorted.slice(0, 14).map((r) => {
      const fill = el('div', { class: 'fill' });
      fill.style.width = `${(r.openOrders / max) * 100}%`; // CSSOM, which the CSP allows (a style attribute would not be)
      return el(
        'li',
        { dataset: { country: r.country } },
        el(
          'span',
          { class: 'name', title: countryName(r.country) },
          el('span', { class: 'code' }, r.country),
          countryName(r.country),
        ),
        el('div', { class: 'track' }, fill),
        el('span', { class: 'n' }, int(r.openOrders)),
      );
    }),
  );
  fit(list);
}

/* ---------------------------------------------------------------- the ticker */

function rememberOrder(id, externalRef, product) {
  state.orders.set(id, { ref: externalRef || shortId(id), product });
  if (state.orders.size > 2000) state.orders.delete(state.orders.keys().next().value);
}

/** Looks up orders the ticker shows but the board has not seen yet, a few at a time. */
function lookUpOrder(id) {
  if (state.orders.has(id) || state.orderLookups.includes(id)) return;
  state.orderLookups.push(id);
  if (state.orderLookups.length > 40) state.orderLookups.shift();
}

function pumpLookups() {
  while (state.orderLookupsRunning < 2 && state.orderLookups.length && state.token) {
    // A budget, so that a busy network cannot spend the token's rate limit on names.
    const now = Date.now();
    while (state.lookupTimes.length && state.lookupTimes[0] < now - 60_000) state.lookupTimes.shift();
    if (state.lookupTimes.length >= LOOKUPS_PER_MINUTE) {
      if (!state.lookupTimer) {
        state.lookupTimer = setTimeout(
          () => {
            state.lookupTimer = null;
            pumpLookups();
          },
          state.lookupTimes[0] + 60_000 - now,
        );
      }
      return;
    }
    const id = state.orderLookups.shift();
    if (!document.querySelector(`#ticker li[data-order="${id}"]`)) continue; // scrolled away already
    state.lookupTimes.push(now);
    state.orderLookupsRunning++;
    api(`/v1/orders/${id}`)
      .then((o) => {
        rememberOrder(o.id, o.externalRef, o.product);
        for (const node of document.querySelectorAll(`#ticker li[data-order="${id}"] .ref`))
          node.textContent = state.orders.get(id).ref;
      })
      .catch((err) => {
        if (!refusedCredentials(err)) rememberOrder(id, null, null);
      })
      .finally(() => {
        state.orderLookupsRunning--;
        pumpLookups();
      });
  }
}

const EVENT_LABELS = {
  created: ['created', 'k-created'],
  stage_started: ['started', ''],
  stage_progress: ['progress', ''],
  stage_completed: ['completed', 'k-done'],
  quality_issue: ['quality', 'k-issue'],
  hold: ['on hold', 'k-hold'],
  resumed: ['resumed', 'k-done'],
  shipped: ['shipped', 'k-ship'],
  delivered: ['delivered', 'k-delivered'],
  cancelled: ['cancelled', 'k-cancel'],
  note: ['note', ''],
  rerouted: ['re-routed', 'k-hold'],
  became_at_risk: ['at risk', 'k-risk'],
  became_late: ['late', 'k-late'],
};

function factoryName(id) {
  if (!id) return null;
  const f = state.factories.get(id);
  if (!f) {
    loadFactories().catch(() => undefined);
    return shortId(id);
  }
  return f.name;
}

function eventDetail(e) {
  const d = e.data ?? {};
  const qty = [
    d.quantityGood !== undefined ? `${d.quantityGood} good` : null,
    d.quantityScrap ? `${d.quantityScrap} scrap` : null,
  ]
    .filter(Boolean)
    .join(', ');
  switch (e.type) {
    case 'created':
      return [
        d.product,
        d.quantity ? `× ${d.quantity}` : null,
        d.promisedAt
          ? `promised ${new Date(d.promisedAt).toLocaleString('en-GB', { dateStyle: 'short', timeStyle: 'short' })}`
          : null,
      ]
        .filter(Boolean)
        .join(' ');
    case 'stage_progress':
      return [`${d.progress}%`, qty].filter(Boolean).join(' · ');
    case 'stage_completed':
      return qty;
    case 'quality_issue':
      return `${d.severity ?? ''}: ${d.description ?? ''}`;
    case 'hold':
      return [d.cause ? String(d.cause).replace(/_/g, ' ') : null, d.reason].filter(Boolean).join(': ');
    case 'resumed':
    case 'cancelled':
      return d.reason ?? '';
    case 'shipped':
      return [d.carrier, d.trackingNumber].filter(Boolean).join(' ');
    case 'note':
      return d.text ?? '';
    case 'rerouted':
      return `from ${factoryName(d.fromFactoryId) ?? '?'}${d.reason ? `: ${d.reason}` : ''}`;
    case 'became_late':
      return d.lateByMinutes !== undefined ? `late by ${duration(d.lateByMinutes)}` : 'promise passed';
    case 'became_at_risk':
      return d.projectedAt && d.promisedAt
        ? `projected ${duration((new Date(d.projectedAt).getTime() - new Date(d.promisedAt).getTime()) / 60_000)} past the promise`
        : 'projected past the promise';
    default:
      return '';
  }
}

function renderEvent(e) {
  if (e.type === 'created') rememberOrder(e.orderId, e.data?.externalRef, e.data?.product);
  const known = state.orders.get(e.orderId);
  if (!known) lookUpOrder(e.orderId);
  const [label, kind] = EVENT_LABELS[e.type] ?? [e.type.replace(/_/g, ' '), ''];
  const detail = [eventDetail(e), factoryName(e.factoryId)].filter(Boolean).join(' · ');
  return el(
    'li',
    { class: 'new', dataset: { order: e.orderId, type: e.type, event: e.id } },
    el('span', { class: 't', title: e.occurredAt }, clockTime(new Date(e.occurredAt))),
    el('span', { class: `badge ${kind}` }, label),
    el(
      'span',
      { class: 'what' },
      el('span', { class: 'ref' }, known ? known.ref : shortId(e.orderId)),
      e.stage ? el('span', { class: 'stage' }, stageName(e.stage)) : null,
      detail ? el('span', { class: 'detail', title: detail }, detail) : null,
    ),
  );
}

function onEvent(e) {
  if (state.seen.has(e.id)) return;
  state.seen.add(e.id);
  state.seenOrder.push(e.id);
  if (state.seenOrder.length > 5000) state.seen.delete(state.seenOrder.shift());
  state.lastCursor = e.cursor; // at once: a reconnect right now resumes after this one
  state.pending.push(e);
  if (!state.flushTimer) state.flushTimer = setTimeout(flushEvents, 80);
}

/** Draws what arrived since the last flush: a burst (a replay after a long absence) costs one redraw. */
function flushEvents() {
  state.flushTimer = null;
  const batch = state.pending.splice(0);
  if (!batch.length) return;
  if (state.lastCursor) sessionStorage.setItem(CURSOR_KEY, state.lastCursor);
  const now = Date.now();
  for (let i = 0; i < batch.length; i++) state.eventTimes.push(now);
  state.lastEventAt = new Date();
  const ticker = $('ticker');
  const rows = batch.slice(-TICKER_MAX).reverse().map(renderEvent);
  ticker.prepend(...rows);
  while (ticker.children.length > TICKER_MAX) ticker.lastElementChild.remove();
  $('ticker-empty').hidden = true;
  pumpLookups(); // the rows are in the page now: name their orders
  requestRefresh();
}

/* ---------------------------------------------------------------- the stream */

function setConnection(kind, text) {
  const pill = $('connection');
  pill.className = `pill pill-${kind}`;
  pill.textContent = text;
  document.body.dataset.connection = kind === 'live' ? 'live' : kind === 'wait' ? 'connecting' : 'offline';
  $('ticker-dot').classList.toggle('on', kind === 'live');
}

/** Comes back after the server closed the socket itself (Socket.IO does not, then), with backoff. */
function retryLater() {
  clearTimeout(state.retryTimer);
  const socket = state.socket;
  if (!socket || !state.token) return;
  const delay = state.retryDelay * (0.8 + Math.random() * 0.4);
  state.retryDelay = Math.min(state.retryDelay * 2, 30_000);
  setConnection('wait', `reconnecting in ${Math.ceil(delay / 1000)} s…`);
  state.retryTimer = setTimeout(() => {
    if (state.socket === socket && !socket.connected) socket.connect();
  }, delay);
}

function subscribe(socket) {
  const payload = state.lastCursor ? { topic: 'all', after: state.lastCursor } : { topic: 'all' };
  setConnection('wait', state.lastCursor ? 'resuming…' : 'subscribing…');
  socket.timeout(15_000).emit('subscribe', payload, (err, ack) => {
    if (state.socket !== socket) return;
    if (err) {
      socket.disconnect();
      retryLater();
      return;
    }
    if (ack.ok) {
      if (!state.lastCursor) {
        state.lastCursor = ack.cursor; // live from here: a reconnect before any event still misses none
        sessionStorage.setItem(CURSOR_KEY, ack.cursor);
      }
      state.retryDelay = 1000;
      setConnection('live', 'live');
      requestRefresh(); // whatever happened while away
      return;
    }
    const { status, title, detail } = ack.error;
    if (status === 400 && payload.after) {
      // A cursor this server does not understand (another deployment): start live from now.
      state.lastCursor = undefined;
      sessionStorage.removeItem(CURSOR_KEY);
      subscribe(socket);
    } else if (status === 401 || status === 403) {
      signOut(`The stream refused the token: ${detail ?? title}`);
    } else {
      setConnection('off', `stream refused: ${title}`);
      socket.disconnect();
      retryLater();
    }
  });
}

function connect() {
  const socket = io('/v1', {
    path: '/socket.io',
    auth: (cb) => cb({ token: state.token }), // read on every (re)connect: in the handshake, not the URL
    forceNew: true,
    reconnectionDelay: 1000,
    reconnectionDelayMax: 15_000,
    timeout: 15_000,
  });
  state.socket = socket;
  let closingReason = null;
  setConnection('wait', 'connecting…');

  socket.on('connect', () => {
    closingReason = null;
    subscribe(socket);
  });
  socket.on('event', onEvent);
  socket.on('closing', ({ reason }) => {
    closingReason = reason;
    if (/expired|revoked/i.test(reason)) signOut(`The server closed the stream: ${reason}.`);
  });
  socket.on('disconnect', (reason) => {
    if (state.socket !== socket) return;
    setConnection('wait', `reconnecting… (${closingReason ?? reason})`);
    if (!socket.active) retryLater(); // closed by the server: Socket.IO leaves reconnecting to us
  });
  socket.on('connect_error', (err) => {
    if (state.socket !== socket) return;
    const status = err.data?.status;
    if (status === 401 || status === 403) {
      signOut(`The stream refused the token: ${err.data.detail ?? err.message}`);
      return;
    }
    setConnection('off', 'offline · retrying');
    if (!socket.active) retryLater();
  });
  socket.io.on('reconnect_attempt', (n) => {
    if (state.socket === socket) setConnection('wait', `reconnecting… (${n})`);
  });
}

/* ---------------------------------------------------------------- start */

let started = false;

function start() {
  if (state.socket) {
    state.socket.removeAllListeners();
    state.socket.disconnect();
    state.socket = null;
  }
  loadFactories(true).catch((err) => refusedCredentials(err));
  runRefresh();
  if (state.token) connect();
  if (!started) {
    started = true;
    setInterval(requestRefresh, REFRESH_EVERY_MS);
  }
}

function tick() {
  const now = new Date();
  $('clock').textContent = clockTime(now);
  const cutoff = Date.now() - 60_000;
  while (state.eventTimes.length && state.eventTimes[0] < cutoff) state.eventTimes.shift();
  $('event-rate').textContent = `${state.eventTimes.length} / min`;
  if (state.lastEventAt) {
    const s = Math.round((now.getTime() - state.lastEventAt.getTime()) / 1000);
    $('last-event').textContent = `last event ${s < 60 ? `${s} s` : duration(s / 60)} ago`;
  }
}

$('sign-in-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const token = $('token-input').value.trim();
  $('token-input').value = '';
  if (token) signIn(token);
});
$('sign-in').addEventListener('cancel', (ev) => {
  if (!state.token) ev.preventDefault(); // nothing to show without a token
});
$('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem(CURSOR_KEY);
  state.lastCursor = undefined;
  signOut();
});
window.addEventListener('hashchange', () => {
  const token = takeTokenFromUrl();
  if (token) signIn(token);
});

let resizeTimer;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(fitAll, 150);
});
tick();
setInterval(tick, 1000);
setConnection('off', 'not connected');
const initial = takeTokenFromUrl() ?? sessionStorage.getItem(TOKEN_KEY);
if (initial) signIn(initial);
else showSignIn();
