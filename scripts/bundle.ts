// The second step of `npm run build`: the server as one ES module, `dist/server.mjs`, which is
// what production (the image) and the benchmark run. Node's loader finds, reads and compiles the
// service's ~600 modules one by one, and that was half of the time to ready on a real Postgres
// (BENCHMARKS.md, startup). One file takes a third less. `dist/src` (tsc's output) stays for the
// command-line tools.
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';

/**
 * Packages that find their own files next to their code at run time, so they must stay in
 * node_modules: PGlite (its WebAssembly and data files, and loaded only on the embedded
 * database), and the OpenAPI plugins (swagger-ui's static page, swagger's package.json).
 */
const LEFT_IN_NODE_MODULES = ['@electric-sql/pglite', '@fastify/swagger', '@fastify/swagger-ui'];

/** Writes `<outdir>/server.mjs` and the board's page beside it; `outdir` must lie in the project. */
export async function bundleServer(outdir: string): Promise<void> {
  await build({
    entryPoints: ['src/server.ts'],
    outfile: join(outdir, 'server.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: LEFT_IN_NODE_MODULES,
    // The CommonJS packages in the bundle call require() for Node's built-ins.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    sourcemap: 'linked',
    logLevel: 'warning',
  });
  // The board serves its files from `public/` next to the module (src/board/routes.ts).
  cpSync('src/board/public', join(outdir, 'public'), { recursive: true });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await bundleServer(process.argv[2] ?? 'dist');
