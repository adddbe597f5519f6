/**
 * Select one cell of a notebook and scroll it into view, for the step list and the run
 * list: the cell is selected in command mode, not edited, so stray typing can't change
 * the analyst's cell.
 */

import { NotebookPanel } from '@jupyterlab/notebook';

/** Why the cell could not be shown, or '' once it is selected. */
export async function selectCell(panel: NotebookPanel, cellId: string): Promise<string> {
  const notebook = panel.content;
  const index = notebook.widgets.findIndex(cell => cell.model.id === cellId);
  if (index < 0) {
    return 'That cell is no longer in the notebook (it was deleted or moved elsewhere).';
  }
  notebook.deselectAll();
  notebook.activeCellIndex = index;
  try {
    await notebook.scrollToCell(notebook.widgets[index], 'center');
  } catch {
    // the cell is selected even when the scroll could not be animated
  }
  // scrollToCell activates the cell, which focuses its editor
  notebook.mode = 'command';
  return '';
}
