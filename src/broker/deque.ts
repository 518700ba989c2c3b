// A growable ring buffer: O(1) push, shift and unshift. Array#shift copies the whole backing store
// once an array is large (tens of thousands of entries), so a queue drained with it costs O(n^2).
// Used by the message router's queues (./upstream/mqemitter-flat-drain.ts) and the in-flight
// windows (./inflight-window.ts).

/** A growable ring buffer: O(1) push, shift and unshift. */
export class Deque {
  private items: unknown[] = new Array<unknown>(16);
  private head = 0;
  private size = 0;

  get length(): number {
    return this.size;
  }

  push(item: unknown): number {
    if (this.size === this.items.length) this.grow();
    this.items[(this.head + this.size) & (this.items.length - 1)] = item;
    return ++this.size;
  }

  shift(): unknown {
    if (this.size === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) & (this.items.length - 1);
    this.size--;
    if (this.size === 0 && this.items.length > 1024) {
      this.items = new Array<unknown>(16); // a flood's backing store is not kept
      this.head = 0;
    }
    return item;
  }

  unshift(item: unknown): number {
    if (this.size === this.items.length) this.grow();
    this.head = (this.head - 1) & (this.items.length - 1);
    this.items[this.head] = item;
    return ++this.size;
  }

  private grow(): void {
    const old = this.items;
    const next = new Array<unknown>(old.length * 2);
    for (let i = 0; i < this.size; i++) next[i] = old[(this.head + i) & (old.length - 1)];
    this.items = next;
    this.head = 0;
  }
}
