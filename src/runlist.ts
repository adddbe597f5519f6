/**
 * The runs of the current notebook, newest first: what each asked, how far it got and how it
 * ended, with show, go-to-cells, export, discard and undo-discard for each. A notebook that
 * had four runs has four analyses in it; this is where the user finds and tidies them.
 */

import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { runSummary, runTitle } from './format';
import { IRunStatus, isActive } from './schema';

export namespace RunList {
  /** What a row's button asks of the panel. */
  export type Action = 'show' | 'jump' | 'export' | 'discard' | 'restore';

  export interface IRequest {
    action: Action;
    run: IRunStatus;
  }
}

export class RunList extends Widget {
  constructor() {
    super({ node: document.createElement('details') });
    this.addClass('jp-Analyst-runList');
    this.node.setAttribute('data-testid', 'analyst-run-list');
    (this.node as HTMLDetailsElement).open = true;
    this._summary.className = 'jp-Analyst-runListTitle';
    this.node.append(this._summary, this._list);
    this.hide();
  }

  get requested(): ISignal<this, RunList.IRequest> {
    return this._requested;
  }

  /**
   * Show `runs` (this notebook's, newest first); `shown` is the run the panel follows,
   * `busy` the runs with a request in flight (their buttons wait).
   */
  render(runs: IRunStatus[], shown: string | null, busy: ReadonlySet<string>): void {
    this._summary.textContent = `Runs in this notebook (${runs.length})`;
    this._list.textContent = '';
    for (const run of runs) {
      this._list.append(this._row(run, run.run_id === shown, busy.has(run.run_id)));
    }
    this.setHidden(!runs.length);
  }

  private _row(run: IRunStatus, shown: boolean, busy: boolean): HTMLLIElement {
    const item = document.createElement('li');
    item.className = 'jp-Analyst-runItem';
    item.dataset.runId = run.run_id;
    item.dataset.state = run.state;
    item.setAttribute('data-testid', 'analyst-run-item');
    item.classList.toggle('jp-mod-shown', shown);
    item.classList.toggle('jp-mod-discarded', !!run.discarded);
    const title = document.createElement('div');
    title.className = 'jp-Analyst-runItemTitle';
    title.textContent = runTitle(run);
    title.title = run.question ?? '';
    const meta = document.createElement('div');
    meta.className = 'jp-Analyst-runItemMeta';
    meta.textContent = runSummary(run);
    const actions = document.createElement('div');
    actions.className = 'jp-Analyst-runItemActions';
    const ended = !isActive(run.state);
    const add = (action: RunList.Action, label: string, tip: string, enabled: boolean) => {
      const button = document.createElement('button');
      button.className = 'jp-Button jp-mod-styled jp-mod-minimal jp-Analyst-runItemButton';
      button.textContent = label;
      button.title = tip;
      button.dataset.action = action;
      button.disabled = busy || !enabled;
      button.addEventListener('click', () => this._requested.emit({ action, run }));
      actions.append(button);
    };
    if (!shown) {
      add('show', 'Show', 'Show this run’s steps and conclusions in the panel', true);
    }
    if (run.discarded) {
      add('restore', 'Undo discard', 'Put this run’s cells back where they were', true);
    } else {
      add('jump', 'Go to cells', 'Select this run’s first cell in the notebook', run.cells.length > 0);
      add('export', 'Export', 'Write this run’s report (.ipynb and .html) next to the notebook', ended);
      add('discard', 'Discard', 'Remove this run’s cells from the notebook (you can undo it)', ended);
    }
    item.append(title, meta, actions);
    return item;
  }

  private _summary = document.createElement('summary');
  private _list = document.createElement('ul');
  private _requested = new Signal<this, RunList.IRequest>(this);
}
