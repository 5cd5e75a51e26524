// HTTP/1.1 over a bare TCP socket: for requests no well-behaved client will send (bytes that are
// not allowed in a header, conflicting lengths, a request line of junk). Reads the whole answer.
import { connect } from 'node:net';

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The connection closed without a status line (the server gave up on the request). */
  noAnswer: boolean;
}

function dechunk(data: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', i);
    if (eol < 0) break;
    const size = parseInt(data.subarray(i, eol).toString('latin1'), 16);
    if (!size) break;
    out.push(data.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** Sends `head` (request line and headers, CRLF-separated, without the blank line) and `body`. */
export function rawRequest(baseUrl: string, head: Buffer | string, body: Buffer | string = '', timeoutMs = 10_000): Promise<RawAnswer> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no end of the answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => undefined); // a reset after the answer is fine: what was read is judged
    socket.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      const headText = all.subarray(0, split < 0 ? all.length : split).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(headText);
      if (!m) return resolve({ status: 0, headers: {}, body: '', noAnswer: true });
      const headers: Record<string, string> = {};
      for (const line of headText.split('\r\n').slice(1)) {
        const c = line.indexOf(':');
        if (c > 0) headers[line.slice(0, c).toLowerCase()] = line.slice(c + 1).trim();
      }
      let raw: Buffer = split < 0 ? Buffer.alloc(0) : all.subarray(split + 4);
      if (/chunked/i.test(headers['transfer-encoding'] ?? '')) raw = dechunk(raw);
      resolve({ status: Number(m[1]), headers, body: raw.toString('utf8'), noAnswer: false });
    });
    const bytes: Uint8Array[] = [typeof head === 'string' ? Buffer.from(head, 'latin1') : head, Buffer.from('\r\n\r\n'), Buffer.from(body)];
    socket.write(Buffer.concat(bytes));
  });
}
