import type { ChildProcess } from 'node:child_process';
import { profileFlags, spawnReady, type ServiceProcess } from '../lib/service.js';

export type RawServer = ServiceProcess & { child: ChildProcess; emit(perSec: number, seconds: number, rooms: string[]): Promise<number> };

/** Starts the bare Socket.IO server of ceilings/raw-socketio-server.ts in its own process (profiled into `profileDir`, if given). */
export async function startRawSocketIo(profileDir?: string): Promise<RawServer> {
  const p = await spawnReady([...profileFlags(profileDir), '--import', 'tsx', 'bench/ceilings/raw-socketio-server.ts'], {}, (port) => `http://127.0.0.1:${port}/ready`);
  return Object.assign(p, {
    emit(perSec: number, seconds: number, rooms: string[]) {
      return new Promise<number>((resolve) => {
        const onDone = (m: { kind: string; sent: number }) => {
          if (m.kind !== 'done') return;
          p.child.off('message', onDone);
          resolve(m.sent);
        };
        p.child.on('message', onDone);
        p.child.send({ kind: 'emit', perSec, seconds, rooms });
      });
    },
  });
}
