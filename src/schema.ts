/**
 * Wire types of the server API (docs/server-api.md).
 *
 * These mirror the pydantic models in `jupyter_analyst/server/schema.py` field for field,
 * and the event dicts of `jupyter_analyst.agent.wire.event_to_dict`. Keep them in step:
 * the server is the source of truth.
 */

/** One DataFrame found in a notebook's kernel. */
export interface IDataFrameInfo {
  name: string;
  /** [rows, columns] */
  shape: [number, number];
  /** The first 50 column names. */
  columns: string[];
  memory_bytes: number;
}

/** GET dataframes?path=P */
export interface IDataFramesReply {
  path: string;
  kernel_id: string;
  dataframes: IDataFrameInfo[];
  /** The analyst's active run on this kernel: the list holds only the frame it analyses. */
  run_id?: string | null;
}

export type ProfileKind = 'embedded' | 'openai' | 'baseline';

export interface IProfileInfo {
  name: string;
  description: string;
  kind: ProfileKind;
  memory_gb: number;
}

/** GET profiles */
export interface IProfilesReply {
  default: string;
  reason: string;
  profiles: IProfileInfo[];
}

/** POST runs */
export interface IRunRequest {
  path: string;
  /** The DataFrame; a follow-up may leave it out (its earlier run's frame). */
  variable?: string | null;
  /** At most 4,000 characters (a longer one is a 400). */
  question?: string | null;
  /** 1..200 */
  max_steps?: number | null;
  profile?: string | null;
  /** Insert the agent's cells after this cell (the magic's); the panel appends. */
  after_cell_id?: string | null;
  /** Keep failed cells a later fix superseded (by default the run's end removes them). */
  keep_failed_cells?: boolean;
  /** The asking kernel (the magic's): the run goes to the notebook its session runs now. */
  kernel_id?: string | null;
  /**
   * Continue this earlier run of the notebook (a run id, or 'latest'): same kernel, its
   * conclusions and cells in context, its cells after the earlier run's last one.
   */
  follow_up?: string | null;
}

export type RunState =
  | 'starting'
  | 'running'
  | 'finished'
  | 'stopping'
  | 'stopped'
  | 'failed'
  | 'interrupted';

/** The states after which nothing more happens in a run. */
export const FINAL_STATES: ReadonlyArray<RunState> = [
  'finished',
  'stopped',
  'failed',
  'interrupted'
];

export function isActive(state: RunState): boolean {
  return !FINAL_STATES.includes(state);
}

/**
 * GET runs/{id}, and the reply of POST runs (every field present). A run's `status` frames
 * after its first leave out `question`, which never changes: keep the one seen first.
 */
export interface IRunStatus {
  run_id: string;
  path: string;
  variable: string;
  question?: string | null;
  state: RunState;
  step: number;
  max_steps: number;
  policy: string;
  /** ISO time */
  started: string;
  ended: string | null;
  stop_reason: string | null;
  answer: string | null;
  error: string | null;
  /** Ids of the agent's cells in the notebook document. */
  cells: string[];
  /** Why a starting run has not begun (the user's cell still runs); Stop cancels it. */
  waiting?: string | null;
  /** The earlier run this one follows up. */
  follows?: string | null;
  /** Its cells were taken out of the notebook (restore puts them back). */
  discarded?: boolean;
  /** The names its cells bound in the kernel, once it ended (discard deletes them). */
  created?: string[];
}

/** POST runs/{id}/discard `{variables}`. */
export interface IDiscardRequest {
  /** Also delete the variables the run made from the kernel (modules stay); default true. */
  variables?: boolean;
}

/** What POST runs/{id}/discard took out, or POST runs/{id}/restore put back. */
export interface IDiscardReply {
  run_id: string;
  cells: number;
  /** Names deleted from the kernel (a restore can't bring them back). */
  variables?: string[];
  /** What was left as it was, and why. */
  note?: string;
}

/** POST runs/{id}/export: API paths of the written report. */
export interface IExportReply {
  ipynb: string;
  html: string;
}

/** The error body of every non-2xx reply (jupyter_server's APIHandler shape). */
export interface IErrorReply {
  message: string;
  reason?: string | null;
}

/** Why a run ended (`jupyter_analyst.agent.types.StopReason`). */
export type StopReason =
  | 'final_answer'
  | 'max_steps'
  | 'max_tokens'
  | 'max_time'
  | 'kernel_died'
  | 'model_error'
  | 'stopped';

export type CellRole =
  | 'header'
  | 'setup'
  | 'code'
  | 'markdown'
  | 'conclusions'
  | 'note';

/** `stopped`: the user stopped the run while the cell ran (no error, no traceback kept). */
export type CellStatus = 'ok' | 'error' | 'timeout' | 'dead' | 'stopped';

// ---- websocket frames: runs/{id}/events --------------------------------------------------

export interface IStepStartedEvent {
  type: 'step_started';
  step: number;
}

export interface IModelRepliedEvent {
  type: 'model_replied';
  step: number;
  content: string;
  reasoning: string | null;
  calls: { name: string; id: string }[];
  /** Non-empty when the reply had no usable tool call. */
  problem: string;
  seconds: number;
  prompt_tokens: number;
  completion_tokens: number;
}

export interface ICellAddedEvent {
  type: 'cell_added';
  step: number;
  cell_id: string;
  cell_type: 'code' | 'markdown';
  source: string;
  role: CellRole;
  /** On a conclusions cell: stated numbers no output supports (the grounding gate's second look). */
  unverified: string[];
}

export interface ICellExecutedEvent {
  type: 'cell_executed';
  step: number;
  cell_id: string;
  status: CellStatus;
  execution_count: number | null;
  duration: number;
  error_name: string;
  error_value: string;
  figures: number;
  observation: string;
  fixed_error: boolean;
  /**
   * Added by the server: the user edited the agent's cell `copy_of` while it ran, so the
   * agent's code ran in this fresh copy after it (the edited cell stays the user's).
   */
  copy_of?: string;
}

export interface IRunFinishedEvent {
  type: 'run_finished';
  reason: StopReason;
  answer: string | null;
  steps: number;
  tokens: number;
  seconds: number;
  errors: number;
  errors_fixed: number;
  detail: string;
  /** Names the run added to the kernel; the user's own names are never rebound. */
  created: string[];
  /** Cells the pre-execution checks answered without running them. */
  prechecks: number;
  /** Times final_answer went back to the model for unsupported numbers. */
  grounding_returns: number;
  /** Replies or calls the loop could not act on. */
  malformed_calls: number;
  /** Failed cells a later fix superseded, removed from the finished notebook. */
  cells_removed: number;
  /** Numbers the conclusions state that no output or fact supports. */
  unverified: string[];
}

/** Agent cells dropped from the notebook: failed attempts a later cell fixed. */
export interface ICellsRemovedEvent {
  type: 'cells_removed';
  cell_ids: string[];
  reason: string;
}

/** Server-side frame sent on every state change of the run (`question` only in the first). */
export interface IStatusEvent {
  type: 'status';
  status: IRunStatus;
}

export type RunEvent =
  | IStepStartedEvent
  | IModelRepliedEvent
  | ICellAddedEvent
  | ICellExecutedEvent
  | ICellsRemovedEvent
  | IRunFinishedEvent
  | IStatusEvent;
