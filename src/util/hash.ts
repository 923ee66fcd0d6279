// Content hashes of plain configs, e.g. to tell whether a checkpoint belongs to this run's configuration.
import { createHash } from 'node:crypto';

/** JSON with object keys sorted, so equal configs give equal text whatever the key order. */
export function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v)) {
      const o = v as Record<string, unknown>;
      return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
    }
    if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>);
    if (typeof v === 'function') throw new TypeError('stableStringify: functions cannot be hashed; pass plain data');
    if (typeof v === 'bigint') return v.toString();
    return v;
  });
}

/** sha256 of the stable JSON, hex, first 16 characters (64 bits: plenty to tell configs apart) */
export function hashConfig(value: unknown): string {
  return createHash('sha256').update(stableStringify(value)).digest('hex').slice(0, 16);
}
