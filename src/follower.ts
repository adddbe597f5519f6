/**
 * Follows one run's event stream (`runs/{id}/events`) and keeps following it.
 *
 * The server replays a run's past events, sends the live ones, and closes the socket after
 * the last. A socket that closes earlier (server restart, proxy timeout) is reopened while
 * the run is still active; the replay then starts from the beginning, so the consumer is
 * told to reset first. Once the run is over, its final status is delivered as a `status`
 * event, whether or not the socket said so.
 */

import { IDisposable } from '@lumino/disposable';

import { AnalystClient, IEventStream } from './api';
import { IRunStatus, isActive, RunEvent } from './schema';

const MAX_RECONNECTS = 5;

export namespace RunFollower {
  export interface IHandlers {
    /** Forget what was shown: a replay from the first event follows. */
    reset: () => void;
    event: (event: RunEvent) => void;
    /** The stream could not be resumed; the message is readable. */
    lost: (message: string) => void;
  }
}

export class RunFollower implements IDisposable {
  constructor(
    private _client: AnalystClient,
    readonly runId: string,
    state: IRunStatus['state'],
    private _handlers: RunFollower.IHandlers
  ) {
    this._state = state;
    this._open();
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** True while a socket is open. */
  get connected(): boolean {
    return this._stream !== null;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    window.clearTimeout(this._timer);
    this._stream?.close();
    this._stream = null;
  }

  private _open(): void {
    this._stream = this._client.connect(this.runId, {
      onEvent: event => {
        if (this._disposed) {
          return;
        }
        if (event.type === 'status') {
          this._state = event.status.state;
        } else if (event.type === 'run_finished') {
          this._finished = true;
        }
        this._handlers.event(event);
      },
      onClose: clean => this._onClose(clean)
    });
  }

  private _onClose(clean: boolean): void {
    this._stream = null;
    if (this._disposed || (this._finished && !isActive(this._state))) {
      return;
    }
    const delay = clean ? 200 : Math.min(5000, 500 * 2 ** this._reconnects);
    this._timer = window.setTimeout(() => void this._resume(), delay);
  }

  /** Ask how the run stands; reopen the stream while it goes on. */
  private async _resume(): Promise<void> {
    let status: IRunStatus;
    try {
      status = await this._client.run(this.runId);
    } catch (error) {
      if (!this._disposed) {
        this._handlers.lost(
          'Lost the connection to the run: ' + ((error as Error)?.message ?? String(error))
        );
      }
      return;
    }
    if (this._disposed) {
      return;
    }
    if (isActive(status.state) && this._reconnects < MAX_RECONNECTS) {
      this._reconnects += 1;
      this._finished = false;
      this._handlers.reset();
      this._open();
      return;
    }
    this._state = status.state;
    this._handlers.event({ type: 'status', status });
    if (isActive(status.state)) {
      this._handlers.lost(
        'Lost the live view of the run (it goes on in the notebook); press refresh to follow it again.'
      );
    }
  }

  private _stream: IEventStream | null = null;
  private _state: IRunStatus['state'];
  private _finished = false;
  private _reconnects = 0;
  private _timer = 0;
  private _disposed = false;
}
