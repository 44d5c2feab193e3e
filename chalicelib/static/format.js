// How a field-level change reads (docs/reference.md §10.5): the CLI's phrases (catalog_cli/format.py:
// describe_change, tokens, dollars), ported rule for rule. Python's number formatting is reproduced too
// (round half to even on the exact binary value, repr and "g" formats), so the page and the CLI never word one
// change differently. Pure functions only; the page script reads them from window.CatalogFormat.
(() => {
  "use strict";

  const NONE = "—";
  const ARROW = "→";
  const PRICES = [
    ["input_per_mtok", "input"],
    ["output_per_mtok", "output"],
    ["cache_read_per_mtok", "cache read"],
    ["cache_write_per_mtok", "cache write"],
  ];

  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
  const isWhole = (value) => isNumber(value) && Number.isInteger(value);

  // Python orders strings by code point; JavaScript's < compares UTF-16 units, which differs past U+FFFF.
  function compareText(a, b) {
    if (a === b) return 0;
    const length = Math.min(a.length, b.length);
    for (let i = 0; i < length; i++) {
      if (a.charCodeAt(i) !== b.charCodeAt(i)) return a.codePointAt(i) - b.codePointAt(i);
    }
    return a.length - b.length;
  }

  // The exact decimal expansion of a finite double, as [integer digits, fraction digits]. toFixed(100) is exact
  // for every value below 1e21 with at most 100 fraction digits, which covers token counts and prices.
  function expansion(x) {
    const [whole, fraction] = Math.abs(x).toFixed(100).split(".");
    return [whole, fraction];
  }

  // Adds one to a string of digits when `rest` (the digits after them) rounds up, half to even.
  function roundDigits(kept, rest) {
    let up;
    if (rest[0] > "5") up = true;
    else if (rest[0] < "5" || rest[0] === undefined) up = false;
    else up = /[1-9]/.test(rest.slice(1)) || Number(kept[kept.length - 1] || "0") % 2 === 1;
    return (BigInt(kept || "0") + (up ? 1n : 0n)).toString();
  }

  // Python's format(x, ".{digits}f").
  function fixed(x, digits) {
    if (!(Math.abs(x) < 1e21)) return x.toFixed(digits);
    const sign = x < 0 || Object.is(x, -0) ? "-" : "";
    const [whole, fraction] = expansion(x);
    const rounded = roundDigits(whole + fraction.slice(0, digits), fraction.slice(digits)).padStart(digits + 1, "0");
    return sign + (digits ? rounded.slice(0, -digits) + "." + rounded.slice(-digits) : rounded);
  }

  // Python's format(x, ".{precision}g") for a finite x.
  function general(x, precision) {
    if (x === 0) return Object.is(x, -0) ? "-0" : "0";
    if (!(Math.abs(x) < 1e21)) return String(x);
    const sign = x < 0 ? "-" : "";
    const [whole, fraction] = expansion(x);
    const all = whole + fraction;
    const lead = all.search(/[1-9]/);
    let exponent = whole.length - lead - 1;
    let digits = roundDigits(all.slice(lead, lead + precision).padEnd(precision, "0"), all.slice(lead + precision));
    if (digits.length > precision) {
      digits = digits.slice(0, precision);
      exponent += 1;
    }
    const trim = (text) => (text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text);
    if (exponent >= -4 && exponent < precision) {
      const text = exponent >= 0
        ? digits.slice(0, exponent + 1) + "." + digits.slice(exponent + 1)
        : "0." + "0".repeat(-exponent - 1) + digits;
      return sign + trim(text);
    }
    const mantissa = trim(digits[0] + "." + digits.slice(1));
    return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + String(Math.abs(exponent)).padStart(2, "0");
  }

  // Python's repr() of a float: the shortest digits that read back as the same double.
  function floatRepr(x) {
    if (!isNumber(x)) return String(x);
    if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
    const [mantissa, exponentText] = x.toExponential().split("e");
    const exponent = Number(exponentText);
    const sign = mantissa.startsWith("-") ? "-" : "";
    const digits = mantissa.replace("-", "").replace(".", "");
    if (exponent < -4 || exponent >= 16) {
      const head = digits[0] + (digits.length > 1 ? "." + digits.slice(1) : "");
      return sign + head + "e" + (exponent < 0 ? "-" : "+") + String(Math.abs(exponent)).padStart(2, "0");
    }
    if (exponent < 0) return sign + "0." + "0".repeat(-exponent - 1) + digits;
    const integer = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
    return sign + integer + "." + (digits.slice(exponent + 1) || "0");
  }

  // Python's str() of a JSON value, for the few phrases that print one as it is.
  function pyStr(value) {
    if (value === null || value === undefined) return "None";
    if (value === true) return "True";
    if (value === false) return "False";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : floatRepr(value);
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  const grouped = (value) => String(value).replace(/\B(?=(\d{3})+(?!\d))/g, ",");

  /** A token count in short form: 950, 8.2K, 128K, 131.1K, 1M, 1.05M. */
  function tokens(value) {
    if (!isWhole(value)) return NONE;
    if (value < 1000) return String(value);
    if (value < 1000000) return fixed(value / 1000, 1).replace(/\.0$/, "") + "K";
    return fixed(value / 1000000, 2).replace(/0+$/, "").replace(/\.$/, "") + "M";
  }

  /** A price in USD per million tokens: cents as cents ($3.00, $0.15, $0), finer prices as they are ($0.075). */
  function dollars(value) {
    if (!isNumber(value)) return NONE;
    if (value === 0) return "$0";
    return Number(fixed(value, 2)) === value ? "$" + fixed(value, 2) : "$" + general(value, 6);
  }

  const exactTokens = (value) => (isWhole(value) ? grouped(value) : NONE);
  const exactDollars = (value) => (isNumber(value) ? "$" + floatRepr(value) : NONE);
  const orNull = (value) => (value === undefined ? null : value);

  // "before → after" in the short form, or exactly when the short form would show the same text twice.
  function pair(before, after, short, exact) {
    let left = short(before);
    let right = short(after);
    if (left === right) {
      left = exact(before);
      right = exact(after);
    }
    return left + " " + ARROW + " " + right;
  }

  function setChange(label, before, after) {
    const old = new Set(Array.isArray(before) ? before.map(pyStr) : []);
    const now = new Set(Array.isArray(after) ? after.map(pyStr) : []);
    const added = [...now].filter((v) => !old.has(v)).sort(compareText);
    const removed = [...old].filter((v) => !now.has(v)).sort(compareText);
    if (!added.length && !removed.length) return null;
    return [label, ...added.map((v) => "+" + v), ...removed.map((v) => "-" + v)].join(" ");
  }

  const quoted = (value) => (value === null || value === undefined ? NONE : '"' + pyStr(value) + '"');
  const table = (value) => (value && typeof value === "object" && !Array.isArray(value) ? value : {});

  /** One field change ({model_id, field, before, after}) as the phrases a person reads. */
  function describeChange(change) {
    const field = change.field;
    const before = orNull(change.before);
    const after = orNull(change.after);
    const phrases = [];
    if (field === "context_length") {
      phrases.push("context " + pair(before, after, tokens, exactTokens));
    } else if (field === "max_output_tokens") {
      phrases.push("max output " + pair(before, after, tokens, exactTokens));
    } else if (field === "display_name") {
      phrases.push("name " + quoted(before) + " " + ARROW + " " + quoted(after));
    } else if (field === "status") {
      phrases.push(after === "deprecated" ? "deprecated" : "no longer deprecated");
    } else if (field === "retires_at") {
      if (before === null) phrases.push("retires " + pyStr(after));
      else if (after === null) phrases.push("retirement date withdrawn (was " + pyStr(before) + ")");
      else phrases.push("retirement " + pyStr(before) + " " + ARROW + " " + pyStr(after));
    } else if (field === "pricing") {
      const old = table(before);
      const now = table(after);
      for (const [key, label] of PRICES) {
        const a = orNull(old[key]);
        const b = orNull(now[key]);
        if (a !== b) phrases.push(label + " " + pair(a, b, dollars, exactDollars));
      }
    } else if (field === "capabilities") {
      phrases.push(setChange("capabilities", before, after));
    } else if (field === "modalities") {
      const old = table(before);
      const now = table(after);
      for (const side of ["input", "output"]) phrases.push(setChange(side + " modalities", old[side], now[side]));
    }
    const said = phrases.filter((phrase) => phrase);
    return said.length ? said : [pyStr(field) + " changed"];
  }

  /** One provider's updated models, each with its phrases ([] when the result carries no field changes). */
  function describeUpdates(entry) {
    const phrases = new Map();
    for (const change of entry.changes || []) {
      const id = pyStr(change.model_id);
      if (!phrases.has(id)) phrases.set(id, []);
      phrases.get(id).push(...describeChange(change));
    }
    return (entry.updated || []).map((id) => ({ id, phrases: phrases.get(id) || [] }));
  }

  /** The CLI's line for an updated model: "~ <id>: <phrase>; <phrase>", or "~ <id>" without field changes. */
  function updateLine(update) {
    return "~ " + update.id + (update.phrases.length ? ": " + update.phrases.join("; ") : "");
  }

  window.CatalogFormat = Object.freeze({
    NONE, compareText, tokens, dollars, describeChange, describeUpdates, updateLine, grouped,
  });
})();
