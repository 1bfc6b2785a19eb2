// A smoke run of the benchmark (`npm run bench`) at its tiny scale, so it cannot rot: it must
// complete and produce a JSON report with every scenario and a number for each figure. No
// timing is asserted — the figures of a tiny run mean nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { test } from 'node:test';

const MAIN = resolve(import.meta.dirname, '../bench/main.js');
const SCENARIOS = ['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9', 's10', 's11'];

function runBench(args: string[], timeoutMs = 180_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const env = { ...process.env };
    delete env.BENCH_SCALE;
    const proc = spawn(process.execPath, [MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      proc.kill('SIGINT');
      rej(new Error(`bench did not finish in ${timeoutMs} ms:\n${stderr.slice(-4000)}`));
    }, timeoutMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}

interface Measured {
  value: number | null;
  samples: number[];
}

interface Report {
  scale: string;
  rounds: number;
  targets: { compare: unknown };
  limits: Record<string, { value: number | null }>;
  scenarios: {
    id: string;
    figures: { id: string; unit: string; berth: Measured; compare: Measured | null; ratio: number | null; limitRatio: number | null }[];
  }[];
  notes: string[];
}

const isNumber = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

test('bench: a tiny run completes with every scenario and a number for each figure', { timeout: 200_000 }, async () => {
  assert.ok(existsSync(MAIN), `${MAIN} is built`);
  const { code, stdout, stderr } = await runBench(['--scale', 'tiny', '--rounds', '1', '--json']);
  assert.equal(code, 0, `bench failed:\n${stderr.slice(-4000)}`);
  const report = JSON.parse(stdout) as Report;
  assert.equal(report.scale, 'tiny');
  assert.equal(report.rounds, 1);
  assert.deepEqual(
    report.scenarios.map((s) => s.id),
    SCENARIOS,
  );
  const withCompare = report.targets.compare !== null;
  for (const s of report.scenarios) {
    assert.ok(s.figures.length > 0, `${s.id} has figures`);
    for (const f of s.figures) {
      assert.ok(isNumber(f.berth.value), `${f.id}: Berth's figure is a number (got ${f.berth.value})`);
      assert.equal(f.berth.samples.length, 1, `${f.id}: one sample per round`);
      if (withCompare) assert.ok(isNumber(f.compare?.value), `${f.id}: the comparison's figure is a number (got ${f.compare?.value})`);
      assert.ok(f.ratio === null || isNumber(f.ratio));
      assert.ok(f.limitRatio === null || isNumber(f.limitRatio));
    }
  }
  for (const [id, l] of Object.entries(report.limits)) assert.ok(isNumber(l.value), `limit ${id} is a number`);
  if (!withCompare) assert.ok(report.notes.some((n) => n.includes('no comparison')), 'a missing comparison is explained');
  // The human-readable table goes to stderr with --json.
  assert.match(stderr, /push, monolithic/);
  assert.match(stderr, /Limits \(medians\)/);
});

test('bench: an unknown option is a usage error', async () => {
  const { code, stderr } = await runBench(['--no-such-option'], 30_000);
  assert.equal(code, 2);
  assert.match(stderr, /unknown option --no-such-option/);
  assert.match(stderr, /usage: npm run bench/);
});
