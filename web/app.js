/*
 * drover's dashboard: one page, ten views (jobs, a job, workflows, a workflow, arrays,
 * an array, triggers, a trigger, queues, agents), kept live by the event stream
 * (GET /v1/events).
 *
 * Safety rule: data from the server is only ever put into the page as text
 * (textContent, text nodes, attribute values set one by one) - never as
 * HTML - so a job name or a log line holding markup is shown, not run. The
 * server's Content-Security-Policy forbids inline scripts besides.
 *
 * Calls go to the API with the session cookie (HttpOnly: this script never
 * sees it); state-changing ones carry the session's CSRF token in
 * X-CSRF-Token.
 */
'use strict';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const STATES = ['queued', 'leased', 'running', 'succeeded', 'failed', 'cancelled', 'blocked'];
const LOG_KEEP = 256 * 1024; /* characters of a log kept on the page */

const app = {
  session: null, /* GET /v1/session: {name, role, csrf, can} */
  events: null,  /* the EventSource */
  view: null,    /* the view shown: {onEvent(type, data), destroy()} */
};

/* ---- small helpers ---- */

/* h('a', {href: '#/x', class: 'c'}, 'text', child): an element; strings become text nodes. */
function h(tag, props, ...kids) {
  const svg = tag.startsWith('svg:');
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

const main = () => document.getElementById('main');

function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString([], {hour12: false});
}

function fmtWhen(iso) {
  if (!iso) return h('span', {class: 'muted'}, '—');
  return h('time', {datetime: iso, title: iso}, fmtTime(iso));
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function ago(iso) {
  if (!iso) return '';
  const ms = Date.now() - new Date(iso).getTime();
  return ms < 1000 ? 'just now' : fmtDuration(ms) + ' ago';
}

function fmtBytes(n) {
  if (n === null || n === undefined) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

const badge = (state) => h('span', {class: `badge ${state}`, 'data-state': state}, state);
const labelsOf = (labels) =>
  Object.entries(labels || {}).map(([k, v]) => h('span', {class: 'label'}, `${k}=${v}`));
const shortId = (id) => id.slice(0, 13);

function progressBar(percent, small) {
  const bar = h('div', {class: 'bar'});
  bar.style.width = `${Math.max(0, Math.min(100, percent || 0))}%`; /* CSSOM: allowed by the CSP */
  return h('div', {class: small ? 'progress small' : 'progress', role: 'progressbar',
    'aria-valuenow': Math.round(percent || 0), 'aria-valuemin': 0, 'aria-valuemax': 100}, bar);
}

function toast(msg, isError) {
  const t = h('div', {class: isError ? 'toast error' : 'toast', role: 'status'}, msg);
  document.body.append(t);
  setTimeout(() => t.remove(), 4000);
}

/* Runs fn at most once per `ms`, the last call always running (so nothing is missed). */
function throttle(fn, ms) {
  let timer = null, last = 0, again = false, running = false;
  const run = () => {
    timer = null; last = Date.now(); again = false; running = true;
    Promise.resolve().then(fn).catch((e) => console.error(e)).finally(() => {
      running = false;
      if (again) call();
    });
  };
  /* One run at a time: a read answered after a later one would show what was before it. A
     call while one runs is run after it (what changed meanwhile is read then). */
  const call = () => {
    if (timer || running) { again = true; return; }
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(run, wait);
  };
  call.cancel = () => { if (timer) clearTimeout(timer); timer = null; again = false; };
  call.pending = () => again;
  return call;
}

/* ---- the API ---- */

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body, opts) {
  const init = {method, headers: {}, credentials: 'same-origin', signal: opts && opts.signal};
  if (method !== 'GET' && app.session) init.headers['X-CSRF-Token'] = app.session.csrf;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  if (!r.ok) {
    if (r.status === 401 && path !== '/v1/session' && app.session) signedOut('Your session ended: sign in again.');
    throw new ApiError(r.status, json);
  }
  return json;
}

const q = (params) => {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) u.set(k, v);
  const s = u.toString();
  return s ? `?${s}` : '';
};

/*
 * The newest-first pager of a list read by cursor: `after` is the page's cursor, `back` the
 * cursors of the pages before it (newest first), `next` the server's cursor of the next page.
 * Links go to `route` with `params` and the cursors in its query.
 */
function cursorPager(pager, route, params, after, back, next) {
  clear(pager);
  const link = (text, p) => h('a', {href: route + q({...params, ...p}), class: 'page'}, text);
  if (after) {
    pager.append(link('« Newest', {}));
    const prev = back.slice(0, -1);
    pager.append(link('‹ Newer', {after: back[back.length - 1] || '', back: prev.join(',')}));
  }
  if (next) pager.append(link('Older ›', {after: next, back: [...back, after].filter(Boolean).join(',')}));
}

/* ---- the event stream ---- */

function setLive(on, text) {
  const el = document.getElementById('live');
  el.className = on ? 'live on' : 'live off';
  el.textContent = text;
}

function startEvents() {
  stopEvents();
  const es = new EventSource('/v1/events');
  app.events = es;
  es.onopen = () => setLive(true, 'live');
  es.onerror = () => {
    setLive(false, es.readyState === EventSource.CLOSED ? 'offline' : 'reconnecting');
    if (es.readyState === EventSource.CLOSED) { /* refused: signed out? */
      api('GET', '/v1/session').then(() => setTimeout(startEvents, 2000), () => signedOut('Sign in again.'));
    }
  };
  /* trigger.* are for the triggers' pages (fires, and changes made elsewhere): the job a
     trigger submits has events of its own, which the other views follow. */
  for (const type of ['job', 'agent', 'array.submitted', 'array.changed', 'queue.paused', 'queue.resumed',
    'queue.limited', 'trigger.fired', 'trigger.failed', 'trigger.created', 'trigger.updated',
    'trigger.paused', 'trigger.resumed', 'trigger.deleted']) {
    es.addEventListener(type, (m) => {
      let data;
      try { data = JSON.parse(m.data); } catch (e) { return; }
      if (app.view && app.view.onEvent) app.view.onEvent(type, data);
    });
  }
}

function stopEvents() {
  if (app.events) app.events.close();
  app.events = null;
  setLive(false, 'offline');
}

/* ---- sign in and out ---- */

function signedOut(message) {
  app.session = null;
  stopEvents();
  if (app.view && app.view.destroy) app.view.destroy();
  app.view = null;
  document.getElementById('nav').hidden = true;
  document.getElementById('signout').hidden = true;
  document.getElementById('who').textContent = '';
  showSignIn(message);
}

function showSignIn(message) {
  const err = h('p', {class: 'error', id: 'signin-error', role: 'alert'}, message || '');
  const input = h('input', {type: 'password', id: 'token', name: 'token', autocomplete: 'off',
    placeholder: 'drv_…', required: true});
  const form = h('form', {class: 'card signin', id: 'signin'},
    h('h1', {}, 'Sign in to drover'),
    h('label', {for: 'token'}, 'Token (client or admin)'), input,
    h('button', {type: 'submit'}, 'Sign in'), err,
    h('p', {class: 'muted'}, 'The token becomes a session cookie of this browser; ',
      'the admin token is in the server\u2019s data folder (admin.token).'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    try {
      app.session = await api('POST', '/v1/session', {token: input.value.trim()});
      input.value = '';
      signedIn();
    } catch (e) {
      err.textContent = e.message;
    }
  });
  clear(main()).append(form);
  input.focus();
}

function signedIn() {
  document.getElementById('nav').hidden = false;
  document.getElementById('signout').hidden = false;
  document.getElementById('who').textContent = `${app.session.name} (${app.session.role})`;
  document.getElementById('nav-tokens').hidden = !(app.session.can || {}).tokens;
  startEvents();
  route();
}

async function signOut() {
  try { await api('DELETE', '/v1/session'); } catch (e) { /* gone already */ }
  signedOut('Signed out.');
}

/* ---- routing: #/jobs?…, #/job/ID, #/workflows?…, #/workflow/ID, #/arrays?…, #/array/ID?from=I,
   #/triggers?…, #/trigger/ID, #/queues, #/agents, #/tokens ---- */

