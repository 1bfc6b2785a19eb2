// Summarises a V8 CPU profile (`node --cpu-prof`, or `npm run bench -- --cpu-prof DIR`):
// where the process spent its time, by function (self and total) and by module.
// Usage: node dist/bench/cpuprofile.js FILE.cpuprofile [--top N] [--filter SUBSTRING]
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function where(f: CallFrame): string {
  const url = f.url.replace(/^file:\/\//, '').replace(/^.*\/dist\//, '');
  return url ? `${url}:${f.lineNumber + 1}` : '';
}

function key(f: CallFrame): string {
  return `${f.functionName || '(anonymous)'} ${where(f)}`.trim();
}

/** A coarse bucket for a frame: our code by directory, node internals, V8 and GC. */
function module(f: CallFrame): string {
  const u = f.url;
  if (!u) return f.functionName.startsWith('(') ? f.functionName : '(native)';
  if (u.startsWith('node:')) return u.replace(/^node:internal\//, 'node:').split('/').slice(0, 2).join('/');
  const m = /\/dist\/(src\/[^/]+(?:\/[^/]+)?)/.exec(u);
  if (m) return m[1]!.replace(/\.js$/, '');
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm) return `npm:${nm[1]}`;
  return u;
}

export function summarise(p: Profile, top = 25, filter?: string): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const d = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + d);
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const idle = [...selfUs].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((a, [, v]) => a + v, 0);
  const busy = total - idle;

  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const mods = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    if (n.callFrame.functionName === '(idle)') continue;
    self.set(key(n.callFrame), (self.get(key(n.callFrame)) ?? 0) + us);
    mods.set(module(n.callFrame), (mods.get(module(n.callFrame)) ?? 0) + us);
    // Inclusive: every distinct function on the stack gets the sample once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = key(byId.get(cur)!.callFrame);
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + us);
    }
  }
  const pct = (us: number) => `${((100 * us) / Math.max(1, busy)).toFixed(1).padStart(5)}%`;
  const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(7)} ms`;
  const list = (m: Map<string, number>, n: number, f?: string) =>
    [...m]
      .filter(([k]) => !f || k.includes(f))
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => `  ${ms(us)} ${pct(us)}  ${k}`)
      .join('\n');
  return [
    `profile: ${((p.endTime - p.startTime) / 1e6).toFixed(1)} s wall, ${(busy / 1e6).toFixed(1)} s busy (${(idle / 1e6).toFixed(1)} s idle); % of busy`,
    '',
    'by module (self):',
    list(mods, top),
    '',
    'by function (self):',
    list(self, top, filter),
    '',
    'by function (total, incl. callees):',
    list(incl, top, filter ?? '/'),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const file = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--top' && args[i - 1] !== '--filter');
  if (!file) {
    process.stderr.write('usage: node dist/bench/cpuprofile.js FILE.cpuprofile [--top N] [--filter SUBSTRING]\n');
    process.exit(2);
  }
  const ti = args.indexOf('--top');
  const fi = args.indexOf('--filter');
  const top = ti >= 0 ? Number(args[ti + 1]) || 25 : 25;
  const filter = fi >= 0 ? args[fi + 1] : undefined;
  process.stdout.write(summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile, top, filter) + '\n');
}
