/*
 * c-contract (../README.md): the contract of python-contract against the bindings
 * `wit-bindgen c` generates for world full, with examples/c/aistore_etl.h. Both
 * exports are written out, and every path frees every argument; the streaming one
 * releases its reader and writer on every path.
 */
#include "full.h"
#include "aistore_etl.h"

/* The init config as sorted "key=value\n" lines, made once per instance. */
static uint8_t *config_text;
static size_t config_len;

/* Copy `s` to `to`; returns the end of the copy. */
static uint8_t *append(uint8_t *to, const full_string_t *s) {
  if (s->len > 0) memcpy(to, s->ptr, s->len);
  return to + s->len;
}

static int compare_keys(const void *a, const void *b) {
  const full_string_t *x = &((const full_tuple2_string_string_t *)a)->f0;
  const full_string_t *y = &((const full_tuple2_string_string_t *)b)->f0;
  size_t n = x->len < y->len ? x->len : y->len;
  int order = n > 0 ? memcmp(x->ptr, y->ptr, n) : 0;
  if (order != 0) return order;
  return x->len < y->len ? -1 : x->len > y->len;
}

bool exports_aistore_etl_lifecycle_init(exports_aistore_etl_lifecycle_config_t *config,
                                        exports_aistore_etl_lifecycle_transform_error_t *err) {
  for (size_t i = 0; i < config->len; i++) {
    if (etl_str_eq(config->ptr[i].f0, "refuse")) {
      /* Formatted from the config, then the config is freed. */
      etl_bad_input(err, "refused: %.*s", ETL_STR_ARGS(config->ptr[i].f1));
      aistore_etl_types_config_free(config);
      return false;
    }
  }
  if (config->len > 0) {
    qsort(config->ptr, config->len, sizeof config->ptr[0], compare_keys);
  }
  size_t len = 0;
  for (size_t i = 0; i < config->len; i++) {
    len += config->ptr[i].f0.len + config->ptr[i].f1.len + 2;
  }
  free(config_text);
  config_text = malloc(len > 0 ? len : 1);
  if (config_text == NULL) {
    aistore_etl_types_config_free(config);
    return etl_failed(err, "out of memory");
  }
  uint8_t *end = config_text;
  for (size_t i = 0; i < config->len; i++) {
    end = append(end, &config->ptr[i].f0);
    *end++ = '=';
    end = append(end, &config->ptr[i].f1);
    *end++ = '\n';
  }
  config_len = (size_t)(end - config_text);
  aistore_etl_types_config_free(config);
  return true;
}

/* Every case but the echo, the same in both shapes: the output or the error, from
 * the arguments, which the caller still owns. */
static bool respond(const full_string_t *path, const full_string_t *args, full_list_u8_t *out,
                    aistore_etl_types_transform_error_t *err) {
  out->ptr = NULL;
  out->len = 0;
  if (etl_str_eq(*args, "bad")) return etl_bad_input(err, "bad object %.*s", ETL_STR_ARGS(*path));
  if (etl_str_eq(*args, "fail")) return etl_failed(err, "failed on %.*s", ETL_STR_ARGS(*path));
  if (etl_str_eq(*args, "config")) {
    if (config_len == 0) return true; /* empty: nothing to allocate */
    out->ptr = malloc(config_len);
    if (out->ptr == NULL) return etl_failed(err, "out of memory");
    memcpy(out->ptr, config_text, config_len);
    out->len = config_len;
    return true;
  }
  if (etl_str_eq(*args, "args")) {
    uint8_t *bytes = malloc(path->len + 1 + args->len);
    if (bytes == NULL) return etl_failed(err, "out of memory");
    uint8_t *end = append(bytes, path);
    *end++ = '|';
    end = append(end, args);
    out->ptr = bytes;
    out->len = (size_t)(end - bytes);
    return true;
  }
  return etl_bad_input(err, "unknown etl_args %.*s", ETL_STR_ARGS(*args));
}

bool exports_aistore_etl_buffered_transform(full_list_u8_t *data, full_string_t *path,
                                            full_string_t *args, full_list_u8_t *ret,
                                            exports_aistore_etl_buffered_transform_error_t *err) {
  bool ok;
  if (args->len == 0) {
    *ret = *data; /* the echo hands the input over as the result */
    data->ptr = NULL;
    data->len = 0;
    ok = true;
  } else {
    ok = respond(path, args, ret, err);
  }
  ETL_FREE(data);
  ETL_FREE(path);
  ETL_FREE(args);
  return ok;
}

bool exports_aistore_etl_streaming_transform_stream(
    exports_aistore_etl_streaming_borrow_reader_t input,
    exports_aistore_etl_streaming_borrow_writer_t output, full_string_t *path, full_string_t *args,
    exports_aistore_etl_streaming_transform_error_t *err) {
  bool ok = true;
  if (args->len == 0) {
    for (;;) {
      full_list_u8_t chunk; /* ours: free it */
      aistore_etl_host_io_method_reader_read(input, 256 * 1024, &chunk);
      if (chunk.len == 0) {
        ETL_FREE(&chunk);
        break;
      }
      aistore_etl_host_io_method_writer_write(output, &chunk); /* write only borrows it */
      ETL_FREE(&chunk);
    }
  } else {
    /* Decided from the arguments alone: the input is left unread. */
    full_list_u8_t out;
    ok = respond(path, args, &out, err);
    if (ok && out.len > 0) aistore_etl_host_io_method_writer_write(output, &out);
    ETL_FREE(&out);
  }
  ETL_FREE(path);
  ETL_FREE(args);
  ETL_END_STREAM(input, output);
  return ok;
}
