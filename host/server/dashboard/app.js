// GigaSPOT dashboard: polls the JSON API every two seconds and redraws what changed.
// Every string from the API reaches the page through textContent or setAttribute.
'use strict';

(() => {
  const POLL_MS = 2000;
  const MARKET_INTERVALS = 120; // intervals shown in the charts
  const MACHINE_INTERVALS = 120; // intervals of the selected machine's history
  const LEDGER_ROWS = 100;
  const KEY_STORAGE = 'gigaspot.apiKey';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#2563eb', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6', '#06b6d4', '#ec4899', '#84cc16'];

  const state = {
    key: localStorage.getItem(KEY_STORAGE),
    account: null, // GET /accounts/me of the signed-in key
    machines: [],
    market: null, // GET /market/history
    selected: null, // machine id
    book: null,
    history: null, // selected machine's history, newest first
    myBids: null, // GET /bids of the signed-in key
    orders: null, // GET /orders of the signed-in key
    hosts: {}, // host account id -> name
  };

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- DOM helpers

  // el('td', {class: 'num', title: t}, 'text', childNode, ...): text children become text
  // nodes, so API data is never parsed as HTML.
  function el(tag, attrs, ...children) {
    return build(document.createElement(tag), attrs, children);
  }

  function svg(tag, attrs, ...children) {
    return build(document.createElementNS(SVG_NS, tag), attrs, children);
  }

  function build(node, attrs, children) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  // Fills a table body; shows the "empty" note instead when there are no rows.
  function fillTable(tableId, rows, emptyId) {
    $(tableId).tBodies[0].replaceChildren(...rows);
    if (emptyId) $(emptyId).hidden = rows.length !== 0;
  }

  // Redrawing only what changed keeps text selections and scroll positions stable.
  const lastRendered = new Map();
  function changed(key, ...data) {
    const json = JSON.stringify(data);
    if (lastRendered.get(key) === json) return false;
    lastRendered.set(key, json);
    return true;
  }

  function badge(text, kind, title) {
    return el('span', { class: `badge ${kind || ''}`, title }, text);
  }

  // ---------------------------------------------------------------- formatting

  const num = (x, min, max) =>
    Number(x).toLocaleString('en-US', { minimumFractionDigits: min, maximumFractionDigits: max });
  const fmtPrice = (x) => (x === null || x === undefined ? '–' : num(x, 2, 4)); // CLORE/day
  const fmtAmount = (x) => num(x, 2, 8); // CLORE, exact to the base unit
  const fmtScore = (s) => (s === null || s === undefined ? '' : s === 0 ? '0' : s.toPrecision(4));
  const shortModel = (m) => m.replace(/^NVIDIA\s+/i, '').replace(/^GeForce\s+/i, '');
  const shortDigest = (d) => (d.length > 20 ? `${d.slice(0, 19)}…` : d);
  const pad = (n) => String(n).padStart(2, '0');

  function fmtTime(unixS) {
    const d = new Date(unixS * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtDateTime(unixS) {
    const d = new Date(unixS * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtTime(unixS)}`;
  }

  function fmtDuration(s) {
    if (s % 86400 === 0) return `${s / 86400} d`;
    if (s % 3600 === 0) return `${s / 3600} h`;
    if (s % 60 === 0) return `${s / 60} min`;
    return `${s} s`;
  }

  const hostName = (id) => state.hosts[id] || `account ${id}`;
  const bidLabel = (id) => (id === null || id === undefined ? 'idle' : `bid ${id}`);

  // Per-GPU power limits: "2 × 300 W" when equal, else "300 + 250 W".
  function powerLimits(oc) {
    const pls = oc.map((o) => o.pl);
    return pls.length > 1 && pls.every((p) => p === pls[0]) ? `${pls.length} × ${pls[0]} W` : `${pls.join(' + ')} W`;
  }

  // One GPU's clock locks and offsets, where set: "core 1800 MHz, mem +500".
  function clocks(coreLock, memLock, coreOffset, memOffset) {
    const s = [];
    if (coreLock != null) s.push(`core ${coreLock} MHz`);
    if (memLock != null) s.push(`mem ${memLock} MHz`);
    if (coreOffset != null) s.push(`core ${coreOffset > 0 ? '+' : ''}${coreOffset}`);
    if (memOffset != null) s.push(`mem ${memOffset > 0 ? '+' : ''}${memOffset}`);
    return s.join(', ');
  }

  // The clock locks and offsets of each GPU of a bid, where set.
  function clockSettings(oc) {
    const parts = oc.map((o, i) => {
      const s = clocks(o.core_lock, o.mem_lock, o.core_offset, o.mem_offset);
      return s ? `GPU ${i}: ${s}` : null;
    });
    return parts.filter(Boolean).join('; ');
  }

  // The same for the settings a view shows (a background job's, the agent's).
  const ocClocks = (o) => clocks(o.core_lock_mhz, o.mem_lock_mhz, o.core_offset_mhz, o.mem_offset_mhz);

  // What sets the machine's minimum bid (`min_bid_from`).
  const MIN_BID_FROM = {
    reserve_price: ['reserve price', "The host's reserve price"],
    energy_floor: ['energy floor', "The energy cost of a day at the cards' minimum power limits"],
    background_earnings: ['background earnings', "What the host's background job earns a day"],
  };

  // What the machine does now (`activity`): label, badge kind, explanation.
  const ACTIVITY = {
    bid: ['bid', 'winner', "A bid's workload runs"],
    background: ['background job', 'scored', "The host's background job runs: no bid runs"],
    idle: ['idle', '', 'Nothing runs'],
  };

  function activityBadge(m) {
    const [label, kind, title] = ACTIVITY[m.activity] || [m.activity || 'unknown', '', ''];
    return badge(m.online ? label : `${label} (last report)`, kind, title);
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, { method = 'GET', auth = false, key = state.key, body: payload = null } = {}) {
    const headers = { Accept: 'application/json' };
    if (auth) headers.Authorization = `Bearer ${key}`;
    const init = { method, headers, cache: 'no-store' };
    if (payload != null) {
      headers['Content-Type'] = 'application/json';
      // Amounts are sent as written (the server reads them exactly, at most 8 decimals).
      init.body = typeof payload === 'string' ? payload : JSON.stringify(payload);
    }
    const res = await fetch(path, init);
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      const e = body && body.error;
      const detail = e ? [e.field, e.reason].filter(Boolean).join(': ') : res.statusText;
      throw new ApiError(res.status, `${detail || 'request failed'} (HTTP ${res.status})`);
    }
    return body;
  }

  // ---------------------------------------------------------------- polling

  let pollTimer = null;
  let inFlight = false; // a refresh is running
  let again = false; // another was asked for meanwhile

  // Refreshes now (after the running refresh, if any), then every POLL_MS: one loop only.
  async function refresh() {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    clearTimeout(pollTimer);
    try {
      await refreshOnce();
    } finally {
      inFlight = false;
    }
    if (again) {
      again = false;
      refresh();
    } else {
      pollTimer = setTimeout(poll, POLL_MS);
    }
  }

  // One round: the machine list, the market history, the selected machine's book and
  // history, and the signed-in key's routes. Errors are shown; the loop goes on.
  async function refreshOnce() {
    const errors = [];
    const note = (p) => p.catch((e) => {
      errors.push(e);
      return null;
    });
    const [machines, market, prices] = await Promise.all([
      note(api('/api/v1/machines')),
      note(api(`/api/v1/market/history?limit=${MARKET_INTERVALS}`)),
      note(api(`/api/v1/market/prices?limit=${MARKET_INTERVALS}`)),
      note(refreshMachine()),
      note(refreshAccount()),
    ]);
    if (machines) state.machines = machines;
    if (market) {
      state.market = market;
      state.hosts = market.hosts;
    }
    if (prices) state.prices = prices;
    renderOverview();
    renderMachine();
    renderCharts();
    if (state.account) renderMyBids(); // marks the bids that run now
    renderOrderModels();
    // First load: pick the first machine and fetch its details without waiting a round.
    if (!state.machines.some((m) => m.id === state.selected) && state.machines.length) {
      select(state.machines[0].id);
    }
    // A refused key signs out with its own message.
    reportErrors(errors.filter((e) => !(e instanceof ApiError && e.status === 401)));
  }

  // The status line: the time of the last refresh without errors, else the first error.
  function reportErrors(errors) {
    $('poll-error').hidden = errors.length === 0;
    if (errors.length) {
      setText('poll-error', ` — refresh failed: ${errors[0].message}`);
    } else {
      setText('updated', fmtTime(Date.now() / 1000));
      $('updated').setAttribute('datetime', new Date().toISOString());
    }
  }

  // Polls only while the tab is visible; coming back refreshes at once.
  function poll() {
    if (document.hidden) pollTimer = setTimeout(poll, POLL_MS);
    else refresh();
  }
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refresh();
  });

  // ---------------------------------------------------------------- overview

  function gpuSummary(gpus) {
    const counts = new Map();
    for (const g of gpus) counts.set(g.model, (counts.get(g.model) || 0) + 1);
    return [...counts].map(([model, n]) => el('span', { class: 'gpu-group' }, `${n}× ${shortModel(model)}`));
  }

  const workloadState = (w) => (w.state === 'exited' && w.exit_code != null ? `exited (${w.exit_code})` : w.state);

  // The agent's workload, next to the current bid: its state, and its bid if another.
  function workloadText(m) {
    const w = m.agent && m.agent.workload;
    if (!w) return m.current_bid != null ? 'not started' : '';
    const text = w.bid === m.current_bid ? workloadState(w) : `${bidLabel(w.bid)} ${workloadState(w)}`;
    return m.online ? text : `last report: ${text}`; // an offline agent's report is stale
  }

  function machineState(m) {
    const cell = el('td', { class: 'state' });
    if (!m.online) cell.append(badge('offline', 'bad', 'No heartbeat from the agent'));
    else if (!m.working) cell.append(badge('not working', 'warn', 'Online, but the agent reports it is not working properly'));
    else cell.append(badge('online', 'ok', 'Online and working'));
    if (m.agent && m.agent.last_error) cell.append(badge('error', 'warn', m.agent.last_error));
    return cell;
  }

  function renderOverview() {
    const ms = state.machines;
    const online = ms.filter((m) => m.online).length;
    setText('kpi-online', `${online} / ${ms.length}`);
    setText('kpi-running', String(ms.filter((m) => m.current_bid != null).length));
    setText('kpi-gpus', String(ms.reduce((n, m) => n + m.gpus.length, 0)));
    if (state.market) {
      const last = [...state.market.intervals].reverse().find((i) => i.avg_price != null);
      setText('kpi-price', last ? `${fmtPrice(last.avg_price)} CLORE/day` : '–');
      setText('kpi-interval', fmtDuration(state.market.interval_s));
    }
    if (!changed('overview', ms, state.hosts, state.selected)) return;

    const focused = document.activeElement && document.activeElement.dataset.machineId;
    const rows = ms.map((m) => {
      const current = el('td', { class: 'bid-cell' }, el('span', { class: 'current-bid' }, m.current_bid ?? ''));
      if (m.current_bid == null) current.append(el('span', { class: 'muted' }, m.activity === 'background' ? 'background job' : 'idle'));
      const work = workloadText(m);
      if (work) current.append(el('small', { class: 'muted block' }, work));
      return el(
        'tr',
        {
          'data-machine-id': m.id,
          tabindex: 0,
          class: m.id === state.selected ? 'selected' : null,
          'aria-current': m.id === state.selected ? 'true' : null,
        },
        el('td', null, el('strong', null, `#${m.id}`)),
        el('td', { class: 'host' }, hostName(m.host)),
        el('td', { class: 'gpus', title: m.gpus.map((g) => g.model).join('\n') }, ...gpuSummary(m.gpus)),
        machineState(m),
        current,
        el('td', { class: 'num' }, fmtPrice(m.min_bid)),
      );
    });
    fillTable('machines', rows, 'machines-empty');
    if (focused) {
      const row = document.querySelector(`#machines [data-machine-id="${CSS.escape(focused)}"]`);
      if (row) row.focus();
    }
  }

  function select(id) {
    if (state.selected === id) return;
    state.selected = id;
    state.book = null;
    state.history = null;
    // Empty the previous machine's book and switches until this one's arrive.
    for (const key of ['book', 'switches']) lastRendered.delete(key);
    fillTable('order-book', [], null);
    $('book-empty').hidden = true;
    $('switch-history').replaceChildren();
    $('switch-empty').hidden = true;
    setText('book-meta', 'loading…');
    setText('switch-meta', `machine #${id} · loading…`);
    renderOverview();
    renderMachine();
    refreshMachine().catch((e) => reportErrors([e]));
  }

  $('machines').addEventListener('click', (ev) => {
    const row = ev.target.closest('[data-machine-id]');
    if (row) select(Number(row.dataset.machineId));
  });
  $('machines').addEventListener('keydown', (ev) => {
    const row = ev.target.closest('[data-machine-id]');
    if (row && (ev.key === 'Enter' || ev.key === ' ')) {
      ev.preventDefault();
      select(Number(row.dataset.machineId));
    }
  });

  // ---------------------------------------------------------------- selected machine

  async function refreshMachine() {
    const id = state.selected;
    if (id === null) return;
    const [book, history] = await Promise.all([
      api(`/api/v1/machines/${id}/book`),
      api(`/api/v1/machines/${id}/history?limit=${MACHINE_INTERVALS}`),
    ]);
    if (id !== state.selected) return; // another machine was selected meanwhile
    state.book = book;
    state.history = history;
    renderMachine();
    renderCharts();
  }

  function renderMachine() {
    const m = state.machines.find((x) => x.id === state.selected);
    $('machine-empty').hidden = Boolean(m);
    $('machine-body').hidden = !m;
    if (!m) return;
    setText('machine-title', `Machine #${m.id}`);
    if (changed('machine-facts', m, state.hosts)) renderFacts(m);
    if (state.book && changed('book', state.book, state.account && state.account.id)) renderBook(state.book);
    if (state.history && changed('switches', state.history)) renderSwitches(state.history);
  }

  function renderFacts(m) {
    const agent = m.agent || {};
    const w = agent.workload;
    const facts = [
      ['Host', hostName(m.host)],
      ['Energy price', `${m.energy_price} USD/kWh`],
      ['Reserve price', `${fmtPrice(m.reserve_price)} CLORE/day`],
      ['Min bid', `${fmtPrice(m.min_bid)} CLORE/day`],
      ['Min bid set by', (MIN_BID_FROM[m.min_bid_from] || [m.min_bid_from])[0], (MIN_BID_FROM[m.min_bid_from] || [])[1],
        { id: 'min-bid-from', 'data-min-bid-from': m.min_bid_from }],
      ['Energy floor', `${fmtPrice(m.energy_floor)} CLORE/day`, "The energy cost of a day at the cards' minimum power limits"],
      ['Background earnings', `${fmtPrice(m.background_earnings)} CLORE/day`, "What the host's background job earns a day, as the host declared it: a floor of the minimum bid"],
      ['Max rental', fmtDuration(m.max_rental_length)],
      ['Activity', activityBadge(m), null, { id: 'machine-activity', 'data-activity': m.activity }],
      ['Agent', `${m.online ? 'online' : 'offline'}, ${m.working ? 'working' : 'not working'}`],
      ['Workload', w ? `${bidLabel(w.bid)} ${workloadState(w)}${m.online ? '' : ' (last report)'}` : 'none'],
      ['Cached images', String((agent.cached_images || []).length), (agent.cached_images || []).join('\n')],
    ];
    $('machine-facts').replaceChildren(
      ...facts.map(([k, v, title, attrs]) => el('div', { title }, el('dt', null, k), el('dd', attrs, v))),
    );
    renderBackground(m);
    $('machine-error').hidden = !agent.last_error;
    setText('machine-error', agent.last_error ? `Agent error: ${agent.last_error}` : '');

    const applied = agent.applied_settings || [];
    const measured = agent.measured_power_w || [];
    const job = m.background_job;
    fillTable(
      'gpus',
      m.gpus.map((g, i) => {
        const ceiling = g.ceiling_w ?? g.card_max_w;
        const a = applied[i];
        const bg = job && job.oc[i];
        const bgClocks = bg ? ocClocks(bg) : '';
        return el(
          'tr',
          null,
          el('td', { title: g.uuid }, String(i)),
          el('td', null, g.model),
          el(
            'td',
            { class: 'num', title: m.explicit_ceilings ? "The host's ceiling" : job ? "The ceiling follows the background job's power limit" : null },
            `${g.card_min_w}–${ceiling} W`,
            ceiling < g.card_max_w ? el('small', { class: 'muted' }, ` (card ${g.card_max_w})`) : null,
          ),
          el('td', { class: 'num' }, a ? `${a.power_limit_w} W` : '–'),
          el('td', { class: 'num' }, measured[i] != null ? `${measured[i]} W` : '–'),
          el(
            'td',
            { class: 'num background-oc', 'data-power-limit-w': bg ? bg.power_limit_w : null },
            bg ? `${bg.power_limit_w} W` : '–',
            bgClocks ? el('small', { class: 'muted block' }, bgClocks) : null,
          ),
        );
      }),
    );
  }

  // The host's background job: what the machine runs while no bid wins, and how the
  // agent reports it (it runs only while no bid is assigned).
  function renderBackground(m) {
    const job = m.background_job;
    const b = (m.agent || {}).background;
    setText('background-meta', job ? (m.explicit_ceilings ? 'bid ceilings set by the host' : 'bid ceilings follow its power limits') : '');
    $('background-facts').hidden = !job;
    $('background-empty').hidden = Boolean(job);
    if (!job) {
      $('background-facts').replaceChildren();
      return;
    }
    let status = 'not running';
    if (b) {
      status = workloadState(b);
      if (b.state === 'running') status += b.applied ? ', settings applied' : ', settings not read back';
      if (b.revision !== job.revision) status += ' (an older revision)';
      if (!m.online) status += ' (last report)';
    }
    const settings = job.oc.map((o, i) => {
      const c = ocClocks(o);
      return `GPU ${i}: ${o.power_limit_w} W${c ? `, ${c}` : ''}`;
    });
    const perGpu = [...new Set(job.oc.map(ocClocks))];
    const env = job.env_keys.join(', ');
    const facts = [
      ['Image', job.image, job.image, { id: 'background-image' }],
      ['Environment', env || 'none', `${env ? `${env}\n` : ''}Variable names only: the values are never shown`],
      ['Power limits', powerLimits(job.oc.map((o) => ({ pl: o.power_limit_w }))), settings.join('\n'), { id: 'background-power' }],
      ['Clocks', perGpu.length > 1 ? 'per GPU' : perGpu[0] || 'default', settings.join('\n')],
      ['Earnings', m.background_earnings > 0 ? `${fmtPrice(m.background_earnings)} CLORE/day` : 'not declared', 'A floor of the minimum bid'],
      ['Revision', shortDigest(job.revision), job.revision, { class: 'digest' }],
      ['Agent', status, b ? `revision ${b.revision}` : 'The agent reports no background job', { id: 'background-status', 'data-state': b ? b.state : null }],
    ];
    $('background-facts').replaceChildren(
      ...facts.map(([k, v, title, attrs]) => el('div', { title }, el('dt', null, k), el('dd', attrs, v))),
    );
  }

  function renderBook(book) {
    const me = state.account && state.account.id;
    const meta = [];
    if (book.strategy) meta.push(`ranked by ${book.strategy.name} ${book.strategy.version}`);
    if (book.interval != null) meta.push(`interval ${book.interval}`);
    setText('book-meta', meta.join(' · '));
    $('book-meta').title = book.strategy ? `strategy digest ${book.strategy.digest}` : '';
    const rows = book.entries.map((e) => {
      const notes = [el('span', { class: 'image', title: e.image }, e.image)];
      if (e.reason) notes.push(el('span', { class: 'reason' }, e.reason));
      // A score that is not positive means "not acceptable to this host".
      if (e.score !== null && !(e.score > 0)) notes.push(el('span', { class: 'reason' }, 'not acceptable to the host (score ≤ 0)'));
      const clocks = clockSettings(e.oc);
      return el(
        'tr',
        { 'data-bid-id': e.bid, 'data-status': e.status, class: `status-${e.status}` },
        el('td', { class: 'num' }, e.rank ?? ''),
        el('td', null, el('strong', null, `#${e.bid}`), el('small', { class: 'muted block' }, e.owner === me ? 'yours' : `owner ${e.owner}`)),
        el('td', null, badge(e.status, e.status)),
        el('td', { class: 'num score' }, fmtScore(e.score)),
        el('td', { class: 'num' }, fmtPrice(e.price)),
        el(
          'td',
          { class: 'num' },
          `${num(e.price_per_kw, 2, 2)} /kW`,
          el('small', { class: 'muted block' }, `${num(e.price_per_kw / 1000, 4, 4)} /W`),
        ),
        el('td', { class: 'num', title: clocks || null }, powerLimits(e.oc), el('small', { class: 'muted block' }, `${e.power_w} W total${clocks ? ' · clocks set' : ''}`)),
        toWinCell(e.what_would_win),
        el('td', { class: 'notes' }, ...notes),
      );
    });
    fillTable('order-book', rows, 'book-empty');
  }

  // What would have won the latest clearing for a bid that lost it.
  function toWinCell(w) {
    if (!w) return el('td', { class: 'num to-win' }, '');
    if (w.price_to_win == null) return el('td', { class: 'num to-win muted', title: w.cannot_win || '' }, 'no price');
    const power = w.power_limit_to_win_w != null ? `or ≤ ${w.power_limit_to_win_w} W at its price` : 'no lower power wins';
    return el('td', { class: 'num to-win', title: `${w.calls} plugin runs` }, fmtPrice(w.price_to_win), el('small', { class: 'muted block' }, power));
  }

  // The quote form: the price that would win the selected machine now.
  $('quote-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const out = $('quote-result');
    const m = state.machines.find((x) => x.id === state.selected);
    if (!state.key || !m) {
      out.className = 'error-text';
      out.textContent = 'Sign in with a client key to ask for a quote.';
      return;
    }
    const pl = Number($('quote-pl').value);
    const oc = JSON.stringify(m.gpus.map(() => ({ pl })));
    const image = $('quote-image').value.trim();
    out.className = '';
    out.textContent = 'Searching…';
    try {
      const q = await api(`/api/v1/machines/${m.id}/quote?oc=${encodeURIComponent(oc)}&image=${encodeURIComponent(image)}`, { auth: true });
      out.textContent = q.price_to_win != null
        ? `${fmtPrice(q.price_to_win)} CLORE/day wins the next interval (floor ${fmtPrice(q.floor)}, ${q.total_power_limit_w} W, ${q.strategy.name})`
        : `No price wins: ${q.cannot_win}`;
    } catch (e) {
      out.className = 'error-text';
      out.textContent = e.message;
    }
  });

  function renderSwitches(history) {
    const switches = history.filter((h) => h.switched);
    setText('switch-meta', `machine #${state.selected} · last ${history.length} intervals`);
    const items = switches.map((h) =>
      el(
        'li',
        { 'data-interval': h.interval, title: `interval ${h.interval}` },
        el('time', { datetime: new Date(h.at * 1000).toISOString() }, fmtTime(h.at)),
        el('span', { class: 'switch' }, `${bidLabel(h.previous)} → ${bidLabel(h.winner)}`),
        el('small', { class: 'muted' }, h.price != null ? `${fmtPrice(h.price)} CLORE/day · ${num(h.price_per_kw, 2, 2)} /kW · ` : '', `${h.candidates} bids`),
      ),
    );
    $('switch-history').replaceChildren(...items);
    $('switch-empty').hidden = items.length !== 0;
  }

  // ---------------------------------------------------------------- charts

  const CHART_H = 170;
  const PAD = { l: 52, r: 10, t: 10, b: 22 };

  // Round axis steps: 1, 2, 2.5 or 5 times a power of ten.
  function niceTicks(max, count) {
    const top = max > 0 ? max : 1;
    const raw = top / count;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => s >= raw);
    const ticks = [];
    for (let v = 0; v < top + step / 2; v += step) ticks.push(v);
    if (ticks[ticks.length - 1] < top) ticks.push(ticks[ticks.length - 1] + step);
    return ticks;
  }

  function fmtTick(v) {
    if (v === 0) return '0';
    if (Math.abs(v) >= 1000) return num(v / 1000, 0, 1) + 'k';
    if (Math.abs(v) >= 1) return num(v, 0, 2);
    return Number(v.toPrecision(3)).toString(); // drops float noise such as 0.30000000000000004
  }

  // Axes, grid and scales for a plot of the intervals [t0, t1] against values [0, yMax].
  function frame(container, t0, t1, yMax, bandCount) {
    const w = Math.max(container.clientWidth, 240);
    const root = svg('svg', { width: w, height: CHART_H, viewBox: `0 0 ${w} ${CHART_H}`, role: 'img' });
    const ticks = niceTicks(yMax, 4);
    const yTop = ticks[ticks.length - 1];
    const plotW = w - PAD.l - PAD.r;
    const plotH = CHART_H - PAD.t - PAD.b;
    // Each interval owns a band; points sit in the middle of theirs.
    const band = plotW / Math.max(bandCount, 1);
    const x = (t) => PAD.l + ((t - t0) / Math.max(t1 - t0, 1)) * (plotW - band) + band / 2;
    const y = (v) => PAD.t + plotH - (v / yTop) * plotH;
    for (const v of ticks) {
      root.append(svg('line', { class: 'grid', x1: PAD.l, x2: w - PAD.r, y1: y(v), y2: y(v) }));
      root.append(svg('text', { class: 'tick', x: PAD.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmtTick(v)));
    }
    // Time labels on whole multiples of a readable step.
    const steps = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
    const span = Math.max(t1 - t0, 1);
    const maxLabels = Math.max(2, Math.floor(plotW / 70));
    const step = steps.find((s) => span / s <= maxLabels) || 86400;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const label = step < 60 ? fmtTime(t) : fmtTime(t).slice(0, 5);
      root.append(svg('line', { class: 'axis', x1: x(t), x2: x(t), y1: PAD.t + plotH, y2: PAD.t + plotH + 4 }));
      root.append(svg('text', { class: 'tick', x: x(t), y: CHART_H - 6, 'text-anchor': 'middle' }, label));
    }
    root.append(svg('line', { class: 'axis', x1: PAD.l, x2: w - PAD.r, y1: PAD.t + plotH, y2: PAD.t + plotH }));
    return { root, x, y, band, plotH };
  }

  // A transparent column over each interval whose tooltip lists the values.
  function hoverColumn(f, t, lines) {
    return svg('rect', { class: 'hover', x: f.x(t) - f.band / 2, y: PAD.t, width: f.band, height: f.plotH }, svg('title', null, lines.join('\n')));
  }

  function legend(items) {
    return el('div', { class: 'legend' }, ...items.map(([color, label, dashed]) =>
      el('span', null, el('i', { class: dashed ? 'swatch dashed' : 'swatch', style: `--c:${color}` }), label)));
  }

  function emptyChart(container, text) {
    container.replaceChildren(el('p', { class: 'empty chart-empty' }, text));
  }

  // series: [{label, color, dashed, points: [[t, value|null], ...]}]; gaps break the line.
  function lineChart(container, times, series, unit) {
    const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v != null);
    if (!times.length || !values.length) return emptyChart(container, 'No cleared bids in this period yet.');
    const f = frame(container, times[0], times[times.length - 1], Math.max(...values), times.length);
    for (const s of series) {
      let d = '';
      s.points.forEach(([t, v], i) => {
        if (v == null) return;
        const prev = s.points[i - 1];
        d += `${prev && prev[1] != null ? 'L' : 'M'}${f.x(t).toFixed(1)},${f.y(v).toFixed(1)}`;
        const next = s.points[i + 1];
        if ((!prev || prev[1] == null) && (!next || next[1] == null)) {
          f.root.append(svg('circle', { cx: f.x(t), cy: f.y(v), r: 2.5, fill: s.color }));
        }
      });
      f.root.append(svg('path', { d, class: 'line', stroke: s.color, 'stroke-dasharray': s.dashed ? '5 3' : null }));
    }
    times.forEach((t, i) => {
      const lines = [fmtTime(t)];
      for (const s of series) {
        const v = s.points[i][1];
        lines.push(`${s.label}: ${v == null ? '–' : `${num(v, 2, 2)} ${unit}`}`);
      }
      f.root.append(hoverColumn(f, t, lines));
    });
    container.replaceChildren(f.root, legend(series.map((s) => [s.color, s.label, s.dashed])));
  }

  // One bar per interval, stacked by host.
  function revenueChart(container, intervals, hosts) {
    const ids = Object.keys(hosts).sort((a, b) => Number(a) - Number(b));
    const color = (i) => PALETTE[i % PALETTE.length];
    const totals = intervals.map((iv) => ids.reduce((s, id) => s + (iv.revenue_by_host[id] || 0), 0));
    if (!intervals.length || !Math.max(0, ...totals)) return emptyChart(container, 'No revenue charged in this period yet.');
    const times = intervals.map((iv) => iv.at);
    const f = frame(container, times[0], times[times.length - 1], Math.max(...totals), times.length);
    const barW = Math.max(f.band * 0.75, 1);
    intervals.forEach((iv, k) => {
      let base = 0;
      ids.forEach((id, i) => {
        const v = iv.revenue_by_host[id] || 0;
        if (!v) return;
        f.root.append(svg('rect', { x: f.x(iv.at) - barW / 2, y: f.y(base + v), width: barW, height: f.y(base) - f.y(base + v), fill: color(i) }));
        base += v;
      });
      const lines = [fmtTime(iv.at), ...ids.map((id) => `${hosts[id]}: ${fmtAmount(iv.revenue_by_host[id] || 0)} CLORE`)];
      if (totals[k]) f.root.append(hoverColumn(f, iv.at, lines));
    });
    const sums = ids.map((id) => intervals.reduce((s, iv) => s + (iv.revenue_by_host[id] || 0), 0));
    container.replaceChildren(f.root, legend(ids.map((id, i) => [color(i), `${hosts[id]} · ${fmtAmount(sums[i])} CLORE`])));
  }

  function renderCharts() {
    const market = state.market;
    if (!market) return;
    const width = $('chart-price').clientWidth;
    const machineHistory = state.history || [];
    if (!changed('charts', market, machineHistory, state.selected, width, state.prices)) return;
    const ivs = market.intervals;
    const times = ivs.map((iv) => iv.at);
    setText('charts-meta', ivs.length ? `last ${ivs.length} intervals of ${fmtDuration(market.interval_s)}` : '');
    // Market means, and the selected machine's winning bid on the same time axis.
    const byAt = new Map(machineHistory.map((h) => [h.at, h]));
    const series = (marketField, machineField) => {
      const list = [{ label: 'market mean', color: PALETTE[0], points: ivs.map((iv) => [iv.at, iv[marketField]]) }];
      if (state.selected != null) {
        list.push({
          label: `machine #${state.selected}`,
          color: PALETTE[1],
          dashed: true,
          points: times.map((t) => [t, byAt.has(t) ? byAt.get(t)[machineField] : null]),
        });
      }
      return list;
    };
    lineChart($('chart-price'), times, series('avg_price', 'price'), 'CLORE/day');
    lineChart($('chart-ppw'), times, series('avg_price_per_kw', 'price_per_kw'), 'CLORE/day per kW');
    revenueChart($('chart-revenue'), ivs, market.hosts);
    modelChart($('chart-models'), times, state.prices);
  }

  // The median clearing price per kW of each GPU model, on the market's time axis.
  function modelChart(container, times, prices) {
    if (!prices) return emptyChart(container, 'No prices yet.');
    const series = prices.models.map((model, i) => {
      const byAt = new Map(prices.points.filter((p) => p.model === model).map((p) => [p.at, p.median]));
      return { label: model.replace(/^NVIDIA (GeForce )?/, ''), color: PALETTE[i % PALETTE.length], points: times.map((t) => [t, byAt.has(t) ? byAt.get(t) : null]) };
    });
    lineChart(container, times, series, 'CLORE/day per kW');
  }

  let resizeFrame = 0;
  window.addEventListener('resize', () => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(renderCharts);
  });

  // ---------------------------------------------------------------- account

  async function refreshAccount() {
    const key = state.key;
    if (!key) return;
    try {
      if (!state.account) {
        const account = await api('/api/v1/accounts/me', { auth: true, key });
        if (state.key !== key) return;
        state.account = account;
      }
      const isOperator = state.account.roles.includes('operator');
      const [balance, bids, ledger, plugins, withdrawals, shadow, orders] = await Promise.all([
        api('/api/v1/balance', { auth: true, key }),
        api('/api/v1/bids', { auth: true, key }),
        api(`/api/v1/ledger?limit=${LEDGER_ROWS}`, { auth: true, key }),
        isOperator ? api('/api/v1/plugins', { auth: true, key }) : null,
        api('/api/v1/withdrawals', { auth: true, key }),
        isOperator ? api('/api/v1/plugins/shadow', { auth: true, key }) : null,
        api('/api/v1/orders', { auth: true, key }),
      ]);
      if (state.key !== key) return; // signed out (or in again) meanwhile
      state.orders = orders;
      renderOrders();
      renderAccount(balance, bids, ledger);
      renderWithdrawals(withdrawals, isOperator);
      if (plugins) renderPlugins(plugins);
      if (shadow) renderShadow(shadow);
      if (isOperator) await refreshBacktest(key);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401 && state.key === key) signOut('The stored key was refused; sign in again.');
      throw e;
    }
  }

  function renderAccount(balance, bids, ledger) {
    const a = state.account;
    $('sign-in-form').hidden = true;
    $('who').hidden = false;
    $('account').hidden = false;
    $('operator').hidden = !a.roles.includes('operator');
    setText('who-name', `${a.name} · ${fmtAmount(balance.balance)} CLORE`);
    setText('account-meta', `${a.name} · account ${a.id} · ${a.roles.join(', ')}`);
    setText('balance', fmtAmount(balance.balance));
    state.myBids = bids;
    renderMyBids();
    if (changed('ledger', ledger)) renderLedger(ledger, a.id);
  }

  // Bid id -> the standing order that placed it.
  function orderOfBid() {
    const of = new Map();
    for (const o of state.orders || []) for (const b of o.bids) of.set(b, o.id);
    return of;
  }

  function renderMyBids() {
    const bids = state.myBids || [];
    const running = new Set(state.machines.map((m) => m.current_bid).filter((b) => b != null));
    const ofOrder = orderOfBid();
    if (!changed('my-bids', bids, [...running], [...ofOrder])) return;
    const rows = [...bids]
      .sort((a, b) => b.id - a.id)
      .map((b) => {
        const stateCell = el('td', null, badge(b.state, b.state));
        if (running.has(b.id)) stateCell.append(badge('running now', 'winner'));
        const order = ofOrder.get(b.id);
        return el(
          'tr',
          { 'data-bid': b.id, 'data-order': order },
          el(
            'td',
            null,
            el('strong', null, `#${b.id}`),
            order != null ? ' ' : null,
            order != null ? badge(`order #${order}`, 'scored order-mark', 'Placed by your standing order') : null,
          ),
          el('td', null, el('button', { type: 'button', class: 'link', 'data-select-machine': b.machine, title: 'Show this machine' }, `#${b.machine}`)),
          el('td', { class: 'num' }, fmtPrice(b.price)),
          el('td', { class: 'num', title: clockSettings(b.oc) || null }, powerLimits(b.oc)),
          el('td', { class: 'image', title: b.image }, b.image),
          stateCell,
        );
      });
    fillTable('my-bids', rows, 'my-bids-empty');
  }

  $('my-bids').addEventListener('click', (ev) => {
    const button = ev.target.closest('[data-select-machine]');
    if (!button) return;
    select(Number(button.dataset.selectMachine));
    $('machine').scrollIntoView({ behavior: 'smooth', block: 'start' });
  });

  // ---------------------------------------------------------------- standing orders

  const ORDER_STATE_KIND = { active: 'active', paused: 'paused', cancelled: 'cancelled', expired: 'expired' };

  function fact(label, value, title) {
    return el('div', { title }, el('dt', null, label), el('dd', null, value));
  }

  // The signed-in key's standing orders, newest first, each with what it holds now.
  function renderOrders() {
    const orders = state.orders || [];
    const a = state.account;
    $('orders-section').hidden = !(a && a.roles.includes('client')) && orders.length === 0;
    if (!changed('orders', orders)) return;
    const live = orders.filter((o) => o.state === 'active' || o.state === 'paused');
    setText('orders-meta', orders.length ? `${live.length} live of ${orders.length}` : '');
    const cards = [...orders]
      .sort((x, y) => y.id - x.id)
      .map((o) => {
        const held = o.machines.length;
        const winning = o.machines.filter((h) => h.winning).length;
        const header = el(
          'header',
          null,
          el('strong', { class: 'order-id' }, `Order #${o.id}`),
          el('span', { class: 'order-state', 'data-state': o.state }, badge(o.state, ORDER_STATE_KIND[o.state])),
          el('span', { class: 'held', title: `${winning} of the held bids win this interval` }, `holds ${held} of ${o.count}`),
        );
        if (o.state === 'active' || o.state === 'paused') {
          header.append(el('button', { type: 'button', class: 'link', 'data-cancel-order': o.id }, 'cancel'));
        }
        const limits = [
          o.max_price_per_kw != null ? `≤ ${fmtPrice(o.max_price_per_kw)} per kW` : null,
          o.max_price_per_day != null ? `≤ ${fmtPrice(o.max_price_per_day)} per machine` : null,
        ].filter(Boolean).join(' · ');
        const power = o.pl_w != null ? `${o.pl_w} W per GPU` : `${num(o.pl_fraction * 100, 0, 1)} % of each range`;
        const facts = el(
          'dl',
          { class: 'facts' },
          fact('Asks', `${o.count} × ${o.models.length ? o.models.map(shortModel).join(' or ') : 'any model'}${o.min_gpus > 1 ? `, ≥ ${o.min_gpus} GPUs` : ''}`),
          fact('Power', power),
          fact('Limits', limits || '–', 'CLORE per day'),
          fact('Spent', `${fmtAmount(o.spent)}${o.budget != null ? ` of ${fmtAmount(o.budget)}` : ''} CLORE`, o.budget != null ? 'Charged so far, of the budget' : 'Charged so far (no budget)'),
          fact('Image', o.image, o.image),
          fact('Expires', fmtDateTime(o.expires_at), `Placed ${fmtDateTime(o.created_at)}`),
        );
        const rows = o.machines.map((h) => el(
          'tr',
          { 'data-held-machine': h.machine, 'data-held-bid': h.bid },
          el('td', null, el('button', { type: 'button', class: 'link', 'data-select-machine': h.machine, title: 'Show this machine' }, `#${h.machine}`)),
          el('td', null, `#${h.bid}`),
          el('td', { class: 'num' }, fmtPrice(h.price)),
          el('td', null, h.winning ? badge('winning', 'winner') : badge('outbid', 'warn', 'It re-prices or moves at the next boundary')),
        ));
        const table = rows.length
          ? el(
            'table',
            { class: 'data compact' },
            el('thead', null, el('tr', null, el('th', null, 'Machine'), el('th', null, 'Bid'), el('th', { class: 'num', title: 'CLORE per day' }, 'Price'), el('th', null, 'Now'))),
            el('tbody', null, ...rows),
          )
          : null;
        return el(
          'article',
          { class: 'order', 'data-order': o.id, 'data-state': o.state },
          header,
          facts,
          o.note ? el('p', { class: 'order-note' }, o.note) : null,
          table,
        );
      });
    $('orders').replaceChildren(...cards);
    $('orders-empty').hidden = cards.length !== 0;
  }

  // The model choices of the order form: every GPU model on the market.
  function renderOrderModels() {
    const models = [...new Set(state.machines.flatMap((m) => m.gpus.map((g) => g.model)))].sort();
    if (!changed('order-models', models)) return;
    const select = $('order-model');
    const chosen = select.value;
    select.replaceChildren(el('option', { value: '' }, 'any'), ...models.map((m) => el('option', { value: m }, shortModel(m))));
    if (models.includes(chosen)) select.value = chosen;
  }

  $('order-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const message = $('order-message');
    const fail = (text) => {
      message.className = 'error-text';
      message.textContent = text;
    };
    const count = $('order-count').value.trim();
    const pl = $('order-pl').value.trim();
    const perKw = $('order-max-kw').value.trim();
    if (!/^\d+$/.test(count)) return fail('machines: a whole number');
    if (!/^\d+$/.test(pl)) return fail('power limit: whole watts per GPU');
    if (!/^\d+(\.\d{1,8})?$/.test(perKw)) return fail('max price per kW: CLORE/day with at most 8 decimals');
    const model = $('order-model').value;
    const fields = [
      `"count": ${count}`,
      `"pl_w": ${pl}`,
      // The price goes out as the literal the user typed, so it is never rounded.
      `"max_price_per_kw": ${perKw}`,
      `"image": ${JSON.stringify($('order-image').value.trim())}`,
    ];
    if (model) fields.push(`"models": ${JSON.stringify([model])}`);
    try {
      const order = await api('/api/v1/orders', { method: 'POST', auth: true, body: `{${fields.join(', ')}}` });
      message.className = '';
      message.textContent = `Order #${order.id} placed: the market bids for it from the next boundary.`;
    } catch (e) {
      fail(e.message);
    }
    refresh();
  });

  $('orders').addEventListener('click', async (ev) => {
    const select_ = ev.target.closest('[data-select-machine]');
    if (select_) {
      select(Number(select_.dataset.selectMachine));
      $('machine').scrollIntoView({ behavior: 'smooth', block: 'start' });
      return;
    }
    const button = ev.target.closest('button[data-cancel-order]');
    if (!button) return;
    const id = button.dataset.cancelOrder;
    if (!window.confirm(`Cancel standing order #${id} and every bid it holds?`)) return;
    const message = $('order-message');
    try {
      await api(`/api/v1/orders/${id}`, { method: 'DELETE', auth: true });
      message.className = '';
      message.textContent = `Order #${id} cancelled.`;
    } catch (e) {
      message.className = 'error-text';
      message.textContent = e.message;
    }
    refresh();
  });

  function renderLedger(ledger, me) {
    // The server pages the ledger newest first; the dashboard shows the first page.
    setText('ledger-meta', ledger.length === LEDGER_ROWS ? `newest ${LEDGER_ROWS}` : '');
    const party = (id) => (id == null ? 'outside the market' : id === me ? 'you' : `account ${id}`);
    const rows = ledger.map((t) => {
      const incoming = t.to === me;
      return el(
        'tr',
        { title: t.id },
        el('td', null, fmtDateTime(t.at)),
        el('td', null, t.kind),
        el('td', { class: `num ${incoming ? 'credit' : 'debit'}` }, `${incoming ? '+' : '−'}${fmtAmount(t.amount)}`),
        el('td', null, incoming ? `from ${party(t.from)}` : `to ${party(t.to)}`),
        el('td', null, t.bid != null ? `#${t.bid}` : ''),
        el('td', null, t.machine != null ? `#${t.machine}` : ''),
        el('td', { class: 'num' }, t.interval ?? ''),
      );
    });
    fillTable('ledger', rows, 'ledger-empty');
  }

  // The caller's withdrawals (an operator sees everyone's, with pay and reject buttons).
  function renderWithdrawals(list, isOperator) {
    if (!changed('withdrawals', list, isOperator)) return;
    const pending = list.filter((w) => w.state === 'pending').length;
    setText('withdrawals-meta', pending ? `${pending} pending` : '');
    const rows = [...list]
      .sort((a, b) => b.id - a.id)
      .map((w) => {
        const actions = el('td');
        if (isOperator && w.state === 'pending') {
          actions.append(
            el('button', { type: 'button', class: 'link', 'data-withdrawal': w.id, 'data-outcome': 'paid' }, 'mark paid'),
            ' ',
            el('button', { type: 'button', class: 'link', 'data-withdrawal': w.id, 'data-outcome': 'rejected' }, 'reject'),
          );
        }
        const note = w.reference || w.reason || '';
        return el(
          'tr',
          { 'data-withdrawal-row': w.id },
          el('td', null, `#${w.id}`),
          el('td', null, `${w.account}`),
          el('td', null, fmtDateTime(w.requested_at)),
          el('td', { class: 'num' }, fmtAmount(w.amount)),
          el('td', { class: 'image', title: w.destination }, w.destination),
          el('td', { title: note || null }, badge(w.state, w.state === 'rejected' ? 'bad' : w.state === 'paid' ? 'winner' : '')),
          actions,
        );
      });
    fillTable('withdrawals', rows, 'withdrawals-empty');
  }

  $('withdraw-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const message = $('withdraw-message');
    const amount = $('withdraw-amount').value.trim();
    if (!/^\d+(\.\d{1,8})?$/.test(amount)) {
      message.className = 'error-text';
      message.textContent = 'amount: a number of CLORE with at most 8 decimals';
      return;
    }
    const destination = JSON.stringify($('withdraw-destination').value);
    try {
      // The amount goes out as the literal the user typed, so it is never rounded.
      await api('/api/v1/withdrawals', { method: 'POST', auth: true, body: `{"amount": ${amount}, "destination": ${destination}}` });
      message.className = '';
      message.textContent = 'Requested: the amount waits for the operator.';
      $('withdraw-amount').value = '';
    } catch (e) {
      message.className = 'error-text';
      message.textContent = e.message;
    }
    refresh();
  });

  $('withdrawals').addEventListener('click', async (ev) => {
    const button = ev.target.closest('button[data-withdrawal]');
    if (!button) return;
    const outcome = button.dataset.outcome;
    const note = window.prompt(outcome === 'paid' ? 'Payment reference (e.g. transaction id)' : 'Reason for the rejection');
    if (!note) return;
    const body = outcome === 'paid' ? { reference: note } : { reason: note };
    try {
      await api(`/api/v1/withdrawals/${button.dataset.withdrawal}/${outcome}`, { method: 'POST', auth: true, body });
    } catch (e) {
      $('withdraw-message').className = 'error-text';
      $('withdraw-message').textContent = e.message;
    }
    refresh();
  });

  // ---------------------------------------------------------------- operator

  function renderPlugins(p) {
    const s = p.active_strategy;
    const a = p.answering_strategy;
    // Say what actually answers: a quarantined active version is skipped down the chain.
    const answering = a && s && a.digest !== s.digest ? ` — answering: ${a.name} ${a.version} (the active version is quarantined)` : '';
    setText('active-strategy', (s ? `${s.name} ${s.version}` : 'built-in') + answering);
    $('active-strategy').title = (p.strategy_chain || [])
      .map((l) => `${l.role}: ${l.name} ${l.version}${l.quarantined ? ' (quarantined)' : ''}`)
      .join(' → ');
    setText('active-validators', p.validators.length ? p.validators.map((v) => `${v.name} ${v.version}`).join(', ') : 'none');
    if (!changed('plugins', p.versions)) return;
    const rows = [...p.versions]
      .sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name) || b.installed_at - a.installed_at)
      .map((v) => {
        const faults = Object.entries(v.faults || {});
        const faultCount = faults.reduce((n, [, c]) => n + c, 0);
        const roleCell = el('td', null, v.role ? badge(v.role, v.role === 'strategy' || v.role === 'validator' ? 'winner' : '') : badge('stored', 'muted'));
        if (v.quarantined) roleCell.append(badge('quarantined', 'bad'));
        const active = v.role === 'strategy' || v.role === 'validator';
        const actions = el('td', { class: 'actions' },
          el('button', { type: 'button', class: 'activate', 'data-action': 'activate', disabled: active, title: active ? 'Already active' : `Make this ${v.kind} active` }, 'Activate'));
        if (v.role === 'validator') {
          actions.append(el('button', { type: 'button', class: 'rollback', 'data-action': 'rollback-validator', 'data-name': v.name, title: 'Swap with its previous version' }, 'Roll back'));
        }
        if (v.kind === 'strategy') {
          actions.append(
            el('button', { type: 'button', 'data-action': 'shadow', disabled: active, title: 'Run beside the active strategy at every boundary, recording how its picks differ' }, 'Shadow'),
            el('button', { type: 'button', 'data-action': 'backtest', title: 'Run over the recorded history and compare with what the market did' }, 'Backtest'),
          );
        }
        return el(
          'tr',
          { 'data-digest': v.digest, class: active ? 'active' : null },
          el('td', null, el('strong', null, v.name), ` ${v.version}`),
          el('td', null, v.kind),
          roleCell,
          el('td', { class: 'digest', title: v.digest }, shortDigest(v.digest)),
          el('td', { class: 'config', title: v.config }, v.config || '–'),
          el('td', { class: 'num' }, v.calls.toLocaleString('en-US')),
          el('td', { class: `num faults${faultCount ? ' bad-text' : ''}`, title: [...faults.map(([k, c]) => `${k}: ${c}`), v.last_fault ? `latest: ${v.last_fault}` : null].filter(Boolean).join('\n') || 'not loaded' }, String(faultCount)),
          el('td', null, fmtDateTime(v.installed_at)),
          actions,
        );
      });
    fillTable('plugins', rows, 'plugins-empty');
  }

  // Runs one plugin action with the panel's buttons disabled, then redraws the panel.
  async function operatorAction(path, done, body = null) {
    const message = $('operator-message');
    for (const b of $('operator').querySelectorAll('button')) b.disabled = true;
    message.className = '';
    message.textContent = 'Working…';
    try {
      const result = await api(path, { method: 'POST', auth: true, body });
      message.textContent = done(result);
    } catch (e) {
      message.className = 'error-text';
      message.textContent = e.message;
    }
    $('rollback-strategy').disabled = false;
    lastRendered.delete('plugins'); // the rows' buttons come back with the next list
    refresh();
  }

  const strategyName = (r) => (r.active_strategy ? `${r.active_strategy.name} ${r.active_strategy.version}` : 'the built-in strategy');

  $('plugins').addEventListener('click', (ev) => {
    const button = ev.target.closest('button[data-action]');
    if (!button) return;
    const digest = button.closest('[data-digest]').dataset.digest;
    if (button.dataset.action === 'activate') {
      operatorAction(`/api/v1/plugins/${encodeURIComponent(digest)}/activate`, (r) => `Activated. Strategy: ${strategyName(r)}.`);
    } else if (button.dataset.action === 'shadow') {
      operatorAction(`/api/v1/plugins/${encodeURIComponent(digest)}/shadow`, () => 'Runs in shadow from the next boundary.');
    } else if (button.dataset.action === 'backtest') {
      operatorAction('/api/v1/backtests', (job) => `Backtest ${job.id} started.`, { strategy: digest });
    } else {
      const name = button.dataset.name;
      operatorAction(`/api/v1/plugins/validators/${encodeURIComponent(name)}/rollback`, () => `Rolled back validator ${name}.`);
    }
  });

  function renderShadow(view) {
    setText('shadow-meta', view.shadow ? `${shortDigest(view.shadow)} against ${view.active.name} ${view.active.version}` : 'none');
    $('shadow-meta').title = view.shadow || '';
    $('promote-shadow').disabled = !view.shadow;
    $('stop-shadow').disabled = !view.shadow;
    if (!changed('shadow', view)) return;
    const rows = [...view.intervals].reverse().slice(0, 20).map((d) => el(
      'tr',
      { 'data-shadow-interval': d.interval },
      el('td', { class: 'num' }, String(d.interval)),
      el('td', { class: 'num', title: d.winners.map(([m, l, s]) => `machine ${m}: ${l ?? 'idle'} → ${s ?? 'idle'}`).join('\n') }, `${d.changed}/${d.machines}`),
      el('td', { class: 'num' }, `${d.switches_live} → ${d.switches_shadow}`),
      el('td', { class: 'num' }, fmtAmount(d.gross_live)),
      el('td', { class: 'num' }, fmtAmount(d.gross_shadow)),
      el('td', { class: `num ${d.revenue_delta < 0 ? 'bad-text' : ''}` }, fmtAmount(d.revenue_delta)),
    ));
    fillTable('shadow', rows, 'shadow-empty');
  }

  $('promote-shadow').addEventListener('click', () => {
    operatorAction('/api/v1/plugins/shadow/promote', (r) => `Promoted. Strategy: ${strategyName(r)}.`);
  });
  $('stop-shadow').addEventListener('click', async () => {
    try {
      await api('/api/v1/plugins/shadow', { method: 'DELETE', auth: true });
      setText('operator-message', 'No strategy runs in shadow.');
    } catch (e) {
      setText('operator-message', e.message);
    }
    refresh();
  });

  // The newest backtest: its progress, then revenue over time, live against the candidate.
  async function refreshBacktest(key) {
    const jobs = await api('/api/v1/backtests', { auth: true, key });
    if (!jobs.length) return;
    const job = jobs[0].status === 'done' ? await api(`/api/v1/backtests/${jobs[0].id}`, { auth: true, key }) : jobs[0];
    if (state.key !== key || !changed('backtest', job.id, job.status, job.done)) return;
    const name = job.report && job.report.strategy ? `${job.report.strategy.name} ${job.report.strategy.version}` : `backtest ${job.id}`;
    if (job.status !== 'done') {
      setText('backtest-meta', `${name}: ${job.status} ${job.done}/${job.total} intervals${job.error ? ` — ${job.error}` : ''}`);
      return;
    }
    const r = job.report;
    setText('backtest-meta', `${name}: ${r.total.changed} of ${r.total.machines} winners change · gross ${fmtAmount(r.total.revenue.live_gross)} → ${fmtAmount(r.total.revenue.candidate_gross)} CLORE${r.stopped ? ` (${r.stopped})` : ''}`);
    const times = r.intervals.map((i) => i.start);
    lineChart($('chart-backtest'), times, [
      { label: 'live', color: PALETTE[0], points: r.intervals.map((i) => [i.start, i.revenue.live_gross]) },
      { label: 'candidate', color: PALETTE[1], dashed: true, points: r.intervals.map((i) => [i.start, i.revenue.candidate_gross]) },
    ], 'CLORE');
  }

  $('rollback-strategy').addEventListener('click', () => {
    operatorAction('/api/v1/plugins/strategy/rollback', (r) => `Rolled back. Strategy: ${strategyName(r)}.`);
  });

  // ---------------------------------------------------------------- sign in / out

  $('sign-in-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = $('api-key').value.trim();
    const error = $('sign-in-error');
    error.hidden = true;
    if (!key) {
      error.hidden = false;
      error.textContent = 'Paste an API key first.';
      return;
    }
    try {
      const account = await api('/api/v1/accounts/me', { auth: true, key });
      localStorage.setItem(KEY_STORAGE, key);
      state.key = key;
      state.account = account;
      $('api-key').value = '';
      refresh();
    } catch (e) {
      error.hidden = false;
      error.textContent = e instanceof ApiError && e.status === 401 ? 'This key was refused.' : e.message;
    }
  });

  function signOut(reason) {
    localStorage.removeItem(KEY_STORAGE);
    state.key = null;
    state.account = null;
    state.myBids = null;
    state.orders = null;
    for (const key of ['my-bids', 'orders', 'ledger', 'plugins', 'book', 'withdrawals', 'shadow', 'backtest']) lastRendered.delete(key);
    setText('order-message', '');
    $('who').hidden = true;
    $('account').hidden = true;
    $('operator').hidden = true;
    $('sign-in-form').hidden = false;
    setText('operator-message', '');
    $('sign-in-error').hidden = !reason;
    setText('sign-in-error', reason || '');
  }

  $('sign-out').addEventListener('click', () => {
    signOut();
    renderMachine(); // drop the "yours" marks from the order book
  });

  refresh();
})();
