/**
 * The rows of the step list as plain data, folded from a run's events (no DOM, so node's
 * test runner checks them). `StepList` (steps.ts) renders them.
 */

// '.js': node's test runner loads lib/rows.js as an ES module, which needs the extension
import { formatUnverified, summarizeCell } from './format.js';
import { CellRole, RunEvent } from './schema';

/** Shown in the status badge of a row. */
export type RowStatus =
  | 'thinking'
  | 'running'
  | 'ok'
  | 'error'
  | 'fixed'
  | 'timeout'
  | 'dead'
  | 'problem'
  | 'interrupted'
  | 'removed'
  | 'written';

export const STATUS_TEXT: Record<RowStatus, string> = {
  thinking: 'thinking…',
  running: 'running',
  ok: 'ok',
  error: 'error',
  fixed: 'fixed',
  timeout: 'timeout',
  dead: 'kernel died',
  problem: 'no tool call',
  interrupted: 'stopped',
  removed: 'removed',
  written: ''
};

/** A step whose cell the user edited while it ran. */
export const EDITED_NOTE = 'you edited its cell, so it ran in a copy below it';

/** Why a removed row has no cell to show. */
export const REMOVED_DETAIL =
  'Fixed later, removed from the notebook (the run’s record keeps it).';

export interface IRowState {
  key: string;
  step: number;
  /** The notebook cell of the row; a removed row keeps the id but has no cell to show. */
  cellId: string | null;
  kind: 'markdown' | 'code' | 'thinking' | 'problem';
  role: CellRole | null;
  summary: string;
  status: RowStatus;
  seconds: number | null;
  detail: string;
  /** A short note shown after the summary (unverified numbers of the conclusions). */
  note: string;
}

/** Whether clicking the row can show a cell. */
export function hasCell(row: IRowState): boolean {
  return row.cellId !== null && row.status !== 'removed';
}

/** What one event did to the rows. */
export interface IRowChanges {
  /** New rows, in order (appended after the others). */
  added: IRowState[];
  /** Rows whose content changed. */
  changed: IRowState[];
  /** Rows dropped from the list (the transient "thinking" row). */
  dropped: IRowState[];
}

/** The rows of one run, in order. */
export class StepRows {
  get rows(): IRowState[] {
    return [...this._rows.values()];
  }

  get(key: string): IRowState | undefined {
    return this._rows.get(key);
  }

  clear(): void {
    this._rows.clear();
  }

  /** Fold one event of the stream into the rows. */
  apply(event: RunEvent): IRowChanges {
    const changes: IRowChanges = { added: [], changed: [], dropped: [] };
    switch (event.type) {
      case 'step_started':
        this._dropThinking(changes);
        this._add(changes, {
          key: `thinking-${event.step}`,
          step: event.step,
          cellId: null,
          kind: 'thinking',
          role: null,
          summary: `Step ${event.step}: asking the model`,
          status: 'thinking',
          seconds: null,
          detail: '',
          note: ''
        });
        break;
      case 'model_replied':
        this._dropThinking(changes);
        if (event.problem) {
          this._add(changes, {
            key: `problem-${event.step}`,
            step: event.step,
            cellId: null,
            kind: 'problem',
            role: null,
            summary: `Step ${event.step}: the reply had no usable tool call`,
            status: 'problem',
            seconds: event.seconds,
            detail: event.problem,
            note: ''
          });
        }
        break;
      case 'cell_added': {
        this._dropThinking(changes);
        const unverified = event.role === 'conclusions' ? event.unverified ?? [] : [];
        const note = formatUnverified(unverified);
        this._add(changes, {
          key: `cell-${event.cell_id}`,
          step: event.step,
          cellId: event.cell_id,
          kind: event.cell_type,
          role: event.role,
          summary: summarizeCell(event.source, event.cell_type, event.role),
          status: event.cell_type === 'code' ? 'running' : 'written',
          seconds: null,
          detail: (event.source ?? '') + (note ? `\n\n${note}` : ''),
          note
        });
        break;
      }
      case 'cell_executed': {
        let row = this._rows.get(`cell-${event.cell_id}`);
        if (!row && event.copy_of) {
          // the user edited the agent's cell while it ran: its code ran in a copy below it,
          // so the step now shows (and jumps to) that copy; the edited cell is the user's
          row = this._rows.get(`cell-${event.copy_of}`);
          if (row) {
            row.cellId = event.cell_id;
            row.note = EDITED_NOTE;
            this._rows.set(`cell-${event.cell_id}`, row);
          }
        }
        if (!row) {
          break;
        }
        row.status =
          event.status === 'ok'
            ? event.fixed_error
              ? 'fixed'
              : 'ok'
            : event.status === 'stopped'
              ? 'interrupted'
              : (event.status as RowStatus);
        row.seconds = event.duration;
        if (event.status !== 'ok' && event.status !== 'stopped') {
          const error = [event.error_name, event.error_value]
            .filter(Boolean)
            .join(': ');
          row.detail = error || row.detail;
        }
        changes.changed.push(row);
        break;
      }
      case 'cells_removed':
        for (const cellId of event.cell_ids) {
          const row = this._rows.get(`cell-${cellId}`);
          if (row) {
            row.status = 'removed';
            row.detail = `${REMOVED_DETAIL}\n\n${row.detail}`;
            changes.changed.push(row);
          }
        }
        break;
      case 'run_finished':
        this._dropThinking(changes);
        for (const row of this._rows.values()) {
          if (row.status === 'running') {
            // a stop interrupted it: its cell_executed never came
            row.status = 'interrupted';
            changes.changed.push(row);
          }
        }
        break;
      default:
        break;
    }
    return changes;
  }

  private _add(changes: IRowChanges, row: IRowState): void {
    const existing = this._rows.get(row.key);
    if (existing) {
      Object.assign(existing, row);
      changes.changed.push(existing);
      return;
    }
    this._rows.set(row.key, row);
    changes.added.push(row);
  }

  private _dropThinking(changes: IRowChanges): void {
    for (const [key, row] of this._rows) {
      if (row.kind === 'thinking') {
        this._rows.delete(key);
        changes.dropped.push(row);
      }
    }
  }

  private _rows = new Map<string, IRowState>();
}
