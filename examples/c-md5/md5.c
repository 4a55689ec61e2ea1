/* md5.c: a small MD5 (RFC 1321), written for this example. */
#include "md5.h"

#include <string.h>

static uint32_t rotl(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

/* One step: a = b + ((a + f(b, c, d) + m + k) <<< s). The 64 steps are written out
 * with constant shifts and indices, so that they compile to straight-line code: a
 * loop choosing them at run time made this example 3.5x slower than Rust's md-5.
 * f(b, c, d) is added last: b is the step's newest input, and what does not wait
 * for it can be summed while it is computed. */
#define STEP(f, a, b, c, d, m, k, s) (a) = (b) + rotl((a) + (m) + (k) + f((b), (c), (d)), (s))
#define F(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define G(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define H(x, y, z) ((x) ^ (y) ^ (z))
#define I(x, y, z) ((y) ^ ((x) | ~(z)))

/* Word i of the block; WebAssembly is little-endian, as MD5 reads its words. */
#define W(i) load32(p + 4 * (i))
static uint32_t load32(const uint8_t *p) {
  uint32_t word;
  memcpy(&word, p, sizeof word);
  return word;
}

static void compress(uint32_t state[4], const uint8_t *p) {
  uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
  /* The constants are floor(abs(sin(i + 1)) * 2^32), i = 0..63 (RFC 1321). */
  STEP(F, a, b, c, d, W(0), 0xd76aa478, 7);   STEP(F, d, a, b, c, W(1), 0xe8c7b756, 12);
  STEP(F, c, d, a, b, W(2), 0x242070db, 17);  STEP(F, b, c, d, a, W(3), 0xc1bdceee, 22);
  STEP(F, a, b, c, d, W(4), 0xf57c0faf, 7);   STEP(F, d, a, b, c, W(5), 0x4787c62a, 12);
  STEP(F, c, d, a, b, W(6), 0xa8304613, 17);  STEP(F, b, c, d, a, W(7), 0xfd469501, 22);
  STEP(F, a, b, c, d, W(8), 0x698098d8, 7);   STEP(F, d, a, b, c, W(9), 0x8b44f7af, 12);
  STEP(F, c, d, a, b, W(10), 0xffff5bb1, 17); STEP(F, b, c, d, a, W(11), 0x895cd7be, 22);
  STEP(F, a, b, c, d, W(12), 0x6b901122, 7);  STEP(F, d, a, b, c, W(13), 0xfd987193, 12);
  STEP(F, c, d, a, b, W(14), 0xa679438e, 17); STEP(F, b, c, d, a, W(15), 0x49b40821, 22);
  STEP(G, a, b, c, d, W(1), 0xf61e2562, 5);   STEP(G, d, a, b, c, W(6), 0xc040b340, 9);
  STEP(G, c, d, a, b, W(11), 0x265e5a51, 14); STEP(G, b, c, d, a, W(0), 0xe9b6c7aa, 20);
  STEP(G, a, b, c, d, W(5), 0xd62f105d, 5);   STEP(G, d, a, b, c, W(10), 0x02441453, 9);
  STEP(G, c, d, a, b, W(15), 0xd8a1e681, 14); STEP(G, b, c, d, a, W(4), 0xe7d3fbc8, 20);
  STEP(G, a, b, c, d, W(9), 0x21e1cde6, 5);   STEP(G, d, a, b, c, W(14), 0xc33707d6, 9);
  STEP(G, c, d, a, b, W(3), 0xf4d50d87, 14);  STEP(G, b, c, d, a, W(8), 0x455a14ed, 20);
  STEP(G, a, b, c, d, W(13), 0xa9e3e905, 5);  STEP(G, d, a, b, c, W(2), 0xfcefa3f8, 9);
  STEP(G, c, d, a, b, W(7), 0x676f02d9, 14);  STEP(G, b, c, d, a, W(12), 0x8d2a4c8a, 20);
  STEP(H, a, b, c, d, W(5), 0xfffa3942, 4);   STEP(H, d, a, b, c, W(8), 0x8771f681, 11);
  STEP(H, c, d, a, b, W(11), 0x6d9d6122, 16); STEP(H, b, c, d, a, W(14), 0xfde5380c, 23);
  STEP(H, a, b, c, d, W(1), 0xa4beea44, 4);   STEP(H, d, a, b, c, W(4), 0x4bdecfa9, 11);
  STEP(H, c, d, a, b, W(7), 0xf6bb4b60, 16);  STEP(H, b, c, d, a, W(10), 0xbebfbc70, 23);
  STEP(H, a, b, c, d, W(13), 0x289b7ec6, 4);  STEP(H, d, a, b, c, W(0), 0xeaa127fa, 11);
  STEP(H, c, d, a, b, W(3), 0xd4ef3085, 16);  STEP(H, b, c, d, a, W(6), 0x04881d05, 23);
  STEP(H, a, b, c, d, W(9), 0xd9d4d039, 4);   STEP(H, d, a, b, c, W(12), 0xe6db99e5, 11);
  STEP(H, c, d, a, b, W(15), 0x1fa27cf8, 16); STEP(H, b, c, d, a, W(2), 0xc4ac5665, 23);
  STEP(I, a, b, c, d, W(0), 0xf4292244, 6);   STEP(I, d, a, b, c, W(7), 0x432aff97, 10);
  STEP(I, c, d, a, b, W(14), 0xab9423a7, 15); STEP(I, b, c, d, a, W(5), 0xfc93a039, 21);
  STEP(I, a, b, c, d, W(12), 0x655b59c3, 6);  STEP(I, d, a, b, c, W(3), 0x8f0ccc92, 10);
  STEP(I, c, d, a, b, W(10), 0xffeff47d, 15); STEP(I, b, c, d, a, W(1), 0x85845dd1, 21);
  STEP(I, a, b, c, d, W(8), 0x6fa87e4f, 6);   STEP(I, d, a, b, c, W(15), 0xfe2ce6e0, 10);
  STEP(I, c, d, a, b, W(6), 0xa3014314, 15);  STEP(I, b, c, d, a, W(13), 0x4e0811a1, 21);
  STEP(I, a, b, c, d, W(4), 0xf7537e82, 6);   STEP(I, d, a, b, c, W(11), 0xbd3af235, 10);
  STEP(I, c, d, a, b, W(2), 0x2ad7d2bb, 15);  STEP(I, b, c, d, a, W(9), 0xeb86d391, 21);
  state[0] += a;
  state[1] += b;
  state[2] += c;
  state[3] += d;
}

void md5_init(md5_ctx *ctx) {
  ctx->state[0] = 0x67452301;
  ctx->state[1] = 0xefcdab89;
  ctx->state[2] = 0x98badcfe;
  ctx->state[3] = 0x10325476;
  ctx->length = 0;
  ctx->used = 0;
}

void md5_update(md5_ctx *ctx, const uint8_t *data, size_t len) {
  ctx->length += len;
  if (ctx->used > 0) {
    size_t take = 64 - ctx->used < len ? 64 - ctx->used : len;
    memcpy(ctx->block + ctx->used, data, take);
    ctx->used += take;
    data += take;
    len -= take;
    if (ctx->used < 64) return;
    compress(ctx->state, ctx->block);
    ctx->used = 0;
  }
  for (; len >= 64; data += 64, len -= 64) compress(ctx->state, data);
  memcpy(ctx->block, data, len);
  ctx->used = len;
}

void md5_final(md5_ctx *ctx, uint8_t digest[16]) {
  uint64_t bits = ctx->length * 8;
  ctx->block[ctx->used++] = 0x80;
  if (ctx->used > 56) {
    memset(ctx->block + ctx->used, 0, 64 - ctx->used);
    compress(ctx->state, ctx->block);
    ctx->used = 0;
  }
  memset(ctx->block + ctx->used, 0, 56 - ctx->used);
  for (int i = 0; i < 8; i++) ctx->block[56 + i] = (uint8_t)(bits >> (8 * i));
  compress(ctx->state, ctx->block);
  for (int i = 0; i < 16; i++) digest[i] = (uint8_t)(ctx->state[i / 4] >> (8 * (i % 4)));
}
