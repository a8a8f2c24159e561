// Berth Studio: the web console. Hand-written, no build step, no dependencies.
// It only calls the /v1 management API (with the session cookie and, for
// changes, the X-Berth-CSRF header) and the scoring gateway, so it can do
// exactly what the REST API allows.
'use strict';

(function () {
  const CSRF = metaContent('berth-csrf');
  const REFRESH_MS = 5000;
  const STATE_CLASS = {
    Healthy: 'ok', Transitioning: 'busy', Unhealthy: 'warn', Failed: 'bad',
  };
  const OP_CLASS = {
    Succeeded: 'ok', Running: 'busy', NotStarted: 'busy', Failed: 'bad',
    Cancelled: 'warn', TimedOut: 'bad', RolledBack: 'warn',
  };
  const EVENT_TYPES = [
    'operation.started', 'operation.succeeded', 'operation.failed', 'operation.rolled_back', 'rollout.step',
    'service.state_changed', 'service.deleted', 'service.scaled',
    'replica.restarted', 'replica.killed', 'model.registered', 'model.alias_moved',
  ];
  const TABS = [
    ['overview', 'Overview'], ['revisions', 'Revisions'], ['traffic', 'Traffic'],
    ['metrics', 'Metrics'], ['logs', 'Logs'], ['events', 'Events'], ['keys', 'Keys'],
    ['test', 'Test'], ['consume', 'Consume'], ['update', 'Update'],
  ];

  // What the current page started (timers, streams); stopped on navigation.
  let pageCleanup = [];
  let renderSeq = 0;

  function metaContent(name) {
    const m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.getAttribute('content') : '';
  }

  // ---------- DOM helpers (text only: never innerHTML with data) ----------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else if (v === true) el.setAttribute(k, '');
        else el.setAttribute(k, String(v));
      }
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  function svgEl(tag, attrs) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  function badge(state, map) {
    return h('span', { class: 'badge ' + ((map || STATE_CLASS)[state] || 'neutral') }, state || '—');
  }
  function fmtTime(t) {
    if (!t) return '—';
    const d = new Date(t);
    return isNaN(d) ? String(t) : d.toLocaleString();
  }
  function fmtNum(v, digits) {
    if (v === null || v === undefined || isNaN(v)) return '—';
    return Number(v).toFixed(digits === undefined ? 1 : digits);
  }
  function fmtBytes(n) {
    if (n === null || n === undefined) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0; let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(1)) + ' ' + units[i];
  }
  function kv(obj) {
    const entries = Object.entries(obj || {});
    if (!entries.length) return h('span', { class: 'muted' }, '—');
    return h('span', { class: 'chips' }, entries.map(([k, v]) => h('span', { class: 'chip' }, k + '=' + v)));
  }
  // Each cell is labelled with its column, so that on a phone a row can show as a card.
  function labelCells(tr, headers) {
    [...tr.children].forEach((cell, i) => { if (headers[i]) cell.setAttribute('data-label', headers[i]); });
    return tr;
  }
  function table(headers, rows, caption) {
    for (const tr of rows) labelCells(tr, headers);
    return h('div', { class: 'table-wrap' }, h('table', null,
      caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', null, h('tr', null, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', null, rows)));
  }
  function toast(text) {
    const t = document.getElementById('toast');
    if (!t) return;
    t.textContent = text;
    t.classList.add('show');
    setTimeout(() => t.classList.remove('show'), 2500);
  }
  async function copy(text, what) {
    try {
      await navigator.clipboard.writeText(text);
      toast((what || 'Text') + ' copied');
    } catch (e) {
      toast('Copy is not allowed here; select the text and copy it');
    }
  }
  function copyButton(getText, what) {
    return h('button', { type: 'button', class: 'secondary small', onclick: () => copy(getText(), what) }, 'Copy');
  }

  // ---------- API ----------
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || ('HTTP ' + status));
      this.status = status;
      this.code = body && body.code;
      this.hint = body && body.hint;
      this.details = (body && body.details) || [];
    }
  }
  async function toError(res) {
    let body = null;
    const text = await res.text().catch(() => '');
    try { body = JSON.parse(text); } catch (e) { body = { message: text.trim() || res.statusText }; }
    if (res.status === 401 && body && body.code === 'unauthenticated') {
      // The session ended (expired, signed out elsewhere, server restarted).
      location.assign('/');
    }
    return new ApiError(res.status, body);
  }
  async function api(method, path, body, extra) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET' && method !== 'HEAD') headers['X-Berth-CSRF'] = CSRF;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, Object.assign({
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    }, extra || {}));
    if (!res.ok) throw await toError(res);
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }
  // Reads a streaming response line by line until it ends or `signal` aborts.
  // Reads a follow route as server-sent events (`Accept: text/event-stream`):
  // calls onData with each message's data. fetch() rather than EventSource, so
  // that a refusal shows the server's message and hint, and the tail decides
  // itself when to reconnect.
  async function streamEvents(path, onData, signal) {
    const res = await fetch(path, { credentials: 'same-origin', signal, headers: { Accept: 'text/event-stream' } });
    if (!res.ok) throw await toError(res);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    let data = [];
    const line = (text) => {
      if (text === '') {
        if (data.length) onData(data.join('\n'));
        data = [];
      } else if (text.startsWith('data:')) {
        data.push(text.slice(text.startsWith('data: ') ? 6 : 5));
      }
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        line(buf.slice(0, i).replace(/\r$/, ''));
        buf = buf.slice(i + 1);
      }
    }
    line(buf);
    line('');
  }
  function errorBox(err) {
    const e = err instanceof ApiError ? err : new ApiError(0, { message: String((err && err.message) || err) });
    return h('div', { class: 'error', role: 'alert' },
      h('strong', null, e.message),
      e.code ? h('span', { class: 'muted' }, ' (' + e.code + (e.status ? ', HTTP ' + e.status : '') + ')') : null,
      e.details.length > 1 ? h('ul', null, e.details.map((d) => h('li', null, d))) : null,
      e.hint ? h('p', { class: 'hint' }, 'Hint: ' + e.hint) : null);
  }
  // Redraws `container` with `fn` and gives focus back to the equivalent element
  // (same id or href), so that live refreshes never pull focus from a keyboard user.
  function keepFocus(container, fn) {
    const a = document.activeElement;
    const inside = a && a !== document.body && container.contains(a);
    const id = inside && a.id;
    const href = inside && a.getAttribute('href');
    const text = inside && a.textContent;
    fn();
    if (!inside) return;
    let again = id ? document.getElementById(id) : null;
    if (!again && href) again = container.querySelector('[href="' + CSS.escape(href) + '"]');
    if (!again && text) again = [...container.querySelectorAll(a.tagName)].find((x) => x.textContent === text);
    if (again) again.focus();
  }
  function isAbort(e) { return e && (e.name === 'AbortError'); }

  function every(ms, fn) {
    let stopped = false;
    let timer = null;
    const tick = async () => {
      if (stopped) return;
      try { await fn(); } catch (e) { /* shown by fn */ }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    timer = setTimeout(tick, ms);
    const stop = () => { stopped = true; clearTimeout(timer); };
    pageCleanup.push(stop);
    return stop;
  }
  function abortable() {
    const c = new AbortController();
    pageCleanup.push(() => c.abort());
    return c;
  }

  // ---------- Charts (inline SVG) ----------
  function sparkline(values, label, cls) {
    const w = 96; const hgt = 24;
    const svg = svgEl('svg', { viewBox: '0 0 ' + w + ' ' + hgt, width: w, height: hgt, class: 'spark ' + (cls || ''), role: 'img', 'aria-label': label });
    const nums = values.map((v) => (v === null || v === undefined || isNaN(v) ? 0 : v));
    if (nums.length < 2) {
      svg.appendChild(svgEl('line', { x1: 0, y1: hgt - 1, x2: w, y2: hgt - 1, class: 'base' }));
      return svg;
    }
    const max = Math.max(...nums) || 1;
    const pts = nums.map((v, i) => (i * w / (nums.length - 1)).toFixed(1) + ',' + (hgt - 1 - v / max * (hgt - 3)).toFixed(1));
    svg.appendChild(svgEl('polyline', { points: pts.join(' '), fill: 'none' }));
    return svg;
  }
  function lineChart(title, points, series, unit) {
    const w = 560; const hgt = 180; const pad = { l: 44, r: 8, t: 8, b: 22 };
    const fig = h('figure', { class: 'chart' }, h('figcaption', null, title));
    const svg = svgEl('svg', { viewBox: '0 0 ' + w + ' ' + hgt, role: 'img', 'aria-label': title, preserveAspectRatio: 'none' });
    let max = 0;
    for (const s of series) for (const p of points) { const v = s.get(p); if (v !== null && v !== undefined && !isNaN(v)) max = Math.max(max, v); }
    if (max === 0) max = 1;
    const x = (i) => pad.l + (points.length < 2 ? 0 : i * (w - pad.l - pad.r) / (points.length - 1));
    const y = (v) => hgt - pad.b - v / max * (hgt - pad.t - pad.b);
    for (const f of [0, 0.5, 1]) {
      svg.appendChild(svgEl('line', { x1: pad.l, x2: w - pad.r, y1: y(max * f), y2: y(max * f), class: 'grid' }));
      const t = svgEl('text', { x: pad.l - 4, y: y(max * f) + 4, 'text-anchor': 'end', class: 'axis' });
      t.textContent = fmtNum(max * f, max * f >= 10 ? 0 : 2);
      svg.appendChild(t);
    }
    if (points.length) {
      const t0 = svgEl('text', { x: pad.l, y: hgt - 6, class: 'axis' });
      t0.textContent = new Date(points[0].time).toLocaleTimeString();
      svg.appendChild(t0);
      const t1 = svgEl('text', { x: w - pad.r, y: hgt - 6, 'text-anchor': 'end', class: 'axis' });
      t1.textContent = new Date(points[points.length - 1].time).toLocaleTimeString();
      svg.appendChild(t1);
    }
    series.forEach((s, si) => {
      const pts = [];
      points.forEach((p, i) => { const v = s.get(p); if (v !== null && v !== undefined && !isNaN(v)) pts.push(x(i).toFixed(1) + ',' + y(v).toFixed(1)); });
      if (pts.length) svg.appendChild(svgEl('polyline', { points: pts.join(' '), class: 'series s' + si, fill: 'none' }));
    });
    fig.appendChild(svg);
    const last = points[points.length - 1];
    fig.appendChild(h('div', { class: 'legend' }, series.map((s, si) =>
      h('span', { class: 'key s' + si }, s.name + ': ' + (last ? fmtNum(s.get(last), 2) : '—') + (unit ? ' ' + unit : '')))));
    if (!points.length) fig.appendChild(h('p', { class: 'muted' }, 'No samples yet: one is taken every 5 seconds.'));
    return fig;
  }

  // ---------- Router ----------
  function parseRoute() {
    const parts = (location.hash || '#/services').replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    return { section: parts[0] || 'services', name: parts[1], tab: parts[2] || 'overview' };
  }
  function navHighlight(section) {
    document.querySelectorAll('header nav a').forEach((a) => {
      if (a.getAttribute('href') === '#/' + section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
  }
  async function route() {
    for (const f of pageCleanup) { try { f(); } catch (e) { /* ignore */ } }
    pageCleanup = [];
    const seq = ++renderSeq;
    const r = parseRoute();
    navHighlight(r.section);
    // Each route renders into its own container: a page still loading when the
    // user moves on writes into a detached element, never into the new page.
    const main = h('div', { class: 'view' });
    clear(document.getElementById('main')).appendChild(main);
    const pages = {
      services: r.name ? () => servicePage(main, r.name, r.tab) : () => servicesPage(main),
      models: () => modelsPage(main),
      environments: () => environmentsPage(main),
      events: () => eventsPage(main),
      webhooks: () => webhooksPage(main),
    };
    const page = pages[r.section] || pages.services;
    try {
      await page();
    } catch (e) {
      if (seq === renderSeq && !isAbort(e)) append(main, [errorBox(e)]);
    }
  }

  // ---------- Services list ----------
  async function servicesPage(main) {
    document.title = 'Services · Berth Studio';
    const search = h('input', { type: 'search', id: 'svc-search', placeholder: 'Filter by name, model or state', 'aria-label': 'Filter services' });
    const stateSel = h('select', { id: 'svc-state', 'aria-label': 'State' },
      h('option', { value: '' }, 'Any state'),
      Object.keys(STATE_CLASS).map((s) => h('option', { value: s }, s)));
    const body = h('div', { id: 'svc-list' }, h('p', { class: 'muted' }, 'Loading…'));
    append(main, [h('div', { class: 'page-head' }, h('h1', null, 'Services'),
      h('div', { class: 'filters' }, search, stateSel)), body]);
    let data = null;
    const draw = () => keepFocus(body, drawNow);
    const drawNow = () => {
      if (!data) return;
      const q = search.value.trim().toLowerCase();
      const st = stateSel.value;
      const series = new Map(data.series.map((s) => [s.service, s.points]));
      const rows = data.services.filter((s) =>
        (!st || s.state === st) &&
        (!q || s.name.toLowerCase().includes(q) || s.models.join(' ').toLowerCase().includes(q) || s.state.toLowerCase().includes(q)));
      clear(body);
      if (!data.services.length) {
        append(body, [h('p', { class: 'empty' }, 'No services yet. Deploy one with ',
          h('code', null, 'berth model deploy -n NAME -m MODEL:1 --ic inferenceconfig.json'), '.')]);
        return;
      }
      append(body, [table(['Service', 'State', 'Serving', 'Requests/s', '5xx rate', 'p99 latency', 'Models'],
        rows.map((s) => {
          const pts = series.get(s.name) || [];
          const last = pts[pts.length - 1];
          return h('tr', { 'data-service': s.name },
            h('td', null, h('a', { href: '#/services/' + encodeURIComponent(s.name) }, s.name)),
            h('td', null, badge(s.state)),
            h('td', null, trafficSummary(s)),
            h('td', { class: 'metric' }, sparkline(pts.map((p) => p.rps), 'requests per second, last 15 minutes'), h('span', null, last ? fmtNum(last.rps) : '—')),
            h('td', { class: 'metric' }, sparkline(pts.map((p) => p.errorRate || 0), '5xx rate, last 15 minutes', 'bad'), h('span', null, last && last.errorRate !== undefined ? fmtNum(last.errorRate * 100) + ' %' : '—')),
            h('td', { class: 'metric' }, sparkline(pts.map((p) => p.p99Ms), 'p99 latency, last 15 minutes'), h('span', null, last && last.p99Ms !== undefined ? fmtNum(last.p99Ms) + ' ms' : '—')),
            h('td', null, s.models.join(', ')));
        }), 'Services'),
      rows.length ? null : h('p', { class: 'empty' }, 'No service matches the filter.')]);
    };
    search.addEventListener('input', draw);
    stateSel.addEventListener('change', draw);
    const load = async () => {
      try {
        const [services, series] = await Promise.all([api('GET', '/v1/services'), api('GET', '/v1/timeseries')]);
        data = { services: services.value, series: series.value };
        draw();
        // For bench/studio_first_page.py: when the first list is on screen.
        if (!performance.getEntriesByName('studio:services-shown').length) performance.mark('studio:services-shown');
      } catch (e) {
        clear(body); append(body, [errorBox(e)]);
      }
    };
    await load();
    every(REFRESH_MS, load);
  }

  // The traffic of a service: its serving revisions with their weights
  // (`traffic`; one at 100 % outside rollouts and splits).
  function trafficOf(s) {
    if (Array.isArray(s.traffic) && s.traffic.length) {
      return s.traffic.map((t) => ({ revision: t.revision, weight: t.weight, role: t.role, name: t.name }));
    }
    return s.servingRevision ? [{ revision: s.servingRevision, weight: 100 }] : [];
  }
  function trafficSummary(s) {
    const t = trafficOf(s);
    if (!t.length) return h('span', { class: 'muted' }, 'nothing');
    return h('span', { class: 'traffic' }, t.map((x) => 'r' + x.revision + ' · ' + x.weight + ' %' +
      (x.name ? ' ' + x.name : '') + (x.role === 'candidate' ? ' (candidate)' : '')).join(', '));
  }

  // ---------- Service page ----------
  async function servicePage(main, name, tab) {
    document.title = name + ' · Berth Studio';
    const svc = await api('GET', '/v1/services/' + encodeURIComponent(name));
    const head = h('div', { class: 'page-head' },
      h('h1', null, h('a', { href: '#/services', class: 'crumb' }, 'Services'), ' / ', name),
      h('span', { id: 'svc-state' }, badge(svc.state)));
    const tabs = h('nav', { class: 'tabs', 'aria-label': 'Service sections' },
      TABS.map(([id, label]) => h('a', {
        href: '#/services/' + encodeURIComponent(name) + '/' + id,
        'aria-current': id === tab ? 'page' : null, id: 'tab-' + id,
      }, label)));
    const panel = h('section', { class: 'panel', 'aria-labelledby': 'tab-' + tab });
    append(main, [head, tabs, panel]);
    const render = {
      overview: overviewTab, revisions: revisionsTab, traffic: trafficTab, metrics: metricsTab,
      logs: logsTab, events: serviceEventsTab, keys: keysTab, test: testTab, consume: consumeTab,
      update: updateTab,
    }[tab] || overviewTab;
    await render(panel, svc);
  }

  // Keeps the service page's state badge current while a tab refreshes.
  function headState(s) {
    const el = document.getElementById('svc-state');
    if (el && el.textContent !== s.state) { clear(el); append(el, [badge(s.state)]); }
  }

  function dl(pairs) {
    return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
  }

  async function overviewTab(panel, svc) {
    const opViews = new Map();
    const opView = (id) => { if (!opViews.has(id)) opViews.set(id, operationView(id)); return opViews.get(id); };
    let shown = '';
    const draw = (s) => {
      const key = JSON.stringify(s);
      if (key === shown) return;
      shown = key;
      keepFocus(panel, () => drawNow(s));
    };
    const drawNow = (s) => {
      clear(panel);
      const st = s;
      const as = st.autoScaler || {};
      const ds = s.deploymentStatus || {};
      const res = s.resources;
      const uri = s.scoringUri || '';
      const swaggerBox = h('div', { id: 'swagger' });
      append(panel, [
        s.error ? operationErrorBox(s.error, s) : null,
        dl([
          ['Scoring URI', uri ? h('span', { class: 'uri' }, h('code', { id: 'scoring-uri' }, uri), copyButton(() => uri, 'Scoring URI')) : '—'],
          ['Swagger', s.swaggerUri ? h('button', { type: 'button', class: 'secondary small', onclick: () => showSwagger(swaggerBox, s) }, 'Show swagger.json') : '—'],
          ['State', h('span', null, badge(s.state), ds.reason ? ' ' + ds.reason : '')],
          ['Serving', trafficSummary(s)],
          s.rolloutStatus ? ['Rollout', h('span', { id: 'overview-rollout' }, s.rolloutStatus.strategy + ' of r' + s.rolloutStatus.candidate + ': step ' + s.rolloutStatus.step + ' of ' + s.rolloutStatus.steps + ', ' + s.rolloutStatus.phase + ' · ',
            h('a', { href: '#/services/' + encodeURIComponent(s.name) + '/traffic' }, 'gates, promote, abort'))] : null,
          s.mirror ? ['Mirror', s.mirror.percent + ' % copied to r' + s.mirror.revision + ' (' + s.mirror.differing + ' differing answers)'] : null,
          ['Rollout strategy', s.rollout ? rolloutSummary(s.rollout) : 'rolling'],
          ['Latest revision', 'r' + s.latestRevision],
          ['Compute', st.computeType || 'local'],
          ['Replicas', (ds.availableReplicas ?? '—') + ' ready / ' + (ds.desiredReplicas ?? '—') + ' desired' + (ds.restarts ? ' · ' + ds.restarts + ' restarts' : '')],
          ['Autoscale', as.autoscaleEnabled
            ? 'on: ' + as.minReplicas + '–' + as.maxReplicas + ' replicas, target ' + as.targetUtilization + ' %' + (ds.utilization !== undefined && ds.utilization !== null ? ', utilisation ' + fmtNum(ds.utilization * 100) + ' %' : '')
            : 'off (' + st.numReplicas + ' replicas)'],
          ['Last scaling', ds.lastScaling ? (ds.lastScaling.from + ' → ' + ds.lastScaling.to + (ds.lastScaling.applied ? '' : ' (not applied)') + ': ' + ds.lastScaling.reason + ' · ' + fmtTime(ds.lastScaling.time)) : '—'],
          ['Resources', res ? res.enforcement + ': cpu ' + res.cpu + ', cpu limit ' + res.cpuLimit + ', memory ' + res.memory + ', memory limit ' + res.memoryLimit + (res.gpu ? ', gpu ' + res.gpu : '') : '—'],
          res && res.lastLimitKill ? ['Last limit kill', 'r' + res.lastLimitKill.revision + '/' + res.lastLimitKill.replica + ': ' + res.lastLimitKill.reason] : null,
          ['Auth', st.authEnabled ? 'keys' : (st.tokenAuthEnabled ? 'tokens' : 'none')],
          ['Models', s.models.join(', ') || '—'],
          ['Environment', s.environment],
          ['Entry script', s.entryScript],
          ['Timeouts', 'scoring ' + st.scoringTimeoutMs + ' ms, queue wait ' + st.maxQueueWaitMs + ' ms, ' + st.maxConcurrentRequestsPerContainer + ' concurrent per replica'],
          ['Request log', st.appInsightsEnabled ? 'on' : 'off'],
          ['Tags', kv(s.tags)], ['Properties', kv(s.properties)],
          ['Created', fmtTime(s.createdTime)], ['Updated', fmtTime(s.updatedTime)],
        ]),
        swaggerBox,
        s.operationId ? h('div', null, h('h2', null, s.state === 'Transitioning' ? 'Running operation' : 'Last operation'), opView(s.operationId)) : null,
      ]);
    };
    draw(svc);
    every(REFRESH_MS, async () => {
      if (document.querySelector('#swagger pre')) return; // keep what the user opened
      try {
        const s = await api('GET', '/v1/services/' + encodeURIComponent(svc.name));
        headState(s);
        draw(s);
      } catch (e) { /* keep the last view */ }
    });
  }

  function rolloutSummary(r) {
    const gates = 'gates: 5xx ≤ baseline + ' + r.maxErrorRate + ' points' + (r.maxP99Ms ? ', p99 ≤ ' + r.maxP99Ms + ' ms' : '') + ' after ' + r.minRequests + ' requests' + (r.autoRollback ? ', automatic rollback' : ', no automatic rollback');
    if (r.strategy === 'canary') return 'canary ' + r.canaryPercent + ' % for ' + fmtDuration(r.bakeSeconds) + '; ' + gates;
    if (r.strategy === 'linear') return 'linear in ' + r.steps + ' steps of ' + fmtDuration(r.bakeSeconds) + '; ' + gates;
    if (r.strategy === 'blueGreen') return 'blue-green, the old revision kept warm for ' + fmtDuration(r.bakeSeconds);
    return 'rolling (all at once)';
  }

  function operationErrorBox(err, svc) {
    return h('div', { class: 'error', role: 'alert', id: 'service-error' },
      h('strong', null, err.code + ' at ' + err.step + ': ' + err.message),
      svc && svc.servingRevision ? h('p', null, 'Revision r' + svc.servingRevision + ' is still serving.') : null,
      err.output && err.output.length ? h('details', null, h('summary', null, 'Worker output (' + err.output.length + ' lines)'), h('pre', { class: 'log' }, err.output.join('\n'))) : null);
  }

  // A rollout that ended with traffic back on the previous revision: which gate
  // (or who) stopped it, and that nothing else changed.
  function rolledBackBox(op) {
    const err = op.error || {};
    const r = op.rollout;
    return h('div', { class: 'rolled-back', role: 'alert', id: 'rolled-back' },
      h('strong', null, 'Rolled back' + (err.code ? ' (' + err.code + ')' : '') + ': '), err.message || 'the rollout did not complete',
      h('p', null, r && r.baseline ? 'Traffic is back on r' + r.baseline + '; r' + r.candidate + ' was drained.' : 'Traffic is back on the previous revision.'));
  }

  async function scoringAuth(svc) {
    const st = svc;
    if (st.authEnabled) {
      const keys = await api('GET', '/v1/services/' + encodeURIComponent(svc.name) + '/keys');
      return 'Bearer ' + keys.primaryKey;
    }
    if (st.tokenAuthEnabled) {
      const t = await api('POST', '/v1/services/' + encodeURIComponent(svc.name) + '/token');
      return 'Bearer ' + t.accessToken;
    }
    return null;
  }
  function gatewayPath(svc, what) {
    return '/api/v1/service/' + encodeURIComponent(svc.name) + '/' + what;
  }
  async function fetchSwagger(svc) {
    const auth = await scoringAuth(svc);
    const res = await fetch(gatewayPath(svc, 'swagger.json'), { headers: auth ? { Authorization: auth } : {}, credentials: 'omit' });
    if (!res.ok) throw await toError(res);
    return res.json();
  }
  async function showSwagger(box, svc) {
    clear(box);
    try {
      const doc = await fetchSwagger(svc);
      append(box, [h('h2', null, 'swagger.json'), h('pre', { class: 'code' }, JSON.stringify(doc, null, 2))]);
    } catch (e) { append(box, [errorBox(e)]); }
  }
  function swaggerExample(doc) {
    try {
      const post = doc.paths && (doc.paths['/score'] || doc.paths['/']) && (doc.paths['/score'] || doc.paths['/']).post;
      const p = post && post.parameters && post.parameters.find((x) => x.in === 'body');
      let schema = p && p.schema;
      if (schema && schema.$ref && doc.definitions) schema = doc.definitions[schema.$ref.split('/').pop()];
      if (schema && schema.example !== undefined) return schema.example;
      if (doc.definitions && doc.definitions.ServiceInput && doc.definitions.ServiceInput.example !== undefined) return doc.definitions.ServiceInput.example;
    } catch (e) { /* no example */ }
    return null;
  }

  // Follows an operation to its end, showing each step as it happens.
  function operationView(id, onEnd) {
    const box = h('div', { class: 'operation', id: 'operation', 'data-operation': id });
    const stateEl = h('span', { class: 'op-state' }, badge('Running', OP_CLASS));
    const log = h('ol', { class: 'op-log', 'aria-live': 'polite' });
    const progress = h('p', { class: 'op-rollout', hidden: true });
    const tail = h('div');
    append(box, [h('p', null, 'Operation ', h('code', null, id), ' ', stateEl), log, progress, tail]);
    let offset = 0;
    let done = false;
    let stop = () => {};
    const poll = async () => {
      if (done) return;
      try {
        const op = await api('GET', '/v1/operations/' + encodeURIComponent(id) + '?offset=' + offset);
        for (const ev of op.events || []) {
          append(log, [h('li', null, h('span', { class: 'muted' }, '+' + (ev.elapsedMs / 1000).toFixed(1) + ' s '), ev.message)]);
          offset = Math.max(offset, ev.seq + 1);
        }
        clear(stateEl); append(stateEl, [badge(op.state, OP_CLASS), op.targetRevision ? ' r' + op.targetRevision : '']);
        box.setAttribute('data-state', op.state);
        const r = op.rollout;
        progress.hidden = !r || op.state !== 'Running';
        const line = r ? r.strategy + ' rollout of r' + r.candidate + ': step ' + r.step + ' of ' + r.steps + ', ' + r.phase +
          (Object.keys(r.weights || {}).length ? ' · ' + weightsText(r.weights) : '') : '';
        if (r && !progress.hidden && progress.getAttribute('data-line') !== line) {
          progress.setAttribute('data-line', line);
          clear(progress);
          append(progress, [line + ' (', h('a', { href: '#/services/' + encodeURIComponent(op.service) + '/traffic' }, 'gates, promote, abort'), ')']);
        }
        if (op.state !== 'Running' && op.state !== 'NotStarted') {
          done = true;
          stop();
          if (op.state === 'RolledBack') append(tail, [rolledBackBox(op)]);
          else if (op.error) append(tail, [operationErrorBox(op.error)]);
          if (onEnd) onEnd(op);
        }
      } catch (e) {
        if (!isAbort(e)) { done = true; stop(); append(tail, [errorBox(e)]); }
      }
    };
    poll();
    stop = every(700, poll);
    return box;
  }

  // ---------- Revisions ----------
  function flatten(obj, prefix, out) {
    out = out || {};
    if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
      for (const [k, v] of Object.entries(obj)) flatten(v, prefix ? prefix + '.' + k : k, out);
    } else {
      out[prefix] = JSON.stringify(obj);
    }
    return out;
  }
  function diffSpecs(a, b) {
    const fa = flatten(a, ''); const fb = flatten(b, '');
    const keys = [...new Set([...Object.keys(fa), ...Object.keys(fb)])].sort();
    return keys.filter((k) => fa[k] !== fb[k]).map((k) => ({ key: k, from: fa[k], to: fb[k] }));
  }
  async function revisionsTab(panel, svc) {
    const list = await api('GET', '/v1/services/' + encodeURIComponent(svc.name) + '/revisions');
    const revs = list.value.slice().sort((a, b) => b.revision - a.revision);
    const byNumber = new Map(revs.map((r) => [r.revision, r]));
    const opBox = h('div');
    append(panel, [opBox, h('ol', { class: 'timeline' }, revs.map((r) => {
      const prev = byNumber.get(r.revision - 1);
      const changes = prev ? diffSpecs(prev.spec, r.spec) : [];
      return h('li', { 'data-revision': r.revision, class: r.serving ? 'serving' : '' },
        h('div', { class: 'rev-head' },
          h('strong', null, 'r' + r.revision), r.serving ? badge('serving', { serving: 'ok' }) : null,
          h('span', { class: 'muted' }, fmtTime(r.createdTime)),
          r.serving ? null : h('button', {
            type: 'button', class: 'secondary small',
            onclick: () => rollback(svc, r.revision, opBox),
          }, 'Roll back to r' + r.revision)),
        h('p', null, 'Models ', r.spec.models.join(', '), ' · environment ', r.spec.inference.environment, ' · ', r.spec.inference.entryScript),
        prev ? (changes.length
          ? h('details', null, h('summary', null, changes.length + ' change(s) from r' + prev.revision),
            table(['Field', 'r' + prev.revision, 'r' + r.revision], changes.map((c) => h('tr', null,
              h('td', null, h('code', null, c.key)), h('td', { class: 'from' }, c.from === undefined ? '—' : c.from), h('td', { class: 'to' }, c.to === undefined ? '—' : c.to))), 'Changes'))
          : h('p', { class: 'muted' }, 'Same spec as r' + prev.revision + ' (a redeploy or rollback).'))
          : h('p', { class: 'muted' }, 'First revision.'));
    }))]);
  }
  async function rollback(svc, revision, box) {
    if (!window.confirm('Roll ' + svc.name + ' back to revision r' + revision + '? Its replicas start, then all traffic moves to it.')) return;
    clear(box);
    try {
      const accepted = await api('POST', '/v1/services/' + encodeURIComponent(svc.name) + '/rollback', { revision });
      append(box, [operationView(accepted.operation.id)]);
    } catch (e) { append(box, [errorBox(e)]); }
  }

  // ---------- Traffic ----------
  // The serving revisions with their weights and last-minute figures
  // (`GET .../traffic`), a hand-set split (`PUT .../traffic`), the running
  // rollout's steps and gates with promote and abort (`POST .../rollout/*`),
  // shadow traffic (`PUT`/`DELETE .../mirror`) and rollback, refreshed every few seconds.
  const TRAFFIC_REFRESH_MS = 3000;
  const SPLIT_ROWS = 8;
  function weightBar(weight, label) {
    const svg = svgEl('svg', { viewBox: '0 0 100 10', preserveAspectRatio: 'none', class: 'wbar', role: 'img', 'aria-label': label });
    svg.appendChild(svgEl('rect', { x: 0, y: 0, width: 100, height: 10, rx: 5, class: 'track' }));
    if (weight > 0) svg.appendChild(svgEl('rect', { x: 0, y: 0, width: Math.min(100, weight), height: 10, rx: 5, class: 'wfill' }));
    return svg;
  }
  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return '';
    if (seconds > 0 && seconds % 3600 === 0) return seconds / 3600 + 'h';
    if (seconds > 0 && seconds % 60 === 0) return seconds / 60 + 'm';
    return seconds + 's';
  }
  function weightsText(weights) {
    return Object.entries(weights || {}).map(([rev, w]) => 'r' + rev + ' ' + w + ' %').join(' · ');
  }
  function gateValue(gate, v) {
    if (v === null || v === undefined) return '—';
    return gate === 'p99Latency' ? fmtNum(v, 1) + ' ms' : fmtNum(v, 2) + ' %';
  }
  const GATE_LABEL = { errorRate: '5xx rate', p99Latency: 'p99 latency' };
  const VERDICT_CLASS = { pending: 'neutral', passing: 'ok', failed: 'bad' };

  async function trafficTab(panel, svc) {
    const base = '/v1/services/' + encodeURIComponent(svc.name);
    const [list, first] = await Promise.all([api('GET', base + '/revisions'), api('GET', base + '/traffic')]);
    let revs = list.value.slice().sort((a, b) => b.revision - a.revision);
    const live = h('div', { id: 'traffic-live' });
    const rolloutBox = h('div', { id: 'rollout' });
    const mirrorBox = h('div', { id: 'mirror' });
    const opBox = h('div', { id: 'traffic-op' });
    const followed = new Set();
    let current = { svc, traffic: first };
    let shown = '';

    // Follows an operation in opBox (once per operation), then refreshes the panel.
    const follow = (id) => {
      if (!id || followed.has(id)) return;
      followed.add(id);
      clear(opBox);
      append(opBox, [operationView(id, () => { refresh().catch(() => {}); })]);
    };

    const drawLive = () => {
      const t = current.traffic;
      const roles = new Map(trafficOf(current.svc).map((x) => [x.revision, x.role]));
      clear(live);
      if (!t.revisions.length) { append(live, [h('p', { class: 'muted' }, 'No revision serves yet.')]); return; }
      append(live, [table(['Revision', 'Weight', 'Replicas', 'Requests/s', '5xx', 'p50', 'p99'], t.revisions.map((e) => {
        const f = e.figures || {};
        const role = roles.get(e.revision);
        return h('tr', { 'data-revision': e.revision },
          h('td', null, h('strong', null, 'r' + e.revision), e.name ? ' ' + e.name : '', role ? h('span', { class: 'muted' }, ' ' + role) : null),
          h('td', { class: 'metric' }, weightBar(e.weight, 'r' + e.revision + ' takes ' + e.weight + ' % of requests'), h('span', { class: 'weight-pct' }, e.weight + ' %')),
          h('td', null, e.readyReplicas + ' ready / ' + e.desiredReplicas + ' desired'),
          h('td', null, fmtNum(f.requestsPerSecond, 2)),
          h('td', null, fmtNum(f.errorRate, 2) + ' %'),
          h('td', null, f.p50Ms === null || f.p50Ms === undefined ? '—' : fmtNum(f.p50Ms, 1) + ' ms'),
          h('td', null, f.p99Ms === null || f.p99Ms === undefined ? '—' : fmtNum(f.p99Ms, 1) + ' ms'));
      }), 'Serving revisions'),
      h('p', { class: 'muted' }, 'Figures cover the last minute; they update every few seconds.')]);
    };

    const rolloutAction = async (what, button) => {
      const r = current.traffic.rollout || current.svc.rolloutStatus;
      const question = what === 'promote'
        ? 'Promote r' + (r ? r.candidate : '?') + ' now? The rest of the bake is skipped and it takes all traffic.'
        : 'Abort the rollout of r' + (r ? r.candidate : '?') + '? Traffic returns to r' + (r && r.baseline ? r.baseline : '?') + ' at once.';
      if (!window.confirm(question)) return;
      button.disabled = true;
      const note = document.getElementById('rollout-action');
      try {
        const status = await api('POST', base + '/rollout/' + what);
        if (note) { clear(note); append(note, [h('p', { class: 'notice', role: 'status' }, what === 'promote' ? 'Promoting r' + status.candidate + '.' : 'Rolling r' + status.candidate + ' back.')]); }
        follow(status.operationId);
        await refresh();
      } catch (e) {
        button.disabled = false;
        if (note) { clear(note); append(note, [errorBox(e)]); }
      }
    };
    const drawRollout = () => {
      const r = current.traffic.rollout || current.svc.rolloutStatus;
      clear(rolloutBox);
      append(rolloutBox, [h('h2', null, 'Rollout')]);
      if (!r) {
        const st = current.svc.rollout;
        append(rolloutBox, [h('p', { class: 'muted' }, 'No rollout is running. Updates use the ',
          h('strong', null, st ? st.strategy : 'rolling'), ' strategy (set it in the Update tab).'),
        h('div', { id: 'rollout-action' })]);
        return;
      }
      follow(r.operationId);
      const endsIn = r.bakeEnds ? Math.max(0, Math.round((new Date(r.bakeEnds) - Date.now()) / 1000)) : null;
      const gates = r.gates || [];
      append(rolloutBox, [
        dl([
          ['Strategy', h('span', { id: 'rollout-strategy' }, r.strategy + ' of r' + r.candidate + (r.baseline ? ' (replacing r' + r.baseline + ')' : ''))],
          ['Step', h('span', { id: 'rollout-step' }, r.step + ' of ' + r.steps + ' · ' + r.phase)],
          ['Weights', h('span', { id: 'rollout-weights' }, weightsText(r.weights))],
          ['Bake ends', r.bakeEnds ? h('span', { id: 'rollout-bake' }, fmtTime(r.bakeEnds) + (endsIn !== null ? ' (in ' + endsIn + ' s)' : '')) : '—'],
          ['Operation', h('code', null, r.operationId)],
        ]),
        gates.length
          ? table(['Gate', 'Measured', 'Threshold', 'Baseline', 'Requests', 'Verdict'], gates.map((g) => h('tr', { 'data-gate': g.gate },
            h('td', null, GATE_LABEL[g.gate] || g.gate),
            h('td', null, gateValue(g.gate, g.measured)),
            h('td', null, '≤ ' + gateValue(g.gate, g.threshold)),
            h('td', null, gateValue(g.gate, g.baseline)),
            h('td', null, String(g.requests)),
            h('td', null, badge(g.verdict, VERDICT_CLASS)))), 'Gates')
          : h('p', { class: 'muted' }, 'No gate figures yet.'),
        h('div', { class: 'toolbar' },
          h('button', { type: 'button', id: 'rollout-promote', onclick: (ev) => rolloutAction('promote', ev.currentTarget) }, 'Promote r' + r.candidate),
          h('button', { type: 'button', class: 'danger', id: 'rollout-abort', onclick: (ev) => rolloutAction('abort', ev.currentTarget) }, 'Abort')),
        h('div', { id: 'rollout-action' }),
      ]);
    };

    const mirrorNote = h('div', { id: 'mirror-action' });
    const diffsBox = h('div', { id: 'mirror-diffs' });
    const showDiffs = async () => {
      clear(diffsBox);
      try {
        const d = await api('GET', base + '/mirror/diffs');
        if (!d.value.length) { append(diffsBox, [h('p', { class: 'muted' }, 'No differing answers so far.')]); return; }
        append(diffsBox, [table(['Time', 'Request', 'Primary', 'Shadow'], d.value.map((x) => h('tr', null,
          h('td', { class: 'time' }, fmtTime(x.time), h('div', null, h('code', null, x.requestId))),
          h('td', null, h('pre', { class: 'code' }, x.request)),
          h('td', null, String(x.primaryStatus), h('pre', { class: 'code' }, x.primaryBody)),
          h('td', null, String(x.shadowStatus), h('pre', { class: 'code' }, x.shadowBody)))), 'Differing answers')]);
      } catch (e) { append(diffsBox, [errorBox(e)]); }
    };
    const stopMirror = async () => {
      if (!window.confirm('Stop mirroring requests to the shadow revision?')) return;
      clear(mirrorNote);
      try { await api('DELETE', base + '/mirror'); clear(diffsBox); await refresh(); } catch (e) { append(mirrorNote, [errorBox(e)]); }
    };
    const drawMirror = () => {
      const m = current.traffic.mirror || current.svc.mirror;
      mirrorForm.hidden = !!m;
      clear(mirrorBox);
      append(mirrorBox, [h('h2', null, 'Shadow traffic')]);
      if (!m) {
        append(mirrorBox, [h('p', { class: 'muted' }, 'Nothing is mirrored. A mirror copies a share of the requests to another revision after the primary answered; clients only ever get the primary\'s answer.')]);
        return;
      }
      const side = (name, s) => h('tr', null, h('th', { scope: 'row' }, name + ' r' + s.revision), h('td', null, String(s.requests)), h('td', null, String(s.errors)),
        h('td', null, s.p50Ms === null || s.p50Ms === undefined ? '—' : fmtNum(s.p50Ms, 1) + ' ms'),
        h('td', null, s.p99Ms === null || s.p99Ms === undefined ? '—' : fmtNum(s.p99Ms, 1) + ' ms'));
      append(mirrorBox, [
        h('p', { id: 'mirror-summary' }, m.percent + ' % of requests copied to r' + m.revision + ': ' + m.mirrored + ' mirrored, ' + m.dropped + ' dropped, ' + m.differing + ' answered differently.'),
        table(['Side', 'Requests', 'Errors', 'p50', 'p99'], [side('Primary', m.primary), side('Shadow', m.shadow)], 'Mirror figures'),
        h('div', { class: 'toolbar' },
          h('button', { type: 'button', class: 'secondary', id: 'mirror-diffs-show', onclick: showDiffs }, 'Show differing answers'),
          h('button', { type: 'button', class: 'danger', id: 'mirror-stop', onclick: stopMirror }, 'Stop mirroring')),
      ]);
    };

    const draw = () => {
      const key = JSON.stringify([current.traffic, current.svc.traffic, current.svc.rolloutStatus, current.svc.mirror]);
      if (key === shown) return;
      shown = key;
      keepFocus(live, drawLive);
      keepFocus(rolloutBox, drawRollout);
      keepFocus(mirrorBox, drawMirror);
    };
    const refresh = async () => {
      const [s, t] = await Promise.all([api('GET', base), api('GET', base + '/traffic')]);
      current = { svc: s, traffic: t };
      headState(s);
      draw();
      if (revs.length && s.latestRevision > revs[0].revision) {
        // A new revision (an update, a staged revision): offer it in the forms.
        revs = (await api('GET', base + '/revisions')).value.slice().sort((a, b) => b.revision - a.revision);
        revisionOptions();
        if (!edited) buildSplit();
      }
      prefill();
    };

    // The split form: a weight (and an optional name) per revision: the serving
    // ones and the newest few.
    const sumEl = h('output', { id: 'split-sum', 'aria-live': 'polite' });
    const splitNote = h('div', { id: 'split-error' });
    const splitRows = h('div');
    const olderNote = h('span', { class: 'muted' }, 'Older revisions: ', h('code', null, 'berth service traffic -n ' + svc.name + ' --set REV=PERCENT,...'));
    let inputs = [];
    // Until the user edits the split, it follows the live weights.
    let edited = false;
    const buildSplit = () => {
      const weightOf = new Map(current.traffic.revisions.map((e) => [e.revision, e]));
      const splitRevs = revs.filter((r, i) => i < SPLIT_ROWS || weightOf.has(r.revision));
      olderNote.hidden = revs.length <= splitRevs.length;
      inputs = splitRevs.map((r) => {
        const cur = weightOf.get(r.revision);
        const x = {
          revision: r.revision,
          weight: h('input', { id: 'split-w-' + r.revision, type: 'number', min: 0, max: 100, step: 1, value: cur ? cur.weight : 0, inputmode: 'numeric', 'aria-describedby': 'split-sum' }),
          name: h('input', { id: 'split-n-' + r.revision, type: 'text', value: cur && cur.name ? cur.name : '', placeholder: 'optional', autocomplete: 'off' }),
          spec: r.spec,
        };
        x.weight.addEventListener('input', () => { edited = true; showSum(); });
        x.name.addEventListener('input', () => { edited = true; });
        return x;
      });
      clear(splitRows);
      append(splitRows, [table(['Revision', 'Weight (%)', 'Name'], inputs.map((x) => h('tr', { 'data-revision': x.revision },
        h('td', null, h('label', { for: 'split-w-' + x.revision }, 'r' + x.revision), h('div', { class: 'muted' }, x.spec.models.join(', '))),
        h('td', null, x.weight),
        h('td', null, h('label', { for: 'split-n-' + x.revision, class: 'sr-only' }, 'Name of r' + x.revision), x.name))), 'Traffic split')]);
      showSum();
    };
    const readSplit = () => {
      const problems = [];
      const weights = {};
      const names = {};
      let sum = 0;
      for (const x of inputs) {
        const raw = x.weight.value.trim();
        const w = raw === '' ? 0 : Number(raw);
        if (!Number.isInteger(w) || w < 0 || w > 100) {
          problems.push('The weight of r' + x.revision + ' is `' + raw + '`: give a whole percent from 0 to 100.');
          continue;
        }
        sum += w;
        if (w > 0) {
          weights[String(x.revision)] = w;
          if (x.name.value.trim()) names[String(x.revision)] = x.name.value.trim();
        } else if (x.name.value.trim()) {
          problems.push('r' + x.revision + ' has the name `' + x.name.value.trim() + '` but no weight: name only revisions that take traffic, or clear the name.');
        }
      }
      if (!problems.length && sum !== 100) {
        problems.push('The weights add up to ' + sum + ' %: they must add up to exactly 100 % (' + (sum > 100 ? 'take ' + (sum - 100) + ' off' : 'add ' + (100 - sum)) + ').');
      }
      return { weights, names, sum, problems };
    };
    const showSum = () => {
      const s = readSplit();
      sumEl.textContent = 'Sum: ' + s.sum + ' %';
      sumEl.className = s.sum === 100 ? 'ok-text' : 'bad-text';
    };
    const prefill = () => {
      if (edited) return;
      const now = new Map(current.traffic.revisions.map((e) => [e.revision, e]));
      for (const x of inputs) {
        const e = now.get(x.revision);
        x.weight.value = e ? e.weight : 0;
        x.name.value = e && e.name ? e.name : '';
      }
      showSum();
    };
    const splitSubmit = h('button', { type: 'submit', id: 'split-submit' }, 'Set split');
    const setSplit = async () => {
      clear(splitNote);
      const s = readSplit();
      if (s.problems.length) {
        append(splitNote, [errorBox(new ApiError(0, { message: s.problems[0], details: s.problems, hint: 'nothing was sent; fix the weights and try again' }))]);
        return;
      }
      splitSubmit.disabled = true;
      try {
        const body = { weights: s.weights };
        if (Object.keys(s.names).length) body.names = s.names;
        const accepted = await api('PUT', base + '/traffic', body);
        followed.add(accepted.operation.id);
        clear(opBox);
        append(opBox, [operationView(accepted.operation.id, (op) => {
          splitSubmit.disabled = false;
          if (op.state === 'Succeeded') edited = false;
          refresh().catch(() => {});
        })]);
      } catch (e) {
        splitSubmit.disabled = false;
        append(splitNote, [errorBox(e)]);
      }
    };
    const splitForm = h('form', { id: 'split-form', class: 'split', novalidate: true, onsubmit: (e) => { e.preventDefault(); setSplit(); } },
      splitRows,
      h('div', { class: 'toolbar' }, splitSubmit, sumEl, olderNote),
      splitNote);
    buildSplit();

    // Mirror form.
    const mirrorRev = h('select', { id: 'mirror-revision', 'aria-label': 'Shadow revision' });
    const mirrorPct = h('input', { id: 'mirror-percent', type: 'number', min: 1, max: 100, step: 1, value: 10, 'aria-label': 'Percent of requests copied' });
    const startMirror = async () => {
      clear(mirrorNote);
      const pct = Number(mirrorPct.value);
      if (!Number.isInteger(pct) || pct < 1 || pct > 100) {
        append(mirrorNote, [errorBox(new ApiError(0, { message: 'The share copied is `' + mirrorPct.value + '`: give a whole percent from 1 to 100.', hint: 'nothing was sent' }))]);
        return;
      }
      try {
        await api('PUT', base + '/mirror', { revision: Number(mirrorRev.value), percent: pct });
        await refresh();
      } catch (e) { append(mirrorNote, [errorBox(e)]); }
    };
    const mirrorForm = h('form', { class: 'inline', id: 'mirror-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); startMirror(); } },
      h('label', { for: 'mirror-revision' }, 'Copy'), mirrorPct, h('label', { for: 'mirror-percent' }, '% of requests to'), mirrorRev,
      h('button', { type: 'submit', class: 'secondary' }, 'Start mirror'));

    // Rollback.
    const select = h('select', { id: 'rollback-to', 'aria-label': 'Revision' });
    const rollbackForm = h('form', { class: 'inline', onsubmit: (ev) => { ev.preventDefault(); rollback(svc, Number(select.value), opBox); } },
      h('label', { for: 'rollback-to' }, 'Move all traffic to '), select, h('button', { type: 'submit' }, 'Roll back'));
    const noRollback = h('p', { class: 'muted' }, 'There is no other revision yet.');
    // The revisions the mirror and rollback forms offer (kept selected when they are redrawn).
    const revisionOptions = () => {
      const option = (r) => h('option', { value: r.revision }, 'r' + r.revision + ' · ' + r.spec.models.join(', '));
      const fill = (sel, list) => {
        const was = sel.value;
        clear(sel);
        append(sel, [list.map(option)]);
        if (list.some((r) => String(r.revision) === was)) sel.value = was;
      };
      fill(mirrorRev, revs);
      const others = revs.filter((r) => r.revision !== current.svc.servingRevision);
      fill(select, others);
      rollbackForm.hidden = !others.length;
      noRollback.hidden = !!others.length;
    };
    revisionOptions();

    append(panel, [
      h('h2', null, 'Weights'), live,
      rolloutBox,
      opBox,
      h('h2', null, 'Set a split'),
      h('p', { class: 'muted' }, 'Give each revision a share of the requests; the shares add up to 100. Revisions that do not run get replicas first, revisions left at 0 are drained.'),
      splitForm,
      mirrorBox, mirrorForm, mirrorNote, diffsBox,
      h('h2', null, 'Roll back'),
      rollbackForm, noRollback,
    ]);
    draw();
    every(TRAFFIC_REFRESH_MS, () => refresh().catch(() => { /* keep the last view */ }));
  }

  // ---------- Metrics ----------
  async function metricsTab(panel, svc) {
    const grid = h('div', { class: 'charts' });
    append(panel, [h('p', { class: 'muted' }, 'The last 15 minutes, one sample every 5 seconds; updates live.'), grid]);
    const load = async () => {
      const s = await api('GET', '/v1/services/' + encodeURIComponent(svc.name) + '/timeseries');
      const p = s.points;
      clear(grid);
      append(grid, [
        lineChart('Requests by status class (per second)', p, [
          { name: '2xx', get: (x) => x.rate2xx }, { name: '4xx', get: (x) => x.rate4xx }, { name: '5xx', get: (x) => x.rate5xx }], 'req/s'),
        lineChart('Latency (ms)', p, [
          { name: 'p50', get: (x) => x.p50Ms }, { name: 'p90', get: (x) => x.p90Ms }, { name: 'p99', get: (x) => x.p99Ms }], 'ms'),
        lineChart('Queue depth and in flight', p, [
          { name: 'queued', get: (x) => x.queueDepth }, { name: 'in flight', get: (x) => x.inFlight }]),
        lineChart('Replicas', p, [
          { name: 'ready', get: (x) => x.replicasReady }, { name: 'desired', get: (x) => x.replicasDesired }]),
      ]);
    };
    try { await load(); } catch (e) { append(grid, [errorBox(e)]); }
    every(REFRESH_MS, load);
  }

  // ---------- Logs ----------
  async function logsTab(panel, svc) {
    const filter = h('select', { id: 'replica-filter', 'aria-label': 'Replica' }, h('option', { value: '' }, 'All replicas'));
    const pause = h('button', { type: 'button', class: 'secondary small', 'aria-pressed': 'false' }, 'Pause');
    const out = h('pre', { class: 'log live', id: 'log-tail', tabindex: '0', 'aria-label': 'Replica output' });
    const status = h('span', { class: 'muted', id: 'tail-status' }, 'connecting…');
    const lines = [];
    const replicas = new Set();
    let paused = false;
    const matches = (l) => !filter.value || l.includes(' ' + filter.value + ' ');
    const redraw = () => { out.textContent = lines.filter(matches).join('\n'); out.scrollTop = out.scrollHeight; };
    pause.addEventListener('click', () => {
      paused = !paused; pause.textContent = paused ? 'Resume' : 'Pause';
      pause.setAttribute('aria-pressed', String(paused)); if (!paused) redraw();
    });
    filter.addEventListener('change', redraw);
    const reqBox = h('div', { id: 'request-log' });
    append(panel, [
      h('h2', null, 'Live output'),
      h('div', { class: 'toolbar' }, filter, pause, status),
      out,
      h('h2', null, 'Request log'),
      reqBox,
    ]);
    const seen = new Set();
    const onLine = (line) => {
      if (!line || seen.has(line)) return;
      seen.add(line);
      if (seen.size > 5000) seen.clear();
      lines.push(line);
      if (lines.length > 2000) lines.splice(0, lines.length - 2000);
      const m = / (r\d+\/\d+) /.exec(line);
      if (m && !replicas.has(m[1])) {
        replicas.add(m[1]);
        append(filter, [h('option', { value: m[1] }, m[1])]);
      }
      if (!paused) {
        if (matches(line)) {
          out.appendChild(document.createTextNode((out.textContent ? '\n' : '') + line));
          out.scrollTop = out.scrollHeight;
        }
      }
    };
    const ctl = abortable();
    // A follow stream covers the replicas running when it starts; when they are all
    // gone (an update replaced them) it ends, and the tail reconnects to the new ones.
    const follow = async () => {
      let tail = 200;
      let connections = 0;
      while (!ctl.signal.aborted) {
        status.textContent = 'live';
        out.setAttribute('data-connections', String(++connections));
        await streamEvents('/v1/services/' + encodeURIComponent(svc.name) + '/logs?follow=true&tail=' + tail, onLine, ctl.signal);
        tail = 50; // lines already shown are skipped by onLine
        status.textContent = 'reconnecting…';
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    };
    follow().catch((e) => { if (!isAbort(e)) { status.textContent = ''; append(panel, [errorBox(e)]); } });
    const loadRequests = async () => {
      try {
        const logs = await api('GET', '/v1/services/' + encodeURIComponent(svc.name) + '/logs?requests=true&tail=50');
        const rows = logs.content.split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l); } catch (e) { return null; } }).filter(Boolean).reverse();
        clear(reqBox);
        if (!rows.length) {
          append(reqBox, [h('p', { class: 'muted' }, svc.appInsightsEnabled
            ? 'No scoring request logged yet.'
            : 'The request log is off for this service; turn it on in the Update tab (Request log).')]);
          return;
        }
        append(reqBox, [table(['Time', 'Status', 'Revision', 'Replica', 'Total ms', 'Queued ms', 'Run ms', 'Request id'], rows.map((r) => h('tr', null,
          h('td', null, fmtTime(r.time)), h('td', null, r.status), h('td', null, 'r' + r.revision), h('td', null, r.replica === undefined ? '—' : r.replica),
          h('td', null, fmtNum(r.totalMs, 2)), h('td', null, fmtNum(r.queuedMs, 2)), h('td', null, fmtNum(r.runMs, 2)), h('td', null, h('code', null, r.requestId)))), 'Request log')]);
      } catch (e) { clear(reqBox); append(reqBox, [errorBox(e)]); }
    };
    await loadRequests();
    every(REFRESH_MS, loadRequests);
  }

  // ---------- Events ----------
  function eventRow(ev) {
    const d = ev.data || {};
    const summary = ev.type === 'service.state_changed' ? ((d.from || '—') + ' → ' + (d.to || '—') + (d.reason ? ': ' + d.reason : ''))
      : (d.message || d.reason || d.error || Object.entries(d).filter(([, v]) => v !== null && v !== undefined)
        .map(([k, v]) => k + ' ' + (typeof v === 'object' ? JSON.stringify(v) : v)).join(' · '));
    return labelCells(h('tr', { 'data-event': ev.id },
      h('td', { class: 'time' }, fmtTime(ev.time)), h('td', null, h('code', null, ev.type)),
      h('td', null, ev.service ? h('a', { href: '#/services/' + encodeURIComponent(ev.service) }, ev.service) : '—'),
      h('td', null, typeof summary === 'string' ? summary : JSON.stringify(summary))), ['Time', 'Type', 'Service', 'Details']);
  }
  // The id of the newest stored event (0 when there is none), found with a few
  // `after=N&limit=1` probes, so that a feed can start near the end of a long log.
  async function latestEventId(signal) {
    const has = async (after) => (await api('GET', '/v1/events?limit=1&after=' + after, undefined, { signal })).events.length > 0;
    if (!(await has(0))) return 0;
    let lo = 0; let hi = 1;
    while (await has(hi)) { lo = hi; hi *= 2; }
    while (hi - lo > 1) { const mid = Math.floor((lo + hi) / 2); if (await has(mid)) lo = mid; else hi = mid; }
    return hi;
  }
  const FEED_BACKLOG = 500;
  function eventFeed(box, query) {
    const tbody = h('tbody');
    const status = h('p', { class: 'muted' }, 'Following; new events appear at the top.');
    append(box, [status, h('div', { class: 'table-wrap' }, h('table', { id: 'events-table' },
      h('thead', null, h('tr', null, ['Time', 'Type', 'Service', 'Details'].map((x) => h('th', { scope: 'col' }, x)))), tbody))]);
    const ctl = abortable();
    latestEventId(ctl.signal).then((latest) => {
      const after = Math.max(0, latest - FEED_BACKLOG);
      if (after > 0) status.textContent = 'Following from event #' + (after + 1) + ' (the last ' + FEED_BACKLOG + ' of the workspace); new events appear at the top.';
      return streamEvents('/v1/events?follow=true&after=' + after + query, onLine, ctl.signal);
    }).catch((e) => { if (!isAbort(e)) append(box, [errorBox(e)]); });
    return ctl;
    function onLine(line) {
      if (!line.trim()) return;
      let ev;
      try { ev = JSON.parse(line); } catch (e) { return; }
      tbody.insertBefore(eventRow(ev), tbody.firstChild);
      while (tbody.children.length > FEED_BACKLOG) tbody.removeChild(tbody.lastChild);
    }
  }
  async function serviceEventsTab(panel, svc) {
    eventFeed(panel, '&service=' + encodeURIComponent(svc.name));
  }
  async function eventsPage(main) {
    document.title = 'Events · Berth Studio';
    const service = h('input', { type: 'search', id: 'ev-service', placeholder: 'Service', 'aria-label': 'Service' });
    const type = h('select', { id: 'ev-type', 'aria-label': 'Type' }, h('option', { value: '' }, 'Any type'), EVENT_TYPES.map((t) => h('option', { value: t }, t)));
    const box = h('div');
    append(main, [h('div', { class: 'page-head' }, h('h1', null, 'Events'),
      h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); start(); } }, service, type, h('button', { type: 'submit', class: 'secondary' }, 'Apply'))), box]);
    let ctl = null;
    const start = () => {
      if (ctl) ctl.abort();
      clear(box);
      let q = '';
      if (service.value.trim()) q += '&service=' + encodeURIComponent(service.value.trim());
      if (type.value) q += '&type=' + encodeURIComponent(type.value);
      ctl = eventFeed(box, q);
    };
    type.addEventListener('change', start);
    start();
  }

  // ---------- Keys ----------
  function mask(k) { return k ? '•'.repeat(12) + k.slice(-4) : '—'; }
  async function keysTab(panel, svc) {
    const box = h('div');
    const opBox = h('div');
    append(panel, [box, opBox]);
    const st = svc;
    if (!st.authEnabled) {
      append(box, [h('p', { class: 'muted' }, st.tokenAuthEnabled
        ? 'This service uses token auth: clients get short-lived tokens (POST /v1/services/' + svc.name + '/token). Its keys are kept for when key auth is turned on.'
        : 'Key auth is off for this service: the scoring URI needs no key. Its keys are kept for when it is turned on.')]);
    }
    const draw = async () => {
      const keys = await api('GET', '/v1/services/' + encodeURIComponent(svc.name) + '/keys');
      const rows = [['Primary', keys.primaryKey], ['Secondary', keys.secondaryKey]].map(([which, key]) => {
        const shown = h('code', { class: 'key', id: 'key-' + which.toLowerCase() }, mask(key));
        let revealed = false;
        const reveal = h('button', { type: 'button', class: 'secondary small', 'aria-pressed': 'false', onclick: () => {
          revealed = !revealed; shown.textContent = revealed ? key : mask(key);
          reveal.textContent = revealed ? 'Hide' : 'Reveal'; reveal.setAttribute('aria-pressed', String(revealed));
        } }, 'Reveal');
        return h('tr', null, h('th', { scope: 'row' }, which), h('td', null, shown),
          h('td', { class: 'actions' }, reveal, copyButton(() => key, which + ' key'),
            h('button', { type: 'button', class: 'danger small', id: 'regen-' + which.toLowerCase(), onclick: () => regenerate(which) }, 'Regenerate')));
      });
      const t = table(['Key', 'Value', ''], rows, 'Scoring keys');
      const old = box.querySelector('.table-wrap');
      if (old) box.replaceChild(t, old); else append(box, [t]);
    };
    const regenerate = async (which) => {
      if (!window.confirm('Regenerate the ' + which.toLowerCase() + ' key of ' + svc.name + '? Clients using it are refused from now on.')) return;
      clear(opBox);
      try {
        const accepted = await api('POST', '/v1/services/' + encodeURIComponent(svc.name) + '/regenerateKeys', { keyType: which });
        append(opBox, [operationView(accepted.operation.id, () => { draw().catch((e) => append(opBox, [errorBox(e)])); })]);
      } catch (e) { append(opBox, [errorBox(e)]); }
    };
    await draw();
  }

  // ---------- Test ----------
  async function testTab(panel, svc) {
    const editor = h('textarea', { id: 'test-body', rows: 10, spellcheck: 'false', 'aria-label': 'Request body (JSON)' }, '');
    const result = h('div', { id: 'test-result', 'aria-live': 'polite' });
    const note = h('p', { class: 'muted' }, 'Loading the example from swagger.json…');
    const send = h('button', { type: 'submit', id: 'test-send' }, 'Send');
    append(panel, [h('form', { class: 'stack', onsubmit: (e) => { e.preventDefault(); run(); } },
      h('label', { for: 'test-body' }, 'Request body (JSON), sent to ', h('code', null, svc.scoringUri || gatewayPath(svc, 'score'))),
      editor, note, h('div', null, send)), result]);
    try {
      const example = swaggerExample(await fetchSwagger(svc));
      editor.value = JSON.stringify(example !== null ? example : { data: [[0]] }, null, 2);
      note.textContent = example !== null ? 'Prefilled from the swagger example.' : 'The swagger document has no example; edit the body.';
    } catch (e) {
      editor.value = JSON.stringify({ data: [[0]] }, null, 2);
      note.textContent = 'No swagger example (' + e.message + '); edit the body.';
    }
    const run = async () => {
      clear(result);
      let body;
      try { body = JSON.stringify(JSON.parse(editor.value)); } catch (e) {
        append(result, [errorBox(new ApiError(0, { message: 'The body is not valid JSON: ' + e.message, hint: 'fix the JSON in the editor' }))]);
        return;
      }
      send.disabled = true;
      try {
        const auth = await scoringAuth(svc);
        const headers = { 'Content-Type': 'application/json' };
        if (auth) headers.Authorization = auth;
        const t0 = performance.now();
        const res = await fetch(gatewayPath(svc, 'score'), { method: 'POST', headers, body, credentials: 'omit' });
        const text = await res.text();
        const ms = performance.now() - t0;
        let pretty = text;
        try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
        append(result, [dl([
          ['Status', h('span', { id: 'test-status', class: res.ok ? 'ok-text' : 'bad-text' }, res.status + ' ' + res.statusText)],
          ['Latency', h('span', { id: 'test-latency' }, fmtNum(ms, 1) + ' ms' + (res.headers.get('x-ms-run-fn-exec-ms') ? ' (run() ' + res.headers.get('x-ms-run-fn-exec-ms') + ' ms)' : ''))],
          ['Revision', h('span', { id: 'test-revision' }, res.headers.get('x-berth-revision') ? 'r' + res.headers.get('x-berth-revision') : '—')],
          ['Request id', res.headers.get('x-request-id') || '—'],
        ]), h('pre', { class: 'code', id: 'test-response' }, pretty)]);
      } catch (e) {
        append(result, [errorBox(e)]);
      } finally { send.disabled = false; }
    };
  }

  // ---------- Consume ----------
  async function consumeTab(panel, svc) {
    const st = svc;
    const uri = svc.scoringUri || (location.origin + gatewayPath(svc, 'score'));
    const authLine = st.authEnabled ? 'KEY' : (st.tokenAuthEnabled ? 'TOKEN' : null);
    const sample = '{"data": [[0.0, 1.0]]}';
    const curl = [
      authLine === 'KEY' ? 'KEY="<primary key from the Keys tab>"' : null,
      authLine === 'TOKEN' ? 'TOKEN=$(berth service token -n ' + svc.name + ' -o json | python3 -c \'import json,sys; print(json.load(sys.stdin)["accessToken"])\')' : null,
      'curl -sS -X POST "' + uri + '" \\',
      '  -H "Content-Type: application/json" \\',
      authLine ? '  -H "Authorization: Bearer $' + authLine + '" \\' : null,
      "  -d '" + sample + "'",
    ].filter(Boolean).join('\n');
    const py = [
      'import requests',
      '',
      'uri = "' + uri + '"',
      authLine === 'KEY' ? 'headers = {"Authorization": "Bearer <primary key from the Keys tab>"}' : (authLine === 'TOKEN' ? 'headers = {"Authorization": "Bearer <token from POST /v1/services/' + svc.name + '/token>"}' : 'headers = {}'),
      'response = requests.post(uri, json={"data": [[0.0, 1.0]]}, headers=headers, timeout=60)',
      'response.raise_for_status()',
      'print(response.headers.get("x-berth-revision"), response.json())',
    ].join('\n');
    const sdk = [
      'import json',
      '# pip install ./python (the Berth SDK: berth.core mirrors azureml.core)',
      'from berth.core import Workspace',
      'from berth.core.webservice import Webservice',
      '',
      'ws = Workspace.from_config()  # the config.json `berth server` writes',
      'service = Webservice(ws, "' + svc.name + '")',
      'print(service.scoring_uri)',
      (String(st.computeType).toUpperCase() === 'LOCAL' && (st.authEnabled || st.tokenAuthEnabled))
        ? '# A LOCAL service\'s run() sends no key (as in Azure ML): with auth on, use the requests snippet.'
        : 'print(service.run(json.dumps({"data": [[0.0, 1.0]]})))',
    ].join('\n');
    const block = (title, id, text) => h('div', { class: 'snippet' },
      h('div', { class: 'snippet-head' }, h('h2', null, title), copyButton(() => text, title)),
      h('pre', { class: 'code', id }, text));
    append(panel, [
      h('p', null, 'Scoring URI ', h('code', null, uri), st.authEnabled ? ' · key auth' : (st.tokenAuthEnabled ? ' · token auth' : ' · no auth')),
      block('curl', 'snippet-curl', curl),
      block('Python (requests)', 'snippet-python', py),
      block('Python SDK (Azure ML v1 surface)', 'snippet-sdk', sdk),
    ]);
  }

  // ---------- Update ----------
  async function updateTab(panel, svc) {
    const [models, envs] = await Promise.all([api('GET', '/v1/models'), api('GET', '/v1/environments')]);
    const st = svc;
    const as = st.autoScaler || {};
    const res = st.containerResourceRequirements || {};
    const aliasRefs = [];
    if (models.value.some((m) => m.aliases !== undefined)) {
      for (const m of models.value) {
        aliasRefs.push(m.name + '@latest');
        for (const chip of aliasChips(m).querySelectorAll('.chip')) aliasRefs.push(chip.textContent);
      }
    }
    const modelIds = [...new Set(models.value.map((m) => m.id).concat(svc.models, aliasRefs))].sort();
    const envIds = [...new Set(envs.value.map((e) => e.id).concat([svc.environment]))].sort();
    const modelSel = h('select', { id: 'upd-model', name: 'model' },
      h('option', { value: '' }, 'Keep ' + svc.models.join(', ')),
      modelIds.map((id) => h('option', { value: id }, id)));
    const envSel = h('select', { id: 'upd-env', name: 'environment' },
      h('option', { value: '' }, 'Keep ' + svc.environment),
      envIds.map((id) => h('option', { value: id }, id)));
    const num = (id, label, value, min, step) => [h('label', { for: id }, label), h('input', { id, type: 'number', value: value === undefined || value === null ? '' : value, min: min === undefined ? 0 : min, step: step || 1 })];
    const check = (id, label, value) => h('label', { class: 'check', for: id }, h('input', { id, type: 'checkbox', checked: !!value }), ' ' + label);
    const ro = st.rollout || { strategy: 'rolling', canaryPercent: 10, steps: 4, bakeSeconds: 60, maxErrorRate: 1, minRequests: 20, autoRollback: true };
    const strategySel = h('select', { id: 'upd-strategy', name: 'strategy' },
      [['rolling', 'rolling: all at once when ready'], ['canary', 'canary: a share for one bake, then all'], ['linear', 'linear: equal steps, each baked'], ['blueGreen', 'blue-green: switch, keep the old warm']]
        .map(([v, label]) => h('option', { value: v, selected: v === ro.strategy }, label)));
    const progress = h('div', { id: 'update-progress' });
    const submit = h('button', { type: 'submit', id: 'upd-submit' }, 'Update');
    const form = h('form', { class: 'grid-form', id: 'update-form', onsubmit: (e) => { e.preventDefault(); go(); } },
      h('fieldset', null, h('legend', null, 'What runs'),
        h('label', { for: 'upd-model' }, aliasRefs.length ? 'Model version or alias' : 'Model version'), modelSel,
        h('label', { for: 'upd-env' }, 'Environment version'), envSel),
      h('fieldset', null, h('legend', null, 'Settings'),
        num('upd-replicas', 'Replicas (numReplicas)', st.numReplicas, 1),
        num('upd-timeout', 'Scoring timeout (ms)', st.scoringTimeoutMs, 1),
        num('upd-concurrency', 'Concurrent requests per replica', st.maxConcurrentRequestsPerContainer, 1),
        num('upd-queue', 'Max queue wait (ms)', st.maxQueueWaitMs, 0),
        num('upd-cpu', 'CPU (cores)', res.cpu, 0, 0.1),
        num('upd-mem', 'Memory (GiB)', res.memoryInGB, 0, 0.1),
        check('upd-autoscale', 'Autoscale', as.autoscaleEnabled),
        num('upd-min', 'Min replicas', as.minReplicas, 1),
        num('upd-max', 'Max replicas', as.maxReplicas, 1),
        check('upd-ai', 'Request log (appInsightsEnabled)', st.appInsightsEnabled),
        check('upd-auth', 'Key auth (authEnabled)', st.authEnabled)),
      h('fieldset', { id: 'upd-rollout' }, h('legend', null, 'Rollout (how traffic moves to the new revision)'),
        h('label', { for: 'upd-strategy' }, 'Strategy'), strategySel,
        num('upd-canary', 'Canary percent (canary)', ro.canaryPercent, 1),
        num('upd-steps', 'Steps (linear)', ro.steps, 2),
        h('label', { for: 'upd-bake' }, 'Bake per step (e.g. 30s, 2m)'), h('input', { id: 'upd-bake', type: 'text', value: fmtDuration(ro.bakeSeconds), autocomplete: 'off', spellcheck: 'false' }),
        num('upd-max-error', 'Gate: max 5xx rate above the baseline (points)', ro.maxErrorRate, 0, 0.1),
        num('upd-max-p99', 'Gate: max p99 latency (ms, empty: none)', ro.maxP99Ms, 1),
        num('upd-min-requests', 'Gates judge after (requests)', ro.minRequests, 1),
        check('upd-auto-rollback', 'Roll back by itself when a gate fails (autoRollback)', ro.autoRollback)),
      h('div', null, submit));
    append(panel, [form, progress]);
    const val = (id) => document.getElementById(id);
    const go = async () => {
      clear(progress);
      const patch = {};
      if (modelSel.value) patch.models = [modelSel.value];
      if (envSel.value) patch.inferenceConfig = { environment: envSel.value };
      const numField = (id, current, key, parse) => {
        const raw = val(id).value.trim();
        if (raw === '') return;
        const v = (parse || Number)(raw);
        if (v !== current) patch[key] = v;
      };
      const intOf = (id) => { const raw = val(id).value.trim(); return raw === '' ? null : Number(raw); };
      const autoscale = val('upd-autoscale').checked;
      if (autoscale) {
        const min = intOf('upd-min'); const max = intOf('upd-max');
        if (!as.autoscaleEnabled || (min !== null && min !== as.minReplicas) || (max !== null && max !== as.maxReplicas)) {
          patch.autoScaler = { autoscaleEnabled: true };
          if (min !== null) patch.autoScaler.minReplicas = min;
          if (max !== null) patch.autoScaler.maxReplicas = max;
        }
      } else {
        const n = intOf('upd-replicas');
        if (as.autoscaleEnabled) {
          patch.autoScaler = { autoscaleEnabled: false };
          patch.numReplicas = n === null ? st.numReplicas : n;
        } else if (n !== null && n !== st.numReplicas) {
          patch.numReplicas = n;
        }
      }
      numField('upd-timeout', st.scoringTimeoutMs, 'scoringTimeoutMs', (x) => parseInt(x, 10));
      numField('upd-concurrency', st.maxConcurrentRequestsPerContainer, 'maxConcurrentRequestsPerContainer', (x) => parseInt(x, 10));
      numField('upd-queue', st.maxQueueWaitMs, 'maxQueueWaitMs', (x) => parseInt(x, 10));
      const cpu = intOf('upd-cpu'); const mem = intOf('upd-mem');
      if ((cpu !== null && cpu !== res.cpu) || (mem !== null && mem !== res.memoryInGB)) {
        patch.containerResourceRequirements = {};
        if (cpu !== null && cpu !== res.cpu) patch.containerResourceRequirements.cpu = cpu;
        if (mem !== null && mem !== res.memoryInGB) patch.containerResourceRequirements.memoryInGB = mem;
      }
      const rollout = {};
      if (strategySel.value !== ro.strategy) rollout.strategy = strategySel.value;
      const roNum = (id, key, current, parse) => {
        const raw = val(id).value.trim();
        if (raw === '') return;
        const v = parse(raw);
        if (v !== current) rollout[key] = v;
      };
      roNum('upd-canary', 'canaryPercent', ro.canaryPercent, (x) => parseInt(x, 10));
      roNum('upd-steps', 'steps', ro.steps, (x) => parseInt(x, 10));
      roNum('upd-max-error', 'maxErrorRate', ro.maxErrorRate, Number);
      roNum('upd-min-requests', 'minRequests', ro.minRequests, (x) => parseInt(x, 10));
      const p99 = val('upd-max-p99').value.trim();
      if (p99 === '' && ro.maxP99Ms) rollout.maxP99Ms = null;
      else if (p99 !== '' && parseInt(p99, 10) !== ro.maxP99Ms) rollout.maxP99Ms = parseInt(p99, 10);
      const bake = val('upd-bake').value.trim();
      if (bake !== '' && bake !== fmtDuration(ro.bakeSeconds)) rollout.bake = bake;
      if (val('upd-auto-rollback').checked !== !!ro.autoRollback) rollout.autoRollback = val('upd-auto-rollback').checked;
      if (Object.keys(rollout).length) patch.rollout = rollout;
      if (val('upd-ai').checked !== !!st.appInsightsEnabled) patch.appInsightsEnabled = val('upd-ai').checked;
      if (val('upd-auth').checked !== !!st.authEnabled) patch.authEnabled = val('upd-auth').checked;
      if (!Object.keys(patch).length) {
        append(progress, [errorBox(new ApiError(0, { message: 'Nothing changed.', hint: 'pick a model or environment version, or change a setting' }))]);
        return;
      }
      submit.disabled = true;
      append(progress, [h('p', null, 'Sending ', h('code', null, JSON.stringify(patch)))]);
      try {
        const accepted = await api('PATCH', '/v1/services/' + encodeURIComponent(svc.name), patch);
        for (const w of accepted.warnings || []) append(progress, [h('p', { class: 'warn-text' }, 'Warning: ' + w)]);
        append(progress, [operationView(accepted.operation.id, async (op) => {
          submit.disabled = false;
          try {
            const now = await api('GET', '/v1/services/' + encodeURIComponent(svc.name));
            append(progress, [h('p', { id: 'update-outcome' }, 'Service ', badge(now.state), ' serving ', trafficSummary(now),
              op.state === 'Succeeded' ? '' : ' (the previous revision keeps serving)')]);
          } catch (e) { append(progress, [errorBox(e)]); }
        })]);
      } catch (e) {
        submit.disabled = false;
        append(progress, [errorBox(e)]);
      }
    };
  }

  // What each service serves: the models and environment of every revision that
  // takes traffic. The list shows the stable revision's; the revisions of a
  // split or a rollout are read for the services that have more than one.
  async function servingSpecs(services) {
    const out = new Map(services.map((s) => [s.name, [{ models: s.models, environment: s.environment }]]));
    await Promise.all(services.filter((s) => trafficOf(s).length > 1).map(async (s) => {
      try {
        const revs = await api('GET', '/v1/services/' + encodeURIComponent(s.name) + '/revisions');
        const serving = new Set(trafficOf(s).map((t) => t.revision));
        const specs = revs.value.filter((r) => serving.has(r.revision)).map((r) => ({ models: r.spec.models, environment: r.spec.inference.environment }));
        if (specs.length) out.set(s.name, out.get(s.name).concat(specs));
      } catch (e) { /* the stable revision's figures stay */ }
    }));
    return out;
  }
  function usersOf(specs, test) {
    return [...specs.entries()].filter(([, list]) => list.some(test)).map(([name]) => name);
  }

  // ---------- Models ----------
  async function modelsPage(main) {
    document.title = 'Models · Berth Studio';
    const search = h('input', { type: 'search', placeholder: 'Filter by name or tag', 'aria-label': 'Filter models', id: 'model-search' });
    const body = h('div');
    append(main, [h('div', { class: 'page-head' }, h('h1', null, 'Models'), h('div', { class: 'filters' }, search)), body]);
    const [models, services] = await Promise.all([api('GET', '/v1/models'), api('GET', '/v1/services')]);
    const specs = await servingSpecs(services.value);
    const servedBy = (id) => usersOf(specs, (x) => x.models.includes(id));
    const draw = () => {
      clear(body);
      const q = search.value.trim().toLowerCase();
      const rows = models.value.filter((m) => !q || m.id.toLowerCase().includes(q) || JSON.stringify([m.tags, m.aliases || []]).toLowerCase().includes(q));
      if (!models.value.length) { append(body, [h('p', { class: 'empty' }, 'No models yet. Register one with ', h('code', null, 'berth model register -n NAME --asset-path FILE'), '.')]); return; }
      // Aliases (`name@alias` → version) appear once the registry reports them.
      const withAliases = models.value.some((m) => m.aliases !== undefined);
      append(body, [table(['Model'].concat(withAliases ? ['Aliases'] : [], ['Framework', 'Tags', 'Properties', 'Size', 'Served by', 'Registered', '']), rows.map((m) => {
        const served = servedBy(m.id);
        return h('tr', { 'data-model': m.id },
          h('td', null, h('strong', null, m.name), ':' + m.version, m.description ? h('div', { class: 'muted' }, m.description) : null),
          withAliases ? h('td', { class: 'aliases' }, aliasChips(m)) : null,
          h('td', null, (m.framework || '—') + (m.frameworkVersion ? ' ' + m.frameworkVersion : '')),
          h('td', null, kv(m.tags)), h('td', null, kv(m.properties)),
          h('td', null, fmtBytes(m.size) + (m.fileCount > 1 ? ' · ' + m.fileCount + ' files' : '')),
          h('td', null, served.length ? served.map((s, i) => [i ? ', ' : '', h('a', { href: '#/services/' + encodeURIComponent(s) }, s)]) : h('span', { class: 'muted' }, '—')),
          h('td', null, fmtTime(m.createdTime)),
          h('td', null, h('a', { href: '/v1/models/' + encodeURIComponent(m.name) + '/versions/' + m.version + '/content', download: '' }, 'Download')));
      }), 'Models')]);
    };
    search.addEventListener('input', draw);
    draw();
  }

  // A model version's aliases: a list of names, or a map of alias → version.
  function aliasChips(m) {
    const a = m.aliases;
    let names = [];
    if (Array.isArray(a)) names = a.map((x) => (x && typeof x === 'object' ? (x.alias || x.name) : x));
    else if (a && typeof a === 'object') names = Object.entries(a).filter(([, v]) => v === undefined || String(v) === String(m.version)).map(([k]) => k);
    names = names.filter((x) => x !== undefined && x !== null && x !== '');
    if (!names.length) return h('span', { class: 'muted' }, '—');
    return h('span', { class: 'chips' }, names.map((n) => h('span', { class: 'chip' }, m.name + '@' + n)));
  }

  // ---------- Environments ----------
  async function environmentsPage(main) {
    document.title = 'Environments · Berth Studio';
    const body = h('div');
    append(main, [h('div', { class: 'page-head' }, h('h1', null, 'Environments')), body]);
    const [envs, services] = await Promise.all([api('GET', '/v1/environments'), api('GET', '/v1/services')]);
    const specs = await servingSpecs(services.value);
    if (!envs.value.length) { append(body, [h('p', { class: 'empty' }, 'No environments yet. Register one with ', h('code', null, 'berth environment register -n NAME --pip-requirements requirements.txt'), '.')]); return; }
    append(body, [table(['Environment', 'Python', 'Requirements', 'Build', 'Used by', 'Registered'], envs.value.map((e) => {
      const users = usersOf(specs, (x) => x.environment === e.id || x.environment === e.name + ':' + e.version);
      const b = e.build || {};
      return h('tr', { 'data-environment': e.id },
        h('td', null, h('strong', null, e.name), ':' + e.version, e.description ? h('div', { class: 'muted' }, e.description) : null),
        h('td', null, b.pythonFullVersion || e.spec.pythonVersion || 'default'),
        h('td', null, e.spec.requirements.length ? h('details', null, h('summary', null, e.spec.requirements.length + ' package(s)'), h('pre', { class: 'code' }, e.spec.requirements.join('\n'))) : h('span', { class: 'muted' }, 'none'),
          Object.keys(e.spec.environmentVariables || {}).length ? h('div', null, 'env: ', kv(e.spec.environmentVariables)) : null),
        h('td', null, badge(b.state, { Succeeded: 'ok', Ready: 'ok', Building: 'busy', NotStarted: 'neutral', Failed: 'bad' }),
          b.installer ? h('span', { class: 'muted' }, ' ' + b.installer) : null,
          b.durationMs ? h('span', { class: 'muted' }, ' ' + fmtNum(b.durationMs / 1000) + ' s') : null,
          b.error ? h('div', { class: 'bad-text' }, b.error) : null,
          b.logTail && b.logTail.length ? h('details', null, h('summary', null, 'Build log'), h('pre', { class: 'log' }, b.logTail.join('\n'))) : null),
        h('td', null, users.length ? users.map((s, i) => [i ? ', ' : '', h('a', { href: '#/services/' + encodeURIComponent(s) }, s)]) : h('span', { class: 'muted' }, '—')),
        h('td', null, fmtTime(e.createdTime)));
    }), 'Environments')]);
  }

  // ---------- Webhooks ----------
  async function webhooksPage(main) {
    document.title = 'Webhooks · Berth Studio';
    const list = h('div', { id: 'webhook-list' });
    const created = h('div', { 'aria-live': 'polite' });
    const url = h('input', { id: 'wh-url', type: 'url', required: true, placeholder: 'https://example.com/hook' });
    const secret = h('input', { id: 'wh-secret', type: 'text', placeholder: 'generated when empty', autocomplete: 'off' });
    const boxes = EVENT_TYPES.map((t) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: t, name: 'wh-event' }), ' ' + t));
    const form = h('form', { class: 'grid-form', id: 'webhook-form', onsubmit: (e) => { e.preventDefault(); add(); } },
      h('fieldset', null, h('legend', null, 'Add a webhook'),
        h('label', { for: 'wh-url' }, 'URL'), url,
        h('label', { for: 'wh-secret' }, 'Secret (optional)'), secret,
        h('div', { class: 'checks', role: 'group', 'aria-label': 'Events (none: all)' }, h('span', { class: 'muted' }, 'Events (none ticked: all)'), boxes)),
      h('div', null, h('button', { type: 'submit' }, 'Add webhook')));
    append(main, [h('div', { class: 'page-head' }, h('h1', null, 'Webhooks')), list, created, form]);
    const draw = async () => {
      const hooks = await api('GET', '/v1/webhooks');
      clear(list);
      if (!hooks.webhooks.length) { append(list, [h('p', { class: 'empty' }, 'No webhooks.')]); return; }
      append(list, [table(['URL', 'Events', 'Last delivery', 'Failures', 'Created', ''], hooks.webhooks.map((w) => h('tr', { 'data-webhook': w.id },
        h('td', null, h('code', null, w.url), h('div', { class: 'muted' }, w.id)),
        h('td', null, w.events.length ? w.events.join(', ') : 'all'),
        h('td', null, w.lastDeliveryStatus ? w.lastDeliveryStatus + ' · ' + fmtTime(w.lastDeliveryTime) : h('span', { class: 'muted' }, 'none yet'),
          w.lastError ? h('div', { class: 'bad-text' }, w.lastError) : null),
        h('td', null, String(w.consecutiveFailures)),
        h('td', null, fmtTime(w.createdTime)),
        h('td', null, h('button', { type: 'button', class: 'danger small', onclick: () => remove(w) }, 'Remove')))), 'Webhooks')]);
    };
    const add = async () => {
      clear(created);
      const events = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      const body = { url: url.value.trim(), events };
      if (secret.value.trim()) body.secret = secret.value.trim();
      try {
        const r = await api('POST', '/v1/webhooks', body);
        append(created, [h('div', { class: 'notice', role: 'status' }, 'Added ', h('code', null, r.webhook.id), '. Its secret, shown once: ', h('code', { id: 'wh-created-secret' }, r.secret), ' ', copyButton(() => r.secret, 'Secret'))]);
        url.value = ''; secret.value = '';
        await draw();
      } catch (e) { append(created, [errorBox(e)]); }
    };
    const remove = async (w) => {
      if (!window.confirm('Remove the webhook to ' + w.url + '?')) return;
      clear(created);
      try { await api('DELETE', '/v1/webhooks/' + encodeURIComponent(w.id)); await draw(); } catch (e) { append(created, [errorBox(e)]); }
    };
    await draw();
  }

  // ---------- Start ----------
  async function signOut() {
    try {
      await fetch('/studio/signout', { method: 'POST', credentials: 'same-origin', headers: { 'X-Berth-CSRF': CSRF } });
    } finally {
      location.assign('/');
    }
  }
  function start() {
    const out = document.getElementById('signout');
    if (out) out.addEventListener('click', () => { signOut().catch(() => location.assign('/')); });
    window.addEventListener('hashchange', () => { route(); });
    if (!location.hash) history.replaceState(null, '', '#/services');
    route();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}());
