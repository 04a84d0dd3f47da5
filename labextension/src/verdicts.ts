/**
 * What each verdict is called on screen. The names are those of
 * jupyter_repro/verdicts.py (docs/protocol.md, "Verdict names"); a verdict this table
 * does not know is still shown, by its name and the kernel's message.
 */
import type { ICellReport, IFinding, IReport } from './protocol';
import { VERDICT_TABLE } from './verdictTable';

export interface IVerdictInfo {
  /** Short text on the badge. */
  badge: string;
  /** Full name, read by screen readers and shown first in the tooltip. */
  label: string;
  /** Why it matters, when the kernel sent no message for the cell. */
  description: string;
  /**
   * Information, not a problem (`multiple_definitions`): kept in the kernel's report,
   * shown as no badge and never making a cell "need attention".
   */
  information: boolean;
}

/** The verdicts of jupyter_repro/verdicts.py, from the generated verdictTable.ts. */
export const VERDICTS: { [name: string]: IVerdictInfo } = VERDICT_TABLE;

/** Display information for any verdict name, known or not. */
export function verdictInfo(name: string): IVerdictInfo {
  return (
    VERDICTS[name] ?? {
      badge: name.replace(/_/g, ' ').slice(0, 8),
      label: name.replace(/_/g, ' '),
      description: name.replace(/_/g, ' '),
      information: false
    }
  );
}

/** One badge: a verdict on one cell, with the plain-words reasons behind it. */
export interface IBadge {
  verdict: string;
  info: IVerdictInfo;
  /** The kernel's messages for this verdict on this cell (shown as is). */
  messages: string[];
  /** The tooltip: label, then each reason on its own line. */
  tooltip: string;
  /**
   * Nothing is wrong with what the cell shows (a `stale` whose value only cells below it
   * changed, protocol 1.1): a muted badge that never makes the cell "need attention".
   */
  information: boolean;
}

/** Everything to show on one cell. */
export interface ICellView {
  cellId: string;
  index: number;
  executionCount: number | null;
  badges: IBadge[];
}

function findingsFor(
  report: IReport,
  cell: ICellReport
): IFinding[] {
  return report.findings.filter(f =>
    f.cell_id !== null && f.cell_id !== undefined
      ? f.cell_id === cell.cell_id
      : f.cell_index === cell.index
  );
}

/**
 * The badges of one cell of a report, in the order the verdicts are listed. Verdicts that
 * are information by kind (`multiple_definitions`) get no badge: a top-to-bottom run gives
 * the same results, and the kernel's JSON report still lists them. A verdict whose
 * findings on this cell are all information (protocol 1.1: not in `flagged`, or
 * `information: true`) gets a muted badge.
 */
export function badgesFor(report: IReport, cell: ICellReport): IBadge[] {
  const findings = findingsFor(report, cell);
  const names = [...cell.verdicts];
  for (const finding of findings) {
    if (!names.includes(finding.verdict)) {
      names.push(finding.verdict);
    }
  }
  return names.filter(verdict => !verdictInfo(verdict).information).map(verdict => {
    const info = verdictInfo(verdict);
    const messages = findings
      .filter(f => f.verdict === verdict)
      .map(f => f.message)
      .filter((m, i, all) => all.indexOf(m) === i);
    const reasons = messages.length ? messages : [info.description];
    const mine = findings.filter(f => f.verdict === verdict);
    const information = cell.flagged
      ? !cell.flagged.includes(verdict)
      : mine.length > 0 && mine.every(f => f.information === true);
    return {
      verdict,
      info,
      messages,
      tooltip: `${info.label}${information ? ' (information)' : ''}: ${reasons.join('\n')}`,
      information
    };
  });
}

/** The view of every cell that has at least one verdict, keyed by cell id. */
export function cellViews(report: IReport | null): Map<string, ICellView> {
  const views = new Map<string, ICellView>();
  if (!report) {
    return views;
  }
  for (const cell of report.cells) {
    const badges = badgesFor(report, cell);
    if (badges.length) {
      views.set(cell.cell_id, {
        cellId: cell.cell_id,
        index: cell.index,
        executionCount: cell.execution_count,
        badges
      });
    }
  }
  return views;
}

/** The cells that need attention: any verdict that is not information. */
export function cellsNeedingAttention(report: IReport | null): ICellView[] {
  return [...cellViews(report).values()]
    .filter(view => view.badges.some(b => !b.information))
    .sort((a, b) => a.index - b.index);
}

/** The status-bar sentence for a report. */
export function summaryText(report: IReport | null): string {
  if (!report) {
    return 'on';
  }
  const n = cellsNeedingAttention(report).length;
  if (n === 0) {
    return 'in order';
  }
  return n === 1 ? '1 cell needs attention' : `${n} cells need attention`;
}

/** Verdicts whose value came from code other than what a top-to-bottom run would use. */
const REPLAY_ABOVE = new Set(['out_of_order', 'hidden_state']);

/**
 * The code cells "Run stale cells in order" runs, as cell ids, top to bottom: every cell
 * needing attention. A cell that is `out_of_order` or has `hidden_state` read a value
 * from code below it or from code that is gone; re-running it alone would read the same
 * value again, so the cells above it that ran are replayed first, in order: the only way
 * to rebuild that value from the code above without a restart. (A name that only a cell
 * below sets stays out of order: move the cell.) Cells the kernel has not placed in the
 * notebook yet (`placed: false`) come last, as the kernel lists them.
 */
export function cellsToRerun(report: IReport | null): string[] {
  if (!report) {
    return [];
  }
  const chosen = new Set<string>();
  const placed = (c: ICellReport) => c.placed !== false;
  for (const view of cellsNeedingAttention(report)) {
    chosen.add(view.cellId);
    const cell = report.cells.find(c => c.cell_id === view.cellId);
    if (
      cell &&
      placed(cell) &&
      view.badges.some(b => REPLAY_ABOVE.has(b.verdict))
    ) {
      for (const other of report.cells) {
        if (placed(other) && other.last_run_seq !== null && other.index < cell.index) {
          chosen.add(other.cell_id);
        }
      }
    }
  }
  // report.cells is in notebook order, unplaced cells last.
  return report.cells.map(c => c.cell_id).filter(id => chosen.has(id));
}
