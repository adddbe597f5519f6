/**
 * The Analyst sidebar: pick a DataFrame of the current notebook's kernel, ask a question,
 * start a run, watch its steps live, stop it, read the conclusions, export the report.
 *
 * The panel follows the current notebook. For that notebook it shows the newest run the
 * server knows (started here, by the `%analyst` magic, or before a page reload): the event
 * stream replays a run's past events before the live ones, so the list is rebuilt from it.
 */

import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { CommandRegistry } from '@lumino/commands';
import { ISignal, Signal } from '@lumino/signaling';
import { Panel, Widget } from '@lumino/widgets';

import { AnalystApiError, AnalystClient } from './api';
import { ConclusionsView } from './conclusions';
import { ExportView } from './export';
import { RunFollower } from './follower';
import {
  baseName,
  formatSeconds,
  formatUnverified,
  reasonLabel,
  stateLabel
} from './format';
import { RunForm } from './form';
import { analystIcon } from './icon';
import { ErrorNotice } from './notice';
import { RunBar } from './runbar';
import {
  IExportReply,
  IRunFinishedEvent,
  IRunStatus,
  isActive,
  RunEvent
} from './schema';
import { StepList } from './steps';

/** The user settings the panel reads (schema/plugin.json). */
export interface IAnalystSettings {
  /** Model profile for new runs; '' lets the server pick its default. */
  profile: string;
  /** Step budget of new runs; 0 lets the server pick. */
  maxSteps: number;
  /** Keep failed cells a later fix superseded (by default a run's end removes them). */
  keepFailedCells: boolean;
}

export const DEFAULT_SETTINGS: IAnalystSettings = {
  profile: '',
  maxSteps: 40,
  keepFailedCells: false
};

/** The minimal view of the notebook tracker the panel needs. */
export interface INotebookSource {
  readonly currentWidget: NotebookPanel | null;
  readonly currentChanged: ISignal<any, NotebookPanel | null>;
  find(fn: (panel: NotebookPanel) => boolean): NotebookPanel | undefined;
}

export namespace AnalystPanel {
  export interface IOptions {
    client: AnalystClient;
    notebooks: INotebookSource;
    rendermime: IRenderMimeRegistry;
    commands: CommandRegistry;
    /** Bring a widget (the notebook) to the front. */
    activate: (id: string) => void;
    settings?: IAnalystSettings;
  }
}

/** How often a busy kernel is asked again for its DataFrames. */
const FRAMES_RETRIES = 4;

export class AnalystPanel extends Panel {
  constructor(options: AnalystPanel.IOptions) {
    super();
    this.id = 'jupyter-analyst-panel';
    this.addClass('jp-Analyst');
    this.title.icon = analystIcon;
    this.title.caption = 'Analyst: analyze a DataFrame of this notebook';
    this._client = options.client;
    this._notebooks = options.notebooks;
    this._activate = options.activate;
    this._settings = { ...DEFAULT_SETTINGS, ...(options.settings ?? {}) };

    this.addWidget(this._buildHeader());
    this.addWidget(this._notice);
    this._empty.addClass('jp-Analyst-empty');
    this._empty.node.setAttribute('data-testid', 'analyst-empty');
    this.addWidget(this._empty);
    this.addWidget(this._form);
    this.addWidget(this._runBar);
    this.addWidget(this._steps);
    this._conclusions = new ConclusionsView(options.rendermime);
    this.addWidget(this._conclusions);
    this._export = new ExportView(
      `${options.client.serverSettings.baseUrl}files`,
      path => void options.commands.execute('docmanager:open', { path })
    );
    this.addWidget(this._export);

    this._form.analyzeRequested.connect(() => void this.analyze());
    this._form.stopRequested.connect(() => void this.stop());
    this._form.picker.refreshRequested.connect(() => void this.refresh());
    this._form.picker.changed.connect(() => this._update());
    this._steps.cellClicked.connect((_, id) => void this.revealCell(id));
    this._export.requested.connect(() => void this.exportReport());
    this._notebooks.currentChanged.connect(this._onCurrentChanged, this);
    NotebookActions.executed.connect(this._onCellExecuted, this);
    this._setNotebook(this._notebooks.currentWidget);
  }

