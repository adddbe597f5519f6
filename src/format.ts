/**
 * Pure text helpers of the sidebar (no DOM, no JupyterLab imports), so they can be tested
 * with node alone.
 */

import { CellRole, IRunFinishedEvent, RunState, StopReason } from './schema';

const MAX_SUMMARY = 90;

function clip(text: string, max = MAX_SUMMARY): string {
  return text.length > max ? text.slice(0, max - 1).trimEnd() + '…' : text;
}

function nonEmptyLines(source: string): string[] {
  return source
    .split(/\r?\n/)
    .map(line => line.trim())
    .filter(line => line.length > 0);
}

/**
 * What a cell does, in one short line: the first heading of a markdown cell (else its first
 * line); for a code cell its leading comment, else what its calls do (`codeAction`), else
 * its first line.
 */
export function summarizeCell(
  source: string | null | undefined,
  cellType: 'code' | 'markdown',
  role?: CellRole
): string {
  const lines = nonEmptyLines(source ?? '');
  if (role === 'conclusions') {
    const heading = lines.find(l => l.startsWith('#'));
    return heading ? clip(stripHeading(heading)) : 'Conclusions';
  }
  if (!lines.length) {
    return cellType === 'code' ? '(empty code cell)' : '(empty markdown cell)';
  }
  if (cellType === 'markdown') {
    const heading = lines.find(l => /^#{1,6}\s/.test(l));
    return clip(stripHeading(heading ?? lines[0]));
  }
  const comment = lines[0].match(/^#+\s*(.+)$/);
  if (comment) {
    return clip(comment[1]);
  }
  return clip(codeAction(lines) ?? lines[0]);
}

/** Figure plumbing and styling: not what a chart cell draws. */
const SETUP_CALLS = new Set([
  'subplots', 'figure', 'show', 'tight_layout', 'title', 'xlabel', 'ylabel', 'xticks', 'yticks',
  'legend', 'close', 'savefig', 'suptitle', 'set_theme', 'set_style', 'set_palette', 'despine'
]);

/** Calls that say what a cell is for, first match wins (plots before the data they draw). */
const ACTIONS: [RegExp, string][] = [
  [/\.plot(\.\w+)?\(/, 'Chart'],
  [/\bread_(csv|parquet|excel|json|table)\(/, 'Load the data'],
  [/\.groupby\(|\.pivot_table\(|\bpd\.crosstab\(/, 'Compare groups'],
  [/\.corr\(/, 'Correlations'],
  [/\.(isna|isnull|notna)\(\)|\.dropna\(|\.fillna\(/, 'Missing values'],
  [/\bpd\.to_datetime\(|\.dt\./, 'Dates'],
  [/\.value_counts\(/, 'Value counts'],
  [/\.describe\(|\.(mean|median|std|quantile)\(/, 'Summary statistics'],
  [/\.dtypes\b|\.info\(|\.shape\b|\.head\(/, 'First look at the data']
];

/**
 * What a code cell does, from its calls: "Chart: histplot", "Compare groups"; null when no
 * call says (then its first line stands). Step labels read better than `target = 'x'`.
 */
export function codeAction(lines: string[]): string | null {
  const code = lines.filter(line => !line.startsWith('#')).join('\n');
  for (const m of code.matchAll(/\b(?:sns|plt)\.(\w+)\(/g)) {
    if (!SETUP_CALLS.has(m[1])) {
      return `Chart: ${m[1]}`;
    }
  }
  for (const [pattern, label] of ACTIONS) {
    if (pattern.test(code)) {
      return label;
    }
  }
  if (lines.every(line => /^(import|from)\s/.test(line))) {
    return 'Imports';
  }
  return null;
}

function stripHeading(line: string): string {
  return line
    .replace(/^#{1,6}\s*/, '')
    .replace(/\*\*|__|`/g, '')
    .replace(/^[*_]+|[*_]+$/g, '') // a whole line in italics, like the stop note
    .trim();
}

/** "0.4 s", "12 s", "2 min 5 s" */
export function formatSeconds(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)} s`;
  }
  if (seconds < 60) {
    return `${Math.round(seconds)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds - minutes * 60);
  return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
}

/** "344 × 8" */
export function formatShape(shape: [number, number] | number[]): string {
  const [rows, cols] = shape;
  return `${rows.toLocaleString('en-US')} × ${cols}`;
}

/** "1.2 MB" */
export function formatBytes(bytes: number): string {
  if (!isFinite(bytes) || bytes < 0) {
    return '';
  }
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value < 10 && unit > 0 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

const STATE_LABELS: Record<RunState, string> = {
  starting: 'Starting',
  running: 'Running',
  finished: 'Finished',
  stopping: 'Stopping',
  stopped: 'Stopped',
  failed: 'Failed',
  interrupted: 'Interrupted'
};

export function stateLabel(state: RunState): string {
  return STATE_LABELS[state] ?? state;
}

const REASON_LABELS: Record<StopReason, string> = {
  final_answer: 'conclusions written',
  max_steps: 'step budget used up before the conclusions',
  max_tokens: 'token budget used up before the conclusions',
  max_time: 'time budget used up before the conclusions',
  kernel_died: 'the kernel died',
  model_error: 'the model backend failed',
  stopped: 'stopped by you'
};

/** Why a run ended, in words. */
export function reasonLabel(reason: string | null | undefined): string {
  if (!reason) {
    return '';
  }
  return REASON_LABELS[reason as StopReason] ?? reason.replace(/_/g, ' ');
}

/**
 * The numbers a conclusions cell states that no output supports, as a short note ('' when
 * there are none): "2 unverified numbers: 3.5, 12".
 */
export function formatUnverified(numbers: readonly string[] | null | undefined): string {
  const list = numbers ?? [];
  if (!list.length) {
    return '';
  }
  const shown = list.slice(0, 6).join(', ') + (list.length > 6 ? ', …' : '');
  const what = list.length === 1 ? 'unverified number' : 'unverified numbers';
  return `${list.length} ${what}: ${shown}`;
}

/** The last path segment of an API path. */
export function baseName(path: string): string {
  const parts = path.split('/');
  return parts[parts.length - 1] || path;
}

/**
 * The readable text of an error reply body: its `message` (else `reason`) field when it is
 * JSON, else a short line built from the status. Never a traceback.
 */
export function messageFromBody(
  text: string,
  status: number,
  statusText = ''
): string {
  if (text) {
    try {
      const body = JSON.parse(text);
      if (body && typeof body.message === 'string' && body.message.trim()) {
        return firstLines(body.message.trim());
      }
      if (body && typeof body.reason === 'string' && body.reason.trim()) {
        return firstLines(body.reason.trim());
      }
    } catch {
      // not JSON: an HTML error page or a proxy's text
    }
  }
  switch (status) {
    case 401:
    case 403:
      return 'Not allowed: the Jupyter server refused the request (log in again?).';
    case 404:
      return 'Not found: is the jupyter-analyst server extension installed and enabled?';
    case 0:
      return 'The Jupyter server could not be reached.';
    default:
      return `The server answered ${status}${statusText ? ' ' + statusText : ''}.`;
  }
}

/** Keep a message readable: drop anything that looks like a traceback, cap its length. */
function firstLines(message: string): string {
  const cut = message.indexOf('Traceback (most recent call last)');
  let text = cut > 0 ? message.slice(0, cut).trim() : message;
  if (text.length > 600) {
    text = text.slice(0, 600) + '…';
  }
  return text;
}

/** A run in the notebook's run list: its question, or what it analysed without one. */
export function runTitle(run: {
  question?: string | null;
  variable: string;
  follows?: string | null;
}): string {
  const question = (run.question ?? '').split(/\s+/).join(' ').trim();
  const text = question ? `“${clip(question, 80)}”` : `General analysis of ${run.variable}`;
  return run.follows ? `Follow-up: ${text}` : text;
}

/** How far a run got and how it ended: "Finished · 12 steps · conclusions written". */
export function runSummary(run: {
  state: RunState;
  step: number;
  stop_reason?: string | null;
  discarded?: boolean;
}): string {
  const parts = [stateLabel(run.state), `${run.step} step${run.step === 1 ? '' : 's'}`];
  const reason = reasonLabel(run.stop_reason);
  if (reason && run.stop_reason !== 'stopped') {
    parts.push(reason);
  }
  if (run.discarded) {
    parts.push('discarded');
  }
  return parts.join(' · ');
}

/**
 * The line under a run's conclusions: its state, why it ended, steps, time, errors, the
 * failed cells removed and the unverified numbers; then the error of a failed run.
 */
export function outcomeSummary(
  run: { state: RunState; stop_reason?: string | null; error?: string | null },
  finished: IRunFinishedEvent | null
): string {
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
  return summary;
}

/** What the sidebar says when there is nothing to do yet, or '' when there is. */
export function emptyText(state: {
  notebook: boolean;
  kernel: 'running' | 'dead' | 'none';
  noFrames: boolean;
}): string {
  if (!state.notebook) {
    return 'Open a notebook to start. The analyst works on a pandas DataFrame in the notebook’s kernel and writes its cells into that notebook.';
  }
  if (state.kernel === 'dead') {
    return 'The kernel of this notebook died. Restart it, re-create your DataFrame, then press refresh.';
  }
  if (state.kernel === 'none') {
    return 'This notebook has no running kernel. Select a Python kernel, load your data into a DataFrame, then press refresh.';
  }
  if (state.noFrames) {
    return 'No DataFrame in this kernel yet. Run a cell that creates one, e.g. df = pd.read_csv("data.csv"), then press refresh.';
  }
  return '';
}
