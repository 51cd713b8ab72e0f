'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');

/** In-memory todo list used by the tests below. */
class TodoStore {
  constructor() {
    this.items = new Map();
    this.nextId = 1;
  }

  add(title) {
    const text = String(title).trim();
    if (!text) throw new Error('title must not be empty');
    const item = { id: this.nextId++, title: text, done: false };
    this.items.set(item.id, item);
    return item;
  }

  toggle(id) {
    const item = this.items.get(id);
    if (!item) throw new Error(`no todo with id ${id}`);
    item.done = !item.done;
    return item;
  }

  remove(id) {
    return this.items.delete(id);
  }

  list({ done } = {}) {
    const all = [...this.items.values()];
    return done === undefined ? all : all.filter((t) => t.done === done);
  }
}

test('adds items with increasing ids', () => {
  const store = new TodoStore();
  const a = store.add('buy milk');
  const b = store.add('  call the plumber  ');
  assert.equal(a.id, 1);
  assert.equal(b.id, 2);
  assert.equal(b.title, 'call the plumber');
});

test('rejects empty titles', () => {
  const store = new TodoStore();
  assert.throws(() => store.add('   '), /must not be empty/);
});

test('toggle and filter by completion', () => {
  const store = new TodoStore();
  store.add('one');
  const two = store.add('two');
  store.toggle(two.id);
  assert.deepEqual(store.list({ done: true }).map((t) => t.title), ['two']);
  assert.deepEqual(store.list({ done: false }).map((t) => t.title), ['one']);
  assert.equal(store.list().length, 2);
});

test('remove returns whether an item existed', () => {
  const store = new TodoStore();
  const item = store.add('temporary');
  assert.equal(store.remove(item.id), true);
  assert.equal(store.remove(item.id), false);
});

module.exports = { TodoStore };
