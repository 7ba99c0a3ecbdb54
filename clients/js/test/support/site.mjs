// Serves the browser tests' pages (test/pages) and the bundles they load (build/).
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const types = { '.html': 'text/html', '.js': 'text/javascript' };

/** Serves on a free port of loopback; resolves with the server and its base URL. */
export async function site() {
  const server = createServer(async (request, response) => {
    const name = path.basename(new URL(request.url, 'http://x').pathname);
    const file = name.endsWith('.html') ? path.join(root, 'test/pages', name) : path.join(root, 'build', name);
    try {
      const body = await readFile(file);
      response.writeHead(200, { 'content-type': types[path.extname(name)] ?? 'application/octet-stream' });
      response.end(body);
    } catch {
      response.writeHead(404);
      response.end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, base: `http://127.0.0.1:${server.address().port}` };
}
