// md5.js: a small MD5 (RFC 1321) in plain JavaScript, written for this example.
// Why not crypto.subtle.digest: it is asynchronous (and has no MD5), while the
// transform exports are synchronous.
//
//   const h = new Md5(); h.update(bytes); ...; h.hex()   // or md5Hex(bytes)
//
// The 64 steps are unrolled: componentize-js runs JavaScript in an interpreter,
// where every loop iteration, table lookup and function call costs, so straight-line
// code with constants inlined is ~3x faster than the textbook loop (7.6 vs 2.7
// MiB/s per object under ais-wasm).

export class Md5 {
  constructor() {
    this.h = Int32Array.of(0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476);
    this.block = new Uint8Array(64); // a partial block waiting for more input
    this.block32 = new Int32Array(this.block.buffer);
    this.used = 0;
    this.length = 0; // bytes hashed so far (exact up to 2^53)
  }

  /** Hash `data` (a Uint8Array) after what came before. */
  update(data) {
    const n = data.length;
    let pos = 0;
    this.length += n;
    if (this.used > 0) {
      pos = Math.min(64 - this.used, n);
      this.block.set(data.subarray(0, pos), this.used);
      this.used += pos;
      if (this.used < 64) return this;
      compress(this.h, this.block32, 1);
      this.used = 0;
    }
    const full = Math.floor((n - pos) / 64);
    if (full > 0) {
      const start = data.byteOffset + pos;
      if (start % 4 === 0) {
        // Wasm is little-endian, as MD5's words are: read them in place.
        compress(this.h, new Int32Array(data.buffer, start, full * 16), full);
      } else {
        for (let i = 0; i < full; i++) {
          this.block.set(data.subarray(pos + i * 64, pos + i * 64 + 64));
          compress(this.h, this.block32, 1);
        }
      }
      pos += full * 64;
    }
    if (pos < n) {
      this.block.set(data.subarray(pos), 0);
      this.used = n - pos;
    }
    return this;
  }

  /** The 16-byte digest. The hasher is finished afterwards. */
  digest() {
    const block = this.block;
    block[this.used] = 0x80;
    block.fill(0, this.used + 1);
    if (this.used >= 56) {
      compress(this.h, this.block32, 1);
      block.fill(0);
    }
    this.block32[14] = this.length * 8; // bit length, low word (stored modulo 2^32)
    this.block32[15] = Math.floor(this.length / 0x20000000); // high word
    compress(this.h, this.block32, 1);
    return new Uint8Array(this.h.buffer.slice(0));
  }

  /** The digest as 32 lowercase hex characters. */
  hex() {
    let out = '';
    for (const byte of this.digest()) out += (byte < 16 ? '0' : '') + byte.toString(16);
    return out;
  }
}

/** MD5 of `data` as 32 lowercase hex characters. */
export function md5Hex(data) {
  return new Md5().update(data).hex();
}

