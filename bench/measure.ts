// Measuring helpers: forced GC, heap readings, GC event counting. Needs node --expose-gc.
import { PerformanceObserver, performance } from 'node:perf_hooks';

const gcFn = (globalThis as { gc?: () => void }).gc;

export function hasGc(): boolean {
  return typeof gcFn === 'function';
}

/** A full collection, twice (the first may leave weak and finalizable objects for the second). */
export function collect(): void {
  if (!gcFn) throw new Error('run with node --expose-gc (npm run bench does)');
  gcFn();
  gcFn();
}

export const MB = 1024 * 1024;

/** Let pending observer callbacks (GC entries) run. */
export const settle = (ms = 0): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Counts GC events (minor and major) whose start falls inside [from, to] (performance.now() times). */
export class GcCounter {
  private readonly starts: number[] = [];
  private readonly kinds: number[] = [];
  private readonly observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      this.starts.push(e.startTime);
      this.kinds.push((e as { detail?: { kind?: number } }).detail?.kind ?? 0);
    }
  });

  constructor() {
    this.observer.observe({ entryTypes: ['gc'] });
  }

  /** Waits for pending entries, then counts those in the window. */
  async countBetween(from: number, to: number): Promise<{ total: number; major: number }> {
    await settle(20);
    let total = 0;
    let major = 0;
    for (let i = 0; i < this.starts.length; i++) {
      const s = this.starts[i]!;
      if (s < from || s > to) continue;
      total++;
      // NODE_PERFORMANCE_GC_MAJOR = 4 (mark-sweep-compact)
      if (this.kinds[i] === 4) major++;
    }
    return { total, major };
  }

  stop(): void {
    this.observer.disconnect();
  }
}

export const now = (): number => performance.now();
