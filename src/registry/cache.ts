// A small in-memory cache with a size bound and an age bound, for facts read from storage
// on hot paths (a blob linked into a repository, a manifest's bytes). Entries expire after
// `ttlMs`, so changes made by another process sharing the storage are seen within that
// time; this process invalidates its own changes at once.
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expires: number; weight: number }>();
  private weight = 0;

  constructor(
    private readonly ttlMs: number,
    /** Bound on the summed weights (entries weigh 1 unless told otherwise). */
    private readonly maxWeight: number,
  ) {}

  get(key: string): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires <= Date.now()) {
      this.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: V, weight = 1): void {
    if (this.ttlMs <= 0 || weight > this.maxWeight) return;
    this.delete(key);
    this.entries.set(key, { value, expires: Date.now() + this.ttlMs, weight });
    this.weight += weight;
    // Oldest first: Map keeps insertion order.
    for (const [k] of this.entries) {
      if (this.weight <= this.maxWeight) break;
      this.delete(k);
    }
  }

  delete(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.weight -= e.weight;
  }
}
