import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The package root (where package.json, models/ and configs/ are), wherever cifar is installed. */
const ROOT = new URL('../../', import.meta.url);

/** The bundled model, so `cifar predict` and `cifar serve` work from any directory. */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('models/default', ROOT));

export const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { version: string }).version;
