// JSON as Python's json module reads and writes it, for files lockbox
// shares with Python programs: what `json.dump(value, f, indent=N,
// ensure_ascii=...)` would write, byte for byte, and values read from such
// a file written back unchanged — the same number text (big integers,
// `1.0`, `1e-07`, `-0.0`), `NaN` and `Infinity`, and the file's key order
// (JavaScript moves integer-like keys first; Python keeps insertion order).
//
// The parser remembers, per parsed object or array, what plain JavaScript
// would lose: number texts that a JavaScript number does not print back,
// and key orders that JavaScript would change. The writer uses them while
// the value is still what was read; anything changed is written as Python
// would write the new value.

/** Number texts by key (or index), and the key order, of one container. */
interface _Memory {
  numbers?: Map<string, string>;
  order?: string[];
}

const _memory = new WeakMap<object, _Memory>();

class _Parser {
  at = 0;
  constructor(readonly text: string) {}

  fail(what: string): never {
    throw new SyntaxError(`${what} at position ${this.at}`);
  }

  space(): void {
    const text = this.text;
    let at = this.at;
    while (at < text.length) {
      const c = text.charCodeAt(at);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      at++;
    }
    this.at = at;
  }

  value(holder: _Memory | null, key: string): unknown {
    this.space();
    const c = this.text[this.at];
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (c === '"') return this.string();
    if (c === "t" && this.text.startsWith("true", this.at)) {
      this.at += 4;
      return true;
    }
    if (c === "f" && this.text.startsWith("false", this.at)) {
      this.at += 5;
      return false;
    }
    if (c === "n" && this.text.startsWith("null", this.at)) {
      this.at += 4;
      return null;
    }
    return this.number(holder, key);
  }

  number(holder: _Memory | null, key: string): number {
    const rest = this.text.slice(this.at, this.at + 400);
    const match =
      /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|NaN|-?Infinity)/.exec(
        rest,
      );
    if (!match) this.fail("Unexpected token");
    const text = match[0];
    this.at += text.length;
    const value = Number(text);
    if (holder !== null && _pythonNumber(value) !== text) {
      (holder.numbers ??= new Map()).set(key, text);
    }
    return value;
  }

  string(): string {
    const text = this.text;
    let at = this.at + 1;
    let out = "";
    let from = at;
    while (true) {
      if (at >= text.length) this.fail("Unterminated string");
      const c = text.charCodeAt(at);
      if (c === 0x22) break;
      if (c < 0x20) {
        this.at = at;
        this.fail("Bad control character in string");
      }
      if (c !== 0x5c) {
        at++;
        continue;
      }
      out += text.slice(from, at);
      const e = text[at + 1];
      const simple: Record<string, string> = {
        '"': '"',
        "\\": "\\",
        "/": "/",
        b: "\b",
        f: "\f",
        n: "\n",
        r: "\r",
        t: "\t",
      };
      if (e in simple) {
        out += simple[e];
        at += 2;
      } else if (
        e === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(at + 2, at + 6))
      ) {
        out += String.fromCharCode(parseInt(text.slice(at + 2, at + 6), 16));
        at += 6;
      } else {
        this.at = at;
        this.fail("Bad escape in string");
      }
      from = at;
    }
    out += text.slice(from, at);
    this.at = at + 1;
    return out;
  }

  object(): Record<string, unknown> {
    const object: Record<string, unknown> = {};
    const memory: _Memory = {};
    const order: string[] = [];
    this.at++;
    this.space();
    if (this.text[this.at] === "}") {
      this.at++;
      return object;
    }
    while (true) {
      this.space();
      if (this.text[this.at] !== '"') this.fail("Expected a key");
      const key = this.string();
      this.space();
      if (this.text[this.at] !== ":") this.fail("Expected ':'");
      this.at++;
      const value = this.value(memory, key);
      if (!Object.hasOwn(object, key)) order.push(key);
      // Python's dict: the last value, at the first key's place. A key such
      // as __proto__ stays an own property.
      Object.defineProperty(object, key, {
        value,
        writable: true,
        enumerable: true,
        configurable: true,
      });
      this.space();
      const c = this.text[this.at++];
      if (c === "}") break;
      if (c !== ",") {
        this.at--;
        this.fail("Expected ',' or '}'");
      }
    }
    const natural = Object.keys(object);
    if (natural.some((key, i) => key !== order[i])) memory.order = order;
    if (memory.numbers || memory.order) _memory.set(object, memory);
    return object;
  }

  array(): unknown[] {
    const array: unknown[] = [];
    const memory: _Memory = {};
    this.at++;
    this.space();
    if (this.text[this.at] === "]") {
      this.at++;
      return array;
    }
    while (true) {
      array.push(this.value(memory, String(array.length)));
      this.space();
      const c = this.text[this.at++];
      if (c === "]") break;
      if (c !== ",") {
        this.at--;
        this.fail("Expected ',' or ']'");
      }
    }
    if (memory.numbers) _memory.set(array, memory);
    return array;
  }
}

