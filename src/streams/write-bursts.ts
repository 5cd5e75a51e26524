import { transports } from 'engine.io';

interface WebSocketTransport {
  send(packets: unknown[]): void;
  /** The ws WebSocket, and under it the TCP socket its frames are written to. */
  socket?: { _socket?: { cork?(): void; uncork?(): void } };
}

let done = false;

/**
 * Writes a burst of packets to a WebSocket with one system call instead of one per packet.
 * While a socket's write is in flight, Engine.IO queues what else is sent to it and then sends
 * the queue in a loop, where ws writes each frame to the TCP socket on its own: one `writev` per
 * event per subscriber, half the service's time when it delivers at its limit (a profile of the
 * held rate, BENCHMARKS.md). Corked around the loop, the frames leave together; the bytes on
 * the wire, their order and every callback stay as they were. Engine.IO's transport is patched
 * once per process; a transport without a TCP socket under it (tests' fakes, a future version)
 * sends as before.
 */
export function writeBurstsTogether(): void {
  if (done) return;
  done = true;
  const proto = (transports as unknown as Record<string, { prototype: WebSocketTransport }>).websocket?.prototype;
  if (!proto || typeof proto.send !== 'function') return;
  const send = proto.send;
  proto.send = function (this: WebSocketTransport, packets: unknown[]) {
    const tcp = this.socket?._socket;
    if (packets.length < 2 || !tcp?.cork || !tcp.uncork) return send.call(this, packets);
    tcp.cork();
    try {
      send.call(this, packets);
    } finally {
      tcp.uncork();
    }
  };
}
