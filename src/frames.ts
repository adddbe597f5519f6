/**
 * Fills the DataFrame picker from the kernel. A busy kernel (409: it is running a cell, e.g.
 * the one a stop just interrupted) is asked again a few times before the panel says so;
 * frames already listed stay listed meanwhile.
 */

import { AnalystApiError, AnalystClient } from './api';
import { ErrorNotice } from './notice';
import { DataFramePicker } from './picker';

/** How often a busy kernel is asked again for its DataFrames. */
const RETRIES = 4;

export class FrameLoader {
  constructor(
    private _client: AnalystClient,
    private _picker: DataFramePicker,
    private _notice: ErrorNotice,
    private _changed: () => void
  ) {}

  /** True once the current kernel answered (an empty list then means: no frame yet). */
  get loaded(): boolean {
    return this._loaded;
  }

  /** Forget the frames (another notebook, another kernel). */
  reset(): void {
    window.clearTimeout(this._retry);
    this._picker.setFrames([]);
    this._loaded = false;
  }

  /**
   * List the frames of notebook `path`'s kernel; `current` says whether the panel still
   * shows that notebook when the answer comes.
   */
  async load(path: string, current: () => boolean, attempt = 0): Promise<void> {
    window.clearTimeout(this._retry);
    const picker = this._picker;
    picker.busy = true;
    try {
      const reply = await this._client.dataframes(path);
      if (current()) {
        this._loaded = true;
        // a run waiting for the user's cell has not read its frame yet: say why none is listed
        picker.setFrames(
          reply.dataframes,
          reply.run_id ? 'In use by the running analysis' : undefined
        );
        this._notice.clear('frames');
      }
    } catch (error) {
      if (!current()) {
        return;
      }
      const busy = error instanceof AnalystApiError && error.status === 409;
      if (busy && attempt < RETRIES) {
        this._retry = window.setTimeout(
          () => void this.load(path, current, attempt + 1),
          1000 * (attempt + 1)
        );
        return;
      }
      if (!picker.frames.length) {
        picker.setFrames([], 'Could not list DataFrames');
      }
      const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
      this._notice.showMessage(message, 'frames');
    } finally {
      picker.busy = false;
      this._changed();
    }
  }

  dispose(): void {
    window.clearTimeout(this._retry);
  }

  private _loaded = false;
  private _retry = 0;
}
