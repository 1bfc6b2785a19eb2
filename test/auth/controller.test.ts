// The failure throttle and the client address it counts against.
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, test } from 'node:test';
import { clientAddress, Throttle } from '../../src/auth/controller.js';
import { RegistryError } from '../../src/errors/codes.js';

const peer = (remoteAddress: string) => clientAddress({ socket: { remoteAddress } } as unknown as IncomingMessage);

describe('auth client address', () => {
  test('IPv6 clients are keyed by their /64; IPv4 (also mapped on a dual-stack socket) by the address', () => {
    assert.equal(peer('2001:db8:1:2:3:4:5:6'), peer('2001:db8:1:2::9'));
    assert.equal(peer('2001:db8:1:2:3:4:5:6'), peer('2001:DB8:1:2:ffff::1%eth0'));
    assert.notEqual(peer('2001:db8:1:2::1'), peer('2001:db8:1:3::1'));
    assert.equal(peer('::1'), peer('::2'));
    assert.notEqual(peer('::1'), peer('1::1'));
    assert.equal(peer('2001:db8::1'), peer('2001:db8:0:0:1::'));
    assert.equal(peer('10.0.0.1'), '10.0.0.1');
    assert.equal(peer('::ffff:10.0.0.1'), '10.0.0.1');
    assert.notEqual(peer('::ffff:10.0.0.1'), peer('::ffff:10.0.0.2'));
  });
});

describe('auth throttle', () => {
  test('checks still running count: no more than maxFailures run at once, then the lockout', async () => {
    const throttle = new Throttle({ maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000 });
    const finish: ((ok: boolean) => void)[] = [];
    const check = () => new Promise<boolean>((resolve) => finish.push(resolve));
    const attempts = Array.from({ length: 10 }, () => throttle.attempt('c', check));
    const settled = Promise.allSettled(attempts);
    await new Promise((r) => setImmediate(r));
    assert.equal(finish.length, 3, 'checks started');
    for (const f of finish) f(false);
    const results = await settled;
    assert.deepEqual(results.map((r) => r.status), [...Array<string>(3).fill('fulfilled'), ...Array<string>(7).fill('rejected')]);
    for (const r of results.slice(3)) assert.equal(((r as PromiseRejectedResult).reason as RegistryError).code, 'TOOMANYREQUESTS');
    await assert.rejects(throttle.attempt('c', () => Promise.resolve(true)), /too many failed/);
    // Other clients are not affected.
    assert.equal(await throttle.attempt('d', () => Promise.resolve(true)), true);
  });

  test('successes free their slot and do not count', async () => {
    const throttle = new Throttle({ maxFailures: 2, windowMs: 60_000, lockoutMs: 60_000 });
    for (let i = 0; i < 10; i++) assert.equal(await throttle.attempt('c', () => Promise.resolve(true)), true);
    assert.equal(await throttle.attempt('c', () => Promise.resolve(false)), false);
    assert.equal(await throttle.attempt('c', () => Promise.resolve(true)), true);
    // A check that throws is a failure too.
    await assert.rejects(throttle.attempt('c', () => Promise.reject(new Error('boom'))), /boom/);
    await assert.rejects(throttle.attempt('c', () => Promise.resolve(true)), /too many failed/);
  });
});
