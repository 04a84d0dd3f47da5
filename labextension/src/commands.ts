/**
 * The commands: palette entries and notebook-toolbar buttons (the toolbar items are
 * declared in schema/plugin.json).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  ICommandPalette,
  Notification,
  SessionContextDialogs
} from '@jupyterlab/apputils';
import { NotebookActions } from '@jupyterlab/notebook';
import { PathExt } from '@jupyterlab/coreutils';
import { checkIcon, fastForwardIcon, listIcon } from '@jupyterlab/ui-components';

import { NotebookController } from './controller';
import { cellsToRerun } from './verdicts';

export namespace CommandIDs {
  export const enable = 'jupyter-repro:enable-tracking';
  export const restartRunAll = 'jupyter-repro:restart-run-all';
  export const runStale = 'jupyter-repro:run-stale';
  export const showWhatRan = 'jupyter-repro:show-what-ran';
}

/**
 * The file "Show what ran" writes next to the notebook (`%track export --notebook`).
 * `%track export` takes the name as is (quotes would become part of it), so characters
 * other than letters, digits, `.`, `_` and `-` become `_`.
 */
export function whatRanPath(notebookPath: string): string {
  const dir = PathExt.dirname(notebookPath);
  const stem = PathExt.basename(notebookPath, PathExt.extname(notebookPath));
  return PathExt.join(dir, `${stem.replace(/[^\w.-]/g, '_')}.what-ran.ipynb`);
}

export function addCommands(
  app: JupyterFrontEnd,
  current: () => NotebookController | null,
  palette: ICommandPalette | null
): void {
  const { commands } = app;
  const hasNotebook = () => current() !== null;
  const isTracking = () => current()?.state === 'tracking';

  commands.addCommand(CommandIDs.enable, {
    label: 'Enable tracking (%track)',
    caption: 'Load jupyter_repro in this kernel and run %track on',
    isEnabled: () => {
      const c = current();
      return !!c && c.state !== 'tracking' && c.state !== 'incompatible';
    },
    execute: async () => {
      const controller = current();
      if (!controller) {
        return;
      }
      const state = await controller.enable();
      if (state !== 'tracking') {
        const why = controller.enableError ? ` (${controller.enableError})` : '';
        Notification.warning(
          `%track could not be turned on in this kernel${why}. Is jupyter_repro ` +
            "installed in the kernel's environment? (pip install jupyter-repro)",
          { autoClose: 8000 }
        );
      }
    }
  });

  commands.addCommand(CommandIDs.restartRunAll, {
    label: args =>
      args.toolbar ? 'Verify' : 'Restart kernel and run all to verify',
    caption:
      'Restart the kernel, turn %track back on, and run every cell top to bottom',
    icon: args => (args.toolbar ? checkIcon : undefined),
    isEnabled: hasNotebook,
    execute: async () => {
      const controller = current();
      if (!controller) {
        return;
      }
      const { panel } = controller;
      const wasTracking = controller.state === 'tracking';
      const dialogs = new SessionContextDialogs();
      const restarted = await dialogs.restart(panel.sessionContext);
      if (!restarted) {
        return;
      }
      await panel.sessionContext.ready;
      if (wasTracking) {
        await controller.enable();
      }
      await NotebookActions.runAll(panel.content, panel.sessionContext);
    }
  });

  commands.addCommand(CommandIDs.runStale, {
    label: args => (args.toolbar ? 'Run stale' : 'Run stale cells in order'),
    caption:
      'Re-run the flagged cells top to bottom (with the cells above that they read from)',
    icon: args => (args.toolbar ? fastForwardIcon : undefined),
    isEnabled: isTracking,
    execute: async () => {
      const controller = current();
      if (!controller) {
        return;
      }
      const notebook = controller.panel.content;
      // By id, in the notebook's current order (the report may predate a move).
      const ids = new Set(cellsToRerun(controller.report));
      const cells = notebook.widgets.filter(
        cell => ids.has(cell.model.id) && cell.model.type === 'code'
      );
      if (!cells.length) {
        return;
      }
      await NotebookActions.runCells(
        notebook,
        cells,
        controller.panel.sessionContext
      );
    }
  });

  commands.addCommand(CommandIDs.showWhatRan, {
    label: args => (args.toolbar ? 'What ran' : 'Show what ran'),
    caption:
      'Write the cells that ran, in run order, to a notebook (%track export) and open it',
    icon: args => (args.toolbar ? listIcon : undefined),
    isEnabled: isTracking,
    execute: async () => {
      const controller = current();
      const kernel = controller?.panel.sessionContext.session?.kernel;
      if (!controller || !kernel) {
        return;
      }
      const path = whatRanPath(controller.panel.context.path);
      // The kernel runs in the notebook's folder, so the file name alone is enough.
      const name = PathExt.basename(path);
      const reply = await kernel.requestExecute({
        code: `%track export --notebook ${name}`,
        silent: true,
        store_history: false
      }).done;
      if (reply.content.status !== 'ok') {
        return;
      }
      await app.commands.execute('docmanager:open', { path });
    }
  });

  if (palette) {
    const category = 'Reproducibility';
    for (const command of [
      CommandIDs.enable,
      CommandIDs.restartRunAll,
      CommandIDs.runStale,
      CommandIDs.showWhatRan
    ]) {
      palette.addItem({ command, category });
    }
  }
}
