/** Reports shaped exactly like docs/protocol.md's examples and a real kernel's replies. */
import { IReport } from '../protocol';

/** The `report` example of docs/protocol.md, section 5. */
export const EXAMPLE_REPORT: IReport = {
  type: 'report',
  protocol: '1.0',
  trigger: { cell_id: 'b2', seq: 2, execution_count: 2 },
  summary: {
    consistent: false,
    reasons: ['1 cell(s) flagged: out_of_order'],
    order_source: 'frontend',
    cells: 2,
    executed: 2
  },
  cells: [
    {
      cell_id: 'b2',
      index: 1,
      execution_count: 2,
      last_run_seq: 2,
      raised: null,
      verdicts: ['out_of_order']
    },
    {
      cell_id: 'c3',
      index: 2,
      execution_count: 1,
      last_run_seq: 1,
      raised: null,
      verdicts: []
    }
  ],
  findings: [
    {
      verdict: 'out_of_order',
      cell_index: 1,
      cell_id: 'b2',
      message:
        'reads `x` from cell #3 (In [1]) below — a top-to-bottom run would fail here',
      names: ['x'],
      related_cells: [2]
    }
  ]
};

/** Build a report from `[id, verdicts, last_run_seq]` rows and findings. */
export function report(
  cells: [string, string[], number | null][],
  findings: IReport['findings'] = []
): IReport {
  return {
    type: 'report',
    protocol: '1.0',
    trigger: null,
    summary: {
      consistent: findings.length === 0,
      reasons: [],
      order_source: 'frontend',
      cells: cells.length,
      executed: cells.filter(c => c[2] !== null).length
    },
    cells: cells.map(([id, verdicts, seq], index) => ({
      cell_id: id,
      index,
      execution_count: seq,
      last_run_seq: seq,
      raised: null,
      verdicts
    })),
    findings
  };
}
