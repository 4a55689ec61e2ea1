/*
 * aistore_etl.h: a few helpers for writing ais-wasm transforms in C against the
 * bindings `wit-bindgen c` generates from wit/etl.wit (see examples/build-c.sh).
 *
 * Include it after the generated header of your world:
 *
 *     #include "buffered_transform.h"   // or streaming_transform.h, full.h
 *     #include "aistore_etl.h"
 *
 * What the raw bindings expect, and these helpers take care of:
 *
 *  - Exported functions OWN their arguments: free `data`, `path` and `args` with
 *    ETL_FREE, and `config` with the generated aistore_etl_types_config_free,
 *    before returning, or they leak for the life of the instance.
 *  - A result (the `ret` list of a buffered transform) and an error message must
 *    be malloc'ed: the bindings free them after the host copied them out.
 *    `etl_bad_input` / `etl_failed` printf into a fresh buffer and return false,
 *    so a transform whose arguments are freed (or that formats from them first,
 *    then frees them) can `return etl_bad_input(err, "no header in ...")`.
 *  - Strings are UTF-8 with a length and NO terminating NUL: compare them with
 *    `etl_str_eq`, print them with "%.*s" and ETL_STR_ARGS(s).
 *  - In a streaming transform, `input` and `output` are borrowed for the call:
 *    release both with ETL_END_STREAM before returning, on every path (errors
 *    too), or the call traps. A list returned by `read` is yours to free; `write`
 *    only borrows the list it is given.
 *
 * bad-input: the object is wrong, a retry will not help (the AIStore target
 * answers 4xx). failed: anything else (5xx). A trap (abort, out-of-bounds access,
 * running out of memory) also fails the object, and the host replaces the instance.
 */
#ifndef AISTORE_ETL_H
#define AISTORE_ETL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* printf arguments for a length-counted string: printf("%.*s", ETL_STR_ARGS(s)). */
#define ETL_STR_ARGS(s) (int)(s).len, (const char *)(s).ptr

/* Free a list or string the bindings handed over (any world's list / string
 * type). An empty one may carry a dangling, non-malloc'ed pointer: not freed. */
#define ETL_FREE(s)                   \
  do {                                \
    if ((s)->len > 0) free((s)->ptr); \
    (s)->ptr = NULL;                  \
    (s)->len = 0;                     \
  } while (0)

/* Release the borrowed reader and writer of a streaming transform (any world
 * with `streaming`); call it once, just before returning. */
#define ETL_END_STREAM(input, output)                 \
  do {                                                \
    aistore_etl_host_io_reader_drop_borrow(input);    \
    aistore_etl_host_io_writer_drop_borrow(output);   \
  } while (0)

/* Whether the length-counted string `s` (any world's string type) equals `lit`. */
#define etl_str_eq(s, lit) etl_bytes_eq_((s).ptr, (s).len, (lit))

static inline bool etl_bytes_eq_(const uint8_t *ptr, size_t len, const char *lit) {
  size_t n = strlen(lit);
  return len == n && (n == 0 || memcmp(ptr, lit, n) == 0);
}

/* Set `err` to the given case with a printf-formatted, malloc'ed message. */
static inline bool etl_error_v_(aistore_etl_types_transform_error_t *err, uint8_t tag,
                                const char *fmt, va_list ap) {
  va_list copy;
  va_copy(copy, ap);
  int n = vsnprintf(NULL, 0, fmt, copy);
  va_end(copy);
  size_t len = n > 0 ? (size_t)n : 0;
  char *msg = malloc(len + 1);
  if (msg == NULL) abort(); /* out of memory: trap, the host replaces the instance */
  vsnprintf(msg, len + 1, fmt, ap);
  if (len == 0) { /* the bindings free only a non-empty message */
    free(msg);
    msg = NULL;
  }
  err->tag = tag;
  /* Both cases carry a string at the same place in the union. */
  err->val.failed.ptr = (uint8_t *)msg;
  err->val.failed.len = len;
  return false;
}

/* Reject the object (WIT bad-input). Returns false: `return etl_bad_input(...)`. */
__attribute__((format(printf, 2, 3))) static inline bool etl_bad_input(
    aistore_etl_types_transform_error_t *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  etl_error_v_(err, AISTORE_ETL_TYPES_TRANSFORM_ERROR_BAD_INPUT, fmt, ap);
  va_end(ap);
  return false;
}

/* Fail the object (WIT failed). Returns false: `return etl_failed(...)`. */
__attribute__((format(printf, 2, 3))) static inline bool etl_failed(
    aistore_etl_types_transform_error_t *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  etl_error_v_(err, AISTORE_ETL_TYPES_TRANSFORM_ERROR_FAILED, fmt, ap);
  va_end(ap);
  return false;
}

#endif /* AISTORE_ETL_H */