function route() {
  if (!app.session) return;
  if (app.view && app.view.destroy) app.view.destroy();
  app.view = null;
  const hash = location.hash.replace(/^#/, '') || '/jobs';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  const name = parts[0] || 'jobs';
  for (const a of document.querySelectorAll('#nav a'))
    a.classList.toggle('active', a.dataset.view === ({job: 'jobs', workflow: 'workflows', array: 'arrays', trigger: 'triggers'}[name] || name));
  if (name === 'job' && parts[1]) app.view = jobView(decodeURIComponent(parts[1]));
  else if (name === 'workflow' && parts[1]) app.view = workflowView(decodeURIComponent(parts[1]));
  else if (name === 'workflows') app.view = workflowsView(params);
  else if (name === 'array' && parts[1]) app.view = arrayView(decodeURIComponent(parts[1]), params);
  else if (name === 'arrays') app.view = arraysView(params);
  else if (name === 'trigger' && parts[1]) app.view = triggerView(decodeURIComponent(parts[1]));
  else if (name === 'triggers') app.view = triggersView(params);
  else if (name === 'queues') app.view = queuesView();
  else if (name === 'agents') app.view = agentsView();
  else if (name === 'tokens') app.view = tokensView();
  else app.view = jobsView(params);
}

/* ---- jobs ---- */

function jobsView(params) {
  const filters = {};
  for (const k of ['state', 'queue', 'service', 'label', 'name', 'agent']) filters[k] = params.get(k) || '';
  const after = params.get('after') || '';
  const back = (params.get('back') || '').split(',').filter(Boolean); /* the cursors of newer pages */
  const root = clear(main());
  const stateSel = h('select', {name: 'state', id: 'f-state'}, h('option', {value: ''}, 'any state'),
    STATES.map((s) => h('option', {value: s, selected: filters.state === s}, s)));
  const field = (name, placeholder) =>
    h('input', {name, id: `f-${name}`, value: filters[name], placeholder, type: 'search'});
  const form = h('form', {class: 'filters', id: 'filters'},
    h('label', {}, 'Name contains', field('name', 'search names')),
    h('label', {}, 'State', stateSel),
    h('label', {}, 'Queue', field('queue', 'default')),
    h('label', {}, 'Service', field('service', '')),
    h('label', {}, 'Label', field('label', 'key:value')),
    h('label', {}, 'Agent', field('agent', 'name')),
    h('button', {type: 'submit'}, 'Filter'),
    h('button', {type: 'button', class: 'secondary', onclick: () => { location.hash = '#/jobs'; }}, 'Clear'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(form).entries());
    location.hash = '#/jobs' + q(f);
  });
  const status = h('p', {class: 'muted', id: 'jobs-status'});
  const tbody = h('tbody', {id: 'jobs-body'});
  const table = h('div', {class: 'scroll'}, h('table', {id: 'jobs'},
    h('thead', {}, h('tr', {}, h('th', {}, 'id'), h('th', {}, 'name'), h('th', {}, 'state'),
      h('th', {}, 'queue'), h('th', {class: 'hide-narrow'}, 'service'), h('th', {class: 'hide-narrow'}, 'labels'),
      h('th', {class: 'hide-narrow'}, 'created'), h('th', {}, 'progress / time'))),
    tbody));
  const pager = h('div', {class: 'pager'});
  root.append(h('h1', {}, 'Jobs'), form, status, table, pager);

  /* Cancel or retry what the filters find (POST /v1/jobs/cancel, /v1/jobs/retry): offered
     when a filter besides the state narrows the list and the state, if any, is one the verb
     applies to; the first click asks, the second does it (no browser dialog). */
  const can = app.session.can || {};
  const narrowed = ['queue', 'service', 'label', 'name', 'agent'].some((k) => filters[k]);
  const RETRYABLE = new Set(['failed', 'cancelled']);
  const bulk = (verb, label, ask, done) => {
    const btn = h('button', {type: 'button', class: `secondary ${verb}-matching`}, label);
    let armed = false;
    btn.addEventListener('click', async () => {
      if (!armed) {
        armed = true;
        btn.textContent = ask;
        btn.classList.add('danger');
        return;
      }
      btn.disabled = true;
      try {
        const res = await api('POST', `/v1/jobs/${verb}` + q(filters));
        const n = res[done];
        toast(`${done[0].toUpperCase()}${done.slice(1)} ${n} job${n === 1 ? '' : 's'}.`);
        refresh();
      } catch (e) {
        toast(e.message, true);
      }
      armed = false;
      btn.disabled = false;
      btn.textContent = label;
      btn.classList.remove('danger');
    });
    form.append(btn);
  };
  if (can.cancel && narrowed && (!filters.state || !TERMINAL.has(filters.state)))
    bulk('cancel', 'Cancel all matching…', 'Cancel every unfinished job these filters find?', 'cancelled');
  if (can.retry && narrowed && (!filters.state || RETRYABLE.has(filters.state)))
    bulk('retry', 'Retry all matching…', 'Retry every failed or cancelled job these filters find?', 'retried');

  let seen = new Set();
  let first = true;
  const load = async () => {
    let res;
    try {
      res = await api('GET', '/v1/jobs' + q({...filters, after, limit: 50}));
    } catch (e) {
      status.textContent = e.message;
      status.className = 'error';
      return;
    }
    status.className = 'muted';
    status.textContent = res.jobs.length ? '' : 'No jobs match.';
    clear(tbody);
    const now = new Set();
    for (const j of res.jobs) {
      now.add(j.id + j.state);
      const row = jobRow(j);
      if (!first && !seen.has(j.id + j.state)) row.classList.add('fresh');
      tbody.append(row);
    }
    seen = now;
    first = false;
    cursorPager(pager, '#/jobs', filters, after, back, res.next);
  };
  const refresh = throttle(load, 250);
  load();
  return {
    onEvent: (type) => { if (type === 'job') refresh(); },
    destroy: () => refresh.cancel(),
  };
}

function jobRow(j) {
  let time = '';
  if (TERMINAL.has(j.state) && j.result) time = fmtDuration(j.result.duration_ms);
  else if (j.started_at && !TERMINAL.has(j.state)) time = 'for ' + fmtDuration(Date.now() - new Date(j.started_at));
  const prog = j.progress && !TERMINAL.has(j.state)
    ? [progressBar(j.progress.percent, true), `${Math.round(j.progress.percent)}%`] : [];
  return h('tr', {'data-id': j.id, 'data-state': j.state},
    h('td', {class: 'id'}, h('a', {href: `#/job/${encodeURIComponent(j.id)}`, title: j.id}, shortId(j.id))),
    h('td', {class: 'name'}, j.name === null ? h('span', {class: 'muted'}, '—') : j.name),
    h('td', {}, badge(j.state)),
    h('td', {}, j.queue),
    h('td', {class: 'hide-narrow'}, j.service || ''),
    h('td', {class: 'hide-narrow labels'}, labelsOf(j.labels)),
    h('td', {class: 'hide-narrow'}, fmtWhen(j.created_at)),
    h('td', {}, time, prog));
}

/* ---- one job ---- */

function jobView(id) {
  const root = clear(main());
  const head = h('div', {id: 'job-head'});
  const body = h('div', {id: 'job-body'});
  const streamSel = h('select', {id: 'log-stream'}, h('option', {value: 'stdout'}, 'stdout'),
    h('option', {value: 'stderr'}, 'stderr'));
  const logState = h('span', {class: 'muted', id: 'log-state'});
  const pre = h('pre', {class: 'log', id: 'log'});
  root.append(head, body, h('h2', {}, 'Log ', streamSel, ' ', logState), pre);

  let job = null;
  let missed = false; /* an event of the job came while its first read was on the way */
  const live = []; /* events of this job seen while the page is open */
  const presigned = new Map(); /* uri -> url */
  let logCtl = null;
  let closed = false;

  let logAttempt = 0; /* the attempt the log is pinned to (after a retry), or 0: the latest */
  const follow = async (attempt = 0) => {
    if (logCtl) logCtl.abort();
    const ctl = new AbortController();
    logCtl = ctl;
    logAttempt = attempt;
    clear(pre);
    logState.textContent = 'following…';
    let kept = 0;
    try {
      const r = await fetch(`/v1/jobs/${encodeURIComponent(id)}/log${q({stream: streamSel.value, follow: 1, attempt: attempt || undefined})}`,
        {credentials: 'same-origin', signal: ctl.signal});
      if (!r.ok) {
        let msg = `HTTP ${r.status}`;
        try { msg = (await r.json()).error.message; } catch (e) { /* not JSON */ }
        logState.textContent = msg;
        return;
      }
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        const text = dec.decode(value, {stream: true});
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
        pre.append(document.createTextNode(text));
        kept += text.length;
        while (kept > LOG_KEEP && pre.firstChild) { /* drop the oldest text */
          kept -= pre.firstChild.textContent.length;
          pre.removeChild(pre.firstChild);
        }
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      }
      if (!ctl.signal.aborted) logState.textContent = pre.textContent ? 'ended' : 'ended (empty)';
    } catch (e) {
      if (!ctl.signal.aborted) logState.textContent = e.message;
    }
  };
  streamSel.addEventListener('change', () => follow(logAttempt));

  const presign = async (uri) => {
    if (presigned.has(uri)) return presigned.get(uri);
    const res = await api('POST', '/v1/presign', {method: 'GET', uri, expires_s: 900});
    presigned.set(uri, res.url);
    return res.url;
  };

  const cancel = async (btn) => {
    btn.disabled = true;
    try {
      job = await api('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`);
      toast('Cancelled.');
      render();
    } catch (e) {
      toast(e.message, true);
      btn.disabled = false;
    }
  };

  const retry = async (btn) => {
    btn.disabled = true;
    try {
      job = await api('POST', `/v1/jobs/${encodeURIComponent(id)}/retry`);
      toast('Queued again.');
      render();
      /* the log of the new attempt alone (the job may not have started it yet) */
      follow(job.attempt + 1);
    } catch (e) {
      toast(e.message, true);
      btn.disabled = false;
    }
  };

  const render = () => {
    if (closed || !job) return;
    const j = job;
    const can = app.session.can || {};
    clear(head).append(
      h('p', {}, h('a', {href: '#/jobs'}, '‹ Jobs')),
      h('h1', {}, j.name === null ? 'Job ' : h('span', {id: 'job-name'}, j.name), ' ', badge(j.state)),
      h('div', {class: 'actions'},
        can.cancel && !TERMINAL.has(j.state)
          ? h('button', {class: 'danger', id: 'cancel', type: 'button', onclick: (ev) => cancel(ev.target)}, 'Cancel job')
          : null,
        can.retry && (j.state === 'failed' || j.state === 'cancelled')
          ? h('button', {id: 'retry', type: 'button', onclick: (ev) => retry(ev.target)}, 'Retry (one more attempt)')
          : null));
    const pct = j.state === 'succeeded' ? 100 : j.progress ? j.progress.percent : 0;
    const details = h('dl', {class: 'kv'});
    const kv = (k, v) => details.append(h('dt', {}, k), h('dd', {}, v));
    kv('id', h('span', {class: 'id', id: 'job-id'}, j.id));
    kv('queue', h('a', {href: '#/jobs' + q({queue: j.queue})}, j.queue));
    const arr = j.array; /* a task's array and index (docs/api.md, "The job") */
    if (arr) kv('array', h('a', {id: 'job-array', href: `#/array/${encodeURIComponent(arr.id)}` + q({from: pageStart(arr.index)})},
      `${shortId(arr.id)} task ${arr.index}`));
    if (j.workflow) kv('workflow', h('a', {id: 'job-workflow', href: `#/workflow/${encodeURIComponent(j.workflow)}`}, shortId(j.workflow)));
    if (j.service) kv('service', j.service);
    kv('labels', h('span', {id: 'job-labels'}, labelsOf(j.labels)));
    kv('priority', j.priority);
    if (j.owner) kv('owner', j.owner);
    kv('attempt', `${j.attempt} of ${j.max_attempts}`);
    if (j.agent) kv('agent', j.agent);
    kv('created', fmtWhen(j.created_at));
    kv('started', fmtWhen(j.started_at));
    kv('finished', fmtWhen(j.finished_at));
    if (j.waiting) kv('waiting', j.waiting.message || j.waiting.reason);
    const progress = h('div', {class: 'card', id: 'job-progress'},
      progressBar(pct),
      h('p', {class: 'muted'}, `${Math.round(pct)}%`, j.progress && j.progress.message ? ` — ${j.progress.message}` : ''));

    const timeline = h('ol', {class: 'timeline', id: 'timeline'});
    for (const t of timelineOf(j, live))
      timeline.append(h('li', {class: t.state}, fmtWhen(t.at), ' ', h('strong', {}, t.state), t.text ? ` ${t.text}` : ''));

    const attempts = h('tbody', {});
    for (const a of j.attempts || [])
      attempts.append(h('tr', {}, h('td', {class: 'num'}, a.attempt), h('td', {}, a.agent || ''),
        h('td', {}, fmtWhen(a.started_at)), h('td', {}, fmtWhen(a.finished_at)),
        h('td', {}, a.reason || ''), h('td', {class: 'num'}, a.exit_code ?? ''),
        h('td', {}, a.error || (a.signal ? `signal ${a.signal}` : ''))));

    const result = h('div', {class: 'card', id: 'job-result'});
    if (j.result) {
      const r = j.result;
      const dl = h('dl', {class: 'kv'});
      const add = (k, v) => dl.append(h('dt', {}, k), h('dd', {}, v));
      add('reason', r.reason);
      if (r.exit_code !== null && r.exit_code !== undefined) add('exit code', r.exit_code);
      if (r.signal) add('signal', r.signal);
      add('duration', fmtDuration(r.duration_ms));
      if (r.error) add('error', h('span', {class: 'error'}, r.error));
      result.append(dl);
      const outs = r.outputs || [];
      if (outs.length) {
        const list = h('ul', {id: 'outputs'});
        for (const o of outs) {
          const a = h('a', {class: 'download', rel: 'noopener'}, o.uri);
          list.append(h('li', {}, a, ` ${fmtBytes(o.size)} `, h('span', {class: 'muted', title: 'sha256'}, (o.sha256 || '').slice(0, 12))));
          if (can.presign) presign(o.uri).then((url) => a.setAttribute('href', url), (e) => a.setAttribute('title', e.message));
        }
        result.append(h('h3', {}, 'Outputs'), list);
      }
    } else {
      result.append(h('p', {class: 'muted'}, 'No result yet.'));
    }
    const prevSpec = body.querySelector('details.spec');
    const specOpen = !!(prevSpec && prevSpec.open); /* kept open across live refreshes */
    clear(body).append(
      h('div', {class: 'grid2'},
        h('div', {}, h('h2', {}, 'Details'), h('div', {class: 'card'}, details),
          h('h2', {}, 'Progress'), progress),
        h('div', {}, h('h2', {}, 'Timeline'), h('div', {class: 'card'}, timeline),
          h('h2', {}, 'Result'), result)),
      h('details', {class: 'card spec', open: specOpen}, h('summary', {}, 'Spec (as stored, normalised)'),
        h('pre', {class: 'log', id: 'job-spec'}, JSON.stringify(j.spec, null, 2))),
      h('h2', {}, 'Attempts'),
      h('div', {class: 'scroll'}, h('table', {id: 'attempts'}, h('thead', {}, h('tr', {},
        ['attempt', 'agent', 'started', 'finished', 'reason', 'exit', 'error'].map((c) => h('th', {}, c)))), attempts)));
  };

  const load = async () => {
    try {
      job = await api('GET', `/v1/jobs/${encodeURIComponent(id)}`);
    } catch (e) {
      clear(head).append(h('p', {}, h('a', {href: '#/jobs'}, '‹ Jobs')), h('p', {class: 'error'}, e.message));
      return;
    }
    render();
  };
  const refresh = throttle(load, 200);
  /* The read may have been answered before that event's change: read again. */
  load().then(() => { if (job) { follow(); if (missed) refresh(); } });
  return {
    onEvent: (type, ev) => {
      if (type !== 'job') return;
      if (!job) { /* still loading (id may be a prefix of the job's) */
        if (typeof ev.job === 'string' && ev.job.startsWith(id)) missed = true;
        return;
      }
      if (ev.job !== job.id) return;
      live.push(ev);
      refresh();
      /* A retried job's log starts again with the new attempt: follow=1 goes on through it.
         Pinned to an attempt (a retry from this page), a later one is followed from its start. */
      if (logAttempt && ev.attempt > logAttempt) follow();
    },
    destroy: () => { closed = true; refresh.cancel(); if (logCtl) logCtl.abort(); },
  };
}

