/** Which database the suite runs on: the real Postgres when TEST_DATABASE_URL is set, else the embedded one. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || undefined;
export const ON_REAL_POSTGRES = TEST_DATABASE_URL !== undefined;
export const TEMPLATE_SNAPSHOT_ENV = 'orderstreamSnapshot' as const;
export const TEMPLATE_DB_ENV = 'orderstreamTemplateDb' as const;

/**
 * A real Postgres for the tests that need one whatever the run (several server processes share
 * it). Under CI it is always the local cluster, so such a test fails there if it is unreachable;
 * on a developer's machine without TEST_DATABASE_URL those tests are skipped, saying so.
 */
export const REAL_POSTGRES_URL = TEST_DATABASE_URL ?? (process.env.CI === 'true' ? 'postgres://postgres@127.0.0.1:5432/postgres' : undefined);
export const skipWithoutRealPostgres = () => {
  if (!REAL_POSTGRES_URL) console.warn('skipped: needs a real Postgres; set TEST_DATABASE_URL=postgres://…');
  return !REAL_POSTGRES_URL;
};
