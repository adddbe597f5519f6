// Unit tests of the step list's rows (lib/rows.js): what a run's events make of them.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatUnverified } from '../../lib/format.js';
import { EDITED_NOTE, hasCell, REMOVED_DETAIL, STATUS_TEXT, StepRows } from '../../lib/rows.js';

const added = (id, source, extra = {}) => ({
  type: 'cell_added',
  step: 1,
  cell_id: id,
  cell_type: 'code',
  source,
  role: 'code',
  unverified: [],
  ...extra
});
const executed = (id, status, extra = {}) => ({
  type: 'cell_executed',
  step: 1,
  cell_id: id,
  status,
  execution_count: 1,
  duration: 0.5,
  error_name: status === 'ok' ? '' : 'KeyError',
  error_value: status === 'ok' ? '' : "'bill'",
  figures: 0,
  observation: '',
  fixed_error: false,
  ...extra
});

test('a failed cell a later fix superseded is marked removed, with no cell to jump to', () => {
  const rows = new StepRows();
  rows.apply(added('a1', "df['bill'].mean()"));
  rows.apply(executed('a1', 'error'));
  rows.apply(added('b2', "df['bill_length_mm'].mean()"));
  rows.apply(executed('b2', 'ok', { fixed_error: true }));
  const changes = rows.apply({ type: 'cells_removed', cell_ids: ['a1'], reason: 'superseded' });

  const removed = rows.get('cell-a1');
  assert.equal(removed.status, 'removed');
  assert.equal(STATUS_TEXT.removed, 'removed');
  assert.ok(removed.detail.startsWith(REMOVED_DETAIL));
  assert.ok(removed.detail.includes("KeyError: 'bill'"), 'the error stays readable');
  assert.equal(hasCell(removed), false);
  assert.deepEqual(changes.changed, [removed]);
  assert.equal(rows.get('cell-b2').status, 'fixed');
  assert.equal(hasCell(rows.get('cell-b2')), true);
  assert.equal(rows.rows.filter(hasCell).length, 1);
});

test('an id the list never showed (a user-edited cell stays) changes nothing', () => {
  const rows = new StepRows();
  rows.apply(added('a1', 'x = 1'));
  const changes = rows.apply({ type: 'cells_removed', cell_ids: ['zz'], reason: 'superseded' });
  assert.deepEqual(changes.changed, []);
  assert.equal(rows.get('cell-a1').status, 'running');
});

test('a conclusions row shows the numbers no output supports', () => {
  const rows = new StepRows();
  rows.apply(
    added('c1', '## Conclusions\n\nMean is 3.5, max 12.', {
      cell_type: 'markdown',
      role: 'conclusions',
      unverified: ['3.5', '12']
    })
  );
  const row = rows.get('cell-c1');
  assert.equal(row.note, '2 unverified numbers: 3.5, 12');
  assert.ok(row.detail.endsWith('2 unverified numbers: 3.5, 12'));
  rows.apply(added('m1', '## Notes', { cell_type: 'markdown', role: 'markdown', unverified: ['9'] }));
  assert.equal(rows.get('cell-m1').note, '', 'only conclusions carry them');
});

test('unverified numbers read well', () => {
  assert.equal(formatUnverified([]), '');
  assert.equal(formatUnverified(undefined), '');
  assert.equal(formatUnverified(['0.87']), '1 unverified number: 0.87');
  assert.equal(formatUnverified(['1', '2', '3', '4', '5', '6', '7']), '7 unverified numbers: 1, 2, 3, 4, 5, 6, …');
});

test('thinking rows are dropped and running cells end as stopped', () => {
  const rows = new StepRows();
  assert.equal(rows.apply({ type: 'step_started', step: 1 }).added.length, 1);
  const changes = rows.apply(added('a1', 'x = 1'));
  assert.equal(changes.dropped.length, 1);
  rows.apply({ type: 'run_finished', reason: 'stopped' });
  assert.equal(rows.get('cell-a1').status, 'interrupted');
  assert.equal(rows.rows.length, 1);
});

test('a cell the stop interrupted is shown as stopped, not as an error', () => {
  const rows = new StepRows();
  rows.apply(added('s1', 'import time; time.sleep(60)'));
  rows.apply(executed('s1', 'stopped', { error_name: '', error_value: '' }));
  assert.equal(rows.get('cell-s1').status, 'interrupted');
  assert.equal(STATUS_TEXT[rows.get('cell-s1').status], 'stopped');
  assert.equal(rows.get('cell-s1').detail.includes('Error'), false);
});

test('a cell the user edited while it ran: its step follows the copy that ran', () => {
  const rows = new StepRows();
  rows.apply(added('a1', "df['x'].mean()"));
  const changes = rows.apply(executed('copy1', 'ok', { copy_of: 'a1' }));
  assert.equal(changes.changed.length, 1);
  const [row] = changes.changed;
  assert.equal(row.cellId, 'copy1');
  assert.equal(row.status, 'ok');
  assert.equal(row.note, EDITED_NOTE);
  assert.equal(hasCell(row), true);
  // a tidy later names the copy: the same row
  const removed = rows.apply({ type: 'cells_removed', cell_ids: ['copy1'], reason: 'superseded' });
  assert.equal(removed.changed[0], row);
});