  /** Emitted whenever what the commands can do may have changed. */
  get stateChanged(): ISignal<this, void> {
    return this._stateChanged;
  }

  get notebook(): NotebookPanel | null {
    return this._notebook;
  }

  /** The run shown in the panel, if any. */
  get run(): IRunStatus | null {
    return this._run;
  }

  get settings(): IAnalystSettings {
    return this._settings;
  }

  set settings(settings: IAnalystSettings) {
    this._settings = { ...DEFAULT_SETTINGS, ...settings };
    this._updateModelLine();
  }

  get canAnalyze(): boolean {
    return !!this._notebook && this._hasKernel() && !this._starting && !this._active();
  }

  get canStop(): boolean {
    return !!this._run && (this._run.state === 'running' || this._run.state === 'starting');
  }

  get canExport(): boolean {
    return !!this._run && !isActive(this._run.state) && !this._exporting;
  }

  /** Ask the kernel for its DataFrames again, and look for a run of this notebook. */
  async refresh(): Promise<void> {
    const notebook = this._notebook;
    if (notebook) {
      await Promise.all([this._loadFrames(notebook), this._loadRun(notebook)]);
    }
  }

  /**
   * Start a run on `variable` (default: the picked DataFrame) with `question` (default: the
   * question box). Settings give the profile and the step budget.
   */
  async analyze(variable?: string, question?: string): Promise<void> {
    const notebook = this._notebook;
    if (!notebook) {
      this._notice.showMessage('Open a notebook first: the analyst works in the current notebook.');
      return;
    }
    if (!this._hasKernel()) {
      this._notice.showMessage('This notebook has no running kernel: start one, then try again.');
      return;
    }
    const name = (variable ?? this._form.picker.value).trim();
    if (!name) {
      this._notice.showMessage(
        'Pick a DataFrame first. If the list is empty, run a cell that creates one and press refresh.'
      );
      return;
    }
    if (this._starting || this._active()) {
      return;
    }
    const text = (question ?? this._form.question).trim();
    this._notice.clear();
    this._starting = true;
    this._update();
    try {
      const status = await this._client.startRun({
        path: notebook.context.localPath,
        variable: name,
        question: text || null,
        max_steps: this._settings.maxSteps > 0 ? this._settings.maxSteps : null,
        profile: this._settings.profile.trim() || null,
        ...(this._settings.keepFailedCells ? { keep_failed_cells: true } : {})
      });
      if (this._notebook === notebook) {
        this._follow(status);
      }
    } catch (error) {
      this._notice.showMessage(Private.describe(error));
    } finally {
      this._starting = false;
      this._update();
    }
  }

  /** Ask the server to stop the shown run (it writes a stop note cell). */
  async stop(): Promise<void> {
    const run = this._run;
    if (!run || !isActive(run.state)) {
      return;
    }
    this._notice.clear();
    this._form.stopPending = true;
    try {
      const status = await this._client.stop(run.run_id);
      if (this._run?.run_id === run.run_id) {
        this._setRun(status?.run_id ? status : { ...run, state: 'stopping' });
      }
    } catch (error) {
      this._notice.showMessage(Private.describe(error));
    } finally {
      this._update();
    }
  }

  /** Write the report next to the notebook and show where it went. */
  async exportReport(): Promise<IExportReply | null> {
    const run = this._run;
    if (!run) {
      return null;
    }
    this._notice.clear();
    this._exporting = true;
    this._update();
    try {
      const reply = await this._client.exportReport(run.run_id);
      this._export.showResult(reply);
      return reply;
    } catch (error) {
      this._notice.showMessage(Private.describe(error));
      return null;
    } finally {
      this._exporting = false;
      this._update();
    }
  }

