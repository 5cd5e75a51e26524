// The service as production runs it: the bundle of scripts/bundle.ts, in a process of its own,
// serving the API, its docs, the board and the streams, and its migration tool.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { bundle, ENTRY_POINTS, EXTERNAL } from '../scripts/bundle.js';
import { mintToken } from '../src/auth/jwt.js';
import type { ClientToServerEvents, ServerToClientEvents, StreamedEvent, SubscribeAck } from '../src/streams/protocol.js';
import { freshDatabase, JWT_SECRET } from './helpers/app.js';
import { TEST_DATABASE_URL } from './helpers/env.js';
import { ApiClient } from './helpers/http.js';
import { startServer, type ServerProcess } from './helpers/processes.js';
import { createWorld, type World } from './helpers/world.js';

const root = fileURLToPath(new URL('..', import.meta.url));
// Inside the project, as dist/ is: the bundle finds the packages it leaves outside in node_modules.
const outDir = join(root, '.test-bundles', randomUUID());
const dataDirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'orderstream-bundle-'));
  dataDirs.push(dir);
  return dir;
};

const token = (claims: { role: 'customer' | 'ops' | 'admin'; customerId?: string }) =>
  mintToken(JWT_SECRET, { sub: `${claims.role}-bundle`, ...claims }, 3600);

let imports: string[];
let server: ServerProcess;
let db: Awaited<ReturnType<typeof freshDatabase>> | undefined;
let w: World;
beforeAll(async () => {
  ({ imports } = await bundle(outDir));
  // On this run's database: a migrated copy on the real Postgres, or a fresh embedded one it migrates.
  db = TEST_DATABASE_URL ? await freshDatabase() : undefined;
  const env: Record<string, string> = db ? { DATABASE_URL: db.url! } : { DATABASE_URL: '', DATA_DIR: tempDir() };
  server = await startServer(env, [join(outDir, 'server.js')]);
  w = await createWorld({ api: new ApiClient(server.baseUrl), token });
}, 120_000);
afterAll(async () => {
  await server?.kill();
  await db?.drop();
  rmSync(outDir, { recursive: true, force: true });
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

describe('the production bundle', () => {
  it('imports nothing at run time but Node itself and the packages it leaves outside on purpose', () => {
    const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
    const outside = imports.filter((i) => !builtins.has(i));
    expect(outside).toEqual([...EXTERNAL].sort());
  });

  it('serves an event to a subscribed customer over Socket.IO', async () => {
    const socket: Socket<ServerToClientEvents, ClientToServerEvents> = connect(`${server.baseUrl}/v1`, {
      path: '/socket.io',
      auth: { token: await token({ role: 'customer', customerId: w.customerA.id }) },
      transports: ['websocket'],
      reconnection: false,
    });
    try {
      const events: StreamedEvent[] = [];
      socket.on('event', (e) => events.push(e));
      await new Promise<void>((resolve, reject) => {
        socket.on('connect', resolve);
        socket.on('connect_error', reject);
      });
      const ack = await new Promise<SubscribeAck>((resolve) => socket.emit('subscribe', { topic: `customer:${w.customerA.id}` }, resolve));
      expect(ack.ok, JSON.stringify(ack)).toBe(true);
      const order = await w.createOrder();
      await w.post(w.fab.api, order.id, { type: 'stage_started', stage: 'review' }, 201);
      const deadline = Date.now() + 20_000;
      while (!events.some((e) => e.type === 'stage_started') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(events.map((e) => `${e.orderId} ${e.type}`)).toContain(`${order.id} stage_started`);
    } finally {
      socket.disconnect();
    }
  });

  it('serves its OpenAPI contract, the Swagger UI and the board with its vendored libraries', async () => {
    const api = new ApiClient(server.baseUrl);
    expect(Object.keys((await api.get('/openapi.json')).body.paths)).toContain('/v1/orders/{id}/events');
    const docs = await api.get('/docs/');
    expect(docs.status).toBe(200);
    expect(docs.text).toContain('swagger');
    for (const path of ['/board', '/board/board.js', '/board/vendor/socket.io.esm.min.js']) {
      expect((await api.get(path)).status, path).toBe(200);
    }
  });

  it('migrates a new embedded database with its migration tool', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [join(outDir, 'migrate.js')], {
      env: { ...process.env, DATABASE_URL: '', DATA_DIR: tempDir() },
    });
    expect(stdout).toMatch(/^applied: 0001_init, /);
  }, 60_000);

  it('is what the Dockerfile and docker-compose.yml run', () => {
    const built = Object.keys(ENTRY_POINTS).map((name) => `dist/${name}.js`);
    const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
    const cmd = JSON.parse(/^CMD (.+)$/m.exec(dockerfile)![1]!);
    expect(cmd).toEqual(['node', 'dist/server.js']);
    const compose = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8'));
    expect(built).toContain(compose.services.migrate.command[1]);
    expect(compose.services.migrate.command[0]).toBe('node');
  });
});
