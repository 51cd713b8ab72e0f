'use strict';

/**
 * Parse a URL query string into an object. Repeated keys become arrays.
 *
 *   parseQuery('?a=1&b=two&a=3')  // { a: ['1', '3'], b: 'two' }
 */
function parseQuery(query) {
  const result = {};
  const trimmed = query.startsWith('?') ? query.slice(1) : query;
  if (trimmed === '') return result;

  for (const pair of trimmed.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const rawKey = eq === -1 ? pair : pair.slice(0, eq);
    const rawValue = eq === -1 ? '' : pair.slice(eq + 1);
    const key = decodeURIComponent(rawKey.replace(/\+/g, ' '));
    const value = decodeURIComponent(rawValue.replace(/\+/g, ' '));

    if (Object.prototype.hasOwnProperty.call(result, key)) {
      const existing = result[key];
      result[key] = Array.isArray(existing) ? [...existing, value] : [existing, value];
    } else {
      result[key] = value;
    }
  }
  return result;
}

/**
 * Build a query string from an object. Arrays produce repeated keys,
 * and null or undefined values are skipped.
 */
function buildQuery(params) {
  const parts = [];
  for (const [key, value] of Object.entries(params)) {
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (v === null || v === undefined) continue;
      parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(v))}`);
    }
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

module.exports = { parseQuery, buildQuery };

if (require.main === module) {
  const assert = require('node:assert/strict');
  assert.deepEqual(parseQuery('?a=1&b=two&a=3'), { a: ['1', '3'], b: 'two' });
  assert.deepEqual(parseQuery('q=hello+world&empty'), { q: 'hello world', empty: '' });
  assert.equal(buildQuery({ q: 'café', page: 2, skip: null }), '?q=caf%C3%A9&page=2');
  assert.deepEqual(parseQuery(buildQuery({ tag: ['x', 'y'] })), { tag: ['x', 'y'] });
  console.log('query_string: all checks passed');
}
