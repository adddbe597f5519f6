/**
 * Keeps the notebook view on a live run's newest cell, the way a terminal follows its output,
 * until the user scrolls away: a new cell is scrolled to only while the cell followed last
 * is still on screen. Scrolling never selects or focuses a cell, so the user's own typing
 * and selection are left alone.
 */

import { NotebookPanel } from '@jupyterlab/notebook';

/** How often, and how long apart, a cell the websocket announced is looked for in the view. */
const TRIES = 10;
const DELAY_MS = 200;

/** A cell widget of a notebook (the type lives in @jupyterlab/cells). */
type Cell = NotebookPanel['content']['widgets'][number];

export class ViewFollower {
  constructor(private _panel: NotebookPanel) {}

  /** A run's new cell `cellId`: scroll to it unless the user looks elsewhere. */
  cellAdded(cellId: string, attempt = 0): void {
    const notebook = this._panel.content;
    if (this._disposed || notebook.isDisposed) {
      return;
    }
    const index = notebook.widgets.findIndex(c => c.model.id === cellId);
    if (index < 0) {
      // the shared document reaches the browser apart from the event stream
      if (attempt < TRIES) {
        this._timer = window.setTimeout(() => this.cellAdded(cellId, attempt + 1), DELAY_MS);
      }
      return;
    }
    const last = this._last;
    if (last && !last.isDisposed && !onScreen(last, notebook.node)) {
      return; // scrolled away: stay where the user is
    }
    this._last = notebook.widgets[index];
    void notebook.scrollToItem(index, 'auto').catch(() => undefined);
  }

  dispose(): void {
    this._disposed = true;
    window.clearTimeout(this._timer);
  }

  private _last: Cell | null = null;
  private _timer = 0;
  private _disposed = false;
}

/** True when part of the cell shows in the notebook's viewport. */
function onScreen(cell: Cell, viewport: HTMLElement): boolean {
  const box = cell.node.getBoundingClientRect();
  const view = viewport.getBoundingClientRect();
  return box.height > 0 && box.bottom > view.top && box.top < view.bottom;
}
