import { CompiledQuery, type Kysely } from 'kysely';
import type { DB } from './schema.js';

const SENTINEL = '\u0000fixed:';
const standInsFor = <N extends string>(names: readonly N[]) =>
  Object.fromEntries(names.map((n) => [n, `${SENTINEL}${n}`])) as Record<N, never>;

/**
 * A statement whose text never changes, only its values: Kysely builds and compiles it once, and
 * each call fills in the parameters. On the write path and the stream tail, building and
 * compiling the same statements on every call cost a fifth of the service's CPU (profile in
 * BENCHMARKS.md). `build` gets, in place of each value, a stand-in to use as that value; it must
 * use every value as a parameter, unconverted (no `Number(v)` on a stand-in).
 */
export function fixedStatement<N extends string>(
  names: readonly N[],
  build: (db: Kysely<DB>, values: Record<N, never>) => CompiledQuery,
): (db: Kysely<DB>, values: Record<N, unknown>) => CompiledQuery {
  let compiled: { sql: string; slots: Array<{ name: N } | { value: unknown }> } | undefined;
  return (db, values) => {
    if (!compiled) {
      const c = build(db, standInsFor(names));
      const slots = c.parameters.map((p) =>
        typeof p === 'string' && p.startsWith(SENTINEL) ? { name: p.slice(SENTINEL.length) as N } : { value: p },
      );
      const used = new Set(slots.flatMap((s) => ('name' in s ? [s.name] : [])));
      const unused = names.filter((n) => !used.has(n));
      if (unused.length) throw new Error(`fixedStatement: ${unused.join(', ')} not used as parameters`);
      compiled = { sql: c.sql, slots };
    }
    return CompiledQuery.raw(
      compiled.sql,
      compiled.slots.map((s) => ('name' in s ? values[s.name] : s.value)),
    );
  };
}

/**
 * fixedStatement for statements whose text depends on a few choices (a filter present or not):
 * one fixed statement per shape, named by `shape`.
 */
export function fixedStatements<N extends string, S>(
  names: readonly N[],
  shape: (choices: S) => string,
  build: (db: Kysely<DB>, values: Record<N, never>, choices: S) => CompiledQuery,
): (db: Kysely<DB>, choices: S, values: Partial<Record<N, unknown>>) => CompiledQuery {
  const byShape = new Map<string, ReturnType<typeof fixedStatement<N>>>();
  return (db, choices, values) => {
    const key = shape(choices);
    let statement = byShape.get(key);
    if (!statement) {
      // Only the names this shape uses: a shape without a filter has no value for it.
      const probe = build(db, standInsFor(names), choices).parameters;
      const usedNames = names.filter((n) => probe.includes(`${SENTINEL}${n}`));
      statement = fixedStatement(usedNames, (d, v) => build(d, v as Record<N, never>, choices));
      byShape.set(key, statement);
    }
    return statement(db, values as Record<N, unknown>);
  };
}
