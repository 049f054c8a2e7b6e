// A healthy service always comes back (issue: a grading service paused past
// the registry's retention used to stay unlisted while it answered, and the
// portal answered 503 the whole time). Real processes, release builds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually, freePort, system } from './support.mjs';

const { procs, ports, url, start } = system();
let dataDir;

before(async () => {
  for (const name of ['registry', 'grading', 'portal']) ports[name] = await freePort();
  dataDir = mkdtempSync(join(tmpdir(), 'gradebook-recovery-'));
  const common = ['--registry-url', url('registry'), '--ship-level', 'off'];
  start('registry', 'gradebook', ['registry', '--addr', `127.0.0.1:${ports.registry}`,
    '--probe-interval', '100ms', '--retention', '1s']);
  await eventually('the registry', async () => (await fetch(url('registry', '/healthz'))).ok);
  start('grading', 'gradebook', ['grading', '--addr', `127.0.0.1:${ports.grading}`,
    '--database-url', `sqlite://${join(dataDir, 'grading.db')}`, ...common]);
  start('portal', 'gradebook-portal', ['--addr', `127.0.0.1:${ports.portal}`, ...common]);
  await eventually('the portal serves pages', async () => (await fetch(url('portal', '/students'))).ok);
});

after(() => {
  for (const p of Object.values(procs)) p.kill('SIGKILL');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const gradingKnown = async () =>
  (await (await fetch(url('registry', '/services'))).json()).some((s) => s.ServiceURL === url('grading'));

test('grading paused past the retention is listed again and the portal serves pages within 3 s of resuming', async () => {
  procs.grading.kill('SIGSTOP');
  await eventually('the portal says grading is unavailable', async () => (await fetch(url('portal', '/students'))).status === 503);
  await eventually('the registry forgets grading', async () => !(await gradingKnown()));

  procs.grading.kill('SIGCONT');
  const resumed = Date.now();
  await eventually('the portal serves pages again', async () => (await fetch(url('portal', '/students'))).ok, 3000);

  assert.ok(await gradingKnown());
  assert.ok(Date.now() - resumed <= 3000);
});