/* ---- workflows ---- */

function workflowsView(params) {
  const after = params.get('after') || '';
  const back = (params.get('back') || '').split(',').filter(Boolean); /* the cursors of newer pages */
  const root = clear(main());
  const status = h('p', {class: 'muted', id: 'workflows-status'});
  const tbody = h('tbody', {id: 'workflows-body'});
  const pager = h('div', {class: 'pager'});
  root.append(h('h1', {}, 'Workflows'), status,
    h('div', {class: 'scroll'}, h('table', {id: 'workflows'}, h('thead', {}, h('tr', {},
      h('th', {}, 'id'), h('th', {}, 'name'), h('th', {}, 'state'), h('th', {}, 'progress'),
      h('th', {class: 'hide-narrow'}, 'owner'), h('th', {class: 'hide-narrow'}, 'created'))), tbody)),
    pager);
  const load = async () => {
    let res;
    try {
      res = await api('GET', '/v1/workflows' + q({after, limit: 20}));
    } catch (e) {
      status.textContent = e.message;
      status.className = 'error';
      return;
    }
    status.className = 'muted';
    status.textContent = res.workflows.length ? '' : 'No workflows yet.';
    clear(tbody);
    for (const w of res.workflows) {
      const p = w.progress || {};
      const ended = (p.succeeded || 0) + (p.failed || 0) + (p.cancelled || 0);
      tbody.append(h('tr', {'data-id': w.id, 'data-state': w.state},
        h('td', {class: 'id'}, h('a', {href: `#/workflow/${encodeURIComponent(w.id)}`, title: w.id}, shortId(w.id))),
        h('td', {class: 'name'}, w.name === null ? h('span', {class: 'muted'}, '—') : w.name),
        h('td', {}, badge(w.state)),
        h('td', {class: 'progress-cell'}, progressBar(p.total ? ended / p.total * 100 : 0, true),
          `${p.succeeded || 0} of ${p.total || 0} succeeded`, p.failed ? `, ${p.failed} failed` : ''),
        h('td', {class: 'hide-narrow'}, w.owner || ''),
        h('td', {class: 'hide-narrow'}, fmtWhen(w.created_at))));
    }
    cursorPager(pager, '#/workflows', {}, after, back, res.next);
  };
  /* Any job's change may be a node's (a new workflow's first ones included). */
  const refresh = throttle(load, 1000);
  load();
  return {
    onEvent: (type) => { if (type === 'job') refresh(); },
    destroy: () => refresh.cancel(),
  };
}

/* ---- one workflow ---- */

function workflowView(id) {
  const root = clear(main());
  const head = h('div', {id: 'wf-head'});
  const body = h('div', {id: 'wf-body'});
  root.append(head, body);
  let wf = null;
  let jobs = new Set(); /* its nodes' job ids: their events redraw the page */
  let closed = false;

  const act = async (btn, what, done) => {
    btn.disabled = true;
    try {
      wf = await api('POST', `/v1/workflows/${encodeURIComponent(id)}/${what}`);
      toast(done);
      render();
    } catch (e) {
      toast(e.message, true);
      btn.disabled = false;
    }
  };

  const render = () => {
    if (closed || !wf) return;
    const w = wf, p = w.progress || {};
    const can = app.session.can || {};
    jobs = new Set(Object.values(w.nodes).map((n) => n.job));
    const ended = (p.succeeded || 0) + (p.failed || 0) + (p.cancelled || 0);
    clear(head).append(
      h('p', {}, h('a', {href: '#/workflows'}, '‹ Workflows')),
      h('h1', {}, 'Workflow ', w.name === null ? h('span', {class: 'id'}, shortId(w.id)) : h('span', {id: 'wf-name'}, w.name),
        ' ', badge(w.state)),
      h('div', {class: 'actions'},
        can.workflow_cancel && w.state === 'running'
          ? h('button', {class: 'danger', id: 'wf-cancel', type: 'button',
            onclick: (ev) => act(ev.target, 'cancel', 'Workflow cancelled.')}, 'Cancel workflow') : null,
        can.workflow_retry && w.state !== 'running' && (p.failed || p.cancelled)
          ? h('button', {id: 'wf-retry', type: 'button',
            onclick: (ev) => act(ev.target, 'retry', 'Failed and cancelled nodes run again.')}, 'Retry failed and cancelled') : null));
    const counts = h('ul', {class: 'counts', id: 'wf-progress'});
    for (const st of ['blocked', 'queued', 'leased', 'running', 'succeeded', 'failed', 'cancelled'])
      counts.append(h('li', {'data-state': st}, badge(st), ' ', h('span', {class: 'n'}, p[st] || 0)));
    counts.append(h('li', {'data-state': 'total'}, 'of ', h('span', {class: 'n'}, p.total || 0)));
    const details = h('dl', {class: 'kv'});
    const kv = (k, v) => details.append(h('dt', {}, k), h('dd', {}, v));
    kv('id', h('span', {class: 'id', id: 'wf-id'}, w.id));
    if (w.owner) kv('owner', w.owner);
    kv('created', fmtWhen(w.created_at));
    const rows = h('tbody', {});
    for (const [name, n] of Object.entries(w.nodes).sort((a, b) => a[0].localeCompare(b[0])))
      rows.append(h('tr', {'data-node': name, 'data-state': n.state || ''},
        h('td', {}, h('a', {href: `#/job/${encodeURIComponent(n.job)}`}, name)),
        h('td', {}, n.state ? badge(n.state) : ''),
        h('td', {class: 'num'}, n.attempt ?? ''),
        h('td', {}, (n.depends_on || []).map((d) => d.on === 'any' ? `${d.node} (any)` : d.node).join(', ')),
        h('td', {class: 'id'}, h('a', {href: `#/job/${encodeURIComponent(n.job)}`, title: n.job}, shortId(n.job)))));
    clear(body).append(
      h('div', {class: 'card'}, progressBar(p.total ? ended / p.total * 100 : 0), counts, details),
      h('h2', {}, 'Graph'),
      h('div', {class: 'card scroll'}, workflowGraph(w)),
      h('h2', {}, 'Nodes'),
      h('div', {class: 'scroll'}, h('table', {id: 'wf-nodes'}, h('thead', {}, h('tr', {},
        ['node', 'state', 'attempt', 'after', 'job'].map((c) => h('th', {}, c)))), rows)));
  };

  const load = async () => {
    try {
      wf = await api('GET', `/v1/workflows/${encodeURIComponent(id)}`);
    } catch (e) {
      clear(head).append(h('p', {}, h('a', {href: '#/workflows'}, '‹ Workflows')), h('p', {class: 'error'}, e.message));
      return;
    }
    render();
  };
  const refresh = throttle(load, 200);
  load();
  return {
    /* before the first answer, any job's change may be a node's: read again */
    onEvent: (type, ev) => { if (type === 'job' && (!wf || jobs.has(ev.job))) refresh(); },
    destroy: () => { closed = true; refresh.cancel(); },
  };
}

/*
 * A workflow's nodes as a graph in inline SVG, drawn here: each node in the layer of its
 * depth (the longest way from a node without upstreams), layers left to right, an edge from
 * each upstream (dashed: "on": "any"), each node coloured by its state and linked to its job.
 */
