import {
  BADGE_CLASS,
  decorateCell,
  FLAGGED_CLASS,
  metadataFor
} from '../decorations';
import { cellViews } from '../verdicts';
import { EXAMPLE_REPORT, report } from './fixtures';

function cell(): { node: HTMLElement; anchor: HTMLElement } {
  const node = document.createElement('div');
  node.className = 'jp-Cell jp-CodeCell';
  const anchor = document.createElement('div');
  anchor.className = 'jp-InputArea';
  node.appendChild(anchor);
  document.body.appendChild(node);
  return { node, anchor };
}

describe('cell decorations', () => {
  it('puts a labelled badge with the reason by the prompt and classes on the cell', () => {
    const { node, anchor } = cell();
    decorateCell(node, anchor, cellViews(EXAMPLE_REPORT).get('b2')!);
    expect(node.classList).toContain(FLAGGED_CLASS);
    expect(node.classList).toContain('jp-repro-verdict-out_of_order');
    const badges = anchor.querySelectorAll(`.${BADGE_CLASS}`);
    expect(badges).toHaveLength(1);
    const badge = badges[0] as HTMLElement;
    expect(badge.textContent).toBe('order');
    expect(badge.dataset.tooltip).toContain(
      'reads `x` from cell #3 (In [1]) below'
    );
    expect(badge.getAttribute('aria-label')).toBe(badge.dataset.tooltip);
    expect(badge.getAttribute('aria-label')).toMatch(/^Out of order: /);
    expect(badge.dataset.verdict).toBe('out_of_order');
  });

  it('replaces the previous badges instead of adding to them', () => {
    const { node, anchor } = cell();
    const two = report([['a', ['stale', 'edited'], 1]]);
    decorateCell(node, anchor, cellViews(two).get('a')!);
    decorateCell(node, anchor, cellViews(two).get('a')!);
    expect(anchor.querySelectorAll(`.${BADGE_CLASS}`)).toHaveLength(2);
    expect(node.style.getPropertyValue('--jp-repro-badge-count')).toBe('2');
    const one = report([['a', ['edited'], 1]]);
    decorateCell(node, anchor, cellViews(one).get('a')!);
    expect(
      [...anchor.querySelectorAll(`.${BADGE_CLASS}`)].map(b => b.textContent)
    ).toEqual(['edited']);
    expect(node.classList).not.toContain('jp-repro-verdict-stale');
  });

  it('clears everything when the cell was re-run cleanly', () => {
    const { node, anchor } = cell();
    decorateCell(node, anchor, cellViews(EXAMPLE_REPORT).get('b2')!);
    decorateCell(node, anchor, null);
    expect(anchor.querySelector(`.${BADGE_CLASS}`)).toBeNull();
    expect(node.className).toBe('jp-Cell jp-CodeCell');
    expect(node.getAttribute('style') ?? '').toBe('');
  });

  it('shows no badge for an information verdict (multiple_definitions)', () => {
    const r = report([['a', ['multiple_definitions'], 1]]);
    expect(cellViews(r).get('a')).toBeUndefined();
    const both = report([['b', ['stale', 'multiple_definitions'], 1]]);
    expect(cellViews(both).get('b')!.badges.map(b => b.verdict)).toEqual([
      'stale'
    ]);
  });
});

describe('information badges', () => {
  it('are muted, do not mark the cell flagged, and are not saved', () => {
    const r = report(
      [['b', ['stale'], 2]],
      [
        {
          verdict: 'stale',
          cell_index: 0,
          cell_id: 'b',
          message: 'reads `a`, changed afterwards by cell #3 below',
          names: ['a'],
          related_cells: [2],
          information: true
        }
      ]
    );
    (r.cells[0] as any).flagged = [];
    const node = document.createElement('div');
    const anchor = document.createElement('div');
    node.appendChild(anchor);
    const view = cellViews(r).get('b')!;
    decorateCell(node, anchor, view);
    const badge = anchor.querySelector(`.${BADGE_CLASS}`)!;
    expect(badge.classList.contains(`${BADGE_CLASS}-information`)).toBe(true);
    expect(node.classList.contains('jp-repro-verdict-stale')).toBe(false);
    expect(metadataFor(view)).toBeNull();
  });
});

describe('saved verdicts', () => {
  it('stores verdict names and the kernel messages', () => {
    expect(metadataFor(cellViews(EXAMPLE_REPORT).get('b2')!)).toEqual({
      verdicts: ['out_of_order'],
      findings: [
        {
          verdict: 'out_of_order',
          message:
            'reads `x` from cell #3 (In [1]) below — a top-to-bottom run would fail here'
        }
      ]
    });
  });

  it('stores nothing for a clean cell', () => {
    expect(metadataFor(null)).toBeNull();
  });
});
