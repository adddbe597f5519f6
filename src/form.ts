/**
 * What starts a run: the DataFrame picker, the question box and the Analyze / Follow-up /
 * Stop buttons.
 * The panel owns the state; this widget shows it and reports the user's requests.
 */

import { ISignal, Signal } from '@lumino/signaling';
import { Panel, Widget } from '@lumino/widgets';

import { DataFramePicker } from './picker';

export namespace RunForm {
  /** What the form shows; see {@link RunForm.render}. */
  export interface IState {
    /** A run is going: Stop replaces Analyze, inputs are frozen. */
    active: boolean;
    /** A start request is in flight. */
    starting: boolean;
    canAnalyze: boolean;
    canStop: boolean;
    /** The shown run has ended: a follow-up can continue it. */
    canFollowUp: boolean;
  }
}

export class RunForm extends Panel {
  constructor() {
    super();
    this.addClass('jp-Analyst-form');
    this.addWidget(this.picker);

    const question = new Widget();
    question.addClass('jp-Analyst-question');
    const label = document.createElement('label');
    label.className = 'jp-Analyst-label';
    label.textContent = 'Question (optional)';
    label.htmlFor = this._question.id = `jp-Analyst-question-${++Private.id}`;
    this._question.className = 'jp-Analyst-questionInput jp-mod-styled';
    this._question.rows = 3;
    this._question.placeholder =
      'What do you want to find out? Leave empty for a general analysis.';
    this._question.setAttribute('data-testid', 'analyst-question');
    this._question.addEventListener('keydown', (event: KeyboardEvent) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this._analyzeRequested.emit();
      }
    });
    question.node.append(label, this._question);
    this.addWidget(question);

    const actions = new Widget();
    actions.addClass('jp-Analyst-actions');
    this._analyze.className = 'jp-Analyst-analyze jp-Button jp-mod-styled jp-mod-accept';
    this._analyze.setAttribute('data-testid', 'analyst-analyze');
    this._analyze.title = 'Start the analyst on the picked DataFrame (Ctrl+Enter in the question)';
    this._analyze.addEventListener('click', () => this._analyzeRequested.emit());
    this._followUp.className = 'jp-Analyst-followUp jp-Button jp-mod-styled';
    this._followUp.textContent = 'Ask a follow-up';
    this._followUp.setAttribute('data-testid', 'analyst-follow-up');
    this._followUp.title =
      'Continue the shown run with the question above: same kernel and variables, its ' +
      'conclusions in context, new cells after its cells';
    this._followUp.addEventListener('click', () => this._followUpRequested.emit());
    this._stop.className = 'jp-Analyst-stop jp-Button jp-mod-styled jp-mod-warn';
    this._stop.textContent = 'Stop';
    this._stop.setAttribute('data-testid', 'analyst-stop');
    this._stop.title =
      "Interrupt the analyst's running cell and end the run; a note cell says where it stopped";
    this._stop.addEventListener('click', () => this._stopRequested.emit());
    actions.node.append(this._analyze, this._followUp, this._stop);
    this.addWidget(actions);
    this.render({
      active: false,
      starting: false,
      canAnalyze: false,
      canStop: false,
      canFollowUp: false
    });
  }

  readonly picker = new DataFramePicker();

  get analyzeRequested(): ISignal<this, void> {
    return this._analyzeRequested;
  }

  get followUpRequested(): ISignal<this, void> {
    return this._followUpRequested;
  }

  get stopRequested(): ISignal<this, void> {
    return this._stopRequested;
  }

  get question(): string {
    return this._question.value;
  }

  /** Each notebook has its own question; the panel swaps it when the notebook changes. */
  set question(text: string) {
    this._question.value = text;
  }

  /** Let the stop button answer again (after a failed stop request). */
  set stopPending(pending: boolean) {
    this._stop.disabled = pending;
  }

  render(state: RunForm.IState): void {
    const frozen = state.active || state.starting;
    this.picker.locked = frozen;
    this._question.disabled = frozen;
    this._analyze.hidden = state.active;
    this._analyze.disabled = !state.canAnalyze || !this.picker.value;
    this._analyze.textContent = state.starting ? 'Starting…' : 'Analyze this dataframe';
    this._followUp.hidden = state.active || !state.canFollowUp;
    this._followUp.disabled = state.starting;
    this._stop.hidden = !state.active;
    this._stop.disabled = !state.canStop;
  }

  private _question = document.createElement('textarea');
  private _analyze = document.createElement('button');
  private _followUp = document.createElement('button');
  private _stop = document.createElement('button');
  private _analyzeRequested = new Signal<this, void>(this);
  private _followUpRequested = new Signal<this, void>(this);
  private _stopRequested = new Signal<this, void>(this);
}

namespace Private {
  export let id = 0;
}
