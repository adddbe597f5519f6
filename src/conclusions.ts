/**
 * The run's conclusions (the `final_answer`), rendered as markdown through the rendermime
 * registry, under a one-line summary of how the run ended.
 */

import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Panel, Widget } from '@lumino/widgets';

export class ConclusionsView extends Panel {
  constructor(private _rendermime: IRenderMimeRegistry) {
    super();
    this.addClass('jp-Analyst-conclusions');
    this.node.setAttribute('data-testid', 'analyst-conclusions');
    const header = new Widget();
    header.addClass('jp-Analyst-conclusionsHeader');
    this._title.className = 'jp-Analyst-sectionTitle';
    this._title.textContent = 'Conclusions';
    this._summary.className = 'jp-Analyst-runSummary';
    header.node.append(this._title, this._summary);
    this.addWidget(header);
    this.hide();
  }

  /** Show `answer` (markdown) under a summary line; with no answer, only the line. */
  async setAnswer(answer: string | null, summary: string): Promise<void> {
    const token = ++this._token;
    const hasAnswer = !!answer && !!answer.trim();
    this._title.textContent = hasAnswer ? 'Conclusions' : 'No conclusions';
    this.node.dataset.answer = hasAnswer ? 'yes' : 'no';
    this._summary.textContent = summary;
    this._clearBody();
    this.show();
    if (!answer || !answer.trim()) {
      return;
    }
    const renderer = this._rendermime.createRenderer('text/markdown');
    renderer.addClass('jp-Analyst-conclusionsBody');
    const model = this._rendermime.createModel({
      data: { 'text/markdown': answer },
      trusted: false
    });
    try {
      await renderer.renderModel(model);
    } catch (error) {
      console.warn('jupyter-analyst: markdown rendering failed', error);
      renderer.dispose();
      if (token === this._token) {
        const plain = new Widget({ node: document.createElement('pre') });
        plain.addClass('jp-Analyst-conclusionsBody');
        plain.node.textContent = answer;
        this._body = plain;
        this.addWidget(plain);
      }
      return;
    }
    if (token !== this._token) {
      renderer.dispose();
      return;
    }
    this._body = renderer;
    this.addWidget(renderer);
  }

  clear(): void {
    ++this._token;
    this._summary.textContent = '';
    this._clearBody();
    this.hide();
  }

  private _clearBody(): void {
    this._body?.dispose();
    this._body = null;
  }

  private _title = document.createElement('h3');
  private _summary = document.createElement('div');
  private _body: Widget | null = null;
  private _token = 0;
}
