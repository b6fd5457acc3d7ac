// A minimal reader of a service's mesg.yml: the keys of its `tasks:` and `events:`.
// Not a YAML parser: it reads block mappings and one-line flow mappings; what it cannot
// read gives null and the caller skips its checks. The node validates the file for real.
// @ts-check
import fs from 'node:fs';
import path from 'node:path';

const KEY = /^(?:"((?:[^"\\]|\\.)*)"|'((?:[^']|'')*)'|([^\s#'"{[][^:#]*?))\s*:(?:\s|$)/;

/** @param {string} line */
function stripComment(line) {
  let out = '';
  /** @type {string|null} */
  let quote = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) { if (c === quote) quote = null; }
    else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || line[i - 1] === ' ' || line[i - 1] === '\t')) break;
    out += c;
  }
  return out.trimEnd();
}

/** @param {string} text @returns {{key: string, end: number}|null} */
function keyOf(text) {
  const m = KEY.exec(text);
  if (!m) return null;
  let key;
  if (m[1] !== undefined) key = m[1].replace(/\\"/g, '"').replace(/\\\\/g, '\\');
  else if (m[2] !== undefined) key = m[2].replace(/''/g, "'");
  else key = m[3].trim();
  return { key, end: m[0].length };
}

/** @param {string} text @returns {string[]|null} */
function flowKeys(text) {
  text = text.trim();
  if (!text.startsWith('{') || !text.endsWith('}')) return null;
  /** @type {string[]} */
  const keys = [];
  let depth = 0, part = '';
  /** @type {string|null} */
  let quote = null;
  for (const c of text.slice(1, -1) + ',') {
    if (quote) { part += c; if (c === quote) quote = null; continue; }
    if (c === '"' || c === "'") quote = c;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 0) {
      if (part.trim()) {
        const k = keyOf(part.trim());
        if (!k) return null;
        keys.push(k.key);
      }
      part = '';
      continue;
    }
    part += c;
  }
  return keys;
}

/**
 * Keys of the top-level mapping `section`: [] when absent or empty, null when this
 * reader cannot tell.
 * @param {string} text @param {string} section @returns {string[]|null}
 */
export function sectionKeys(text, section) {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = stripComment(lines[i]);
    if (!line || line[0] === ' ' || line[0] === '\t') continue;
    const k = keyOf(line);
    if (!k || k.key !== section) continue;
    const rest = line.slice(k.end).trim();
    if (rest) return ['{}', '~', 'null'].includes(rest) ? [] : flowKeys(rest);
    /** @type {string[]} */
    const keys = [];
    /** @type {number|null} */
    let indent = null;
    for (const raw of lines.slice(i + 1)) {
      const l = stripComment(raw);
      if (!l.trim()) continue;
      const lead = l.length - l.trimStart().length;
      if (l.slice(0, lead).includes('\t')) return null;
      if (lead === 0) break;
      if (indent === null) indent = lead;
      if (lead < indent) return null;
      if (lead === indent) {
        const k2 = keyOf(l.trim());
        if (!k2) return null;
        keys.push(k2.key);
      }
    }
    return keys;
  }
  return [];
}

/**
 * @typedef {{path: string, tasks: string[]|null, events: string[]|null}} Definition
 */

/** @param {string} file @returns {Definition} */
export function readDefinition(file) {
  const text = fs.readFileSync(file, 'utf8');
  return { path: file, tasks: sectionKeys(text, 'tasks'), events: sectionKeys(text, 'events') };
}

/** @param {string[]} candidates @returns {string|null} */
export function findDefinition(candidates) {
  for (const c of candidates) {
    let p = c;
    try { if (fs.statSync(c).isDirectory()) p = path.join(c, 'mesg.yml'); } catch { continue; }
    try { if (fs.statSync(p).isFile()) return p; } catch { /* next */ }
  }
  return null;
}
