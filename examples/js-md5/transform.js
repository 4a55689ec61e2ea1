// js-md5: replaces each object with its MD5 digest as 32 lowercase hex characters
// (buffered), like AIStore's md5 ETL.
//
// Build: examples/js-md5/build.sh   (prints the .wasm path last)
// Run:   ais-wasm run --component "$(examples/js-md5/build.sh | tail -n1)" FILE
import { defineTransform } from '../js/aistore-etl.js';
import { md5Hex } from './md5.js';

const t = defineTransform({
  transform(data, path, etlArgs) {
    return md5Hex(data); // a string result is sent as UTF-8 (here: ASCII hex)
  },
});

export const lifecycle = t.lifecycle;
export const buffered = t.buffered;
