/**
 * The question before a run is discarded. Its cells can come back (undo), its variables
 * can't, so the dialog names them and lets the user keep them.
 */

import { Dialog, showDialog } from '@jupyterlab/apputils';

import { runTitle } from './format';
import { IRunStatus } from './schema';

/** The user's answer: discard (and whether to delete the variables), or null to cancel. */
export async function confirmDiscard(
  run: IRunStatus
): Promise<{ variables: boolean } | null> {
  const names = (run.created ?? []).filter(name => name !== run.variable);
  const count = run.cells.length;
  const result = await showDialog({
    title: 'Discard this run?',
    body:
      `${runTitle(run)}: its ${count} cell${count === 1 ? '' : 's'} will be removed from the ` +
      'notebook. “Undo discard” in the run list puts them back where they were.',
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Discard' })],
    checkbox: names.length
      ? {
          label: `Also delete the variables it made: ${names.slice(0, 8).join(', ')}${
            names.length > 8 ? ', …' : ''
          }`,
          caption: 'An undo brings back the cells, not the variables: re-run the cells to make them again.',
          checked: true
        }
      : null
  });
  if (!result.button.accept) {
    return null;
  }
  return { variables: !!result.isChecked };
}