function workflowGraph(w) {
  const names = Object.keys(w.nodes).sort();
  const ups = new Map(names.map((n) => [n, new Map()])); /* node -> upstream -> on */
  for (const n of names)
    for (const d of w.nodes[n].depends_on || []) if (ups.has(d.node)) ups.get(n).set(d.node, d.on || 'success');
  for (const c of w.connections || []) {
    const from = String(c.from).split('.')[0], to = String(c.to).split('.')[0];
    if (ups.has(from) && ups.has(to) && !ups.get(to).has(from)) ups.get(to).set(from, 'success');
  }
  const depth = new Map();
  const depthOf = (n, seen) => { /* the server refuses cycles; `seen` guards anyway */
    if (depth.has(n)) return depth.get(n);
    if (seen.has(n)) return 0;
    seen.add(n);
    let d = 0;
    for (const u of ups.get(n).keys()) d = Math.max(d, depthOf(u, seen) + 1);
    depth.set(n, d);
    return d;
  };
  const layers = [];
  for (const n of names) {
    const d = depthOf(n, new Set());
    (layers[d] = layers[d] || []).push(n);
  }
  const NW = 150, NH = 44, GX = 60, GY = 18, PAD = 10;
  const pos = new Map();
  const tallest = Math.max(...layers.map((l) => (l || []).length));
  layers.forEach((l, i) => (l || []).forEach((n, j) => {
    const offset = (tallest - l.length) * (NH + GY) / 2; /* each layer centred */
    pos.set(n, {x: PAD + i * (NW + GX), y: PAD + offset + j * (NH + GY)});
  }));
  const W = PAD * 2 + layers.length * NW + (layers.length - 1) * GX;
  const H = PAD * 2 + tallest * NH + (tallest - 1) * GY;
  const svg = h('svg:svg', {class: 'graph', id: 'wf-graph', viewBox: `0 0 ${W} ${H}`, width: W, height: H,
    role: 'img', 'aria-label': `workflow of ${names.length} nodes`});
  svg.append(h('svg:defs', {}, h('svg:marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'}, h('svg:path', {d: 'M 0 0 L 10 5 L 0 10 z'}))));
  for (const n of names) {
    for (const [u, on] of ups.get(n)) {
      const a = pos.get(u), b = pos.get(n);
      const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
      svg.append(h('svg:path', {class: on === 'any' ? 'edge any' : 'edge', 'data-from': u, 'data-to': n,
        d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, 'marker-end': 'url(#arrow)'},
      h('svg:title', {}, `${u} → ${n}${on === 'any' ? ' (after any end)' : ''}`)));
    }
  }
  for (const n of names) {
    const node = w.nodes[n], {x, y} = pos.get(n), st = node.state || 'unknown';
    svg.append(h('svg:a', {class: 'node', href: `#/job/${encodeURIComponent(node.job)}`, 'data-node': n, 'data-state': st},
      h('svg:title', {}, `${n}: ${st}, attempt ${node.attempt ?? 0}`),
      h('svg:rect', {class: `node ${st}`, x, y, width: NW, height: NH, rx: 6}),
      h('svg:text', {class: 'name', x: x + 10, y: y + 18}, n.length > 18 ? n.slice(0, 17) + '…' : n),
      h('svg:text', {class: 'state', x: x + 10, y: y + 35}, st + (node.attempt > 1 ? ` (attempt ${node.attempt})` : ''))));
  }
  return svg;
}

/* The job's history: its creation, each attempt's start and end, then what the stream said since. */
function timelineOf(j, live) {
  const out = [{at: j.created_at, state: 'queued', text: 'submitted'}];
  for (const a of j.attempts || []) {
    if (a.started_at) out.push({at: a.started_at, state: 'running', text: `attempt ${a.attempt}${a.agent ? ' on ' + a.agent : ''}`});
    if (a.finished_at) {
      const ok = a.reason === 'exit' && a.exit_code === 0;
      out.push({at: a.finished_at, state: ok ? 'succeeded' : a.reason === 'cancelled' ? 'cancelled' : 'failed',
        text: `attempt ${a.attempt} ended: ${a.reason || ''}${a.exit_code !== null && a.exit_code !== undefined ? ' (exit ' + a.exit_code + ')' : ''}${a.error ? ' — ' + a.error : ''}`});
    }
  }
  const open = j.started_at && !(j.attempts || []).some((a) => a.attempt === j.attempt);
  if (open) out.push({at: j.started_at, state: j.state === 'leased' ? 'leased' : 'running',
    text: `attempt ${j.attempt}${j.agent ? ' on ' + j.agent : ''}`});
  const lastEnd = (j.attempts || []).length ? j.attempts[j.attempts.length - 1].finished_at : null;
  if (TERMINAL.has(j.state) && j.finished_at && j.finished_at !== lastEnd)
    out.push({at: j.finished_at, state: j.state, text: ''});
  const seen = new Set(out.map((t) => t.at + t.state));
  for (const ev of live) {
    if (seen.has(ev.at + ev.state)) continue;
    let text = `event ${ev.seq}`;
    if (ev.percent !== undefined) text += ` — ${Math.round(ev.percent)}%${ev.message ? ' ' + ev.message : ''}`;
    out.push({at: ev.at, state: ev.state, text});
  }
  return out.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
}

/* ---- arrays ---- */

const ARRAY_PAGE = 2000; /* task cells drawn at a time: a page of the index range */
/* the order of a counts bar's parts: ended first, then what is under way */
const BAR_STATES = ['succeeded', 'failed', 'cancelled', 'running', 'leased', 'queued', 'blocked'];

const pageStart = (i) => Math.floor(i / ARRAY_PAGE) * ARRAY_PAGE;
const fmtInt = (n) => Number(n || 0).toLocaleString('en-US');

/*
 * The index of task job `job` of array `array`, or -1 when it is not one: a task's id is
 * the array's first 48 bits (its time), version 8, the index in 24 bits around the variant
 * digit (also 8), then a hash (docs/api.md, "Arrays"; array_task_id in src/job/array.c).
 * Another array made in the same millisecond has the same prefix: callers check the job
 * id itself once the task listing gave it.
 */
function taskIndexOf(job, array) {
  if (typeof job !== 'string' || typeof array !== 'string' || job.length !== 36 || array.length !== 36) return -1;
  if (job.slice(0, 8) !== array.slice(0, 8) || job.slice(9, 13) !== array.slice(9, 13)) return -1;
  if (job[14] !== '8' || job[19] !== '8') return -1;
  const i = parseInt(job.slice(15, 18) + job.slice(20, 23), 16);
  return isNaN(i) ? -1 : i;
}


/* A bar of an array's tasks by state, each part as wide as its share. */
function countsBar(counts, total) {
  const bar = h('div', {class: 'countsbar', role: 'img'});
  const said = [];
  for (const st of BAR_STATES) {
    const n = counts[st] || 0;
    if (!n) continue;
    const part = h('span', {class: `part ${st}`, 'data-state': st});
    part.style.width = `${n / Math.max(1, total) * 100}%`; /* CSSOM: allowed by the CSP */
    bar.append(part);
    said.push(`${fmtInt(n)} ${st}`);
  }
  const text = `${said.join(', ') || 'no tasks'} of ${fmtInt(total)}`;
  bar.setAttribute('title', text);
  bar.setAttribute('aria-label', text);
  return bar;
}

function arraysView(params) {
  const after = params.get('after') || '';
  const back = (params.get('back') || '').split(',').filter(Boolean); /* the cursors of newer pages */
  const root = clear(main());
  const status = h('p', {class: 'muted', id: 'arrays-status'});
  const tbody = h('tbody', {id: 'arrays-body'});
  const pager = h('div', {class: 'pager'});
  root.append(h('h1', {}, 'Arrays'), status,
    h('div', {class: 'scroll'}, h('table', {id: 'arrays'}, h('thead', {}, h('tr', {},
      h('th', {}, 'id'), h('th', {}, 'name'), h('th', {}, 'state'), h('th', {}, 'tasks'),
      h('th', {}, 'queue'), h('th', {class: 'hide-narrow'}, 'owner'), h('th', {class: 'hide-narrow'}, 'created'))), tbody)),
    pager);
  const load = async () => {
    let res;
    try {
      res = await api('GET', '/v1/arrays' + q({after, limit: 20}));
    } catch (e) {
      status.textContent = e.message;
      status.className = 'error';
      return;
    }
    status.className = 'muted';
    status.textContent = res.arrays.length ? '' : 'No arrays yet.';
    clear(tbody);
    for (const a of res.arrays) {
      const c = a.counts || {};
      tbody.append(h('tr', {'data-id': a.id, 'data-state': a.state},
        h('td', {class: 'id'}, h('a', {href: `#/array/${encodeURIComponent(a.id)}`, title: a.id}, shortId(a.id))),
        h('td', {class: 'name'}, a.name === null ? h('span', {class: 'muted'}, '—') : a.name),
        h('td', {}, badge(a.state)),
        h('td', {class: 'progress-cell'}, countsBar(c, a.count),
          h('span', {class: 'counts-text'}, `${fmtInt(c.succeeded)} of ${fmtInt(a.count)} succeeded`,
            c.failed ? `, ${fmtInt(c.failed)} failed` : '', c.cancelled ? `, ${fmtInt(c.cancelled)} cancelled` : '')),
        h('td', {}, a.queue),
        h('td', {class: 'hide-narrow'}, a.owner || ''),
        h('td', {class: 'hide-narrow'}, fmtWhen(a.created_at))));
    }
    cursorPager(pager, '#/arrays', {}, after, back, res.next);
  };
  /* Arrays' own events, and their tasks' (a task's id has version 8; ordinary jobs' 7). */
  const refresh = throttle(load, 1000);
  load();
  return {
    onEvent: (type, ev) => {
      if (type.startsWith('array.') || (type === 'job' && typeof ev.job === 'string' && ev.job[14] === '8')) refresh();
    },
    destroy: () => refresh.cancel(),
  };
}

/* ---- one array ---- */

