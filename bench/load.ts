// A closed-loop HTTP/1.1 load generator on raw sockets: each of N keep-alive connections sends
// one pre-built request, reads the whole answer, and sends the next, until the time is up.
// node:http's client costs more CPU per request than the servers under test, so the request
// rate would measure the client; this one parses only the status line, Content-Length and
// chunked framing. Latencies are kept (bounded) to report p50 and p99.
import net from 'node:net';

export interface LoadOptions {
  host: string;
  port: number;
  method: 'GET' | 'HEAD';
  path: string;
  headers?: Record<string, string>;
  connections: number;
  durationMs: number;
  /** Requests before this long are not counted. */
  warmupMs?: number;
}

export interface LoadResult {
  requests: number;
  /** Answers with a status other than 200, and socket errors. */
  errors: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  statuses: Record<string, number>;
}

const MAX_SAMPLES = 4_000_000;
const CRLFCRLF = Buffer.from('\r\n\r\n');

type State = 'idle' | 'head' | 'fixed' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailer';

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const lines = [`${opts.method} ${opts.path} HTTP/1.1`, `Host: ${opts.host}:${opts.port}`, 'User-Agent: berth-bench'];
  for (const [k, v] of Object.entries(opts.headers ?? {})) lines.push(`${k}: ${v}`);
  const request = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  const isHead = opts.method === 'HEAD';

  const warmup = opts.warmupMs ?? 0;
  const begin = performance.now();
  const measureFrom = begin + warmup;
  const deadline = measureFrom + opts.durationMs;
  const latencies = new Float64Array(MAX_SAMPLES);
  let samples = 0;
  let requests = 0;
  let errors = 0;
  const statuses: Record<string, number> = {};

  // Connections still waiting for an answer well after the deadline are cut off.
  const stragglers = new Set<() => void>();
  const connection = (): Promise<void> =>
    new Promise<void>((resolveConn) => {
      let finished = false;
      const done = () => {
        if (finished) return;
        finished = true;
        stragglers.delete(abort);
        resolveConn();
      };
      const abort = () => {
        if (state !== 'idle') errors++;
        state = 'idle';
        sock?.destroy();
        done();
      };
      stragglers.add(abort);
      let sock: net.Socket | undefined;
      let buf: Buffer = Buffer.alloc(0);
      let state: State = 'idle';
      let remaining = 0;
      let status = 0;
      let sentAt = 0;
      let closeAfter = false;

      const finishOne = () => {
        const now = performance.now();
        if (sentAt >= measureFrom && now <= deadline) {
          requests++;
          statuses[status] = (statuses[status] ?? 0) + 1;
          if (status !== 200) errors++;
          if (samples < MAX_SAMPLES) latencies[samples++] = now - sentAt;
        }
        state = 'idle';
        if (now >= deadline) {
          sock!.destroy();
          done();
          return;
        }
        if (closeAfter) {
          sock!.destroy();
          open();
          return;
        }
        send();
      };

      const send = () => {
        state = 'head';
        sentAt = performance.now();
        sock!.write(request);
      };

      // Consumes as much of `buf` as the current state allows; returns when it needs more.
      const parse = () => {
        for (;;) {
          if (state === 'head') {
            const end = buf.indexOf(CRLFCRLF);
            if (end < 0) return;
            const head = buf.toString('latin1', 0, end);
            buf = buf.subarray(end + 4);
            const nl = head.indexOf('\r\n');
            status = Number(head.slice(9, 12));
            let length = -1;
            let chunked = false;
            closeAfter = false;
            for (const line of head.slice(nl + 2).split('\r\n')) {
              const colon = line.indexOf(':');
              const name = line.slice(0, colon).trim().toLowerCase();
              const value = line.slice(colon + 1).trim().toLowerCase();
              if (name === 'content-length') length = Number(value);
              else if (name === 'transfer-encoding') chunked = value.includes('chunked');
              else if (name === 'connection') closeAfter = value === 'close';
            }
            if (isHead || status === 204 || status === 304) {
              finishOne();
              if ((state as State) !== 'head') return;
            } else if (chunked) {
              state = 'chunk-size';
            } else if (length >= 0) {
              state = 'fixed';
              remaining = length;
            } else {
              // No framing: the body ends with the connection; not something we benchmark.
              errors++;
              sock!.destroy();
              open();
              return;
            }
          } else if (state === 'fixed') {
            const take = Math.min(remaining, buf.length);
            remaining -= take;
            buf = buf.subarray(take);
            if (remaining > 0) return;
            finishOne();
            if ((state as State) !== 'head') return;
          } else if (state === 'chunk-size' || state === 'trailer') {
            const nl = buf.indexOf('\r\n');
            if (nl < 0) return;
            const line = buf.toString('latin1', 0, nl);
            buf = buf.subarray(nl + 2);
            if (state === 'trailer') {
              if (line === '') {
                finishOne();
                if ((state as State) !== 'head') return;
              }
              continue;
            }
            remaining = parseInt(line, 16);
            state = remaining === 0 ? 'trailer' : 'chunk-data';
          } else if (state === 'chunk-data') {
            const take = Math.min(remaining, buf.length);
            remaining -= take;
            buf = buf.subarray(take);
            if (remaining > 0) return;
            state = 'chunk-crlf';
          } else if (state === 'chunk-crlf') {
            if (buf.length < 2) return;
            buf = buf.subarray(2);
            state = 'chunk-size';
          } else {
            return; // idle: nothing expected
          }
        }
      };

      const open = () => {
        if (finished) return;
        if (performance.now() >= deadline) {
          done();
          return;
        }
        buf = Buffer.alloc(0);
        state = 'idle';
        const s = net.connect({ host: opts.host, port: opts.port, noDelay: true });
        sock = s;
        s.on('connect', () => {
          if (s === sock) send();
        });
        s.on('data', (d: Buffer) => {
          if (s !== sock) return;
          buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
          parse();
        });
        s.on('error', () => {
          // counted on close
        });
        s.on('close', () => {
          if (s === sock && state !== 'idle') {
            errors++;
            state = 'idle';
            // Back off a little so a refusing server is not hammered in a tight loop.
            setTimeout(open, 10);
          }
        });
      };
      open();
    });

  const hardStop = setTimeout(() => {
    for (const abort of [...stragglers]) abort();
  }, deadline - performance.now() + 5000);
  await Promise.all(Array.from({ length: opts.connections }, connection));
  clearTimeout(hardStop);
  const seconds = (Math.min(performance.now(), deadline) - measureFrom) / 1000;
  const sorted = latencies.subarray(0, samples).sort();
  const pct = (p: number) => (samples === 0 ? 0 : sorted[Math.min(samples - 1, Math.floor((p / 100) * samples))]!);
  return {
    requests,
    errors,
    seconds,
    rps: seconds > 0 ? requests / seconds : 0,
    p50Ms: pct(50),
    p99Ms: pct(99),
    statuses,
  };
}
