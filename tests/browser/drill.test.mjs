// Failure drill with real portal pages: two grading instances sharing the
// throwaway PostgreSQL (scripts/with-postgres.sh), the portal under load,
// and one instance killed with SIGKILL. Fewer than 1 % of page loads may
// fail, and none once the registry has had time to tell the portal.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { eventually, freePort, gradeBookLoads, system } from './support.mjs';

const database = process.env.GRADEBOOK_TEST_POSTGRES_URL;
const { procs, ports, url, start } = system();

before(async () => {
  if (!database) return;
  for (const name of ['registry', 'a', 'b', 'portal']) ports[name] = await freePort();
  const common = ['--registry-url', url('registry'), '--ship-level', 'off'];
  start('registry', 'gradebook', ['registry', '--addr', `127.0.0.1:${ports.registry}`]);
  await eventually('the registry', async () => (await fetch(url('registry', '/healthz'))).ok);
  for (const g of ['a', 'b']) {
    start(g, 'gradebook', ['grading', '--addr', `127.0.0.1:${ports[g]}`, '--database-url', database, ...common]);
  }
  start('portal', 'gradebook-portal', ['--addr', `127.0.0.1:${ports.portal}`, ...common]);
  await eventually('both instances registered', async () =>
    (await (await fetch(url('registry', '/services/GradingService'))).json()).length === 2);
  await eventually('the portal serves pages', async () => (await fetch(url('portal', '/students'))).ok);
});

after(() => { for (const p of Object.values(procs)) p.kill('SIGKILL'); });

test('killing one of two grading instances under load fails no page after detection', { skip: !database && 'GRADEBOOK_TEST_POSTGRES_URL is not set (make test starts a throwaway PostgreSQL)' }, async () => {
  let killedAt = null;
  let total = 0, failed = 0, late = 0;
  const stopAt = Date.now() + 3500;
  const worker = async () => {
    while (Date.now() < stopAt) {
      const ok = await gradeBookLoads(url('portal', '/students'));
      total += 1;
      if (!ok) {
        failed += 1;
        if (killedAt && Date.now() - killedAt > 2000) late += 1;
      }
    }
  };
  const load = Promise.all(Array.from({ length: 8 }, worker));
  await new Promise((r) => setTimeout(r, 500));
  procs.a.kill('SIGKILL');
  killedAt = Date.now();
  await load;
  assert.ok(total > 100, `the load ran: ${total}`);
  assert.ok(failed < total * 0.01, `${failed} of ${total} page loads failed`);
  assert.equal(late, 0, 'no failure after detection');
  const states = await (await fetch(url('registry', '/services'))).json();
  assert.equal(states.find((s) => s.ServiceURL === url('a')).State, 'critical');
});
