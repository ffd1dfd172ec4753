// perfgate dashboard: a dependency-free single-page app. Every request goes to this origin's
// /api/v1 with the credential kept in sessionStorage; charts are SVG drawn here.
'use strict';

(() => {
  const KEY = 'perfgate.credential';
  const METRICS = ['wall_ms', 'cpu_ms', 'max_rss_kb', 'page_faults', 'ctx_switches', 'io_read_bytes',
    'io_write_bytes', 'network_packets', 'energy_uj', 'binary_bytes', 'throughput_per_s'];
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const view = $('#view');
  let me = null;           // GET /whoami
  let localMode = null;    // GET /info: local_mode (null until known)
  let projects = [];       // GET /projects
  let renderSeq = 0;       // a newer navigation cancels older renders

  // ------------------------------------------------------------------ helpers
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) =>
    ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  // An alert's issue link: an anchor for web addresses only, plain text for anything else.
  const issueLink = (u, label) => (/^https?:\/\//i.test(u)
    ? `<a href="${esc(u)}" rel="noreferrer">${esc(label ?? u)}</a>` : esc(u));
  // A path segment; `.` and `..` would be resolved away by the URL parser.
  const seg = (s) => (s === '.' ? '%2E' : s === '..' ? '%2E%2E' : encodeURIComponent(s));
  const num = (v, digits = 2) => (v === null || v === undefined || Number.isNaN(v)) ? '–'
    : Number(v).toLocaleString('en-US', { maximumFractionDigits: digits });
  const shortSha = (s) => (s ? s.slice(0, 10) : '?');
  const pct = (v) => (v === null || v === undefined) ? '–' : `${v > 0 ? '+' : ''}${num(v, 1)}%`;
  function age(iso) {
    if (!iso) return '–';
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return `${Math.round(s)}s ago`;
    if (s < 3600) return `${Math.round(s / 60)}m ago`;
    if (s < 86400) return `${Math.round(s / 3600)}h ago`;
    return `${Math.round(s / 86400)}d ago`;
  }
  const when = (iso) => iso ? `<time datetime="${esc(iso)}" title="${esc(iso)}">${esc(age(iso))}</time>` : '–';
  const can = (scope) => !!me && me.scopes.includes(scope);
  const global = () => !!me && me.project === '*';
  const projectHref = (p) => `#/p/${seg(p)}`;
  const benchHref = (p, b, q = '') => `#/p/${seg(p)}/b/${seg(b)}${q}`;
  const versionHref = (p, b, v) => `#/p/${seg(p)}/b/${seg(b)}/v/${seg(v)}`;
  const gatesHref = (p, q = '') => `#/p/${seg(p)}/gates${q}`;
  const gateHref = (p, id) => `#/p/${seg(p)}/gates/${seg(id)}`;
  const alertsHref = (p, q = '') => `#/p/${seg(p)}/alerts${q}`;
  const alertHref = (p, id) => `#/p/${seg(p)}/alerts/${seg(id)}`;
  const waiversHref = (p, q = '') => `#/p/${seg(p)}/waivers${q}`;
  const GATE_STATUSES = ['pass', 'warn', 'fail', 'inconclusive'];
  const statusBadge = (s) => `<span class="badge ${esc(s)}" data-status="${esc(s)}">${esc(s)}</span>`;

  function toast(message, kind = 'error') {
    const t = document.createElement('div');
    t.className = `toast ${kind}`;
    t.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    t.textContent = message;
    $('#toasts').appendChild(t);
    setTimeout(() => t.remove(), kind === 'error' ? 10000 : 5000);
  }

  class ApiError extends Error {
    constructor(status, body) {
      super(body && body.message ? body.message : `HTTP ${status}`);
      this.status = status;
      this.code = body && body.code;
    }
  }

  async function api(path, opts = {}) {
    const cred = sessionStorage.getItem(KEY);
    const headers = { Accept: 'application/json' };
    if (cred) headers.Authorization = `Bearer ${cred}`;
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(`/api/v1${path}`, {
        method: opts.method || 'GET', headers, cache: 'no-store',
        body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
      });
    } catch (e) {
      throw new ApiError(0, { message: `Cannot reach the server: ${e.message}` });
    }
    let body = null;
    const text = await res.text();
    if (text) { try { body = JSON.parse(text); } catch (_) { body = { message: text.slice(0, 200) }; } }
    if (!res.ok) {
      const err = new ApiError(res.status, body);
      if (res.status === 401 && !opts.quiet401) signOut(`Signed out: ${err.message}`);
      throw err;
    }
    return body;
  }

  function loading(what) {
    view.innerHTML = `<div class="loading" data-loading="1">Loading ${esc(what)}…</div>`;
    document.body.dataset.ready = '';
  }
  function rendered(name) {
    document.body.dataset.view = name;
    document.body.dataset.ready = '1';
    try { performance.mark(`perfgate:rendered:${name}`); } catch (_) { /* old browsers */ }
  }
  function failed(err, token) {
    if (token !== renderSeq) return;
    const msg = err instanceof ApiError ? err.message : String(err && err.message || err);
    view.innerHTML = `<div class="card empty" data-error="1"><p class="error">${esc(msg)}</p>
      <p><a href="#/">Back to projects</a></p></div>`;
    toast(msg);
    rendered('error');
  }

  // A confirmation dialog; resolves with the form's input values, or null when cancelled.
  function ask(title, bodyHtml, okLabel = 'OK', danger = false) {
    const dlg = $('#modal');
    $('#modal-title').textContent = title;
    $('#modal-body').innerHTML = bodyHtml;
    const ok = $('#modal-ok');
    ok.textContent = okLabel;
    ok.className = danger ? 'danger' : '';
    return new Promise((resolve) => {
      const done = (v) => { dlg.close(); cleanup(); resolve(v); };
      const onSubmit = (e) => {
        e.preventDefault();
        const inputs = {};
        $$('input, select', $('#modal-body')).forEach((i) => { inputs[i.name] = i.value.trim(); });
        done(inputs);
      };
      const onCancel = () => done(null);
      const form = $('#modal-form');
      const cleanup = () => {
        form.removeEventListener('submit', onSubmit);
        $('#modal-cancel').removeEventListener('click', onCancel);
        dlg.removeEventListener('cancel', onCancel);
      };
      form.addEventListener('submit', onSubmit);
      $('#modal-cancel').addEventListener('click', onCancel);
      dlg.addEventListener('cancel', onCancel);
      dlg.showModal();
      const first = $('input', $('#modal-body'));
      (first || ok).focus();
    });
  }

  // ------------------------------------------------------------------ charts
  function sparkline(values) {
    const pts = values.map((v, i) => [i, v]).filter(([, v]) => v !== null && v !== undefined);
    if (!pts.length) return '<span class="muted">–</span>';
    const W = 120; const H = 26; const P = 3;
    const ys = pts.map(([, v]) => v);
    const lo = Math.min(...ys); const hi = Math.max(...ys);
    const n = Math.max(values.length - 1, 1);
    const x = (i) => P + (i / n) * (W - 2 * P);
    const y = (v) => (hi === lo ? H / 2 : H - P - ((v - lo) / (hi - lo)) * (H - 2 * P));
    const last = pts[pts.length - 1];
    const title = `${pts.length} versions, ${num(lo)}–${num(hi)}`;
    return `<svg class="spark" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>`
      + (pts.length > 1 ? `<polyline points="${pts.map(([i, v]) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>` : '')
      + `<circle cx="${x(last[0]).toFixed(1)}" cy="${y(last[1]).toFixed(1)}" r="2"/></svg>`;
  }

  // Median over versions with the min–max band, promoted versions marked, and the trend line.
  function seriesChart(points, metric, trend, changePoints = []) {
    const W = 900; const H = 300; const L = 64; const R = 16; const T = 14; const B = 40;
    const usable = points.filter((p) => p.median !== null);
    if (!usable.length) return `<div class="empty">No <code>${esc(metric)}</code> values in these receipts.</div>`;
    const lo = Math.min(...usable.map((p) => p.min ?? p.median));
    const hi = Math.max(...usable.map((p) => p.max ?? p.median));
    const pad = (hi - lo) * 0.08 || Math.max(Math.abs(hi) * 0.1, 1);
    const y0 = lo - pad; const y1 = hi + pad;
    const n = Math.max(points.length - 1, 1);
    const x = (i) => L + (points.length === 1 ? (W - L - R) / 2 : (i / n) * (W - L - R));
    const y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
    let svg = `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(metric)} median per version">`;
    for (let k = 0; k <= 4; k += 1) {
      const v = y0 + ((y1 - y0) * k) / 4;
      svg += `<line class="axis" x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/>`
        + `<text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${esc(num(v))}</text>`;
    }
    const withBand = usable.filter((p) => p.min !== null && p.max !== null);
    if (withBand.length > 1) {
      const up = withBand.map((p) => `${x(p.i).toFixed(1)},${y(p.max).toFixed(1)}`);
      const down = withBand.slice().reverse().map((p) => `${x(p.i).toFixed(1)},${y(p.min).toFixed(1)}`);
      svg += `<polygon class="band" points="${up.concat(down).join(' ')}"/>`;
    }
    if (usable.length > 1) {
      svg += `<polyline class="line" points="${usable.map((p) => `${x(p.i).toFixed(1)},${y(p.median).toFixed(1)}`).join(' ')}"/>`;
    }
    if (trend && trend.analysis && trend.values && trend.values.length > 1) {
      const a = trend.analysis; const m = trend.values.length;
      const first = points.length - m;
      if (first >= 0) {
        const ya = a.intercept; const yb = a.intercept + a.slope_per_run * (m - 1);
        svg += `<line class="trend" x1="${x(first).toFixed(1)}" y1="${y(ya).toFixed(1)}" x2="${x(points.length - 1).toFixed(1)}" y2="${y(yb).toFixed(1)}"><title>trend: ${esc(a.drift)}</title></line>`;
      }
    }
    // Change points: a dashed line at the first version at the new level.
    const at = new Map(points.map((p) => [p.version, p.i]));
    for (const c of changePoints) {
      if (c.version === null || !at.has(c.version)) continue;
      const cx = x(at.get(c.version)).toFixed(1);
      svg += `<line class="cp ${c.change_pct > 0 ? 'up' : 'down'}${c.status === 'confirmed' ? '' : ' provisional'}" data-change-point="${esc(c.id)}" x1="${cx}" x2="${cx}" y1="${T}" y2="${H - B}">`
        + `<title>${esc(`change ${pct(c.change_pct)} (${c.status}) between ${shortSha(c.previous_git_sha)} and ${shortSha(c.git_sha)}`)}</title></line>`;
    }
    for (const p of usable) {
      const cls = p.promoted ? 'pt promoted' : 'pt';
      svg += `<circle class="${cls}" data-version="${esc(p.version)}" cx="${x(p.i).toFixed(1)}" cy="${y(p.median).toFixed(1)}" r="${p.promoted ? 5 : 3}">`
        + `<title>${esc(p.version)}: ${esc(num(p.median))} (min ${esc(num(p.min))}, max ${esc(num(p.max))})${p.promoted ? ' · promoted' : ''}</title></circle>`;
    }
    const label = (i, anchor) => `<text x="${x(i).toFixed(1)}" y="${H - 12}" text-anchor="${anchor}">${esc(points[i].version.slice(0, 24))}</text>`;
    svg += label(0, 'start');
    if (points.length > 1) svg += label(points.length - 1, 'end');
    return `${svg}</svg><div class="legend"><span><i class="swatch line"></i>median</span><span><i class="swatch band"></i>min–max</span>`
      + `<span><i class="swatch promoted"></i>promoted</span>${trend && trend.analysis ? '<span><i class="swatch trend"></i>trend</span>' : ''}`
      + `${changePoints.length ? '<span><i class="swatch cp"></i>change point</span>' : ''}</div>`;
  }

  function histogram(values, metric) {
    if (!values.length) return `<div class="empty">No samples with <code>${esc(metric)}</code>.</div>`;
    const lo = Math.min(...values); const hi = Math.max(...values);
    const bins = hi === lo ? 1 : Math.min(20, Math.max(5, Math.ceil(Math.sqrt(values.length))));
    const width = (hi - lo) / bins || 1;
    const counts = new Array(bins).fill(0);
    values.forEach((v) => { counts[Math.min(bins - 1, Math.floor((v - lo) / width))] += 1; });
    const W = 600; const H = 200; const L = 36; const B = 34; const T = 10;
    const top = Math.max(...counts);
    const bw = (W - L - 8) / bins;
    let svg = `<svg class="chart hist" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(metric)} histogram" data-bins="${bins}">`;
    counts.forEach((c, k) => {
      const h = (c / top) * (H - T - B);
      const from = lo + k * width; const to = hi === lo ? hi : from + width;
      svg += `<rect class="bar" x="${(L + k * bw + 1).toFixed(1)}" y="${(H - B - h).toFixed(1)}" width="${Math.max(bw - 2, 1).toFixed(1)}" height="${h.toFixed(1)}"><title>${esc(num(from))}–${esc(num(to))}: ${c}</title></rect>`;
      if (c) svg += `<text x="${(L + k * bw + bw / 2).toFixed(1)}" y="${(H - B - h - 3).toFixed(1)}" text-anchor="middle">${c}</text>`;
    });
    svg += `<line class="axis" x1="${L}" x2="${W - 8}" y1="${H - B}" y2="${H - B}"/>`
      + `<text x="${L}" y="${H - 14}">${esc(num(lo))}</text><text x="${W - 8}" y="${H - 14}" text-anchor="end">${esc(num(hi))}</text></svg>`;
    return svg;
  }

  // ------------------------------------------------------------------ chrome
  function setNav(project) {
    const nav = $('#nav');
    nav.hidden = !me;
    if (!me) return;
    const picker = $('#project-picker');
    const names = projects.map((p) => p.project);
    if (project && !names.includes(project)) names.push(project);
    picker.innerHTML = `<option value="">All projects</option>${names.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join('')}`;
    picker.value = project || '';
    const current = project || (names.length === 1 ? names[0] : null);
    $('#nav-benchmarks').href = current ? projectHref(current) : '#/';
    $('#nav-verdicts').href = current ? `#/p/${seg(current)}/verdicts` : '#/';
    $('#nav-gates').href = current ? gatesHref(current) : '#/';
    $('#nav-alerts').href = current ? `#/p/${seg(current)}/alerts` : '#/';
    $('#nav-waivers').href = current ? waiversHref(current) : '#/';
    $('#nav-fleet').hidden = !(global() && can('read'));
    // In local mode the local user has no key: keys and the audit log need one.
    const keyless = localMode === true && !sessionStorage.getItem(KEY);
    $('#nav-audit').hidden = !can('admin') || keyless;
    $('#nav-keys').hidden = !can('admin') || keyless;
    const here = location.hash || '#/';
    $$('#nav a').forEach((a) => a.classList.toggle('active', a.getAttribute('href') === here));
  }

  function crumbs(parts) {
    return `<div class="crumbs">${parts.map(([label, href]) => (href ? `<a href="${href}">${esc(label)}</a>` : `<span>${esc(label)}</span>`)).join(' / ')}</div>`;
  }

  // ------------------------------------------------------------------ views
  async function viewProjects(token) {
    loading('projects');
    projects = (await api('/projects')).projects;
    if (token !== renderSeq) return;
    setNav(null);
    if (!projects.length) {
      view.innerHTML = `<div class="card empty" data-empty="projects"><h1>No projects yet</h1>
        <p>Upload a baseline with <code>perfgate baseline upload</code> and it appears here.</p></div>`;
      return rendered('projects');
    }
    view.innerHTML = `<h1>Projects</h1><div class="table-wrap"><table id="projects-table"><thead><tr>
      <th>Project</th><th class="num">Benchmarks</th><th class="num">Baselines</th><th class="num hide-sm">Verdicts</th><th>Last activity</th></tr></thead><tbody>
      ${projects.map((p) => `<tr data-project="${esc(p.project)}"><td class="name"><a href="${projectHref(p.project)}">${esc(p.project)}</a></td>
        <td class="num">${num(p.benchmarks, 0)}</td><td class="num">${num(p.baselines, 0)}</td><td class="num hide-sm">${num(p.verdicts, 0)}</td><td>${when(p.last_activity)}</td></tr>`).join('')}
      </tbody></table></div>`;
    rendered('projects');
  }

  const SORTS = {
    name: (r) => r.benchmark,
    version: (r) => (r.latest ? r.latest.version : ''),
    age: (r) => (r.latest ? -Date.parse(r.latest.created_at) : -Infinity),
    wall: (r) => (r.latest && r.latest.wall_ms_median !== null ? r.latest.wall_ms_median : -Infinity),
    verdict: (r) => (r.last_verdict ? ({ fail: 0, warn: 1, pass: 2, skip: 3 })[r.last_verdict.status] ?? 4 : 5),
    baselines: (r) => r.baselines,
  };

  async function viewProject(token, project, params) {
    loading('benchmarks');
    const data = await api(`/projects/${seg(project)}/benchmarks`);
    if (token !== renderSeq) return;
    setNav(project);
    const rows = data.benchmarks;
    if (!rows.length) {
      view.innerHTML = `${crumbs([['Projects', '#/'], [project]])}<div class="card empty" data-empty="benchmarks"><h1>No benchmarks in ${esc(project)}</h1>
        <p>Upload one: <code>perfgate baseline upload --project ${esc(project)} run.json</code></p></div>`;
      return rendered('project');
    }
    let sort = params.get('sort') in SORTS ? params.get('sort') : 'name';
    let dir = params.get('dir') === 'desc' ? -1 : 1;
    let filter = params.get('q') || '';
    view.innerHTML = `${crumbs([['Projects', '#/'], [project]])}
      <div class="row"><h1>${esc(project)}</h1><span class="spacer"></span>
        <a href="#/p/${seg(project)}/verdicts">Verdicts →</a></div>
      <div class="row"><input id="bench-filter" type="search" placeholder="Filter benchmarks by name" aria-label="Filter benchmarks" value="${esc(filter)}">
        <span id="bench-count" class="muted"></span></div>
      <div class="table-wrap"><table id="benchmarks-table"><thead><tr>
        <th class="sortable" data-sort="name">Benchmark</th><th class="sortable hide-sm" data-sort="version">Latest version</th>
        <th class="sortable hide-sm" data-sort="age">Age</th><th class="sortable num" data-sort="wall">wall_ms</th>
        <th>Last 30</th><th class="sortable" data-sort="verdict">Verdict</th><th class="sortable num hide-sm" data-sort="baselines">Versions</th>
      </tr></thead><tbody></tbody></table></div>`;
    const tbody = $('#benchmarks-table tbody');
    const draw = () => {
      const f = filter.toLowerCase();
      const key = SORTS[sort];
      const shown = rows.filter((r) => !f || r.benchmark.toLowerCase().includes(f))
        .sort((a, b) => { const ka = key(a); const kb = key(b); return (ka < kb ? -1 : ka > kb ? 1 : a.benchmark < b.benchmark ? -1 : 1) * dir; });
      tbody.innerHTML = shown.map((r) => `<tr data-benchmark="${esc(r.benchmark)}">
        <td class="name"><a href="${benchHref(project, r.benchmark)}">${esc(r.benchmark)}</a></td>
        <td class="mono hide-sm">${r.latest ? `<a href="${versionHref(project, r.benchmark, r.latest.version)}">${esc(r.latest.version)}</a>` : '–'}</td>
        <td class="hide-sm">${r.latest ? when(r.latest.created_at) : '–'}</td>
        <td class="num" data-col="wall">${r.latest ? num(r.latest.wall_ms_median) : '–'}</td>
        <td>${sparkline(r.spark)}</td>
        <td>${r.last_verdict ? statusBadge(r.last_verdict.status) : '<span class="muted">–</span>'}</td>
        <td class="num hide-sm">${num(r.baselines, 0)}</td></tr>`).join('')
        || '<tr><td colspan="7" class="empty">No benchmark matches this filter.</td></tr>';
      $('#bench-count').textContent = `${shown.length} of ${rows.length} benchmarks`;
      $$('#benchmarks-table th.sortable').forEach((th) => {
        th.setAttribute('aria-sort', th.dataset.sort === sort ? (dir > 0 ? 'ascending' : 'descending') : 'none');
      });
      const q = new URLSearchParams();
      if (filter) q.set('q', filter);
      if (sort !== 'name') q.set('sort', sort);
      if (dir < 0) q.set('dir', 'desc');
      const hash = `${projectHref(project)}${q.toString() ? `?${q}` : ''}`;
      if (location.hash !== hash) history.replaceState(null, '', hash);
    };
    $$('#benchmarks-table th.sortable').forEach((th) => th.addEventListener('click', () => {
      if (sort === th.dataset.sort) dir = -dir; else { sort = th.dataset.sort; dir = 1; }
      draw();
    }));
    let timer = null;
    $('#bench-filter').addEventListener('input', (e) => {
      clearTimeout(timer);
      timer = setTimeout(() => { filter = e.target.value.trim(); draw(); }, 80);
    });
    draw();
    rendered('project');
  }

  async function viewBenchmark(token, project, bench, params) {
    loading('history');
    const metric = METRICS.includes(params.get('metric')) ? params.get('metric') : 'wall_ms';
    const base = `/projects/${seg(project)}/baselines/${seg(bench)}`;
    const [hist, trend, gates, cps] = await Promise.all([
      api(`/projects/${seg(project)}/benchmarks/${seg(bench)}/history?limit=100`),
      api(`${base}/trend?metric=${metric}&window=30`).catch((e) => ({ error: e.message })),
      benchmarkGates(project, bench).catch(() => []),
      api(`/projects/${seg(project)}/benchmarks/${seg(bench)}/change-points?metric=${metric}`).catch(() => ({ change_points: [] })),
    ]);
    const changePoints = cps.change_points.filter((c) => c.strength === 'strong');
    if (token !== renderSeq) return;
    setNav(project);
    const versions = hist.versions.slice().reverse(); // oldest first
    const present = new Set();
    versions.forEach((v) => Object.keys((v.receipt && v.receipt.stats) || {}).forEach((k) => present.add(k)));
    const metrics = METRICS.filter((m) => present.has(m) || m === metric);
    const points = versions.map((v, i) => {
      const s = v.receipt && v.receipt.stats && v.receipt.stats[metric];
      return { i, version: v.version, promoted: v.source === 'promote', median: s ? s.median : null, min: s && s.min !== undefined ? s.min : null, max: s && s.max !== undefined ? s.max : null };
    });
    const a = trend && trend.analysis;
    const drift = trend && trend.error ? `<p class="error">${esc(trend.error)}</p>`
      : a ? `<div class="stats" id="drift">
          <div class="stat"><div class="k">Drift</div><div class="v"><span class="badge drift-${esc(a.drift)}">${esc(a.drift)}</span></div></div>
          <div class="stat"><div class="k">Slope per run</div><div class="v">${num(a.slope_per_run, 3)}</div></div>
          <div class="stat"><div class="k">R²</div><div class="v">${num(a.r_squared, 3)}</div></div>
          <div class="stat"><div class="k">Headroom</div><div class="v">${num(a.current_headroom_pct, 1)}%</div></div>
          <div class="stat"><div class="k">Runs to breach</div><div class="v">${a.runs_to_breach ?? '–'}</div></div>
          <div class="stat"><div class="k">Samples</div><div class="v">${num(a.sample_count, 0)}</div></div></div>`
        : '<p class="muted" id="drift">Not enough versions for a drift analysis.</p>';
    const canPromote = can('promote'); const canDelete = can('delete');
    view.innerHTML = `${crumbs([['Projects', '#/'], [project, projectHref(project)], [bench]])}
      <div class="row"><h1 class="name">${esc(bench)}</h1><span class="spacer"></span>
        <label for="metric">Metric</label><select id="metric">${metrics.map((m) => `<option${m === metric ? ' selected' : ''}>${esc(m)}</option>`).join('')}</select></div>
      <div class="card" id="chart">${versions.length ? seriesChart(points, metric, trend && !trend.error ? trend : null, changePoints) : '<div class="empty" data-empty="versions">No live versions.</div>'}</div>
      <div class="card" id="change-points"><h2>Change points (${esc(metric)})</h2>${changePoints.length ? `<div class="table-wrap"><table><thead><tr><th>Commits</th><th class="num">Change</th><th class="num hide-sm">Before → after</th><th>Status</th><th class="hide-sm">Runner</th><th class="hide-sm">First run</th><th>Alert</th></tr></thead><tbody>
        ${changePoints.slice().reverse().map((c) => `<tr data-change-point="${esc(c.id)}"><td class="mono" title="${esc(`${c.previous_git_sha || '?'}..${c.git_sha || '?'}`)}">${esc(shortSha(c.previous_git_sha))}..${esc(shortSha(c.git_sha))}</td>
          <td class="num">${pct(c.change_pct)}</td><td class="num hide-sm">${num(c.level_before)} → ${num(c.level_after)}</td>
          <td><span class="badge ${c.status === 'confirmed' ? 'fail' : 'warn'}" data-cp-status="${esc(c.status)}">${esc(c.status)}</span></td>
          <td class="hide-sm">${esc(c.runner)}</td><td class="hide-sm">${c.version ? `<a href="${versionHref(project, bench, c.version)}">${esc(c.version)}</a>` : '–'} ${when(c.created_at)}</td>
          <td>${c.alert_id ? `<a href="${alertHref(project, c.alert_id)}" data-alert="${esc(c.alert_id)}">alert</a>` : '–'}</td></tr>`).join('')}</tbody></table></div>`
    : '<p class="muted" data-empty="change-points">No change in level found (points appear once a step has 3 runs after it).</p>'}</div>
      <div class="card"><h2>Trend (${esc(metric)}, last 30)</h2>${drift}</div>
      <div class="card" id="bench-gates"><h2>Gates</h2>${gates.length ? `<div class="timeline">${gates.slice(0, 30).reverse().map(({ g, v }) => `<a class="tick ${esc(v.status)}" href="${gateHref(project, g.id)}" data-gate="${esc(g.id)}" title="${esc(`${v.status} ${pct(v.effect_pct)} · ${g.created_at}`)}"></a>`).join('')}</div>
        <p class="muted">Newest: <a href="${gateHref(project, gates[0].g.id)}">${statusBadge(gates[0].v.status)} ${pct(gates[0].v.effect_pct)}</a> · <a href="${gatesHref(project)}">all gates</a></p>`
    : '<p class="muted" data-empty="bench-gates">No gate has judged this benchmark yet.</p>'}</div>
      <h2>Versions <span class="muted">(${hist.pagination.total})</span></h2>
      <div class="table-wrap"><table id="versions-table"><thead><tr><th>Version</th><th>Created</th><th class="hide-sm">Git ref</th><th class="hide-sm">SHA</th>
        <th class="hide-sm">Tags</th><th>Source</th><th class="num">${esc(metric)}</th>${canPromote || canDelete ? '<th>Actions</th>' : ''}</tr></thead><tbody>
      ${hist.versions.map((v) => {
    const s = v.receipt && v.receipt.stats && v.receipt.stats[metric];
    return `<tr data-version="${esc(v.version)}"><td class="mono name"><a href="${versionHref(project, bench, v.version)}">${esc(v.version)}</a></td>
          <td>${when(v.created_at)}</td><td class="mono hide-sm">${esc(v.git_ref || '–')}</td><td class="mono hide-sm" title="${esc(v.git_sha || '')}">${esc((v.git_sha || '–').slice(0, 10))}</td>
          <td class="hide-sm">${(v.tags || []).map((t) => `<code>${esc(t)}</code>`).join(' ') || '–'}</td>
          <td>${v.source === 'promote' ? `<span class="badge promote">promote</span>${v.promoted_from ? ` <span class="muted">← ${esc(v.promoted_from)}</span>` : ''}` : esc(v.source)}${v.quarantined ? ' <span class="badge fail" data-quarantined="1" title="a final gate failed this run; triage its alert">quarantined</span>' : ''}</td>
          <td class="num">${s ? num(s.median) : '–'}</td>
          ${canPromote || canDelete ? `<td class="row">${canPromote ? `<button type="button" class="small secondary" data-action="promote" data-version="${esc(v.version)}">Promote</button>` : ''}${canDelete ? `<button type="button" class="small danger" data-action="delete" data-version="${esc(v.version)}">Delete</button>` : ''}</td>` : ''}</tr>`;
  }).join('')}</tbody></table></div>
      ${hist.pagination.has_more ? `<p class="muted">Showing the newest ${hist.versions.length} of ${hist.pagination.total} versions.</p>` : ''}`;
    $('#metric').addEventListener('change', (e) => { location.hash = benchHref(project, bench, `?metric=${e.target.value}`); });
    $$('button[data-action="promote"]').forEach((b) => b.addEventListener('click', async () => {
      const from = b.dataset.version;
      const input = await ask(`Promote ${from}`, `<p>Copies <code>${esc(from)}</code> of <code>${esc(bench)}</code> into a new version, which becomes the latest.</p>
        <label for="promote-to">New version</label><input id="promote-to" name="to_version" required maxlength="128" autocomplete="off">`, 'Promote');
      if (!input || !input.to_version) return;
      try {
        const r = await api(`${base}/promote`, { method: 'POST', body: { from_version: from, to_version: input.to_version, tags: [] } });
        toast(`Promoted ${from} to ${r.version}`, 'ok');
        route();
      } catch (e) { toast(e.message); }
    }));
    $$('button[data-action="delete"]').forEach((b) => b.addEventListener('click', async () => {
      const v = b.dataset.version;
      const ok = await ask(`Delete ${v}?`, `<p>The version disappears from every read. Its name stays reserved.</p>`, 'Delete', true);
      if (!ok) return;
      try {
        await api(`${base}/versions/${seg(v)}`, { method: 'DELETE' });
        toast(`Deleted ${v}`, 'ok');
        route();
      } catch (e) { toast(e.message); }
    }));
    rendered('benchmark');
  }

  async function viewVersion(token, project, bench, version, params) {
    loading('version');
    const r = await api(`/projects/${seg(project)}/baselines/${seg(bench)}/versions/${seg(version)}`);
    if (token !== renderSeq) return;
    setNav(project);
    const rc = r.receipt || {};
    const host = (rc.run && rc.run.host) || {};
    const b = rc.bench || {};
    const stats = rc.stats || {};
    const samples = (rc.samples || []).filter((s) => !s.warmup);
    const metric = params.get('metric') && params.get('metric') in stats ? params.get('metric') : 'wall_ms';
    const values = samples.map((s) => s[metric]).filter((v) => typeof v === 'number');
    const stat = (k, v) => `<div class="stat"><div class="k">${esc(k)}</div><div class="v">${v}</div></div>`;
    view.innerHTML = `${crumbs([['Projects', '#/'], [project, projectHref(project)], [bench, benchHref(project, bench)], [version]])}
      <h1 class="mono name">${esc(version)}</h1>
      <div class="stats">${stat('Created', when(r.created_at))}${stat('Source', esc(r.source))}${stat('Git ref', esc(r.git_ref || '–'))}
        ${stat('Git SHA', `<span class="mono">${esc((r.git_sha || '–').slice(0, 12))}</span>`)}${stat('Tool', esc(rc.tool ? `${rc.tool.name} ${rc.tool.version}` : '–'))}
        ${stat('Content hash', `<span class="mono" title="${esc(r.content_hash)}">${esc(r.content_hash.slice(0, 12))}…</span>`)}</div>
      <div class="card"><h2>Host</h2><div class="stats" id="host">${stat('OS', esc(host.os || '–'))}${stat('Arch', esc(host.arch || '–'))}
        ${stat('CPUs', esc(host.cpu_count ?? '–'))}${stat('Memory', host.memory_bytes ? `${num(host.memory_bytes / 1048576, 0)} MiB` : '–')}
        ${stat('Host hash', `<span class="mono">${esc((host.hostname_hash || '–').slice(0, 12))}</span>`)}</div>
        <h2>Command</h2><pre class="mono" id="command">${esc((b.command || []).join(' '))}</pre>
        <p class="muted">repeat ${esc(b.repeat ?? '–')}, warmup ${esc(b.warmup ?? '–')}${b.cwd ? `, in <code>${esc(b.cwd)}</code>` : ''}</p></div>
      <div class="card"><h2>Statistics</h2><div class="table-wrap"><table id="stats-table"><thead><tr><th>Metric</th><th class="num">Median</th><th class="num">Min</th><th class="num">Max</th><th class="num hide-sm">Mean</th><th class="num hide-sm">Stddev</th></tr></thead><tbody>
        ${Object.entries(stats).map(([k, s]) => `<tr data-metric="${esc(k)}"><td>${esc(k)}</td><td class="num">${num(s.median)}</td><td class="num">${num(s.min)}</td><td class="num">${num(s.max)}</td><td class="num hide-sm">${num(s.mean)}</td><td class="num hide-sm">${num(s.stddev)}</td></tr>`).join('')}
      </tbody></table></div></div>
      <div class="card"><div class="row"><h2>Samples: ${esc(metric)}</h2><span class="spacer"></span>
        <select id="hist-metric" aria-label="Histogram metric">${Object.keys(stats).map((k) => `<option${k === metric ? ' selected' : ''}>${esc(k)}</option>`).join('')}</select></div>
        <div id="histogram">${histogram(values, metric)}</div><p class="muted">${values.length} measured samples (warm-up excluded).</p></div>
      ${Object.keys(r.metadata || {}).length ? `<div class="card"><h2>Metadata</h2><table>${Object.entries(r.metadata).map(([k, v]) => `<tr><td>${esc(k)}</td><td class="mono">${esc(v)}</td></tr>`).join('')}</table></div>` : ''}`;
    $('#hist-metric').addEventListener('change', (e) => {
      location.hash = `${versionHref(project, bench, version)}?metric=${encodeURIComponent(e.target.value)}`;
    });
    rendered('version');
  }

  async function viewVerdicts(token, project, params) {
    loading('verdicts');
    const status = ['pass', 'warn', 'fail', 'skip'].includes(params.get('status')) ? params.get('status') : '';
    const minFlaky = Number(params.get('flaky') || 0) || 0;
    const data = await api(`/projects/${seg(project)}/verdicts?limit=1000${status ? `&status=${status}` : ''}`);
    if (token !== renderSeq) return;
    setNav(project);
    const groups = new Map();
    for (const v of data.verdicts) { // newest first
      if (!groups.has(v.benchmark)) groups.set(v.benchmark, []);
      groups.get(v.benchmark).push(v);
    }
    const rows = Array.from(groups, ([bench, vs]) => {
      const scored = vs.find((v) => typeof v.flakiness_score === 'number');
      return { bench, vs, flakiness: scored ? scored.flakiness_score : null };
    }).filter((r) => (minFlaky ? (r.flakiness ?? 0) >= minFlaky : true))
      .sort((a, b) => (b.flakiness ?? -1) - (a.flakiness ?? -1) || (a.bench < b.bench ? -1 : 1));
    view.innerHTML = `${crumbs([['Projects', '#/'], [project, projectHref(project)], ['verdicts']])}
      <h1>Verdicts · ${esc(project)}</h1>
      <form id="verdict-filters" class="row">
        <label for="status-filter">Status</label><select id="status-filter" name="status"><option value="">any</option>
          ${['pass', 'warn', 'fail', 'skip'].map((s) => `<option${s === status ? ' selected' : ''}>${s}</option>`).join('')}</select>
        <label for="flaky-filter">Flakiness ≥</label><input id="flaky-filter" name="flaky" type="number" min="0" max="1" step="0.05" value="${minFlaky || ''}" placeholder="0">
        <button type="submit" class="secondary">Apply</button>
        <span class="muted">${data.pagination.total} verdicts${data.pagination.has_more ? ` (newest ${data.verdicts.length} shown)` : ''}</span></form>
      ${rows.length ? `<div class="table-wrap"><table id="verdicts-table"><thead><tr><th>Benchmark</th><th>Latest</th><th class="num">Flakiness</th><th class="num hide-sm">pass / warn / fail</th><th>Timeline (oldest → newest)</th></tr></thead><tbody>
        ${rows.map((r) => {
    const c = { pass: 0, warn: 0, fail: 0, skip: 0 };
    r.vs.forEach((v) => { c[v.status] = (c[v.status] || 0) + 1; });
    return `<tr data-benchmark="${esc(r.bench)}"><td class="name"><a href="${benchHref(project, r.bench)}">${esc(r.bench)}</a></td>
          <td>${statusBadge(r.vs[0].status)}</td><td class="num" data-col="flakiness">${r.flakiness === null ? '–' : num(r.flakiness, 3)}</td>
          <td class="num hide-sm">${c.pass} / ${c.warn} / ${c.fail}</td>
          <td><div class="timeline">${r.vs.slice(0, 60).reverse().map((v) => `<span class="tick ${esc(v.status)}" title="${esc(`${v.status} · ${v.created_at} · run ${v.run_id}${v.git_ref ? ` · ${v.git_ref}` : ''}`)}"></span>`).join('')}</div></td></tr>`;
  }).join('')}</tbody></table></div>`
    : `<div class="card empty" data-empty="verdicts">No verdicts${status || minFlaky ? ' match these filters' : ' yet'}.</div>`}`;
    $('#verdict-filters').addEventListener('submit', (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      if ($('#status-filter').value) q.set('status', $('#status-filter').value);
      if (Number($('#flaky-filter').value) > 0) q.set('flaky', $('#flaky-filter').value);
      location.hash = `#/p/${seg(project)}/verdicts${q.toString() ? `?${q}` : ''}`;
    });
    rendered('verdicts');
  }


  // Each benchmark's effect as a point with its 95 % interval, coloured by status.
  function forestPlot(rows) {
    if (!rows.length) return '<div class="empty" data-empty="gate-benchmarks">No benchmarks.</div>';
    const rowH = 20; const left = 190; const width = 640; const right = 20;
    const h = rows.length * rowH + 30;
    const vals = rows.flatMap((r) => [r.ci95_pct[0], r.ci95_pct[1], r.effect_pct, 0]).filter(Number.isFinite);
    let lo = Math.min(...vals); let hi = Math.max(...vals);
    if (hi - lo < 1) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.05; lo -= pad; hi += pad;
    const x = (v) => left + ((v - lo) / (hi - lo)) * (width - left - right);
    const clip = (v) => Math.min(hi, Math.max(lo, v));
    const items = rows.map((r, i) => {
      const y = 15 + i * rowH;
      const label = r.metric === 'wall_ms' ? r.benchmark : `${r.benchmark} · ${r.metric}`;
      return `<g class="${esc(r.status)}" data-benchmark="${esc(r.benchmark)}" data-status="${esc(r.status)}">
        <title>${esc(`${label}: ${pct(r.effect_pct)} [${pct(r.ci95_pct[0])}, ${pct(r.ci95_pct[1])}] ${r.status}`)}</title>
        <text x="4" y="${y + 4}">${esc(label.length > 28 ? `${label.slice(0, 27)}…` : label)}</text>
        <line x1="${x(clip(r.ci95_pct[0]))}" x2="${x(clip(r.ci95_pct[1]))}" y1="${y}" y2="${y}" stroke-width="2"/>
        <circle cx="${x(clip(r.effect_pct))}" cy="${y}" r="4"/></g>`;
    }).join('');
    return `<svg class="forest" viewBox="0 0 ${width} ${h}" width="100%" role="img" aria-label="effect per benchmark with 95% interval">
      <line class="zero" x1="${x(0)}" x2="${x(0)}" y1="4" y2="${h - 18}"/>
      <text x="${x(0) - 4}" y="${h - 4}">0%</text><text x="${left}" y="${h - 4}">${esc(pct(lo))}</text>
      <text x="${width - right - 40}" y="${h - 4}">${esc(pct(hi))}</text>${items}</svg>`;
  }

  function gateCounts(g) {
    const c = {};
    (g.benchmarks || []).forEach((b) => { c[b.status] = (c[b.status] || 0) + 1; });
    return c;
  }

  async function viewGates(token, project, params) {
    loading('gates');
    const status = GATE_STATUSES.includes(params.get('status')) ? params.get('status') : '';
    const data = await api(`/projects/${seg(project)}/gates?limit=100${status ? `&status=${status}` : ''}`);
    if (token !== renderSeq) return;
    setNav(project);
    view.innerHTML = `${crumbs([['Projects', '#/'], [project, projectHref(project)], ['gates']])}
      <h1>Gates · ${esc(project)}</h1>
      <form id="gate-filters" class="row"><label for="gate-status">Status</label><select id="gate-status" name="status"><option value="">any</option>
        ${GATE_STATUSES.map((s) => `<option${s === status ? ' selected' : ''}>${s}</option>`).join('')}</select>
        <button type="submit" class="secondary">Apply</button>
        <span class="muted">${data.pagination.total} gates${data.pagination.has_more ? ` (newest ${data.gates.length} shown)` : ''}</span></form>
      ${data.gates.length ? `<div class="table-wrap"><table id="gates-table"><thead><tr><th>Gate</th><th>Opened</th><th>Status</th><th class="num">Attempt</th>
        <th class="num">fail / inconclusive / warn</th><th class="num hide-sm">Run shift</th><th class="hide-sm">Git ref</th><th class="hide-sm">SHA</th></tr></thead><tbody>
        ${data.gates.map((g) => {
    const c = gateCounts(g);
    return `<tr data-gate="${esc(g.id)}"><td class="mono"><a href="${gateHref(project, g.id)}">${esc(g.id.slice(0, 12))}</a></td><td>${when(g.created_at)}</td>
          <td>${statusBadge(g.status)}${g.final ? '' : ' <span class="muted">open</span>'}</td><td class="num">${g.attempt} / ${g.max_attempts}</td>
          <td class="num">${c.fail || 0} / ${c.inconclusive || 0} / ${c.warn || 0}</td><td class="num hide-sm">${pct(g.suite && g.suite.shift_pct)}</td>
          <td class="mono hide-sm">${esc(g.git_ref || '–')}</td><td class="mono hide-sm">${esc((g.git_sha || '–').slice(0, 10))}</td></tr>`;
  }).join('')}</tbody></table></div>`
    : `<div class="card empty" data-empty="gates">No gates${status ? ' with this status' : ' yet: CI opens one with <code>perfgate-server gate</code>'}.</div>`}`;
    $('#gate-filters').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = $('#gate-status').value;
      location.hash = gatesHref(project, v ? `?status=${v}` : '');
    });
    rendered('gates');
  }

  async function viewGate(token, project, id) {
    loading('gate');
    const g = await api(`/projects/${seg(project)}/gates/${seg(id)}`);
    if (token !== renderSeq) return;
    setNav(project);
    const order = { fail: 0, inconclusive: 1, warn: 2, pass: 3, skip: 4 };
    const rows = g.benchmarks.slice().sort((a, b) => (order[a.status] - order[b.status]) || (b.effect_pct - a.effect_pct));
    const cf = g.confirm;
    view.innerHTML = `${crumbs([['Projects', '#/'], [project, projectHref(project)], ['gates', gatesHref(project)], [id.slice(0, 12)]])}
      <div class="row"><h1 class="name">Gate ${esc(id.slice(0, 12))}</h1><span id="gate-status">${statusBadge(g.status)}</span>
        <span class="muted">${g.final ? 'final' : 'open'} · attempt ${g.attempt} of ${g.max_attempts}</span></div>
      <div class="stats" id="gate-facts">
        <div class="stat"><div class="k">Opened</div><div class="v">${when(g.created_at)}</div></div>
        <div class="stat"><div class="k">Git ref</div><div class="v mono">${esc(g.git_ref || '–')}</div></div>
        <div class="stat"><div class="k">SHA</div><div class="v mono">${esc((g.git_sha || '–').slice(0, 12))}</div></div>
        <div class="stat"><div class="k">Runner</div><div class="v mono">${esc(g.runner || 'host class')}</div></div>
        ${(g.suites || []).map((su) => `<div class="stat" data-suite="${esc(su.metric)}"><div class="k">Whole run · ${esc(su.metric)}</div>
          <div class="v">${statusBadge(su.status)} ${pct(su.shift_pct)}</div></div>`).join('')}</div>
      ${cf ? `<div class="card" id="gate-confirm"><h2>Confirmation run requested (attempt ${cf.attempt})</h2>
        <p>Rerun the whole suite on a fresh runner before ${when(cf.deadline)}; suspects: ${cf.benchmarks.map((b) => `<code>${esc(b)}</code>${cf.repeat[b] ? ` (${cf.repeat[b]} samples)` : ''}`).join(', ') || 'the whole run'}.</p>
        <p class="mono">perfgate-server gate --attempt-of ${esc(g.id)} &lt;receipts&gt;</p></div>` : ''}
      <div class="card" id="gate-chart"><h2>Effect per benchmark (95 % interval)</h2>${forestPlot(rows)}</div>
      <div class="table-wrap"><table id="gate-benchmarks"><thead><tr><th>Benchmark</th><th>Metric</th><th>Status</th><th class="num">Effect</th>
        <th class="num hide-sm">95 % interval</th><th class="num hide-sm">q</th><th class="num">History</th><th class="hide-sm">Reason</th></tr></thead><tbody>
        ${rows.map((b) => `<tr data-benchmark="${esc(b.benchmark)}" data-metric="${esc(b.metric)}"><td class="name"><a href="${benchHref(project, b.benchmark)}">${esc(b.benchmark)}</a></td>
          <td>${esc(b.metric)}</td><td>${statusBadge(b.status)}</td><td class="num" data-col="effect">${pct(b.effect_pct)}</td>
          <td class="num hide-sm">${pct(b.ci95_pct[0])} … ${pct(b.ci95_pct[1])}</td><td class="num hide-sm">${num(b.q, 4)}</td>
          <td class="num">${b.history_runs}</td><td class="hide-sm">${esc(b.reason)}</td></tr>`).join('')}</tbody></table></div>
      ${(g.recorded || []).length ? `<p class="muted" id="gate-recorded">Recorded as baselines: ${g.recorded.map((r) => `<a href="${versionHref(project, r.benchmark, r.version)}">${esc(r.benchmark)}@${esc(r.version)}</a>`).join(', ')}</p>` : ''}`;
    rendered('gate');
  }

  // The gates that judged one benchmark (newest first), for its page.
  async function benchmarkGates(project, bench) {
    const data = await api(`/projects/${seg(project)}/gates?limit=50`);
    return data.gates
      .map((g) => ({ g, v: g.benchmarks.find((b) => b.benchmark === bench && b.metric === 'wall_ms') || g.benchmarks.find((b) => b.benchmark === bench) }))
      .filter((x) => x.v);
  }


  const ALERT_STATES = ['untriaged', 'acknowledged', 'invalid', 'expected', 'duplicate', 'fixed'];
  // The permission a transition needs (the server checks it too).
  function transitionScope(from, to) {
    if (to === 'untriaged') return from === 'acknowledged' ? 'write' : 'admin';
    return (to === 'invalid' || to === 'expected') ? 'promote' : 'write';
  }

  // The transition buttons of an alert the caller may use (the server checks the role too).
  function transitionButtons(a) {
    return a.transitions.filter((t) => can(transitionScope(a.status, t))).map((t) => `<button type="button" class="small secondary" data-action="transition" data-alert="${esc(a.id)}" data-to="${esc(t)}">${t === 'untriaged' ? 'reopen' : esc(t)}</button>`).join('');
  }

  // Asks for the reason (and what else the target state needs), then moves the alert.
  function bindTransitions(project) {
    $$('button[data-action="transition"]').forEach((b) => b.addEventListener('click', async () => {
      const to = b.dataset.to;
      const needsReason = to === 'invalid' || to === 'expected';
      const fields = `${needsReason ? '<label for="t-reason">Reason (required)</label><input id="t-reason" name="reason" required maxlength="1024" autocomplete="off">' : '<label for="t-reason">Reason</label><input id="t-reason" name="reason" maxlength="1024" autocomplete="off">'}
        ${to === 'acknowledged' ? '<label for="t-link">Issue link</label><input id="t-link" name="link" maxlength="2048" autocomplete="off">' : ''}
        ${to === 'duplicate' ? '<label for="t-dup">Duplicate of (alert id)</label><input id="t-dup" name="duplicate_of" required maxlength="32" autocomplete="off">' : ''}
        ${to === 'expected' ? '<label for="t-owner">Waiver owner (default: you)</label><input id="t-owner" name="owner" maxlength="256" autocomplete="off"><label for="t-max">Accept up to (% slower; default: this change)</label><input id="t-max" name="max_change_pct" type="number" min="0" max="1000" step="0.1"><label for="t-exp">Waiver ends (default: in 30 days; at most 366)</label><input id="t-exp" name="expires_on" type="date">' : ''}`;
      const input = await ask(`Mark ${to}`, fields, to === 'untriaged' ? 'Reopen' : 'Save');
      if (!input) return;
      const body = { to };
      ['reason', 'link', 'duplicate_of', 'owner'].forEach((k) => { if (input[k]) body[k] = input[k]; });
      if (input.max_change_pct) body.max_change_pct = Number(input.max_change_pct);
      // The end of the chosen day, local time.
      if (input.expires_on) body.expires_at = new Date(`${input.expires_on}T23:59:59`).toISOString();
      try {
        await api(`/projects/${seg(project)}/alerts/${seg(b.dataset.alert)}/transitions`, { method: 'POST', body });
        toast(`Alert marked ${to}`, 'ok');
        route();
      } catch (e) { toast(e.message); }
    }));
  }

  async function viewAlerts(token, project, params) {
    loading('alerts');
    const status = ALERT_STATES.includes(params.get('status')) ? params.get('status') : '';
    const [data, stats] = await Promise.all([
      api(`/projects/${seg(project)}/alerts?limit=200${status ? `&status=${status}` : ''}`),
      api(`/projects/${seg(project)}/alert-stats`).catch(() => ({ benchmarks: [] })),
    ]);
    if (token !== renderSeq) return;
    setNav(project);
    const groups = new Map(); // by gate (or commit)
    data.alerts.forEach((a) => {
      const k = a.gate_id || a.git_sha || a.id;
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(a);
    });
    const hints = stats.benchmarks.filter((b) => b.hint);
    view.innerHTML = `${crumbs([['Projects', '#/'], [project, projectHref(project)], ['alerts']])}
      <h1>Alerts · ${esc(project)}</h1>
      <form id="alert-filters" class="row"><label for="alert-status">State</label><select id="alert-status" name="status"><option value="">any</option>
        ${ALERT_STATES.map((s) => `<option${s === status ? ' selected' : ''}>${s}</option>`).join('')}</select>
        <button type="submit" class="secondary">Apply</button><span class="muted">${data.pagination.total} alerts</span>
        <span class="spacer"></span><a href="${waiversHref(project)}" id="alerts-waivers">Waivers →</a></form>
      ${hints.length ? `<div class="card" id="alert-hints">${hints.map((h) => `<p><code>${esc(h.benchmark)}</code>: ${esc(h.hint)}</p>`).join('')}</div>` : ''}
      ${data.alerts.length ? Array.from(groups, ([k, as]) => `<div class="card" data-group="${esc(k)}">
        <h2>${as[0].gate_id ? `Gate <a href="${gateHref(project, as[0].gate_id)}" class="mono">${esc(as[0].gate_id.slice(0, 12))}</a>` : 'Change'}
          ${as[0].git_sha ? ` · <span class="mono">${esc(as[0].git_sha.slice(0, 12))}</span>` : ''} <span class="muted">(${as.length})</span></h2>
        <div class="table-wrap"><table class="alerts-table"><thead><tr><th>Benchmark</th><th>Metric</th><th>State</th><th class="num">Change</th><th class="hide-sm">Opened</th><th class="hide-sm">Note</th><th>Triage</th></tr></thead><tbody>
        ${as.map((a) => `<tr data-alert="${esc(a.id)}"><td class="name"><a href="${benchHref(project, a.benchmark)}">${esc(a.benchmark)}</a></td><td>${esc(a.metric)}</td>
          <td>${statusBadge(a.status)}</td><td class="num">${pct(a.change_pct)}</td><td class="hide-sm">${when(a.created_at)}</td>
          <td class="hide-sm">${a.waiver ? `waiver ≤ ${pct(a.waiver.max_change_pct)} until ${when(a.waiver.expires_at)} (${esc(a.waiver.owner)})` : ''}${a.reason ? ` ${esc(a.reason)}` : ''}${a.link ? ` ${issueLink(a.link, 'link')}` : ''}</td>
          <td class="row"><a href="${alertHref(project, a.id)}" data-link="alert">details</a>${transitionButtons(a)}</td></tr>`).join('')}
        </tbody></table></div></div>`).join('')
    : `<div class="card empty" data-empty="alerts">No alerts${status ? ' in this state' : ''}.</div>`}`;
    $('#alert-filters').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = $('#alert-status').value;
      location.hash = alertsHref(project, v ? `?status=${v}` : '');
    });
    bindTransitions(project);
    rendered('alerts');
  }

  // "in 3 days", "in 5 h", or "expired 2d ago".
  function expiresIn(iso) {
    const ms = Date.parse(iso) - Date.now();
    if (!(ms > 0)) return `expired ${age(iso)}`;
    const days = Math.floor(ms / 86400000);
    if (days >= 1) return `in ${days} day${days === 1 ? '' : 's'}`;
    return `in ${Math.max(1, Math.round(ms / 3600000))} h`;
  }
  const SOON_DAYS = 7;
  function waiverBadge(w, expired) {
    if (expired) return '<span class="badge fail" data-waiver="expired">expired</span>';
    const soon = Date.parse(w.expires_at) - Date.now() < SOON_DAYS * 86400000;
    return soon ? '<span class="badge warn" data-waiver="soon">expires soon</span>' : '<span class="badge pass" data-waiver="active">active</span>';
  }

  function historyStep(e) {
    if (e.action === 'create') {
      return `opened${e.gate_id ? ' by a failing gate' : ''}${e.actor === 'system:change-points' ? ' by a change point' : ''}${e.change_pct !== null && e.change_pct !== undefined ? ` (${pct(e.change_pct)})` : ''}`;
    }
    return `${e.from ? `${statusBadge(e.from)} → ` : ''}${e.to ? statusBadge(e.to) : esc(e.action)}`;
  }

  async function viewAlert(token, project, id) {
    loading('alert');
    const a = await api(`/projects/${seg(project)}/alerts/${seg(id)}`);
    if (token !== renderSeq) return;
    setNav(project);
    const w = a.waiver;
    const wExpired = w && Date.parse(w.expires_at) <= Date.now();
    const range = a.previous_git_sha || a.git_sha
      ? `${a.previous_git_sha ? `<span class="mono">${esc(a.previous_git_sha.slice(0, 12))}</span> … ` : ''}<span class="mono">${esc((a.git_sha || '–').slice(0, 12))}</span>` : '–';
    view.innerHTML = `${crumbs([['Projects', '#/'], [project, projectHref(project)], ['alerts', alertsHref(project)], [id.slice(0, 12)]])}
      <div class="row"><h1 class="name">Alert · ${esc(a.benchmark)}</h1><span id="alert-status">${statusBadge(a.status)}</span>
        <span class="muted mono">${esc(a.id)}</span></div>
      <div class="stats" id="alert-facts">
        <div class="stat"><div class="k">Benchmark</div><div class="v name"><a href="${benchHref(project, a.benchmark, a.metric === 'wall_ms' ? '' : `?metric=${encodeURIComponent(a.metric)}`)}">${esc(a.benchmark)}</a></div></div>
        <div class="stat"><div class="k">Metric</div><div class="v">${esc(a.metric)}</div></div>
        <div class="stat"><div class="k">Change</div><div class="v" data-col="change">${pct(a.change_pct)}</div></div>
        <div class="stat"><div class="k">Opened</div><div class="v">${when(a.created_at)}</div></div>
        <div class="stat"><div class="k">Source</div><div class="v" data-col="source">${a.source === 'change_point' ? `<a href="${benchHref(project, a.benchmark, a.metric === 'wall_ms' ? '' : `?metric=${encodeURIComponent(a.metric)}`)}">change point</a>` : 'gate'}</div></div>
        <div class="stat"><div class="k">Gate</div><div class="v mono">${a.gate_id ? `<a href="${gateHref(project, a.gate_id)}">${esc(a.gate_id.slice(0, 12))}</a>` : '–'}</div></div>
        <div class="stat"><div class="k">Commits</div><div class="v" data-col="commits">${range}</div></div>
        <div class="stat"><div class="k">Triaged by</div><div class="v mono">${esc(a.triaged_by || '–')}</div></div>
        ${a.link ? `<div class="stat"><div class="k">Issue</div><div class="v">${issueLink(a.link)}</div></div>` : ''}
        ${a.duplicate_of ? `<div class="stat"><div class="k">Duplicate of</div><div class="v mono"><a href="${alertHref(project, a.duplicate_of)}">${esc(a.duplicate_of.slice(0, 12))}</a></div></div>` : ''}
      </div>
      ${a.reason ? `<p id="alert-reason"><strong>Reason:</strong> ${esc(a.reason)}</p>` : ''}
      ${w ? `<div class="card" id="alert-waiver"><h2>Waiver ${waiverBadge(w, wExpired)}</h2>
        <p>Gates answer <code>warn</code> instead of <code>fail</code> for a slowdown of <strong>${pct(w.max_change_pct)}</strong> at most,
        owned by <strong class="mono">${esc(w.owner)}</strong>; ends ${esc(expiresIn(w.expires_at))} (<time datetime="${esc(w.expires_at)}">${esc(w.expires_at.slice(0, 16).replace('T', ' '))} UTC</time>).</p>
        <p><a href="${waiversHref(project)}">All waivers of ${esc(project)} →</a></p></div>` : ''}
      ${a.quarantined.length ? `<div class="card" id="alert-quarantine"><h2>Quarantined versions</h2>
        <p class="muted">Stored but never served as latest, and not promotable until this alert is triaged as expected or invalid.</p>
        <ul>${a.quarantined.map((q) => `<li data-version="${esc(q.version)}"><a href="${versionHref(project, q.benchmark, q.version)}">${esc(q.benchmark)}@${esc(q.version)}</a> <span class="muted">${when(q.created_at)}</span></li>`).join('')}</ul></div>` : ''}
      ${transitionButtons(a) ? `<div class="row" id="alert-actions"><span class="muted">Triage:</span>${transitionButtons(a)}</div>` : ''}
      <h2>Audit trail</h2>
      ${a.history.length ? `<div class="table-wrap"><table id="alert-history"><thead><tr><th>When</th><th>Who</th><th>Step</th><th>Reason</th><th class="hide-sm">Details</th></tr></thead><tbody>
        ${a.history.map((e) => `<tr data-action="${esc(e.action)}" data-to="${esc(e.to || '')}"><td>${when(e.at)}</td><td class="mono">${esc(e.actor)}</td>
          <td>${historyStep(e)}</td><td>${esc(e.reason || '')}</td>
          <td class="hide-sm">${[
    e.link ? issueLink(e.link, 'issue') : '',
    e.duplicate_of ? `duplicate of <a class="mono" href="${alertHref(project, e.duplicate_of)}">${esc(e.duplicate_of.slice(0, 12))}</a>` : '',
    e.waiver ? `waiver ≤ ${pct(e.waiver.max_change_pct)} until ${esc(e.waiver.expires_at.slice(0, 10))} (${esc(e.waiver.owner)})` : '',
    e.gate_id ? `gate <a class="mono" href="${gateHref(project, e.gate_id)}">${esc(e.gate_id.slice(0, 12))}</a>` : '',
  ].filter(Boolean).join(' · ')}</td></tr>`).join('')}</tbody></table></div>`
    : '<div class="card empty" data-empty="history">No recorded steps.</div>'}`;
    bindTransitions(project);
    rendered('alert');
  }

  async function viewWaivers(token, project, params) {
    loading('waivers');
    const all = params.get('expired') === '1';
    const d = await api(`/projects/${seg(project)}/waivers?limit=200${all ? '&include_expired=true' : ''}`);
    if (token !== renderSeq) return;
    setNav(project);
    view.innerHTML = `${crumbs([['Projects', '#/'], [project, projectHref(project)], ['alerts', alertsHref(project)], ['waivers']])}
      <h1>Waivers · ${esc(project)}</h1>
      <form id="waiver-filters" class="row"><label><input type="checkbox" id="waivers-expired"${all ? ' checked' : ''}> include expired</label>
        <span class="muted">${d.pagination.total} waiver${d.pagination.total === 1 ? '' : 's'}${all ? '' : ' in force'}, soonest expiry first</span>
        <span class="spacer"></span><a href="${alertsHref(project, '?status=expected')}">Expected alerts →</a></form>
      <p class="muted">An alert marked <code>expected</code> carries a waiver: until it ends, the benchmark's gates answer <code>warn</code> instead of <code>fail</code> for a slowdown up to its maximum. When it ends, the alert opens again.</p>
      ${d.waivers.length ? `<div class="table-wrap"><table id="waivers-table"><thead><tr><th>Benchmark</th><th>Metric</th><th>Owner</th><th class="num">Max change</th><th>Expires</th><th></th><th class="hide-sm">Reason</th><th>Alert</th></tr></thead><tbody>
        ${d.waivers.map((w) => `<tr data-alert="${esc(w.alert_id)}" data-expired="${w.expired ? '1' : '0'}"${w.expired ? ' class="expired"' : ''}>
          <td class="name"><a href="${benchHref(project, w.benchmark)}">${esc(w.benchmark)}</a></td><td>${esc(w.metric)}</td><td class="mono">${esc(w.owner)}</td>
          <td class="num" data-col="max">${pct(w.max_change_pct)}</td><td data-col="expires"><time datetime="${esc(w.expires_at)}" title="${esc(w.expires_at)}">${esc(expiresIn(w.expires_at))}</time></td>
          <td>${waiverBadge(w, w.expired)}</td><td class="hide-sm">${esc(w.reason || '')}</td>
          <td><a class="mono" href="${alertHref(project, w.alert_id)}">${esc(w.alert_id.slice(0, 12))}</a> ${statusBadge(w.status)}</td></tr>`).join('')}</tbody></table></div>`
    : `<div class="card empty" data-empty="waivers">No waivers${all ? '' : ' in force'}.</div>`}`;
    $('#waivers-expired').addEventListener('change', (e) => {
      location.hash = waiversHref(project, e.target.checked ? '?expired=1' : '');
    });
    $('#waiver-filters').addEventListener('submit', (e) => e.preventDefault());
    rendered('waivers');
  }

  async function viewFleet(token, params) {
    loading('fleet alerts');
    const min = Math.max(1, Number(params.get('min_affected') || 2) || 2);
    const data = await api(`/fleet/alerts?min_affected=${min}&limit=50`);
    if (token !== renderSeq) return;
    setNav(null);
    view.innerHTML = `<h1>Fleet alerts</h1>
      <p class="muted">Dependency upgrades after which several projects regressed. Showing groups with at least ${min} projects.</p>
      ${data.alerts.length ? `<div class="table-wrap"><table id="alerts-table"><thead><tr><th>Dependency</th><th>Change</th><th class="num">Confidence</th><th class="num">Avg Δ</th><th>Affected</th><th class="hide-sm">First seen</th></tr></thead><tbody>
        ${data.alerts.map((a) => `<tr data-dependency="${esc(a.dependency)}"><td class="name"><a href="#/fleet/dep/${seg(a.dependency)}">${esc(a.dependency)}</a></td>
          <td class="mono">${esc(a.old_version || '?')} → ${esc(a.new_version || '?')}</td><td class="num">${num(a.confidence * 100, 0)}%</td><td class="num">${pct(a.avg_delta_pct)}</td>
          <td>${a.affected_projects.map((p) => `<div><a href="${benchHref(p.project, p.benchmark)}">${esc(p.project)}/${esc(p.benchmark)}</a> <span class="muted">${esc(p.metric)} ${pct(p.delta_pct)}</span></div>`).join('')}</td>
          <td class="hide-sm">${when(a.first_seen)}</td></tr>`).join('')}</tbody></table></div>`
    : '<div class="card empty" data-empty="alerts">No fleet-wide regressions. Dependency events recorded by CI show up here when several projects regress after the same upgrade.</div>'}`;
    rendered('fleet');
  }

  async function viewImpact(token, dep) {
    loading('impact');
    const d = await api(`/fleet/dependency/${seg(dep)}/impact?limit=200`);
    if (token !== renderSeq) return;
    setNav(null);
    view.innerHTML = `${crumbs([['Fleet', '#/fleet'], [dep]])}<h1 class="name">${esc(d.dependency)}</h1>
      <div class="stats">${[['Projects', num(d.project_count, 0)], ['Average Δ', pct(d.avg_delta_pct)], ['Events', num(d.events.length, 0)]].map(([k, v]) => `<div class="stat"><div class="k">${k}</div><div class="v">${v}</div></div>`).join('')}</div>
      ${d.events.length ? `<h2>Events</h2><div class="table-wrap"><table id="impact-table"><thead><tr><th>Project / benchmark</th><th>Change</th><th>Metric</th><th class="num">Δ</th><th class="hide-sm">When</th></tr></thead><tbody>
        ${d.events.map((e) => `<tr><td class="name"><a href="${benchHref(e.project, e.benchmark)}">${esc(e.project)}/${esc(e.benchmark)}</a></td><td class="mono">${esc(e.old_version || '?')} → ${esc(e.new_version || '?')}</td>
          <td>${esc(e.metric)}</td><td class="num">${pct(e.delta_pct)}</td><td class="hide-sm">${when(e.created_at)}</td></tr>`).join('')}</tbody></table></div>`
    : '<div class="card empty" data-empty="events">No events for this dependency.</div>'}`;
    rendered('impact');
  }

  async function viewAudit(token, params) {
    loading('audit log');
    const q = new URLSearchParams();
    ['project', 'action', 'resource_type', 'actor'].forEach((k) => { if (params.get(k)) q.set(k, params.get(k)); });
    // Without a type the API lists the contract's four only (what the perfgate CLI reads).
    if (!params.get('resource_type')) q.set('resource_type', 'all');
    const offset = Math.max(0, Number(params.get('offset') || 0) || 0);
    q.set('limit', '50'); q.set('offset', String(offset));
    const d = await api(`/audit?${q}`);
    if (token !== renderSeq) return;
    setNav(null);
    const sel = (name, opts) => `<select name="${name}" id="audit-${name}"><option value="">any</option>${opts.map((o) => `<option${params.get(name) === o ? ' selected' : ''}>${o}</option>`).join('')}</select>`;
    const page = (off) => { const p = new URLSearchParams(params); p.set('offset', String(off)); return `#/admin/audit?${p}`; };
    view.innerHTML = `<h1>Audit log</h1>
      <form id="audit-filters" class="row">
        <input name="project" placeholder="project" value="${esc(params.get('project') || '')}" aria-label="Project">
        ${sel('action', ['create', 'update', 'delete', 'promote'])}${sel('resource_type', ['baseline', 'key', 'verdict', 'decision', 'gate', 'gate_settings', 'alert', 'dependency_event', 'retention'])}
        <input name="actor" placeholder="actor" value="${esc(params.get('actor') || '')}" aria-label="Actor">
        <button type="submit" class="secondary">Filter</button><span class="muted">${d.pagination.total} events</span></form>
      ${d.events.length ? `<div class="table-wrap"><table id="audit-table"><thead><tr><th>When</th><th>Actor</th><th>Action</th><th>Resource</th><th class="hide-sm">Project</th><th class="hide-sm">Details</th></tr></thead><tbody>
        ${d.events.map((e) => `<tr><td>${when(e.timestamp)}</td><td class="mono">${esc(e.actor)}</td><td>${esc(e.action)}</td>
          <td class="name">${esc(e.resource_type)} <span class="mono">${esc(e.resource_id)}</span></td><td class="hide-sm">${esc(e.project)}</td>
          <td class="mono hide-sm">${esc(JSON.stringify(e.metadata))}</td></tr>`).join('')}</tbody></table></div>
        <div class="row">${offset > 0 ? `<a href="${page(Math.max(0, offset - 50))}">← Newer</a>` : ''}<span class="spacer"></span>${d.pagination.has_more ? `<a href="${page(offset + 50)}">Older →</a>` : ''}</div>`
    : '<div class="card empty" data-empty="audit">No events match.</div>'}`;
    $('#audit-filters').addEventListener('submit', (e) => {
      e.preventDefault();
      const p = new URLSearchParams();
      new FormData(e.target).forEach((v, k) => { if (String(v).trim()) p.set(k, String(v).trim()); });
      location.hash = `#/admin/audit${p.toString() ? `?${p}` : ''}`;
    });
    rendered('audit');
  }

  async function viewKeys(token) {
    loading('keys');
    const d = await api('/keys');
    if (token !== renderSeq) return;
    setNav(null);
    const roles = ['viewer', 'contributor', 'promoter', 'admin'];
    view.innerHTML = `<h1>API keys</h1>
      <div class="card"><h2>Create a key</h2>
        <form id="key-form" class="form-grid">
          <label for="key-description">Description</label><input id="key-description" name="description" required maxlength="200" placeholder="CI for repo X">
          <label for="key-role">Role</label><select id="key-role" name="role">${roles.map((r) => `<option${r === 'contributor' ? ' selected' : ''}>${r}</option>`).join('')}</select>
          <label for="key-project">Project</label><input id="key-project" name="project" required value="${esc(me.project === '*' ? '' : me.project)}" placeholder="project or *" ${me.project === '*' ? '' : 'readonly'}>
          <label for="key-pattern">Benchmarks</label><input id="key-pattern" name="pattern" placeholder="glob, e.g. render/* (optional)">
          <label for="key-expires">Expires</label><input id="key-expires" name="expires_at" type="datetime-local">
          <span></span><div><button type="submit" id="key-create">Create key</button></div>
        </form><div id="new-key"></div></div>
      <h2>Keys</h2>
      ${d.keys.length ? `<div class="table-wrap"><table id="keys-table"><thead><tr><th>Description</th><th>Key</th><th>Role</th><th>Project</th><th class="hide-sm">Pattern</th><th class="hide-sm">Created</th><th>Status</th><th></th></tr></thead><tbody>
        ${d.keys.map((k) => `<tr data-key-id="${esc(k.id)}"><td class="name">${esc(k.description)}</td><td class="mono">${esc(k.key_prefix)}</td><td>${esc(k.role)}</td><td>${esc(k.project)}</td>
          <td class="mono hide-sm">${esc(k.pattern || '–')}</td><td class="hide-sm">${when(k.created_at)}</td>
          <td>${k.revoked_at ? `<span class="badge fail">revoked</span>` : k.expires_at && Date.parse(k.expires_at) < Date.now() ? '<span class="badge skip">expired</span>' : '<span class="badge pass">active</span>'}</td>
          <td>${k.revoked_at ? '' : `<button type="button" class="small danger" data-action="revoke" data-id="${esc(k.id)}">Revoke</button>`}</td></tr>`).join('')}</tbody></table></div>`
    : '<div class="card empty" data-empty="keys">No keys created through the API yet.</div>'}`;
    $('#key-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      const body = { description: String(f.get('description')).trim(), role: f.get('role'), project: String(f.get('project')).trim() || '*' };
      if (String(f.get('pattern')).trim()) body.pattern = String(f.get('pattern')).trim();
      if (f.get('expires_at')) body.expires_at = new Date(String(f.get('expires_at'))).toISOString();
      try {
        const k = await api('/keys', { method: 'POST', body });
        await viewKeys(renderSeq);
        $('#new-key').innerHTML = `<p><strong>Copy this key now: it is shown only once.</strong></p>
          <div class="secret"><code id="new-key-value">${esc(k.key)}</code><button type="button" id="copy-key" class="small">Copy</button></div>`;
        $('#copy-key').addEventListener('click', async () => {
          try { await navigator.clipboard.writeText(k.key); toast('Key copied', 'ok'); } catch (_) {
            const r = document.createRange(); r.selectNodeContents($('#new-key-value'));
            const s = getSelection(); s.removeAllRanges(); s.addRange(r);
            toast('Selected: press Ctrl+C to copy', 'ok');
          }
        });
        toast(`Created key ${k.id}`, 'ok');
      } catch (err) { toast(err.message); }
    });
    $$('button[data-action="revoke"]').forEach((b) => b.addEventListener('click', async () => {
      const ok = await ask('Revoke this key?', '<p>Requests with it are refused at once, on every replica. This cannot be undone.</p>', 'Revoke', true);
      if (!ok) return;
      try { await api(`/keys/${seg(b.dataset.id)}`, { method: 'DELETE' }); toast('Key revoked', 'ok'); viewKeys(renderSeq); } catch (e) { toast(e.message); }
    }));
    rendered('keys');
  }

  // ------------------------------------------------------------------ routing and session
  async function route() {
    const token = ++renderSeq;
    if (localMode === null) {
      localMode = await loadInfo();
      if (token !== renderSeq) return undefined;
      $('#local-badge').hidden = localMode !== true;
    }
    if (!sessionStorage.getItem(KEY) && localMode !== true) return showSignIn();
    const raw = (location.hash || '#/').slice(1);
    const [path, qs] = raw.split('?');
    const params = new URLSearchParams(qs || '');
    let s;
    try { s = path.split('/').filter(Boolean).map(decodeURIComponent); } catch (_) { s = []; }
    try {
      if (!me) await loadIdentity();
      if (token !== renderSeq) return;
      if (s[0] === 'p' && s[1] !== undefined) {
        if (s.length === 2) return await viewProject(token, s[1], params);
        if (s[2] === 'verdicts') return await viewVerdicts(token, s[1], params);
        if (s[2] === 'gates' && s.length === 3) return await viewGates(token, s[1], params);
        if (s[2] === 'alerts' && s.length === 3) return await viewAlerts(token, s[1], params);
        if (s[2] === 'alerts' && s[3] !== undefined && s.length === 4) return await viewAlert(token, s[1], s[3]);
        if (s[2] === 'waivers' && s.length === 3) return await viewWaivers(token, s[1], params);
        if (s[2] === 'gates' && s[3] !== undefined && s.length === 4) return await viewGate(token, s[1], s[3]);
        if (s[2] === 'b' && s[3] !== undefined && s.length === 4) return await viewBenchmark(token, s[1], s[3], params);
        if (s[2] === 'b' && s[4] === 'v' && s[5] !== undefined) return await viewVersion(token, s[1], s[3], s[5], params);
      }
      if (s[0] === 'fleet' && s.length === 1) return await viewFleet(token, params);
      if (s[0] === 'fleet' && s[1] === 'dep' && s[2] !== undefined) return await viewImpact(token, s[2]);
      if (s[0] === 'admin' && localMode === true && !sessionStorage.getItem(KEY)) {
        return showSignIn('Keys and the audit log need an API key, even in local mode.');
      }
      if (s[0] === 'admin' && s[1] === 'audit') return await viewAudit(token, params);
      if (s[0] === 'admin' && s[1] === 'keys') return await viewKeys(token);
      if (s.length && token === renderSeq) toast(`Unknown page ${raw}; showing the projects.`);
      return await viewProjects(token);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return undefined;
      return failed(e, token);
    }
  }

  // Whether the server runs in local mode (no sign-in); null when it cannot be told yet.
  async function loadInfo() {
    try {
      const res = await fetch('/api/v1/info', { headers: { Accept: 'application/json' }, cache: 'no-store' });
      if (!res.ok) return null;
      return (await res.json()).local_mode === true;
    } catch (_) { return null; }
  }

  async function loadIdentity(quiet401 = false) {
    me = await api('/whoami', { quiet401 });
    const filter = me.benchmark_filter ? ` · benchmarks ${me.benchmark_filter}` : '';
    $('#who-text').textContent = `${me.id} · ${me.role} · project ${me.project}${filter}`;
    const keyless = localMode === true && !sessionStorage.getItem(KEY);
    $('#use-key').hidden = !keyless;
    $('#sign-out').hidden = keyless;
    $('#who').hidden = false;
    try { projects = (await api('/projects')).projects; } catch (e) { if (e.status === 401) throw e; projects = []; }
  }

  function showSignIn(message) {
    me = null; projects = [];
    $('#who').hidden = true;
    setNav(null);
    view.innerHTML = '';
    $('#signin').hidden = false;
    const err = $('#signin-error');
    err.hidden = !message;
    err.textContent = message || '';
    $('#signin-cancel').hidden = localMode !== true;
    $('#credential').focus();
    rendered('signin');
  }

  function signOut(message) {
    const hadKey = !!sessionStorage.getItem(KEY);
    sessionStorage.removeItem(KEY);
    if (localMode === true && hadKey) {
      // Back to the local user, who needs no sign-in.
      me = null; projects = [];
      if (message) toast(message);
      route();
      return;
    }
    showSignIn(message);
  }

  $('#signin-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const cred = $('#credential').value.trim().replace(/^(Bearer|Token)\s+/i, '');
    if (!cred) return;
    sessionStorage.setItem(KEY, cred);
    $('#signin-submit').disabled = true;
    try {
      await loadIdentity(true);
      $('#signin').hidden = true;
      $('#credential').value = '';
      route();
    } catch (err) {
      sessionStorage.removeItem(KEY);
      showSignIn(err.message);
    } finally {
      $('#signin-submit').disabled = false;
    }
  });
  $('#sign-out').addEventListener('click', () => { signOut(); location.hash = '#/'; });
  $('#use-key').addEventListener('click', () => showSignIn());
  $('#signin-cancel').addEventListener('click', () => {
    $('#signin').hidden = true;
    me = null;
    if (location.hash.startsWith('#/admin')) location.hash = '#/'; else route();
  });
  $('#project-picker').addEventListener('change', (e) => {
    location.hash = e.target.value ? projectHref(e.target.value) : '#/';
  });
  window.addEventListener('hashchange', () => { $('#signin').hidden = true; route(); });
  if (sessionStorage.getItem(KEY)) $('#signin').hidden = true;
  route();
})();
