// The core's size as a browser application pays for it: the JSON-only client, bundled,
// minified and gzipped (MessagePack, encryption and React are separate entry points).
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';

/** An entry point (`src/<name>.ts`) bundled on its own (`code`), and its bytes, minified and gzipped. */
export async function entrySize(name) {
  const { outputFiles } = await build({
    entryPoints: [`src/${name}.ts`],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2020',
    write: false,
  });
  const bytes = outputFiles[0].contents;
  return { code: outputFiles[0].text, minified: bytes.length, gzipped: gzipSync(bytes).length };
}

/** The core bundle (`code`) and its bytes, minified and gzipped. */
export const coreSize = () => entrySize('index');
