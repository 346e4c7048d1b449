/*
 * The dashboard in a real browser: Debian's chromium driven by playwright-core,
 * against a real drover server and agent that tests/e2e/test_dashboard_browser.py
 * starts (it passes DROVER_URL, DROVER_TOKEN, DROVER_AGENT and DROVER_SHOTS).
 *
 * Run with node's own test runner: node --test tests/browser/dashboard.test.mjs.
 * The tests share one browser page and run in order (sign in first, drain last).
 */
import {after, before, describe, it} from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {chromium} from 'playwright-core';

const URL_ = process.env.DROVER_URL;
const TOKEN = process.env.DROVER_TOKEN;
const AGENT = process.env.DROVER_AGENT;
const SHOTS = process.env.DROVER_SHOTS;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
for (const [k, v] of Object.entries({DROVER_URL: URL_, DROVER_TOKEN: TOKEN, DROVER_AGENT: AGENT, DROVER_SHOTS: SHOTS}))
  if (!v) throw new Error(`${k} is not set: run this through tests/e2e/test_dashboard_browser.py`);
if (!fs.existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: run scripts/deps.sh test`);

const DESKTOP = {width: 1280, height: 860};
const PHONE = {width: 390, height: 844};

/* The API with the admin token, as a script would call it. */
async function api(method, p, body) {
  const r = await fetch(URL_ + p, {method, headers: {Authorization: `Bearer ${TOKEN}`,
    'Content-Type': 'application/json'}, body: body === undefined ? undefined : JSON.stringify(body)});
  const text = await r.text();
  return {status: r.status, body: text ? JSON.parse(text) : null};
}

async function submit(spec) {
  const r = await api('POST', '/v1/jobs', {retry: {max_attempts: 1}, ...spec});
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const jobState = async (id) => (await api('GET', `/v1/jobs/${id}`)).body.state;

let browser, context, page;
const problems = []; /* page errors, CSP violations, dialogs: none may happen */
/* URLs a test expects a 400 from: bad input the page cannot check itself (a schedule's
   expression), which the server names and the page shows. */
const expected400 = new Set();

async function shot(name) {
  for (const [size, vp] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewportSize(vp);
    await page.waitForTimeout(150);
    const file = path.join(SHOTS, `${name}-${size}.png`);
    await page.screenshot({path: file, fullPage: true});
    /* At a phone's width nothing may stick out sideways: wide tables scroll in their own box. */
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${name} at ${size} width is ${overflow} px wider than the window`);
  }
  await page.setViewportSize(DESKTOP);
}

