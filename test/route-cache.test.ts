import { describe, expect, it } from 'vitest';
import { RouteCache } from '../src/orders/route-cache.js';

// The routes a list keeps (orders/route-cache.ts): served only at the seq they were read at, and
// never more of them than asked for, the least recently listed going first.
const route = (seq: number, text = `[${seq}]`) => ({ seq, json: Buffer.from(text) });

describe('RouteCache', () => {
  it('serves a route only at the seq it was read at', () => {
    const kept = new RouteCache(10);
    kept.put('a', route(3));
    expect(kept.get('a', 3)?.toString()).toBe('[3]');
    expect(kept.get('a', 4)).toBeUndefined();
    expect(kept.get('a', 2)).toBeUndefined();
    kept.put('a', route(4));
    expect(kept.get('a', 3)).toBeUndefined();
    expect(kept.get('a', 4)?.toString()).toBe('[4]');
    expect(kept.size).toBe(1);
  });

  it('keeps at most its capacity, dropping the least recently listed', () => {
    const kept = new RouteCache(2);
    kept.put('a', route(1));
    kept.put('b', route(1));
    expect(kept.get('a', 1)).toBeDefined(); // a listed again: b is now the oldest
    kept.put('c', route(1));
    expect(kept.size).toBe(2);
    expect(kept.get('b', 1)).toBeUndefined();
    expect(kept.get('a', 1)).toBeDefined();
    expect(kept.get('c', 1)).toBeDefined();
  });

  it('keeps nothing with capacity 0 (ROUTE_CACHE_ORDERS=0)', () => {
    const kept = new RouteCache(0);
    kept.put('a', route(1));
    expect(kept.size).toBe(0);
    expect(kept.get('a', 1)).toBeUndefined();
  });
});