function arrayView(id, params) {
  const root = clear(main());
  const head = h('div', {id: 'arr-head'});
  const summary = h('div', {id: 'arr-summary'});
  /* The range form is made once, so that what is typed survives live redraws. */
  const fromIn = h('input', {type: 'number', id: 'arr-from', name: 'from', min: 0, step: 1, placeholder: '0'});
  const toIn = h('input', {type: 'number', id: 'arr-to', name: 'to', min: 0, step: 1});
  const cancelBtn = h('button', {type: 'button', class: 'danger', id: 'arr-cancel', hidden: true,
    onclick: (ev) => act(ev.target, 'cancel')}, 'Cancel tasks');
  const retryBtn = h('button', {type: 'button', id: 'arr-retry', hidden: true,
    onclick: (ev) => act(ev.target, 'retry')}, 'Retry failed and cancelled');
  const range = h('form', {class: 'filters', id: 'arr-range', hidden: true},
    h('label', {}, 'From task', fromIn), h('label', {}, 'To task', toIn), cancelBtn, retryBtn);
  range.addEventListener('submit', (ev) => ev.preventDefault());
  const gridStatus = h('p', {class: 'muted', id: 'arr-grid-status'});
  const grid = h('div', {class: 'taskgrid', id: 'arr-grid'});
  const pager = h('div', {class: 'pager', id: 'arr-pager'});
  const legend = h('p', {class: 'legend cells'},
    ['queued', 'leased', 'running', 'succeeded', 'failed', 'cancelled', 'gone'].map((st) =>
      h('span', {class: st}, st === 'gone' ? 'deleted (retention)' : st)));
  const specBox = h('div', {id: 'arr-spec-box'});
  root.append(head, range, summary, h('h2', {}, 'Tasks'), legend, gridStatus, grid, pager, specBox);

  let arr = null;
  let missed = false; /* an event came while the first read was on the way */
  let closed = false;
  let start = Math.max(0, parseInt(params.get('from') || '0', 10) || 0);
  let end = -1;
  const cells = []; /* index - start -> its cell */
  const byJob = new Map(); /* a task's job id -> its index */
  /* A listing read before a job event must not undo what the event set on its cell: */
  let events = 0; /* the job events set on cells so far */
  const eventAt = new Map(); /* index -> `events` when one last set its cell */
  /* listings begun: one answered after a later one began is dropped (the first, read
     directly, may still be on its way when a throttled one begins) */
  let taskReads = 0;

  const act = async (btn, what) => {
    const body = {};
    for (const [k, el] of [['from', fromIn], ['to', toIn]]) {
      const v = el.value.trim();
      if (v === '') continue; /* from the first task, to the last */
      if (!/^\d+$/.test(v)) {
        toast(`${k} must be a task index (a whole number from 0)`, true);
        return;
      }
      body[k] = Number(v);
    }
    const last = arr.count - 1;
    /* the server checks these too; said here without a round trip */
    if ((body.from ?? 0) > last || (body.to ?? last) > last) {
      toast(`the tasks are numbered 0 to ${last}`, true);
      return;
    }
    if ((body.from ?? 0) > (body.to ?? last)) {
      toast(`from (${body.from}) must not be past to (${body.to ?? last})`, true);
      return;
    }
    btn.disabled = true;
    try {
      const r = await api('POST', `/v1/arrays/${encodeURIComponent(id)}/${what}`, body);
      toast(what === 'cancel' ? `${fmtInt(r.cancelled)} tasks cancelled.` : `${fmtInt(r.retried)} tasks queued again.`);
      refreshSummary();
      refreshTasks();
    } catch (e) {
      toast(e.message, true);
    }
    btn.disabled = false;
  };

  const render = () => {
    if (closed || !arr) return;
    const a = arr, c = a.counts || {};
    const can = app.session.can || {};
    clear(head).append(
      h('p', {}, h('a', {href: '#/arrays'}, '‹ Arrays')),
      h('h1', {}, 'Array ', a.name === null ? h('span', {class: 'id'}, shortId(a.id)) : h('span', {id: 'arr-name'}, a.name),
        ' ', badge(a.state)));
    cancelBtn.hidden = !(can.array_cancel && a.state === 'running');
    retryBtn.hidden = !(can.array_retry && (c.failed || c.cancelled));
    range.hidden = cancelBtn.hidden && retryBtn.hidden;
    toIn.setAttribute('placeholder', String(a.count - 1));
    fromIn.setAttribute('max', String(a.count - 1));
    toIn.setAttribute('max', String(a.count - 1));
    const counts = h('ul', {class: 'counts', id: 'arr-counts'});
    for (const st of ['queued', 'leased', 'running', 'succeeded', 'failed', 'cancelled'])
      counts.append(h('li', {'data-state': st}, badge(st), ' ', h('span', {class: 'n'}, fmtInt(c[st]))));
    counts.append(h('li', {'data-state': 'total'}, 'of ', h('span', {class: 'n'}, fmtInt(a.count))));
    const details = h('dl', {class: 'kv'});
    const kv = (k, v) => details.append(h('dt', {}, k), h('dd', {}, v));
    kv('id', h('span', {class: 'id', id: 'arr-id'}, a.id));
    kv('queue', h('a', {href: '#/jobs' + q({queue: a.queue})}, a.queue));
    if (a.owner) kv('owner', a.owner);
    kv('tasks', `${fmtInt(a.count)} (${a.kind})`);
    if (a.source) kv('objects under', a.source);
    kv('priority', a.priority);
    kv('created', fmtWhen(a.created_at));
    const prevSpec = specBox.querySelector('details.spec');
    const specOpen = !!(prevSpec && prevSpec.open); /* kept open across live refreshes */
    clear(summary).append(h('div', {class: 'card'}, countsBar(c, a.count), counts, details));
    clear(specBox).append(
      h('details', {class: 'card spec', open: specOpen}, h('summary', {}, 'Spec of each task (as stored, normalised)'),
        h('pre', {class: 'log', id: 'arr-spec'}, JSON.stringify(a.spec, null, 2))));
  };

  const setCell = (cell, t) => {
    cell.className = `cell ${t.state}`;
    cell.dataset.state = t.state;
    const i = Number(cell.dataset.index);
    let title = `task ${i}: ${t.state}`;
    if (t.attempt > 1) title += `, attempt ${t.attempt}`;
    if (t.agent) title += ` on ${t.agent}`;
    if (t.result && t.result.exit_code !== null && t.result.exit_code !== undefined) title += `, exit ${t.result.exit_code}`;
    cell.setAttribute('title', title);
    if (t.job) {
      cell.dataset.job = t.job;
      cell.setAttribute('href', `#/job/${encodeURIComponent(t.job)}`);
      byJob.set(t.job, i);
    }
  };

  /* The page's cells, one per task of start..end, made once; their states from the listing. */
  const drawCells = () => {
    const frag = document.createDocumentFragment();
    cells.length = 0;
    for (let i = start; i <= end; i++) {
      const cell = h('a', {class: 'cell gone', 'data-index': i, 'data-state': 'gone', title: `task ${i}: its job was deleted`});
      cells.push(cell);
      frag.append(cell);
    }
    grid.classList.toggle('roomy', end - start < 500); /* a small array's cells are bigger */
    clear(grid).append(frag);
  };

  const drawPager = () => {
    clear(pager);
    const n = arr.count;
    const link = (text, from, cls) => h('a', {href: `#/array/${encodeURIComponent(id)}` + q({from}), class: `page ${cls}`}, text);
    if (start > 0) pager.append(link('« First', 0, 'first'), link('‹ Previous', Math.max(0, start - ARRAY_PAGE), 'prev'));
    pager.append(h('span', {class: 'muted', id: 'arr-range-shown'}, `tasks ${fmtInt(start)}–${fmtInt(end)} of ${fmtInt(n)}`));
    if (end < n - 1) pager.append(link('Next ›', end + 1, 'next'), link('Last »', pageStart(n - 1), 'last'));
    if (n > ARRAY_PAGE) {
      const go = h('input', {type: 'number', id: 'arr-goto', min: 0, max: n - 1, step: 1, placeholder: 'task'});
      const form = h('form', {class: 'goto'}, go, h('button', {type: 'submit', class: 'secondary'}, 'Show'));
      form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const i = Number(go.value);
        if (Number.isInteger(i) && i >= 0 && i < n) location.hash = `#/array/${encodeURIComponent(id)}` + q({from: pageStart(i)});
        else toast(`a task is numbered 0 to ${n - 1}`, true);
      });
      pager.append(form);
    }
  };

  const loadTasks = async () => {
    if (!arr) return;
    const read = ++taskReads, seen = events;
    const tasks = [];
    let next = start;
    try {
      /* at most 1,000 tasks an answer: a page takes two or three (tasks deleted after
         their retention are left out of an answer) */
      for (let n = 0; next !== null && next <= end && n < 2 * ARRAY_PAGE / 1000 + 2; n++) {
        const r = await api('GET', `/v1/arrays/${encodeURIComponent(id)}/tasks` + q({from: next, to: end, limit: 1000}));
        tasks.push(...r.tasks);
        next = r.next_from;
      }
    } catch (e) {
      gridStatus.textContent = e.message;
      gridStatus.className = 'error';
      return;
    }
    if (closed || read !== taskReads) return;
    gridStatus.className = 'muted';
    gridStatus.textContent = arr.count > ARRAY_PAGE
      ? `${fmtInt(arr.count)} tasks: ${fmtInt(end - start + 1)} shown at a time (counts above are of all).` : '';
    const listed = new Set();
    for (const t of tasks) {
      const cell = cells[t.index - start];
      if (!cell) continue;
      listed.add(t.index);
      if ((eventAt.get(t.index) || 0) <= seen) setCell(cell, t); /* else the event is newer */
    }
    cells.forEach((cell, k) => {
      if (listed.has(start + k)) return;
      cell.className = 'cell gone';
      cell.dataset.state = 'gone';
    });
    if (events !== seen) refreshTasks(); /* events came meanwhile: what else changed, read again */
  };

  const loadSummary = async () => {
    const first = !arr;
    try {
      arr = await api('GET', `/v1/arrays/${encodeURIComponent(id)}`);
    } catch (e) {
      if (first) clear(head).append(h('p', {}, h('a', {href: '#/arrays'}, '‹ Arrays')), h('p', {class: 'error'}, e.message));
      else toast(e.message, true);
      return;
    }
    if (closed) return;
    if (first) {
      start = Math.min(pageStart(start), pageStart(arr.count - 1));
      end = Math.min(arr.count - 1, start + ARRAY_PAGE - 1);
      drawCells();
      drawPager();
    }
    render();
    if (first) {
      await loadTasks();
      /* what changed after those reads were answered but was told before: read it again */
      if (missed && !closed) { refreshSummary(); refreshTasks(); }
    }
  };
  const refreshSummary = throttle(loadSummary, 1000); /* counts of a big array cost the server a scan */
  const refreshTasks = throttle(loadTasks, 300);
  loadSummary();

  return {
    onEvent: (type, ev) => {
      if (!arr) { missed = true; return; }
      if (type === 'array.changed' || type === 'array.submitted') {
        if (ev.array === id) { refreshSummary(); refreshTasks(); }
        return;
      }
      if (type !== 'job') return;
      if (byJob.has(ev.job)) { /* a task of the page: its cell at once */
        const i = byJob.get(ev.job);
        const cell = cells[i - start];
        if (cell) {
          eventAt.set(i, ++events);
          setCell(cell, {state: ev.state, attempt: ev.attempt, agent: ev.agent, job: ev.job,
            result: ev.exit_code !== undefined ? {exit_code: ev.exit_code} : null});
        }
        refreshSummary();
        return;
      }
      const i = taskIndexOf(ev.job, id);
      if (i < 0 || i >= arr.count) return;
      refreshSummary();
      if (i >= start && i <= end) refreshTasks(); /* a new job of a task shown: read its id */
    },
    destroy: () => { closed = true; refreshSummary.cancel(); refreshTasks.cancel(); },
  };
}

/* ---- triggers ---- */

/* What sets a trigger off, as `drover trigger ls` says it: its prefix, or its schedule. */
const triggerOn = (t) => (t.schedule === null ? t.prefix
  : `schedule ${t.schedule}${t.timezone && t.timezone !== 'UTC' ? ' ' + t.timezone : ''}${t.overlap === 'skip' ? ' (overlap skip)' : ''}`);

/* What a trigger submits: "job" or "workflow", and its template's name when it has one. */
function triggerSubmits(t) {
  const kind = 'workflow' in t ? 'workflow' : 'job';
  const tmpl = t[kind] || {};
  return typeof tmpl.name === 'string' ? [kind, ' ', h('span', {class: 'name'}, tmpl.name)] : [kind];
}

