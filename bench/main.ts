// `npm run bench [-- --target URL] [--compare URL] [--no-compare] [--json] [--rounds N] [--quick]`
//
// Starts Berth (filesystem driver, fresh root, access log off) unless --target is given, and
// Debian's CNCF Distribution 2.8.2 (`docker-registry`, storage on the same disk) as the
// comparison unless --compare/--no-compare. Each round measures the machine's limits, starts
// both registries afresh, then runs every scenario on one and at once on the other,
// alternating which goes first from one round to the next; the report gives the median of
// the rounds for each figure, the ratio Berth/Distribution and the ratio to the limit. All
// traffic is to 127.0.0.1. Use `npm run --silent bench -- --json` for JSON alone on stdout.
import { cpus, release, totalmem } from 'node:os';
import { mkdirSync, readdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client } from './http.js';
import { abortLimits, measureLimits } from './limits.js';
import { parseArgs, UsageError, USAGE, type Options } from './options.js';
import {
  FIGURES,
  LIMITS,
  evaluate,
  fmt,
  goalText,
  limitValues,
  median,
  renderMarkdown,
  renderTable,
  type FigureReport,
  type LimitId,
  type Report,
  type ScenarioReport,
} from './report.js';
import { closure, type RunCtx } from './scenarios.js';
import {
  distributionUnavailable,
  externalTarget,
  startBare,
  startBerth,
  startDistribution,
  tempDir,
  cpuSeconds,
  POOL_ENV,
  type BareServers,
  type Target,
} from './servers.js';

// The benchmark's own file system work (the fsync limit at the small-object concurrency)
// needs more than libuv's default 4 threads. Servers started here do not inherit this.
process.env[POOL_ENV] = '64';

/** Set once SIGINT/SIGTERM arrives: the cleanup that ends the process. */
let interrupted: Promise<void> | null = null;