/**
 * Parses JSON as Python's `json.loads` does (`NaN`, `Infinity` and
 * `-Infinity` included; a repeated key keeps its first place and its last
 * value), remembering what writing it back needs.
 *
 * @throws {SyntaxError} If the text is not such JSON.
 */
export function _parsePython(text: string): unknown {
  const parser = new _Parser(text);
  const value = parser.value(null, "");
  parser.space();
  if (parser.at !== text.length) parser.fail("Unexpected data after JSON");
  return value;
}

/** A number as Python's `json.dumps` writes a float or an int of that value. */
export function _pythonNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "Infinity";
  if (value === -Infinity) return "-Infinity";
  if (Number.isSafeInteger(value)) return String(value);
  if (Object.is(value, -0)) return "-0.0";
  // Python's float repr: the shortest digits that read back the same,
  // fixed between 1e-4 and 1e16, else d.ddde+XX.
  const [mantissa, power] = value.toExponential().split("e");
  const negative = mantissa.startsWith("-");
  const digits = mantissa.replace("-", "").replace(".", "");
  const exponent = Number(power);
  let text: string;
  if (exponent >= -4 && exponent < 16) {
    if (exponent >= 0) {
      const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
      text = `${whole}.${digits.slice(exponent + 1) || "0"}`;
    } else {
      text = `0.${"0".repeat(-exponent - 1)}${digits}`;
    }
  } else {
    const head = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const sign = exponent < 0 ? "-" : "+";
    text = `${head}e${sign}${String(Math.abs(exponent)).padStart(2, "0")}`;
  }
  return negative ? `-${text}` : text;
}

const _ESCAPES: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\b": "\\b",
  "\f": "\\f",
};

/** A string as Python's `json.dumps` writes it. */
function _pythonString(text: string, ensureAscii: boolean): string {
  // Control characters are what Python escapes, so they are meant here.
  const pattern = ensureAscii
    // deno-lint-ignore no-control-regex
    ? /["\\\x00-\x1f\x7f-\uffff]/g
    // deno-lint-ignore no-control-regex
    : /["\\\x00-\x1f]/g;
  return `"${
    text.replace(pattern, (c) =>
      _ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
  }"`;
}

/**
 * What Python's `json.dumps(value, indent=indent, ensure_ascii=ensureAscii)`
 * writes (`indent` `null`: one line, with `", "` and `": "` between items),
 * with the number text and key order of values read by `_parsePython` kept
 * while they are unchanged.
 *
 * @throws {TypeError} If the value holds something JSON cannot (a function,
 *   a BigInt, a cycle).
 */
export function _toPython(
  value: unknown,
  indent: number | null,
  ensureAscii: boolean,
): string {
  const seen = new Set<object>();
  const write = (
    item: unknown,
    depth: number,
    number: string | undefined,
  ): string => {
    if (item === null) return "null";
    if (item === true) return "true";
    if (item === false) return "false";
    if (typeof item === "number") {
      return number !== undefined && Object.is(Number(number), item)
        ? number
        : _pythonNumber(item);
    }
    if (typeof item === "string") return _pythonString(item, ensureAscii);
    if (typeof item !== "object") {
      throw new TypeError(`${typeof item} is not JSON`);
    }
    if (typeof (item as { toJSON?: unknown }).toJSON === "function") {
      return write((item as { toJSON(): unknown }).toJSON(), depth, undefined);
    }
    if (seen.has(item)) throw new TypeError("the value holds a cycle");
    seen.add(item);
    const memory = _memory.get(item);
    const inner = indent === null
      ? ""
      : "\n" + " ".repeat(indent * (depth + 1));
    const outer = indent === null ? "" : "\n" + " ".repeat(indent * depth);
    const comma = indent === null ? ", " : ",";
    let text: string;
    if (Array.isArray(item)) {
      const parts = item.map((element, i) =>
        write(element, depth + 1, memory?.numbers?.get(String(i)))
      );
      text = parts.length === 0
        ? "[]"
        : `[${inner}${parts.join(comma + inner)}${outer}]`;
    } else {
      const record = item as Record<string, unknown>;
      const keys = Object.keys(record).filter((key) =>
        record[key] !== undefined && typeof record[key] !== "function"
      );
      if (memory?.order) {
        // The file's order for the keys it had, then any new ones.
        const present = new Set(keys);
        const kept = memory.order.filter((key) => present.has(key));
        const old = new Set(kept);
        keys.splice(
          0,
          keys.length,
          ...kept,
          ...keys.filter((k) => !old.has(k)),
        );
      }
      const parts = keys.map((key) =>
        `${_pythonString(key, ensureAscii)}: ${
          write(record[key], depth + 1, memory?.numbers?.get(key))
        }`
      );
      text = parts.length === 0
        ? "{}"
        : `{${inner}${parts.join(comma + inner)}${outer}}`;
    }
    seen.delete(item);
    return text;
  };
  return write(value, 0, undefined);
}
