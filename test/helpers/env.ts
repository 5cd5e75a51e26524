/** Which database the suite runs on: the real Postgres when TEST_DATABASE_URL is set, else the embedded one. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || undefined;
export const ON_REAL_POSTGRES = TEST_DATABASE_URL !== undefined;
export const TEMPLATE_SNAPSHOT_ENV = 'orderstreamSnapshot' as const;
export const TEMPLATE_DB_ENV = 'orderstreamTemplateDb' as const;