function progress(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

interface Slot {
  name: 'berth' | 'compare';
  target: Target | null;
  root?: string;
}

async function run(opts: Options): Promise<Report> {
  const started = new Date();
  const t0 = performance.now();
  const notes = new Set<string>();
  const runId = randomBytes(3).toString('hex');
  const work = tempDir('berth-bench-');
  const cleanups: (() => Promise<void>)[] = [];

  let compareMode: 'none' | 'external' | 'distribution' = 'distribution';
  if (opts.noCompare) compareMode = 'none';
  else if (opts.compare) compareMode = 'external';
  else {
    const why = distributionUnavailable();
    if (why) {
      compareMode = 'none';
      notes.add(`no comparison: ${why}`);
    }
  }
  const compareName = compareMode === 'distribution' ? 'Distribution' : compareMode === 'external' ? 'compare' : 'Distribution';

  const samples = new Map<string, { berth: number[]; compare: number[] }>();
  for (const f of FIGURES) samples.set(f.id, { berth: [], compare: [] });
  const limitSamples = new Map<LimitId, number[]>();
  for (const id of Object.keys(LIMITS) as LimitId[]) limitSamples.set(id, []);
  const details = new Map<string, ScenarioReport['details']>();
  // Per scenario and registry: CPU seconds the server used, and the scenario's wall seconds.
  const cpu = new Map<string, { berth: [number, number][]; compare: [number, number][] }>();
  const scenarios = closure(opts.only);

  let bare: BareServers | null = null;
  // Work still in flight (the fsync limit, a push) may add files while this runs.
  const removeWork = () => {
    try {
      rmSync(work, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    } catch (err) {
      progress(`could not remove ${work}: ${(err as Error).message}`);
    }
  };
  const stopAll = async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch((err) => progress(`cleanup: ${(err as Error).message}`));
  };
  const onSignal = () => {
    // Scenarios in flight fail as their servers go; main() leaves the exit to this path.
    interrupted ??= (async () => {
      progress('interrupted: stopping servers');
      abortLimits();
      await stopAll();
      await new Promise((r) => setTimeout(r, 200)); // let file operations in flight settle
      removeWork();
      process.exit(130);
    })();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    if (!opts.noLimits) {
      bare = await startBare(work);
      const b = bare;
      cleanups.push(() => b.stop());
    }
    if (opts.cpuProfDir) mkdirSync(opts.cpuProfDir, { recursive: true });

    for (let round = 0; round < opts.rounds; round++) {
      const roundStart = performance.now();
      const slots: Slot[] = [{ name: 'berth', target: null }];
      if (compareMode !== 'none') slots.push({ name: 'compare', target: null });
      // Alternate which registry goes first.
      if (round % 2 === 1) slots.reverse();

      const roundCleanups: (() => Promise<void>)[] = [];
      try {
        // Limits first, while no registry of this round is running.
        if (bare) {
          progress(`round ${round + 1}/${opts.rounds}: measuring limits`);
          const lim = limitValues(await measureLimits(opts.sizes, work, bare));
          for (const [id, v] of Object.entries(lim)) limitSamples.get(id as LimitId)!.push(v);
          progress(
            `  sha256 ${fmt(lim.sha256)} MiB/s, verified pull ${fmt(lim.pull)} MiB/s, parallel push ${fmt(lim.parallel_push)} MiB/s, disk ${fmt(lim.disk)} MiB/s, fsync ${fmt(lim.fsync)} ops/s, loopback ${fmt(lim.loopback)} MiB/s, ` +
              `bare HEAD ${fmt(lim.bare_head_rps)} req/s, bare GET ${fmt(lim.bare_get_rps)} req/s`,
          );
        }

        for (const slot of slots) {
          if (slot.name === 'berth') {
            if (opts.target) slot.target = externalTarget('berth', opts.target);
            else {
              slot.root = join(work, `berth-r${round}`);
              mkdirSync(slot.root);
              slot.target = await startBerth({ root: slot.root, env: opts.berthEnv, cpuProfDir: opts.cpuProfDir });
            }
          } else if (compareMode === 'external') {
            slot.target = externalTarget('distribution', opts.compare!);
          } else {
            slot.root = join(work, `distribution-r${round}`);
            mkdirSync(slot.root);
            slot.target = await startDistribution(slot.root);
          }
          const t = slot.target;
          const root = slot.root;
          roundCleanups.push(async () => {
            await t.stop();
            if (root) releaseRoot(root);
          });
        }
        cleanups.push(...roundCleanups);

        const ctxs = new Map<Slot, RunCtx>();
        const shared = new Map();
        for (const slot of slots) {
          const managed = slot.target!.managed;
          ctxs.set(slot, {
            client: new Client(slot.target!.url),
            target: slot.target!,
            sizes: opts.sizes,
            prefix: managed ? 'bench' : `bench-${runId}/r${round}`,
            round,
            shared,
          });
        }
        for (const scenario of scenarios) {
          scenario.prepare?.({ shared, sizes: opts.sizes });
          for (const slot of slots) {
            const ctx = ctxs.get(slot)!;
            const pid = slot.target!.pid;
            const cpu0 = pid !== null ? cpuSeconds(pid) : null;
            const wall0 = performance.now();
            const res = await scenario.run(ctx).catch((err: Error) => {
              const out = slot.target!.output();
              throw new Error(`round ${round + 1}, ${scenario.id} on ${slot.target!.kind} (${slot.target!.url}): ${err.message}${out ? `\nserver output:\n${out.slice(-4000)}` : ''}`);
            });
            const cpu1 = pid !== null ? cpuSeconds(pid) : null;
            if (cpu0 !== null && cpu1 !== null) {
              const c = cpu.get(scenario.id) ?? { berth: [], compare: [] };
              c[slot.name].push([cpu1 - cpu0, (performance.now() - wall0) / 1000]);
              cpu.set(scenario.id, c);
            }
            for (const [id, v] of Object.entries(res.figures)) {
              if (v !== null && Number.isFinite(v)) samples.get(id)?.[slot.name].push(v);
            }
            for (const n of res.notes ?? []) notes.add(n);
            const d = details.get(scenario.id) ?? [];
            d.push({ round: round + 1, target: slot.name === 'berth' ? 'berth' : compareName, details: res.details ?? {} });
            details.set(scenario.id, d);
            progress(
              `round ${round + 1}/${opts.rounds} ${scenario.id} ${slot.target!.kind}: ` +
                Object.entries(res.figures)
                  .map(([id, v]) => `${id}=${fmt(v)}`)
                  .join(' '),
            );
          }
        }
        for (const ctx of ctxs.values()) ctx.client.close();
      } finally {
        for (const c of roundCleanups.reverse()) {
          const i = cleanups.indexOf(c);
          if (i >= 0) cleanups.splice(i, 1);
          await c().catch((err) => progress(`cleanup: ${(err as Error).message}`));
        }
      }
      progress(`round ${round + 1} took ${((performance.now() - roundStart) / 1000).toFixed(0)} s`);
    }
  } finally {
    await stopAll();
    if (!interrupted) {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      removeWork();
    }
  }

  const limitMedians = new Map<LimitId, number | null>();
  for (const [id, xs] of limitSamples) limitMedians.set(id, median(xs));

  const scenarioReports: ScenarioReport[] = [];
  for (const s of scenarios) {
    if (!opts.only.has(s.id)) continue;
    const figures: FigureReport[] = [];
    for (const def of FIGURES.filter((f) => f.scenario === s.id)) {
      const smp = samples.get(def.id)!;
      const berth = { value: median(smp.berth), samples: smp.berth };
      const compare = compareMode === 'none' ? null : { value: median(smp.compare), samples: smp.compare };
      const ratio = berth.value !== null && compare?.value ? berth.value / compare.value : null;
      const limitValue = def.limit ? (limitMedians.get(def.limit) ?? null) : null;
      const limitRatio = berth.value !== null && limitValue ? berth.value / limitValue : null;
      const f: FigureReport = {
        id: def.id,
        label: def.label,
        unit: def.unit,
        better: def.better,
        berth,
        compare,
        ratio,
        limit: def.limit ? { id: def.limit, label: LIMITS[def.limit].label, value: limitValue } : null,
        limitRatio,
        goal: goalText(def.goal),
        met: null,
      };
      f.met = evaluate(def.goal, f);
      figures.push(f);
    }
    const c = cpu.get(s.id);
    const usage = (xs: [number, number][] | undefined) =>
      xs && xs.length > 0 ? { cpuSeconds: median(xs.map((x) => x[0]))!, wallSeconds: median(xs.map((x) => x[1]))! } : null;
    scenarioReports.push({
      id: s.id,
      title: s.title,
      figures,
      serverCpu: { berth: usage(c?.berth), compare: usage(c?.compare) },
      details: details.get(s.id) ?? [],
    });
  }

  const limits: Report['limits'] = {};
  for (const [id, meta] of Object.entries(LIMITS)) {
    limits[id] = { ...meta, value: limitMedians.get(id as LimitId) ?? null, samples: limitSamples.get(id as LimitId) ?? [] };
  }
  if (opts.rounds < 3) notes.add(`${opts.rounds} round(s): figures are single samples or medians of fewer than 3`);

  return {
    benchmark: 'berth',
    reportVersion: 1,
    startedAt: started.toISOString(),
    durationSeconds: (performance.now() - t0) / 1000,
    scale: opts.scale,
    rounds: opts.rounds,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      kernel: release(),
    },
    targets: {
      berth: { url: opts.target ?? '(started by the benchmark)', managed: !opts.target },
      compare:
        compareMode === 'none'
          ? null
          : compareMode === 'external'
            ? { url: opts.compare!, managed: false, name: compareName }
            : { url: '(started by the benchmark)', managed: true, name: compareName },
    },
    limits,
    scenarios: scenarioReports,
    notes: [...notes],
  };
}