function triggersView(params) {
  const after = params.get('after') || '';
  const back = (params.get('back') || '').split(',').filter(Boolean); /* the cursors of newer pages */
  const root = clear(main());
  const status = h('p', {class: 'muted', id: 'triggers-status'});
  const tbody = h('tbody', {id: 'triggers-body'});
  const pager = h('div', {class: 'pager'});
  root.append(h('h1', {}, 'Triggers'), status,
    h('div', {class: 'scroll'}, h('table', {id: 'triggers'}, h('thead', {}, h('tr', {},
      h('th', {}, 'id'), h('th', {}, 'on'), h('th', {class: 'hide-narrow'}, 'submits'), h('th', {}, 'next'),
      h('th', {class: 'hide-narrow'}, 'owner'), h('th', {class: 'hide-narrow'}, 'created'))), tbody)),
    pager);
  const load = async () => {
    let res;
    try {
      res = await api('GET', '/v1/triggers' + q({after, limit: 20}));
    } catch (e) {
      status.textContent = e.message;
      status.className = 'error';
      return;
    }
    status.className = 'muted';
    status.textContent = res.triggers.length ? ''
      : 'No triggers yet: drover trigger create makes an upload trigger or a schedule.';
    clear(tbody);
    for (const t of res.triggers) {
      tbody.append(h('tr', {'data-id': t.id, 'data-kind': t.schedule === null ? 'upload' : 'schedule'},
        h('td', {class: 'id'}, h('a', {href: `#/trigger/${encodeURIComponent(t.id)}`, title: t.id}, shortId(t.id))),
        h('td', {class: 'on'}, triggerOn(t)),
        h('td', {class: 'submits hide-narrow'}, triggerSubmits(t)),
        h('td', {class: 'next'}, t.paused
          ? h('span', {title: `paused since ${fmtTime(t.paused_at)}`}, badge('paused')) : fmtWhen(t.next_at)),
        h('td', {class: 'hide-narrow'}, t.owner || ''),
        h('td', {class: 'hide-narrow'}, fmtWhen(t.created_at))));
    }
    cursorPager(pager, '#/triggers', {}, after, back, res.next);
  };
  /* A fire moves its schedule's next time on. (Triggers made, paused, resumed or deleted are
     no event.) */
  const refresh = throttle(load, 1000);
  load();
  return {
    onEvent: (type) => { if (type.startsWith('trigger.')) refresh(); },
    destroy: () => refresh.cancel(),
  };
}

/* ---- one trigger ---- */

function triggerView(id) {
  const root = clear(main());
  const head = h('div', {id: 'trig-head'});
  /* Made once, so that the redraws (a schedule may fire each second) keep its first click. */
  const delBtn = h('button', {type: 'button', class: 'secondary', id: 'trig-delete', hidden: true});
  const pauseBtn = h('button', {type: 'button', class: 'secondary', id: 'trig-pause', hidden: true});
  const editBtn = h('button', {type: 'button', class: 'secondary', id: 'trig-edit', hidden: true}, 'Edit…');
  /* The editor (PUT /v1/triggers/{id}, a whole trigger as POST takes it): made once, so that
     what is typed survives the redraws that fires and changes made elsewhere bring. */
  const field = (label, el) => h('label', {}, label, el);
  const teSchedule = h('input', {type: 'text', id: 'te-schedule', name: 'schedule', autocomplete: 'off'});
  const teZone = h('input', {type: 'text', id: 'te-timezone', name: 'timezone', autocomplete: 'off', placeholder: 'UTC'});
  const teOverlap = h('select', {id: 'te-overlap', name: 'overlap'},
    h('option', {value: 'allow'}, 'allow'), h('option', {value: 'skip'}, 'skip'));
  const tePrefix = h('input', {type: 'text', id: 'te-prefix', name: 'prefix', autocomplete: 'off'});
  const teInput = h('input', {type: 'text', id: 'te-input', name: 'input', autocomplete: 'off', placeholder: 'none'});
  const teTemplate = h('textarea', {id: 'te-template', name: 'template', rows: 14, spellcheck: 'false'});
  const teTemplateLabel = h('span', {});
  const teError = h('p', {class: 'error', id: 'te-error', hidden: true});
  const teSchedFields = h('div', {class: 'filters'}, field('Schedule', teSchedule),
    field('Time zone', teZone), field('Overlap', teOverlap));
  const teUploadFields = h('div', {class: 'filters'}, field('Prefix', tePrefix),
    field('Input argument', teInput));
  const editor = h('form', {class: 'card editor', id: 'trig-editor', hidden: true},
    teSchedFields, teUploadFields, h('label', {class: 'template'}, teTemplateLabel, teTemplate), teError,
    h('div', {class: 'actions'}, h('button', {type: 'submit', id: 'te-save'}, 'Save'),
      h('button', {type: 'button', class: 'secondary', id: 'te-cancel', onclick: () => closeEditor()}, 'Cancel')));
  const details = h('dl', {class: 'kv', id: 'trig-details'});
  const template = h('pre', {class: 'log', id: 'trig-template'});
  const firesHead = h('tr', {});
  const fires = h('tbody', {id: 'trig-fires-body'});
  const firesStatus = h('p', {class: 'muted', id: 'trig-fires-status'});
  const body = h('div', {id: 'trig-body', hidden: true},
    h('div', {class: 'grid2'},
      h('div', {}, h('h2', {}, 'Details'), h('div', {class: 'card'}, details)),
      h('div', {}, h('h2', {}, 'Template (as given)'), template)),
    h('h2', {}, 'Recent fires ', h('span', {class: 'muted'}, '(the 50 newest)')), firesStatus,
    h('div', {class: 'scroll'}, h('table', {id: 'trig-fires'}, h('thead', {}, firesHead), fires)));
  root.append(head, h('div', {class: 'actions'}, editBtn, pauseBtn, delBtn), editor, body);

  let trig = null;
  let closed = false;
  let armed = false;
  let reads = 0; /* the newest read: an older one answered after it is dropped */
  let seen = null; /* the fires shown, to mark the new ones */

  const schedule = () => trig.schedule !== null;
  const setButton = () => {
    delBtn.textContent = armed
      ? (schedule() ? 'Delete this schedule? It fires no more; its runs go on.'
        : 'Delete this trigger? Uploads fire it no more; its runs go on.')
      : (schedule() ? 'Delete schedule…' : 'Delete trigger…');
    delBtn.classList.toggle('danger', armed);
  };
  /* The first click asks, the second deletes (no browser dialog). */
  delBtn.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      setButton();
      return;
    }
    delBtn.disabled = true;
    try {
      await api('DELETE', `/v1/triggers/${encodeURIComponent(id)}`);
      closed = true;
      toast(schedule() ? 'Schedule deleted.' : 'Trigger deleted.');
      location.hash = '#/triggers';
      return;
    } catch (e) {
      toast(e.message, true);
    }
    armed = false;
    delBtn.disabled = false;
    setButton();
  });

  const kindOf = (t) => ('workflow' in t ? 'workflow' : 'job');
  const closeEditor = () => {
    editor.hidden = true;
    editBtn.hidden = !(app.session.can || {}).trigger_delete;
  };
  /* Edit: the form gets the trigger as it is now; what it replaces is all of it. */
  editBtn.addEventListener('click', () => {
    const t = trig;
    teSchedFields.hidden = !schedule();
    teUploadFields.hidden = schedule();
    teSchedule.value = t.schedule || '';
    teZone.value = t.timezone || '';
    teOverlap.value = t.overlap || 'allow';
    tePrefix.value = t.prefix || '';
    teInput.value = t.input || '';
    teTemplateLabel.textContent = `What it submits (the ${kindOf(t)}, JSON)`;
    teTemplate.value = JSON.stringify(t[kindOf(t)], null, 2);
    teError.hidden = true;
    editor.hidden = false;
    editBtn.hidden = true;
    (schedule() ? teSchedule : tePrefix).focus();
  });
  editor.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const kind = kindOf(trig);
    const fail = (msg) => { teError.textContent = msg; teError.hidden = false; };
    let template;
    try {
      template = JSON.parse(teTemplate.value);
    } catch (e) {
      fail(`the ${kind} is not JSON: ${e.message}`);
      return;
    }
    if (template === null || typeof template !== 'object' || Array.isArray(template)) {
      fail(`the ${kind} must be a JSON object`);
      return;
    }
    const body = {[kind]: template};
    if (schedule()) {
      body.schedule = teSchedule.value.trim();
      body.overlap = teOverlap.value;
      if (teZone.value.trim()) body.timezone = teZone.value.trim();
    } else {
      body.prefix = tePrefix.value.trim();
      if (teInput.value.trim()) body.input = teInput.value.trim();
    }
    const save = editor.querySelector('#te-save');
    save.disabled = true;
    try {
      const t = await api('PUT', `/v1/triggers/${encodeURIComponent(id)}`, body);
      if (closed) return;
      ++reads;
      trig = {...trig, ...t};
      closeEditor();
      render();
      toast(schedule() ? 'Schedule changed: its new times count from now.' : 'Trigger changed.');
      refresh();
    } catch (e) {
      /* the server names what is wrong (400), or why it cannot be (409) */
      fail(e.body && e.body.error && e.body.error.field ? `${e.body.error.field}: ${e.message}` : e.message);
    }
    save.disabled = false;
  });

  /* Pause (an upload trigger's fires wait, a schedule's times pass unfired) or resume: the
     same roles as the delete, so its `can` says who sees the button. Its answer is the
     trigger without its fires: those shown stay, and a read begun before it is dropped. */
  pauseBtn.addEventListener('click', async () => {
    const verb = trig.paused ? 'resume' : 'pause';
    pauseBtn.disabled = true;
    try {
      const t = await api('POST', `/v1/triggers/${encodeURIComponent(id)}/${verb}`);
      if (closed) return;
      ++reads;
      trig = {...trig, ...t};
      render();
      toast(verb === 'pause'
        ? (schedule() ? 'Schedule paused: its times pass unfired.' : 'Trigger paused: its fires wait.')
        : (schedule() ? 'Schedule resumed: it fires from its next time.' : 'Trigger resumed: its waiting fires go.'));
      refresh();
    } catch (e) {
      toast(e.message, true);
    }
    pauseBtn.disabled = false;
  });

  const fireRow = (f) => {
    const kind = 'workflow' in f ? 'workflow' : 'job';
    const key = f.time || `${f.uri} ${f.sha256}`;
    const row = h('tr', {'data-state': f.state, 'data-key': key},
      h('td', {class: 'what'}, f.time !== undefined ? fmtWhen(f.time)
        : [h('span', {title: `sha256 ${f.sha256}`}, f.uri), ' ',
          h('span', {class: 'muted', title: 'sha256'}, (f.sha256 || '').slice(0, 12))]),
      h('td', {}, badge(f.state)),
      h('td', {class: 'id'}, f[kind]
        ? h('a', {href: `#/${kind}/${encodeURIComponent(f[kind])}`, title: f[kind], class: 'run'}, shortId(f[kind])) : ''),
      h('td', {}, f.error ? h('span', {class: 'error'}, f.error) : ''),
      h('td', {class: 'hide-narrow'}, fmtWhen(f.fired_at)));
    if (seen && !seen.has(key + f.state)) row.classList.add('fresh');
    return row;
  };

  const render = () => {
    const t = trig;
    const can = app.session.can || {};
    const kind = 'workflow' in t ? 'workflow' : 'job';
    clear(head).append(
      h('p', {}, h('a', {href: '#/triggers'}, '‹ Triggers')),
      h('h1', {}, schedule() ? 'Schedule ' : 'Upload trigger ', h('span', {class: 'id'}, shortId(t.id)),
        t.paused ? [' ', badge('paused')] : null));
    delBtn.hidden = !can.trigger_delete;
    pauseBtn.hidden = !can.trigger_delete; /* POST …/pause|resume: the roles of the delete */
    editBtn.hidden = !can.trigger_delete || !editor.hidden; /* PUT: the roles of the delete too */
    pauseBtn.textContent = t.paused ? 'Resume' : 'Pause';
    pauseBtn.title = t.paused
      ? (schedule() ? 'It fires again from its next time (not for the times it was paused).'
        : 'Its fires that waited are submitted, and new ones go at once.')
      : (schedule() ? 'Its times pass unfired until it is resumed.'
        : 'Uploads still record fires, which wait until it is resumed.');
    setButton();
    clear(details);
    const kv = (k, v) => details.append(h('dt', {}, k), h('dd', {}, v));
    kv('id', h('span', {class: 'id', id: 'trig-id'}, t.id));
    kv('kind', schedule() ? 'schedule' : 'upload trigger');
    kv('state', t.paused
      ? h('span', {id: 'trig-state', 'data-paused': 'yes'}, 'paused since ', fmtWhen(t.paused_at))
      : h('span', {id: 'trig-state', 'data-paused': 'no'}, 'active'));
    if (schedule()) {
      kv('schedule', [h('span', {id: 'trig-schedule'}, t.schedule), h('span', {class: 'muted'}, ` (${t.timezone || 'UTC'})`)]);
      kv('overlap', t.overlap === 'skip' ? 'skip (a time is skipped while the run before goes on)' : 'allow');
      kv('next', h('span', {id: 'trig-next'}, t.paused ? h('span', {class: 'muted'}, 'none while paused') : fmtWhen(t.next_at)));
    } else {
      kv('prefix', h('span', {id: 'trig-prefix'}, t.prefix));
      kv('input', t.input === null ? h('span', {class: 'muted'}, '—') : t.input);
    }
    kv('submits', h('span', {id: 'trig-submits'}, triggerSubmits(t)));
    if (t.owner) kv('owner', t.owner);
    kv('created', fmtWhen(t.created_at));
    if (t.updated_at) kv('changed', h('span', {id: 'trig-updated'}, fmtWhen(t.updated_at)));
    template.textContent = JSON.stringify(t[kind], null, 2);
    clear(firesHead).append(h('th', {}, schedule() ? 'time' : 'object'), h('th', {}, 'state'),
      h('th', {}, kind), h('th', {}, 'error'), h('th', {class: 'hide-narrow'}, 'fired'));
    firesStatus.textContent = t.fires.length ? ''
      : schedule() ? 'No fires yet: the first comes at the next time.'
        : 'No fires yet: each object uploaded under the prefix fires it once.';
    clear(fires).append(...t.fires.map(fireRow));
    seen = new Set(t.fires.map((f) => (f.time || `${f.uri} ${f.sha256}`) + f.state));
    body.hidden = false;
  };

  const load = async () => {
    const first = !trig;
    const n = ++reads;
    let t;
    try {
      t = await api('GET', `/v1/triggers/${encodeURIComponent(id)}`);
    } catch (e) {
      if (closed || n !== reads) return;
      if (first) clear(head).append(h('p', {}, h('a', {href: '#/triggers'}, '‹ Triggers')), h('p', {class: 'error'}, e.message));
      else toast(e.message, true);
      return;
    }
    if (closed || n !== reads) return;
    trig = t;
    render();
  };
  const refresh = throttle(load, 500);
  load();
  /* Deleted (here, or elsewhere): nothing more to read. */
  const gone = () => {
    if (closed) return;
    closed = true;
    refresh.cancel();
    pauseBtn.disabled = delBtn.disabled = editBtn.disabled = true;
    editor.hidden = true;
    clear(head).append(h('p', {}, h('a', {href: '#/triggers'}, '‹ Triggers')), h('p', {}, 'This trigger was deleted.'));
  };
  return {
    onEvent: (type, ev) => {
      if (!type.startsWith('trigger.') || ev.trigger !== id) return;
      if (type === 'trigger.deleted') gone();
      else refresh();
    },
    destroy: () => { closed = true; refresh.cancel(); },
  };
}

