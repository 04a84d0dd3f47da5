/**
 * Generated from jupyter_repro/verdicts.py by
 * `python -m jupyter_repro.verdicts > labextension/src/verdictTable.ts`: do not edit.
 */
export interface IVerdictRow {
  badge: string;
  label: string;
  description: string;
  information: boolean;
}

export const VERDICT_TABLE: { [name: string]: IVerdictRow } = {
  out_of_order: {
    badge: 'order',
    label: 'Out of order',
    description: 'ran out of order, or reads a name defined only in a cell below',
    information: false
  },
  stale: {
    badge: 'stale',
    label: 'Stale',
    description: 'reads a name that another cell changed after this cell ran',
    information: false
  },
  hidden_state: {
    badge: 'hidden',
    label: 'Hidden state',
    description: 'depends on a name that no code in the notebook defines',
    information: false
  },
  edited: {
    badge: 'edited',
    label: 'Edited',
    description: 'source differs from what last ran',
    information: false
  },
  never_run: {
    badge: 'unrun',
    label: 'Never run',
    description: 'code cell never executed, between executed cells',
    information: false
  },
  undefined_name: {
    badge: 'undef',
    label: 'Undefined name',
    description: 'reads a name that nothing defines',
    information: false
  },
  multiple_definitions: {
    badge: 'multi',
    label: 'Multiple definitions',
    description: 'information: a name assigned in several cells and read in another; a top-to-bottom run takes the last assignment above the reader',
    information: true
  }
};
