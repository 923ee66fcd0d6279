// Where a result came from: the package version and the git commit (with whether the tree had local edits).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (holding package.json and bench/), found by walking up from this file. */
export function packageRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(d, 'package.json')) && existsSync(join(d, 'bench'))) return d;
    const up = dirname(d);
    if (up === d) return process.cwd();
    d = up;
  }
}

export interface Provenance {
  version: string;
  /** null outside a git checkout or without git */
  commit: string | null;
  /** the working tree differed from the commit (null when unknown) */
  gitDirty: boolean | null;
}

function git(args: string[], cwd: string): string | null {
  try {
    return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).trim();
  } catch {
    return null;
  }
}

let cached: Provenance | undefined;

export function provenance(): Provenance {
  if (cached) return cached;
  const root = packageRoot();
  let version = 'unknown';
  try {
    version = String(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version ?? 'unknown');
  } catch {
    // keep 'unknown': a missing package.json must not stop a benchmark
  }
  const commit = git(['rev-parse', 'HEAD'], root);
  const status = commit ? git(['status', '--porcelain', '--untracked-files=no'], root) : null;
  cached = { version, commit: commit || null, gitDirty: status === null ? null : status !== '' };
  return cached;
}
