/**
 * The panel's header: its title, the notebook it works on, and the model new runs use (the
 * profile from the settings, else the server's default and why it chose it).
 */

import { Widget } from '@lumino/widgets';

import { AnalystClient } from './api';
import { baseName } from './format';

export class PanelHeader extends Widget {
  constructor(private _client: AnalystClient) {
    super();
    this.addClass('jp-Analyst-header');
    const title = document.createElement('h2');
    title.className = 'jp-Analyst-title';
    title.textContent = 'Analyst';
    this._notebookLine.className = 'jp-Analyst-notebookLine';
    this._modelLine.className = 'jp-Analyst-modelLine';
    this.node.append(title, this._notebookLine, this._modelLine);
  }

  /** The current notebook's API path ('' without one). */
  set notebookPath(path: string) {
    this._notebookLine.textContent = path ? `Notebook: ${baseName(path)}` : '';
    this._notebookLine.title = path;
  }

  /** The profile the settings name ('' lets the server pick). */
  set profile(name: string) {
    this._chosen = name.trim();
    this._render();
  }

  /** Ask the server once for its profiles and default (optional: the panel works without). */
  async loadProfiles(): Promise<void> {
    if (this._loaded) {
      return;
    }
    try {
      const reply = await this._client.profiles();
      this._loaded = true;
      this._default = reply.default;
      this._reason = reply.reason;
      this._names = reply.profiles.map(p => p.name);
    } catch {
      // optional information
    }
    this._render();
  }

  private _render(): void {
    let text = '';
    let title = '';
    if (this._chosen) {
      const known = !this._names.length || this._names.includes(this._chosen);
      text = `Model: ${this._chosen} (from settings)`;
      if (!known) {
        text += ' — not a profile this server knows';
      }
    } else if (this._default) {
      text = `Model: ${this._default}`;
      title = this._reason;
    }
    this._modelLine.textContent = text;
    this._modelLine.title = title;
  }

  private _notebookLine = document.createElement('div');
  private _modelLine = document.createElement('div');
  private _chosen = '';
  private _loaded = false;
  private _default = '';
  private _reason = '';
  private _names: string[] = [];
}
