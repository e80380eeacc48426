import { describe, expect, it } from "vitest";
import { branchRequest } from "../src/branch.js";

describe("branchRequest", () => {
  it("sends the chosen alternative's id", () => {
    expect(branchRequest(7, 3, "", "42"))
      .toEqual({ kind: "branch", step: 7, position: 3, token: 42 });
  });

  it("lets typed text win, as typed (a leading space is part of a token)", () => {
    expect(branchRequest(0, 1, " cat", "42"))
      .toEqual({ kind: "branch", step: 0, position: 1, text: " cat" });
  });

  it("sends nothing without a choice", () => {
    expect(branchRequest(0, 1, "", "")).toBeNull();
    expect(branchRequest(0, 1, "", "x")).toBeNull();
    expect(branchRequest(0, 1, "", "-3")).toBeNull();
  });
});