/* ---- queues ---- */

const CHART_MINUTES = 30;
const STATS_MS = 5000;

function queuesView() {
  const root = clear(main());
  const status = h('p', {class: 'muted'});
  const tbody = h('tbody', {id: 'queues-body'});
  const charts = h('div', {class: 'charts', id: 'charts'});
  /* A queue's max_running (PUT /v1/queues/{name}), an admin's: the same role as a pause, so the
     pause's `can` says who sees the form. Made once, so that what is typed survives redraws. */
  const mayLimit = !!(app.session.can || {}).queue_pause;
  const limitName = h('input', {type: 'text', id: 'limit-queue', name: 'queue', required: true,
    list: 'limit-queues', autocomplete: 'off', placeholder: 'queue'});
  const limitMax = h('input', {type: 'number', id: 'limit-max', name: 'max_running', min: 0,
    max: 1000000, step: 1, placeholder: 'no limit'});
  const limitNames = h('datalist', {id: 'limit-queues'});
  const limitForm = h('form', {class: 'filters', id: 'queue-limit', hidden: !mayLimit},
    h('label', {}, 'Queue', limitName),
    h('label', {}, 'At most running at once', limitMax),
    h('button', {type: 'submit', class: 'secondary'}, 'Set limit'), limitNames);
  root.append(h('h1', {}, 'Queues'), status,
    h('div', {class: 'scroll'}, h('table', {id: 'queues'}, h('thead', {}, h('tr', {},
      h('th', {}, 'queue'), h('th', {class: 'num'}, 'queued'), h('th', {class: 'num'}, 'running'),
      h('th', {class: 'num', title: 'max_running: at most that many of its jobs leased or running at once'}, 'limit'),
      h('th', {class: 'num'}, 'succeeded'), h('th', {class: 'num'}, 'failed'),
      h('th', {class: 'num'}, 'cancelled'), h('th', {class: 'num'}, 'agents'),
      h('th', {class: 'num'}, 'oldest waiting'), h('th', {class: 'num'}, 'mean wait'),
      h('th', {}, ''))), tbody)),
    limitForm,
    h('h2', {}, `Throughput, jobs finished per minute (last ${CHART_MINUTES} minutes)`),
    h('p', {class: 'legend'}, h('span', {class: 'ok'}, 'succeeded'), h('span', {class: 'bad'}, 'failed')),
    charts);

  /* Counts follow every change (GET /v1/queues is cheap); the chart and the waits read up to
     3,000 jobs a queue, so they are refreshed at most every STATS_MS. */
  let stats = new Map(), statsAt = 0;
  /* Pause (no job of it is leased) or resume a queue: an admin's. */
  const pauseOrResume = async (qu, btn) => {
    btn.disabled = true;
    const verb = qu.paused ? 'resume' : 'pause';
    try {
      await api('POST', `/v1/queues/${encodeURIComponent(qu.name)}/${verb}`);
      toast(qu.paused ? `Queue ${qu.name} runs again.` : `Queue ${qu.name} is paused: its jobs wait.`);
      refresh();
    } catch (e) {
      toast(e.message, true);
      btn.disabled = false;
    }
  };
  /* Set (a number) or lift (empty, or 0) a queue's max_running: an admin's. */
  limitForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = limitName.value.trim(), v = limitMax.value.trim();
    if (limitMax.validity.badInput || (v !== '' && !/^\d+$/.test(v))) {
      toast('the limit must be a whole number from 1 to 1,000,000, or empty for none', true);
      return;
    }
    const max = v === '' ? 0 : Number(v);
    const btn = limitForm.querySelector('button');
    btn.disabled = true;
    try {
      const r = await api('PUT', `/v1/queues/${encodeURIComponent(name)}`, {max_running: max || null});
      toast(r.max_running ? `Queue ${r.name}: at most ${fmtInt(r.max_running)} jobs running at once (${fmtInt(r.running)} now).`
        : `Queue ${r.name}: no limit.`);
      refresh();
    } catch (e) {
      toast(e.message, true);
    } finally {
      btn.disabled = false;
    }
  });
  /* A click on a queue's limit fills the form with it. */
  const editLimit = (qu) => {
    limitName.value = qu.name;
    limitMax.value = qu.max_running || '';
    limitMax.focus();
  };
  const load = async () => {
    let queues;
    try {
      queues = await api('GET', '/v1/queues');
    } catch (e) {
      status.textContent = e.message;
      status.className = 'error';
      return;
    }
    status.textContent = queues.length ? '' : 'No queues yet: a queue appears with its first job.';
    if (Date.now() - statsAt >= STATS_MS) {
      statsAt = Date.now();
      const shown = queues.slice(0, 50);
      const got = await Promise.all(shown.map((qu) => queueStats(qu.name).catch(() => null)));
      stats = new Map(shown.map((qu, i) => [qu.name, got[i]]));
      clear(charts);
      for (const qu of shown) {
        const st = stats.get(qu.name);
        if (st) charts.append(h('div', {class: 'card', 'data-queue': qu.name}, h('strong', {}, qu.name), chart(st.buckets)));
      }
    } else {
      statsLater();
    }
    clear(tbody);
    const can = app.session.can || {};
    if (mayLimit) clear(limitNames).append(...queues.map((qu) => h('option', {value: qu.name})));
    for (const qu of queues) {
      const st = stats.get(qu.name);
      const limit = qu.max_running ? fmtInt(qu.max_running) : '—';
      tbody.append(h('tr', {'data-queue': qu.name, 'data-paused': qu.paused ? 'yes' : 'no',
        'data-limit': qu.max_running || ''},
        h('td', {}, h('a', {href: '#/jobs' + q({queue: qu.name})}, qu.name),
          qu.paused ? [' ', h('span', {title: `paused since ${fmtTime(qu.paused_at)}`}, badge('paused'))] : null),
        h('td', {class: 'num'}, qu.queued), h('td', {class: 'num'}, qu.running),
        h('td', {class: 'num limit'}, mayLimit
          ? h('button', {type: 'button', class: 'link set-limit', title: `change ${qu.name}'s limit`,
            onclick: () => editLimit(qu)}, limit) : limit),
        h('td', {class: 'num'}, qu.succeeded), h('td', {class: 'num'}, qu.failed),
        h('td', {class: 'num'}, qu.cancelled), h('td', {class: 'num'}, qu.listeners),
        h('td', {class: 'num'}, st && st.oldest ? fmtDuration(Date.now() - st.oldest) : '—'),
        h('td', {class: 'num'}, st && st.meanWait !== null ? fmtDuration(st.meanWait) : '—'),
        h('td', {}, can.queue_pause
          ? h('button', {type: 'button', class: 'secondary pause', onclick: (ev) => pauseOrResume(qu, ev.target)},
            qu.paused ? 'Resume' : 'Pause') : null)));
    }
  };
  const refresh = throttle(load, 1000);
  let statsTimer = null; /* the newest changes reach the chart too, once it is due */
  const statsLater = () => {
    if (!statsTimer) statsTimer = setTimeout(() => { statsTimer = null; refresh(); }, statsAt + STATS_MS - Date.now());
  };
  const tick = setInterval(refresh, 30000); /* the chart's window moves on */
  load();
  return {
    onEvent: (type) => { if (type === 'job' || type.startsWith('queue.')) refresh(); },
    destroy: () => { refresh.cancel(); clearTimeout(statsTimer); clearInterval(tick); },
  };
}

