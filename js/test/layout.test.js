import { describe, expect, it } from "vitest";
import { clip, displayText, visible } from "../src/layout.js";

/** Lines of a run of tokens as the canvas shows them. */
const layoutLines = (texts) => texts.map(displayText).join("").split("\n");

describe("displayText", () => {
  it("keeps newlines (after a visible mark) and indentation", () => {
    const tokens = ["def", " f", "():", "\n", "    ", "return", " 1", "\n", "\n", "x"];
    expect(layoutLines(tokens)).toEqual(["def f():\u21b5", "    return 1\u21b5", "\u21b5", "x"]);
  });

  it("keeps the tiny tokenizer's whitespace tokens", () => {
    expect(displayText("  ")).toBe("  ");
    expect(displayText("\n")).toBe("\u21b5\n");
    expect(displayText("a\r\nb")).toBe("a\u21b5\nb");
  });

  it("makes control characters and empty tokens visible", () => {
    expect(displayText("")).toBe("\u2205");
    expect(displayText("a\u0000b\u001b")).toBe("a\u2400b\u241b");
    expect(displayText("\u007f")).toBe("\u2421");
    expect(displayText("\t")).toBe("\t");
  });

  it("never interprets markup: it is plain text", () => {
    expect(displayText("<img src=x onerror=alert(1)>")).toBe("<img src=x onerror=alert(1)>");
  });
});

describe("visible", () => {
  it("matches dgviz.trace.visible", () => {
    expect(visible(" a\tb\n")).toBe("\u00b7a\u21e5b\u21b5");
    expect(visible("")).toBe("\u2205");
  });
  it("clips long labels", () => {
    expect(clip("abcdef", 4)).toBe("abc\u2026");
    expect(clip("abc", 4)).toBe("abc");
  });
});
