import { describe, expect, it } from "vitest";
import { base64ToBytes, decodeArray, decodeTree, halfToFloat, isEncoded } from "../src/codec.js";

const view = (typed) => new DataView(typed.buffer, typed.byteOffset, typed.byteLength);

describe("decodeArray", () => {
  it("wraps each dtype in the matching typed array with its shape", () => {
    const cases = [
      ["int8", new Int8Array([-3, 4]), Int8Array],
      ["uint8", new Uint8Array([0, 255]), Uint8Array],
      ["int16", new Int16Array([-300, 7]), Int16Array],
      ["uint16", new Uint16Array([65535, 1]), Uint16Array],
      ["int32", new Int32Array([-1, 262143]), Int32Array],
      ["uint32", new Uint32Array([4e9, 2]), Uint32Array],
      ["float32", new Float32Array([0.5, -2]), Float32Array],
      ["float64", new Float64Array([1e-300, 3]), Float64Array],
    ];
    for (const [dtype, arr, Ctor] of cases) {
      const out = decodeArray({ dtype, shape: [2, 1], data: view(arr) });
      expect(out.data).toBeInstanceOf(Ctor);
      expect(Array.from(out.data)).toEqual(Array.from(arr));
      expect(out.shape).toEqual([2, 1]);
    }
  });

  it("respects the DataView's byteOffset (a view into a larger buffer)", () => {
    const buf = new ArrayBuffer(16);
    new Int32Array(buf).set([9, 10, 11, 12]);
    const out = decodeArray({ dtype: "int32", shape: [2], data: new DataView(buf, 8, 8) });
    expect(Array.from(out.data)).toEqual([11, 12]);
  });

  it("copies unaligned views instead of failing", () => {
    const bytes = new Uint8Array(9);
    new DataView(bytes.buffer).setFloat32(1, 1.5, true);
    new DataView(bytes.buffer).setFloat32(5, -4, true);
    const data = new DataView(bytes.buffer, 1, 8);
    const out = decodeArray({ dtype: "float32", shape: [2], data });
    expect(Array.from(out.data)).toEqual([1.5, -4]);
  });

  it("widens float16 to float32", () => {
    const halves = new Uint16Array([0x3c00, 0xc000, 0x3555, 0x7c00, 0x0001, 0x0000]);
    const out = decodeArray({ dtype: "float16", shape: [6], data: view(halves) });
    expect(out.dtype).toBe("float32");
    expect(out.data[0]).toBe(1);
    expect(out.data[1]).toBe(-2);
    expect(out.data[2]).toBeCloseTo(1 / 3, 3);
    expect(out.data[3]).toBe(Infinity);
    expect(out.data[4]).toBeCloseTo(5.96e-8, 10);
    expect(out.data[5]).toBe(0);
  });

  it("rejects unknown dtypes and byte counts that do not match the shape", () => {
    const data = new ArrayBuffer(8);
    expect(() => decodeArray({ dtype: "complex64", shape: [1], data })).toThrow(/unsupported/);
    expect(() => decodeArray({ dtype: "int32", shape: [3], data })).toThrow(/expected 12/);
  });
});

describe("halfToFloat", () => {
  it("decodes NaN, signed zero and the largest half", () => {
    expect(halfToFloat(0x7e00)).toBeNaN();
    expect(Object.is(halfToFloat(0x8000), -0)).toBe(true);
    expect(halfToFloat(0x7bff)).toBe(65504);
  });
});

describe("trees", () => {
  it("decodes nested encoded arrays and leaves JSON values alone", () => {
    const a = { dtype: "uint8", shape: [2], data: view(new Uint8Array([1, 2])) };
    const tree = { a, b: [1, "x"], c: { d: null } };
    const out = decodeTree(tree);
    expect(Array.from(out.a.data)).toEqual([1, 2]);
    expect(out.b).toEqual([1, "x"]);
    expect(out.c).toEqual({ d: null });
  });

  it("decodes the offline page's base64 leaves directly (lazily, when used)", () => {
    const out = decodeArray({ dtype: "uint16", shape: [2], b64: "AQACAA==" });
    expect(Array.from(out.data)).toEqual([1, 2]);
    expect(decodeTree({ a: { dtype: "int8", shape: [1], b64: "/w==" } }).a.data[0]).toBe(-1);
  });

  it("reads the offline page's base64 form", () => {
    expect(Array.from(base64ToBytes("AQID"))).toEqual([1, 2, 3]);
    const out = decodeTree({ x: { dtype: "int16", shape: [1], b64: "//8=" }, t: "keep" });
    expect(Array.from(out.x.data)).toEqual([-1]);
    expect(out.t).toBe("keep");
  });

  it("tells encoded arrays from other objects", () => {
    expect(isEncoded({ dtype: "uint8", shape: [1], data: new ArrayBuffer(1) })).toBe(true);
    expect(isEncoded({ dtype: "uint8", shape: [1], b64: "AA==" })).toBe(true);
    expect(isEncoded({ dtype: "uint8", shape: [1] })).toBe(false);
    expect(isEncoded({ dtype: 3, shape: [1], data: 1 })).toBe(false);
    expect(isEncoded(null)).toBe(false);
    expect(isEncoded("uint8")).toBe(false);
  });

  it("refuses data that is not binary", () => {
    expect(() => decodeArray({ dtype: "uint8", shape: [1], data: [1] })).toThrow(/not binary/);
  });
});
