// js-contract (../README.md): the contract of python-contract through
// examples/js/aistore-etl.js.
//
// Only `transform` is written: the helper derives the streaming export from it, so
// both shapes of world `full` go through the helper's own code.
import { BadInput, defineTransform } from '../../../../examples/js/aistore-etl.js';

let settings = {};

const t = defineTransform({
  init(config) {
    if (Object.hasOwn(config, 'refuse')) throw new BadInput(`refused: ${config.refuse}`);
    settings = config;
  },
  transform(data, path, etlArgs) {
    switch (etlArgs) {
      case '':
        return data;
      case 'bad':
        throw new BadInput(`bad object ${path}`);
      case 'fail':
        throw new Error(`failed on ${path}`);
      case 'config':
        return Object.keys(settings)
          .sort()
          .map((key) => `${key}=${settings[key]}\n`)
          .join('');
      case 'args':
        return `${path}|${etlArgs}`;
      default:
        throw new BadInput(`unknown etl_args ${etlArgs}`);
    }
  },
});

export const lifecycle = t.lifecycle;
export const buffered = t.buffered;
export const streaming = t.streaming;
