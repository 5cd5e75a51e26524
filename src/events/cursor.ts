// A stream position: the writing transaction's id and the row's position, as 32 hex digits.
// Fixed width, so cursors compare as plain strings in the same order as the positions.

export interface Position {
  txid: bigint;
  pos: bigint;
}

const CURSOR = /^[0-9a-f]{32}$/;

export function encodeCursor(txid: bigint | string | number, pos: bigint | string | number): string {
  return BigInt(txid).toString(16).padStart(16, '0') + BigInt(pos).toString(16).padStart(16, '0');
}

/** Undefined when the text is not a cursor of ours. */
export function decodeCursor(cursor: string): Position | undefined {
  if (!CURSOR.test(cursor)) return undefined;
  return { txid: BigInt(`0x${cursor.slice(0, 16)}`), pos: BigInt(`0x${cursor.slice(16)}`) };
}
