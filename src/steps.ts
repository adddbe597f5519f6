/**
 * The live list of a run's steps, fed by the events of `runs/{id}/events`.
 *
 * One row per cell the agent writes (markdown heading or first code line, status, seconds),
 * plus a transient "thinking" row while the model is answering and a row for replies
 * without a usable tool call. Clicking a row asks the panel to reveal that cell.
 */

import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { formatSeconds, summarizeCell } from './format';
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
  | 'written';

interface IRow {
  key: string;
  step: number;
  cellId: string | null;
  kind: 'markdown' | 'code' | 'thinking' | 'problem';
  role: CellRole | null;
  summary: string;
  status: RowStatus;
  seconds: number | null;
  detail: string;
  node: HTMLLIElement;
}

const STATUS_TEXT: Record<RowStatus, string> = {
  thinking: 'thinking…',
  running: 'running',
  ok: 'ok',
  error: 'error',
  fixed: 'fixed',
  timeout: 'timeout',
  dead: 'kernel died',
  problem: 'no tool call',
  interrupted: 'stopped',
  written: ''
};

export class StepList extends Widget {
  constructor() {
    super({ node: document.createElement('ol') });
    this.addClass('jp-Analyst-steps');
    this.node.setAttribute('aria-label', 'Steps of the analysis');
    this.node.setAttribute('data-testid', 'analyst-steps');
  }

  /** A row with a cell was activated: the id of that cell. */
  get cellClicked(): ISignal<this, string> {
    return this._cellClicked;
  }

  /** Number of cell rows (markdown + code). */
  get cellCount(): number {
    let n = 0;
    for (const row of this._rows.values()) {
      if (row.cellId) {
        n += 1;
      }
    }
    return n;
  }

  /** Forget every row (a reconnect replays the run from its start). */
  reset(): void {
    this._rows.clear();
    this.node.textContent = '';
  }

  /** Fold one event of the stream into the list. */
  apply(event: RunEvent): void {
    switch (event.type) {
      case 'step_started':
        this._removeThinking();
        this._add({
          key: `thinking-${event.step}`,
          step: event.step,
          cellId: null,
          kind: 'thinking',
          role: null,
          summary: `Step ${event.step}: asking the model`,
          status: 'thinking',
          seconds: null,
          detail: ''
        });
        break;
      case 'model_replied':
        this._removeThinking();
        if (event.problem) {
          this._add({
            key: `problem-${event.step}`,
            step: event.step,
            cellId: null,
            kind: 'problem',
            role: null,
            summary: `Step ${event.step}: the reply had no usable tool call`,
            status: 'problem',
            seconds: event.seconds,
            detail: event.problem
          });
        }
        break;
      case 'cell_added':
        this._removeThinking();
        this._add({
          key: `cell-${event.cell_id}`,
          step: event.step,
          cellId: event.cell_id,
          kind: event.cell_type,
          role: event.role,
          summary: summarizeCell(event.source, event.cell_type, event.role),
          status: event.cell_type === 'code' ? 'running' : 'written',
          seconds: null,
          detail: event.source ?? ''
        });
        break;
      case 'cell_executed': {
        const row = this._rows.get(`cell-${event.cell_id}`);
        if (!row) {
          break;
        }
        row.status =
          event.status === 'ok'
            ? event.fixed_error
              ? 'fixed'
              : 'ok'
            : (event.status as RowStatus);
        row.seconds = event.duration;
        if (event.status !== 'ok') {
          const error = [event.error_name, event.error_value]
            .filter(Boolean)
            .join(': ');
          row.detail = error || row.detail;
        }
        this._render(row);
        break;
      }
      case 'run_finished':
        this._removeThinking();
        for (const row of this._rows.values()) {
          if (row.status === 'running') {
            // a stop interrupted it: its cell_executed never came
            row.status = 'interrupted';
            this._render(row);
          }
        }
        break;
      default:
        break;
    }
  }

  handleEvent(event: Event): void {
    if (event.type === 'click') {
      this._activate(event.target as HTMLElement);
    } else if (event.type === 'keydown') {
      const key = (event as KeyboardEvent).key;
      if (key === 'Enter' || key === ' ') {
        event.preventDefault();
        this._activate(event.target as HTMLElement);
      }
    }
  }

  protected onBeforeDetach(): void {
    this.node.removeEventListener('click', this);
    this.node.removeEventListener('keydown', this);
  }

  protected onAfterAttach(): void {
    this.node.addEventListener('click', this);
    this.node.addEventListener('keydown', this);
  }

  private _activate(target: HTMLElement): void {
    const li = target.closest('li.jp-Analyst-step') as HTMLElement | null;
    const cellId = li?.dataset.cellId;
    if (cellId) {
      for (const node of this.node.querySelectorAll('.jp-mod-selected')) {
        node.classList.remove('jp-mod-selected');
      }
      li!.classList.add('jp-mod-selected');
      this._cellClicked.emit(cellId);
    }
  }

  private _add(spec: Omit<IRow, 'node'>): void {
    const existing = this._rows.get(spec.key);
    if (existing) {
      Object.assign(existing, spec);
      this._render(existing);
      return;
    }
    const node = document.createElement('li');
    const row: IRow = { ...spec, node };
    this._rows.set(spec.key, row);
    this._render(row);
    this.node.appendChild(node);
    // keep the newest step in view while the user has not scrolled up
    const list = this.node;
    const nearBottom =
      list.scrollHeight - list.scrollTop - list.clientHeight < 3 * node.offsetHeight + 40;
    if (nearBottom) {
      node.scrollIntoView?.({ block: 'nearest' });
    }
  }

  private _removeThinking(): void {
    for (const [key, row] of this._rows) {
      if (row.kind === 'thinking') {
        row.node.remove();
        this._rows.delete(key);
      }
    }
  }

  private _render(row: IRow): void {
    const node = row.node;
    node.className = `jp-Analyst-step jp-Analyst-step-${row.kind}`;
    node.dataset.kind = row.kind;
    node.dataset.status = row.status;
    node.dataset.step = String(row.step);
    if (row.role) {
      node.dataset.role = row.role;
    }
    if (row.cellId) {
      node.dataset.cellId = row.cellId;
      node.tabIndex = 0;
      node.setAttribute('role', 'button');
      node.title = (row.detail || row.summary) + '\n\nClick to show this cell.';
    } else {
      node.title = row.detail || row.summary;
    }
    node.textContent = '';

    const step = document.createElement('span');
    step.className = 'jp-Analyst-stepNumber';
    step.textContent = String(row.step);

    const summary = document.createElement('span');
    summary.className = 'jp-Analyst-stepSummary';
    summary.textContent = row.summary;

    const status = document.createElement('span');
    status.className = `jp-Analyst-stepStatus jp-Analyst-status-${row.status}`;
    status.textContent = STATUS_TEXT[row.status];

    const seconds = document.createElement('span');
    seconds.className = 'jp-Analyst-stepSeconds';
    seconds.textContent = formatSeconds(row.seconds);

    node.append(step, summary, status, seconds);
  }

  private _rows = new Map<string, IRow>();
  private _cellClicked = new Signal<this, string>(this);
}