  /** Bring the notebook of the run forward and select the cell `cellId`. */
  async revealCell(cellId: string): Promise<void> {
    const path = this._run?.path ?? this._notebook?.context.localPath;
    let panel: NotebookPanel | null | undefined = this._notebook;
    if (path && panel && Private.normalize(panel.context.localPath) !== Private.normalize(path)) {
      panel = this._notebooks.find(
        p => Private.normalize(p.context.localPath) === Private.normalize(path)
      );
    }
    if (!panel) {
      this._notice.showMessage('The notebook of this run is not open.');
      return;
    }
    const notebook = panel.content;
    const index = notebook.widgets.findIndex(cell => cell.model.id === cellId);
    if (index < 0) {
      this._notice.showMessage(
        'That cell is no longer in the notebook (it was deleted or moved elsewhere).'
      );
      return;
    }
    this._notice.clear();
    this._activate(panel.id);
    notebook.deselectAll();
    notebook.activeCellIndex = index;
    try {
      await notebook.scrollToCell(notebook.widgets[index], 'center');
    } catch {
      // the cell is selected even when the scroll could not be animated
    }
    // select the cell, don't edit it (scrollToCell activates the cell, which focuses its
    // editor): stray typing must not change the analyst's cell
    notebook.mode = 'command';
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._follower?.dispose();
    this._follower = null;
    window.clearTimeout(this._executedTimer);
    window.clearTimeout(this._framesRetry);
    NotebookActions.executed.disconnect(this._onCellExecuted, this);
    Signal.clearData(this);
    super.dispose();
  }

  protected onAfterShow(): void {
    // cheap, and what the user expects when opening the sidebar after running cells
    void this.refresh();
    if (!this._profilesLoaded) {
      void this._loadProfiles();
    }
  }

  // ---- notebook tracking ---------------------------------------------------------------

  private _onCurrentChanged(_: unknown, panel: NotebookPanel | null): void {
    if (panel !== this._notebook) {
      this._setNotebook(panel);
    }
  }

  private _setNotebook(panel: NotebookPanel | null): void {
    const old = this._notebook;
    if (old) {
      this._questions.set(old, this._form.question);
      old.sessionContext.kernelChanged.disconnect(this._onKernelChanged, this);
      old.sessionContext.statusChanged.disconnect(this._onKernelStatus, this);
      old.disposed.disconnect(this._onNotebookDisposed, this);
    }
    this._notebook = panel;
    this._form.question = (panel && this._questions.get(panel)) ?? '';
    this._unfollow();
    this._notice.clear();
    this._form.picker.setFrames([]);
    this._framesLoaded = false;
    if (panel) {
      panel.sessionContext.kernelChanged.connect(this._onKernelChanged, this);
      panel.sessionContext.statusChanged.connect(this._onKernelStatus, this);
      panel.disposed.connect(this._onNotebookDisposed, this);
      void panel.sessionContext.ready.then(() => {
        if (this._notebook === panel) {
          this._update();
          void (this.isVisible ? this.refresh() : this._loadRun(panel));
        }
      });
    }
    this._update();
  }

  private _onNotebookDisposed(): void {
    if (this._notebook?.isDisposed) {
      const current = this._notebooks.currentWidget;
      this._setNotebook(current && !current.isDisposed ? current : null);
    }
  }

  private _onKernelChanged(): void {
    this._form.picker.setFrames([]);
    this._framesLoaded = false;
    this._update();
    if (this.isVisible && this._notebook) {
      void this._loadFrames(this._notebook);
    }
  }

  private _onKernelStatus(): void {
    const status = this._notebook?.sessionContext.kernelDisplayStatus;
    const hadKernel = this._lastKernelKnown;
    this._lastKernelKnown = this._hasKernel();
    if (hadKernel !== this._lastKernelKnown || status === 'restarting' || status === 'dead') {
      this._update();
    }
  }

