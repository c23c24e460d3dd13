import { ModelFormatError } from './types.ts';

/** The chunks one after another in one new array. */
export function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

/**
 * A bounds-checked little-endian cursor over a file's bytes. Every read names what it was reading,
 * so a truncated or corrupt file fails with a clear message instead of a RangeError deep inside.
 */
export class ByteReader {
  private readonly view: DataView;
  offset = 0;

  constructor(
    readonly bytes: Uint8Array,
    private readonly fileLabel: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.byteLength;
  }

  get remaining(): number {
    return this.bytes.byteLength - this.offset;
  }

  need(numBytes: number, what: string): void {
    if (!Number.isFinite(numBytes) || numBytes < 0 || this.offset + numBytes > this.bytes.byteLength) {
      throw new ModelFormatError(
        `${this.fileLabel} is truncated: reading ${what} needs ${numBytes} bytes at offset ${this.offset}, ` +
          `but the file has ${this.bytes.byteLength} bytes`,
      );
    }
  }

  i32(what: string): number {
    this.need(4, what);
    const v = this.view.getInt32(this.offset, true);
    this.offset += 4;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return v;
  }

  f32(what: string): number {
    this.need(4, what);
    const v = this.view.getFloat32(this.offset, true);
    this.offset += 4;
    return v;
  }

  /** A uint64 that must fit in a JS number safely (sizes, counts, offsets). */
  u64(what: string): number {
    this.need(8, what);
    const lo = this.view.getUint32(this.offset, true);
    const hi = this.view.getUint32(this.offset + 4, true);
    this.offset += 8;
    if (hi >= 0x200000) {
      throw new ModelFormatError(`${this.fileLabel}: ${what} is absurdly large (${hi * 2 ** 32 + lo})`);
    }
    return hi * 2 ** 32 + lo;
  }

  i64(what: string): number {
    this.need(8, what);
    const v = this.view.getBigInt64(this.offset, true);
    this.offset += 8;
    return Number(v);
  }

  f64(what: string): number {
    this.need(8, what);
    const v = this.view.getFloat64(this.offset, true);
    this.offset += 8;
    return v;
  }

  u8(what: string): number {
    this.need(1, what);
    return this.bytes[this.offset++];
  }

  i8(what: string): number {
    this.need(1, what);
    return this.view.getInt8(this.offset++);
  }

  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.offset, true);
    this.offset += 2;
    return v;
  }

  i16(what: string): number {
    this.need(2, what);
    const v = this.view.getInt16(this.offset, true);
    this.offset += 2;
    return v;
  }

  raw(numBytes: number, what: string): Uint8Array {
    this.need(numBytes, what);
    const out = this.bytes.subarray(this.offset, this.offset + numBytes);
    this.offset += numBytes;
    return out;
  }

  /**
   * `count` float32 values as a Float32Array. Copies when the position is not 4-byte aligned
   * (or always, when `copy` is set) so the result owns aligned memory.
   */
  f32Array(count: number, what: string): Float32Array {
    const numBytes = count * 4;
    this.need(numBytes, what);
    const start = this.bytes.byteOffset + this.offset;
    let out: Float32Array;
    if (start % 4 === 0) {
      out = new Float32Array(this.bytes.buffer, start, count).slice();
    } else {
      out = new Float32Array(count);
      new Uint8Array(out.buffer).set(this.bytes.subarray(this.offset, this.offset + numBytes));
    }
    this.offset += numBytes;
    return out;
  }
}
