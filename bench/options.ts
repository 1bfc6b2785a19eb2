// Command-line options and the sizes of each scale: `full` is the benchmark, `quick`
// a few-minute approximation, `tiny` the smoke run of the test suite (seconds, figures
// meaningless).
import { GiB, KiB, MiB } from './data.js';

export interface Sizes {
  /** Scenarios 1–4: count × size of large blobs. */
  bigCount: number;
  bigSize: number;
  /** Scenario 2: bytes per PATCH. */
  chunkSize: number;
  /** Scenario 5: parallel streams × blob size. */
  parallel: number;
  parallelSize: number;
  /** Scenario 6: small blobs (+ one manifest each, each in its own repository). */
  smallCount: number;
  smallSize: number;
  smallConcurrency: number;
  /** Scenario 7: connections and seconds per request kind. */
  loadConnections: number;
  loadMs: number;
  loadWarmupMs: number;
  /** Scenario 8: tags in one repository, page size, PUT concurrency. */
  tagCount: number;
  pageSize: number;
  /** Scenario 10: mounts. */
  mountCount: number;
  /** Scenario 11: the large push whose RSS is watched. */
  rssPushSize: number;
  /** Limits. */
  shaBytes: number;
  diskBytes: number;
  loopbackBytes: number;
  /** Default rounds. */
  rounds: number;
}

export const SCALES: Record<'full' | 'quick' | 'tiny', Sizes> = {
  full: {
    bigCount: 16,
    bigSize: 64 * MiB,
    chunkSize: 8 * MiB,
    parallel: 8,
    parallelSize: 64 * MiB,
    smallCount: 2000,
    smallSize: 4 * KiB,
    smallConcurrency: 32,
    loadConnections: 64,
    loadMs: 10_000,
    loadWarmupMs: 1000,
    tagCount: 5000,
    pageSize: 100,
    mountCount: 1000,
    rssPushSize: 2 * GiB,
    shaBytes: 1 * GiB,
    diskBytes: 1 * GiB,
    loopbackBytes: 4 * GiB,
    rounds: 3,
  },
  quick: {
    bigCount: 4,
    bigSize: 64 * MiB,
    chunkSize: 8 * MiB,
    parallel: 8,
    parallelSize: 16 * MiB,
    smallCount: 300,
    smallSize: 4 * KiB,
    smallConcurrency: 32,
    loadConnections: 64,
    loadMs: 3000,
    loadWarmupMs: 500,
    tagCount: 1000,
    pageSize: 100,
    mountCount: 200,
    rssPushSize: 512 * MiB,
    shaBytes: 256 * MiB,
    diskBytes: 256 * MiB,
    loopbackBytes: 1 * GiB,
    rounds: 1,
  },
  tiny: {
    bigCount: 2,
    bigSize: 1 * MiB,
    chunkSize: 256 * KiB,
    parallel: 4,
    parallelSize: 512 * KiB,
    smallCount: 20,
    smallSize: 4 * KiB,
    smallConcurrency: 8,
    loadConnections: 8,
    loadMs: 300,
    loadWarmupMs: 50,
    tagCount: 30,
    pageSize: 10,
    mountCount: 10,
    rssPushSize: 4 * MiB,
    shaBytes: 16 * MiB,
    diskBytes: 4 * MiB,
    loopbackBytes: 16 * MiB,
    rounds: 1,
  },
};

export type ScenarioId = 's1' | 's2' | 's3' | 's4' | 's5' | 's6' | 's7' | 's8' | 's9' | 's10' | 's11';
export const SCENARIO_IDS: ScenarioId[] = ['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9', 's10', 's11'];

export interface Options {
  target?: string;
  compare?: string;
  noCompare: boolean;
  json: boolean;
  rounds: number;
  scale: keyof typeof SCALES;
  sizes: Sizes;
  only: Set<ScenarioId>;
  /** Environment added to the Berth process the benchmark starts. */
  berthEnv: Record<string, string>;
  /** Directory for V8 CPU profiles of the Berth process (one per round). */
  cpuProfDir?: string;
  /** Skip the limit measurements. */
  noLimits: boolean;
  /** Also print the figures as a markdown table (for docs/performance.md). */
  markdown: boolean;
}

