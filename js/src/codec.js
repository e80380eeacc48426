// @ts-check
// Binary array codec: the one wire format between Python (dgviz/_codec.py) and JS.
// An encoded array is {dtype, shape, data}; `data` is a DataView (Jupyter widget buffers), an
// ArrayBuffer or a Uint8Array. The offline HTML page stores {dtype, shape, b64} instead (base64 of
// the same little-endian bytes), decoded only when the array is first used.
/** @import { Encoded, NDArray, Typed } from "./types.js" */

/**
 * @typedef {Int8ArrayConstructor | Uint8ArrayConstructor | Int16ArrayConstructor
 *   | Uint16ArrayConstructor | Int32ArrayConstructor | Uint32ArrayConstructor
 *   | Float32ArrayConstructor | Float64ArrayConstructor} TypedCtor
 */

/** @type {Record<string, TypedCtor>} */
const CTORS = {
  int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
  int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array,
  float32: Float32Array, float64: Float64Array,
};

/** IEEE 754 half (as its uint16 bits) -> number. @param {number} h */
export function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // subnormal (and zero)
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** @param {unknown} data @returns {Uint8Array} */
function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError("dgviz: array data is not binary (expected a DataView or ArrayBuffer)");
}

/**
 * Is this value an encoded array?
 * @param {unknown} value
 * @returns {value is Encoded}
 */
export function isEncoded(value) {
  if (value === null || typeof value !== "object") return false;
  const v = /** @type {Record<string, unknown>} */ (value);
  return typeof v.dtype === "string" && Array.isArray(v.shape) &&
    (v.data !== undefined || typeof v.b64 === "string");
}

/**
 * Decode one encoded array into a typed array (float16 is widened to Float32Array).
 * Views are zero-copy when aligned; unaligned buffers are copied (offsets count bytes).
 * @param {Encoded} enc
 * @returns {NDArray}
 */
export function decodeArray(enc) {
  const { dtype, shape } = enc;
  const size = shape.reduce((a, b) => a * b, 1);
  const bytes = typeof enc.b64 === "string" ? base64ToBytes(enc.b64) : asBytes(enc.data);
  if (dtype === "float16") {
    if (bytes.byteLength !== size * 2) {
      throw new Error(`dgviz: float16 array of shape [${shape}] has ${bytes.byteLength} bytes`);
    }
    const u16 = typedView(Uint16Array, bytes, size);
    const out = new Float32Array(size);
    for (let i = 0; i < size; i++) out[i] = halfToFloat(u16[i]);
    return { dtype: "float32", shape, data: out };
  }
  const Ctor = CTORS[dtype];
  if (!Ctor) throw new Error(`dgviz: unsupported dtype "${dtype}"`);
  const expected = size * Ctor.BYTES_PER_ELEMENT;
  if (bytes.byteLength !== expected) {
    throw new Error(`dgviz: ${dtype} array of shape [${shape}] has ${bytes.byteLength} bytes, ` +
      `expected ${expected}`);
  }
  return { dtype, shape, data: typedView(Ctor, bytes, size) };
}

/**
 * @param {TypedCtor} Ctor
 * @param {Uint8Array} bytes
 * @param {number} size
 * @returns {Typed}
 */
function typedView(Ctor, bytes, size) {
  if (bytes.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) {
    return new Ctor(/** @type {ArrayBuffer} */ (bytes.buffer), bytes.byteOffset, size);
  }
  return new Ctor(bytes.slice().buffer, 0, size);
}

/**
 * Decode every encoded array in a JSON-like tree (objects and arrays), leave the rest.
 * @param {unknown} value
 * @returns {any}
 */
export function decodeTree(value) {
  if (isEncoded(value)) return decodeArray(value);
  if (Array.isArray(value)) return value.map(decodeTree);
  if (value !== null && typeof value === "object" && !ArrayBuffer.isView(value)) {
    /** @type {Record<string, unknown>} */
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = decodeTree(v);
    return out;
  }
  return value;
}

/** base64 -> bytes (the offline HTML page stores array data as base64). @param {string} text */
export function base64ToBytes(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
