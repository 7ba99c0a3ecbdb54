// Builds the browser bundles the example pages load (and whose size BENCHMARKS.md records):
// the client alone, and the React test page with React bundled in.
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';

const client = await build({
  entryPoints: ['src/index.ts'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  outfile: 'dist/browser/ferrocast.min.js',
  write: true,
});
await build({
  entryPoints: ['example/react-page.js'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  define: { 'process.env.NODE_ENV': '"development"' },
  outfile: 'dist/browser/react-page.js',
});
const bytes = readFileSync('dist/browser/ferrocast.min.js');
console.log(`browser build: ${bytes.length} bytes minified, ${gzipSync(bytes).length} gzipped`);
void client;
