import {
  badgesFor,
  cellsNeedingAttention,
  cellsToRerun,
  cellViews,
  summaryText
} from '../verdicts';
import { EXAMPLE_REPORT, report } from './fixtures';

describe('badges', () => {
  it('shows the kernel message as the tooltip, after the verdict label', () => {
    const [badge] = badgesFor(EXAMPLE_REPORT, EXAMPLE_REPORT.cells[0]);
    expect(badge.verdict).toBe('out_of_order');
    expect(badge.info.badge).toBe('order');
    expect(badge.tooltip).toBe(
      'Out of order: reads `x` from cell #3 (In [1]) below — a top-to-bottom run would fail here'
    );
  });

  it('gives a cell without verdicts no badge and no view', () => {
    expect(badgesFor(EXAMPLE_REPORT, EXAMPLE_REPORT.cells[1])).toEqual([]);
    expect([...cellViews(EXAMPLE_REPORT).keys()]).toEqual(['b2']);
  });

  it('shows an unknown verdict by its name and message (a later MINOR version)', () => {
    const r = report(
      [['a', ['slow_import'], 1]],
      [
        {
          verdict: 'slow_import',
          cell_index: 0,
          cell_id: 'a',
          message: 'imports take 9 s',
          names: [],
          related_cells: []
        }
      ]
    );
    const [badge] = badgesFor(r, r.cells[0]);
    expect(badge.info.label).toBe('slow import');
    expect(badge.tooltip).toBe('slow import: imports take 9 s');
  });

  it('falls back to the description when the kernel sent no finding', () => {
    const r = report([['a', ['edited'], 1]]);
    expect(badgesFor(r, r.cells[0])[0].tooltip).toBe(
      'Edited: source differs from what last ran'
    );
  });

  it('joins several messages for one verdict, one per line, without repeats', () => {
    const finding = (message: string) => ({
      verdict: 'stale',
      cell_index: 0,
      cell_id: 'a',
      message,
      names: ['x'],
      related_cells: [1]
    });
    const r = report(
      [['a', ['stale'], 1]],
      [finding('reads `x`'), finding('reads `y`'), finding('reads `x`')]
    );
    expect(badgesFor(r, r.cells[0])[0].tooltip).toBe(
      'Stale: reads `x`\nreads `y`'
    );
  });
});

describe('status-bar summary', () => {
  it.each([
    [null, 'on'],
    [report([['a', [], 1]]), 'in order'],
    [report([['a', ['multiple_definitions'], 1]]), 'in order'],
    [EXAMPLE_REPORT, '1 cell needs attention'],
    [
      report([
        ['a', ['stale'], 1],
        ['b', ['out_of_order', 'multiple_definitions'], 2],
        ['c', ['hidden_state'], 3]
      ]),
      '3 cells need attention'
    ]
  ])('%#: says %s', (r, text) => {
    expect(summaryText(r as any)).toBe(text);
  });

  it('lists the cells needing attention top to bottom, information left out', () => {
    const r = report([
      ['a', ['multiple_definitions'], 1],
      ['b', ['stale'], 3],
      ['c', ['edited'], 2]
    ]);
    expect(cellsNeedingAttention(r).map(v => v.cellId)).toEqual(['b', 'c']);
  });
});

describe('information-level stale (protocol 1.1)', () => {
  const below = (flagged: string[] | undefined, information: boolean | undefined) => {
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
          ...(information === undefined ? {} : { information })
        }
      ]
    );
    if (flagged !== undefined) {
      (r.cells[0] as any).flagged = flagged;
    }
    return r;
  };

  it('is a muted badge that needs no attention and is not re-run', () => {
    for (const r of [below([], true), below(undefined, true), below([], undefined)]) {
      const [badge] = badgesFor(r, r.cells[0]);
      expect(badge.verdict).toBe('stale');
      expect(badge.information).toBe(true);
      expect(badge.tooltip).toBe(
        'Stale (information): reads `a`, changed afterwards by cell #3 below'
      );
      expect(cellsNeedingAttention(r)).toEqual([]);
      expect(summaryText(r)).toBe('in order');
      expect(cellsToRerun(r)).toEqual([]);
    }
  });

  it('stays a plain badge when the kernel flags it, or speaks 1.0', () => {
    for (const r of [below(['stale'], false), below(undefined, undefined)]) {
      const [badge] = badgesFor(r, r.cells[0]);
      expect(badge.information).toBe(false);
      expect(cellsNeedingAttention(r).map(v => v.cellId)).toEqual(['b']);
    }
  });
});

describe('run stale cells in order', () => {
  it('re-runs just the stale cells, top to bottom', () => {
    const r = report([
      ['a', [], 1],
      ['b', ['stale'], 2],
      ['c', [], 3],
      ['d', ['stale'], 4]
    ]);
    expect(cellsToRerun(r)).toEqual(['b', 'd']);
  });

  it('replays the cells above a hidden-state cell, which read a value from gone code', () => {
    const r = report([
      ['a', [], 1],
      ['b', [], null],
      ['c', ['hidden_state'], 2],
      ['d', [], 3]
    ]);
    expect(cellsToRerun(r)).toEqual(['a', 'c']);
  });

  it('replays nothing above for a cell the kernel has not placed yet', () => {
    const r = report([
      ['a', [], 1],
      ['b', ['stale'], 2],
      ['new', ['hidden_state'], 3]
    ]);
    r.cells[2].placed = false;
    r.cells[2].index = 7;
    expect(cellsToRerun(r)).toEqual(['b', 'new']);
  });

  it('leaves information and clean reports alone', () => {
    expect(cellsToRerun(report([['a', ['multiple_definitions'], 1]]))).toEqual(
      []
    );
    expect(cellsToRerun(null)).toEqual([]);
  });
});
