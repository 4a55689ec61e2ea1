// aistore-etl.js: a small helper for writing ais-wasm transforms in JavaScript
// (componentize-js). It turns plain functions into the `lifecycle`, `buffered` and
// `streaming` export objects of wit/etl.wit, converts values at the boundary, and
// maps thrown errors to the WIT transform-error so that nothing traps the instance.
//
//   import { defineTransform, BadInput } from '../js/aistore-etl.js';
//
//   const t = defineTransform({
//     init(config) { ... },                     // optional; config: {key: value}
//     transform(data, path, etlArgs) { ... },   // Uint8Array in; bytes or string out
//     *transformStream(reader, path, etlArgs) { // generator: yield output chunks
//       for (const chunk of reader) yield chunk;
//     },
//   });
//   export const lifecycle = t.lifecycle;
//   export const buffered = t.buffered;         // world buffered-transform or full
//   export const streaming = t.streaming;       // world streaming-transform or full
//
// Give `transform`, `transformStream` or both: whichever you leave out is derived
// from the other (a derived transformStream reads the whole object first).
//
// Results: a Uint8Array (or ArrayBuffer / typed array view) is sent as is; a string
// is sent as its UTF-8 encoding. Anything else fails the object with a TypeError.
// (The raw bindings silently send an empty object for a string: not here.)
//
// Errors: throw `new BadInput(msg)` when the object itself is wrong (the AIStore
// target answers 4xx and does not retry). Any other thrown value fails the object
// (5xx) with "<Name>: <message>", and its stack goes to stderr, which ais-wasm logs.
// A raw `{tag: 'bad-input' | 'failed', val: string}` is passed on unchanged.
//
// Top-level module code runs once at build time and is snapshotted into the
// component (tables, constants); `init` runs once per instance at start-up.

/** Throw to reject an object that cannot be transformed (WIT `bad-input`). */
export class BadInput extends Error {
  constructor(message) {
    super(message);
    this.name = 'BadInput';
  }
}

/** Bytes asked of the host per read by default; the host caps one read at 1 MiB. */
export const CHUNK_SIZE = 256 * 1024;
const HOST_READ_MAX = 1 << 20;

const utf8 = new TextEncoder();

/**
 * The object being transformed. `read(max)` returns up to `max` bytes (possibly
 * fewer) as a Uint8Array, and an empty one only at the end; `readAll()` returns
 * the rest; iterating yields chunks of up to CHUNK_SIZE bytes; `sizeHint()` is the
 * object's size as a number when the host knows it, else undefined. Valid only
 * during the call it was given to.
 */
export class Reader {
  constructor(source, size) {
    this._source = source;
    this._size = size;
  }

  sizeHint() {
    return this._size;
  }

  read(max = CHUNK_SIZE) {
    return this._source.read(Math.max(0, Math.min(max, HOST_READ_MAX)));
  }

  readAll() {
    const parts = [];
    let total = 0;
    for (let chunk; (chunk = this.read(HOST_READ_MAX)).length > 0; ) {
      parts.push(chunk);
      total += chunk.length;
    }
    return concat(parts, total);
  }

  *[Symbol.iterator]() {
    for (let chunk; (chunk = this.read(CHUNK_SIZE)).length > 0; ) yield chunk;
  }
}

/** Reader over bytes already in memory (a buffered call to transformStream). */
class MemorySource {
  constructor(data) {
    this.data = data;
    this.offset = 0;
  }

  read(max) {
    const end = Math.min(this.offset + max, this.data.length);
    const chunk = this.data.subarray(this.offset, end);
    this.offset = end;
    return chunk;
  }
}

function concat(parts, total) {
  if (parts.length === 1) return parts[0];
  const all = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return all;
}

function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return utf8.encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  const what = value === null ? 'null' : typeof value === 'object' ? value.constructor?.name : typeof value;
  throw new TypeError(`a transform must produce a Uint8Array or a string, not ${what}`);
}

/** The WIT transform-error value for anything thrown by user code. */
function toTransformError(err) {
  if (err instanceof BadInput) return { tag: 'bad-input', val: String(err.message || 'bad input') };
  if (
    err !== null &&
    typeof err === 'object' &&
    (err.tag === 'bad-input' || err.tag === 'failed') &&
    typeof err.val === 'string'
  ) {
    return err;
  }
  if (err instanceof Error) {
    if (err.stack) console.error(`${err.name}: ${err.message}\n${err.stack.trimEnd()}`);
    return { tag: 'failed', val: err.message ? `${err.name}: ${err.message}` : err.name };
  }
  return { tag: 'failed', val: `thrown: ${String(err)}` };
}

/** Run `fn`, turning anything it throws into a transform-error throw. */
function guarded(fn) {
  try {
    return fn();
  } catch (err) {
    let mapped;
    try {
      mapped = toTransformError(err);
    } catch {
      mapped = { tag: 'failed', val: 'a transform threw a value that cannot be shown' };
    }
    throw mapped;
  }
}

/**
 * Build the export objects of a transform from plain functions.
 *
 * @param {object} spec
 * @param {(config: Record<string, string>) => void} [spec.init] once per instance
 * @param {(data: Uint8Array, path: string, etlArgs: string) => Uint8Array | string} [spec.transform]
 * @param {(reader: Reader, path: string, etlArgs: string) => Iterable<Uint8Array | string>} [spec.transformStream]
 * @returns {{lifecycle: object, buffered: object, streaming: object}}
 */
export function defineTransform(spec) {
  const { init, transform, transformStream } = spec;
  if (typeof transform !== 'function' && typeof transformStream !== 'function') {
    throw new TypeError('defineTransform needs transform, transformStream or both');
  }
  const whole =
    typeof transform === 'function'
      ? (data, path, args) => toBytes(transform.call(spec, data, path, args))
      : (data, path, args) => {
          const parts = [];
          let total = 0;
          const reader = new Reader(new MemorySource(data), data.length);
          for (const chunk of transformStream.call(spec, reader, path, args)) {
            const bytes = toBytes(chunk);
            parts.push(bytes);
            total += bytes.length;
          }
          return concat(parts, total);
        };
  const pieces =
    typeof transformStream === 'function'
      ? (reader, path, args) => transformStream.call(spec, reader, path, args)
      : (reader, path, args) => [transform.call(spec, reader.readAll(), path, args)];

  return {
    lifecycle: {
      init(config) {
        guarded(() => {
          if (typeof init === 'function') init.call(spec, Object.fromEntries(config));
        });
      },
    },
    buffered: {
      transform(data, path, args) {
        return guarded(() => whole(data, path, args));
      },
    },
    streaming: {
      transformStream(input, output, path, args) {
        guarded(() => {
          const hint = input.sizeHint();
          const reader = new Reader(input, hint === undefined ? undefined : Number(hint));
          for (const chunk of pieces(reader, path, args)) {
            const bytes = toBytes(chunk);
            if (bytes.length > 0) output.write(bytes);
          }
        });
      },
    },
  };
}
