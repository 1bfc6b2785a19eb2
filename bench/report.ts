// Figures, limits and goals; medians over rounds; the printed table and the JSON report.
import type { Limits } from './limits.js';
import type { ScenarioId } from './options.js';

export type LimitId =
  | 'sha256'
  | 'disk'
  | 'fsync'
  | 'loopback'
  | 'push'
  | 'parallel_push'
  | 'pull'
  | 'parallel_pull'
  | 'bare_head_rps'
  | 'bare_head_p50'
  | 'bare_head_p99'
  | 'bare_get_rps'
  | 'bare_get_p50'
  | 'bare_get_p99';

export const LIMITS: Record<LimitId, { label: string; unit: string }> = {
  sha256: { label: 'sha256, one core (node:crypto)', unit: 'MiB/s' },
  disk: { label: 'disk writes + fdatasync (storage dir)', unit: 'MiB/s' },
  fsync: { label: '4 KiB write + fdatasync, c=small concurrency', unit: 'ops/s' },
  loopback: { label: 'loopback TCP, one stream', unit: 'MiB/s' },
  push: { label: 'push bound = min(sha256, disk, loopback)', unit: 'MiB/s' },
  parallel_push: { label: 'parallel pushes to a bare server (write + fdatasync)', unit: 'MiB/s' },
  pull: { label: 'verified pull from a bare server, 1 stream', unit: 'MiB/s' },
  parallel_pull: { label: 'verified pull from a bare server, parallel', unit: 'MiB/s' },
  bare_head_rps: { label: 'bare node:http, HEAD load', unit: 'req/s' },
  bare_head_p50: { label: 'bare node:http, HEAD p50', unit: 'ms' },
  bare_head_p99: { label: 'bare node:http, HEAD p99', unit: 'ms' },
  bare_get_rps: { label: 'bare node:http, GET load', unit: 'req/s' },
  bare_get_p50: { label: 'bare node:http, GET p50', unit: 'ms' },
  bare_get_p99: { label: 'bare node:http, GET p99', unit: 'ms' },
};

export function limitValues(l: Limits): Record<LimitId, number> {
  return {
    sha256: l.sha256MiBs,
    disk: l.diskMiBs,
    fsync: l.fsyncOps,
    loopback: l.loopbackMiBs,
    push: Math.min(l.sha256MiBs, l.diskMiBs, l.loopbackMiBs),
    parallel_push: l.parallelPushMiBs,
    pull: l.pullMiBs,
    parallel_pull: l.parallelPullMiBs,
    bare_head_rps: l.bareHead.rps,
    bare_head_p50: l.bareHead.p50Ms,
    bare_head_p99: l.bareHead.p99Ms,
    bare_get_rps: l.bareGet.rps,
    bare_get_p50: l.bareGet.p50Ms,
    bare_get_p99: l.bareGet.p99Ms,
  };
}

export type Goal =
  | { kind: 'vsCompare'; min: number } // Berth/Distribution ≥ min (higher is better)
  | { kind: 'fasterThanCompare'; factor: number } // Distribution/Berth ≥ factor (lower is better)
  | { kind: 'vsLimit'; min: number } // Berth/limit ≥ min
  | { kind: 'atMost'; value: number }; // Berth ≤ value

export interface FigureDef {
  id: string;
  scenario: ScenarioId;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  limit?: LimitId;
  goal?: Goal;
}

