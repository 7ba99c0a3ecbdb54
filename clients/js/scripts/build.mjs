// Builds the package: dist/esm (ES modules) and dist/cjs (CommonJS), each with declarations of
// its own format, so that `import` and `require` both type-check under every TypeScript
// resolution. Prints the core's browser size, and the encryption entry's. `npm run prepare` (and so `npm ci`, `npm pack`
// and an install from the repository) runs it.
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { coreSize, entrySize } from './size.mjs';

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
rmSync('dist', { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { stdio: 'inherit' });
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.cjs.json'], { stdio: 'inherit' });
// The package is "type": "module"; this marks dist/cjs's .js and .d.ts files as CommonJS.
writeFileSync('dist/cjs/package.json', '{ "type": "commonjs" }\n');

const { minified, gzipped } = await coreSize();
console.log(`browser build: ${minified} bytes minified, ${gzipped} gzipped`);
const encrypt = await entrySize('encrypt');
console.log(`encrypt entry (on top): ${encrypt.minified} bytes minified, ${encrypt.gzipped} gzipped`);
