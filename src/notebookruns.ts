/**
 * The runs of the panel's notebook: the list the user sees (`RunList`) and what its buttons
 * do that is not about the followed run: discard (after asking) and undo-discard. The panel
 * gives it the server's runs whenever it lists them, and handles show, go-to and export.
 */

import { AnalystApiError, AnalystClient } from './api';
import { confirmDiscard } from './discard';
import { ErrorNotice } from './notice';
import { RunList } from './runlist';
import { IRunStatus } from './schema';

export namespace NotebookRuns {
  export interface IOptions {
    client: AnalystClient;
    notice: ErrorNotice;
    /** Row requests the panel answers itself: show, jump, export. */
    request: (action: 'show' | 'jump' | 'export', run: IRunStatus) => void;
    /** After a discard or a restore: list the runs again (the notebook changed). */
    changed: () => void;
  }
}

export class NotebookRuns {
  constructor(private _options: NotebookRuns.IOptions) {
    this.list.requested.connect((_, { action, run }) => {
      if (action === 'discard') {
        void this.discard(run);
      } else if (action === 'restore') {
        void this.restore(run);
      } else {
        this._options.request(action, run);
      }
    });
  }

  readonly list = new RunList();

  /** This notebook's runs, newest first. */
  get runs(): IRunStatus[] {
    return this._runs;
  }

  /** Keep the runs of notebook `path` out of all the server's (newest first). */
  setRuns(all: IRunStatus[], path: string, shown: string | null): void {
    this._runs = all.filter(run => normalize(run.path) === normalize(path));
    this.render(shown);
  }

  /** Replace one run's status (a live one changes while the list shows it). */
  update(status: IRunStatus, shown: string | null): void {
    const i = this._runs.findIndex(r => r.run_id === status.run_id);
    if (i >= 0) {
      this._runs[i] = { ...this._runs[i], ...status, question: this._runs[i].question };
      this.render(shown);
    }
  }

  render(shown: string | null): void {
    this._shown = shown;
    this.list.render(this._runs, shown, this._busy);
  }

  clear(): void {
    this._runs = [];
    this.render(null);
  }

  /** Ask, then take the run's cells out of the notebook (and its variables, if agreed). */
  async discard(run: IRunStatus): Promise<boolean> {
    const answer = await confirmDiscard(run);
    if (!answer) {
      return false;
    }
    return this._act(run, async () => {
      const reply = await this._options.client.discard(run.run_id, answer.variables);
      const deleted = reply.variables?.length ? `; deleted ${reply.variables.join(', ')}` : '';
      const note = reply.note ? ` (${reply.note})` : '';
      this._said(`Discarded ${reply.cells} cell${reply.cells === 1 ? '' : 's'}${deleted}${note}.`);
    });
  }

  /** Undo a discard: the cells go back where they were. */
  async restore(run: IRunStatus): Promise<boolean> {
    return this._act(run, async () => {
      const reply = await this._options.client.restore(run.run_id);
      const note = reply.note ? ` (${reply.note})` : '';
      this._said(`Restored ${reply.cells} cell${reply.cells === 1 ? '' : 's'}${note}.`);
    });
  }

  /** Run one request for `run` with its buttons waiting; a refusal shows in the notice. */
  private async _act(run: IRunStatus, request: () => Promise<void>): Promise<boolean> {
    this._busy.add(run.run_id);
    this.render(this._shown);
    this._options.notice.clear();
    try {
      await request();
      return true;
    } catch (error) {
      this._options.notice.showMessage(
        error instanceof AnalystApiError ? error.message : String(error)
      );
      return false;
    } finally {
      this._busy.delete(run.run_id);
      this._options.changed();
    }
  }

  /** What the last discard or restore did, under the list (read out by screen readers). */
  private _said(text: string): void {
    this._status.textContent = text;
    if (!this._status.isConnected) {
      this._status.className = 'jp-Analyst-runListStatus';
      this._status.setAttribute('role', 'status');
      this._status.setAttribute('data-testid', 'analyst-run-list-status');
      this.list.node.append(this._status);
    }
  }

  private _runs: IRunStatus[] = [];
  private _busy = new Set<string>();
  private _shown: string | null = null;
  private _status = document.createElement('div');
}

function normalize(path: string): string {
  return path.replace(/^\/+|\/+$/g, '');
}
