import { CifarError } from '../errors.js';

/**
 * A numpy array as a pickle describes it: element type (numpy's dtype string, e.g. "u1"), shape,
 * and its bytes in C order.
 */
export interface NdArray {
  dtype: string;
  shape: number[];
  fortran: boolean;
  data: Uint8Array;
}

/** What `unpickle` returns: Python 2 `str` and Python 3 `bytes` as Uint8Array, dicts as Maps. */
export type PyValue = null | boolean | number | bigint | string | Uint8Array | PyValue[] | Map<PyValue, PyValue> | NdArray | PyObject;

/** An object under construction: a dtype or array whose state a BUILD opcode fills in. */
interface PyObject {
  kind: 'dtype' | 'ndarray' | 'global';
  name?: string;
  dtype?: string;
  array?: NdArray;
}

const MARK = Symbol('mark');
type Item = PyValue | typeof MARK;

/**
 * A pickle reader for data files (CIFAR-10's Python batches), never code: it builds lists,
 * dicts, tuples (as arrays), numbers, strings and numpy arrays, and refuses any other class or
 * function a pickle names (`pickle.load` would import and call it). Protocols 0–5 as Python 2's
 * cPickle and Python 3 write them for such data.
 */
export function unpickle(bytes: Uint8Array, source: string): PyValue {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (why: string): never => {
    throw new CifarError('ARCHIVE_INVALID', `${source}: not a pickle this reader takes (${why})`);
  };
  const stack: Item[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  const need = (n: number) => {
    if (pos + n > buf.length) fail('it ends early');
  };
  const u8 = () => (need(1), buf[pos++]!);
  const u16 = () => (need(2), (pos += 2), buf.readUInt16LE(pos - 2));
  const u32 = () => (need(4), (pos += 4), buf.readUInt32LE(pos - 4));
  const i32 = () => (need(4), (pos += 4), buf.readInt32LE(pos - 4));
  const u64 = () => {
    need(8);
    const n = buf.readBigUInt64LE(pos);
    pos += 8;
    if (n > BigInt(buf.length)) fail('a length past its end');
    return Number(n);
  };
  const take = (n: number) => (need(n), (pos += n), buf.subarray(pos - n, pos));
  const line = () => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail('it ends early');
    const text = buf.toString('latin1', pos, end);
    pos = end + 1;
    return text;
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) fail('a value is missing');
    return v as PyValue;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail('a value is missing');
    return v as PyValue;
  };
  const popMark = (): PyValue[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) fail('a MARK is missing');
    const items = stack.splice(at) as PyValue[];
    return items.slice(1);
  };
  const setItems = (dict: PyValue, items: PyValue[]) => {
    if (!(dict instanceof Map)) fail('items set on something not a dict');
    for (let i = 0; i + 1 < items.length; i += 2) (dict as Map<PyValue, PyValue>).set(key(items[i]!), items[i + 1]!);
  };
  const appendItems = (list: PyValue, items: PyValue[]) => {
    if (!Array.isArray(list)) fail('items appended to something not a list');
    (list as PyValue[]).push(...items);
  };
  const push = (v: PyValue) => stack.push(v);
  const memoPut = (i: number) => memo.set(i, top());
  const memoGet = (i: number) => {
    if (!memo.has(i)) fail(`memo ${i} is not set`);
    push(memo.get(i)!);
  };
  const global = (module: string, name: string): PyObject => {
    const qualified = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(qualified)) fail(`it names ${qualified}, which is not data`);
    return { kind: 'global', name: qualified.replace(/^numpy\._?core\./, 'numpy.core.') };
  };
  const call = (fn: PyValue, args: PyValue): PyValue => {
    if (!isObject(fn) || fn.kind !== 'global' || !Array.isArray(args)) return fail('a call it cannot make');
    switch (fn.name) {
      case 'numpy.core.multiarray._reconstruct':
        return { kind: 'ndarray' };
      case 'numpy.dtype':
        return { kind: 'dtype', dtype: String(args[0]) };
      case '_codecs.encode': // Python 3 writing bytes at protocol 2: encode(text, 'latin1')
        if (typeof args[0] !== 'string' || !/^latin-?1$/i.test(String(args[1]))) fail('_codecs.encode of something not latin-1 text');
        return Buffer.from(args[0] as string, 'latin1');
      case 'numpy.core.numeric._frombuffer': {
        const [data, dtype, shape, order] = args;
        if (!(data instanceof Uint8Array) || !isObject(dtype) || dtype.kind !== 'dtype' || !Array.isArray(shape)) return fail('a numpy buffer it cannot read');
        return { dtype: dtype.dtype!, shape: shape.map(Number), fortran: order === 'F', data };
      }
      default:
        return fail(`a call of ${fn.name}`);
    }
  };
  const build = (obj: PyValue, state: PyValue) => {
    if (!isObject(obj) || !Array.isArray(state)) fail('BUILD of something not a numpy object');
    const o = obj as PyObject;
    if (o.kind === 'dtype') return; // byte order and flags: nothing a uint8 array needs
    if (o.kind !== 'ndarray') fail('BUILD of something not a numpy object');
    const [, shape, dtype, fortran, data] = state as PyValue[];
    const raw = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    if (!Array.isArray(shape) || !isObject(dtype) || dtype.kind !== 'dtype' || !(raw instanceof Uint8Array)) fail('a numpy array state it cannot read');
    o.array = { dtype: (dtype as PyObject).dtype!, shape: (shape as PyValue[]).map(Number), fortran: fortran === true, data: raw as Uint8Array };
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: take(8); break; // FRAME
      case 0x2e: { // STOP
        const result = pop();
        return resolve(result);
      }
      case 0x28: stack.push(MARK); break; // MARK
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x4a: push(i32()); break; // BININT
      case 0x49: { // INT (protocol 0; "00"/"01" are False/True)
        const text = line();
        push(text === '00' ? false : text === '01' ? true : parseInteger(text, fail));
        break;
      }
      case 0x4c: push(parseInteger(line().replace(/L$/, ''), fail)); break; // LONG
      case 0x8a: push(littleEndianInt(take(u8()))); break; // LONG1
      case 0x8b: push(littleEndianInt(take(u32()))); break; // LONG4
      case 0x47: need(8); push(buf.readDoubleBE(pos)); pos += 8; break; // BINFLOAT
      case 0x46: push(Number(line())); break; // FLOAT
      case 0x55: push(take(u8())); break; // SHORT_BINSTRING (Python 2 str)
      case 0x54: push(take(u32())); break; // BINSTRING
      case 0x43: push(take(u8())); break; // SHORT_BINBYTES
      case 0x42: push(take(u32())); break; // BINBYTES
      case 0x8e: push(take(u64())); break; // BINBYTES8
      case 0x96: push(take(u64())); break; // BYTEARRAY8
      case 0x8c: push(take(u8()).toString('utf8')); break; // SHORT_BINUNICODE
      case 0x58: push(take(u32()).toString('utf8')); break; // BINUNICODE
      case 0x8d: push(take(u64()).toString('utf8')); break; // BINUNICODE8
      case 0x5d: push([]); break; // EMPTY_LIST
      case 0x6c: push(popMark()); break; // LIST
      case 0x29: push([]); break; // EMPTY_TUPLE
      case 0x74: push(popMark()); break; // TUPLE
      case 0x85: push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); push([pop(), b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); push([pop(), b, c]); break; } // TUPLE3
      case 0x7d: push(new Map()); break; // EMPTY_DICT
      case 0x64: { const m = new Map<PyValue, PyValue>(); setItems(m, popMark()); push(m); break; } // DICT
      case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x71: memoPut(u8()); break; // BINPUT
      case 0x72: memoPut(u32()); break; // LONG_BINPUT
      case 0x94: memoPut(memo.size); break; // MEMOIZE
      case 0x70: memoPut(parseInteger(line(), fail) as number); break; // PUT
      case 0x68: memoGet(u8()); break; // BINGET
      case 0x6a: memoGet(u32()); break; // LONG_BINGET
      case 0x67: memoGet(parseInteger(line(), fail) as number); break; // GET
      case 0x63: { const module = line(); push(global(module, line())); break; } // GLOBAL
      case 0x93: { const name = pop(); const module = pop(); push(global(String(module), String(name))); break; } // STACK_GLOBAL
      case 0x52: { const args = pop(); push(call(pop(), args)); break; } // REDUCE
      case 0x81: { const args = pop(); const cls = pop(); push(call(cls, args)); break; } // NEWOBJ
      case 0x62: { const state = pop(); build(top(), state); break; } // BUILD
      default:
        fail(`opcode 0x${op.toString(16).padStart(2, '0')} at byte ${pos - 1}`);
    }
  }
}

