// The ceiling for streams: a bare Socket.IO server, in a process of its own like the service,
// that emits event-shaped messages to rooms at a rate the bench asks for over IPC. No database,
// no authentication, no per-subscription checks: what one Node process can deliver.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.env.PORT);
const http = createServer((req, res) => {
  res.writeHead(req.url === '/ready' ? 200 : 404).end();
});
const io = new Server(http, { path: '/socket.io', serveClient: false });
const nsp = io.of('/v1');
nsp.on('connection', (socket) => {
  socket.on('subscribe', (payload: { topic: string }, ack: (r: unknown) => void) => {
    void socket.join(payload.topic);
    ack({ ok: true, topic: payload.topic, cursor: '0'.repeat(32) });
  });
});

const now = () => performance.timeOrigin + performance.now();
let seq = 0;
/** The shape and size of a service event, stamped with the send time like the bench's notes. */
function event(room: string) {
  const at = new Date().toISOString();
  return {
    id: randomUUID(), orderId: randomUUID(), seq: ++seq, cursor: seq.toString(16).padStart(32, '0'), type: 'note', stage: null, factoryId: null,
    actor: `factory:${randomUUID()}`, occurredAt: at, recordedAt: at, data: { text: String(now()) }, topic: room,
  };
}

process.on('message', async (m: { kind: 'emit'; perSec: number; seconds: number; rooms: string[] }) => {
  if (m.kind !== 'emit') return;
  const start = now();
  let sent = 0;
  while (now() - start < m.seconds * 1000) {
    const due = Math.floor(((now() - start) / 1000) * m.perSec);
    for (; sent < due; sent++) {
      const room = m.rooms[sent % m.rooms.length]!;
      nsp.to([room, 'all']).emit('event', event(room));
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  process.send!({ kind: 'done', sent });
});

// Exits normally on SIGTERM (the bench's stop), so that --cpu-prof writes its profile.
process.on('SIGTERM', () => process.exit(0));
http.listen(port, '127.0.0.1');
