/**
 * The DataFrame picker: a select of the kernel's DataFrames (name + shape) and a refresh
 * button. It only displays; the panel fetches and tells it what it found.
 */

import { refreshIcon, Styling } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { formatBytes, formatShape } from './format';
import { IDataFrameInfo } from './schema';

export class DataFramePicker extends Widget {
  constructor() {
    super();
    this.addClass('jp-Analyst-picker');

    const label = document.createElement('label');
    label.className = 'jp-Analyst-label';
    label.textContent = 'DataFrame';
    label.htmlFor = this._select.id = `jp-Analyst-df-${Private.nextId()}`;

    const row = document.createElement('div');
    row.className = 'jp-Analyst-pickerRow';
    this._select.className = 'jp-Analyst-select jp-mod-styled';
    this._select.setAttribute('data-testid', 'analyst-dataframe');
    this._select.addEventListener('change', () => {
      this._update();
      this._changed.emit(this.value);
    });

    this._refresh.className = 'jp-Analyst-iconButton jp-Button jp-mod-minimal';
    this._refresh.title = 'Look for DataFrames in the kernel again';
    this._refresh.setAttribute('aria-label', 'Refresh DataFrames');
    this._refresh.setAttribute('data-testid', 'analyst-refresh');
    refreshIcon.element({ container: this._refresh, tag: 'span' });
    this._refresh.addEventListener('click', () => this._refreshRequested.emit());

    row.append(Styling.wrapSelect(this._select), this._refresh);
    this._details.className = 'jp-Analyst-dfDetails';
    this.node.append(label, row, this._details);
    this.setFrames([]);
  }

  /** The refresh button was clicked. */
  get refreshRequested(): ISignal<this, void> {
    return this._refreshRequested;
  }

  /** The user picked another DataFrame. */
  get changed(): ISignal<this, string> {
    return this._changed;
  }

  /** The picked variable name ('' when there is none). */
  get value(): string {
    return this._select.value;
  }

  set value(name: string) {
    if (this._frames.some(f => f.name === name)) {
      this._select.value = name;
      this._update();
    }
  }

  get frames(): ReadonlyArray<IDataFrameInfo> {
    return this._frames;
  }

  /** Show these DataFrames, keeping the current choice when it is still there. */
  setFrames(frames: IDataFrameInfo[], placeholder = 'No DataFrames found'): void {
    const previous = this._select.value;
    this._frames = frames;
    this._select.textContent = '';
    if (!frames.length) {
      const option = document.createElement('option');
      option.value = '';
      option.textContent = placeholder;
      this._select.append(option);
      this._select.disabled = true;
    } else {
      for (const frame of frames) {
        const option = document.createElement('option');
        option.value = frame.name;
        option.textContent = `${frame.name} — ${formatShape(frame.shape)}`;
        this._select.append(option);
      }
      this._select.disabled = this._locked;
      const keep = frames.find(f => f.name === previous) ?? Private.best(frames);
      this._select.value = keep.name;
    }
    this._update();
    if (this._select.value !== previous) {
      this._changed.emit(this._select.value);
    }
  }

  /** Show that a fetch is under way. */
  set busy(busy: boolean) {
    this._refresh.disabled = busy;
    this.toggleClass('jp-mod-busy', busy);
  }

  /** Freeze the choice while a run is going. */
  set locked(locked: boolean) {
    this._locked = locked;
    this._select.disabled = locked || !this._frames.length;
  }

  private _update(): void {
    const frame = this._frames.find(f => f.name === this._select.value);
    if (!frame) {
      this._details.textContent = '';
      this._details.title = '';
      return;
    }
    const memory = frame.memory_bytes > 0 ? formatBytes(frame.memory_bytes) : ''; // 0: not measured
    const shape = `${frame.shape[0].toLocaleString('en-US')} rows × ${frame.shape[1]} columns`;
    this._details.textContent = memory ? `${shape} · ${memory}` : shape;
    this._details.title = frame.columns.join(', ');
  }

  private _select = document.createElement('select');
  private _refresh = document.createElement('button');
  private _details = document.createElement('div');
  private _frames: IDataFrameInfo[] = [];
  private _locked = false;
  private _refreshRequested = new Signal<this, void>(this);
  private _changed = new Signal<this, string>(this);
}

namespace Private {
  let id = 0;
  export function nextId(): number {
    return ++id;
  }

  /** Prefer a frame called `df`, then the largest. */
  export function best(frames: IDataFrameInfo[]): IDataFrameInfo {
    const df = frames.find(f => f.name === 'df');
    if (df) {
      return df;
    }
    return frames.reduce((a, b) =>
      b.shape[0] * b.shape[1] > a.shape[0] * a.shape[1] ? b : a
    );
  }
}
