/**
 * The live list of a run's steps, fed by the events of `runs/{id}/events`.
 *
 * One row per cell the agent writes (markdown heading or first code line, status, seconds),
 * plus a transient "thinking" row while the model is answering and a row for replies
 * without a usable tool call. Clicking a row asks the panel to reveal that cell; a failed
 * cell the run's end removed (a later cell fixed it) keeps its row, marked "removed", with
 * no cell to jump to. The rows themselves are plain data (rows.ts).
 */

import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { formatSeconds } from './format';
import { hasCell, IRowState, STATUS_TEXT, StepRows } from './rows';
import { RunEvent } from './schema';

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

  /** Number of cell rows (markdown + code) whose cell is in the notebook. */
  get cellCount(): number {
    return this._model.rows.filter(hasCell).length;
  }

  /** Forget every row (a reconnect replays the run from its start). */
  reset(): void {
    this._model.clear();
    this._nodes.clear();
    this.node.textContent = '';
  }

  /** Fold one event of the stream into the list. */
  apply(event: RunEvent): void {
    const changes = this._model.apply(event);
    for (const row of changes.dropped) {
      this._nodes.get(row.key)?.remove();
      this._nodes.delete(row.key);
    }
    for (const row of changes.changed) {
      const node = this._nodes.get(row.key);
      if (node) {
        this._render(row, node);
      }
    }
    for (const row of changes.added) {
      this._append(row);
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

  private _append(row: IRowState): void {
    const node = document.createElement('li');
    this._nodes.set(row.key, node);
    this._render(row, node);
    this.node.appendChild(node);
    // keep the newest step in view while the user has not scrolled up
    const list = this.node;
    const nearBottom =
      list.scrollHeight - list.scrollTop - list.clientHeight < 3 * node.offsetHeight + 40;
    if (nearBottom) {
      node.scrollIntoView?.({ block: 'nearest' });
    }
  }

  private _render(row: IRowState, node: HTMLLIElement): void {
    node.className = `jp-Analyst-step jp-Analyst-step-${row.kind}`;
    node.dataset.kind = row.kind;
    node.dataset.status = row.status;
    node.dataset.step = String(row.step);
    if (row.role) {
      node.dataset.role = row.role;
    }
    if (hasCell(row)) {
      node.dataset.cellId = row.cellId!;
      node.tabIndex = 0;
      node.setAttribute('role', 'button');
      node.title = (row.detail || row.summary) + '\n\nClick to show this cell.';
    } else {
      // a removed cell is not in the notebook: nothing to jump to
      delete node.dataset.cellId;
      node.removeAttribute('tabindex');
      node.removeAttribute('role');
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

    if (row.note) {
      const note = document.createElement('span');
      note.className = 'jp-Analyst-stepNote';
      note.textContent = row.note;
      summary.append(' — ', note);
    }

    node.append(step, summary, status, seconds);
  }

  private _model = new StepRows();
  private _nodes = new Map<string, HTMLLIElement>();
  private _cellClicked = new Signal<this, string>(this);
}
