/**
 * jupyter_repro's JupyterLab extension: shows `%track`'s verdicts on the cells of every
 * notebook whose kernel has `%track` loaded, and tells the kernel the cell order.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';

import { addCommands, CommandIDs } from './commands';
import { NotebookController } from './controller';
import { TrackStatus } from './statusbar';

/** The plugin id; schema/plugin.json holds its settings. */
export const PLUGIN_ID = 'jupyter-repro-labextension:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    "Shows %track's verdicts on notebook cells and tells the kernel the cell order.",
  autoStart: true,
  requires: [INotebookTracker],
  optional: [IStatusBar, ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    statusBar: IStatusBar | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null
  ) => {
    let saveVerdicts = false;
    const controllers = new Map<NotebookPanel, NotebookController>();

    tracker.widgetAdded.connect((_, panel) => {
      const controller = new NotebookController(panel, {
        saveVerdicts: () => saveVerdicts
      });
      controllers.set(panel, controller);
      // Toolbar buttons and palette entries follow the tracking state.
      controller.changed.connect(() => app.commands.notifyCommandChanged());
      panel.disposed.connect(() => {
        controller.dispose();
        controllers.delete(panel);
      });
    });

    const current = (): NotebookController | null => {
      const panel = tracker.currentWidget;
      return panel ? controllers.get(panel) ?? null : null;
    };

    addCommands(app, current, palette);
    tracker.currentChanged.connect(() => app.commands.notifyCommandChanged());

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          const read = () => {
            saveVerdicts = settings.get('saveVerdictsInMetadata')
              .composite as boolean;
          };
          read();
          settings.changed.connect(read);
        })
        .catch(reason => {
          console.warn('jupyter_repro: could not load settings', reason);
        });
    }

    if (statusBar) {
      const item = new TrackStatus({
        enable: () => void app.commands.execute(CommandIDs.enable)
      });
      const follow = () => {
        item.controller = current();
      };
      tracker.currentChanged.connect(follow);
      tracker.widgetAdded.connect(follow);
      follow();
      statusBar.registerStatusItem(PLUGIN_ID, {
        item,
        align: 'left',
        rank: 4,
        isActive: () => tracker.currentWidget !== null
      });
    }
  }
};

export default plugin;
