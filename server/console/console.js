// Sluice web console: a SQL editor, the catalog and running queries, and for
// the selected query its live results (websocket), a chart and its
// operators' figures. Plain JS over the public HTTP and websocket API (see
// docs/api.md); no build step.
'use strict';

(() => {
  const MAX_ROWS = 500;         // result rows kept for the table and the chart
  const MAX_HISTORY = 2000;    // rows kept for the chart over arrival time
  const MAX_SERIES = 10;        // chart lines at most (the first keys seen)
  const LIST_REFRESH_MS = 1000;
  const PLAN_REFRESH_MS = 2000;
  const RECONNECT_MS = 1000;
  const CHART_HEIGHT = 220;
  const TOKEN_KEY = 'sluice.token';
  const ARRIVAL = '';           // the chart's x option "arrival time"
  const ALL_ROWS = '';          // the chart's series option "all rows, summed"
  const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed',
    '#0891b2', '#db2777', '#65a30d', '#475569', '#ea580c'];

  const $ = (id) => document.getElementById(id);
  const editor = $('sql-editor');

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    needToken: false,
    queries: new Map(),     // id -> report from GET /v1/queries
    rates: new Map(),       // id -> {at, rowsIn, rowsOut, inPerSec, outPerSec}
    queryItems: new Map(),  // id -> its <li> in the side panel
    // The selected query, its subscription and what it has shown.
    selected: null, subscribePath: null, socket: null,
    ended: false,           // no more frames will come (end, error, cancel)
    columns: [], updating: false,
    rows: [],               // [{values, key, arrival}], oldest first
    history: [],            // [{values, arrival}] of every row added, for the chart over arrival time
    cancelled: new Set(),   // queries cancelled here (they leave the list)
    received: 0,            // rows frames' rows, ops included
    nextSeq: 0, watermark: null,
    renderPending: false, chart: null, chartKey: '',
    splitChosen: false,     // the user picked the chart's series column
    errorMark: null,        // {line, start, end} of the last SQL error
  };

  // ---- HTTP -------------------------------------------------------------

  /** An Error with the fields of the API's `{"error": {code, message, line?, column?}}`. */
  function apiError(status, body) {
    const { code = 'error', message = `HTTP ${status}`, line, column } = (body && body.error) || {};
    return Object.assign(new Error(message), { status, code, line, column });
  }

  async function api(method, path, body) {
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      setConnection('down', 'server unreachable');
      throw apiError(0, { error: { code: 'network', message: `server unreachable (${error.message})` } });
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = { error: { code: 'internal', message: text } }; }
    if (response.status === 401) askForToken();
    if (!response.ok) throw apiError(response.status, data);
    setConnection('up', location.host);
    return data;
  }

  /** A websocket URL for an API path: same origin, the token as `?token=`. */
  function socketUrl(path, fromSeq) {
    const url = new URL(path, location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (fromSeq) url.searchParams.set('from_seq', String(fromSeq));
    if (state.token) url.searchParams.set('token', state.token);
    return url.href;
  }

  // ---- Token and connection ----------------------------------------------

  function askForToken() {
    state.needToken = true;
    $('token-bar').hidden = false;
    setConnection('down', state.token ? 'token refused' : 'token needed');
    $('token-input').focus();
  }

  function saveToken(event) {
    event.preventDefault();
    state.token = $('token-input').value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    state.needToken = false;
    $('token-bar').hidden = true;
    refreshLists();
    if (state.selected && !state.socket && !state.ended) connect(state.nextSeq);
  }

  function setConnection(kind, text) {
    Object.assign($('connection'), { className: `connection ${kind}`, textContent: text });
  }

  // ---- Formatting ----------------------------------------------------------

  function el(tag, attributes = {}, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === 'className') element.className = value;
      else if (name === 'text') element.textContent = value;
      else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
      else element.setAttribute(name, value);
    }
    element.append(...children);
    return element;
  }

  const integer = (n) => (n == null ? '–' : Number(n).toLocaleString('en-US'));
  const rate = (n) => (n == null ? '–' : n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US'));

  const bytes = (n) => (n == null ? '–' : n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);

  /** The time of day of a watermark ("2016-12-06T08:58:37.318" -> "08:58:37.318"). */
  const timeOfDay = (ts) => (ts ? String(ts).replace(/^.*T/, '') : 'none yet');

  function cellText(value) {
    if (value === null || value === undefined) return 'NULL';
    if (typeof value === 'number' && !Number.isInteger(value)) return String(Number(value.toPrecision(6)));
    if (typeof value === 'object') return JSON.stringify(value);
    return String(value);
  }

  const isNumericType = (type) => /INT|DOUBLE|FLOAT|REAL|DECIMAL|NUMERIC/i.test(type);
  const isTimeType = (type) => /TIMESTAMP|DATE/i.test(type);
  const isSmallInt = (type) => /^(TINYINT|SMALLINT|INT|INTEGER)$/i.test(type);

  /** Seconds since the epoch; zone-less timestamps are taken as UTC. */
  function timeValue(value) {
    if (value == null) return null;
    const text = String(value);
    const zoned = /(Z|[+-]\d\d:?\d\d)$/.test(text) || !text.includes('T');
    const ms = Date.parse(zoned ? text : `${text}Z`);
    return Number.isNaN(ms) ? null : ms / 1000;
  }

  // ---- Side panel: streams, tables, queries ---------------------------------

  async function refreshLists() {
    if (state.needToken) return;
    const [streams, tables, queries] = await Promise.allSettled([
      api('GET', '/v1/streams'),
      api('POST', '/v1/sql', { sql: 'SHOW TABLES' }),
      api('GET', '/v1/queries'),
    ]);
    if (streams.status === 'fulfilled') renderStreams(streams.value);
    if (tables.status === 'fulfilled') renderTables(tables.value.rows || []);
    if (queries.status === 'fulfilled') renderQueries(queries.value);
  }

  function renderStreams(streams) {
    const list = $('streams');
    list.replaceChildren(...streams.map((stream) => el('li', {
      className: 'item', 'data-testid': 'stream-item', 'data-name': stream.name,
      title: [...stream.columns.map((c) => `${c.name} ${c.type}`), stream.watermark && `watermark ${stream.watermark}`].filter(Boolean).join('\n'),
    },
    el('div', { className: 'item-line' },
      el('span', { className: 'item-name', text: stream.name }),
      el('span', { className: `badge ${stream.status}`, text: stream.status })),
    el('div', { className: 'item-meta', text: `${stream.connector} · ${stream.columns.length} columns${stream.bounded ? ' · bounded' : ''}` }))));
    if (!streams.length) list.replaceChildren(el('li', { className: 'empty', text: 'none' }));
  }

  function renderTables(rows) {
    const list = $('tables');
    list.replaceChildren(...rows.map(([name, count, key]) =>
      el('li', { className: 'item', 'data-testid': 'table-item', 'data-name': name },
        el('div', { className: 'item-line' }, el('span', { className: 'item-name', text: name })),
        el('div', { className: 'item-meta', text: `${integer(count)} rows${key ? ` · key ${key}` : ''}` }))));
    if (!rows.length) list.replaceChildren(el('li', { className: 'empty', text: 'none' }));
  }

  /** Rows per second from the change of a query's counters since the last poll. */
  function updateRate(query) {
    const now = performance.now();
    const previous = state.rates.get(query.query_id);
    const next = { at: now, rowsIn: query.metrics.rows_in, rowsOut: query.metrics.rows_out, inPerSec: null, outPerSec: null };
    if (previous) {
      const seconds = (now - previous.at) / 1000;
      next.inPerSec = seconds > 0 ? (next.rowsIn - previous.rowsIn) / seconds : previous.inPerSec;
      next.outPerSec = seconds > 0 ? (next.rowsOut - previous.rowsOut) / seconds : previous.outPerSec;
    }
    state.rates.set(query.query_id, next);
    return next;
  }

  // Items are updated in place rather than rebuilt every second, so a click
  // that lands during a refresh is not lost.
  function renderQueries(queries) {
    const list = $('queries');
    const seen = new Set();
    for (const query of queries) {
      seen.add(query.query_id);
      state.queries.set(query.query_id, query);
      const speed = updateRate(query);
      if (!state.queryItems.has(query.query_id)) state.queryItems.set(query.query_id, queryItem(query.query_id));
      const item = state.queryItems.get(query.query_id);
      list.append(item); // keeps the server's order
      fillQueryItem(item, query, speed);
    }
    for (const [id, item] of state.queryItems) {
      if (seen.has(id)) continue;
      item.remove();
      for (const map of [state.queryItems, state.queries, state.rates]) map.delete(id);
    }
    list.querySelector('.empty')?.remove();
    if (!queries.length) list.append(el('li', { className: 'empty', text: 'none running' }));
    if (state.selected) renderQueryHead();
  }

  function queryItem(id) {
    const field = (name) => el('span', { 'data-field': name, 'data-testid': `query-${name}` });
    const item = el('li', { className: 'item query-item', 'data-testid': 'query-item', 'data-query-id': id },
      el('div', { className: 'item-line' },
        el('span', { className: 'item-name', text: id }),
        el('span', { className: 'badge', 'data-field': 'status', 'data-testid': 'query-item-status' }),
        el('button', {
          className: 'small danger', type: 'button', 'data-testid': 'cancel-query', title: `Cancel ${id}`, text: 'Cancel',
          onclick: (event) => { event.stopPropagation(); cancelQuery(id); },
        })),
      el('div', { className: 'item-sql', 'data-field': 'sql' }),
      el('div', { className: 'item-figures' }, field('rate'), field('watermark'), field('late')));
    item.addEventListener('click', () => selectQuery(id));
    return item;
  }

  function fillQueryItem(item, query, speed) {
    const set = (name, text, title) => {
      const field = item.querySelector(`[data-field="${name}"]`);
      field.textContent = text;
      if (title !== undefined) field.title = title;
    };
    const status = item.querySelector('[data-field="status"]');
    status.className = `badge ${query.status}`;
    status.textContent = query.status;
    set('sql', query.sql.replace(/\s+/g, ' '), query.sql);
    set('rate', `${rate(speed.outPerSec)} rows/s`, `in ${rate(speed.inPerSec)}/s, out ${rate(speed.outPerSec)}/s`);
    set('watermark', `wm ${timeOfDay(query.metrics.watermark)}`, `watermark ${query.metrics.watermark || 'none yet'}`);
    set('late', `late ${integer(query.metrics.late_rows_dropped)}`, 'late rows dropped');
    item.classList.toggle('selected', query.query_id === state.selected);
  }

  async function cancelQuery(id) {
    try {
      await api('DELETE', `/v1/queries/${encodeURIComponent(id)}`);
      state.cancelled.add(id);
      setRunStatus(`cancelled ${id}`);
      if (id === state.selected) {
        state.ended = true;
        closeSocket();
        setStreamState('cancelled');
      }
    } catch (error) {
      setRunStatus(`cancel ${id}: ${error.message}`, true);
    }
    refreshLists();
  }

  // ---- Editor ----------------------------------------------------------------

  async function run() {
    const sql = editor.value;
    if (!sql.trim()) return;
    clearError();
    setRunStatus('running…');
    $('run').disabled = true;
    try {
      const result = await api('POST', '/v1/sql', { sql });
      showResults(result.results || [result]);
    } catch (error) {
      setRunStatus('');
      showError(error);
    } finally {
      $('run').disabled = false;
    }
  }

  /** A statement's results: a continuous query is opened, rows are shown as a table. */
  function showResults(results) {
    const box = $('statement-result');
    box.replaceChildren();
    let started = null;
    for (const result of results) {
      if (result.query_id) started = result;
      else if (result.columns && result.rows) box.append(staticTable(result));
      else box.append(el('div', { className: 'statement-note', text: [result.status, result.name].filter(Boolean).join(' ') }));
    }
    box.hidden = !box.childElementCount;
    if (started) {
      setRunStatus(`started ${started.query_id}`);
      selectQuery(started.query_id, started);
      refreshLists();
    } else {
      setRunStatus('done');
    }
  }

  function staticTable(result) {
    const head = el('tr', {}, ...result.columns.map((column) => el('th', { text: column.name })));
    const body = result.rows.map((row) => el('tr', {}, ...row.map((value) => el('td', { text: cellText(value) }))));
    return el('div', { className: 'table-wrap' }, el('table', { className: 'grid' }, el('thead', {}, head), el('tbody', {}, ...body)));
  }

  function setRunStatus(text, isError = false) {
    Object.assign($('run-status'), { textContent: text, className: `run-status${isError ? ' error' : ''}` });
  }

  function showError(error) {
    const where = error.line ? ` (line ${error.line}, column ${error.column})` : '';
    $('sql-error-message').textContent = `${error.code}: ${error.message}${where}`;
    $('sql-error').hidden = false;
    $('statement-result').hidden = true;
    $('error-marker').textContent = '';
    if (error.line && error.column) markError(error.line, error.column);
  }

  /**
   * Marks a SQL error in the editor: selects the token at line/column
   * (1-based, as the server reports them), highlights it in the backdrop
   * behind the textarea and its line in the gutter, and prints the line
   * with a caret under it.
   */
  function markError(line, column) {
    const lines = editor.value.split('\n');
    const text = lines[line - 1] ?? '';
    const lineStart = lines.slice(0, line - 1).reduce((sum, part) => sum + part.length + 1, 0);
    const start = lineStart + Math.min(column - 1, text.length);
    const token = text.slice(column - 1).match(/^\w+/);
    // The word there, or one character (none past the end of the line).
    const end = start + (token ? token[0].length : Number(start < lineStart + text.length));
    state.errorMark = { line, start, end };
    editor.focus();
    editor.setSelectionRange(start, end);
    const number = String(line);
    // Tabs are kept so the caret lines up however wide they are drawn.
    const pad = text.slice(0, column - 1).replace(/[^\t]/g, ' ');
    $('error-marker').textContent = `${number} | ${text}\n${' '.repeat(number.length)} | ${pad}^`;
    renderEditorDecor();
  }

  function clearError() {
    $('sql-error').hidden = true;
    state.errorMark = null;
    renderEditorDecor();
  }

  const escapeHtml = (text) => text.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' }[c]));

  /** Line numbers and the error highlight, which follow the textarea's text and scroll. */
  function renderEditorDecor() {
    const text = editor.value;
    const mark = state.errorMark;
    $('gutter').innerHTML = text.split('\n').map((_, i) => (mark && mark.line === i + 1
      ? `<div class="error-line" data-testid="error-line">${i + 1}</div>` : `<div>${i + 1}</div>`)).join('');
    const backdrop = $('editor-backdrop');
    // The trailing newline keeps the backdrop as tall as the textarea's text.
    backdrop.innerHTML = mark
      ? `${escapeHtml(text.slice(0, mark.start))}<mark data-testid="error-highlight">${escapeHtml(text.slice(mark.start, mark.end) || ' ')}</mark>${escapeHtml(text.slice(mark.end))}\n`
      : `${escapeHtml(text)}\n`;
    syncEditorScroll();
  }

  function syncEditorScroll() {
    $('gutter').scrollTop = editor.scrollTop;
    const backdrop = $('editor-backdrop');
    backdrop.scrollTop = editor.scrollTop;
    backdrop.scrollLeft = editor.scrollLeft;
  }

  function onEditorKey(event) {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  }

  function onEditorInput() {
    state.errorMark = null; // the position no longer points at the same text
    renderEditorDecor();
  }

  // ---- The selected query: subscription ---------------------------------------

  /** Opens a query: its header, a new subscription from row 0, its operators. */
  function selectQuery(id, started) {
    if (state.selected === id && state.socket) return;
    closeSocket();
    Object.assign(state, {
      selected: id, ended: false, columns: started ? started.columns : [], updating: false,
      rows: [], history: [], received: 0, splitChosen: false, nextSeq: 0, watermark: null,
      subscribePath: (started && started.subscribe) || `/v1/queries/${encodeURIComponent(id)}/ws`,
    });
    if (started && !state.queries.has(id)) state.queries.set(id, { query_id: id, sql: editor.value, status: 'running', metrics: {} });
    $('query-view').hidden = false;
    $('notices').replaceChildren();
    $('operators').tBodies[0].replaceChildren();
    for (const [itemId, item] of state.queryItems) item.classList.toggle('selected', itemId === id);
    renderQueryHead();
    setupChartControls();
    scheduleRender();
    connect(0);
    refreshPlan();
  }

  function connect(fromSeq) {
    const socket = new WebSocket(socketUrl(state.subscribePath, fromSeq));
    state.socket = socket;
    setStreamState('connecting');
    // Frames of a socket replaced by a newer one are ignored.
    socket.onmessage = (event) => {
      if (state.socket === socket && typeof event.data === 'string') onFrame(JSON.parse(event.data));
    };
    socket.onclose = () => {
      if (state.socket !== socket) return;
      state.socket = null;
      if (state.ended) return;
      // Dropped while the query runs: pick up where we were.
      setStreamState('reconnecting');
      setTimeout(() => {
        const query = state.queries.get(state.selected);
        if (!state.socket && !state.ended && query && query.status === 'running' && !state.needToken) connect(state.nextSeq);
        else if (!state.socket) setStreamState('disconnected');
      }, RECONNECT_MS);
    };
  }

  function closeSocket() {
    const socket = state.socket;
    state.socket = null;
    if (socket) socket.close();
  }

  function onFrame(frame) {
    switch (frame.type) {
      case 'schema':
        // A reconnect (from_seq > 0) keeps the rows and chart choices we have.
        if (state.nextSeq) return setStreamState('live');
        Object.assign(state, { columns: frame.columns, updating: frame.updating, rows: [], history: [] });
        setupChartControls();
        for (const warning of frame.warnings || []) notice(warning, 'warning');
        return setStreamState('live');
      case 'rows':
        applyRows(frame.rows, frame.ops);
        state.nextSeq = frame.next_seq;
        return scheduleRender();
      case 'snapshot':
        // A materialized view's current result; its changes from next_seq follow.
        state.rows = [];
        applyRows(frame.rows);
        state.nextSeq = frame.next_seq;
        return scheduleRender();
      case 'progress':
      case 'heartbeat':
        state.watermark = frame.watermark;
        return setStreamState('live');
      case 'gap':
        state.nextSeq = frame.first_available;
        return notice(frame.message, 'warning');
      case 'warning':
        return notice(frame.message, 'warning');
      case 'end':
        state.ended = true;
        return setStreamState('ended');
      case 'error':
        if (frame.code === 'lagged') {
          // Cut off for reading too slowly: resume from the first row missed.
          notice(`fell behind; resuming from row ${frame.next_seq}`, 'warning');
          state.nextSeq = frame.next_seq;
          closeSocket();
          return connect(state.nextSeq);
        }
        state.ended = true;
        notice(`${frame.code}: ${frame.message}`, 'error');
        return setStreamState(frame.message === 'query cancelled' ? 'cancelled' : 'failed');
      default:
        return undefined;
    }
  }

  const rowKey = (values) => JSON.stringify(state.columns.map((column) => values[column.name]));

  /**
   * Applies a changelog frame. "+" (or no ops: an append-only result) adds a
   * row; "-" removes the newest equal row. A "-" followed by a "+" is an
   * update, so the new row takes the old one's place: a running GROUP BY
   * changes its rows in place rather than moving them. Only the newest
   * MAX_ROWS rows are kept.
   */
  function applyRows(rows, ops) {
    const arrival = Date.now();
    let slot = -1;
    rows.forEach((values, i) => {
      state.received += 1;
      const key = rowKey(values);
      if (ops && ops[i] === '-') {
        let at = state.rows.length - 1;
        while (at >= 0 && state.rows[at].key !== key) at -= 1;
        if (at >= 0) state.rows.splice(at, 1);
        slot = at;
        return;
      }
      const entry = { values, key, arrival };
      if (slot >= 0) state.rows.splice(slot, 0, entry);
      else state.rows.push(entry);
      slot = -1;
      state.history.push(entry);
    });
    if (state.rows.length > MAX_ROWS) state.rows.splice(0, state.rows.length - MAX_ROWS);
    if (state.history.length > MAX_HISTORY) state.history.splice(0, state.history.length - MAX_HISTORY);
  }

  function setStreamState(text) {
    const watermark = state.watermark ? ` · watermark ${timeOfDay(state.watermark)}` : '';
    $('stream-state').textContent = `${text}${text === 'live' ? watermark : ''}`;
    $('stream-state').dataset.state = text;
  }

  function notice(text, kind) {
    const box = $('notices');
    box.append(el('div', { className: `notice ${kind}`, 'data-testid': 'notice', text }));
    while (box.childElementCount > 5) box.firstChild.remove();
  }

  // ---- The selected query: header, table, chart ---------------------------------

  function renderQueryHead() {
    const query = state.queries.get(state.selected);
    $('query-id').textContent = state.selected;
    const status = $('query-status');
    if (!query) {
      const gone = state.cancelled.has(state.selected) ? 'cancelled' : 'gone';
      Object.assign(status, { className: `badge ${gone}`, textContent: gone });
      return;
    }
    status.className = `badge ${query.status}`;
    status.textContent = query.status;
    $('query-sql').textContent = query.sql.replace(/\s+/g, ' ');
    $('query-sql').title = query.sql;
    const metrics = query.metrics || {};
    const speed = state.rates.get(state.selected) || {};
    const figures = [
      ['rows-in', 'rows in', `${integer(metrics.rows_in)} (${rate(speed.inPerSec)}/s)`],
      ['rows-out', 'rows out', `${integer(metrics.rows_out)} (${rate(speed.outPerSec)}/s)`],
      ['watermark', 'watermark', timeOfDay(metrics.watermark)],
      ['late', 'late rows', integer(metrics.late_rows_dropped)],
      ['epochs', 'epochs', integer(metrics.epochs)],
      ['latency', 'latency p50 / p99', metrics.latency_ms ? `${metrics.latency_ms.p50.toFixed(0)} / ${metrics.latency_ms.p99.toFixed(0)} ms` : '–'],
      ['state', 'state rows', integer(metrics.state_rows)],
      ['subscribers', 'subscribers', integer(metrics.subscribers)],
      ['malformed', 'malformed', integer(metrics.malformed_records)],
    ];
    $('query-metrics').replaceChildren(...figures.map(([name, label, value]) =>
      el('div', {}, el('dt', { text: label }), el('dd', { 'data-testid': `metric-${name}`, text: value }))));
  }

  // Frames can come many times a second: draw at most once per animation frame.
  function scheduleRender() {
    if (state.renderPending) return;
    state.renderPending = true;
    requestAnimationFrame(() => {
      state.renderPending = false;
      renderResults();
      drawChart();
    });
  }

  function renderResults() {
    const table = $('results');
    table.tHead.replaceChildren(el('tr', {}, ...state.columns.map((column) =>
      el('th', { className: isNumericType(column.type) ? 'num' : '' }, column.name, el('span', { className: 'type', text: column.type })))));
    // Newest first, so fresh windows show without scrolling.
    table.tBodies[0].replaceChildren(...state.rows.slice().reverse().map(({ values }) =>
      el('tr', { 'data-testid': 'result-row' }, ...state.columns.map((column) => {
        const value = values[column.name];
        const className = value == null ? 'null' : isNumericType(column.type) ? 'num' : '';
        return el('td', { className, text: cellText(value) });
      }))));
    const kind = state.updating ? 'changelog applied' : 'append-only';
    $('results-info').textContent = `${integer(state.rows.length)} rows · ${integer(state.received)} received · ${kind}`;
    $('results-info').title = `the newest ${MAX_ROWS} rows are kept`;
  }

  /** Fills the chart's selects from the schema, with sensible defaults. */
  function setupChartControls() {
    const columns = state.columns;
    const numeric = columns.filter((column) => isNumericType(column.type));
    const times = columns.filter((column) => isTimeType(column.type));
    // An INT column is usually a key of the source (status); counts and
    // sums are BIGINT, averages DOUBLE: prefer those for y.
    const y = numeric.find((column) => !isSmallInt(column.type)) || numeric[0];
    const rank = (name) => { const i = ['window_end', 'window_start', 'ts'].indexOf(name); return i < 0 ? 3 : i; };
    times.sort((a, b) => rank(a.name) - rank(b.name));
    // One line per key (text or INT, say status) over event time, or over
    // arrival time for an updating result (a running count per key).
    const keys = columns.filter((c) => c !== y && !isTimeType(c.type) && (!isNumericType(c.type) || isSmallInt(c.type)));
    fillSelect($('chart-y'), numeric.map((column) => [column.name, column.name]), y && y.name);
    fillSelect($('chart-x'), [...times.map((column) => [column.name, column.name]), [ARRIVAL, 'arrival time']], times.length ? times[0].name : ARRIVAL);
    fillSelect($('chart-split'), [[ALL_ROWS, 'all rows (summed)'], ...columns.filter((column) => !isTimeType(column.type))
      .map((column) => [column.name, column.name])], (times.length || state.updating) && keys.length ? keys[0].name : ALL_ROWS);
  }

  function fillSelect(select, options, chosen) {
    select.replaceChildren(...options.map(([value, label]) => el('option', { value, text: label })));
    if (chosen !== undefined && chosen !== null) select.value = chosen;
    select.disabled = !options.length;
  }

  /**
   * The chart's series: per series (a value of the "series" column, or one
   * for all rows) the y values summed per x, aligned on the union of the x
   * values as uPlot wants. Over event time the points are the current
   * result (changelog applied); over arrival time, every row as it came.
   */
  function chartData() {
    const y = $('chart-y').value;
    const x = $('chart-x').value;
    const split = $('chart-split').value;
    const series = new Map();
    // Rows of an updating result that arrive together are successive
    // values of one key: over arrival time the last one counts.
    const lastWins = x === ARRIVAL && state.updating;
    let overflow = false;
    for (const row of x === ARRIVAL ? state.history : state.rows) {
      const xValue = x === ARRIVAL ? row.arrival / 1000 : timeValue(row.values[x]);
      const yValue = row.values[y];
      if (xValue == null || yValue == null || !Number.isFinite(Number(yValue))) continue;
      const label = split === ALL_ROWS ? y : cellText(row.values[split]);
      if (!series.has(label)) {
        if (series.size >= MAX_SERIES) { overflow = true; continue; }
        series.set(label, new Map());
      }
      const points = series.get(label);
      points.set(xValue, (lastWins ? 0 : points.get(xValue) || 0) + Number(yValue));
    }
    const labels = [...series.keys()].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    const xs = [...new Set([...series.values()].flatMap((points) => [...points.keys()]))].sort((a, b) => a - b);
    if (!labels.length) return { labels: [y || 'value'], data: [[], []] };
    return { overflow, labels, data: [xs, ...labels.map((label) => xs.map((value) => series.get(label).get(value) ?? null))] };
  }

  function drawChart() {
    const target = $('chart');
    if (!$('chart-y').value) {
      if (state.chart) { state.chart.destroy(); state.chart = null; state.chartKey = ''; }
      target.dataset.empty = 'no numeric column';
      return;
    }
    delete target.dataset.empty;
    const { overflow, labels, data } = chartData();
    // Too many keys for one line each (say IPs): unless the user chose
    // them, chart all rows summed instead.
    if (overflow && !state.splitChosen && $('chart-split').value !== ALL_ROWS) {
      $('chart-split').value = ALL_ROWS;
      return drawChart();
    }
    // A new set of series needs a new plot; otherwise just new data.
    const key = [$('chart-x').value, $('chart-y').value, $('chart-split').value, ...labels].join('\u0001');
    if (state.chart && state.chartKey === key) {
      state.chart.setData(data);
      return;
    }
    if (state.chart) state.chart.destroy();
    state.chart = new uPlot(chartOptions(labels), data, target);
    state.chartKey = key;
  }

  function chartOptions(labels) {
    const eventTime = $('chart-x').value !== ARRIVAL;
    const options = {
      width: Math.max(300, $('chart').clientWidth),
      height: CHART_HEIGHT,
      scales: { x: { time: true } },
      series: [
        { label: eventTime ? $('chart-x').value : 'arrival' },
        ...labels.map((label, i) => ({
          label, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true, points: { size: 5 },
        })),
      ],
      axes: [{ stroke: '#64748b', grid: { stroke: '#e2e8f0' } }, { stroke: '#64748b', grid: { stroke: '#e2e8f0' }, size: 60 }],
      legend: { live: true },
    };
    // Event times carry no zone (they were read as UTC): show them as written.
    if (eventTime) options.tzDate = (seconds) => uPlot.tzDate(new Date(seconds * 1000), 'Etc/UTC');
    return options;
  }

  /** Points drawn on the chart (non-null y values of every series), for tests. */
  function chartPoints() {
    if (!state.chart) return 0;
    return state.chart.data.slice(1).reduce((sum, values) => sum + values.filter((value) => value != null).length, 0);
  }

  // ---- The selected query: operators -----------------------------------------

  async function refreshPlan() {
    const id = state.selected;
    if (!id || state.needToken || !state.queries.has(id)) return;
    try {
      const plan = await api('GET', `/v1/queries/${encodeURIComponent(id)}/plan`);
      if (id === state.selected) renderOperators(plan);
    } catch (error) {
      if (id === state.selected) $('operators-info').textContent = error.message;
    }
  }

  /** The operators from the root down, each indented under the one it feeds. */
  function operatorsInOrder(plan) {
    const byNode = new Map(plan.operators.map((operator) => [operator.node, operator]));
    const ordered = [];
    const visit = (node, depth) => {
      const operator = byNode.get(node);
      if (!operator || ordered.some((entry) => entry.operator === operator)) return;
      ordered.push({ operator, depth });
      for (const input of operator.inputs) visit(input, depth + 1);
    };
    visit(plan.root, 0);
    for (const operator of plan.operators) visit(operator.node, 0); // any not under the root
    return ordered;
  }

  function renderOperators(plan) {
    const headings = ['operator', 'rows in', 'rows out', 'batches in / out', 'time', 'share', 'watermark out', 'state', 'oldest open window'];
    const table = $('operators');
    table.tHead.replaceChildren(el('tr', {}, ...headings.map((text) => el('th', { text, className: /rows|batches|time|state/.test(text) ? 'num' : '' }))));
    table.tBodies[0].replaceChildren(...operatorsInOrder(plan).map(({ operator, depth }) => {
      const share = Math.round((operator.busy_share || 0) * 100);
      const stateText = operator.state_rows == null ? '–' : `${integer(operator.state_rows)} rows, ${bytes(operator.state_bytes)}`;
      const waits = operator.input_states.filter((input) => input.state !== 'active').map((input) => input.state).join(', ');
      return el('tr', { 'data-testid': 'operator-row', 'data-node': operator.node },
        el('td', { className: 'operator-name', style: `padding-left: ${0.6 + depth * 1.1}rem`, title: `node ${operator.node}` },
          operator.operator, waits ? el('span', { className: 'muted', text: ` (inputs ${waits})` }) : ''),
        el('td', { className: 'num', 'data-testid': 'operator-rows-in', text: integer(operator.rows_in) }),
        el('td', { className: 'num', 'data-testid': 'operator-rows-out', text: integer(operator.rows_out) }),
        el('td', { className: 'num', text: `${integer(operator.batches_in)} / ${integer(operator.batches_out)}` }),
        el('td', { className: 'num', text: `${operator.busy_ms.toFixed(1)} ms` }),
        el('td', {}, el('div', { className: 'share' }, el('div', { className: 'share-bar', style: `width: ${share}%` }), el('span', { text: `${share}%` }))),
        el('td', { text: timeOfDay(operator.watermark_out) }),
        el('td', { className: 'num', text: stateText }),
        el('td', { text: operator.oldest_open_window_end ? timeOfDay(operator.oldest_open_window_end) : '–' }));
    }));
    $('operators-info').textContent = `${plan.operators.length} operators · late rows dropped ${integer(plan.late_rows_dropped)} · refreshed ${new Date().toLocaleTimeString()}`;
  }

  // ---- Start -------------------------------------------------------------------

  /** Runs `task` now and then every `ms` after it finishes (never overlapping). */
  function every(ms, task) {
    const tick = async () => {
      try { await task(); } catch (error) { console.warn(error); }
      setTimeout(tick, ms);
    };
    tick();
  }

  function start() {
    $('run').addEventListener('click', run);
    $('query-cancel').addEventListener('click', () => state.selected && cancelQuery(state.selected));
    $('token-bar').addEventListener('submit', saveToken);
    editor.addEventListener('keydown', onEditorKey);
    editor.addEventListener('input', onEditorInput);
    editor.addEventListener('scroll', syncEditorScroll);
    // Before drawChart's listener, which reads it.
    $('chart-split').addEventListener('change', () => { state.splitChosen = true; });
    for (const id of ['chart-y', 'chart-x', 'chart-split']) $(id).addEventListener('change', drawChart);
    window.addEventListener('resize', () => state.chart && state.chart.setSize({ width: $('chart').clientWidth, height: CHART_HEIGHT }));
    renderEditorDecor();
    every(LIST_REFRESH_MS, refreshLists);
    every(PLAN_REFRESH_MS, refreshPlan);
  }

  // For tests and the curious: a read-only view of what the page holds.
  window.sluiceConsole = {
    chartPoints,
    resultRows: () => state.rows.map((row) => row.values),
    selectedQuery: () => state.selected,
    streamState: () => $('stream-state').dataset.state,
  };

  start();
})();
