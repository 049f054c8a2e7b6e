// Browser tests of the portal: the real system (registry, log, grading,
// portal as separate processes on free ports, throwaway data), driven in
// Debian's Chromium by playwright-core. Run by `make test` after the release
// builds (`make release`: scripts/build-portal.sh and `trunk build --release`).
//
// The system runs closed, as a school would run it: every process gets the
// cluster token through its environment, a teacher account is made with the
// CLI, and each page signs in first (with and without JavaScript).
//
//   node --test tests/browser/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, extname } from 'node:path';
import { createRequire } from 'node:module';
import { eventually, freePort, root, system } from './support.mjs';

const require = createRequire(join(root, 'tools/package.json'));
const { chromium } = require('playwright-core');

// Children inherit it from this process's environment (never a command line).
const CLUSTER_TOKEN = 'browser-tests-cluster-token-0123456789abcdef';
process.env.GRADEBOOK_TOKEN = CLUSTER_TOKEN;
const TEACHER = 'teacher';
const PASSWORD = 'a teacher password';
const bin = process.env.GRADEBOOK_BIN_DIR ?? join(root, 'target/release');

const { procs, ports, url, start } = system();
let browser, dataDir, csrServer, databaseUrl, apiToken;

/// Headers of a script calling the portal's API with the teacher's personal token.
const asTeacher = (headers = {}) => ({ ...headers, authorization: `Bearer ${apiToken}` });
/// Headers of a service calling another with the cluster token.
const asService = (headers = {}) => ({ ...headers, authorization: `Bearer ${CLUSTER_TOKEN}` });

/// `gradebook accounts …` on grading's database; what it prints.
function accounts(args, input) {
  return execFileSync(join(bin, 'gradebook'), ['accounts', ...args, '--database-url', databaseUrl], {
    cwd: root, input: input ?? '', encoding: 'utf8', stdio: ['pipe', 'pipe', 'inherit'],
  }).trim();
}

