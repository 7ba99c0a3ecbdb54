// Serves the example pages and hands out development tokens, standing in for your web app and
// its login. `npm run build` first; then `node example/serve.mjs` and open
// http://127.0.0.1:8000/?user=alice (FERROCAST_JWT_SECRET: the edge's secret, if not the
// development one; PORT: another port).
import { createServer } from 'node:http';
import { createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const files = {
  '/': ['index.html', 'text/html'],
  '/chat.js': ['chat.js', 'text/javascript'],
  '/react.html': ['react.html', 'text/html'],
  '/react-page.js': ['../build/react-page.js', 'text/javascript'],
  '/ferrocast.min.js': ['../build/ferrocast.min.js', 'text/javascript'],
};

/** A token for `user`, allowed into chat rooms, valid for `seconds`. */
export function devToken(user, secret, seconds = 600) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const claims = { sub: user, exp: Math.floor(Date.now() / 1000) + seconds, rooms: ['chat:*'], info: { name: user } };
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/** Serves on `port` (0: any free one); resolves with the server. */
export function serve(port, secret = 'ferrocast-dev-secret') {
  const server = createServer(async (request, response) => {
    const url = new URL(request.url, 'http://x');
    if (url.pathname === '/token') {
      response.writeHead(200, { 'content-type': 'text/plain' });
      return response.end(devToken(url.searchParams.get('user') ?? 'alice', secret));
    }
    const file = files[url.pathname];
    if (!file) {
      response.writeHead(404);
      return response.end('not found');
    }
    try {
      const body = await readFile(path.join(here, file[0]));
      response.writeHead(200, { 'content-type': file[1] });
      response.end(body);
    } catch {
      response.writeHead(500);
      response.end('build first: npm run build');
    }
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const server = await serve(Number(process.env.PORT ?? 8000), process.env.FERROCAST_JWT_SECRET || undefined);
  console.log(`example on http://127.0.0.1:${server.address().port}/?user=alice (React: /react.html)`);
}
