// Regenerates the PyTorch reference numbers with the installed torch and checks against them, so that the committed
// fixtures cannot drift from what torch computes. Skipped when /usr/bin/python3 cannot import torch.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setupTfjs } from '../util/tfjs.js';
import { checkFakeQuant, checkLearnable, checkObservers, checkQParams, loadFixture, repoRoot } from './torch_fixtures.js';

const PY = '/usr/bin/python3';

test('live: torch recomputes the fixtures and we match them', async (t) => {
  const probe = spawnSync(PY, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    t.skip(`${PY} cannot import torch: ${(probe.stderr || String(probe.error ?? '')).trim().split('\n').pop()}`);
    return;
  }
  await setupTfjs();
  const out = mkdtempSync(join(tmpdir(), 'qatkit-torch-'));
  try {
    const r = spawnSync(PY, [join(repoRoot(), 'scripts', 'gen_torch_fixtures.py'), '--out', out], { encoding: 'utf8' });
    assert.equal(r.status, 0, `gen_torch_fixtures.py failed: ${r.stderr}`);
    assert.ok(checkQParams(loadFixture('qparams', out)) > 0);
    assert.ok(checkFakeQuant(loadFixture('fake_quant', out)) > 0);
    assert.ok(checkLearnable(loadFixture('learnable', out)) > 0);
    assert.ok(checkObservers(loadFixture('observers', out)) > 0);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
