'use strict';

/**
 * Return a debounced version of `fn` that only runs after `waitMs`
 * milliseconds have passed without another call.
 *
 * @param {Function} fn - function to wrap
 * @param {number} waitMs - quiet period in milliseconds
 * @param {{leading?: boolean}} [options]
 * @returns {Function & {cancel: Function, flush: Function}}
 */
function debounce(fn, waitMs, options = {}) {
  const leading = Boolean(options.leading);
  let timer = null;
  let lastArgs = null;
  let lastThis = null;

  function invoke() {
    const args = lastArgs;
    const ctx = lastThis;
    lastArgs = lastThis = null;
    return fn.apply(ctx, args);
  }

  function debounced(...args) {
    lastArgs = args;
    lastThis = this;
    const callNow = leading && timer === null;
    if (timer !== null) {
      clearTimeout(timer);
    }
    timer = setTimeout(() => {
      timer = null;
      if (!leading && lastArgs !== null) {
        invoke();
      }
    }, waitMs);
    if (callNow) {
      return invoke();
    }
    return undefined;
  }

  debounced.cancel = function cancel() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    lastArgs = lastThis = null;
  };

  debounced.flush = function flush() {
    if (timer === null || lastArgs === null) return undefined;
    clearTimeout(timer);
    timer = null;
    return invoke();
  };

  return debounced;
}

module.exports = { debounce };

if (require.main === module) {
  const log = debounce((msg) => console.log('saved:', msg), 100);
  log('draft 1');
  log('draft 2');
  log('draft 3'); // only this one is printed, 100 ms later
}