export const FIGURES: FigureDef[] = [
  { id: 's1.push', scenario: 's1', label: 'push, monolithic', unit: 'MiB/s', better: 'higher', limit: 'push', goal: { kind: 'vsCompare', min: 1.5 } },
  { id: 's2.push', scenario: 's2', label: 'push, chunked PATCH', unit: 'MiB/s', better: 'higher', limit: 'push', goal: { kind: 'vsCompare', min: 1.5 } },
  { id: 's3.push', scenario: 's3', label: 'push, streamed PATCH', unit: 'MiB/s', better: 'higher', limit: 'push', goal: { kind: 'vsCompare', min: 1.5 } },
  { id: 's4.pull', scenario: 's4', label: 'pull, sha256-verified', unit: 'MiB/s', better: 'higher', limit: 'pull', goal: { kind: 'vsCompare', min: 1 } },
  { id: 's5.push', scenario: 's5', label: 'parallel pushes, aggregate', unit: 'MiB/s', better: 'higher', limit: 'parallel_push', goal: { kind: 'vsCompare', min: 1.5 } },
  { id: 's5.pull', scenario: 's5', label: 'parallel pulls, aggregate', unit: 'MiB/s', better: 'higher', limit: 'parallel_pull', goal: { kind: 'vsCompare', min: 1 } },
  { id: 's6.ops', scenario: 's6', label: 'small blob + manifest ops', unit: 'ops/s', better: 'higher', limit: 'fsync', goal: { kind: 'vsCompare', min: 1.5 } },
  { id: 's7.head_rps', scenario: 's7', label: 'HEAD blob', unit: 'req/s', better: 'higher', limit: 'bare_head_rps', goal: { kind: 'vsLimit', min: 0.7 } },
  { id: 's7.head_p50', scenario: 's7', label: 'HEAD blob p50', unit: 'ms', better: 'lower', limit: 'bare_head_p50' },
  { id: 's7.head_p99', scenario: 's7', label: 'HEAD blob p99', unit: 'ms', better: 'lower', limit: 'bare_head_p99' },
  { id: 's7.get_rps', scenario: 's7', label: 'GET manifest by tag', unit: 'req/s', better: 'higher', limit: 'bare_get_rps', goal: { kind: 'vsLimit', min: 0.7 } },
  { id: 's7.get_p50', scenario: 's7', label: 'GET manifest p50', unit: 'ms', better: 'lower', limit: 'bare_get_p50' },
  { id: 's7.get_p99', scenario: 's7', label: 'GET manifest p99', unit: 'ms', better: 'lower', limit: 'bare_get_p99' },
  { id: 's8.tag_put', scenario: 's8', label: 'tag PUTs', unit: 'ops/s', better: 'higher', limit: 'fsync', goal: { kind: 'vsCompare', min: 1.5 } },
  { id: 's8.whole', scenario: 's8', label: 'tags list, whole', unit: 'ms', better: 'lower' },
  { id: 's8.paginated', scenario: 's8', label: 'tags list, paginated walk', unit: 'ms', better: 'lower' },
  { id: 's8.page_growth', scenario: 's8', label: 'first page cost, 10× tags', unit: '×', better: 'lower', goal: { kind: 'atMost', value: 2 } },
  { id: 's9.walk', scenario: 's9', label: 'catalog, paginated walk', unit: 'ms', better: 'lower', goal: { kind: 'fasterThanCompare', factor: 3 } },
  { id: 's9.page', scenario: 's9', label: 'catalog, mean per page', unit: 'ms', better: 'lower' },
  { id: 's10.mounts', scenario: 's10', label: 'cross-repository mounts', unit: 'ops/s', better: 'higher', limit: 'fsync', goal: { kind: 'vsCompare', min: 1.5 } },
  { id: 's11.rss_s5', scenario: 's11', label: 'peak RSS during scenario 5', unit: 'MiB', better: 'lower' },
  { id: 's11.rss_push_growth', scenario: 's11', label: 'RSS growth, large push', unit: 'MiB', better: 'lower', goal: { kind: 'atMost', value: 100 } },
  { id: 's11.rss_push_peak', scenario: 's11', label: 'peak RSS, large push', unit: 'MiB', better: 'lower' },
];

export function goalText(g: Goal | undefined): string {
  if (!g) return '';
  switch (g.kind) {
    case 'vsCompare':
      return `≥${g.min}× D`;
    case 'fasterThanCompare':
      return `${g.factor}× faster than D`;
    case 'vsLimit':
      return `≥${Math.round(g.min * 100)}% of limit`;
    case 'atMost':
      return `≤${g.value}`;
  }
}