  private _onCellExecuted(_: unknown, args: { notebook: unknown }): void {
    const notebook = this._notebook;
    if (!notebook || args.notebook !== notebook.content) {
      return;
    }
    // a cell of the user's may have made a DataFrame, or started a run (%analyst)
    window.clearTimeout(this._executedTimer);
    this._executedTimer = window.setTimeout(() => {
      if (this._notebook !== notebook || this._active()) {
        return;
      }
      if (this.isVisible) {
        void this._loadFrames(notebook);
      }
      void this._loadRun(notebook);
    }, 400);
  }

  private _hasKernel(): boolean {
    const kernel = this._notebook?.sessionContext.session?.kernel;
    return !!kernel && kernel.status !== 'dead';
  }

  private _active(): boolean {
    return !!this._run && isActive(this._run.state);
  }

  // ---- data ----------------------------------------------------------------------------

  /**
   * List the kernel's DataFrames. A busy kernel (409: it is running a cell, e.g. the one a
   * stop just interrupted) is asked again a few times before the panel says so; frames
   * already listed stay listed meanwhile.
   */
  private async _loadFrames(panel: NotebookPanel, attempt = 0): Promise<void> {
    await panel.sessionContext.ready;
    if (this._notebook !== panel) {
      return;
    }
    window.clearTimeout(this._framesRetry);
    const picker = this._form.picker;
    if (!this._hasKernel()) {
      picker.setFrames([]);
      this._update();
      return;
    }
    picker.busy = true;
    try {
      const reply = await this._client.dataframes(panel.context.localPath);
      if (this._notebook === panel) {
        this._framesLoaded = true;
        picker.setFrames(reply.dataframes);
        this._notice.clear('frames');
      }
    } catch (error) {
      if (this._notebook !== panel) {
        return;
      }
      const busy = error instanceof AnalystApiError && error.status === 409;
      if (busy && attempt < FRAMES_RETRIES) {
        this._framesRetry = window.setTimeout(
          () => void this._loadFrames(panel, attempt + 1),
          1000 * (attempt + 1)
        );
        return;
      }
      if (!picker.frames.length) {
        picker.setFrames([], 'Could not list DataFrames');
      }
      this._notice.showMessage(Private.describe(error), 'frames');
    } finally {
      picker.busy = false;
      this._update();
    }
  }

  /** Show the newest run of this notebook, if the server has one we don't show yet. */
  private async _loadRun(panel: NotebookPanel): Promise<void> {
    let runs: IRunStatus[];
    try {
      runs = await this._client.runs();
    } catch (error) {
      console.warn('jupyter-analyst: could not list runs', error);
      return;
    }
    if (this._notebook !== panel || this._starting) {
      return;
    }
    const path = Private.normalize(panel.context.localPath);
    const newest = runs.find(r => Private.normalize(r.path) === path);
    if (!newest) {
      return;
    }
    const same = this._run?.run_id === newest.run_id;
    if (!same || (!this._follower?.connected && isActive(newest.state))) {
      this._follow(newest);
    }
  }

  private async _loadProfiles(): Promise<void> {
    try {
      const reply = await this._client.profiles();
      this._profilesLoaded = true;
      this._defaultProfile = reply.default;
      this._defaultReason = reply.reason;
      this._profileNames = reply.profiles.map(p => p.name);
    } catch {
      // optional information: the panel works without it
    }
    this._updateModelLine();
  }

  // ---- the followed run ----------------------------------------------------------------

  private _follow(status: IRunStatus): void {
    this._unfollow();
    this._followedActive = isActive(status.state);
    this._setRun(status);
    this._follower = new RunFollower(this._client, status.run_id, status.state, {
      reset: () => {
        this._steps.reset();
        this._finished = null;
      },
      event: event => this._onEvent(status.run_id, event),
      lost: message => this._notice.showMessage(message)
    });
  }

