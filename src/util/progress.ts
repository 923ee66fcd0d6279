// Progress reporting. On a terminal: one bar rewritten in place (at most ~10 times a second).
// Elsewhere (CI logs, pipes): plain lines, one per 10% of the work or one per `intervalSec`, whichever comes first,
// so a log neither floods nor goes silent for an hour.

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  total: number;
  label: string;
  /** default process.stderr (stdout stays clean for results) */
  stream?: ProgressStream;
  /** force the TTY or the plain-line mode; default: stream.isTTY */
  tty?: boolean;
  /** plain mode: also print a line when this many seconds passed since the last one (default 30) */
  intervalSec?: number;
  /** count already done (a resumed run): rate and ETA only count what this run does */
  initial?: number;
  /** what is counted, for the rate (default 'it') */
  unit?: string;
  /** clock in milliseconds; tests pass a fake one */
  now?: () => number;
}

export interface Progress {
  /** n more items done (default 1); extra is shown after the numbers, e.g. 'loss 0.123' */
  tick(n?: number, extra?: string): void;
  /** finish: draws the final state and ends the line; later calls do nothing */
  done(extra?: string): void;
  /** before other output goes to the same stream: erases the bar (TTY), which the next tick redraws */
  clear?(): void;
  readonly count: number;
}

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '?';
  const s = Math.round(sec);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const formatRate = (r: number) => (r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2));

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? !!stream.isTTY;
  const now = opts.now ?? (() => performance.now());
  const total = Math.max(0, opts.total);
  const unit = opts.unit ?? 'it';
  const intervalMs = (opts.intervalSec ?? 30) * 1000;
  const initial = opts.initial ?? 0;
  const start = now();
  let count = initial;
  let extra = '';
  let lastDraw = -Infinity;
  let lastDecile = total > 0 ? Math.floor((count * 10) / total) : 0;
  let finished = false;

  const stats = () => {
    const elapsed = (now() - start) / 1000;
    const rate = elapsed > 0 ? (count - initial) / elapsed : 0;
    const eta = rate > 0 ? (total - count) / rate : NaN;
    return { elapsed, rate, eta };
  };

  const numbers = (final: boolean) => {
    const { elapsed, rate, eta } = stats();
    const pct = total > 0 ? ` ${((100 * count) / total).toFixed(1).padStart(5)}%` : '';
    const time = final ? `in ${formatDuration(elapsed)}` : `ETA ${formatDuration(eta)}`;
    const tail = extra ? ` ${extra}` : '';
    return `${count}/${total}${pct} ${formatRate(rate)} ${unit}/s ${time}${tail}`;
  };

  const drawBar = (final: boolean) => {
    const width = 20;
    const filled = total > 0 ? Math.min(width, Math.floor((width * count) / total)) : 0;
    let line = `${opts.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${numbers(final)}`;
    // a wrapped line cannot be rewritten with \r, so cut it to the terminal width
    const cols = stream.columns;
    if (cols && line.length >= cols) line = line.slice(0, cols - 1);
    stream.write(`\r${line}\x1b[K${final ? '\n' : ''}`);
  };

  const printLine = (final: boolean) => stream.write(`${opts.label}: ${numbers(final)}\n`);

  return {
    get count() {
      return count;
    },
    tick(n = 1, ex?: string) {
      if (finished) return;
      count += n;
      if (ex !== undefined) extra = ex;
      const t = now();
      if (tty) {
        if (t - lastDraw >= 100) {
          lastDraw = t;
          drawBar(false);
        }
        return;
      }
      const decile = total > 0 ? Math.floor((count * 10) / total) : 0;
      if (decile > lastDecile || t - Math.max(lastDraw, start) >= intervalMs) {
        lastDecile = decile;
        lastDraw = t;
        if (count < total || total === 0) printLine(false);
      }
    },
    clear() {
      if (!tty || finished || lastDraw === -Infinity) return;
      stream.write('\r\x1b[K');
      lastDraw = -Infinity;
    },
    done(ex?: string) {
      if (finished) return;
      finished = true;
      if (ex !== undefined) extra = ex;
      if (tty) drawBar(true);
      else printLine(true);
    },
  };
}
