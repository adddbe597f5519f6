/**
 * A dismissable message at the top of the sidebar: the readable text of an API error (its
 * `message` field), never a stack trace.
 */

import { Widget } from '@lumino/widgets';

/** What raised a message; a later success of the same kind clears it again. */
export type NoticeSource = 'frames' | 'action';

export class ErrorNotice extends Widget {
  constructor() {
    super();
    this.addClass('jp-Analyst-error');
    this.node.setAttribute('role', 'alert');
    this.node.setAttribute('data-testid', 'analyst-error');
    this._text.className = 'jp-Analyst-errorText';
    const close = document.createElement('button');
    close.className = 'jp-Analyst-errorClose jp-Button jp-mod-minimal';
    close.setAttribute('aria-label', 'Dismiss');
    close.textContent = '×';
    close.addEventListener('click', () => this.clear());
    this.node.append(this._text, close);
    this.hide();
  }

  get message(): string {
    return this.isHidden ? '' : this._text.textContent ?? '';
  }

  showMessage(message: string, source: NoticeSource = 'action'): void {
    this._text.textContent = message;
    this._source = source;
    this.show();
  }

  /** Hide the message; with `source`, only a message that came from there. */
  clear(source?: NoticeSource): void {
    if (source && this._source !== source) {
      return;
    }
    this._source = null;
    this.hide();
  }

  private _text = document.createElement('span');
  private _source: NoticeSource | null = null;
}
