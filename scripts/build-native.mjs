#!/usr/bin/env node
// Builds the qatkit native backend (build/Release/qatkit_native.node) with node-gyp and
// the machine's C++ compiler. Never fails the install: on any error it prints one line
// and exits 0, and qatkit falls back to the wasm backend at run time (with a warning).
// QATKIT_SKIP_NATIVE=1 skips the build.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.argv.includes('--strict'); // exit 1 on failure (for CI / development)

function nodeGypCommand() {
  // Prefer a node-gyp the project can resolve, then npm's bundled copy, then PATH.
  const require = createRequire(join(root, 'package.json'));
  try {
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js')];
  } catch { /* not a dependency */ }
  const npmBundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(npmBundled)) return [process.execPath, npmBundled];
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) {
    return [process.execPath, process.env.npm_config_node_gyp];
  }
  return ['node-gyp'];
}

if (process.env.QATKIT_SKIP_NATIVE === '1') {
  console.log('qatkit: QATKIT_SKIP_NATIVE=1, not building the native backend');
  process.exit(0);
}

// Build against local headers when there are some (no download): npm passes its nodedir
// setting as npm_config_nodedir; a system Node has them under <prefix>/include/node.
function nodedirArgs() {
  const fromNpm = process.env.npm_config_nodedir;
  if (fromNpm && existsSync(fromNpm)) return [`--nodedir=${fromNpm}`];
  const prefix = join(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) return [`--nodedir=${prefix}`];
  return [];
}

const [cmd, ...pre] = nodeGypCommand();
const r = spawnSync(cmd, [...pre, 'rebuild', '-j', 'max', ...nodedirArgs()], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
const built = join(root, 'build', 'Release', 'qatkit_native.node');
if (r.status === 0 && existsSync(built)) {
  console.log(`qatkit: native backend built (${built})`);
  process.exit(0);
}
// The first compiler/tool errors say why; node-gyp's own stack trace does not.
const log = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n');
const causes = log.filter((l) => /error|not found|no such file|cannot/i.test(l) && !/^gyp ERR! stack/.test(l)).slice(0, 4);
const why = r.error ? r.error.message : (causes.length ? causes : log.slice(-6)).join('\n');
console.warn(`qatkit: could not build the native backend; the wasm backend will be used instead.\n${why}`);
process.exit(strict ? 1 : 0);
