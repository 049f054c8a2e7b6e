// The original Go program (../shared/reference/go-original: the tutorial's
// registry, log, grading and portal), built once into a temporary copy and
// run service by service on its fixed ports (registry 3000, log 4000,
// grading 6000, portal 5005). Not a test file itself.
import { spawn, execFileSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { cpSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { root } from './support.mjs';

export const source = process.env.GRADEBOOK_GO_ORIGINAL ?? resolve(root, '../shared/reference/go-original');

const binaries = { registry: 'registryservice', log: 'logservice', grading: 'gradingservice', portal: 'partal' };
export const goPorts = { registry: 3000, log: 4000, grading: 6000, portal: 5005 };

function haveGo() {
  try {
    execFileSync('go', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/// An HTTP request by node:http: fetch refuses port 6000 (the grading
/// service's, on the Fetch standard's list of "bad ports").
export function http(url, { method = 'GET', body, headers = {} } = {}) {
  return new Promise((ok, fail) => {
    const req = httpRequest(url, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        ok({ status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) });
      });
    });
    req.on('error', fail);
    req.setTimeout(5000, () => req.destroy(new Error(`timed out: ${url}`)));
    req.end(body);
  });
}

/// Why the Go program cannot run here, or null. Under CI a missing program
/// or toolchain is a failure, not a skip.
export function unavailable() {
  const why = !existsSync(source) ? `the Go program is not at ${source}` : !haveGo() ? 'go is not installed (scripts/setup.sh installs golang-go)' : null;
  if (why && process.env.CI) throw new Error(`CI must run the interop tests: ${why}`);
  return why;
}

/// Builds the four programs into a temporary copy.
export function build() {
  const dir = mkdtempSync(join(tmpdir(), 'gradebook-go-'));
  cpSync(source, dir, { recursive: true });
  execFileSync('chmod', ['-R', 'u+w', dir]);
  const env = { ...process.env, GOFLAGS: '-mod=mod', GO111MODULE: 'on', GOPROXY: 'off', GOTOOLCHAIN: 'local' };
  for (const b of Object.values(binaries)) {
    execFileSync('go', ['build', '-trimpath', '-o', `bin/${b}`, `./cmd/${b}`], { cwd: dir, env, stdio: 'inherit' });
  }
  return new GoProgram(dir);
}

export class GoProgram {
  constructor(dir) {
    this.dir = dir;
    this.procs = {};
  }

  logFile(name) {
    return join(this.dir, `${name}.out`);
  }

  /// What the service printed so far.
  output(name) {
    return existsSync(this.logFile(name)) ? readFileSync(this.logFile(name), 'utf8') : '';
  }

  /// The log service's file of stored lines.
  stored() {
    const file = join(this.dir, 'cmd/logservice/distributed.log');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  /// Starts one service from its own folder, as the tutorial does, and waits
  /// until it answers. Its stdin stays open: a line (or EOF) stops it.
  ///
  /// The original registers before its server listens, so the registry's
  /// first patch can find nothing there; it then exits (NOTES.md, R8). On a
  /// busy machine that happens: such a start is tried again.
  async start(name) {
    const b = binaries[name];
    const probe = `http://127.0.0.1:${goPorts[name]}${name === 'registry' ? '/services' : '/heartbeat'}`;
    for (let attempt = 1; ; attempt++) {
      const out = openSync(this.logFile(name), 'a');
      const p = spawn(join(this.dir, 'bin', b), [], { cwd: join(this.dir, 'cmd', b), stdio: ['pipe', out, out] });
      this.procs[name] = p;
      const deadline = Date.now() + 10000;
      while (p.exitCode === null && p.signalCode === null && Date.now() < deadline) {
        try {
          await http(probe);
          // Answering, and still there once its registration is through.
          await new Promise((r) => setTimeout(r, 300));
          if (p.exitCode === null) return;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      if (attempt === 5) throw new Error(`the Go ${name} did not start: ${this.output(name)}`);
      p.kill('SIGKILL');
    }
  }

  /// Stops it the tutorial's way (a key press: it deregisters), then for sure.
  async stop(name) {
    const p = this.procs[name];
    if (!p || p.exitCode !== null) return;
    p.stdin.write('\n');
    await Promise.race([new Promise((r) => p.once('exit', r)), new Promise((r) => setTimeout(r, 3000))]);
    p.kill('SIGKILL');
    delete this.procs[name];
  }

  /// Killed at once: no deregistration.
  async kill9(name) {
    const p = this.procs[name];
    if (!p) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
    delete this.procs[name];
  }

  async stopAll() {
    for (const name of ['portal', 'grading', 'log', 'registry']) await this.stop(name);
  }

  remove() {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