describe('dashboard', () => {
  before(async () => {
    fs.mkdirSync(SHOTS, {recursive: true});
    browser = await chromium.launch({executablePath: CHROMIUM, args: ['--no-sandbox']});
    context = await browser.newContext({viewport: DESKTOP});
    page = await context.newPage();
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    /* Errors on drover's pages only (the cross-site test's page has its own, expected). */
    page.on('console', (m) => {
      if (m.type() === 'error' && page.url().startsWith(URL_) && !/status of 40[13]/.test(m.text()) &&
          !(/status of 400/.test(m.text()) && expected400.has(m.location().url)))
        problems.push(`console: ${m.text()}`);
    });
    /* A 400 or a 404 is a bug of the page (it checks what it sends, and does not read what
       it saw deleted): say which call, for the log. */
    page.on('response', (r) => { if (r.status() === 400 || r.status() === 404) console.log(`${r.status()} from ${r.request().method()} ${r.url()}`); });
    page.on('dialog', (d) => { problems.push(`dialog: ${d.message()}`); d.dismiss(); });
  });

  after(async () => {
    if (browser) await browser.close();
    console.log(`screenshots in ${SHOTS}`);
  });

  it('signs in with a token; the session cookie is HttpOnly and SameSite=Strict', async () => {
    await page.goto(URL_ + '/');
    await page.waitForSelector('#signin');
    await shot('signin');
    await page.fill('#token', 'drv_wrong');
    await page.click('#signin button[type=submit]');
    await page.waitForFunction(() => (document.getElementById('signin-error')?.textContent ?? '').includes('invalid token'));
    await page.fill('#token', TOKEN);
    await page.click('#signin button[type=submit]');
    await page.waitForSelector('#jobs');
    assert.match(await page.textContent('#who'), /admin/);
    const cookies = await context.cookies();
    const c = cookies.find((x) => x.name === 'drover_session');
    assert.ok(c, `no drover_session cookie in ${JSON.stringify(cookies)}`);
    assert.equal(c.httpOnly, true);
    assert.equal(c.sameSite, 'Strict');
    assert.equal(c.path, '/');
    assert.ok(c.expires > Date.now() / 1000, 'the cookie has an expiry');
    assert.equal(await page.evaluate(() => document.cookie.includes('drover_session')), false,
      'scripts must not see the session cookie');
    assert.doesNotMatch(c.value, new RegExp(TOKEN.slice(4)), 'the cookie is not the token');
    await page.waitForSelector('#live.on');
  });

  it('shows a job submitted through the API appear and finish live, within a second each', async () => {
    await page.evaluate(() => { window.__notReloaded = true; });
    const id = await submit({name: 'live-job', command: {shell: 'echo live'}});
    const t0 = Date.now();
    await page.waitForSelector(`#jobs tr[data-id="${id}"]`, {timeout: 1000});
    const appeared = Date.now() - t0;
    await until('the job to succeed', async () => (await jobState(id)) === 'succeeded');
    const t1 = Date.now();
    await page.waitForSelector(`#jobs tr[data-id="${id}"][data-state="succeeded"]`, {timeout: 1000});
    console.log(`job appeared after ${appeared} ms, shown succeeded ${Date.now() - t1} ms after the API said so`);
    assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was reloaded');
  });

  it('searches jobs by name and filters them by state, queue and label', async () => {
    const a = await submit({name: 'Needle-in-haystack', queue: 'default', labels: {team: 'blue'}, command: {shell: 'true'}});
    const b = await submit({name: 'other hay', labels: {team: 'red'}, command: {shell: 'true'}});
    await until('both jobs to end', async () => (await jobState(a)) === 'succeeded' && (await jobState(b)) === 'succeeded');
    await page.fill('#f-name', 'needle');
    await page.click('#filters button[type=submit]');
    await page.waitForFunction((id) => {
      const rows = document.querySelectorAll('#jobs-body tr');
      return rows.length === 1 && rows[0].dataset.id === id;
    }, a);
    await page.goto(URL_ + '/#/jobs?label=team:red&state=succeeded');
    await page.waitForFunction((id) => {
      const rows = [...document.querySelectorAll('#jobs-body tr')];
      return rows.length === 1 && rows[0].dataset.id === id;
    }, b);
    /* Paging: 50 jobs a page, older and newer pages by the API's cursor. */
    const many = await api('POST', '/v1/jobs', Array.from({length: 55}, (_, i) =>
      ({name: `page-${i}`, queue: 'paging', command: {shell: 'true'}})));
    assert.equal(many.status, 201);
    const ids = many.body.jobs.map((j) => j.id).reverse(); /* newest first */
    await page.goto(URL_ + '/#/jobs?queue=paging');
    await page.waitForFunction((n) => document.querySelectorAll('#jobs-body tr').length === n, 50);
    assert.equal(await page.getAttribute('#jobs-body tr:first-child', 'data-id'), ids[0]);
    await page.click('a.page:text("Older ›")');
    await page.waitForFunction((id) => {
      const rows = document.querySelectorAll('#jobs-body tr');
      return rows.length === 5 && rows[0].dataset.id === id;
    }, ids[50]);
    assert.equal(await page.locator('a.page:text("Older ›")').count(), 0);
    await page.click('a.page:text("‹ Newer")');
    await page.waitForFunction((id) => {
      const row = document.querySelector('#jobs-body tr'); /* none while the page loads */
      return row && row.dataset.id === id;
    }, ids[0]);
    await page.goto(URL_ + '/#/jobs?queue=nosuchqueue');
    await page.waitForFunction(() => (document.getElementById('jobs-status')?.textContent ?? '') === 'No jobs match.');
    await page.goto(URL_ + '/#/jobs');
  });

  it('follows a running job\u2019s log and progress live on its page', async () => {
    const id = await submit({name: 'logger', command: {shell:
      'for i in 1 2 3 4 5 6; do echo line-$i; echo "$((i * 15)) step $i" > "$DROVER_PROGRESS"; sleep 0.4; done'}});
    await page.click(`#jobs tr[data-id="${id}"] a`, {timeout: 2000});
    await page.waitForSelector('#log');
    await page.waitForFunction(() => (document.getElementById('log')?.textContent ?? '').includes('line-2'));
    const early = await page.textContent('#log');
    assert.ok(!early.includes('line-6'), 'the log was read while the job ran');
    assert.notEqual(await jobState(id), 'succeeded');
    await page.click('details.spec summary');
    assert.match(await page.textContent('#job-spec'), /echo line-\$i/);
    await page.waitForSelector('#job-progress [role=progressbar]:not([aria-valuenow="0"])');
    await shot('job-running');
    await page.waitForFunction(() => (document.getElementById('log')?.textContent ?? '').includes('line-6'), null, {timeout: 10000});
    await page.waitForSelector('h1 .badge[data-state="succeeded"]', {timeout: 5000});
    await page.waitForFunction(() => (document.getElementById('log-state')?.textContent ?? '').startsWith('ended'));
    const log = await page.textContent('#log');
    assert.equal(log, [1, 2, 3, 4, 5, 6].map((i) => `line-${i}\n`).join(''));
    const timeline = await page.textContent('#timeline');
    assert.match(timeline, /submitted/);
    assert.match(timeline, /attempt 1/);
    assert.match(timeline, /succeeded/);
    assert.equal(await page.getAttribute('#job-progress [role=progressbar]', 'aria-valuenow'), '100');
    assert.equal(await page.evaluate(() => document.querySelector('details.spec').open), true,
      'the spec stays open while the page follows the job');
  });

  it('links a job\u2019s outputs with presigned download URLs', async () => {
    const put = await fetch(`${URL_}/v1/blobs/dash/in.txt`, {method: 'PUT', headers: {Authorization: `Bearer ${TOKEN}`}, body: 'hello'});
    assert.equal(put.status, 200);
    const id2 = await submit({name: 'with-output', command: {program: 'cp', arguments: [
      {type: 'input', value: 's3://dash/in.txt'}, {type: 'output', value: 's3://dash/out.txt'}]}});
    await until('the copy to succeed', async () => (await jobState(id2)) === 'succeeded');
    await page.goto(`${URL_}/#/job/${id2}`);
    await page.waitForSelector('#outputs a.download[href]');
    const href = await page.getAttribute('#outputs a.download', 'href');
    assert.match(href, /X-Drover-Signature=/);
    const r = await fetch(new URL(href, URL_)); /* no token: the URL is presigned */
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'hello');
  });

  it('cancels a running job from its page', async () => {
    const id = await submit({name: 'to-cancel', command: {shell: 'sleep 60'}});
    await page.goto(`${URL_}/#/job/${id}`);
    await page.waitForSelector('h1 .badge[data-state="running"]', {timeout: 10000});
    await page.click('#cancel');
    await page.waitForSelector('h1 .badge[data-state="cancelled"]', {timeout: 5000});
    assert.equal(await jobState(id), 'cancelled');
    await page.waitForSelector('#cancel', {state: 'detached'});
  });

  it('retries a failed job from its page and follows its new attempt', async () => {
    const id = await submit({name: 'flaky', command: {shell: 'echo "try $DROVER_ATTEMPT"; [ "$DROVER_ATTEMPT" -ge 2 ]'}});
    await page.goto(`${URL_}/#/job/${id}`);
    await page.waitForSelector('h1 .badge[data-state="failed"]', {timeout: 10000});
    await page.waitForFunction(() => (document.getElementById('log')?.textContent ?? '') === 'try 1\n');
    await page.click('#retry');
    await page.waitForSelector('h1 .badge[data-state="succeeded"]', {timeout: 10000});
    await page.waitForFunction(() => (document.getElementById('log')?.textContent ?? '') === 'try 2\n');
    assert.equal(await page.locator('#attempts tbody tr').count(), 2);
    assert.equal(await page.locator('#retry').count(), 0);
    const j = (await api('GET', `/v1/jobs/${id}`)).body;
    assert.equal(j.state, 'succeeded');
    assert.equal(j.attempt, 2);
  });

  it('shows a workflow A -> B as a graph that follows both nodes live; markup in its name is text', async () => {
    const sh = (script) => ({retry: {max_attempts: 1}, command: {shell: script}});
    /* Node names are plain words: markup in one is refused, naming the node. */
    const bad = await api('POST', '/v1/workflows', {nodes: {'<img src=x>': {job: sh('true')}}});
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    assert.match(bad.body.error.field, /^nodes/);
    const name = '<img src=x onerror="window.__xss=5"><script>window.__xss=6</script>';
    const r = await api('POST', '/v1/workflows', {name, nodes: {
      A: {job: sh('sleep 1.5; echo a')}, B: {job: sh('echo b'), depends_on: ['A']}}});
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const wf = r.body;
    await page.goto(`${URL_}/#/jobs`);
    await page.evaluate(() => { window.__notReloaded = true; });
    await page.goto(`${URL_}/#/workflow/${wf.id}`);
    await page.waitForSelector('#wf-graph');
    assert.equal(await page.textContent('#wf-name'), name);
    /* B waits for A, drawn as an edge A -> B, one layer to its right. */
    await page.waitForSelector('#wf-graph a.node[data-node="B"][data-state="blocked"]', {timeout: 1000});
    await page.waitForSelector('#wf-graph a.node[data-node="A"][data-state="running"]', {timeout: 5000});
    assert.equal(await page.locator('#wf-graph path.edge[data-from="A"][data-to="B"]').count(), 1);
    const box = async (n) => page.locator(`#wf-graph a.node[data-node="${n}"] rect`).boundingBox();
    assert.ok((await box('B')).x > (await box('A')).x + (await box('A')).width, 'B is drawn right of A');
    assert.equal(await page.getAttribute(`#wf-graph a.node[data-node="A"]`, 'href'), `#/job/${wf.nodes.A.job}`);
    assert.ok(await page.locator('#wf-cancel').count(), 'a running workflow can be cancelled');
    await shot('workflow-running');
    /* Both finish, shown live: the page is not reloaded. */
    await page.waitForSelector('#wf-graph a.node[data-node="A"][data-state="succeeded"]', {timeout: 10000});
    await page.waitForSelector('#wf-graph a.node[data-node="B"][data-state="succeeded"]', {timeout: 10000});
    await page.waitForSelector('h1 .badge[data-state="succeeded"]', {timeout: 2000});
    assert.equal(await page.textContent('#wf-progress li[data-state="succeeded"] .n'), '2');
    assert.equal(await page.textContent('#wf-progress li[data-state="total"] .n'), '2');
    assert.equal(await page.locator('#wf-cancel, #wf-retry').count(), 0);
    assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was reloaded');
    assert.equal(await page.locator('main img, main script').count(), 0);
    assert.equal(await page.evaluate(() => window.__xss), undefined, 'a script from the data ran');
    await shot('workflow');
    /* The list of workflows, newest first, its name as text, a click from its page. */
    await page.click('#nav a[data-view="workflows"]');
    const row = `#workflows-body tr[data-id="${wf.id}"]`;
    await page.waitForSelector(`${row}[data-state="succeeded"]`);
    assert.equal(await page.getAttribute('#workflows-body tr:first-child', 'data-id'), wf.id);
    assert.equal(await page.textContent(`${row} td.name`), name);
    assert.match(await page.textContent(`${row}`), /2 of 2 succeeded/);
    assert.equal(await page.locator('main img, main script').count(), 0);
    await shot('workflows');
    await page.click(`${row} a`);
    await page.waitForSelector('#wf-graph a.node[data-node="B"][data-state="succeeded"]');
    /* A node links to its job's page, and the job's page back to its workflow. */
    await page.click('#wf-graph a.node[data-node="B"]');
    await page.waitForSelector('#job-workflow');
    assert.equal(await page.textContent('#job-id'), wf.nodes.B.job);
    await page.click('#job-workflow');
    await page.waitForSelector('#wf-graph a.node[data-node="B"][data-state="succeeded"]');
  });

  it('cancels a workflow and retries what failed, from its page', async () => {
    const sh = (script) => ({retry: {max_attempts: 1}, command: {shell: script}});
    await page.goto(`${URL_}/#/workflows`);
    await page.waitForSelector('#workflows-body tr');
    let r = await api('POST', '/v1/workflows', {name: 'to-cancel', nodes: {
      A: {job: sh('sleep 60')}, B: {job: sh('true'), depends_on: ['A']}}});
    assert.equal(r.status, 201, JSON.stringify(r.body));
    /* A new workflow appears in the list live (its nodes' events), then runs. */
    await page.waitForSelector(`#workflows-body tr:first-child[data-id="${r.body.id}"]`, {timeout: 3000});
    await page.click(`#workflows-body tr[data-id="${r.body.id}"] a`);
    await page.waitForSelector('#wf-graph a.node[data-node="A"][data-state="running"]', {timeout: 10000});
    await page.click('#wf-cancel');
    await page.waitForSelector('h1 .badge[data-state="cancelled"]', {timeout: 5000});
    await page.waitForSelector('#wf-graph a.node[data-node="B"][data-state="cancelled"]');
    assert.equal((await api('GET', `/v1/workflows/${r.body.id}`)).body.state, 'cancelled');
    /* A fails its first attempt; B, which needs it, is cancelled; Retry runs both again. */
    r = await api('POST', '/v1/workflows', {name: 'flaky-flow', nodes: {
      A: {job: sh('[ "$DROVER_ATTEMPT" -ge 2 ]')}, B: {job: sh('true'), depends_on: ['A']}}});
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const wid = r.body.id;
    await page.goto(`${URL_}/#/workflow/${wid}`);
    await page.waitForSelector('h1 .badge[data-state="failed"]', {timeout: 10000});
    await page.waitForSelector('#wf-graph a.node[data-node="A"][data-state="failed"]');
    await page.waitForSelector('#wf-graph a.node[data-node="B"][data-state="cancelled"]');
    await shot('workflow-failed');
    await page.click('#wf-retry');
    await page.waitForSelector('#wf-graph a.node[data-node="B"][data-state="succeeded"]', {timeout: 10000});
    await page.waitForSelector('h1 .badge[data-state="succeeded"]', {timeout: 2000});
    const w = (await api('GET', `/v1/workflows/${wid}`)).body;
    assert.equal(w.state, 'succeeded');
    assert.equal(w.nodes.A.attempt, 2);
  });

  it('lists arrays live and fills an array\u2019s grid of 12 tasks live to succeeded', async () => {
    await page.goto(`${URL_}/#/arrays`);
    await page.waitForSelector('#arrays');
    await page.waitForFunction(() => document.querySelector('#arrays-body tr') ||
      (document.getElementById('arrays-status')?.textContent ?? '') === 'No arrays yet.');
    await page.evaluate(() => { window.__notReloaded = true; });
    const r = await api('POST', '/v1/jobs', {name: 'grid-12', array: {count: 12}, retry: {max_attempts: 1},
      command: {shell: 'sleep 1.2; echo task $DROVER_ARRAY_INDEX'}});
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const arr = r.body.array;
    const row = `#arrays-body tr[data-id="${arr.id}"]`;
    await page.waitForSelector(row, {timeout: 3000}); /* array.submitted, live */
    assert.equal(await page.textContent(`${row} td.name`), 'grid-12');
    assert.match(await page.textContent(row), /of 12 succeeded/);
    await page.click(`${row} a`);
    await page.waitForFunction(() => document.querySelectorAll('#arr-grid a.cell').length === 12);
    /* Every state each cell shows, as the page changes it. */
    await page.evaluate(() => {
      window.__seen = {};
      const rec = () => {
        for (const c of document.querySelectorAll('#arr-grid a.cell'))
          (window.__seen[c.dataset.index] ||= []).push(c.dataset.state);
      };
      rec();
      new MutationObserver(rec).observe(document.getElementById('arr-grid'), {attributes: true, subtree: true});
    });
    await page.waitForSelector('#arr-grid a.cell[data-state="running"]', {timeout: 10000});
    await shot('array-running');
    await page.waitForFunction(() =>
      document.querySelectorAll('#arr-grid a.cell[data-state="succeeded"]').length === 12, null, {timeout: 30000});
    await page.waitForSelector('h1 .badge[data-state="succeeded"]', {timeout: 3000});
    assert.equal(await page.textContent('#arr-counts li[data-state="succeeded"] .n'), '12');
    assert.equal(await page.textContent('#arr-counts li[data-state="total"] .n'), '12');
    const seen = await page.evaluate(() => window.__seen);
    const went = (from) => Object.values(seen).filter((s) => s.includes(from) && s[s.length - 1] === 'succeeded').length;
    assert.ok(went('queued') >= 1 && went('running') >= 1, `the grid did not fill live: ${JSON.stringify(seen)}`);
    assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was reloaded');
    assert.equal(await page.isVisible('#arr-cancel'), false, 'an ended array has nothing to cancel');
    assert.equal(await page.isVisible('#arr-retry'), false, 'nothing failed');
    /* Each cell links to its task's job, whose page links back. */
    const tasks = (await api('GET', `/v1/arrays/${arr.id}/tasks`)).body.tasks;
    assert.equal(tasks.length, 12);
    for (const t of tasks)
      assert.equal(await page.getAttribute(`#arr-grid a.cell[data-index="${t.index}"]`, 'href'), `#/job/${t.job}`);
    assert.match(await page.getAttribute('#arr-grid a.cell[data-index="5"]', 'title'), /task 5: succeeded/);
    await page.click('#arr-grid a.cell[data-index="5"]');
    await page.waitForSelector('#job-array');
    assert.equal(await page.textContent('#job-id'), tasks[5].job);
    assert.equal(await page.textContent('#job-name'), 'grid-12[5]');
    await page.waitForFunction(() => (document.getElementById('log')?.textContent ?? '') === 'task 5\n');
    await page.click('#job-array');
    await page.waitForSelector('#arr-grid a.cell[data-index="5"][data-state="succeeded"]');
  });

  it('cancels a range of an array from its page, then retries part of it', async () => {
    const r = await api('POST', '/v1/jobs', {name: 'range', array: {count: 10}, retry: {max_attempts: 1},
      command: {shell: '[ "$DROVER_ATTEMPT" -ge 2 ] || sleep 60'}});
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = r.body.array.id;
    try {
      await page.goto(`${URL_}/#/array/${id}`);
      await page.waitForFunction(() => document.querySelectorAll('#arr-grid a.cell[data-state="running"]').length === 4,
        null, {timeout: 10000}); /* the agent's 4 slots */
      await page.waitForSelector('#arr-cancel', {state: 'visible'});
      assert.equal(await page.isVisible('#arr-retry'), false);
      const states = async () => Object.fromEntries((await api('GET', `/v1/arrays/${id}/tasks`)).body.tasks
        .map((t) => [t.index, t.state]));
      const shown = () => page.evaluate(() => Object.fromEntries([...document.querySelectorAll('#arr-grid a.cell')]
        .map((c) => [c.dataset.index, c.dataset.state])));
      /* A range the wrong way round is refused on the page, nothing sent. */
      await page.fill('#arr-from', '7');
      await page.fill('#arr-to', '2');
      await page.click('#arr-cancel');
      await page.waitForFunction(() => [...document.querySelectorAll('.toast.error')].some((t) => /must not be past/.test(t.textContent)));
      assert.equal(Object.values(await states()).filter((s) => s === 'cancelled').length, 0);
      /* 2..9: two running tasks and six queued. */
      await page.fill('#arr-from', '2');
      await page.fill('#arr-to', '9');
      await page.click('#arr-cancel');
      await page.waitForFunction(() => [...document.querySelectorAll('#arr-grid a.cell[data-state="cancelled"]')]
        .map((c) => c.dataset.index).join() === '2,3,4,5,6,7,8,9', null, {timeout: 5000});
      let api_ = await states();
      assert.deepEqual([0, 1].map((i) => api_[i]), ['running', 'running']);
      assert.deepEqual([2, 3, 4, 5, 6, 7, 8, 9].map((i) => api_[i]), Array(8).fill('cancelled'));
      await page.waitForFunction(() => document.querySelector('#arr-counts li[data-state="cancelled"] .n')?.textContent === '8');
      /* Retry 2..3: their second attempt ends at once. */
      await page.waitForSelector('#arr-retry', {state: 'visible'});
      await page.fill('#arr-from', '2');
      await page.fill('#arr-to', '3');
      await shot('array-cancelled');
      await page.click('#arr-retry');
      await page.waitForFunction(() => [...document.querySelectorAll('#arr-grid a.cell[data-state="succeeded"]')]
        .map((c) => c.dataset.index).join() === '2,3', null, {timeout: 10000});
      /* the page follows the events; the API's listing says the same */
      await until('the API to list tasks 2 and 3 succeeded', async () => {
        api_ = await states();
        return api_[2] === 'succeeded' && api_[3] === 'succeeded';
      }, 10000).catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(api_)}`); });
      assert.deepEqual(api_, {...api_, 2: 'succeeded', 3: 'succeeded', 0: 'running', 1: 'running'});
      assert.deepEqual(await shown(), api_);
      await page.waitForFunction(() => document.querySelector('#arr-counts li[data-state="cancelled"] .n')?.textContent === '6');
      /* The rest, through the API: the page follows (array.changed), and the agent is free again. */
      assert.equal((await api('POST', `/v1/arrays/${id}/cancel`, {})).status, 200);
      await page.waitForSelector('h1 .badge[data-state="cancelled"]', {timeout: 5000});
      await page.waitForFunction(() => document.querySelectorAll('#arr-grid a.cell[data-state="cancelled"]').length === 8);
      await until('both sleepers to end', async () => {
        const s = await states();
        return s[0] === 'cancelled' && s[1] === 'cancelled';
      });
    } finally { /* whatever happened, its sleepers leave the agent to the next tests */
      await api('POST', `/v1/arrays/${id}/cancel`, {});
    }
  });

  it('shows HTML and script in an array\u2019s name and items as inert text', async () => {
    const name = '<img src=x onerror="window.__xss=9"><b>arr</b>';
    const items = ['<script>window.__xss=10</script>', '<img src=y onerror=window.__xss=11>'];
    const r = await api('POST', '/v1/jobs', {name, array: {items}, retry: {max_attempts: 1},
      command: {shell: 'printf %s "$DROVER_ARRAY_ITEM"'}});
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = r.body.array.id;
    await until('the array to succeed', async () => (await api('GET', `/v1/arrays/${id}`)).body.state === 'succeeded');
    await page.goto(`${URL_}/#/arrays`);
    const row = `#arrays-body tr[data-id="${id}"]`;
    await page.waitForSelector(row);
    assert.equal(await page.textContent(`${row} td.name`), name);
    assert.equal(await page.locator('main img, main script, main b').count(), 0);
    await shot('arrays');
    await page.click(`${row} a`);
    await page.waitForFunction(() => document.querySelectorAll('#arr-grid a.cell[data-state="succeeded"]').length === 2);
    assert.equal(await page.textContent('#arr-name'), name);
    await page.click('details.spec summary');
    assert.match(await page.textContent('#arr-spec'), /DROVER_ARRAY_ITEM/);
    assert.equal(await page.locator('main img, main script, main b').count(), 0);
    await shot('array');
    for (const i of [0, 1]) {
      await page.goto(`${URL_}/#/array/${id}`);
      await page.click(`#arr-grid a.cell[data-index="${i}"]`);
      await page.waitForFunction((t) => (document.getElementById('log')?.textContent ?? '') === t, items[i]);
      assert.equal(await page.textContent('#job-name'), `${name}[${i}]`);
      assert.ok((await page.textContent('#job-spec')).includes(JSON.stringify(items[i])), 'the item is in the spec, as text');
      assert.equal(await page.locator('main img, main script, main b').count(), 0);
    }
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate(() => window.__xss), undefined, 'a script from the data ran');
  });

  it('pages through a 1,000,000-task array by index range', async () => {
    const r = await api('POST', '/v1/jobs', {name: 'million', queue: 'nowhere', array: {count: 1000000},
      command: {shell: 'true'}});
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = r.body.array.id;
    const t0 = Date.now();
    await page.goto(`${URL_}/#/array/${id}`);
    await page.waitForFunction(() => document.querySelectorAll('#arr-grid a.cell[data-state="queued"]').length === 2000);
    console.log(`a page of a million-task array drawn in ${Date.now() - t0} ms`);
    assert.equal(await page.locator('#arr-grid a.cell').count(), 2000);
    assert.equal(await page.textContent('#arr-counts li[data-state="total"] .n'), '1,000,000');
    assert.equal(await page.textContent('#arr-counts li[data-state="queued"] .n'), '1,000,000');
    assert.equal(await page.textContent('#arr-range-shown'), 'tasks 0–1,999 of 1,000,000');
    const first = () => page.getAttribute('#arr-grid a.cell:first-child', 'data-index');
    await page.click('#arr-pager a.page.last');
    await page.waitForFunction(() => document.querySelector('#arr-grid a.cell')?.dataset.index === '998000' &&
      document.querySelectorAll('#arr-grid a.cell[data-state="queued"]').length === 2000);
    assert.equal(await page.getAttribute('#arr-grid a.cell:last-child', 'data-index'), '999999');
    await page.fill('#arr-goto', '123456');
    await page.press('#arr-goto', 'Enter');
    await page.waitForFunction(() => document.querySelector('#arr-grid a.cell')?.dataset.index === '122000');
    await page.click('#arr-pager a.page.next');
    await page.waitForFunction(() => document.querySelector('#arr-grid a.cell')?.dataset.index === '124000');
    /* Cancel a range on this page from the page: the counts are of all the tasks. */
    await page.waitForFunction(() => document.querySelectorAll('#arr-grid a.cell[data-state="queued"]').length === 2000);
    await page.fill('#arr-from', '124000');
    await page.fill('#arr-to', '124009');
    await page.click('#arr-cancel');
    await page.waitForFunction(() => document.querySelectorAll('#arr-grid a.cell[data-state="cancelled"]').length === 10);
    assert.equal(await first(), '124000');
    await page.waitForFunction(() => (document.querySelector('#arr-counts li[data-state="cancelled"] .n')?.textContent) === '10');
    await shot('array-million');
    assert.equal((await api('POST', `/v1/arrays/${id}/cancel`, {})).status, 200);
    await page.waitForSelector('h1 .badge[data-state="cancelled"]', {timeout: 5000});
  });

  it('keeps working while upload triggers fire (trigger.* events)', async () => {
    await page.goto(`${URL_}/#/jobs`);
    await page.waitForSelector('#jobs-body tr');
    await page.evaluate(() => { window.__notReloaded = true; });
    const t = await api('POST', '/v1/triggers', {prefix: 's3://dash-trig/',
      job: {name: 'triggered', retry: {max_attempts: 1}, command: {shell: 'true'}}});
    assert.equal(t.status, 201, JSON.stringify(t.body));
    const put = await fetch(`${URL_}/v1/blobs/dash-trig/a.txt`, {method: 'PUT', headers: {Authorization: `Bearer ${TOKEN}`}, body: 'x'});
    assert.equal(put.status, 200);
    const job = await until('the trigger to fire', async () => {
      const fires = (await api('GET', `/v1/triggers/${t.body.id}`)).body.fires || [];
      return fires.length && fires[0].job;
    });
    await page.waitForSelector(`#jobs tr[data-id="${job}"][data-state="succeeded"]`, {timeout: 10000});
    assert.equal(await page.textContent(`#jobs tr[data-id="${job}"] td.name`), 'triggered');
    assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was reloaded');
    assert.equal((await api('DELETE', `/v1/triggers/${t.body.id}`)).status, 200);
  });

  it('lists triggers and schedules; a schedule\u2019s page shows its fires live and deletes it after asking', async () => {
    const name = '<img src=x onerror="window.__xss=12"><b>trig</b>';
    const dir = '<img src=x onerror="window.__xss=13">';
    const prefix = `s3://dash-trig2/${dir}/`;
    const up = await api('POST', '/v1/triggers', {prefix, input: 'in', job: {name, retry: {max_attempts: 1},
      command: {program: 'true', arguments: [{type: 'input', name: 'in'}]}}});
    assert.equal(up.status, 201, JSON.stringify(up.body));
    const sch = await api('POST', '/v1/triggers', {schedule: '* * * * * *', overlap: 'skip',
      job: {name: 'every-second', command: {program: 'true'}}});
    assert.equal(sch.status, 201, JSON.stringify(sch.body));
    try {
      /* The list: newest first, what each is on, what it submits, a schedule's next time. */
      await page.goto(`${URL_}/#/jobs`);
      await page.click('#nav a[data-view="triggers"]');
      const upRow = `#triggers-body tr[data-id="${up.body.id}"]`;
      const schRow = `#triggers-body tr[data-id="${sch.body.id}"]`;
      await page.waitForSelector(schRow);
      await page.waitForSelector(upRow);
      assert.equal(await page.getAttribute('#triggers-body tr:first-child', 'data-id'), sch.body.id);
      assert.equal(await page.textContent(`${upRow} td.on`), prefix);
      assert.equal(await page.textContent(`${schRow} td.on`), 'schedule * * * * * * (overlap skip)');
      assert.equal(await page.textContent(`${upRow} td.submits`), `job ${name}`);
      assert.equal(await page.textContent(`${schRow} td.submits`), 'job every-second');
      assert.equal(await page.textContent(`${upRow} td.next`), '—');
      assert.match(await page.textContent(`${schRow} td.next`), /^\d\d:\d\d:\d\d$/);
      assert.equal(await page.locator('main img, main script, main b').count(), 0);
      await shot('triggers');

      /* An upload trigger's page: an object under the prefix fires it once. */
      const put = await fetch(`${URL_}/v1/blobs/dash-trig2/${encodeURIComponent(dir)}/a.txt`,
        {method: 'PUT', headers: {Authorization: `Bearer ${TOKEN}`}, body: 'x'});
      assert.equal(put.status, 200);
      const job = await until('the upload trigger to fire', async () => {
        const fires = (await api('GET', `/v1/triggers/${up.body.id}`)).body.fires || [];
        return fires.length && fires[0].job;
      });
      await page.click(`${upRow} a`);
      await page.waitForSelector('#trig-fires-body tr[data-state="fired"]');
      assert.equal(await page.textContent('#trig-prefix'), prefix);
      assert.equal(await page.textContent('#trig-fires-body tr td.what span:first-child'), `${prefix}a.txt`);
      assert.equal(await page.getAttribute('#trig-fires-body tr a.run', 'href'), `#/job/${job}`);
      assert.equal(await page.textContent('#trig-submits'), `job ${name}`);
      assert.ok((await page.textContent('#trig-template')).includes(JSON.stringify(name)), 'the template, as text');
      assert.equal(await page.locator('main img, main script, main b').count(), 0);

      /* A schedule's page: a fire each second, shown as it comes, without a reload. */
      await page.evaluate(() => { window.__notReloaded = true; });
      await page.goto(`${URL_}/#/trigger/${sch.body.id}`);
      await page.waitForSelector('#trig-fires-body tr');
      const firstKey = await page.getAttribute('#trig-fires-body tr:first-child', 'data-key');
      await page.waitForFunction((k) => {
        const rows = document.querySelectorAll('#trig-fires-body tr');
        return rows.length >= 2 && rows[0].dataset.key !== k;
      }, firstKey, {timeout: 5000});
      await page.waitForSelector('#trig-fires-body tr[data-state="fired"] a.run[href^="#/job/"]', {timeout: 5000});
      assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was reloaded');
      assert.equal(await page.textContent('#trig-schedule'), '* * * * * *');
      assert.match(await page.textContent('#trig-next'), /^\d\d:\d\d:\d\d$/);
      assert.match(await page.textContent('#trig-template'), /"program": "true"/);
      await shot('trigger');

      /* Delete: the first click asks (and stays asking through the page's redraws), the second deletes. */
      assert.match(await page.textContent('#trig-delete'), /^Delete schedule/);
      await page.click('#trig-delete');
      assert.match(await page.textContent('#trig-delete'), /Delete this schedule\?/);
      await page.waitForTimeout(1200); /* a fire or two redraw the page meanwhile */
      assert.match(await page.textContent('#trig-delete'), /Delete this schedule\?/);
      assert.equal((await api('GET', `/v1/triggers/${sch.body.id}`)).status, 200, 'the first click only asks');
      await page.click('#trig-delete');
      await page.waitForSelector('#triggers');
      assert.equal(await page.evaluate(() => location.hash), '#/triggers');
      assert.equal((await api('GET', `/v1/triggers/${sch.body.id}`)).status, 404);
      await page.waitForSelector(upRow);
      assert.equal(await page.locator(schRow).count(), 0);
      await page.waitForTimeout(300);
      assert.equal(await page.evaluate(() => window.__xss), undefined, 'a script from the data ran');
    } finally {
      await api('DELETE', `/v1/triggers/${sch.body.id}`);
      await api('DELETE', `/v1/triggers/${up.body.id}`);
    }
  });

  it('pauses a schedule from its page (its times pass unfired) and resumes it', async () => {
    const sch = await api('POST', '/v1/triggers', {schedule: '* * * * * *',
      job: {name: 'pausable', retry: {max_attempts: 1}, command: {program: 'true'}}});
    assert.equal(sch.status, 201, JSON.stringify(sch.body));
    const tid = sch.body.id;
    const fireCount = async () => ((await api('GET', `/v1/triggers/${tid}`)).body.fires || []).length;
    try {
      await page.goto(`${URL_}/#/trigger/${tid}`);
      await page.waitForSelector('#trig-fires-body tr[data-state="fired"]', {timeout: 5000});
      assert.equal(await page.textContent('#trig-state'), 'active');
      assert.equal(await page.textContent('#trig-pause'), 'Pause');
      assert.equal(await page.isVisible('#trig-pause'), true);

      /* Pause: a POST with the session's CSRF header (the server refuses it without). */
      await page.click('#trig-pause');
      const paused = await until('the API to say paused', async () => {
        const t = (await api('GET', `/v1/triggers/${tid}`)).body;
        return t.paused && t;
      }, 5000);
      assert.equal(paused.next_at, null);
      await page.waitForSelector('#trig-state[data-paused="yes"]', {timeout: 5000});
      assert.match(await page.textContent('#trig-state'), /^paused since \d\d:\d\d:\d\d$/);
      assert.equal(await page.getAttribute('#trig-state time', 'datetime'), paused.paused_at);
      assert.equal(await page.textContent('#trig-pause'), 'Resume');
      assert.equal(await page.textContent('#trig-next'), 'none while paused');
      assert.equal(await page.locator('h1 .badge[data-state="paused"]').count(), 1);
      await page.waitForTimeout(1200); /* a fire recorded just before the pause settles */
      const n = await fireCount();
      await page.waitForTimeout(2200); /* two times pass, paused */
      assert.equal(await fireCount(), n, 'a paused schedule fired');
      assert.match(await page.textContent('#trig-state'), /^paused since /, 'a redraw lost the pause');
      await shot('trigger-paused');

      /* The list says so in its next column. */
      await page.click('#trig-head a[href="#/triggers"]');
      const row = `#triggers-body tr[data-id="${tid}"]`;
      await page.waitForSelector(row);
      assert.equal(await page.textContent(`${row} td.next`), 'paused');
      await page.click(`${row} a`);
      await page.waitForSelector('#trig-state[data-paused="yes"]');

      /* Resume: it fires again from its next time. */
      await page.click('#trig-pause');
      await until('the API to say resumed', async () => {
        const t = (await api('GET', `/v1/triggers/${tid}`)).body;
        return t.paused === false && t.paused_at === null && t.next_at;
      }, 5000);
      await page.waitForSelector('#trig-state[data-paused="no"]', {timeout: 5000});
      assert.equal(await page.textContent('#trig-state'), 'active');
      assert.equal(await page.textContent('#trig-pause'), 'Pause');
      assert.match(await page.textContent('#trig-next'), /^\d\d:\d\d:\d\d$/);
      assert.equal(await page.locator('h1 .badge[data-state="paused"]').count(), 0);
      await until('a fire after the resume', async () => (await fireCount()) > n, 5000);
      await page.click('#trig-head a[href="#/triggers"]');
      await page.waitForSelector(row);
      assert.match(await page.textContent(`${row} td.next`), /^\d\d:\d\d:\d\d$/);

      /* Changed and deleted elsewhere (the API, the CLI, another server): the open page
         follows both from their events, without a reload. */
      await page.click(`${row} a`);
      await page.waitForSelector('#trig-state[data-paused="no"]');
      const put = await api('PUT', `/v1/triggers/${tid}`, {schedule: '0 3 * * *',
        job: {name: 'pausable', command: {program: 'true'}}});
      assert.equal(put.status, 200, JSON.stringify(put.body));
      await page.waitForFunction(() => document.querySelector('#trig-schedule')?.textContent === '0 3 * * *',
        null, {timeout: 5000});
      assert.equal((await api('DELETE', `/v1/triggers/${tid}`)).status, 200);
      await page.waitForFunction(() => document.querySelector('main').textContent.includes('This trigger was deleted.'),
        null, {timeout: 5000});
      assert.equal(await page.isDisabled('#trig-pause'), true);
    } finally {
      await api('DELETE', `/v1/triggers/${tid}`);
    }
  });

  it('edits a schedule from its page: what is wrong is named, a change shows at once', async () => {
    const sch = await api('POST', '/v1/triggers', {schedule: '0 4 * * *', overlap: 'skip',
      job: {name: 'editable', retry: {max_attempts: 1}, command: {program: 'true'}}});
    assert.equal(sch.status, 201, JSON.stringify(sch.body));
    const tid = sch.body.id;
    try {
      await page.goto(`${URL_}/#/trigger/${tid}`);
      await page.waitForSelector('#trig-edit:not([hidden])', {timeout: 5000});
      await page.click('#trig-edit');
      await page.waitForSelector('#trig-editor:not([hidden])');
      assert.equal(await page.inputValue('#te-schedule'), '0 4 * * *');
      assert.equal(await page.inputValue('#te-overlap'), 'skip');
      assert.equal(JSON.parse(await page.inputValue('#te-template')).name, 'editable');
      assert.equal(await page.isVisible('#te-prefix'), false); /* a schedule's fields only */
      await shot('trigger-editor');

      /* A bad expression: the server's 400 names the field; nothing changes. */
      expected400.add(`${URL_}/v1/triggers/${tid}`);
      await page.fill('#te-schedule', '61 * * * *');
      await page.click('#te-save');
      await page.waitForSelector('#te-error:not([hidden])', {timeout: 5000});
      assert.match(await page.textContent('#te-error'), /^schedule: /);
      expected400.clear();
      assert.equal((await api('GET', `/v1/triggers/${tid}`)).body.schedule, '0 4 * * *');
      /* A template that is not JSON is said before any request. */
      await page.fill('#te-schedule', '30 5 * * *');
      await page.fill('#te-template', '{"name": ');
      await page.click('#te-save');
      await page.waitForFunction(() => document.querySelector('#te-error').textContent.startsWith('the job is not JSON'),
        null, {timeout: 5000});

      /* A good change: saved, shown at once, the form closed. */
      await page.fill('#te-template', JSON.stringify({name: 'edited', command: {program: 'true'}}));
      await page.fill('#te-timezone', 'Europe/Paris');
      await page.selectOption('#te-overlap', 'allow');
      await page.click('#te-save');
      await page.waitForFunction(() => document.querySelector('#trig-schedule')?.textContent === '30 5 * * *',
        null, {timeout: 5000});
      await page.waitForSelector('#trig-editor', {state: 'hidden'});
      const t = (await api('GET', `/v1/triggers/${tid}`)).body;
      assert.equal(t.schedule, '30 5 * * *');
      assert.equal(t.timezone, 'Europe/Paris');
      assert.equal(t.overlap, 'allow');
      assert.equal(t.job.name, 'edited');
      assert.ok(t.updated_at);
      assert.match(await page.textContent('#trig-template'), /"edited"/);
      assert.equal(await page.getAttribute('#trig-updated time', 'datetime'), t.updated_at);
      assert.equal(await page.isVisible('#trig-edit'), true);
      await shot('trigger-edited');
    } finally {
      expected400.clear();
      /* off its page first: a read of it the page has on the way would find it gone */
      await page.goto(`${URL_}/#/triggers`);
      await api('DELETE', `/v1/triggers/${tid}`);
    }
  });

  it('shows HTML and script in a name, labels and log as inert text', async () => {
    const name = '<img src=x onerror="window.__xss=1">';
    const label = '<script>window.__xss=2</script>';
    const id = await submit({name, labels: {evil: label},
      command: {shell: 'echo "<script>window.__xss=3</script><img src=y onerror=window.__xss=4>"'}});
    await until('the job to end', async () => (await jobState(id)) === 'succeeded');
    await page.goto(`${URL_}/#/jobs`);
    const row = `#jobs tr[data-id="${id}"]`;
    await page.waitForSelector(row);
    assert.equal(await page.textContent(`${row} td.name`), name);
    assert.equal(await page.textContent(`${row} td.labels`), `evil=${label}`);
    assert.equal(await page.locator(`${row} img, ${row} script`).count(), 0);
    await page.goto(`${URL_}/#/job/${id}`);
    await page.waitForFunction(() => (document.getElementById('log')?.textContent ?? '').includes('onerror'));
    assert.equal(await page.textContent('#job-name'), name);
    assert.equal(await page.textContent('#job-labels'), `evil=${label}`);
    assert.match(await page.textContent('#log'), /<script>window.__xss=3<\/script>/);
    assert.equal(await page.locator('main img, main script').count(), 0);
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate(() => window.__xss), undefined, 'a script from the data ran');
    await shot('job-xss');
  });

  it('refuses a cross-site POST made with the session cookie', async () => {
    const id = await submit({name: 'victim', command: {shell: 'sleep 60'}});
    await until('the victim to run', async () => (await jobState(id)) === 'running');
    /* A page of another site (served by the browser itself) posts to drover. */
    await page.route('http://evil.test/**', (route) => route.fulfill({contentType: 'text/html',
      body: `<form id=f method=POST action="${URL_}/v1/jobs/${id}/cancel"></form>`}));
    await page.goto('http://evil.test/attack');
    await Promise.all([page.waitForNavigation(), page.evaluate(() => document.getElementById('f').submit())]);
    assert.match(await page.textContent('body'), /unauthenticated|permission_denied/);
    assert.equal(await jobState(id), 'running', 'a cross-site request cancelled the job');
    /* The cookie itself, replayed with another Origin, or without the CSRF header, is refused too. */
    const c = (await context.cookies(URL_)).find((x) => x.name === 'drover_session');
    const cookie = `drover_session=${c.value}`;
    const csrf = (await (await fetch(`${URL_}/v1/session`, {headers: {Cookie: cookie}})).json()).csrf;
    const post = (headers) => fetch(`${URL_}/v1/jobs/${id}/cancel`, {method: 'POST', headers: {Cookie: cookie, ...headers}});
    let r = await post({'X-CSRF-Token': csrf, Origin: 'http://evil.test', 'Sec-Fetch-Site': 'cross-site'});
    assert.equal(r.status, 403);
    assert.match((await r.json()).error.message, /cross-site/);
    r = await post({Origin: URL_});
    assert.equal(r.status, 403);
    assert.match((await r.json()).error.message, /X-CSRF-Token/);
    assert.equal(await jobState(id), 'running');
    r = await post({Origin: URL_, 'X-CSRF-Token': csrf}); /* the dashboard's own way: allowed */
    assert.equal(r.status, 200);
    assert.equal(await jobState(id), 'cancelled');
    await page.unroute('http://evil.test/**');
  });

  it('shows queues with their throughput chart and waits', async () => {
    const failed = await submit({name: 'fails', command: {shell: 'exit 3'}});
    await until('the failing job to fail', async () => (await jobState(failed)) === 'failed');
    await page.goto(`${URL_}/#/queues`);
    await page.waitForSelector('#queues tr[data-queue="default"]');
    await page.waitForSelector('#charts svg rect.ok');
    await page.waitForSelector('#charts svg rect.bad');
    const cells = await page.$$eval('#queues tr[data-queue="default"] td', (tds) => tds.map((t) => t.textContent));
    const q = (await api('GET', '/v1/queues')).body.find((x) => x.name === 'default');
    assert.equal(cells[4], String(q.succeeded));
    assert.equal(cells[5], String(q.failed));
    assert.equal(cells[3], '—', 'no limit');
    assert.notEqual(cells[9], '—', 'a mean wait is shown');
    await shot('queues');
  });

  it('pauses a queue from the queues page, and resumes it', async () => {
    const row = '#queues tr[data-queue="default"]';
    await page.click(`${row}[data-paused="no"] button.pause`);
    await page.waitForSelector(`${row}[data-paused="yes"] .badge.paused`, {timeout: 5000});
    assert.equal((await api('GET', '/v1/queues')).body.find((x) => x.name === 'default').paused, true);
    /* a job submitted meanwhile waits, and says why */
    const id = await submit({name: 'waits-for-resume', command: {program: 'true'}});
    const job = (await api('GET', `/v1/jobs/${id}`)).body;
    assert.equal(job.state, 'queued');
    assert.equal(job.waiting.reason, 'paused');
    assert.equal(await page.textContent(`${row} button.pause`), 'Resume');
    await shot('queue-paused');
    await page.click(`${row} button.pause`);
    await page.waitForSelector(`${row}[data-paused="no"]`, {timeout: 5000});
    await until('the held job to run', async () => (await jobState(id)) === 'succeeded');
  });

  it("shows a queue's limit, and sets and lifts it from the queues page", async () => {
    const row = (name) => `#queues tr[data-queue="${name}"]`;
    const limitCell = async (name) => (await page.textContent(`${row(name)} td.limit`)).trim();
    const maxOf = async (name) => ((await api('GET', '/v1/queues')).body.find((x) => x.name === name) || {}).max_running;
    /* limited through the API: listed even without jobs, with its limit */
    assert.equal((await api('PUT', '/v1/queues/lic-tool', {max_running: 3})).status, 200);
    await page.goto(`${URL_}/#/queues`);
    await page.waitForSelector(`${row('lic-tool')}[data-limit="3"]`);
    assert.equal(await limitCell('lic-tool'), '3');
    assert.equal(await limitCell('default'), '—');
    /* and live, on its queue.limited event */
    assert.equal((await api('PUT', '/v1/queues/default', {max_running: 1})).status, 200);
    await page.waitForSelector(`${row('default')}[data-limit="1"]`, {timeout: 5000});
    assert.equal(await limitCell('default'), '1');
    await shot('queue-limited');
    /* one job runs, the other waits for the limit and says so */
    const sleep = {command: {shell: 'sleep 30'}};
    const ids = [await submit({name: 'limited-1', ...sleep}), await submit({name: 'limited-2', ...sleep})];
    try {
      const states = async () => Promise.all(ids.map(jobState));
      await until('one running', async () => (await states()).includes('running'));
      await page.waitForTimeout(500);
      assert.deepEqual((await states()).sort(), ['queued', 'running']);
      const waiting = (await Promise.all(ids.map(async (id) => (await api('GET', `/v1/jobs/${id}`)).body)))
        .find((j) => j.state === 'queued');
      assert.equal(waiting.waiting.reason, 'queue_limit');
      /* the form: a click on the limit fills it; raised to 2, the waiting job goes */
      await page.click(`${row('default')} button.set-limit`);
      assert.equal(await page.inputValue('#limit-queue'), 'default');
      assert.equal(await page.inputValue('#limit-max'), '1');
      await page.fill('#limit-max', '2');
      await page.click('#queue-limit button[type=submit]');
      await page.waitForSelector(`${row('default')}[data-limit="2"]`, {timeout: 5000});
      assert.equal(await maxOf('default'), 2);
      await until('both running', async () => (await states()).every((s) => s === 'running'));
      /* emptied: lifted (the queue stays, it has jobs; lic-tool, without any, goes) */
      await page.fill('#limit-max', '');
      await page.click('#queue-limit button[type=submit]');
      await page.waitForSelector(`${row('default')}[data-limit=""]`, {timeout: 5000});
      assert.equal(await limitCell('default'), '—');
      assert.equal(await maxOf('default'), null);
      await page.fill('#limit-queue', 'lic-tool');
      await page.click('#queue-limit button[type=submit]');
      await page.waitForSelector(row('lic-tool'), {state: 'detached', timeout: 5000});
      assert.equal(await maxOf('lic-tool'), undefined);
    } finally { /* whatever happened, the next tests find the queues unlimited and the agent free */
      for (const id of ids) await api('POST', `/v1/jobs/${id}/cancel`);
      for (const q of ['default', 'lic-tool']) await api('PUT', `/v1/queues/${q}`, {max_running: null});
    }
  });

  it('cancels and retries every job a filter finds, after asking', async () => {
    /* a queue no agent serves: they stay queued until cancelled */
    const ids = [await submit({queue: 'nobody', command: {program: 'true'}}),
                 await submit({queue: 'nobody', command: {program: 'true'}})];
    const other = await submit({queue: 'nobody2', command: {program: 'true'}});
    await page.goto(`${URL_}/#/jobs?queue=nobody`);
    await page.waitForSelector(`#jobs-body tr[data-id="${ids[0]}"][data-state="queued"]`);
    await page.click('button.cancel-matching');
    assert.match(await page.textContent('button.cancel-matching'), /Cancel every unfinished job/);
    assert.equal(await jobState(ids[0]), 'queued', 'the first click only asks');
    await page.click('button.cancel-matching');
    await page.waitForSelector(`#jobs-body tr[data-id="${ids[1]}"][data-state="cancelled"]`, {timeout: 5000});
    assert.deepEqual([await jobState(ids[0]), await jobState(ids[1]), await jobState(other)],
      ['cancelled', 'cancelled', 'queued']);
    /* and run again: the retry button, the same way */
    await page.click('button.retry-matching');
    assert.match(await page.textContent('button.retry-matching'), /Retry every failed or cancelled job/);
    assert.equal(await jobState(ids[0]), 'cancelled', 'the first click only asks');
    await page.click('button.retry-matching');
    await page.waitForSelector(`#jobs-body tr[data-id="${ids[1]}"][data-state="queued"]`, {timeout: 5000});
    assert.deepEqual([await jobState(ids[0]), await jobState(ids[1])], ['queued', 'queued']);
    for (const id of ids) await api('POST', `/v1/jobs/${id}/cancel`);
    await api('POST', `/v1/jobs/${other}/cancel`);
    /* not offered without a filter that narrows the list */
    await page.goto(`${URL_}/#/jobs?state=queued`);
    await page.waitForSelector('#filters', {state: 'attached'});
    await page.waitForTimeout(200); /* the view drawn: its button would be there by now */
    assert.equal(await page.locator('button.cancel-matching').count(), 0);
    assert.equal(await page.locator('button.retry-matching').count(), 0);
  });

  it('lists, creates and revokes tokens (an admin); a new secret is shown once', async () => {
    assert.equal(await page.isVisible('#nav-tokens'), true, 'an admin session has the Tokens link');
    await page.click('#nav-tokens');
    await page.waitForSelector('#tokens-body tr[data-token="admin"]');
    /* the session's own token cannot be revoked: no button on its row */
    assert.equal(await page.locator('#tokens-body tr[data-token="admin"] button.revoke').count(), 0);
    /* a bad name: the server's words, nothing made */
    expected400.add(`${URL_}/v1/tokens`);
    await page.fill('#tok-name', 'dash ci');
    await page.evaluate(() => document.getElementById('tok-name').removeAttribute('pattern'));
    await page.click('#tok-form button[type="submit"]');
    await page.waitForFunction(() => /name must match/.test(document.getElementById('tok-error').textContent));
    assert.equal((await api('GET', '/v1/tokens')).body.tokens.some((t) => t.name === 'dash ci'), false);
    /* a good one: its secret, shown once, works; the list shows it */
    await page.fill('#tok-name', 'dash-ci');
    await page.selectOption('#tok-role', 'client');
    await page.fill('#tok-tenant', 'lab');
    await page.click('#tok-form button[type="submit"]');
    await page.waitForSelector('#tokens-body tr[data-token="dash-ci"]');
    const secret = (await page.textContent('#tok-secret-value')).trim();
    assert.equal(await page.textContent('#tok-error'), '');
    const as = async (token) => (await fetch(`${URL_}/v1/jobs`, {headers: {Authorization: `Bearer ${token}`}})).status;
    assert.equal(await as(secret), 200);
    assert.match(await page.textContent('#tokens-body tr[data-token="dash-ci"]'), /client.*lab/);
    await shot('tokens');
    /* revoked after asking: the first click asks, the second revokes */
    const btn = '#tokens-body tr[data-token="dash-ci"] button.revoke';
    await page.click(btn);
    assert.match(await page.textContent(btn), /Revoke dash-ci\?/);
    assert.equal(await as(secret), 200, 'the first click only asks');
    await page.click(btn);
    await page.waitForSelector('#tokens-body tr[data-token="dash-ci"]', {state: 'detached', timeout: 5000});
    assert.equal(await as(secret), 401);
  });

  it('drains an agent from the agents page', async () => {
    /* A job keeps the agent draining (an idle agent leaves at once). */
    const id = await submit({name: 'keeps-agent-busy', command: {shell: 'sleep 60'}});
    await until('the job to run', async () => (await jobState(id)) === 'running');
    await page.goto(`${URL_}/#/agents`);
    const row = `#agents tr[data-agent="${AGENT}"]`;
    await page.waitForSelector(`${row}[data-state="up"]`);
    assert.match(await page.textContent(`${row}`), /1 \/ 4/);
    /* Its running jobs, one click away. */
    await page.click(`${row} a.running`);
    await page.waitForFunction((jid) => {
      const rows = document.querySelectorAll('#jobs-body tr');
      return rows.length === 1 && rows[0].dataset.id === jid;
    }, id);
    await page.goto(`${URL_}/#/agents`);
    await page.waitForSelector(`${row}[data-state="up"]`);
    await shot('agents');
    await page.click(`${row} button.drain`);
    await page.waitForSelector(`${row}[data-state="draining"]`, {timeout: 1000});
    const agents = (await api('GET', '/v1/agents')).body;
    assert.equal(agents.find((a) => a.name === AGENT).state, 'draining');
    assert.equal(await page.locator(`${row} button.drain`).count(), 0);
    await api('POST', `/v1/jobs/${id}/cancel`);
    await page.waitForSelector(`${row}[data-state="left"]`, {timeout: 5000}); /* live, too */
  });

  it('keeps screenshots of the jobs list; signs out', async () => {
    await page.goto(`${URL_}/#/jobs`);
    await page.waitForSelector('#jobs-body tr');
    await shot('jobs');
    await page.click('#signout');
    await page.waitForSelector('#signin');
    const c = (await context.cookies(URL_)).find((x) => x.name === 'drover_session');
    assert.ok(!c, 'the cookie is cleared on sign-out');
    assert.deepEqual(problems, []);
  });
});
