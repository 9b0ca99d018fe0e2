// A real `prognos run` for the browser tests: a fresh data dir with users of two
// orgs, the simulator failing often (so alerts arrive while a test watches; at
// 60x an alert stays active for half a minute or more, long enough to act on),
// the API on a free port. And the browser: Debian's chromium driven
// by playwright-core.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.PROGNOS_BIN || join(ROOT, 'target/release/prognos');
const CONFIG = join(ROOT, 'config/prognos.example.toml');

export const USERS = {
  super: { username: 'chief', password: 'console super password', role: 'super_admin' },
  acme: { username: 'op-acme', password: 'acme operator password', role: 'operator', org: 'acme-heat' },
  boreal: { username: 'op-boreal', password: 'boreal operator password', role: 'operator', org: 'borealis-forge' },
  admin: { username: 'admin-acme', password: 'acme admin password!', role: 'admin', org: 'acme-heat' },
};

export async function startService() {
  const data = mkdtempSync(join(tmpdir(), 'prognos-console-'));
  for (const u of Object.values(USERS)) {
    const org = u.org ? ['--org', u.org] : [];
    execFileSync(BIN, ['users', '--data-dir', data, 'add', '--config', CONFIG, '--role', u.role, ...org, '--password-stdin', u.username], {
      input: u.password + '\n',
      stdio: ['pipe', 'ignore', 'inherit'],
    });
  }
  const env = {
    ...process.env,
    PROGNOS_SIMULATOR__FAILURE_RATE_PER_MACHINE_DAY: '24',
    PROGNOS_SIMULATOR__FIRST_MODEL_DAYS: '1',
    // Small models: the tests are about the console, not the model.
    PROGNOS_ORGS__ACME_HEAT__TRAINING__ENSEMBLE: '1',
    PROGNOS_ORGS__ACME_HEAT__TRAINING__HYPERPARAMETERS__NUM_ITERATIONS: '20',
    RUST_LOG: 'info',
  };
  // The console compiled into the binary, unless PROGNOS_CONSOLE_DIR (development) names a folder.
  const proc = spawn(BIN, ['run', '--config', CONFIG, '--listen', '127.0.0.1:0', '--data-dir', data, '--speed', '60'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log = [];
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('prognos run did not start:\n' + log.join(''))), 120000);
    let buf = '';
    proc.stderr.on('data', (d) => {
      const s = d.toString();
      log.push(s);
      if (log.length > 2000) log.splice(0, 1000);
      buf += s;
      const m = buf.match(/API listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        ok(m[1].replace(/\x1b\[[0-9;]*m/g, ''));
      }
    });
    proc.on('exit', (code) => fail(new Error(`prognos run exited (${code}):\n` + log.join(''))));
  });
  return {
    url,
    log,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((ok) => {
        if (proc.exitCode !== null) return ok();
        const t = setTimeout(() => {
          proc.kill('SIGKILL');
          ok();
        }, 60000);
        proc.on('exit', () => {
          clearTimeout(t);
          ok();
        });
      });
      rmSync(data, { recursive: true, force: true });
    },
  };
}

export async function launch() {
  const executablePath = process.env.CHROMIUM || ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find(existsSync);
  if (!executablePath) throw new Error('no chromium: run scripts/setup-browser.sh (or set CHROMIUM to a Chromium binary)');
  return chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

// The API as a user, from the test (node's fetch).
export async function apiAs(url, user) {
  const r = await fetch(url + '/api/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: user.username, password: user.password }),
  });
  if (!r.ok) throw new Error('login ' + user.username + ': ' + r.status);
  const { token } = await r.json();
  const call = async (method, path, body) => {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  };
  return { token, get: (p) => call('GET', p), post: (p, b) => call('POST', p, b ?? {}) };
}

export async function until(what, f, timeoutMs) {
  const deadline = Date.now() + (timeoutMs || 120000);
  let last;
  while (Date.now() < deadline) {
    try {
      last = await f();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last && last.message ? last.message : JSON.stringify(last)})`);
}
