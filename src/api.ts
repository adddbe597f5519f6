/**
 * The client of the server extension at `{base_url}jupyter-analyst/` (docs/server-api.md).
 *
 * REST calls go through `ServerConnection.makeRequest` (token, XSRF cookie and base URL
 * handled as for JupyterLab's own services); the event stream is a plain WebSocket built
 * the way `@jupyterlab/services` builds kernel sockets.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { messageFromBody } from './format';
import {
  IDataFramesReply,
  IDiscardReply,
  IDiscardRequest,
  IExportReply,
  IProfilesReply,
  IRunRequest,
  IRunStatus,
  RunEvent
} from './schema';

/** The URL namespace of the server extension. */
export const API_NAMESPACE = 'jupyter-analyst';

/** An error reply of the API, carrying the server's readable `message`. */
export class AnalystApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string = ''
  ) {
    super(message);
    this.name = 'AnalystApiError';
  }
}

/**
 * The readable text of an error reply: the `message` field of the JSON body when there is
 * one, else a short line built from the status. Never a stack trace.
 */
export async function errorMessage(response: Response): Promise<string> {
  let text = '';
  try {
    text = await response.text();
  } catch {
    // the body could not be read; fall back to the status line
  }
  return messageFromBody(text, response.status, response.statusText);
}

/** Options of {@link AnalystClient.connect}. */
export interface IEventStreamHandlers {
  onEvent: (event: RunEvent) => void;
  /** The socket closed; `clean` is true when the server closed it normally. */
  onClose?: (clean: boolean) => void;
}

/** A live connection to `runs/{id}/events`. */
export interface IEventStream {
  readonly runId: string;
  close(): void;
}

export class AnalystClient {
  constructor(
    readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  /** The DataFrames in the kernel of notebook `path`. */
  async dataframes(path: string): Promise<IDataFramesReply> {
    return this.request<IDataFramesReply>(
      'dataframes',
      { method: 'GET' },
      URLExt.objectToQueryString({ path })
    );
  }

  async profiles(): Promise<IProfilesReply> {
    return this.request<IProfilesReply>('profiles', { method: 'GET' });
  }

  async startRun(body: IRunRequest): Promise<IRunStatus> {
    return this.request<IRunStatus>('runs', {
      method: 'POST',
      body: JSON.stringify(body)
    });
  }

  /** Every run of this server, newest first. */
  async runs(): Promise<IRunStatus[]> {
    return this.request<IRunStatus[]>('runs', { method: 'GET' });
  }

  async run(runId: string): Promise<IRunStatus> {
    return this.request<IRunStatus>(
      URLExt.join('runs', encodeURIComponent(runId)),
      { method: 'GET' }
    );
  }

  async stop(runId: string): Promise<IRunStatus | null> {
    return this.request<IRunStatus | null>(
      URLExt.join('runs', encodeURIComponent(runId), 'stop'),
      { method: 'POST', body: '{}' }
    );
  }

  async exportReport(runId: string): Promise<IExportReply> {
    return this.request<IExportReply>(
      URLExt.join('runs', encodeURIComponent(runId), 'export'),
      { method: 'POST', body: '{}' }
    );
  }

  /**
   * Take a run's cells out of its notebook (kept for one `restore`); with `variables`, also
   * delete the variables it made from the kernel.
   */
  async discard(runId: string, variables: boolean): Promise<IDiscardReply> {
    const body: IDiscardRequest = { variables };
    return this.request<IDiscardReply>(
      URLExt.join('runs', encodeURIComponent(runId), 'discard'),
      { method: 'POST', body: JSON.stringify(body) }
    );
  }

  /** Undo a discard: the run's cells go back where they were. */
  async restore(runId: string): Promise<IDiscardReply> {
    return this.request<IDiscardReply>(
      URLExt.join('runs', encodeURIComponent(runId), 'restore'),
      { method: 'POST', body: '{}' }
    );
  }

  /** The websocket URL of a run's event stream, with the token as JupyterLab adds it. */
  eventsUrl(runId: string): string {
    const settings = this.serverSettings;
    let url = URLExt.join(
      settings.wsUrl,
      API_NAMESPACE,
      'runs',
      encodeURIComponent(runId),
      'events'
    );
    if (settings.appendToken && settings.token) {
      url += `?token=${encodeURIComponent(settings.token)}`;
    }
    return url;
  }

  /**
   * Open the event stream of a run: past events are replayed, then live ones follow, and the
   * server closes the socket after the run's last event.
   */
  connect(runId: string, handlers: IEventStreamHandlers): IEventStream {
    const WS = this.serverSettings.WebSocket;
    const socket = new WS(this.eventsUrl(runId));
    let closedByUs = false;
    socket.onmessage = (msg: MessageEvent) => {
      if (typeof msg.data !== 'string') {
        return;
      }
      let event: RunEvent;
      try {
        event = JSON.parse(msg.data);
      } catch {
        console.warn('jupyter-analyst: ignoring a frame that is not JSON');
        return;
      }
      handlers.onEvent(event);
    };
    socket.onclose = (ev: CloseEvent) => {
      if (!closedByUs) {
        handlers.onClose?.(ev.code === 1000 || ev.code === 1001);
      }
    };
    socket.onerror = () => {
      // onclose follows with the details; nothing to do here
    };
    return {
      runId,
      close: () => {
        closedByUs = true;
        socket.onmessage = null;
        socket.close();
      }
    };
  }

  private async request<T>(
    endpoint: string,
    init: RequestInit,
    query = ''
  ): Promise<T> {
    const settings = this.serverSettings;
    const url = URLExt.join(settings.baseUrl, API_NAMESPACE, endpoint) + query;
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, settings);
    } catch (error) {
      throw new AnalystApiError(
        'The Jupyter server could not be reached: ' +
          ((error as Error)?.message ?? String(error)),
        0
      );
    }
    if (!response.ok) {
      let reason = '';
      const message = await errorMessage(response.clone());
      try {
        reason = (await response.json())?.reason ?? '';
      } catch {
        reason = '';
      }
      throw new AnalystApiError(message, response.status, reason || '');
    }
    const text = await response.text();
    if (!text) {
      return null as T;
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new AnalystApiError(
        `The server sent a reply that is not JSON (${endpoint}).`,
        response.status
      );
    }
  }
}
