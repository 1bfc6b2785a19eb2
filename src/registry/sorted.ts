// Sorted name lists kept in memory (the catalog, tags lists): changed by copying, since a
// reader may still hold the old array.

/** Index of the first entry not less than `name`. */
function lowerBound(sorted: readonly string[], name: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** `sorted` with `name` in its place (the same array when it is already there). */
export function withName(sorted: string[], name: string): string[] {
  const i = lowerBound(sorted, name);
  return sorted[i] === name ? sorted : [...sorted.slice(0, i), name, ...sorted.slice(i)];
}

/** `sorted` without `name` (the same array when it is not there). */
export function withoutName(sorted: string[], name: string): string[] {
  const i = lowerBound(sorted, name);
  return sorted[i] === name ? [...sorted.slice(0, i), ...sorted.slice(i + 1)] : sorted;
}
