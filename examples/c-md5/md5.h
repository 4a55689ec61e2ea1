/* md5.h: a small MD5 (RFC 1321), written for this example. */
#ifndef EXAMPLE_MD5_H
#define EXAMPLE_MD5_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t state[4];
  uint64_t length; /* bytes hashed so far */
  uint8_t block[64];
  size_t used; /* bytes waiting in `block` */
} md5_ctx;

void md5_init(md5_ctx *ctx);
void md5_update(md5_ctx *ctx, const uint8_t *data, size_t len);
void md5_final(md5_ctx *ctx, uint8_t digest[16]);

#endif
