// Interop with the original Go program, in both directions: each mix of its
// processes and ours is run for real (fixed ports 3000/4000/5005/6000, as the
// Go program has them) and checked from the outside. Run by `make test` after
// the release builds; needs Debian's golang-go (scripts/setup.sh).
//
//   node --test tests/browser/interop.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { eventually, freePort, root, system } from './support.mjs';
import { build, goPorts, http, unavailable } from './go.mjs';

const require = createRequire(join(root, 'tools/package.json'));
const { chromium } = require('playwright-core');

const skip = unavailable() ?? false;
const goUrl = (name, path = '') => `http://127.0.0.1:${goPorts[name]}${path}`;
const seeds = ['<a href="/students/1">Carter, Nick</a>', '<a href="/students/2">Baggio, Roberto</a>',
  '<a href="/students/3">Stone, Emma</a>', '<a href="/students/4">san, zhangsan</a>', '<a href="/students/5">qiao, xiaoqiao</a>'];
let go, dataDir, browser;

before(async () => {
  if (skip) return;
  go = build();
  dataDir = mkdtempSync(join(tmpdir(), 'gradebook-interop-'));
});

after(async () => {
  await browser?.close();
  if (!process.env.GRADEBOOK_KEEP_GO) go?.remove();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/// Runs `body(ours)` with our processes in `ours`, then stops everything.
async function mix(body) {
  const ours = system();
  try {
    await body(ours);
  } finally {
    for (const p of Object.values(ours.procs).reverse()) p.kill('SIGKILL');
    await go.stopAll();
    await new Promise((r) => setTimeout(r, 200));
  }
}

const text = async (u) => (await fetch(u)).text();
const json = async (u) => (await http(u)).json();
const count = (haystack, re) => (haystack.match(re) ?? []).length;
const form = (fields) => ({ method: 'POST', body: new URLSearchParams(fields), redirect: 'manual' });
const lastGrade = (student) => {
  const { Title, Type, Score } = student.Grades.at(-1);
  return { Title, Type, Score };
};

/// The Go portal lists the five students (once it has been told of grading).
async function goPortalLists() {
  let list = '';
  await eventually('the Go portal to list the five students', async () => {
    list = await text(goUrl('portal', '/students'));
    return seeds.every((s) => list.includes(s));
  });
}

async function launch() {
  browser ??= await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  return browser;
}

test('Go registry with our log and grading and the Go portal', { skip }, () => mix(async (ours) => {
  await go.start('registry');
  ours.ports.log = await freePort();
  ours.ports.grading = await freePort();
  const common = ['--registry-url', goUrl('registry')];
  ours.start('log', 'gradebook', ['log', '--addr', `127.0.0.1:${ours.ports.log}`, '--dir', join(dataDir, 'mix1-log'), ...common]);
  ours.start('grading', 'gradebook', ['grading', '--addr', `127.0.0.1:${ours.ports.grading}`,
    '--database-url', `sqlite://${join(dataDir, 'mix1.db')}`, ...common]);
  await eventually('both registered with the Go registry', () =>
    /Adding service: LogService/.test(go.output('registry')) && /Adding service: GradingService/.test(go.output('registry')));

  // Registered exactly once each, not again and again.
  await new Promise((r) => setTimeout(r, 10000));
  const registry = go.output('registry');
  assert.equal(count(registry, /Adding service: LogService with URL/g), 1, registry);
  assert.equal(count(registry, /Adding service: GradingService with URL/g), 1, registry);

  await go.start('portal');
  await goPortalLists();

  const added = await fetch(goUrl('portal', '/students/2/grades'), form({ Title: 'Through Go', Type: 'Quiz', Score: '77' }));
  assert.equal(added.status, 307);
  const baggio = await json(ours.url('grading', '/students/2'));
  assert.deepEqual(lastGrade(baggio), { Title: 'Through Go', Type: 'Quiz', Score: 77 });

  // The Go portal decodes a missing student as an error, as with the original.
  assert.equal((await fetch(goUrl('portal', '/students/99'))).status, 500);
}));

test('Go registry, log and grading with our portal', { skip }, () => mix(async (ours) => {
  for (const name of ['registry', 'log', 'grading']) await go.start(name);
  ours.ports.portal = await freePort();
  ours.start('portal', 'gradebook-portal', ['--addr', `127.0.0.1:${ours.ports.portal}`, '--registry-url', goUrl('registry')]);
  await eventually('our portal lists the students', async () => (await fetch(ours.url('portal', '/students'))).ok);

  // Averages are computed: the Go grading service sends none.
  const page = await (await launch()).newPage();
  await page.goto(ours.url('portal', '/students'));
  const rows = await page.$$eval('table.students tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())));
  assert.deepEqual(rows, [['Carter', 'Nick', '87.0 %'], ['Baggio', 'Roberto', '93.7 %'], ['Stone', 'Emma', '47.3 %'],
    ['san', 'zhangsan', '36.7 %'], ['qiao', 'xiaoqiao', '22.3 %']]);

  // Without JavaScript: the plain form post.
  const posted = await fetch(ours.url('portal', '/students/3/grades'), form({ Title: 'Form grade', Type: 'Test', Score: '66' }));
  assert.equal(posted.status, 303);
  assert.equal(posted.headers.get('location'), '/students/3');
  assert.deepEqual(lastGrade(await json(goUrl('grading', '/students/3'))), { Title: 'Form grade', Type: 'Test', Score: 66 });

  // With JavaScript: the island posts JSON, with Score a number.
  await page.goto(ours.url('portal', '/students/4'));
  await page.waitForSelector('body[data-hydrated]', { timeout: 15000 });
  await page.fill('input[name=Title]', 'Island grade');
  await page.selectOption('select[name=Type]', 'Homework');
  await page.fill('input[name=Score]', '88.5');
  await page.click('button[type=submit]');
  await page.waitForSelector('table.grades td:has-text("Island grade")');
  assert.deepEqual(lastGrade(await json(goUrl('grading', '/students/4'))), { Title: 'Island grade', Type: 'Homework', Score: 88.5 });

  // A grade type the Go service stores but we do not offer is shown, not an error.
  await http(goUrl('grading', '/students/5/grades'), { method: 'POST', body: JSON.stringify({ Title: 'Essay 1', Type: 'Essay', Score: 50 }) });
  const student = await fetch(ours.url('portal', '/students/5'));
  assert.equal(student.status, 200);
  const html = await student.text();
  assert.ok(html.includes('>Essay 1<') && html.includes('>Essay<'), html);

  // This registry and log service cannot list: the pages say so.
  const services = await fetch(ours.url('portal', '/services'));
  assert.match(await services.text(), /registry does not list its services/);
  const logs = await fetch(ours.url('portal', '/logs'));
  assert.match(await logs.text(), /log service does not answer queries/);

  // Our logs reach the Go log service as its own text lines, one per record.
  await eventually('our portal\'s lines in the Go log', () => /\d \[Portal\] - registered with the registry/.test(go.stored()));
  assert.doesNotMatch(go.stored(), /\[\{"service"/);
}));

test('our registry with the Go log, grading and portal', { skip }, () => mix(async (ours) => {
  ours.ports.registry = goPorts.registry;
  ours.start('registry', 'gradebook', ['registry', '--addr', `127.0.0.1:${goPorts.registry}`]);
  await eventually('our registry', async () => (await fetch(goUrl('registry', '/healthz'))).ok);
  for (const name of ['log', 'grading', 'portal']) await go.start(name);
  await eventually('the Go services listed', async () => {
    const names = (await json(goUrl('registry', '/services'))).filter((s) => s.State === 'passing').map((s) => s.ServiceName);
    return ['LogService', 'GradingService', 'Portald'].every((n) => names.includes(n));
  });

  await goPortalLists();
  assert.equal((await fetch(goUrl('portal', '/students/1/grades'), form({ Title: 'Via our registry', Type: 'Test', Score: '91' }))).status, 307);
  assert.deepEqual(lastGrade(await json(goUrl('grading', '/students/1'))), { Title: 'Via our registry', Type: 'Test', Score: 91 });

  // A crash of the Go grading service reaches the Go portal as a patch.
  await go.kill9('grading');
  await eventually('the Go portal told of the removal', () =>
    /Update received \{\[\] \[\{GradingService http:\/\/localhost:6000\}\]\}/.test(go.output('portal')));
}));

test('our grading and the Go grading both as GradingService, under both portals', { skip }, () => mix(async (ours) => {
  ours.ports.registry = goPorts.registry;
  ours.start('registry', 'gradebook', ['registry', '--addr', `127.0.0.1:${goPorts.registry}`]);
  await eventually('our registry', async () => (await fetch(goUrl('registry', '/healthz'))).ok);
  await go.start('log');
  await go.start('grading');
  ours.ports.grading = await freePort();
  ours.ports.portal = await freePort();
  const common = ['--registry-url', goUrl('registry')];
  const startGrading = () => ours.start('grading', 'gradebook', ['grading', '--addr', `127.0.0.1:${ours.ports.grading}`,
    '--database-url', `sqlite://${join(dataDir, 'mix4.db')}`, ...common]);
  startGrading();
  const providers = async () => (await json(goUrl('registry', '/services/GradingService'))).length;
  await eventually('two grading providers', async () => (await providers()) === 2);
  await go.start('portal');
  ours.start('portal', 'gradebook-portal', ['--addr', `127.0.0.1:${ours.ports.portal}`, ...common]);
  await eventually('our portal serves', async () => (await fetch(ours.url('portal', '/students'))).ok);

  const allOk = async (u, n = 20) => {
    for (let i = 0; i < n; i++) assert.equal((await fetch(u)).status, 200, u);
  };
  await allOk(goUrl('portal', '/students'));
  await allOk(ours.url('portal', '/students'));

  // Ours killed: our portal fails over at once; the Go portal once told.
  ours.procs.grading.kill('SIGKILL');
  await allOk(ours.url('portal', '/students'));
  const removal = new RegExp(`Update received \\{\\[\\] \\[\\{GradingService http://127.0.0.1:${ours.ports.grading}\\}\\]\\}`);
  await eventually('the Go portal told our grading is gone', () => removal.test(go.output('portal')));
  await allOk(goUrl('portal', '/students'));

  // Back, then the Go one killed: our portal keeps answering.
  startGrading();
  await eventually('two grading providers again', async () => (await providers()) === 2);
  await go.kill9('grading');
  await allOk(ours.url('portal', '/students'));
  await eventually('the Go grading removed', async () => (await providers()) === 1);
  await allOk(ours.url('portal', '/students'));
}));
