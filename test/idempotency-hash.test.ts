import { describe, expect, it } from 'vitest';
import { requestHash } from '../src/idempotency/store.js';

// A key's hash is stored with it: a retry after a deploy must hash to the same text, or it would be
// refused as another request under the same key.
describe('requestHash', () => {
  const value = {
    orderId: '6f1c2d3e-0000-4000-8000-000000000001',
    event: { type: 'note', text: 'Größe "A"\n', occurredAt: undefined, tags: ['b', { z: 1, a: [null, 2.5, true] }], Z: 0 },
  };

  it('gives the hash every earlier version stored for the same request', () => {
    expect(requestHash(value)).toBe('87ce6cd42b00189388f10a3e070d4e665895df10903f7c6fe64b3bc2fc5d14b5');
  });

  it('ignores key order and undefined members, and tells apart any other difference', () => {
    const reordered = { event: { Z: 0, tags: ['b', { a: [null, 2.5, true], z: 1 }], text: 'Größe "A"\n', type: 'note' }, orderId: value.orderId };
    expect(requestHash(reordered)).toBe(requestHash(value));
    expect(requestHash({ ...value, event: { ...value.event, Z: 1 } })).not.toBe(requestHash(value));
    expect(requestHash({ ...value, event: { ...value.event, tags: ['b', { z: 1, a: [null, 2.5] }] } })).not.toBe(requestHash(value));
    expect(requestHash({ ...value, event: { ...value.event, occurredAt: null } })).not.toBe(requestHash(value));
  });
});
