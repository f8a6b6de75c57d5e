// A small, strict parser for the Prometheus text exposition format (version 0.0.4), and promtool.
//
// No npm parser is used: the one well-known package (parse-prometheus-text-format) is a one-author,
// lenient parser with no release in years. This one throws on anything the format does not allow:
//   - `# HELP name text` (escapes \\ and \n) and `# TYPE name counter|gauge|histogram|summary|untyped`,
//     at most one of each per family, before the family's first sample; other `#` lines are comments;
//   - samples `name{label="value",...} value [timestamp]`, label values with the escapes \\ \" \n only,
//     trailing comma allowed, no duplicate label names, values as Go's ParseFloat reads them (NaN, +Inf, -Inf);
//   - blank lines ignored; a family's lines form one group; no series appears twice;
//   - histograms: only name_bucket (with `le`), name_sum, name_count; per label set the buckets are
//     cumulative, end in le="+Inf", and that bucket equals name_count; summaries: name{quantile}, _sum, _count;
//   - counters are never negative.
import { spawnSync } from "node:child_process";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
const FLOAT = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[Ii]nf(?:inity)?|NaN)$/;

class ParseError extends Error {
  constructor(lineNo, line, msg) {
    super(`line ${lineNo}: ${msg}: ${JSON.stringify(line.slice(0, 200))}`);
  }
}

function parseFloatStrict(s) {
  if (!FLOAT.test(s)) return undefined;
  if (/nan/i.test(s)) return NaN;
  if (/inf/i.test(s)) return s.startsWith("-") ? -Infinity : Infinity;
  return Number(s);
}

function unescapeHelp(s) {
  return s.replace(/\\(.)/g, (m, c) => (c === "n" ? "\n" : c === "\\" ? "\\" : m));
}