  /** Stop showing any run. */
  private _unfollow(): void {
    this._follower?.dispose();
    this._follower = null;
    this._run = null;
    this._finished = null;
    this._steps.reset();
    this._conclusions.clear();
    this._export.clear();
  }

  private _onEvent(runId: string, event: RunEvent): void {
    if (this._run?.run_id !== runId) {
      return;
    }
    if (event.type === 'status') {
      this._setRun(event.status);
      return;
    }
    if (event.type === 'step_started' && this._run && event.step > this._run.step) {
      this._run = { ...this._run, step: event.step };
    }
    this._steps.apply(event);
    if (event.type === 'run_finished') {
      this._finished = event;
      void this._showOutcome();
    }
    this._update();
  }

  private _setRun(status: IRunStatus): void {
    const previous = this._run;
    // a run seen active when the panel began to follow it ended in front of the user (a
    // replayed old run passes through its past states too, so they don't count)
    const endedHere = this._followedActive && previous?.run_id === status.run_id;
    // status frames after a run's first leave out the question, which never changes
    this._run =
      status.question === undefined && previous?.run_id === status.run_id
        ? { ...status, question: previous.question }
        : status;
    if (isActive(status.state) && previous?.run_id !== status.run_id && this._run.question) {
      this._form.question = this._run.question; // reattached (a reload): the run's own question
    }
    if (!isActive(status.state) && (previous?.state !== status.state || this._conclusions.isHidden)) {
      void this._showOutcome(endedHere);
      if (endedHere) {
        this._followedActive = false;
        if (this._notebook && this.isVisible) {
          void this._loadFrames(this._notebook); // the analysis may have made new frames
        }
      }
    }
    this._update();
  }

  /**
   * The conclusions section: the answer, or why there is none. `reveal` scrolls it into
   * view (a run that just ended in front of the user).
   */
  private async _showOutcome(reveal = false): Promise<void> {
    const run = this._run;
    const finished = this._finished;
    if (!run || isActive(run.state)) {
      return; // the final status frame follows run_finished; show it then
    }
    const parts: string[] = [stateLabel(run.state)];
    const reason = reasonLabel(finished?.reason ?? run.stop_reason);
    if (reason) {
      parts.push(reason);
    }
    if (finished) {
      parts.push(`${finished.steps} step${finished.steps === 1 ? '' : 's'}`);
      if (finished.seconds > 0) {
        parts.push(formatSeconds(finished.seconds));
      }
      if (finished.errors) {
        const s = finished.errors === 1 ? '' : 's';
        parts.push(`${finished.errors} error${s}, ${finished.errors_fixed} fixed`);
      }
      if (finished.cells_removed) {
        const n = finished.cells_removed;
        parts.push(`${n} failed cell${n === 1 ? '' : 's'} removed`);
      }
      if (finished.unverified?.length) {
        parts.push(formatUnverified(finished.unverified));
      }
    }
    let summary = parts.join(' · ');
    if (run.error) {
      summary += ` — ${run.error}`;
    } else if (finished?.detail && ['kernel_died', 'model_error'].includes(finished.reason)) {
      summary += ` — ${finished.detail}`;
    }
    await this._conclusions.setAnswer(finished?.answer ?? run.answer ?? null, summary);
    if (reveal && this._run === run) {
      this._conclusions.node.scrollIntoView?.({ block: 'start', behavior: 'smooth' });
    }
  }

  // ---- rendering -----------------------------------------------------------------------

  private _buildHeader(): Widget {
    const header = new Widget();
    header.addClass('jp-Analyst-header');
    const title = document.createElement('h2');
    title.className = 'jp-Analyst-title';
    title.textContent = 'Analyst';
    this._notebookLine.className = 'jp-Analyst-notebookLine';
    this._modelLine.className = 'jp-Analyst-modelLine';
    header.node.append(title, this._notebookLine, this._modelLine);
    return header;
  }

