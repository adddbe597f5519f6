// Unit tests of the sidebar's pure helpers (lib/format.js), run with `jlpm test` (node --test).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  emptyText,
  formatBytes,
  formatSeconds,
  formatShape,
  messageFromBody,
  outcomeSummary,
  reasonLabel,
  runSummary,
  runTitle,
  summarizeCell
} from '../../lib/format.js';

test('a markdown cell is summarised by its first heading', () => {
  assert.equal(summarizeCell('Intro text\n\n## Missing values\nmore', 'markdown'), 'Missing values');
  assert.equal(summarizeCell('Just a **note**', 'markdown'), 'Just a note');
  assert.equal(summarizeCell('*Run ended without conclusions: stopped.*', 'markdown', 'note'), 'Run ended without conclusions: stopped.');
  assert.equal(summarizeCell('', 'markdown'), '(empty markdown cell)');
  assert.equal(summarizeCell('## `body_mass_g` by `species`', 'markdown'), 'body_mass_g by species');
});

test('a code cell is summarised by what it does, else its first line, clipped', () => {
  assert.equal(summarizeCell('\n  df.describe()\nprint(1)', 'code'), 'Summary statistics');
  assert.equal(summarizeCell("# Missing values per column\ndf.isna().sum()", 'code'), 'Missing values per column');
  const chart = "target = 'unit_price'\nfig, ax = plt.subplots(figsize=(8, 5))\nsns.histplot(df[target], ax=ax)";
  assert.equal(summarizeCell(chart, 'code'), 'Chart: histplot');
  assert.equal(summarizeCell("target = 'unit_price'\ndf.groupby('region')[target].mean()", 'code'), 'Compare groups');
  assert.equal(summarizeCell('import numpy as np\nimport seaborn as sns', 'code'), 'Imports');
  assert.equal(summarizeCell('x = 1 + 2', 'code'), 'x = 1 + 2');
  const long = 'x = ' + 'a'.repeat(200);
  const summary = summarizeCell(long, 'code');
  assert.ok(summary.length <= 90 && summary.endsWith('…'));
});

test('conclusions cells are labelled as such', () => {
  assert.equal(summarizeCell('Body mass is driven by species.', 'markdown', 'conclusions'), 'Conclusions');
  assert.equal(summarizeCell('## Conclusions\n- a', 'markdown', 'conclusions'), 'Conclusions');
});

test('numbers read well', () => {
  assert.equal(formatSeconds(0.42), '0.4 s');
  assert.equal(formatSeconds(12.4), '12 s');
  assert.equal(formatSeconds(125), '2 min 5 s');
  assert.equal(formatSeconds(null), '');
  assert.equal(formatShape([344, 8]), '344 × 8');
  assert.equal(formatShape([1234567, 3]), '1,234,567 × 3');
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(43210), '43 kB');
  assert.equal(formatBytes(1_200_000), '1.2 MB');
});

test('stop reasons are words', () => {
  assert.equal(reasonLabel('final_answer'), 'conclusions written');
  assert.equal(reasonLabel('stopped'), 'stopped by you');
  assert.equal(reasonLabel('something_new'), 'something new');
  assert.equal(reasonLabel(null), '');
});

test('API errors show the message field, never a traceback', () => {
  const body = JSON.stringify({ message: 'no running kernel for notebook a.ipynb', reason: 'Not Found' });
  assert.equal(messageFromBody(body, 404), 'no running kernel for notebook a.ipynb');
  const tb = JSON.stringify({
    message: 'variable not found: dff\nTraceback (most recent call last):\n  File "x.py", line 1',
    reason: null
  });
  assert.equal(messageFromBody(tb, 404), 'variable not found: dff');
  assert.equal(messageFromBody(JSON.stringify({ reason: 'Conflict' }), 409), 'Conflict');
  assert.match(messageFromBody('<html>oops</html>', 500, 'Internal Server Error'), /500 Internal Server Error/);
  assert.match(messageFromBody('', 404), /server extension installed/);
});

test('a run in the run list: its question, or the frame it analysed; a follow-up says so', () => {
  assert.equal(runTitle({ question: 'Why  did\nchurn rise?', variable: 'df' }), '“Why did churn rise?”');
  assert.equal(runTitle({ question: null, variable: 'sales' }), 'General analysis of sales');
  assert.equal(runTitle({ question: 'now by month', variable: 'df', follows: 'abc' }), 'Follow-up: “now by month”');
  assert.equal(
    runSummary({ state: 'finished', step: 12, stop_reason: 'final_answer' }),
    'Finished · 12 steps · conclusions written'
  );
  assert.equal(runSummary({ state: 'stopped', step: 1, stop_reason: 'stopped', discarded: true }), 'Stopped · 1 step · discarded');
});

test('the outcome line says how a run ended, and a failed run why', () => {
  const finished = {
    type: 'run_finished', reason: 'final_answer', answer: 'x', steps: 9, tokens: 0, seconds: 75,
    errors: 2, errors_fixed: 2, detail: '', created: [], prechecks: 0, grounding_returns: 0,
    malformed_calls: 0, cells_removed: 1, unverified: ['3.5']
  };
  assert.equal(
    outcomeSummary({ state: 'finished', stop_reason: 'final_answer', error: null }, finished),
    'Finished · conclusions written · 9 steps · 1 min 15 s · 2 errors, 2 fixed · 1 failed cell removed · 1 unverified number: 3.5'
  );
  assert.equal(
    outcomeSummary({ state: 'failed', stop_reason: null, error: 'the kernel died' }, null),
    'Failed — the kernel died'
  );
});

test('the empty state names the next thing to do', () => {
  assert.match(emptyText({ notebook: false, kernel: 'none', noFrames: false }), /^Open a notebook/);
  assert.match(emptyText({ notebook: true, kernel: 'dead', noFrames: false }), /kernel of this notebook died/);
  assert.match(emptyText({ notebook: true, kernel: 'running', noFrames: true }), /No DataFrame/);
  assert.equal(emptyText({ notebook: true, kernel: 'running', noFrames: false }), '');
});
