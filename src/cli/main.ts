#!/usr/bin/env node
// The `qat` command line. Library code never imports this file.
import { initBackend } from '../backend/index.js';
import { formatError } from '../util/errors.js';
import { allCommands, runCommand } from './commands.js';
import './demo.js';
import './onnx_tests.js';
import './bench.js';

function help(): string {
  return [
    'qat: quantization-aware training and post-training quantization in TypeScript',
    '',
    'usage: qat <command> [options]   (qat <command> --help for its options)',
    '',
    ...allCommands().map((c) => `  ${c.name.padEnd(12)}${c.summary}`),
  ].join('\n');
}

/** A user error (bad file, bad flag, bad data) prints one line; anything else is a bug and prints its stack. */
function report(e: unknown): string {
  if (!(e instanceof Error)) return formatError(e);
  const bug = e instanceof TypeError || e instanceof ReferenceError || e instanceof SyntaxError;
  if (bug || process.env.QATKIT_DEBUG) return formatError(e);
  const hint = (e as { hint?: string }).hint;
  return `error: ${e.message}${hint ? `\nhint: ${hint}` : ''}`;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(help());
    return cmd ? 0 : 2;
  }
  try {
    if (cmd !== 'onnx-tests') await initBackend();
    await runCommand(cmd, rest);
    return 0;
  } catch (e) {
    console.error(`qat ${cmd}: ${report(e)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
