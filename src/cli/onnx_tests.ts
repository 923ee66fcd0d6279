// qat onnx-tests DIR: ONNX backend node test cases through our integer engine.
import { QatError } from '../util/errors.js';
import { registerCommand } from './commands.js';
import { need } from './common.js';

registerCommand({
  name: 'onnx-tests',
  synopsis: 'DIR [--filter SUBSTRING] [--verbose]',
  summary: 'Run ONNX backend node tests (folders with model.onnx and test_data_set_*) through the integer engine.',
  flags: {
    filter: { type: 'string', help: 'only cases whose folder name contains this' },
    verbose: { type: 'boolean', help: 'print every case' },
  },
  async run(f, [dir]) {
    const root = need(dir, 'DIR', 'onnx-tests');
    const m = await import('../int/onnx_tests.js').catch((e) => {
      throw new QatError(`the integer engine's test runner is not available: ${(e as Error).message}`);
    });
    const r = await m.runOnnxNodeTests(root, { filter: f.filter as string | undefined });
    for (const c of r.results) if (f.verbose || c.status === 'failed') console.log(`${c.status.padEnd(7)} ${c.name}${c.reason ? `: ${c.reason}` : ''}`);
    console.log(`${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped`);
    if (r.failed > 0) process.exitCode = 1;
  },
});