  private _updateModelLine(): void {
    const chosen = this._settings.profile.trim();
    let text = '';
    let title = '';
    if (chosen) {
      const known = !this._profileNames.length || this._profileNames.includes(chosen);
      text = `Model: ${chosen} (from settings)`;
      if (!known) {
        text += ' — not a profile this server knows';
      }
    } else if (this._defaultProfile) {
      text = `Model: ${this._defaultProfile}`;
      title = this._defaultReason;
    }
    this._modelLine.textContent = text;
    this._modelLine.title = title;
  }

  /** The empty state, or '' when there is none to show. */
  private _emptyText(): string {
    const notebook = this._notebook;
    if (!notebook) {
      return 'Open a notebook to start. The analyst works on a pandas DataFrame in the notebook’s kernel and writes its cells into that notebook.';
    }
    if (!this._hasKernel()) {
      return notebook.sessionContext.kernelDisplayStatus === 'dead'
        ? 'The kernel of this notebook died. Restart it, re-create your DataFrame, then press refresh.'
        : 'This notebook has no running kernel. Select a Python kernel, load your data into a DataFrame, then press refresh.';
    }
    if (this._framesLoaded && !this._form.picker.frames.length && !this._active()) {
      return 'No DataFrame in this kernel yet. Run a cell that creates one, e.g. df = pd.read_csv("data.csv"), then press refresh.';
    }
    return '';
  }

  private _update(): void {
    const notebook = this._notebook;
    const run = this._run;
    const active = this._active();
    const hasKernel = this._hasKernel();

    this._notebookLine.textContent = notebook
      ? `Notebook: ${baseName(notebook.context.localPath)}`
      : '';
    this._notebookLine.title = notebook?.context.localPath ?? '';

    const empty = this._emptyText();
    this._empty.node.textContent = empty;
    this._empty.setHidden(!empty);
    this._empty.toggleClass('jp-mod-hint', !!notebook && hasKernel);

    this._form.setHidden(!notebook || (!hasKernel && !run));
    this._form.render({
      active,
      starting: this._starting,
      canAnalyze: this.canAnalyze,
      canStop: this.canStop
    });
    this._runBar.render(run);
    this._steps.setHidden(!run);
    this._export.setHidden(!run || active);
    this._export.render(this.canExport, this._exporting);
    this._stateChanged.emit();
  }

  private _client: AnalystClient;
  private _notebooks: INotebookSource;
  private _activate: (id: string) => void;
  private _settings: IAnalystSettings;

  private _notebook: NotebookPanel | null = null;
  /** The question typed for each notebook (the box is one, the notebooks many). */
  private _questions = new WeakMap<NotebookPanel, string>();
  private _run: IRunStatus | null = null;
  private _finished: IRunFinishedEvent | null = null;
  private _follower: RunFollower | null = null;
  private _followedActive = false;
  private _executedTimer = 0;
  private _framesRetry = 0;
  private _starting = false;
  private _exporting = false;
  private _framesLoaded = false;
  private _lastKernelKnown = false;
  private _profilesLoaded = false;
  private _defaultProfile = '';
  private _defaultReason = '';
  private _profileNames: string[] = [];

  private _notebookLine = document.createElement('div');
  private _modelLine = document.createElement('div');
  private _notice = new ErrorNotice();
  private _empty = new Widget();
  private _form = new RunForm();
  private _runBar = new RunBar();
  private _steps = new StepList();
  private _conclusions: ConclusionsView;
  private _export: ExportView;
  private _stateChanged = new Signal<this, void>(this);
}

namespace Private {
  /** A readable one-paragraph message for any error the panel meets. */
  export function describe(error: unknown): string {
    if (error instanceof AnalystApiError) {
      return error.message;
    }
    if (error instanceof Error) {
      return error.message.split('\n')[0];
    }
    return String(error);
  }

  export function normalize(path: string): string {
    return path.replace(/^\/+|\/+$/g, '');
  }
}
