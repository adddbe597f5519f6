/**
 * The Analyst sidebar: pick a DataFrame of the current notebook's kernel, ask a question,
 * start a run, watch its steps live, stop it, read the conclusions, export the report.
 *
 * The panel follows the current notebook. For that notebook it shows the newest run the
 * server knows (started here, by the `%analyst` magic, or before a page reload): the event
 * stream replays a run's past events before the live ones, so the list is rebuilt from it.
 * Below it, the notebook's runs: any of them can be shown, exported or discarded, and an
 * ended run can be followed up in the same kernel.
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
import { emptyText, outcomeSummary } from './format';
import { FrameLoader } from './frames';
import { PanelHeader } from './header';
import { selectCell } from './reveal';
import { RunForm } from './form';
import { analystIcon } from './icon';
import { ViewFollower } from './autofollow';
import { NotebookRuns } from './notebookruns';
import { ErrorNotice } from './notice';
import { RunBar } from './runbar';
import {
  IExportReply,
  IRunFinishedEvent,
  IRunRequest,
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
  /** Where a new run's cells go: after the active cell, or at the end of the notebook. */
  appendAt: 'end' | 'active-cell';
}

export const DEFAULT_SETTINGS: IAnalystSettings = {
  profile: '',
  maxSteps: 40,
  keepFailedCells: false,
  appendAt: 'end'
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

    this._header = new PanelHeader(this._client);
    this._frames = new FrameLoader(this._client, this._form.picker, this._notice, () =>
      this._update()
    );
    this._header.profile = this._settings.profile;
    this.addWidget(this._header);
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
    this._runs = new NotebookRuns({
      client: this._client,
      notice: this._notice,
      request: (action, run) => void this._onRunRequest(action, run),
      changed: () => void (this._notebook && this._loadRun(this._notebook))
    });
    this.addWidget(this._runs.list);

    this._form.analyzeRequested.connect(() => void this.analyze());
    this._form.followUpRequested.connect(() => void this.followUp());
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
    this._header.profile = this._settings.profile;
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

  /** The shown run has ended and its cells are still in the notebook: it can go on. */
  get canFollowUp(): boolean {
    const run = this._run;
    return !!run && !isActive(run.state) && !run.discarded && this.canAnalyze;
  }

  /** The runs of the current notebook, newest first. */
  get runs(): IRunStatus[] {
    return this._runs.runs;
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
    const active = notebook.content.activeCell?.model.id;
    await this._start(notebook, {
      variable: name,
      question: text || null,
      ...(this._settings.appendAt === 'active-cell' && active ? { after_cell_id: active } : {})
    });
  }

  /**
   * Continue the shown run (it has ended) with `question` (default: the question box), in
   * the same kernel, with its conclusions and cells in the model's context; the new cells
   * go after the earlier run's.
   */
  async followUp(question?: string): Promise<void> {
    const notebook = this._notebook;
    const run = this._run;
    if (!notebook || !run || !this.canFollowUp) {
      return;
    }
    const text = (question ?? this._form.question).trim();
    if (!text || text === run.question?.trim()) {
      this._notice.showMessage(
        'Type the follow-up question first, e.g. “now break it down by month”.'
      );
      return;
    }
    await this._start(notebook, { follow_up: run.run_id, question: text });
  }

  /** POST the run; the previous run leaves the panel at once (no stale status meanwhile). */
  private async _start(notebook: NotebookPanel, request: Partial<IRunRequest>): Promise<void> {
    this._notice.clear();
    this._starting = true;
    this._unfollow();
    this._update();
    try {
      const status = await this._client.startRun({
        path: notebook.context.localPath,
        max_steps: this._settings.maxSteps > 0 ? this._settings.maxSteps : null,
        profile: this._settings.profile.trim() || null,
        ...(this._settings.keepFailedCells ? { keep_failed_cells: true } : {}),
        ...request
      });
      if (this._notebook === notebook) {
        this._seen.add(status.run_id);
        this._follow(status);
      }
    } catch (error) {
      this._notice.showMessage(Private.describe(error));
    } finally {
      this._starting = false;
      this._update();
      if (this._notebook === notebook) {
        void this._loadRun(notebook); // the new run in the list, or the previous one back
      }
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

  /** Write the report of the shown run next to the notebook and show where it went. */
  async exportReport(): Promise<IExportReply | null> {
    const run = this._run;
    if (!run || isActive(run.state)) {
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

  /** Bring the notebook of the run (or `path`) forward and select the cell `cellId`. */
  async revealCell(cellId: string, path?: string): Promise<void> {
    path = path ?? this._run?.path ?? this._notebook?.context.localPath;
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
    this._activate(panel.id);
    const problem = await selectCell(panel, cellId);
    if (problem) {
      this._notice.showMessage(problem);
    } else {
      this._notice.clear();
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._follower?.dispose();
    this._follower = null;
    this._view?.dispose();
    window.clearTimeout(this._executedTimer);
    this._frames.dispose();
    NotebookActions.executed.disconnect(this._onCellExecuted, this);
    Signal.clearData(this);
    super.dispose();
  }

  protected onAfterShow(): void {
    // cheap, and what the user expects when opening the sidebar after running cells
    void this.refresh();
    void this._header.loadProfiles();
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
    this._runs.clear();
    this._seen = new Set();
    this._notice.clear();
    this._frames.reset();
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
    this._frames.reset();
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

  /** List the kernel's DataFrames (``FrameLoader``), unless it has none to list. */
  private async _loadFrames(panel: NotebookPanel): Promise<void> {
    await panel.sessionContext.ready;
    if (this._notebook !== panel) {
      return;
    }
    if (!this._hasKernel()) {
      this._frames.reset();
      this._update();
      return;
    }
    await this._frames.load(panel.context.localPath, () => this._notebook === panel);
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
    this._runs.setRuns(runs, panel.context.localPath, this._run?.run_id ?? null);
    const listed = this._runs.runs.find(r => r.run_id === this._run?.run_id);
    if (this._run && listed && !!listed.discarded !== !!this._run.discarded) {
      this._run = { ...this._run, discarded: listed.discarded }; // discarded or restored
      this._update();
    }
    const newest = this._runs.runs[0];
    if (!newest) {
      return;
    }
    // A run the panel has not seen (the magic's, one from before a reload) is shown; an
    // older run the user chose to show stays shown.
    const fresh = !this._seen.has(newest.run_id);
    for (const run of this._runs.runs) {
      this._seen.add(run.run_id);
    }
    const same = this._run?.run_id === newest.run_id;
    if ((fresh && !same) || !this._run || (same && !this._follower?.connected && isActive(newest.state))) {
      this._follow(newest);
    }
  }

  /** A button of the run list: show, go to the first cell, or export that run. */
  private async _onRunRequest(action: 'show' | 'jump' | 'export', run: IRunStatus): Promise<void> {
    if (action === 'jump') {
      await this.revealCell(run.cells[0], run.path);
      return;
    }
    if (this._run?.run_id !== run.run_id) {
      this._follow(run);
    }
    if (action === 'export') {
      await this.exportReport();
    }
  }

  // ---- the followed run ----------------------------------------------------------------

  private _follow(status: IRunStatus): void {
    this._unfollow();
    this._followedActive = isActive(status.state);
    if (this._followedActive && this._notebook) {
      this._view = new ViewFollower(this._notebook);
    }
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
    this._view?.dispose();
    this._view = null;
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
    if (event.type === 'cell_added' && this._run && isActive(this._run.state)) {
      this._view?.cellAdded(event.cell_id);
    }
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
    this._runs.update(this._run, this._run.run_id);
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
    const summary = outcomeSummary(run, finished);
    await this._conclusions.setAnswer(finished?.answer ?? run.answer ?? null, summary);
    if (reveal && this._run === run) {
      this._conclusions.node.scrollIntoView?.({ block: 'start', behavior: 'smooth' });
    }
  }

  // ---- rendering -----------------------------------------------------------------------

  /** The empty state, or '' when there is none to show. */
  private _emptyText(): string {
    const notebook = this._notebook;
    return emptyText({
      notebook: !!notebook,
      kernel: this._hasKernel()
        ? 'running'
        : notebook?.sessionContext.kernelDisplayStatus === 'dead'
          ? 'dead'
          : 'none',
      noFrames: this._frames.loaded && !this._form.picker.frames.length && !this._active()
    });
  }

  private _update(): void {
    const notebook = this._notebook;
    const run = this._run;
    const active = this._active();
    const hasKernel = this._hasKernel();

    this._header.notebookPath = notebook?.context.localPath ?? '';

    const empty = this._emptyText();
    this._empty.node.textContent = empty;
    this._empty.setHidden(!empty);
    this._empty.toggleClass('jp-mod-hint', !!notebook && hasKernel);

    this._form.setHidden(!notebook || (!hasKernel && !run));
    this._form.render({
      active,
      starting: this._starting,
      canAnalyze: this.canAnalyze,
      canStop: this.canStop,
      canFollowUp: this.canFollowUp
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
  private _view: ViewFollower | null = null;
  /** Runs of this notebook the panel has listed: a new one (the magic's) is shown. */
  private _seen = new Set<string>();
  private _runs: NotebookRuns;
  private _followedActive = false;
  private _executedTimer = 0;
  private _starting = false;
  private _exporting = false;
  private _lastKernelKnown = false;

  private _header: PanelHeader;
  private _frames: FrameLoader;
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
