// A small in-memory cache with a size bound and an age bound, for facts read from storage
// on hot paths (a blob linked into a repository, a manifest's bytes). Entries expire after
// `ttlMs`, so changes made by another process sharing the storage are seen within that
// time; this process invalidates its own changes at once.
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expires: number; weight: number }>();
  private weight = 0;
  /** Counts writers' sets and deletes (see `version` and `fill`). */
  private changes = 0;

  constructor(
    private readonly ttlMs: number,
    /** Bound on the summed weights (entries weigh 1 unless told otherwise). */
    private readonly maxWeight: number,
  ) {}

  get(key: string): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires <= Date.now()) {
      this.remove(key);
      return undefined;
    }
    return e.value;
  }

  /**
   * A reader takes the version before it reads storage and `fill`s with it after: if a
   * writer changed the cache in between, what was read may be older than the write, and is
   * not kept.
   */
  get version(): number {
    return this.changes;
  }

  fill(key: string, value: V, version: number, weight = 1): void {
    if (version === this.changes) this.store(key, value, weight);
  }

  /** A writer's set: its own change, seen at once by this process. */
  set(key: string, value: V, weight = 1): void {
    this.changes++;
    this.store(key, value, weight);
  }

  delete(key: string): void {
    this.changes++;
    this.remove(key);
  }

  private store(key: string, value: V, weight: number): void {
    this.remove(key);
    if (this.ttlMs <= 0 || weight > this.maxWeight) return;
    this.entries.set(key, { value, expires: Date.now() + this.ttlMs, weight });
    this.weight += weight;
    // Oldest first: Map keeps insertion order.
    for (const [k] of this.entries) {
      if (this.weight <= this.maxWeight) break;
      this.remove(k);
    }
  }

  private remove(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.weight -= e.weight;
  }
}