// Process `count` 64-byte blocks of `w` (16 little-endian words each) into `h`.
function compress(h, w, count) {
  let a = h[0], b = h[1], c = h[2], d = h[3];
  for (let k = 0; k < count * 16; k += 16) {
    const aa = a, bb = b, cc = c, dd = d;
    const m0 = w[k], m1 = w[k + 1], m2 = w[k + 2], m3 = w[k + 3];
    const m4 = w[k + 4], m5 = w[k + 5], m6 = w[k + 6], m7 = w[k + 7];
    const m8 = w[k + 8], m9 = w[k + 9], m10 = w[k + 10], m11 = w[k + 11];
    const m12 = w[k + 12], m13 = w[k + 13], m14 = w[k + 14], m15 = w[k + 15];
    let t;
    // round 1
    t = (a + ((b & c) | (~b & d)) + m0 + 0xd76aa478) | 0; a = (((t << 7) | (t >>> 25)) + b) | 0;
    t = (d + ((a & b) | (~a & c)) + m1 + 0xe8c7b756) | 0; d = (((t << 12) | (t >>> 20)) + a) | 0;
    t = (c + ((d & a) | (~d & b)) + m2 + 0x242070db) | 0; c = (((t << 17) | (t >>> 15)) + d) | 0;
    t = (b + ((c & d) | (~c & a)) + m3 + 0xc1bdceee) | 0; b = (((t << 22) | (t >>> 10)) + c) | 0;
    t = (a + ((b & c) | (~b & d)) + m4 + 0xf57c0faf) | 0; a = (((t << 7) | (t >>> 25)) + b) | 0;
    t = (d + ((a & b) | (~a & c)) + m5 + 0x4787c62a) | 0; d = (((t << 12) | (t >>> 20)) + a) | 0;
    t = (c + ((d & a) | (~d & b)) + m6 + 0xa8304613) | 0; c = (((t << 17) | (t >>> 15)) + d) | 0;
    t = (b + ((c & d) | (~c & a)) + m7 + 0xfd469501) | 0; b = (((t << 22) | (t >>> 10)) + c) | 0;
    t = (a + ((b & c) | (~b & d)) + m8 + 0x698098d8) | 0; a = (((t << 7) | (t >>> 25)) + b) | 0;
    t = (d + ((a & b) | (~a & c)) + m9 + 0x8b44f7af) | 0; d = (((t << 12) | (t >>> 20)) + a) | 0;
    t = (c + ((d & a) | (~d & b)) + m10 + 0xffff5bb1) | 0; c = (((t << 17) | (t >>> 15)) + d) | 0;
    t = (b + ((c & d) | (~c & a)) + m11 + 0x895cd7be) | 0; b = (((t << 22) | (t >>> 10)) + c) | 0;
    t = (a + ((b & c) | (~b & d)) + m12 + 0x6b901122) | 0; a = (((t << 7) | (t >>> 25)) + b) | 0;
    t = (d + ((a & b) | (~a & c)) + m13 + 0xfd987193) | 0; d = (((t << 12) | (t >>> 20)) + a) | 0;
    t = (c + ((d & a) | (~d & b)) + m14 + 0xa679438e) | 0; c = (((t << 17) | (t >>> 15)) + d) | 0;
    t = (b + ((c & d) | (~c & a)) + m15 + 0x49b40821) | 0; b = (((t << 22) | (t >>> 10)) + c) | 0;
    // round 2
    t = (a + ((b & d) | (c & ~d)) + m1 + 0xf61e2562) | 0; a = (((t << 5) | (t >>> 27)) + b) | 0;
    t = (d + ((a & c) | (b & ~c)) + m6 + 0xc040b340) | 0; d = (((t << 9) | (t >>> 23)) + a) | 0;
    t = (c + ((d & b) | (a & ~b)) + m11 + 0x265e5a51) | 0; c = (((t << 14) | (t >>> 18)) + d) | 0;
    t = (b + ((c & a) | (d & ~a)) + m0 + 0xe9b6c7aa) | 0; b = (((t << 20) | (t >>> 12)) + c) | 0;
    t = (a + ((b & d) | (c & ~d)) + m5 + 0xd62f105d) | 0; a = (((t << 5) | (t >>> 27)) + b) | 0;
    t = (d + ((a & c) | (b & ~c)) + m10 + 0x02441453) | 0; d = (((t << 9) | (t >>> 23)) + a) | 0;
    t = (c + ((d & b) | (a & ~b)) + m15 + 0xd8a1e681) | 0; c = (((t << 14) | (t >>> 18)) + d) | 0;
    t = (b + ((c & a) | (d & ~a)) + m4 + 0xe7d3fbc8) | 0; b = (((t << 20) | (t >>> 12)) + c) | 0;
    t = (a + ((b & d) | (c & ~d)) + m9 + 0x21e1cde6) | 0; a = (((t << 5) | (t >>> 27)) + b) | 0;
    t = (d + ((a & c) | (b & ~c)) + m14 + 0xc33707d6) | 0; d = (((t << 9) | (t >>> 23)) + a) | 0;
    t = (c + ((d & b) | (a & ~b)) + m3 + 0xf4d50d87) | 0; c = (((t << 14) | (t >>> 18)) + d) | 0;
    t = (b + ((c & a) | (d & ~a)) + m8 + 0x455a14ed) | 0; b = (((t << 20) | (t >>> 12)) + c) | 0;
    t = (a + ((b & d) | (c & ~d)) + m13 + 0xa9e3e905) | 0; a = (((t << 5) | (t >>> 27)) + b) | 0;
    t = (d + ((a & c) | (b & ~c)) + m2 + 0xfcefa3f8) | 0; d = (((t << 9) | (t >>> 23)) + a) | 0;
    t = (c + ((d & b) | (a & ~b)) + m7 + 0x676f02d9) | 0; c = (((t << 14) | (t >>> 18)) + d) | 0;
    t = (b + ((c & a) | (d & ~a)) + m12 + 0x8d2a4c8a) | 0; b = (((t << 20) | (t >>> 12)) + c) | 0;
    // round 3
    t = (a + (b ^ c ^ d) + m5 + 0xfffa3942) | 0; a = (((t << 4) | (t >>> 28)) + b) | 0;
    t = (d + (a ^ b ^ c) + m8 + 0x8771f681) | 0; d = (((t << 11) | (t >>> 21)) + a) | 0;
    t = (c + (d ^ a ^ b) + m11 + 0x6d9d6122) | 0; c = (((t << 16) | (t >>> 16)) + d) | 0;
    t = (b + (c ^ d ^ a) + m14 + 0xfde5380c) | 0; b = (((t << 23) | (t >>> 9)) + c) | 0;
    t = (a + (b ^ c ^ d) + m1 + 0xa4beea44) | 0; a = (((t << 4) | (t >>> 28)) + b) | 0;
    t = (d + (a ^ b ^ c) + m4 + 0x4bdecfa9) | 0; d = (((t << 11) | (t >>> 21)) + a) | 0;
    t = (c + (d ^ a ^ b) + m7 + 0xf6bb4b60) | 0; c = (((t << 16) | (t >>> 16)) + d) | 0;
    t = (b + (c ^ d ^ a) + m10 + 0xbebfbc70) | 0; b = (((t << 23) | (t >>> 9)) + c) | 0;
    t = (a + (b ^ c ^ d) + m13 + 0x289b7ec6) | 0; a = (((t << 4) | (t >>> 28)) + b) | 0;
    t = (d + (a ^ b ^ c) + m0 + 0xeaa127fa) | 0; d = (((t << 11) | (t >>> 21)) + a) | 0;
    t = (c + (d ^ a ^ b) + m3 + 0xd4ef3085) | 0; c = (((t << 16) | (t >>> 16)) + d) | 0;
    t = (b + (c ^ d ^ a) + m6 + 0x04881d05) | 0; b = (((t << 23) | (t >>> 9)) + c) | 0;
    t = (a + (b ^ c ^ d) + m9 + 0xd9d4d039) | 0; a = (((t << 4) | (t >>> 28)) + b) | 0;
    t = (d + (a ^ b ^ c) + m12 + 0xe6db99e5) | 0; d = (((t << 11) | (t >>> 21)) + a) | 0;
    t = (c + (d ^ a ^ b) + m15 + 0x1fa27cf8) | 0; c = (((t << 16) | (t >>> 16)) + d) | 0;
    t = (b + (c ^ d ^ a) + m2 + 0xc4ac5665) | 0; b = (((t << 23) | (t >>> 9)) + c) | 0;
    // round 4
    t = (a + (c ^ (b | ~d)) + m0 + 0xf4292244) | 0; a = (((t << 6) | (t >>> 26)) + b) | 0;
    t = (d + (b ^ (a | ~c)) + m7 + 0x432aff97) | 0; d = (((t << 10) | (t >>> 22)) + a) | 0;
    t = (c + (a ^ (d | ~b)) + m14 + 0xab9423a7) | 0; c = (((t << 15) | (t >>> 17)) + d) | 0;
    t = (b + (d ^ (c | ~a)) + m5 + 0xfc93a039) | 0; b = (((t << 21) | (t >>> 11)) + c) | 0;
    t = (a + (c ^ (b | ~d)) + m12 + 0x655b59c3) | 0; a = (((t << 6) | (t >>> 26)) + b) | 0;
    t = (d + (b ^ (a | ~c)) + m3 + 0x8f0ccc92) | 0; d = (((t << 10) | (t >>> 22)) + a) | 0;
    t = (c + (a ^ (d | ~b)) + m10 + 0xffeff47d) | 0; c = (((t << 15) | (t >>> 17)) + d) | 0;
    t = (b + (d ^ (c | ~a)) + m1 + 0x85845dd1) | 0; b = (((t << 21) | (t >>> 11)) + c) | 0;
    t = (a + (c ^ (b | ~d)) + m8 + 0x6fa87e4f) | 0; a = (((t << 6) | (t >>> 26)) + b) | 0;
    t = (d + (b ^ (a | ~c)) + m15 + 0xfe2ce6e0) | 0; d = (((t << 10) | (t >>> 22)) + a) | 0;
    t = (c + (a ^ (d | ~b)) + m6 + 0xa3014314) | 0; c = (((t << 15) | (t >>> 17)) + d) | 0;
    t = (b + (d ^ (c | ~a)) + m13 + 0x4e0811a1) | 0; b = (((t << 21) | (t >>> 11)) + c) | 0;
    t = (a + (c ^ (b | ~d)) + m4 + 0xf7537e82) | 0; a = (((t << 6) | (t >>> 26)) + b) | 0;
    t = (d + (b ^ (a | ~c)) + m11 + 0xbd3af235) | 0; d = (((t << 10) | (t >>> 22)) + a) | 0;
    t = (c + (a ^ (d | ~b)) + m2 + 0x2ad7d2bb) | 0; c = (((t << 15) | (t >>> 17)) + d) | 0;
    t = (b + (d ^ (c | ~a)) + m9 + 0xeb86d391) | 0; b = (((t << 21) | (t >>> 11)) + c) | 0;
    a = (a + aa) | 0; b = (b + bb) | 0; c = (c + cc) | 0; d = (d + dd) | 0;
  }
  h[0] = a; h[1] = b; h[2] = c; h[3] = d;
}
