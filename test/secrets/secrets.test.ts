import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadSecretsFile, redact, redactDeep, resolveSecret, secret } from "../../src/secrets.js";

const dir = mkdtempSync(join(tmpdir(), "floe-secrets-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("secrets file", () => {
  it("reads NAME=value lines: comments, export, quotes, escapes; the environment wins", () => {
    const file = join(dir, "a.env");
    writeFileSync(file, [
      "# comment", "", "export PLAIN=plain-value-1", "SPACED = spaced value  ", `DOUBLE="two\\nlines \\"q\\""`, "SINGLE='p@ss#word=x'", "EMPTY=", "WIN=from-file-1",
    ].join("\n"));
    loadSecretsFile(file);
    const env = { WIN: "from-env-1" };
    expect(resolveSecret(secret("PLAIN"), env)).toBe("plain-value-1");
    expect(resolveSecret(secret("SPACED"), env)).toBe("spaced value");
    expect(resolveSecret(secret("DOUBLE"), env)).toBe('two\nlines "q"');
    expect(resolveSecret(secret("SINGLE"), env)).toBe("p@ss#word=x");
    expect(resolveSecret(secret("WIN"), env)).toBe("from-env-1");
    expect(resolveSecret(secret("WIN"), {})).toBe("from-file-1");
    expect(() => resolveSecret(secret("EMPTY"), {})).toThrow(`secret \`EMPTY\` is not set: not in the environment, nor in the secrets file ${file}`);
    expect(redact("x p@ss#word=x y")).toBe("x *** y");
  });

  it("a malformed line names the file and line, not its text", () => {
    const file = join(dir, "b.env");
    writeFileSync(file, "OK=1\nthis-is-a-secret-not-a-line\n");
    expect(() => loadSecretsFile(file)).toThrow(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:2: expected NAME=value`));
    try {
      loadSecretsFile(file);
    } catch (e) {
      expect(String(e)).not.toContain("this-is-a-secret");
    }
  });
});

describe("redactDeep", () => {
  it("redacts strings and keys, keeps numbers, booleans and dates intact", () => {
    resolveSecret(secret("DIGITS"), { DIGITS: "4242" });
    const at = new Date();
    const out = redactDeep({ n: 142429, ok: true, at, text: "pin 4242", list: ["4242", 4242], nested: { "k4242": "v" } });
    expect(out).toEqual({ n: 142429, ok: true, at, text: "pin ***", list: ["***", 4242], nested: { "k***": "v" } });
    expect(out.at).toBeInstanceOf(Date);
  });
});
