// npm run build: the service and its migration tool as one JavaScript file each, in dist/.
//
// Why a bundle: started from tsc's output, Node loads some 900 modules (Kysely alone is 304
// files, zod's 100, Fastify's and Socket.IO's dependencies most of the rest), and resolving,
// reading and linking them was about half of the time to ready on a real database. One file is
// read and compiled once. The packages that find their own files on disk at run time stay
// outside and load from node_modules as before.
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));

/** What dist/ holds, by file: the Dockerfile and docker-compose.yml run these. */
export const ENTRY_POINTS = { server: 'src/server.ts', migrate: 'src/db/migrate-cli.ts' } as const;

/** Left to load from node_modules at run time. */
export const EXTERNAL = [
  // The embedded Postgres loads its WebAssembly and data files from beside its own modules.
  '@electric-sql/pglite',
  // Serves the Swagger UI files from its own package folder.
  '@fastify/swagger-ui',
  // Optional packages that pg, ws and debug try to load and do without (none is installed).
  'pg-native',
  'bufferutil',
  'utf-8-validate',
  'supports-color',
];

/**
 * Writes the bundles and the board's static files to `outDir` (a folder inside the project, so
 * the externals resolve); returns what the bundles still import at run time.
 */
export async function bundle(outDir: string): Promise<{ imports: string[] }> {
  rmSync(outDir, { recursive: true, force: true });
  const { metafile } = await build({
    absWorkingDir: root,
    entryPoints: ENTRY_POINTS,
    outdir: outDir,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: EXTERNAL,
    // Bundled CommonJS packages call require(): give the ES module one, resolving from dist/.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    // No keepNames: it wraps every function in a call that redefines its name, and the
    // closures made for each socket then cost 1.4 KB more per subscriber (BENCHMARKS.md).
    // `node --enable-source-maps dist/server.js` maps stack traces back to src/.
    sourcemap: 'linked',
    logLevel: 'warning',
    metafile: true,
  });
  // The board's page, next to the bundle where src/board/routes.ts looks for it.
  cpSync(join(root, 'src', 'board', 'public'), join(outDir, 'public'), { recursive: true });
  const imports = Object.values(metafile.outputs).flatMap((output) => output.imports.map((i) => i.path));
  return { imports: [...new Set(imports)].sort() };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const outDir = join(root, 'dist');
  await bundle(outDir);
  console.log(`built ${Object.keys(ENTRY_POINTS).map((name) => `dist/${name}.js`).join(', ')}`);
}
