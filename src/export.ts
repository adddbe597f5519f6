/**
 * The Export report button and where the report went: the `.ipynb` (opens in JupyterLab)
 * and the `.html` (opens in a new browser tab), both written next to the notebook.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { IExportReply } from './schema';

export class ExportView extends Widget {
  /**
   * @param filesUrl base URL of the server's `files/` handler
   * @param open opens an API path in JupyterLab
   */
  constructor(
    private _filesUrl: string,
    private _open: (path: string) => void
  ) {
    super();
    this.addClass('jp-Analyst-export');
    this._button.className = 'jp-Analyst-exportButton jp-Button jp-mod-styled jp-mod-accept';
    this._button.textContent = 'Export report';
    this._button.title = 'Write the report (header and this run\u2019s cells) as .ipynb and .html';
    this._button.setAttribute('data-testid', 'analyst-export');
    this._button.addEventListener('click', () => this._requested.emit());
    this._result.className = 'jp-Analyst-exportResult';
    this._result.setAttribute('data-testid', 'analyst-export-result');
    this.node.append(this._button, this._result);
  }

  get requested(): ISignal<this, void> {
    return this._requested;
  }

  render(enabled: boolean, busy: boolean): void {
    this._button.disabled = !enabled || busy;
    this._button.textContent = busy ? 'Exporting…' : 'Export report';
  }

  showResult(reply: IExportReply): void {
    this._result.textContent = '';
    const intro = document.createElement('div');
    intro.textContent = 'Report written:';
    const ipynb = document.createElement('a');
    ipynb.href = '#';
    ipynb.className = 'jp-Analyst-exportLink';
    ipynb.dataset.path = reply.ipynb;
    ipynb.textContent = reply.ipynb;
    ipynb.title = 'Open the report notebook';
    ipynb.addEventListener('click', event => {
      event.preventDefault();
      this._open(reply.ipynb);
    });
    const html = document.createElement('a');
    html.className = 'jp-Analyst-exportLink';
    html.dataset.path = reply.html;
    html.textContent = reply.html;
    html.title = 'Open the HTML report in a new browser tab';
    html.target = '_blank';
    html.rel = 'noopener';
    html.href = URLExt.join(this._filesUrl, URLExt.encodeParts(reply.html));
    const list = document.createElement('ul');
    for (const link of [ipynb, html]) {
      const item = document.createElement('li');
      item.append(link);
      list.append(item);
    }
    this._result.append(intro, list);
    this._result.scrollIntoView?.({ block: 'nearest', behavior: 'smooth' });
  }

  clear(): void {
    this._result.textContent = '';
  }

  private _button = document.createElement('button');
  private _result = document.createElement('div');
  private _requested = new Signal<this, void>(this);
}
