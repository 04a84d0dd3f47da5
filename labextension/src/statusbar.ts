/**
 * The status-bar item: one line about the current notebook ("%track: in order",
 * "%track: 3 cells need attention", or an "Enable tracking" offer). Clicking it lists the
 * cells that need attention; clicking one jumps to it.
 */
import { showPopup, Popup } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { NotebookController } from './controller';
import { cellsNeedingAttention, summaryText, ICellView } from './verdicts';

export const STATUS_CLASS = 'jp-repro-status';

/** What the status item says for a controller; null hides the item's text. */
export function statusText(controller: NotebookController | null): string | null {
  if (!controller) {
    return null;
  }
  switch (controller.state) {
    case 'tracking':
      return `%track: ${summaryText(controller.report)}`;
    case 'off':
      return '%track: off · Enable tracking';
    case 'unavailable':
      // Only a Python kernel can load the extension; others stay silent.
      return controller.isPython ? '%track: Enable tracking' : null;
    default:
      return null;
  }
}

/** One line of the list, e.g. "cell #2 [4]: out of order, stale". */
export function listEntryText(view: ICellView): string {
  const count = view.executionCount === null ? ' ' : ` [${view.executionCount}] `;
  return `cell #${view.index + 1}${count}— ${view.badges
    .map(b => b.info.label.toLowerCase())
    .join(', ')}`;
}

export class TrackStatus extends Widget {
  constructor(options: { enable: () => void }) {
    super();
    this._enable = options.enable;
    this.addClass(STATUS_CLASS);
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this.node.addEventListener('click', () => this._onClick());
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        this._onClick();
      }
    });
  }

  /** The controller of the notebook in focus (null for none). */
  get controller(): NotebookController | null {
    return this._controller;
  }

  set controller(controller: NotebookController | null) {
    if (controller === this._controller) {
      return;
    }
    this._controller?.changed.disconnect(this._render, this);
    this._controller = controller;
    controller?.changed.connect(this._render, this);
    this._render();
  }

  /** True when the item has something to say. */
  get hasText(): boolean {
    return statusText(this._controller) !== null;
  }

  private _render(): void {
    const text = statusText(this._controller) ?? '';
    this.node.textContent = text;
    const attention = cellsNeedingAttention(this._controller?.report ?? null);
    this.node.classList.toggle('jp-mod-attention', attention.length > 0);
    this.node.title =
      this._controller?.state === 'tracking'
        ? attention.length
          ? 'Click to list the cells that need attention'
          : 'The kernel state matches a top-to-bottom run of these cells'
        : text
          ? 'Load %track in this kernel and turn it on'
          : '';
    if (this._popup && !this._popup.isDisposed && attention.length === 0) {
      this._popup.dispose();
    }
  }

  private _onClick(): void {
    const controller = this._controller;
    if (!controller) {
      return;
    }
    if (controller.state !== 'tracking') {
      this._enable();
      return;
    }
    const views = cellsNeedingAttention(controller.report);
    if (!views.length) {
      return;
    }
    const body = new Widget();
    body.addClass('jp-repro-status-list');
    const list = document.createElement('ul');
    list.setAttribute('aria-label', 'Cells that need attention');
    for (const view of views) {
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.className = 'jp-repro-status-entry';
      button.textContent = listEntryText(view);
      button.title = view.badges.map(b => b.tooltip).join('\n');
      button.addEventListener('click', () => {
        jumpTo(controller, view.cellId);
        this._popup?.dispose();
      });
      item.appendChild(button);
      list.appendChild(item);
    }
    body.node.appendChild(list);
    this._popup?.dispose();
    this._popup = showPopup({ body, anchor: this, align: 'right' });
  }

  private _controller: NotebookController | null = null;
  private _popup: Popup | null = null;
  private _enable: () => void;
}

/** Make a cell active and scroll it into view. */
export function jumpTo(controller: NotebookController, cellId: string): void {
  const notebook = controller.panel.content;
  const index = notebook.widgets.findIndex(c => c.model.id === cellId);
  if (index < 0) {
    return;
  }
  notebook.activeCellIndex = index;
  notebook.deselectAll();
  void notebook.scrollToItem(index, 'center');
  notebook.activate();
}