/// Serves the trunk build (dist/) and proxies /api to the portal, as `trunk serve` does.
function serveCsr(port) {
  const dist = join(root, 'dist');
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };
  return createServer((req, res) => {
    if (req.url.startsWith('/api/')) {
      const up = httpRequest(url('portal', req.url), { method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      req.pipe(up);
      return;
    }
    let file = join(dist, req.url.split('?')[0]);
    if (!existsSync(file) || req.url === '/' || !extname(file)) file = join(dist, 'index.html');
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  }).listen(port, '127.0.0.1');
}

before(async () => {
  for (const name of ['registry', 'log', 'grading', 'portal', 'csr']) ports[name] = await freePort();
  dataDir = mkdtempSync(join(tmpdir(), 'gradebook-browser-'));
  databaseUrl = `sqlite://${join(dataDir, 'grading.db')}`;
  const registryUrl = url('registry');
  start('registry', 'gradebook', ['registry', '--addr', `127.0.0.1:${ports.registry}`]);
  await eventually('the registry', async () => (await fetch(url('registry', '/healthz'))).ok);
  const common = ['--registry-url', registryUrl];
  start('log', 'gradebook', ['log', '--addr', `127.0.0.1:${ports.log}`, '--dir', join(dataDir, 'log'), ...common]);
  start('grading', 'gradebook', [
    'grading', '--addr', `127.0.0.1:${ports.grading}`,
    '--database-url', databaseUrl, ...common,
  ]);
  await eventually('grading', async () => (await fetch(url('grading', '/healthz'))).ok);
  // The password on standard input, as a script gives it.
  accounts(['add', TEACHER, '--role', 'teacher'], PASSWORD);
  apiToken = accounts(['token', TEACHER]).split('\n').at(-1).trim();
  start('portal', 'gradebook-portal', ['--addr', `127.0.0.1:${ports.portal}`, ...common]);
  const api = (path) => fetch(url('portal', path), { headers: asTeacher() });
  await eventually('the portal to reach grading', async () => (await api('/api/students')).ok);
  await eventually('the portal to reach the log service', async () => (await api('/api/logs')).ok);
  csrServer = serveCsr(ports.csr);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
});

after(async () => {
  await browser?.close();
  csrServer?.close();
  for (const p of Object.values(procs).reverse()) p.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  for (const p of Object.values(procs)) p.kill('SIGKILL');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/// A page whose console errors and warnings (hydration mismatches among
/// them) are collected; `problems()` must stay empty. Signed in as the
/// teacher unless `signedIn: false`.
async function openPage({ signedIn = true, ...options } = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  const seen = [];
  page.on('console', (m) => {
    if (['error', 'warning'].includes(m.type())) seen.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => seen.push(`page error: ${e.message}`));
  page.problems = () => seen;
  if (signedIn) {
    await page.goto(url('portal', '/signin'));
    await signIn(page);
  }
  return page;
}

/// Fills the sign-in form the page shows and posts it (a plain form post,
/// with or without JavaScript).
async function signIn(page, password = PASSWORD) {
  await page.fill('input[name=name]', TEACHER);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
}

for (const javaScriptEnabled of [true, false]) {
  test(`${javaScriptEnabled ? 'with' : 'without'} JavaScript an anonymous visitor signs in and comes back to the page asked for`, async () => {
    const page = await openPage({ signedIn: false, javaScriptEnabled });
    await page.goto(url('portal', '/students/2'));
    assert.equal(new URL(page.url()).pathname, '/signin');
    assert.equal(new URL(page.url()).searchParams.get('next'), '/students/2');

    await signIn(page, 'not the password');
    assert.match(await page.textContent('.error'), /Wrong name or password/);
    await signIn(page);
    assert.equal(new URL(page.url()).pathname, '/students/2');
    assert.equal(await page.textContent('h1'), 'Roberto Baggio');
    if (javaScriptEnabled) await hydrated(page);
    // The browser logs the wrong password's 401 itself; nothing else.
    assert.deepEqual(page.problems().filter((p) => !p.includes('401')), []);
  });
}

test('an anonymous API call gets 401 and a cross-site form post gets 403', async () => {
  const api = await fetch(url('portal', '/api/students'));
  assert.equal(api.status, 401);
  const page = await openPage();
  const cookies = (await page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
  const before = (await (await fetch(url('grading', '/students/1'), { headers: asService() })).json()).Grades.length;
  const forged = await fetch(url('portal', '/students/1/grades'), {
    method: 'POST', redirect: 'manual',
    headers: { cookie: cookies, origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
    body: 'Title=Forged&Type=Quiz&Score=1',
  });
  assert.equal(forged.status, 403);
  const after = (await (await fetch(url('grading', '/students/1'), { headers: asService() })).json()).Grades.length;
  assert.equal(after, before, 'nothing stored');
});

/// Waits until the WebAssembly client has taken over the page.
async function hydrated(page) {
  await page.waitForSelector('body[data-hydrated]', { timeout: 15000 });
}

const rows = (page, sel) => page.$$eval(`${sel} tbody tr`, (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())));

test('the list shows the five initial students with their averages', async () => {
  const page = await openPage();
  await page.goto(url('portal', '/'));
  assert.equal(new URL(page.url()).pathname, '/students');
  await hydrated(page);
  assert.equal(await page.textContent('h1'), 'Grade Book');
  assert.deepEqual(await rows(page, 'table.students'), [
    ['Carter', 'Nick', '87.0 %'],
    ['Baggio', 'Roberto', '93.7 %'],
    ['Stone', 'Emma', '47.3 %'],
    ['san', 'zhangsan', '36.7 %'],
    ['qiao', 'xiaoqiao', '22.3 %'],
  ]);
  assert.deepEqual(page.problems(), []);
});

test('a student opens from the list with grades and a chart', async () => {
  const page = await openPage();
  await page.goto(url('portal', '/students'));
  await hydrated(page);
  await page.click('text=Stone');
  await page.waitForSelector('h1:has-text("Emma Stone")');
  assert.deepEqual(await rows(page, 'table.grades'), [['Quiz 1', 'Quiz', '67'], ['Final Exam', 'Exam', '0'], ['Quiz 2', 'Quiz', '75']]);
  assert.equal(await page.locator('svg.chart rect').count(), 3);
  assert.deepEqual(page.problems(), []);
});

test('adding a grade shows it and the new average without a reload, and it is stored', async () => {
  const page = await openPage();
  await page.goto(url('portal', '/students/2'));
  await hydrated(page);
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.fill('input[name=Title]', 'Quiz 3');
  await page.selectOption('select[name=Type]', 'Test');
  await page.fill('input[name=Score]', '90');
  await page.click('button[type=submit]');
  await page.waitForSelector('table.grades td:has-text("Quiz 3")');
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'no reload');
  assert.equal(await page.textContent('.average strong'), '92.8 %');
  await page.reload();
  await hydrated(page);
  assert.deepEqual((await rows(page, 'table.grades')).at(-1), ['Quiz 3', 'Test', '90']);
  assert.deepEqual(page.problems(), []);
});

test('an invalid score shows the service message inline and stores nothing', async () => {
  const page = await openPage();
  await page.goto(url('portal', '/students/3'));
  await hydrated(page);
  await page.fill('input[name=Title]', 'Too much');
  await page.fill('input[name=Score]', '150');
  await page.click('button[type=submit]');
  const error = await page.waitForSelector('form .error');
  assert.match(await error.textContent(), /Score must be a number from 0 to 100/);
  const emma = await (await fetch(url('grading', '/students/3'), { headers: asService() })).json();
  assert.equal(emma.Grades.length, 3);
  // The browser logs the failed request's 400 itself; nothing else.
  assert.deepEqual(page.problems().filter((p) => !p.includes('400')), []);
});

test('without JavaScript the form posts and redirects back to the student', async () => {
  const page = await openPage({ javaScriptEnabled: false });
  await page.goto(url('portal', '/students/4'));
  await page.fill('input[name=Title]', 'Homework 1');
  await page.selectOption('select[name=Type]', 'Homework');
  await page.fill('input[name=Score]', '70');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  assert.equal(new URL(page.url()).pathname, '/students/4');
  assert.deepEqual((await rows(page, 'table.grades')).at(-1), ['Homework 1', 'Homework', '70']);

  // A refused grade comes back with the message instead of vanishing.
  await page.fill('input[name=Title]', '');
  await page.fill('input[name=Score]', '50');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  assert.match(await page.textContent('form .error'), /Title must not be empty/);
});

test('a script in a title is shown as text, never run', async () => {
  const title = '<script>window.__owned = 1</script><b>bold</b>';
  const r = await fetch(url('portal', '/api/students/5/grades'), {
    method: 'POST', headers: asTeacher({ 'content-type': 'application/json' }),
    body: JSON.stringify({ Title: title, Type: 'Quiz', Score: 10 }),
  });
  assert.equal(r.status, 201);
  const page = await openPage();
  await page.goto(url('portal', '/students/5'));
  await hydrated(page);
  assert.equal((await rows(page, 'table.grades')).at(-1)[0], title);
  assert.equal(await page.evaluate(() => window.__owned), undefined);
  assert.equal(await page.locator('table.grades b').count(), 0);
  assert.deepEqual(page.problems(), []);
});

test('the services page shows all four services passing', async () => {
  const page = await openPage();
  await page.goto(url('portal', '/services'));
  await hydrated(page);
  await eventually('four passing services', async () => {
    const list = await rows(page, 'table.services');
    const names = list.filter((r) => r[2] === 'passing').map((r) => r[0]).sort();
    return JSON.stringify(names) === JSON.stringify(['GradingService', 'LogService', 'Portal', 'Registry']);
  });
  assert.deepEqual(page.problems(), []);
});

test('the log page lists entries and streams new ones in', async () => {
  const page = await openPage();
  await page.goto(url('portal', '/logs?service=BrowserTest'));
  await hydrated(page);
  await new Promise((r) => setTimeout(r, 300)); // the stream connects
  await fetch(url('log', '/log'), { method: 'POST', headers: asService({ 'content-type': 'text/plain' }), body: '[BrowserTest] - hello from the test' });
  await page.waitForSelector('table.logs td:has-text("hello from the test")');
  assert.deepEqual(page.problems(), []);
});

test('the log page shows what each entry is about, from its fields', async () => {
  await fetch(url('log', '/log'), {
    method: 'POST', headers: asService({ 'content-type': 'application/json' }),
    body: JSON.stringify([{ service: 'BrowserFields', message: 'registered', fields: { service: 'GradingService', providers: 2 } }]),
  });
  const page = await openPage();
  await page.goto(url('portal', '/logs?service=BrowserFields'));
  await hydrated(page);
  const fields = await page.textContent('table.logs td.fields');
  assert.match(fields, /service=GradingService/);
  assert.match(fields, /providers=2/);
  assert.match(await page.textContent('p.note'), /order the log service received them/);
  assert.deepEqual(page.problems(), []);
});

test('without JavaScript the root redirects to the grade book, and a wrong method gets an error page', async () => {
  const root = await fetch(url('portal', '/'), { redirect: 'manual', headers: asTeacher() });
  assert.equal(root.status, 303);
  assert.equal(root.headers.get('location'), '/students');
  const page = await openPage({ javaScriptEnabled: false });
  await page.goto(url('portal', '/'));
  assert.equal(new URL(page.url()).pathname, '/students');
  assert.equal(await page.textContent('h1'), 'Grade Book');

  const wrong = await fetch(url('portal', '/logs'), { method: 'PUT', headers: asTeacher() });
  assert.equal(wrong.status, 405);
  assert.match(wrong.headers.get('content-type'), /text\/html/);
  assert.match(await wrong.text(), /Method not allowed/);
});

test('the trunk-built client lists students and adds a grade', async () => {
  const page = await openPage();
  await page.goto(url('csr', '/students'));
  await page.waitForSelector('table.students tbody tr');
  assert.equal((await rows(page, 'table.students')).length, 5);
  await page.click('text=Carter');
  await page.waitForSelector('h1:has-text("Nick Carter")');
  await page.fill('input[name=Title]', 'CSR quiz');
  await page.fill('input[name=Score]', '77');
  await page.click('button[type=submit]');
  await page.waitForSelector('table.grades td:has-text("CSR quiz")');
  assert.deepEqual(page.problems(), []);
});

test('with grading stopped the portal answers 503 with a message and keeps working', async () => {
  // Signed in while grading (which keeps the accounts) is still there.
  const page = await openPage();
  procs.grading.kill('SIGTERM');
  await new Promise((r) => procs.grading.once('exit', r));
  const response = await page.goto(url('portal', '/students'));
  assert.equal(response.status(), 503);
  assert.match(await page.textContent('.problem'), /grading service is unavailable/);
  const services = await page.goto(url('portal', '/services'));
  assert.equal(services.status(), 200, 'the rest of the portal still works');
  const api = await fetch(url('portal', '/api/students'), { headers: asTeacher() });
  assert.equal(api.status, 503);
  assert.match((await api.json()).error, /unavailable/);
});
