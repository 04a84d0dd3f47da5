import {
  ClientState,
  ICommLike,
  IKernelLike,
  INotebookCell,
  IReport,
  isCompatible,
  notebookMessage,
  parseKernelMessage,
  TARGET_NAME,
  TrackClient
} from '../protocol';
import { EXAMPLE_REPORT } from './fixtures';

/**
 * A kernel that answers like the one docs/protocol.md describes, scripted per test:
 * records what the client sends and lets the test push kernel messages.
 */
class ScriptedComm implements ICommLike {
  constructor(readonly target: string) {}
  opened: any[] = [];
  sent: any[] = [];
  closed = 0;
  isDisposed = false;
  onMsg: ICommLike['onMsg'] = () => undefined;
  onClose: ICommLike['onClose'] = () => undefined;
  open(data?: any) {
    this.opened.push(data);
  }
  send(data: any) {
    this.sent.push(data);
  }
  close() {
    this.closed += 1;
    this.isDisposed = true;
  }
  /** The kernel sends a comm_msg. */
  push(data: unknown) {
    this.onMsg({ content: { data } });
  }
  /** The kernel closes the comm (unknown target). */
  kernelCloses() {
    this.isDisposed = true;
    this.onClose({ content: { data: {} } });
  }
}

class ScriptedKernel implements IKernelLike {
  comms: ScriptedComm[] = [];
  createComm(target: string) {
    const comm = new ScriptedComm(target);
    this.comms.push(comm);
    return comm;
  }
  get last() {
    return this.comms[this.comms.length - 1];
  }
}

const WELCOME = {
  type: 'welcome',
  protocol: '1.0',
  kernel: { name: 'jupyter_repro', version: '0.1.0' },
  tracking: true,
  order_source: 'execution_order',
  record_path: null
};

function setup() {
  let cells: INotebookCell[] = [
    { id: 'a1', cell_type: 'markdown', source: '# Analysis' },
    { id: 'b2', cell_type: 'code', source: 'y = x + 1' }
  ];
  const reports: (IReport | null)[] = [];
  const states: ClientState[] = [];
  const client = new TrackClient({
    cells: () => cells,
    onReport: r => reports.push(r),
    onStateChange: s => states.push(s),
    debounceMs: 300
  });
  const kernel = new ScriptedKernel();
  return {
    client,
    kernel,
    reports,
    states,
    setCells: (c: INotebookCell[]) => {
      cells = c;
    }
  };
}

describe('messages', () => {
  it('ignores unknown types and known types missing required fields', () => {
    expect(parseKernelMessage({ type: 'frobnicate', protocol: '1.0' })).toBeNull();
    expect(parseKernelMessage({ type: 'report', protocol: '1.0' })).toBeNull();
    expect(parseKernelMessage('report')).toBeNull();
    expect(parseKernelMessage(null)).toBeNull();
    expect(parseKernelMessage(EXAMPLE_REPORT)).toBe(EXAMPLE_REPORT);
    expect(parseKernelMessage({ ...WELCOME, extra: 1 })).not.toBeNull();
  });

  it('accepts any 1.x kernel and refuses other majors', () => {
    expect(isCompatible('1.0')).toBe(true);
    expect(isCompatible('1.7')).toBe(true);
    expect(isCompatible('2.0')).toBe(false);
    expect(isCompatible('1')).toBe(false);
  });

  it('sends all cells in order, as the protocol example shows', () => {
    expect(
      notebookMessage([
        { id: 'a1', cell_type: 'markdown', source: '# Analysis' },
        { id: 'b2', cell_type: 'code', source: 'y = x + 1' }
      ])
    ).toEqual({
      type: 'notebook',
      protocol: '1.1',
      cells: [
        { id: 'a1', cell_type: 'markdown', source: '# Analysis' },
        { id: 'b2', cell_type: 'code', source: 'y = x + 1' }
      ]
    });
  });
});