/** Parses `{a="x",b="y"}` starting at line[i] === "{"; returns [labels, index after "}"]. */
function parseLabels(line, i, fail) {
  const labels = {};
  i++; // {
  for (;;) {
    while (line[i] === " " || line[i] === "\t") i++;
    if (line[i] === "}") return [labels, i + 1];
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
    if (!m) fail("bad label name");
    const name = m[0];
    i += name.length;
    while (line[i] === " " || line[i] === "\t") i++;
    if (line[i] !== "=") fail(`expected = after label ${name}`);
    i++;
    while (line[i] === " " || line[i] === "\t") i++;
    if (line[i] !== '"') fail(`expected " to open the value of label ${name}`);
    i++;
    let value = "";
    for (;;) {
      if (i >= line.length) fail(`unterminated value of label ${name}`);
      const c = line[i];
      if (c === '"') {
        i++;
        break;
      }
      if (c === "\\") {
        const e = line[i + 1];
        if (e === "\\") value += "\\";
        else if (e === '"') value += '"';
        else if (e === "n") value += "\n";
        else fail(`invalid escape \\${e ?? ""} in label ${name}`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    if (Object.hasOwn(labels, name)) fail(`duplicate label ${name}`);
    if (name === "__name__") fail("label __name__ is reserved");
    labels[name] = value;
    while (line[i] === " " || line[i] === "\t") i++;
    if (line[i] === ",") {
      i++;
      continue;
    }
    if (line[i] === "}") return [labels, i + 1];
    fail(`expected , or } after label ${name}`);
  }
}

/** The series key: name plus labels sorted by name. */
export const seriesKey = (name, labels) =>
  `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(",")}}`;

/** The family a sample name belongs to, given the TYPEs declared so far. */
function familyOf(name, families) {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const f = families.get(base);
      if (f && (f.type === "histogram" || (f.type === "summary" && suffix !== "_bucket"))) return base;
    }
  }
  return name;
}

/**
 * Parses an exposition. Returns {families: Map name -> {name, type, help, samples}, samples:
 * [{name, labels, value, timestamp, family}]}. Throws on any violation of the format.
 */
export function parsePrometheusText(text) {
  if (typeof text !== "string") throw new TypeError("exposition must be a string");
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("exposition does not end with a newline");
  const families = new Map();
  const samples = [];
  const seen = new Set();
  const closed = new Set(); // families whose group of lines has ended
  let current = null; // family of the previous line
  const family = (name) => {
    if (!families.has(name)) families.set(name, { name, type: "untyped", typed: false, help: undefined, samples: [] });
    return families.get(name);
  };
  const enter = (name, fail) => {
    if (current !== name) {
      if (closed.has(name)) fail(`lines of family ${name} are not one group`);
      if (current !== null) closed.add(current);
      current = name;
    }
  };
  const lines = text.split("\n");
  lines.pop(); // after the final newline
  lines.forEach((raw, idx) => {
    const lineNo = idx + 1;
    const fail = (msg) => {
      throw new ParseError(lineNo, raw, msg);
    };
    const line = raw.replace(/^[ \t]+/, "");
    if (line.length === 0) return;
    if (line.startsWith("#")) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+([^ \t]+)(?:[ \t]+(.*))?$/.exec(line);
      if (!m) return; // an ordinary comment
      const [, kind, name, rest = ""] = m;
      if (!METRIC_NAME.test(name)) fail(`bad metric name in ${kind}`);
      enter(name, fail);
      const f = family(name);
      if (kind === "HELP") {
        if (f.help !== undefined) fail(`second HELP for ${name}`);
        f.help = unescapeHelp(rest);
      } else {
        const type = rest.trim();
        if (!TYPES.has(type)) fail(`unknown TYPE ${JSON.stringify(type)}`);
        if (f.typed) fail(`second TYPE for ${name}`);
        if (f.samples.length) fail(`TYPE for ${name} after its samples`);
        f.type = type;
        f.typed = true;
      }
      return;
    }
    const nm = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nm) fail("bad metric name");
    const name = nm[0];
    let i = name.length;
    let labels = {};
    let j = i;
    while (line[j] === " " || line[j] === "\t") j++;
    if (line[j] === "{") [labels, i] = parseLabels(line, j, fail);
    else if (j === i) fail("expected whitespace before the value");
    const rest = line.slice(i);
    const parts = rest.trim().split(/[ \t]+/);
    if (parts.length < 1 || parts.length > 2 || parts[0] === "") fail("expected value [timestamp]");
    const value = parseFloatStrict(parts[0]);
    if (value === undefined) fail(`bad value ${JSON.stringify(parts[0])}`);
    let timestamp;
    if (parts.length === 2) {
      if (!/^-?\d+$/.test(parts[1])) fail(`bad timestamp ${JSON.stringify(parts[1])}`);
      timestamp = Number(parts[1]);
    }
    const fname = familyOf(name, families);
    const f = family(fname);
    enter(fname, fail);
    if (f.type === "histogram") {
      if (name === fname) fail(`histogram ${fname} has a bare sample`);
      if (name === `${fname}_bucket`) {
        if (!Object.hasOwn(labels, "le")) fail("histogram bucket without le");
        if (parseFloatStrict(labels.le) === undefined) fail(`bad le ${JSON.stringify(labels.le)}`);
      } else if (Object.hasOwn(labels, "le")) fail("le label outside a bucket");
    }
    if (f.type === "summary" && name === fname && parseFloatStrict(labels.quantile ?? "") === undefined)
      fail("summary sample without a valid quantile");
    if (f.type === "counter" && value < 0) fail("negative counter");
    const key = seriesKey(name, labels);
    if (seen.has(key)) fail(`duplicate series ${key}`);
    seen.add(key);
    const sample = { name, labels, value, timestamp, family: fname };
    f.samples.push(sample);
    samples.push(sample);
  });
  for (const f of families.values()) {
    if (f.type === "histogram") checkHistogram(f);
    if (f.type === "summary") checkSummary(f);
  }
  return { families, samples };
}

const withoutLabel = (labels, drop) => Object.fromEntries(Object.entries(labels).filter(([k]) => k !== drop));

