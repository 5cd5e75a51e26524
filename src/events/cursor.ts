// A stream position: the writing transaction's id and the row's position, as 32 hex digits.
// Fixed width, so cursors compare as plain strings in the same order as the positions.

export interface Position {
  txid: bigint;
  pos: bigint;
}

const CURSOR = /^[0-9a-f]{32}$/;
// Row positions stay far below 2^53 (they are read as JS numbers): a forged one above that is not ours.
const MAX_POS = BigInt(Number.MAX_SAFE_INTEGER);

export function encodeCursor(txid: bigint | string | number, pos: bigint | string | number): string {
  return BigInt(txid).toString(16).padStart(16, '0') + BigInt(pos).toString(16).padStart(16, '0');
}

/** Undefined when the text is not a cursor of ours. */
export function decodeCursor(cursor: string): Position | undefined {
  if (!CURSOR.test(cursor)) return undefined;
  const pos = BigInt(`0x${cursor.slice(16)}`);
  // A forged position beyond bigint made the replay query fail and close the socket (or 500 the feed).
  if (pos > MAX_POS) return undefined;
  return { txid: BigInt(`0x${cursor.slice(0, 16)}`), pos };
}
