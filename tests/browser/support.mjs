// What the browser tests share: the system's processes on free ports, and
// waiting for a condition. Not a test file itself (node --test picks only
// *.test.mjs here).
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

export const root = resolve(import.meta.dirname, '../..');
const bin = process.env.GRADEBOOK_BIN_DIR ?? join(root, 'target/release');

/// A port nobody listens on right now.
export function freePort() {
  return new Promise((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/// The processes of one test file: `ports[name]`, `url(name, path)`, and
/// `start(name, exe, args)` for a release binary, kept in `procs[name]`.
export function system() {
  const procs = {};
  const ports = {};
  return {
    procs,
    ports,
    url: (name, path = '') => `http://127.0.0.1:${ports[name]}${path}`,
    start(name, exe, args) {
      procs[name] = spawn(join(bin, exe), args, {
        cwd: root,
        env: { ...process.env, RUST_LOG: 'warn', LEPTOS_SITE_ROOT: join(root, 'target/site'), LEPTOS_OUTPUT_NAME: 'gradebook' },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      return procs[name];
    },
  };
}

/// Polls `check` every 50 ms until it is true (errors count as false).
export async function eventually(what, check, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/// Whether one load of the grade book at `pageUrl` succeeds, with its data.
export async function gradeBookLoads(pageUrl) {
  try {
    const r = await fetch(pageUrl);
    return r.ok && (await r.text()).includes('Carter');
  } catch {
    return false;
  }
}
