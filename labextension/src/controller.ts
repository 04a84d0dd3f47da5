/**
 * One notebook's link to its kernel's `%track`: keeps a TrackClient connected across
 * kernel changes and restarts, tells the kernel the cell order, and paints each report
 * onto the cells.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import { Cell, CodeCell } from '@jupyterlab/cells';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { decorateCell, metadataFor } from './decorations';
import {
  ClientState,
  IKernelLike,
  INotebookCell,
  IReport,
  TrackClient
} from './protocol';
import { cellViews } from './verdicts';

/** The metadata key under which verdicts are saved when the setting is on. */
export const METADATA_KEY = 'jupyter_repro';

/** The code "Enable tracking" runs: the commands docs/protocol.md names. */
export const ENABLE_CODE = '%load_ext jupyter_repro\n%track on';

export class NotebookController {
  constructor(panel: NotebookPanel, options: { saveVerdicts: () => boolean }) {
    this.panel = panel;
    this._saveVerdicts = options.saveVerdicts;
    this.client = new TrackClient({
      cells: () => this.cells(),
      onReport: report => this._onReport(report),
      onStateChange: () => this._changed.emit()
    });
    const ctx = panel.sessionContext;
    ctx.kernelChanged.connect(this._onKernelChanged, this);
    ctx.statusChanged.connect(this._onStatus, this);
    NotebookActions.executed.connect(this._onExecuted, this);
    panel.context.ready.then(() => {
      const model = panel.content.model;
      model?.contentChanged.connect(() => this.client.scheduleNotebook(), this);
      model?.cells.changed.connect(() => {
        this.client.scheduleNotebook();
        // New cells appear without decorations; repaint once they exist.
        requestAnimationFrame(() => this.repaint());
      }, this);
    });
    ctx.ready.then(() => this.connect());
  }

  readonly panel: NotebookPanel;
  readonly client: TrackClient;

  /** Emits when the client state or the report changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get state(): ClientState {
    return this.client.state;
  }

  get report(): IReport | null {
    return this.client.report;
  }

  /** Why the last `enable()` failed in the kernel (`"ModuleNotFoundError: ..."`), or null. */
  enableError: string | null = null;

  /** True when the kernel is a Python kernel, where `%load_ext jupyter_repro` works. */
  get isPython(): boolean {
    return this._isPython;
  }

  /** The notebook's cells in order, as the `notebook` message carries them. */
  cells(): INotebookCell[] {
    const model = this.panel.content.model;
    if (!model) {
      return [];
    }
    const cells: INotebookCell[] = [];
    for (let i = 0; i < model.cells.length; i++) {
      const cell = model.cells.get(i);
      cells.push({
        id: cell.id,
        cell_type: cell.type as INotebookCell['cell_type'],
        source: cell.sharedModel.getSource()
      });
    }
    return cells;
  }

  /** (Re)open the comm on the current kernel; resolves with the resulting state. */
  async connect(): Promise<ClientState> {
    const kernel = this.panel.sessionContext.session?.kernel;
    if (!kernel || this._disposed) {
      this.client.dispose(false);
      return this.client.state;
    }
    this._isPython = await this._kernelIsPython(kernel);
    if (this._disposed || kernel !== this.panel.sessionContext.session?.kernel) {
      return this.client.state;
    }
    const state = await this.client.connect(kernel as unknown as IKernelLike);
    this._changed.emit();
    return state;
  }

  /**
   * Load the extension in the kernel and turn tracking on, silently (not tracked, no
   * output), then connect. Resolves with the resulting state.
   */
  async enable(): Promise<ClientState> {
    const kernel = this.panel.sessionContext.session?.kernel;
    if (!kernel) {
      return this.client.state;
    }
    const code = this.client.state === 'off' ? '%track on' : ENABLE_CODE;
    const reply = await kernel.requestExecute({
      code,
      silent: true,
      store_history: false
    }).done;
    this.enableError = null;
    if (reply.content.status !== 'ok') {
      const content = reply.content as { ename?: string; evalue?: string };
      this.enableError = `${content.ename ?? 'Error'}: ${content.evalue ?? ''}`;
      return this.client.state;
    }
    if (this.client.state !== 'tracking') {
      await this.connect();
    }
    return this.client.state;
  }

  /** Repaint every cell from the current report. */
  repaint(): void {
    const views = cellViews(this.client.report);
    for (const cell of this.panel.content.widgets) {
      const anchor = badgeAnchor(cell);
      if (anchor) {
        decorateCell(cell.node, anchor, views.get(cell.model.id) ?? null);
      }
    }
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    NotebookActions.executed.disconnect(this._onExecuted, this);
    Signal.clearData(this);
    this.client.dispose();
  }

  private _onReport(report: IReport | null): void {
    this.repaint();
    if (report && this._saveVerdicts()) {
      this._saveMetadata(report);
    }
    this._changed.emit();
  }

  private _saveMetadata(report: IReport): void {
    const views = cellViews(report);
    for (const cell of this.panel.content.widgets) {
      if (cell.model.type !== 'code') {
        continue;
      }
      const value = metadataFor(views.get(cell.model.id) ?? null);
      const old = cell.model.getMetadata(METADATA_KEY);
      if (JSON.stringify(old ?? null) === JSON.stringify(value)) {
        continue;
      }
      if (value) {
        cell.model.setMetadata(METADATA_KEY, value);
      } else {
        cell.model.deleteMetadata(METADATA_KEY);
      }
    }
  }

  private _onKernelChanged(
    ctx: ISessionContext,
    change: { newValue: Kernel.IKernelConnection | null }
  ): void {
    this.client.dispose(false);
    if (change.newValue) {
      this._needsConnect = true;
    }
    this._changed.emit();
  }

  private _onStatus(ctx: ISessionContext, status: Kernel.Status): void {
    if (
      status === 'restarting' ||
      status === 'autorestarting' ||
      status === 'dead'
    ) {
      // The kernel's comms are gone with its process.
      this.client.dispose(false);
      this._needsConnect = true;
      this._changed.emit();
    } else if (status === 'idle' && this._needsConnect) {
      this._needsConnect = false;
      void this.connect();
    }
  }

  private _onExecuted(
    sender: unknown,
    args: { notebook: unknown; cell: Cell; success: boolean }
  ): void {
    if (args.notebook !== this.panel.content) {
      return;
    }
    // The user may just have run `%load_ext jupyter_repro` themselves.
    const state = this.client.state;
    if (this._isPython && (state === 'unavailable' || state === 'disconnected')) {
      void this.connect();
    }
  }

  private async _kernelIsPython(
    kernel: Kernel.IKernelConnection
  ): Promise<boolean> {
    try {
      const info = await kernel.info;
      return (info?.language_info?.name ?? '').toLowerCase() === 'python';
    } catch (error) {
      return false;
    }
  }

  private _saveVerdicts: () => boolean;
  private _changed = new Signal<this, void>(this);
  private _needsConnect = false;
  private _isPython = false;
  private _disposed = false;
}

/**
 * Where a cell's badges go: the cell node itself (code cells only), placed by CSS in the
 * prompt column under the execution count. Not inside the input area, which clips and
 * scrolls anything taller than a one-line cell.
 */
function badgeAnchor(cell: Cell): HTMLElement | null {
  if (!(cell instanceof CodeCell) && cell.model.type !== 'code') {
    return null;
  }
  return cell.node;
}