export const USAGE = `usage: npm run bench -- [options]
  --target URL       benchmark the Berth at URL instead of starting one
  --compare URL      compare with the registry at URL instead of starting docker-registry
  --no-compare       no comparison registry
  --json             print the report as JSON (the table goes to stderr)
  --rounds N         rounds (medians are reported; default 3, 1 with --quick)
  --quick            smaller sizes and one round (a few minutes)
  --scale S          full | quick | tiny (also env BENCH_SCALE); tiny is the smoke test's
  --only LIST        comma-separated scenarios to report, e.g. s1,s7 (prerequisites still run)
  --berth-env K=V    extra environment for the Berth process started here (repeatable)
  --cpu-prof DIR     write V8 CPU profiles of the Berth process started here into DIR
  --no-limits        do not measure the machine's limits
  --markdown         also print the figures as a markdown table
`;

export class UsageError extends Error {}

export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): Options {
  let scale = (env.BENCH_SCALE ?? 'full') as keyof typeof SCALES;
  let rounds: number | undefined;
  let quick = false;
  const opts: Omit<Options, 'rounds' | 'scale' | 'sizes'> = {
    noCompare: false,
    json: false,
    only: new Set(SCENARIO_IDS),
    berthEnv: {},
    noLimits: false,
    markdown: false,
  };
  const value = (i: number, flag: string): string => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new UsageError(`${flag} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    // --flag=value is accepted as well as --flag value.
    if (a.startsWith('--') && eq > 0 && a !== '--berth-env') {
      argv = [...argv.slice(0, i), a.slice(0, eq), a.slice(eq + 1), ...argv.slice(i + 1)];
    }
    const flag = argv[i]!;
    switch (flag) {
      case '--target':
        opts.target = value(i++, flag);
        break;
      case '--compare':
        opts.compare = value(i++, flag);
        break;
      case '--no-compare':
        opts.noCompare = true;
        break;
      case '--json':
        opts.json = true;
        break;
      case '--rounds': {
        const n = Number(value(i++, flag));
        if (!Number.isInteger(n) || n < 1 || n > 50) throw new UsageError('--rounds must be an integer from 1 to 50');
        rounds = n;
        break;
      }
      case '--quick':
        quick = true;
        break;
      case '--scale':
        scale = value(i++, flag) as keyof typeof SCALES;
        break;
      case '--only': {
        const ids = value(i++, flag).split(',').map((s) => s.trim().toLowerCase());
        for (const id of ids) if (!SCENARIO_IDS.includes(id as ScenarioId)) throw new UsageError(`--only: unknown scenario ${id}`);
        opts.only = new Set(ids as ScenarioId[]);
        break;
      }
      case '--berth-env': {
        const kv = value(i++, flag);
        const e = kv.indexOf('=');
        if (e <= 0) throw new UsageError('--berth-env needs K=V');
        opts.berthEnv[kv.slice(0, e)] = kv.slice(e + 1);
        break;
      }
      case '--cpu-prof':
        opts.cpuProfDir = value(i++, flag);
        break;
      case '--no-limits':
        opts.noLimits = true;
        break;
      case '--markdown':
        opts.markdown = true;
        break;
      case '--help':
      case '-h':
        throw new UsageError('');
      default:
        throw new UsageError(`unknown option ${flag}`);
    }
  }
  if (quick && env.BENCH_SCALE === undefined && scale === 'full') scale = 'quick';
  if (!(scale in SCALES)) throw new UsageError(`unknown scale ${scale} (full, quick, tiny)`);
  if (opts.compare && opts.noCompare) throw new UsageError('--compare and --no-compare contradict each other');
  const sizes = SCALES[scale];
  return { ...opts, scale, sizes, rounds: rounds ?? (quick ? 1 : sizes.rounds) };
}
