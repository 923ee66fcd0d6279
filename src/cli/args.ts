// A small argument parser: `--flag value`, `--flag=value`, boolean `--flag`, positionals. Unknown flags are errors.
import { QatError } from '../util/errors.js';

export interface FlagSpec {
  type: 'string' | 'number' | 'boolean';
  help: string;
  default?: string | number | boolean;
}

export interface Parsed {
  flags: Record<string, string | number | boolean | undefined>;
  positionals: string[];
}

export function parseArgs(argv: string[], spec: Record<string, FlagSpec>, command: string): Parsed {
  const flags: Parsed['flags'] = {};
  const positionals: string[] = [];
  for (const [k, s] of Object.entries(spec)) flags[k] = s.default;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    const s = spec[name];
    if (!s) throw new QatError(`qat ${command}: unknown option --${name}`, `run 'qat ${command} --help' for the options`);
    if (s.type === 'boolean') {
      flags[name] = eq < 0 ? true : a.slice(eq + 1) !== 'false';
      continue;
    }
    const raw = eq >= 0 ? a.slice(eq + 1) : argv[++i];
    if (raw === undefined) throw new QatError(`qat ${command}: option --${name} needs a value`);
    if (s.type === 'number') {
      const v = Number(raw);
      if (!Number.isFinite(v)) throw new QatError(`qat ${command}: option --${name} must be a number, got '${raw}'`);
      flags[name] = v;
    } else flags[name] = raw;
  }
  return { flags, positionals };
}

export function usage(command: string, synopsis: string, spec: Record<string, FlagSpec>): string {
  const lines = [`usage: qat ${command} ${synopsis}`, ''];
  for (const [k, s] of Object.entries(spec))
    lines.push(`  --${k}${s.type === 'boolean' ? '' : ` <${s.type}>`}`.padEnd(28) + s.help + (s.default !== undefined ? ` (default ${s.default})` : ''));
  return lines.join('\n');
}
