// Matrix files: the shipped ones validate and expand; errors name the file and the field; cell ids follow the config.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { expandCells, loadMatrix, matrixHash, shippedMatrices, validateMatrix } from './matrix.js';
import { getMethod, methodNames, registerMethod } from './methods.js';

const base = () => ({
  version: 1,
  name: 'm',
  tasks: [{ model: 'mlp', dataset: 'digits', float: { epochs: 2, batchSize: 32, lr: 0.1 } }],
  methods: [
    { name: 'float', method: 'float' },
    { name: 'ptq-mse', method: 'ptq', params: { observer: 'mse' } },
    { name: 'qat-ste', method: 'qat', params: { estimator: 'ste' }, budget: { epochs: 1, batchSize: 32, lr: 0.01 } },
  ],
  recipes: ['w8a8', 'w4a4'],
  seeds: [0, 1],
});

test('shipped matrices: quick and survey validate and expand to tasks x seeds x (float + methods x recipes)', () => {
  assert.ok(shippedMatrices().includes('quick') && shippedMatrices().includes('survey'));
  const quick = loadMatrix('quick').matrix;
  assert.equal(expandCells(quick).length, 1 * 2 * (1 + 6 * 2));
  const survey = loadMatrix('survey').matrix;
  assert.equal(survey.recipes.map((r) => r.name).join(','), 'w8a8,w4a4,w3a3,w2a2');
  assert.equal(expandCells(survey).length, 2 * 3 * (1 + 6 * 4));
  for (const m of [quick, survey]) {
    const ids = expandCells(m).map((c) => c.id);
    assert.equal(new Set(ids).size, ids.length, `${m.name}: cell ids are unique`);
  }
  assert.throws(() => loadMatrix('no-such-matrix'), /no shipped matrix 'no-such-matrix' \(shipped: .*quick/);
});

test('cell ids hash the whole config: a changed budget changes exactly the cells that use it', () => {
  const m0 = validateMatrix(base(), 'm.json');
  const ids0 = expandCells(m0).map((c) => c.id);
  assert.deepEqual(expandCells(validateMatrix(base(), 'm.json')).map((c) => c.id), ids0, 'stable');

  const b = base();
  b.methods[2].budget!.epochs = 2;
  const c1 = expandCells(validateMatrix(b, 'm.json'));
  const changed = c1.filter((c, i) => c.id !== ids0[i]).map((c) => c.config.method.name);
  assert.deepEqual([...new Set(changed)], ['qat-ste']);
  assert.equal(changed.length, 4); // 2 recipes x 2 seeds

  const f = base();
  f.tasks[0].float.lr = 0.2;
  const c2 = expandCells(validateMatrix(f, 'm.json'));
  assert.ok(c2.every((c, i) => c.id !== ids0[i]), 'the float budget is part of every cell');

  // order and description are not part of the hash; defaults are filled, so spelling them out changes nothing
  const r = base();
  r.methods.reverse();
  const d = { ...base(), description: 'words' };
  const e = base();
  (e.methods[1].params as Record<string, unknown>).calibrationBatches = 16;
  for (const x of [r, d, e]) assert.equal(matrixHash(expandCells(validateMatrix(x, 'm.json'))), matrixHash(expandCells(m0)));
});

test('validation errors name the file and the field', () => {
  const cases: [(m: ReturnType<typeof base>) => void, RegExp][] = [
    [(m) => ((m.methods[2] as Record<string, unknown>).budget = undefined), /m\.json: methods\[2\]\.budget: must be an object like/],
    [(m) => ((m.methods[1] as Record<string, unknown>).budget = { epochs: 1, batchSize: 8, lr: 0.1 }), /methods\[1\]\.budget: method 'ptq' does not train/],
    [(m) => (m.methods[2].budget!.lr = -1), /methods\[2\]\.budget\.lr: must be a positive number, got -1/],
    [(m) => (m.methods[1].method = 'nope'), /methods\[1\]\.method: unknown method 'nope' \(registered: float, ptq, qat/],
    [(m) => (m.methods[1].params = { observer: 'median' }), /methods\[1\]\.params\.observer: unknown observer 'median'/],
    [(m) => (m.methods[2].params = { estimator: 'magic' }), /methods\[2\]\.params\.estimator: unknown estimator "magic"/],
    [(m) => (m.methods[2].params = { distill: { alpha: 2 } } as never), /methods\[2\]\.params\.distill\.alpha: must be in \[0, 1\]/],
    [(m) => (m.methods[1].params = { obsrever: 'mse' } as never), /methods\[1\]\.params\.obsrever: unknown param/],
    [(m) => (m.methods[1].name = 'float'), /methods\[\]\.name: 'float' appears twice/],
    [(m) => (m.tasks[0].model = 'vgg'), /tasks\[0\]\.model: unknown model "vgg" \(known: mlp/],
    [(m) => (m.tasks[0].dataset = 'cifar'), /tasks\[0\]\.dataset: unknown dataset "cifar"/],
    [(m) => (m.recipes = ['w9a9']), /recipes\[0\]: .*bits must be an integer in 2\.\.8/],
    [(m) => (m.seeds = []), /seeds: must be a non-empty array/],
    [(m) => ((m as Record<string, unknown>).extra = 1), /\(top level\): unknown field 'extra'/],
    [(m) => (m.version = 2), /version: must be 1/],
  ];
  for (const [edit, re] of cases) {
    const m = base();
    edit(m);
    assert.throws(() => validateMatrix(m, 'm.json'), re, String(re));
  }
});

test('a method registered later plugs into matrices without touching the runner', () => {
  registerMethod('test-noop', {
    description: 'test method',
    usesRecipe: true,
    trains: false,
    params: (raw, at) => {
      if (raw.level !== undefined && typeof raw.level !== 'number') throw new Error(`${at.file}: ${at.field}.level: must be a number`);
      return { level: raw.level ?? 1 };
    },
    run: async (ctx) => ({ graph: ctx.floatGraph }),
  });
  assert.ok(methodNames().includes('test-noop') && getMethod('test-noop'));
  const m = base();
  m.methods.push({ name: 'noop', method: 'test-noop', params: { level: 3 } } as never);
  const cells = expandCells(validateMatrix(m, 'm.json')).filter((c) => c.config.method.name === 'noop');
  assert.equal(cells.length, 4);
  assert.deepEqual(cells[0].config.method.params, { level: 3 });
  m.methods[3] = { name: 'noop', method: 'test-noop', params: { level: 'x' } } as never;
  assert.throws(() => validateMatrix(m, 'm.json'), /m\.json: methods\[3\]\.params\.level: must be a number/);
});
