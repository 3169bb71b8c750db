// The example's same-origin server: serves index.html and app.js, and passes every other
// request (GET /client.js and the modules it imports, /sse, /api/..., and the WebSocket
// upgrade of /ws) to an agentcast server, so the page and agentcast share one origin
// (agentcast sends no CORS headers). Node.js >= 20, no dependencies.
//
//   node examples/browser/serve.mjs [--agentcast http://127.0.0.1:8080] [--port 3000]
//
// Also imported by tests/browser/run.mjs: `startServer({ upstream, port: 0 })`.
import http from 'node:http';
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const FILES = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
};

/** Only same-origin scripts, styles, fetch, SSE and WebSocket (as agentcast's own pages). */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
  + "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'";

/**
 * Starts the server on `host:port` (0: any free port) in front of `upstream` (agentcast's
 * base URL). Resolves to the listening `http.Server`.
 */
export function startServer({ upstream, port = 3000, host = '127.0.0.1' }) {
  const up = new URL(upstream);
  const upPort = Number(up.port || 80);
  const server = http.createServer(async (req, res) => {
    const file = FILES[new URL(req.url, 'http://page').pathname];
    if (file && (req.method === 'GET' || req.method === 'HEAD')) {
      const body = await readFile(new URL(file[0], import.meta.url));
      res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-cache', 'content-security-policy': CSP });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    const proxied = http.request(
      { host: up.hostname, port: upPort, method: req.method, path: req.url, headers: { ...req.headers, host: up.host } },
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res); // chunk by chunk: an SSE stream is not buffered
      },
    );
    proxied.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`agentcast at ${upstream} unreachable: ${e.message}`);
    });
    res.on('close', () => proxied.destroy()); // the page left an event stream
    req.pipe(proxied);
  });
  // WebSocket: replay the upgrade request to agentcast, then splice the two sockets.
  server.on('upgrade', (req, socket, head) => {
    const conn = net.connect(upPort, up.hostname, () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i];
        raw += `${name}: ${name.toLowerCase() === 'host' ? up.host : req.rawHeaders[i + 1]}\r\n`;
      }
      conn.write(`${raw}\r\n`);
      if (head.length) conn.write(head);
      socket.pipe(conn).pipe(socket);
    });
    conn.on('error', () => socket.destroy());
    socket.on('error', () => conn.destroy());
    conn.on('close', () => socket.destroy());
    socket.on('close', () => conn.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
  };
  const upstream = opt('agentcast', 'http://127.0.0.1:8080');
  const server = await startServer({ upstream, port: Number(opt('port', 3000)) });
  const { port } = server.address();
  console.log(`example at http://127.0.0.1:${port}/?user=example-user (agentcast: ${upstream})`);
}
