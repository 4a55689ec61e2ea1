/*
 * c-md5: replaces each object with its MD5 digest as 32 lowercase hex characters
 * (buffered), like AIStore's md5 ETL. Written against the bindings `wit-bindgen c`
 * generates for world buffered-transform, with the helpers of ../c/aistore_etl.h.
 *
 * Build: examples/c-md5/build.sh   (prints the .wasm path last)
 * Run:   ais-wasm run --component "$(examples/c-md5/build.sh | tail -n1)" FILE
 */
#include "buffered_transform.h"
#include "aistore_etl.h"
#include "md5.h"

bool exports_aistore_etl_lifecycle_init(exports_aistore_etl_lifecycle_config_t *config,
                                        exports_aistore_etl_lifecycle_transform_error_t *err) {
  (void)err;
  aistore_etl_types_config_free(config); /* arguments are ours to free */
  return true;
}

bool exports_aistore_etl_buffered_transform(buffered_transform_list_u8_t *data,
                                            buffered_transform_string_t *path,
                                            buffered_transform_string_t *args,
                                            buffered_transform_list_u8_t *ret,
                                            exports_aistore_etl_buffered_transform_error_t *err) {
  static const char HEX[] = "0123456789abcdef";
  md5_ctx ctx;
  uint8_t digest[16];
  md5_init(&ctx);
  md5_update(&ctx, data->ptr, data->len);
  md5_final(&ctx, digest);
  ETL_FREE(data);
  ETL_FREE(path);
  ETL_FREE(args);

  uint8_t *hex = malloc(32); /* freed by the bindings once the host has it */
  if (hex == NULL) return etl_failed(err, "out of memory");
  for (int i = 0; i < 16; i++) {
    hex[2 * i] = (uint8_t)HEX[digest[i] >> 4];
    hex[2 * i + 1] = (uint8_t)HEX[digest[i] & 15];
  }
  ret->ptr = hex;
  ret->len = 32;
  return true;
}