/*
 * A queue's figures from its newest jobs (at most 1,000 of each state): jobs
 * finished per minute, the mean wait (created to started) of the jobs that
 * finished in the window, and the age of its oldest queued job among those.
 */
async function queueStats(name) {
  const list = (state) => api('GET', '/v1/jobs' + q({queue: name, state, limit: 1000})).then((r) => r.jobs);
  const [ok, bad, queued] = await Promise.all([list('succeeded'), list('failed'), list('queued')]);
  const now = Date.now();
  const start = Math.floor(now / 60000) * 60000 - (CHART_MINUTES - 1) * 60000;
  const buckets = Array.from({length: CHART_MINUTES}, (_, i) => ({t: start + i * 60000, ok: 0, bad: 0}));
  let waitSum = 0, waitN = 0;
  for (const [jobs, key] of [[ok, 'ok'], [bad, 'bad']]) {
    for (const j of jobs) {
      const t = new Date(j.finished_at).getTime();
      if (!(t >= start)) continue;
      const i = Math.floor((t - start) / 60000);
      if (i < CHART_MINUTES) buckets[i][key]++;
      if (j.started_at) { waitSum += new Date(j.started_at) - new Date(j.created_at); waitN++; }
    }
  }
  const oldest = queued.length ? new Date(queued[queued.length - 1].created_at).getTime() : null;
  return {buckets, meanWait: waitN ? waitSum / waitN : null, oldest};
}

/* A bar chart (succeeded stacked on failed) in inline SVG, drawn here: no library. */
function chart(buckets) {
  const W = 300, H = 110, top = 12, bottom = 16, left = 24;
  const max = Math.max(1, ...buckets.map((b) => b.ok + b.bad));
  const bw = (W - left) / buckets.length;
  const y = (v) => (H - bottom) - v / max * (H - bottom - top);
  const svg = h('svg:svg', {class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': `jobs finished per minute, at most ${max}`});
  svg.append(h('svg:line', {class: 'axis', x1: left, y1: H - bottom, x2: W, y2: H - bottom}));
  svg.append(h('svg:text', {x: 0, y: top + 4}, String(max)));
  svg.append(h('svg:text', {x: 0, y: H - bottom}, '0'));
  buckets.forEach((b, i) => {
    const x = left + i * bw + 1;
    const title = `${fmtTime(new Date(b.t).toISOString())}: ${b.ok} succeeded, ${b.bad} failed`;
    if (b.bad) svg.append(h('svg:rect', {class: 'bad', x, width: bw - 2, y: y(b.bad), height: (H - bottom) - y(b.bad)},
      h('svg:title', {}, title)));
    if (b.ok) svg.append(h('svg:rect', {class: 'ok', x, width: bw - 2, y: y(b.ok + b.bad), height: y(b.bad) - y(b.ok + b.bad)},
      h('svg:title', {}, title)));
  });
  const t0 = new Date(buckets[0].t).toISOString(), t1 = new Date(buckets[buckets.length - 1].t).toISOString();
  svg.append(h('svg:text', {x: left, y: H - 3}, fmtTime(t0).slice(0, 5)));
  svg.append(h('svg:text', {x: W - 28, y: H - 3}, fmtTime(t1).slice(0, 5)));
  return svg;
}

/* ---- agents ---- */

function agentsView() {
  const root = clear(main());
  const status = h('p', {class: 'muted'});
  const tbody = h('tbody', {id: 'agents-body'});
  root.append(h('h1', {}, 'Agents'), status,
    h('div', {class: 'scroll'}, h('table', {id: 'agents'}, h('thead', {}, h('tr', {},
      h('th', {}, 'name'), h('th', {}, 'state'), h('th', {}, ''), h('th', {class: 'num'}, 'slots used'),
      h('th', {class: 'num'}, 'running'), h('th', {}, 'last seen'), h('th', {}, 'queues'),
      h('th', {class: 'hide-narrow'}, 'labels'), h('th', {class: 'hide-narrow'}, 'version'))), tbody)));

  const drain = async (a, btn) => {
    btn.disabled = true;
    try {
      await api('POST', `/v1/agents/${encodeURIComponent(a.id)}/drain`);
      toast(`Agent ${a.name} drains.`);
      refresh();
    } catch (e) {
      toast(e.message, true);
      btn.disabled = false;
    }
  };
  const load = async () => {
    let agents;
    try {
      agents = await api('GET', '/v1/agents');
    } catch (e) {
      status.textContent = e.message;
      status.className = 'error';
      return;
    }
    if (!Array.isArray(agents)) agents = agents.agents || [];
    status.textContent = agents.length ? '' : 'No agent has registered.';
    clear(tbody);
    const can = app.session.can || {};
    for (const a of agents) {
      tbody.append(h('tr', {'data-agent': a.name, 'data-state': a.state},
        h('td', {}, a.name), h('td', {}, badge(a.state)),
        h('td', {}, can.drain && a.state === 'up'
          ? h('button', {type: 'button', class: 'secondary drain', onclick: (ev) => drain(a, ev.target)}, 'Drain') : null),
        h('td', {class: 'num'}, `${a.slots - a.free_slots} / ${a.slots}`),
        h('td', {class: 'num'}, h('a', {href: '#/jobs' + q({agent: a.name, state: 'running'}), class: 'running'},
          Array.isArray(a.running) ? a.running.length : a.running)),
        h('td', {}, h('span', {title: a.last_seen}, ago(a.last_seen))),
        h('td', {}, (a.queues || []).join(', ')),
        h('td', {class: 'hide-narrow'}, labelsOf(a.labels)),
        h('td', {class: 'hide-narrow'}, a.version || '')));
    }
  };
  const refresh = throttle(load, 500);
  const tick = setInterval(refresh, 5000); /* "last seen" moves on */
  load();
  return {
    onEvent: (type) => { if (type === 'job' || type === 'agent') refresh(); },
    destroy: () => { refresh.cancel(); clearInterval(tick); },
  };
}

/* ---- tokens (admins) ---- */

function tokensView() {
  const root = clear(main());
  const status = h('p', {class: 'muted'});
  const tbody = h('tbody', {id: 'tokens-body'});
  const name = h('input', {name: 'name', id: 'tok-name', placeholder: 'name', required: true,
    pattern: '[A-Za-z0-9._-]{1,64}', autocomplete: 'off'});
  const role = h('select', {name: 'role', id: 'tok-role'},
    ['client', 'agent', 'admin'].map((r) => h('option', {value: r}, r)));
  const tenant = h('input', {name: 'tenant', id: 'tok-tenant', placeholder: 'tenant (default: its name)',
    autocomplete: 'off'});
  const err = h('p', {class: 'error', id: 'tok-error'});
  /* A new token's secret, shown once: the server keeps only its hash. */
  const secret = h('div', {id: 'tok-secret', hidden: true});
  const form = h('form', {id: 'tok-form', class: 'filters'}, name, role, tenant,
    h('button', {type: 'submit'}, 'Create token'));
  root.append(h('h1', {}, 'Tokens'), form, err, secret, status,
    h('div', {class: 'scroll'}, h('table', {id: 'tokens'}, h('thead', {}, h('tr', {},
      h('th', {}, 'name'), h('th', {}, 'role'), h('th', {}, 'tenant'), h('th', {}, 'created'),
      h('th', {}, ''))), tbody)));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    const body = {name: name.value.trim(), role: role.value};
    if (tenant.value.trim()) body.tenant = tenant.value.trim();
    try {
      const t = await api('POST', '/v1/tokens', body);
      clear(secret).append(
        h('p', {}, `Token ${t.name} (${t.role}, tenant ${t.tenant}) — its secret, shown this once:`),
        h('pre', {class: 'secret'}, h('code', {id: 'tok-secret-value'}, t.token)));
      secret.hidden = false;
      name.value = '';
      tenant.value = '';
      load();
    } catch (e) {
      err.textContent = e.message;
    }
  });

  /* The first click asks, the second revokes (no browser dialog). */
  const revokeButton = (t) => {
    let armed = false;
    const btn = h('button', {type: 'button', class: 'secondary revoke'}, 'Revoke…');
    btn.addEventListener('click', async () => {
      if (!armed) {
        armed = true;
        btn.textContent = `Revoke ${t.name}? Its calls are refused from now on.`;
        btn.classList.add('danger');
        return;
      }
      btn.disabled = true;
      try {
        await api('DELETE', `/v1/tokens/${encodeURIComponent(t.name)}`);
        toast(`Token ${t.name} revoked.`);
        load();
      } catch (e) {
        toast(e.message, true);
        btn.disabled = false;
      }
    });
    return btn;
  };
  const load = async () => {
    let res;
    try {
      res = await api('GET', '/v1/tokens');
    } catch (e) {
      status.textContent = e.message;
      status.className = 'error';
      return;
    }
    status.textContent = '';
    clear(tbody).append(...res.tokens.map((t) => h('tr', {'data-token': t.name},
      h('td', {}, t.name), h('td', {}, t.role), h('td', {}, t.tenant),
      h('td', {}, h('span', {title: t.created_at}, fmtWhen(t.created_at))),
      /* a token cannot revoke itself: not the one this session signed in with */
      h('td', {}, t.name === app.session.name ? h('span', {class: 'muted'}, 'this session') : revokeButton(t)))));
  };
  load();
  return {destroy: () => {}};
}

/* ---- start ---- */

window.addEventListener('hashchange', route);
document.getElementById('signout').addEventListener('click', signOut);
api('GET', '/v1/session').then((s) => { app.session = s; signedIn(); }, () => showSignIn(''));