/** The classes and functions a numpy array's pickle names; nothing else is accepted. */
const ALLOWED_GLOBALS = new Set([
  'numpy.core.multiarray._reconstruct',
  'numpy._core.multiarray._reconstruct',
  'numpy.ndarray',
  'numpy.dtype',
  'numpy.core.numeric._frombuffer',
  'numpy._core.numeric._frombuffer',
  '_codecs.encode',
]);

function isObject(v: unknown): v is PyObject {
  return typeof v === 'object' && v !== null && 'kind' in v;
}

/** Dict keys compare by value: Python 2 str and Python 3 bytes keys become latin-1 strings. */
function key(k: PyValue): PyValue {
  return k instanceof Uint8Array ? Buffer.from(k).toString('latin1') : k;
}

/** Replace the objects numpy built (arrays) with their arrays, everywhere in the result. */
function resolve(v: PyValue): PyValue {
  if (Array.isArray(v)) return v.map(resolve);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, resolve(x)]));
  if (isObject(v) && v.kind === 'ndarray' && v.array) return v.array;
  return v;
}

function parseInteger(text: string, fail: (why: string) => never): number | bigint {
  if (!/^-?\d+$/.test(text.trim())) fail(`"${text}" is not an integer`);
  const n = BigInt(text.trim());
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

function littleEndianInt(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]!);
  if (bytes[bytes.length - 1]! & 0x80) n -= 1n << BigInt(8 * bytes.length);
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}
