// Bundles what the example pages and the browser tests load, into build/ (never packaged):
// the client alone, its encryption entry, and the React pages with React bundled in.
import { build } from 'esbuild';

const browser = { bundle: true, minify: true, format: 'esm', target: 'es2020', logLevel: 'warning' };
await build({ ...browser, entryPoints: ['src/index.ts'], outfile: 'build/ferrocast.min.js' });
await build({ ...browser, entryPoints: ['src/encrypt.ts'], outfile: 'build/ferrocast-encrypt.min.js' });
await build({
  ...browser,
  entryPoints: { 'react-page': 'example/react-page.js', 'hooks-page': 'test/pages/hooks-page.js' },
  outdir: 'build',
  define: { 'process.env.NODE_ENV': '"development"' },
});
