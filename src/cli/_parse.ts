// Parsers of command-line values: durations, seconds, whole numbers, run
// lists and JSON pointers, each a usage error when malformed.

import { InvalidArgumentError } from "commander";
import { _parsePointer } from "../store/json_pointer.ts";

/** `90s`, `5m`, `1h`, `2d` or plain seconds, in milliseconds. */
export function _duration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(s|m|h|d)?$/.exec(text.trim());
  if (!match) {
    throw new InvalidArgumentError(
      `expected a duration such as 90s, 5m, 1h, 2d or plain seconds`,
    );
  }
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[match[2] ?? "s"]!;
  return Number(match[1]) * unit * 1000;
}

/** Seconds (a decimal number of at least 0), in milliseconds. */
export function _seconds(text: string): number {
  if (!/^\d+(\.\d+)?$|^\.\d+$/.test(text.trim())) {
    throw new InvalidArgumentError(
      "expected a number of seconds, such as 0.5 or 10",
    );
  }
  return Number(text) * 1000;
}

export function _integer(min: number, max: number) {
  return (text: string): number => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < min || n > max) {
      throw new InvalidArgumentError(
        `expected a whole number from ${min} to ${max}`,
      );
    }
    return n;
  };
}

/** `101,102,105-110` as run numbers. */
export function _runs(text: string): number[] {
  const runs: number[] = [];
  for (const part of text.split(",")) {
    const range = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!range) {
      throw new InvalidArgumentError(
        `expected run numbers such as 101,102,105-110; '${part}' is not one`,
      );
    }
    const from = Number(range[1]);
    const to = Number(range[2] ?? range[1]);
    // Past 2^53 a number no longer grows by one: such a range never ends.
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to)) {
      throw new InvalidArgumentError(
        `'${part.trim()}' is past the largest run number, ${Number.MAX_SAFE_INTEGER}`,
      );
    }
    if (to < from) {
      throw new InvalidArgumentError(`the range ${part} runs backwards`);
    }
    if (to - from > 1_000_000) {
      throw new InvalidArgumentError(`the range ${part} is too long`);
    }
    for (let run = from; run <= to; run++) runs.push(run);
  }
  return runs;
}

export function _pointer(text: string): string {
  try {
    _parsePointer(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
  return text;
}