export function median(xs: number[]): number | null {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface Measured {
  value: number | null;
  samples: number[];
}

export interface FigureReport {
  id: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  berth: Measured;
  compare: Measured | null;
  /** berth / compare (of the medians). */
  ratio: number | null;
  limit: { id: LimitId; label: string; value: number | null } | null;
  /** berth / limit (of the medians). */
  limitRatio: number | null;
  goal: string;
  met: boolean | null;
}

export interface CpuUsage {
  cpuSeconds: number;
  wallSeconds: number;
}

export interface ScenarioReport {
  id: ScenarioId;
  title: string;
  figures: FigureReport[];
  /**
   * CPU seconds the server process used during the scenario (setup included) and the
   * scenario's wall seconds, medians; null when the benchmark did not start that server.
   */
  serverCpu: { berth: CpuUsage | null; compare: CpuUsage | null };
  /** Per round, per target: what the scenario recorded besides its figures. */
  details: { round: number; target: string; details: unknown }[];
}

export interface Report {
  benchmark: 'berth';
  reportVersion: 1;
  startedAt: string;
  durationSeconds: number;
  scale: string;
  rounds: number;
  machine: Record<string, unknown>;
  targets: { berth: { url: string; managed: boolean }; compare: { url: string; managed: boolean; name: string } | null };
  limits: Record<string, { label: string; unit: string; value: number | null; samples: number[] }>;
  scenarios: ScenarioReport[];
  notes: string[];
}

export function evaluate(g: Goal | undefined, f: Pick<FigureReport, 'berth' | 'compare' | 'ratio' | 'limitRatio'>): boolean | null {
  if (!g || f.berth.value === null) return null;
  switch (g.kind) {
    case 'vsCompare':
      return f.ratio === null ? null : f.ratio >= g.min;
    case 'fasterThanCompare':
      return f.ratio === null || f.ratio === 0 ? null : 1 / f.ratio >= g.factor;
    case 'vsLimit':
      return f.limitRatio === null ? null : f.limitRatio >= g.min;
    case 'atMost':
      return f.berth.value <= g.value;
  }
}

export function fmt(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a >= 100) return Math.round(x).toLocaleString('en-US');
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function ratioText(x: number | null): string {
  return x === null || !Number.isFinite(x) ? '–' : `${x.toFixed(2)}×`;
}

/** The table as text (monospace, one row per figure). */
export function renderTable(r: Report): string {
  const compareName = r.targets.compare?.name ?? 'Distribution';
  const head = ['figure', 'unit', 'Berth', compareName, 'B/D', 'limit', 'B/limit', 'goal', 'met'];
  const rows: string[][] = [];
  const sections: number[] = [];
  for (const s of r.scenarios) {
    sections.push(rows.length);
    rows.push([`${s.id.toUpperCase()} ${s.title}`]);
    for (const f of s.figures) {
      rows.push([
        `  ${f.label}`,
        f.unit,
        fmt(f.berth.value),
        f.compare ? fmt(f.compare.value) : '–',
        ratioText(f.ratio),
        f.limit ? fmt(f.limit.value) : '',
        f.limit ? ratioText(f.limitRatio) : '',
        f.goal,
        f.met === null ? '' : f.met ? 'yes' : 'NO',
      ]);
    }
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.filter((row) => row.length > 1).map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 || i === 1 || i === 7 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out: string[] = [line(head), line(widths.map((w) => '-'.repeat(w)))];
  for (const row of rows) out.push(row.length === 1 ? row[0]! : line(row));
  out.push('');
  out.push(`Server CPU per scenario (median CPU-seconds / wall-seconds = cores kept busy; setup included):`);
  const usage = (u: CpuUsage | null) => (u ? `${u.cpuSeconds.toFixed(1)}/${u.wallSeconds.toFixed(1)} s = ${(u.cpuSeconds / Math.max(0.001, u.wallSeconds)).toFixed(2)}` : '–');
  for (const s of r.scenarios) {
    out.push(`  ${s.id.toUpperCase().padEnd(4)} Berth ${usage(s.serverCpu.berth).padEnd(22)} ${compareName} ${usage(s.serverCpu.compare)}`);
  }
  out.push('');
  out.push('Limits (medians):');
  const lw = Math.max(...Object.values(r.limits).map((l) => l.label.length));
  for (const l of Object.values(r.limits)) out.push(`  ${l.label.padEnd(lw)}  ${fmt(l.value).padStart(9)} ${l.unit}`);
  return out.join('\n');
}

/** A GitHub-flavoured markdown table of the figures (for docs/performance.md). */
export function renderMarkdown(r: Report): string {
  const compareName = r.targets.compare?.name ?? 'Distribution';
  const out = [`| scenario | figure | unit | Berth | ${compareName} | B/D | limit | B/limit | goal | met |`, '|---|---|---|--:|--:|--:|--:|--:|---|---|'];
  for (const s of r.scenarios) {
    for (const f of s.figures) {
      out.push(
        `| ${s.id.toUpperCase()} | ${f.label} | ${f.unit} | ${fmt(f.berth.value)} | ${f.compare ? fmt(f.compare.value) : '–'} | ${ratioText(f.ratio)} | ${
          f.limit ? fmt(f.limit.value) : ''
        } | ${f.limit ? ratioText(f.limitRatio) : ''} | ${f.goal} | ${f.met === null ? '' : f.met ? 'yes' : '**no**'} |`,
      );
    }
  }
  return out.join('\n');
}