function groupBy(samples, dropLabel) {
  const groups = new Map();
  for (const s of samples) {
    const key = seriesKey("", withoutLabel(s.labels, dropLabel));
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(s);
  }
  return groups;
}

function checkHistogram(f) {
  const n = f.name;
  const buckets = groupBy(f.samples.filter((s) => s.name === `${n}_bucket`), "le");
  const sums = groupBy(f.samples.filter((s) => s.name === `${n}_sum`));
  const counts = groupBy(f.samples.filter((s) => s.name === `${n}_count`));
  for (const [key, bs] of buckets) {
    const sorted = [...bs].sort((a, b) => parseFloatStrict(a.labels.le) - parseFloatStrict(b.labels.le));
    if (sorted.at(-1).labels.le !== "+Inf") throw new Error(`histogram ${n}${key}: no le="+Inf" bucket`);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].value < sorted[i - 1].value)
        throw new Error(`histogram ${n}${key}: buckets not cumulative at le=${sorted[i].labels.le}`);
    }
    const count = counts.get(key);
    if (!count) throw new Error(`histogram ${n}${key}: no _count`);
    if (!sums.get(key)) throw new Error(`histogram ${n}${key}: no _sum`);
    if (count[0].value !== sorted.at(-1).value)
      throw new Error(`histogram ${n}${key}: _count ${count[0].value} != +Inf bucket ${sorted.at(-1).value}`);
  }
  for (const key of [...sums.keys(), ...counts.keys()]) {
    if (!buckets.has(key)) throw new Error(`histogram ${n}${key}: _sum/_count without buckets`);
  }
}

function checkSummary(f) {
  const n = f.name;
  const counts = groupBy(f.samples.filter((s) => s.name === `${n}_count`));
  const sums = groupBy(f.samples.filter((s) => s.name === `${n}_sum`));
  for (const key of counts.keys()) if (!sums.has(key)) throw new Error(`summary ${n}${key}: _count without _sum`);
}

/** A server's `/metrics`, parsed; anything but a 200 fails. `url` is the server's base URL. */
export async function scrapeMetrics(url) {
  const r = await fetch(`${url}/metrics`);
  if (r.status !== 200) throw new Error(`GET ${url}/metrics answered ${r.status}`);
  return parsePrometheusText(await r.text());
}

/** The value of the series with exactly these labels, or undefined when absent. */
export function sampleValue(parsed, name, labels = {}) {
  const key = seriesKey(name, labels);
  return parsed.samples.find((s) => seriesKey(s.name, s.labels) === key)?.value;
}

/** Like sampleValue, but 0 for an absent series (a counter or gauge not yet touched). */
export const valueOr0 = (parsed, name, labels = {}) => sampleValue(parsed, name, labels) ?? 0;

/** The sum over every series of `name` whose labels include `labels` (0 when there is none). */
export const totalOf = (parsed, name, labels = {}) =>
  parsed.samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);

/** after - before for one series (absent counts as 0). */
export const delta = (before, after, name, labels = {}) => valueOr0(after, name, labels) - valueOr0(before, name, labels);

/** Every [labelName, labelValue] pair in the exposition. */
export const allLabels = (parsed) => parsed.samples.flatMap((s) => Object.entries(s.labels));

/** The promtool binary: $PROMTOOL, else `promtool` on the PATH. */
export const PROMTOOL = process.env.PROMTOOL || "promtool";

/**
 * Pipes `text` into `promtool check metrics`. Returns {status, stdout, stderr, available}.
 * promtool 2.x exits 0 when clean, 1 when the text does not parse, 3 when it parses but has lint
 * problems (printed one per line on stderr, e.g. "name no help text").
 */
export function promtoolCheck(text) {
  const r = spawnSync(PROMTOOL, ["check", "metrics"], { input: text, encoding: "utf8", timeout: 10_000 });
  if (r.error) return { available: false, status: null, stdout: "", stderr: String(r.error.message) };
  return { available: true, status: r.status, stdout: r.stdout, stderr: r.stderr };
}