describe('TrackClient', () => {
  afterEach(() => jest.useRealTimers());

  it('opens the comm with hello, then sends the notebook after welcome', async () => {
    const { client, kernel } = setup();
    const settled = client.connect(kernel);
    const comm = kernel.last;
    expect(comm.target).toBe(TARGET_NAME);
    expect(comm.opened).toEqual([
      expect.objectContaining({ type: 'hello', protocol: '1.1' })
    ]);
    expect(client.state).toBe('connecting');
    comm.push(WELCOME);
    await expect(settled).resolves.toBe('tracking');
    expect(comm.sent).toEqual([
      expect.objectContaining({ type: 'notebook', cells: expect.any(Array) })
    ]);
    expect(comm.sent[0].cells.map((c: any) => c.id)).toEqual(['a1', 'b2']);
  });

  it('passes every report on, and null once the comm is gone', async () => {
    const { client, kernel, reports } = setup();
    const settled = client.connect(kernel);
    kernel.last.push(WELCOME);
    await settled;
    kernel.last.push(EXAMPLE_REPORT);
    expect(reports).toEqual([EXAMPLE_REPORT]);
    expect(client.report).toBe(EXAMPLE_REPORT);
    kernel.last.kernelCloses();
    expect(reports).toEqual([EXAMPLE_REPORT, null]);
    expect(client.state).toBe('unavailable');
  });

  it('becomes unavailable, silently, when the kernel closes the comm at once', async () => {
    const { client, kernel } = setup();
    const settled = client.connect(kernel);
    kernel.last.kernelCloses();
    await expect(settled).resolves.toBe('unavailable');
    expect(kernel.last.sent).toEqual([]);
  });

  it('closes the comm and shows nothing for another major version', async () => {
    const { client, kernel, reports } = setup();
    const settled = client.connect(kernel);
    kernel.last.push({ ...WELCOME, protocol: '2.0' });
    await expect(settled).resolves.toBe('incompatible');
    expect(kernel.last.closed).toBe(1);
    expect(kernel.last.sent).toEqual([]);
    kernel.last.push(EXAMPLE_REPORT);
    expect(reports.filter(r => r !== null)).toEqual([]);
  });

  it('waits for %track on: off after welcome, tracking (and the notebook) on status', async () => {
    const { client, kernel } = setup();
    const settled = client.connect(kernel);
    kernel.last.push({ ...WELCOME, tracking: false });
    await expect(settled).resolves.toBe('off');
    const sentBefore = kernel.last.sent.length;
    kernel.last.push({
      type: 'status',
      protocol: '1.0',
      tracking: true,
      order_source: 'execution_order'
    });
    expect(client.state).toBe('tracking');
    expect(kernel.last.sent.length).toBe(sentBefore + 1);
    expect(kernel.last.sent[sentBefore].type).toBe('notebook');
  });

  it('debounces edits into one notebook message, and skips unchanged notebooks', async () => {
    jest.useFakeTimers();
    const { client, kernel, setCells } = setup();
    const settled = client.connect(kernel);
    kernel.last.push(WELCOME);
    await settled;
    const comm = kernel.last;
    expect(comm.sent).toHaveLength(1);
    for (const source of ['x', 'x =', 'x = 2']) {
      setCells([{ id: 'b2', cell_type: 'code', source }]);
      client.scheduleNotebook();
      jest.advanceTimersByTime(100);
    }
    expect(comm.sent).toHaveLength(1);
    jest.advanceTimersByTime(300);
    expect(comm.sent).toHaveLength(2);
    expect(comm.sent[1].cells).toEqual([
      { id: 'b2', cell_type: 'code', source: 'x = 2' }
    ]);
    // A metadata-only change: same cells, nothing sent.
    client.scheduleNotebook();
    jest.advanceTimersByTime(400);
    expect(comm.sent).toHaveLength(2);
  });

  it('reconnects on a new kernel: the old comm is ignored, the new one used', async () => {
    const { client, kernel, reports } = setup();
    let settled = client.connect(kernel);
    const old = kernel.last;
    old.push(WELCOME);
    await settled;
    // The kernel restarted: a fresh connect opens a second comm.
    const restarted = new ScriptedKernel();
    settled = client.connect(restarted);
    old.push(EXAMPLE_REPORT);
    expect(reports.filter(r => r !== null)).toEqual([]);
    restarted.last.push(WELCOME);
    await expect(settled).resolves.toBe('tracking');
    restarted.last.push(EXAMPLE_REPORT);
    expect(client.report).toBe(EXAMPLE_REPORT);
  });

  it('asks for a report only while tracking', async () => {
    const { client, kernel } = setup();
    client.requestReport();
    const settled = client.connect(kernel);
    kernel.last.push(WELCOME);
    await settled;
    client.requestReport();
    expect(kernel.last.sent.map((m: any) => m.type)).toEqual([
      'notebook',
      'request_report'
    ]);
  });

  it('treats a kernel without comm support as unavailable', async () => {
    const { client } = setup();
    const state = await client.connect({
      createComm: () => {
        throw new Error('Comms are disabled on this kernel connection');
      }
    });
    expect(state).toBe('unavailable');
  });
});
