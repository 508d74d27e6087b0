import { readFileSync } from 'node:fs';

/** The package root (where package.json, models/ and configs/ are), wherever cifar is installed. */
const ROOT = new URL('../../', import.meta.url);

/** The bundled model, so `cifar predict` and `cifar serve` work from any directory. */
export { BUNDLED_MODEL_DIR as DEFAULT_MODEL_DIR } from '../model/store.js';

export const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { version: string }).version;