async function main(): Promise<void> {
  let opts: Options;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      if (err.message) process.stderr.write(`bench: ${err.message}\n`);
      process.stderr.write(USAGE);
      process.exit(err.message ? 2 : 0);
    }
    throw err;
  }
  progress(`scale ${opts.scale}, ${opts.rounds} round(s), scenarios ${[...opts.only].join(',')}`);
  const report = await run(opts);
  const table = renderTable(report);
  const notes = report.notes.length ? '\nNotes:\n' + report.notes.map((n) => `  - ${n}`).join('\n') : '';
  const footer = `\n(${report.scale} scale, ${report.rounds} round(s), ${report.durationSeconds.toFixed(0)} s)`;
  const markdown = opts.markdown ? '\n' + renderMarkdown(report) + '\n' : '';
  if (opts.json) {
    process.stderr.write(table + notes + footer + '\n' + markdown);
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    process.stdout.write(table + notes + footer + '\n' + markdown);
  }
}

main().catch((err) => {
  if (interrupted) return; // the signal handler stops the servers and exits
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});

/**
 * Frees a finished round's storage without taxing the next round: the big blob files go now,
 * the many small files stay until the run ends (the whole work directory goes then). Freeing
 * tens of thousands of inodes slows the next minute's file creations on some filesystems
 * (ext4 without a journal steps over each inode freed in the last 60 s, measured in
 * docs/performance.md), which would tax whichever registry runs next.
 */
function releaseRoot(root: string): void {
  const visit = (dir: string) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) visit(p);
      else if (e.isFile() && statSync(p).size >= 1024 * 1024) unlinkSync(p);
    }
  };
  visit(join(root, 'docker/registry/v2/blobs'));
}
