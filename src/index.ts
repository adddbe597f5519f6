/**
 * jupyter-analyst: the JupyterLab side of the local LLM data analyst.
 *
 * A sidebar that starts and follows runs of the server extension
 * (`{base_url}jupyter-analyst/`), palette commands, and user settings.
 */

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { AnalystClient } from './api';
import { analystIcon } from './icon';
import { AnalystPanel, DEFAULT_SETTINGS, IAnalystSettings } from './panel';
import { withProfileChoice } from './profilechoice';
import { IProfilesReply } from './schema';

const PLUGIN_ID = 'jupyter-analyst:plugin';

export namespace CommandIDs {
  export const open = 'jupyter-analyst:open';
  export const analyze = 'jupyter-analyst:analyze';
  export const stop = 'jupyter-analyst:stop';
  export const exportReport = 'jupyter-analyst:export';
}

const CATEGORY = 'Analyst';

function readSettings(settings: ISettingRegistry.ISettings): IAnalystSettings {
  const profile = settings.get('profile').composite;
  const maxSteps = settings.get('maxSteps').composite;
  const keepFailedCells = settings.get('keepFailedCells').composite;
  const appendAt = settings.get('appendAt').composite;
  return {
    profile: typeof profile === 'string' ? profile : DEFAULT_SETTINGS.profile,
    maxSteps:
      typeof maxSteps === 'number' && maxSteps >= 0 && maxSteps <= 200
        ? Math.floor(maxSteps)
        : DEFAULT_SETTINGS.maxSteps,
    keepFailedCells:
      typeof keepFailedCells === 'boolean'
        ? keepFailedCells
        : DEFAULT_SETTINGS.keepFailedCells,
    appendAt: appendAt === 'active-cell' ? 'active-cell' : 'end'
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'A local LLM data analyst that works in your live notebook.',
  autoStart: true,
  requires: [INotebookTracker, IRenderMimeRegistry],
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    rendermime: IRenderMimeRegistry,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    const client = new AnalystClient(app.serviceManager.serverSettings);
    const panel = new AnalystPanel({
      client,
      notebooks: tracker,
      rendermime,
      commands: app.commands,
      activate: id => app.shell.activateById(id)
    });
    app.shell.add(panel, 'right', { rank: 600 });
    restorer?.add(panel, 'jupyter-analyst-panel');

    const { commands } = app;
    const openPanel = () => {
      app.shell.activateById(panel.id);
    };

    commands.addCommand(CommandIDs.open, {
      label: 'Open the Analyst Sidebar',
      caption: 'Show the Analyst panel of the current notebook',
      icon: analystIcon,
      execute: openPanel
    });

    commands.addCommand(CommandIDs.analyze, {
      label: 'Analyze This DataFrame',
      caption:
        'Start the analyst on the DataFrame picked in the Analyst panel (args: variable, question)',
      icon: analystIcon,
      isEnabled: () => panel.canAnalyze,
      execute: async args => {
        openPanel();
        const variable =
          typeof args.variable === 'string' ? args.variable : undefined;
        const question =
          typeof args.question === 'string' ? args.question : undefined;
        await panel.analyze(variable, question);
      }
    });

    commands.addCommand(CommandIDs.stop, {
      label: 'Stop the Analysis',
      caption: 'Stop the running analysis of the current notebook',
      isEnabled: () => panel.canStop,
      execute: () => panel.stop()
    });

    commands.addCommand(CommandIDs.exportReport, {
      label: 'Export the Analysis Report',
      caption: 'Write the report (.ipynb and .html) next to the notebook',
      isEnabled: () => panel.canExport,
      execute: async () => {
        openPanel();
        return panel.exportReport();
      }
    });

    panel.stateChanged.connect(() => {
      for (const id of [CommandIDs.analyze, CommandIDs.stop, CommandIDs.exportReport]) {
        commands.notifyCommandChanged(id);
      }
    });

    if (palette) {
      for (const command of Object.values(CommandIDs)) {
        palette.addItem({ command, category: CATEGORY });
      }
    }

    if (settingRegistry) {
      const registry = settingRegistry;
      // The profile setting is a choice of the server's profiles (profilechoice.ts). The
      // transform must be registered before the first load; it is synchronous, so the
      // settings load at once (free-text profile) and the load is replayed with the choice
      // when the server's reply arrives: a slow reply never delays the settings.
      let profiles: IProfilesReply | null = null;
      registry.transform(PLUGIN_ID, {
        fetch: plugin => withProfileChoice(plugin, profiles)
      });
      const loaded = registry.load(PLUGIN_ID);
      loaded
        .then(settings => {
          panel.settings = readSettings(settings);
          settings.changed.connect(() => {
            panel.settings = readSettings(settings);
          });
        })
        .catch(reason => {
          console.warn('jupyter-analyst: could not load the settings', reason);
        });
      Promise.all([loaded, client.profiles()])
        .then(([, reply]) => {
          profiles = reply;
          return registry.load(PLUGIN_ID, true);
        })
        .catch(reason => {
          console.warn('jupyter-analyst: no profile choice in the settings', reason);
        });
    }
  }
};

export default plugin;
