/**
 * Cell decorations: a badge per verdict by the cell's prompt, and a class per verdict on
 * the cell node. Plain DOM, so that jest can check what a user would see.
 */
import { ICellView } from './verdicts';

/** Class on a cell that has at least one verdict. */
export const FLAGGED_CLASS = 'jp-repro-flagged';
/** Prefix of the per-verdict class on the cell: `jp-repro-verdict-stale`, ... */
export const VERDICT_CLASS_PREFIX = 'jp-repro-verdict-';
/** Class of the badge container (one per decorated cell). */
export const BADGES_CLASS = 'jp-repro-badges';
/** Class of one badge. */
export const BADGE_CLASS = 'jp-repro-badge';

/** CSS variable on a decorated cell: how many badges it shows. */
export const BADGE_COUNT_VAR = '--jp-repro-badge-count';

/** Build the badge container for one cell. */
export function renderBadges(view: ICellView, doc: Document = document): HTMLElement {
  const box = doc.createElement('div');
  box.className = BADGES_CLASS;
  box.setAttribute('role', 'group');
  box.setAttribute('aria-label', '%track verdicts');
  for (const badge of view.badges) {
    const el = doc.createElement('span');
    el.className = `${BADGE_CLASS} ${BADGE_CLASS}-${badge.verdict}`;
    if (badge.information) {
      el.classList.add(`${BADGE_CLASS}-information`);
    }
    el.dataset.verdict = badge.verdict;
    el.textContent = badge.info.badge;
    // Shown by CSS on hover and keyboard focus (style/base.css), read by screen readers
    // from aria-label; not a `title`, which would show a second, unstyled tooltip.
    el.dataset.tooltip = badge.tooltip;
    el.setAttribute('role', 'note');
    el.setAttribute('aria-label', badge.tooltip);
    el.tabIndex = 0;
    box.appendChild(el);
  }
  return box;
}

/**
 * Show `view` on a cell: `cellNode` receives the classes, `anchor` (the element the
 * badges are placed in, by the prompt) receives the badge container. `view` null
 * removes every decoration. Calling it again replaces what was there.
 */
export function decorateCell(
  cellNode: HTMLElement,
  anchor: HTMLElement,
  view: ICellView | null
): void {
  for (const cls of [...cellNode.classList]) {
    if (cls.startsWith(VERDICT_CLASS_PREFIX)) {
      cellNode.classList.remove(cls);
    }
  }
  cellNode.classList.remove(FLAGGED_CLASS);
  cellNode.style.removeProperty(BADGE_COUNT_VAR);
  for (const old of [...anchor.querySelectorAll(`:scope > .${BADGES_CLASS}`)]) {
    old.remove();
  }
  if (!view || !view.badges.length) {
    return;
  }
  // Room for the badges (style/base.css); the coloured edge comes from the verdict
  // classes, which only badges that are not information add.
  cellNode.classList.add(FLAGGED_CLASS);
  // The input area grows to hold the badges (style/base.css), so that they never
  // spill over the next cell of a one-line cell.
  cellNode.style.setProperty(BADGE_COUNT_VAR, String(view.badges.length));
  for (const badge of view.badges) {
    if (!badge.information) {
      cellNode.classList.add(`${VERDICT_CLASS_PREFIX}${badge.verdict}`);
    }
  }
  anchor.appendChild(renderBadges(view, anchor.ownerDocument));
}

/** What "Save verdicts in cell metadata" stores under `jupyter_repro`. */
export interface ISavedVerdicts {
  verdicts: string[];
  findings: { verdict: string; message: string }[];
}

/** The metadata value for a cell, or null when the cell has no verdict. */
export function metadataFor(view: ICellView | null): ISavedVerdicts | null {
  const badges = view ? view.badges.filter(b => !b.information) : [];
  if (!badges.length) {
    return null; // information alone is not worth a change to the saved notebook
  }
  return {
    verdicts: badges.map(b => b.verdict),
    findings: badges.flatMap(b =>
      b.messages.map(message => ({ verdict: b.verdict, message }))
    )
  };
}
