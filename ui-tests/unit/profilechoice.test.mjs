// Unit tests of the profile setting's choice (lib/profilechoice.js), run with `jlpm test`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  memoryNote,
  profileSchema,
  savedProfile,
  withProfileChoice
} from '../../lib/profilechoice.js';

const SCHEMA = JSON.parse(readFileSync(new URL('../../schema/plugin.json', import.meta.url)));
const BASE = SCHEMA.properties.profile;

// the shape of the server's GET profiles reply (ProfilesReply)
const REPLY = {
  default: 'baseline',
  reason: 'no GPU with room for a 9B model',
  profiles: [
    { name: 'qwen3.5-9b-4bit', description: 'Qwen3.5-9B in 4-bit', kind: 'embedded', memory_gb: 9.5 },
    { name: 'remote', description: '', kind: 'openai', memory_gb: 0 },
    { name: 'baseline', description: 'Rule-based baseline analyst', kind: 'baseline', memory_gb: 0 }
  ]
};

const plugin = (settings, schema = SCHEMA) => ({
  id: 'jupyter-analyst:plugin',
  raw: JSON.stringify(settings),
  settings,
  schema,
  version: '0.1.0',
  data: { composite: {}, user: {} }
});

test('the server default comes first, then each profile with its memory estimate', () => {
  const property = profileSchema(BASE, REPLY, '');
  assert.equal(property.type, 'string');
  assert.equal(property.default, '');
  assert.equal(property.title, 'Model profile');
  assert.deepEqual(
    property.oneOf.map(o => [o.const, o.title]),
    [
      ['', 'Server default (baseline)'],
      ['qwen3.5-9b-4bit', 'qwen3.5-9b-4bit (≈ 9.5 GB)'],
      ['remote', 'remote (served elsewhere)'],
      ['baseline', 'baseline (no model to load)']
    ]
  );
  assert.ok(property.oneOf.every(o => o.type === 'string'));
});

test('a saved profile the server does not know stays a valid choice', () => {
  const property = profileSchema(BASE, REPLY, 'gone-9b');
  assert.deepEqual(property.oneOf.at(-1), {
    type: 'string',
    const: 'gone-9b',
    title: 'gone-9b (not a profile this server knows)'
  });
  // a known one is not listed twice (oneOf needs exactly one match)
  const known = profileSchema(BASE, REPLY, 'baseline');
  assert.equal(known.oneOf.filter(o => o.const === 'baseline').length, 1);
  assert.equal(known.oneOf.length, 4);
});

test('without a reply the profile stays free text', () => {
  assert.deepEqual(profileSchema(BASE, null, 'anything'), BASE);
  assert.deepEqual(profileSchema(BASE, { default: 'x' }, ''), BASE);
  // a schema transformed before (a replayed load) drops its old choice
  assert.deepEqual(profileSchema(profileSchema(BASE, REPLY, ''), null, ''), BASE);
});

test('memory notes', () => {
  assert.equal(memoryNote({ name: 'a', description: '', kind: 'embedded', memory_gb: 6.125 }), '≈ 6.1 GB');
  assert.equal(memoryNote({ name: 'a', description: '', kind: 'openai', memory_gb: 0 }), 'served elsewhere');
});

test('the transform reads the saved profile and leaves the plugin and the other settings alone', () => {
  assert.equal(savedProfile(plugin({ profile: 'gone-9b', maxSteps: 3 })), 'gone-9b');
  assert.equal(savedProfile(plugin({})), '');
  assert.equal(savedProfile({ ...plugin({}), settings: undefined }), '');

  const before = JSON.stringify(SCHEMA);
  const input = plugin({ profile: 'gone-9b' });
  const out = withProfileChoice(input, REPLY);
  assert.equal(JSON.stringify(SCHEMA), before, 'the fetched schema is copied, not changed');
  assert.equal(out.id, input.id);
  assert.equal(out.raw, input.raw);
  assert.deepEqual(out.schema.properties.maxSteps, SCHEMA.properties.maxSteps);
  assert.deepEqual(
    out.schema.properties.profile.oneOf.map(o => o.const),
    ['', 'qwen3.5-9b-4bit', 'remote', 'baseline', 'gone-9b']
  );
  assert.deepEqual(withProfileChoice(input, null).schema, SCHEMA);
});

test('a malformed reply never fails the settings load', t => {
  const warn = t.mock.method(console, 'warn', () => {});
  const input = plugin({});
  const out = withProfileChoice(input, { default: 'b', reason: '', profiles: [null] });
  assert.equal(out, input);
  assert.equal(warn.mock.callCount(), 1);
});
