// One asset record in the stored format (docs/format.md, "Asset file"): the 16-byte frame (magic, header
// length, CRC32C of the header), the header JSON with its chunk table, then the chunks. Read in the page, from
// bytes embedded in it (notebooks, standalone HTML): every chunk is checksummed as the backend checks it, and
// zlib chunks are inflated by the browser's DecompressionStream, never past the size their shape gives.
import type {Header, Kind} from '../types';

const MAGIC = [0x54, 0x42, 0x41, 0x54, 0x54, 0x4e, 0, 0]; // "TBATTN\0\0"
const FRAME = 16;

/** `[offset, length, crc32c]`, offset relative to the first byte after the header. */
export type ChunkEntry = [number, number, number];
type ChunkTree = ChunkEntry | ChunkTree[];

/**
 * The record header as stored: the served header plus the chunk table (per kind, and at the top level the
 * record's own chunks, e.g. `image`: the image's raw PNG / WebP bytes, not zlib).
 */
export type StoredHeader = Header & {chunks: Partial<Record<Kind, Record<string, ChunkTree>>> & {image?: ChunkEntry}};

let CRC_TABLE: Uint32Array | null = null;

/** CRC32C (Castagnoli), as `google_crc32c.value`. */
export function crc32c(bytes: Uint8Array): number {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      CRC_TABLE[i] = c >>> 0;
    }
  }
  const t = CRC_TABLE;
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Base64 text → bytes (atob; the page holds the records as base64 of their stored bytes). */
export function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Inflates one zlib stream (RFC 1950, what the writer stores) to exactly `size` bytes, or throws. */
export async function inflate(data: Uint8Array, size: number): Promise<Uint8Array> {
  if (typeof DecompressionStream === 'undefined') throw new Error('this browser cannot inflate the stored chunks (no DecompressionStream)');
  const reader = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new DecompressionStream('deflate')).getReader();
  const out = new Uint8Array(size);
  let n = 0;
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    if (n + value.length > size) {
      await reader.cancel();
      throw new Error(`a chunk holds more than the ${size} bytes its shape gives`);
    }
    out.set(value, n);
    n += value.length;
  }
  if (n !== size) throw new Error(`a chunk holds ${n} bytes, expected ${size}`);
  return out;
}

export class AssetRecord {
  private constructor(
    readonly header: StoredHeader,
    private readonly data: Uint8Array,
  ) {}

  /** Parses and checks the frame and header (magic, bounds, CRC32C). */
  static parse(bytes: Uint8Array): AssetRecord {
    if (bytes.length < FRAME || MAGIC.some((b, i) => bytes[i] !== b)) throw new Error('not an attention record (bad magic)');
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const n = dv.getUint32(8, true);
    if (FRAME + n > bytes.length) throw new Error('truncated record header');
    const head = bytes.subarray(FRAME, FRAME + n);
    if (crc32c(head) !== dv.getUint32(12, true)) throw new Error('record header checksum mismatch');
    const header = JSON.parse(new TextDecoder().decode(head)) as StoredHeader;
    if (!header || typeof header !== 'object' || !header.chunks || typeof header.chunks !== 'object') throw new Error('record header lacks its chunk table');
    return new AssetRecord(header, bytes.subarray(FRAME + n));
  }

  /** The header as the backend serves it (without the chunk table). */
  publicHeader(): Header {
    const {chunks: _chunks, ...rest} = this.header;
    return rest as Header;
  }

  has(kind: Kind, what: string): boolean {
    return !!this.header.chunks[kind]?.[what];
  }

  /** The checksummed bytes of the record's top-level chunk `name` (e.g. `image`), or null without one. */
  recordChunk(name: 'image'): Uint8Array | null {
    const e: unknown = this.header.chunks[name];
    if (e === undefined) return null;
    if (!Array.isArray(e) || e.length !== 3 || !e.every((x) => Number.isSafeInteger(x) && x >= 0)) throw new Error(`the record's ${name} chunk entry is malformed`);
    return this.checked(name, e as ChunkEntry);
  }

  private checked(what: string, [off, len, crc]: ChunkEntry): Uint8Array {
    const bytes = this.data.subarray(off, off + len);
    if (bytes.length !== len) throw new Error(`truncated ${what} chunk`);
    if (crc32c(bytes) !== crc) throw new Error(`${what} chunk checksum mismatch`);
    return bytes;
  }

  /** The checksummed bytes of chunk `what` of `kind` (indexed by layer and head where it has them). */
  chunk(kind: Kind, what: string, ...at: number[]): Uint8Array {
    let e: ChunkTree | undefined = this.header.chunks[kind]?.[what];
    for (const i of at) e = Array.isArray(e) && Array.isArray(e[0]) ? (e as ChunkTree[])[i] : undefined;
    if (!Array.isArray(e) || e.length !== 3 || Array.isArray(e[0])) throw new Error(`the record has no ${kind} ${what} chunk ${at.join(',')}`);
    return this.checked(what, e as ChunkEntry);
  }
}
