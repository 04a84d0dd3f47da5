/**
 * The frontend side of the `%track` comm protocol, version 1.1 (docs/protocol.md).
 *
 * This module knows nothing about JupyterLab widgets: it talks to anything shaped like a
 * kernel connection (`createComm`), so the jest tests drive it with a scripted kernel and
 * the extension drives it with the real `Kernel.IKernelConnection`.
 */

/** The comm target the kernel registers when `%load_ext jupyter_repro` ran. */
export const TARGET_NAME = 'jupyter_repro.track';

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = '1.1';

/** How long cell edits are collected before the `notebook` message is sent. */
export const NOTEBOOK_DEBOUNCE_MS = 300;

export type OrderSource = 'frontend' | 'file' | 'execution_order';

/** One cell as the `notebook` message carries it. */
export interface INotebookCell {
  id: string;
  cell_type: 'code' | 'markdown' | 'raw';
  source: string;
}

export interface IWelcome {
  type: 'welcome';
  protocol: string;
  kernel: { name: string; version: string };
  tracking: boolean;
  order_source: OrderSource;
  record_path?: string | null;
}

export interface IStatus {
  type: 'status';
  protocol: string;
  tracking: boolean;
  order_source: OrderSource;
  notices?: boolean;
  quiet_cells?: string[];
}

export interface ICellReport {
  cell_id: string;
  index: number;
  execution_count: number | null;
  last_run_seq: number | null;
  raised: string | null;
  /** False for a cell that ran but is not in the order the kernel has yet (protocol
   * 1.0, later documents); its `index` is then not a notebook position. */
  placed?: boolean;
  verdicts: string[];
  /** The verdicts that are not information: what needs attention (protocol 1.1; a 1.0
   * kernel does not send it). */
  flagged?: string[];
}

export interface IFinding {
  verdict: string;
  cell_index: number;
  cell_id: string | null;
  message: string;
  names: string[];
  related_cells: number[];
  /** True when nothing is wrong with what the cell shows (protocol 1.1): e.g. a `stale`
   * whose value only cells below it changed. */
  information?: boolean;
}

export interface IReport {
  type: 'report';
  protocol: string;
  trigger: {
    cell_id: string;
    seq: number;
    execution_count: number | null;
  } | null;
  summary: {
    consistent: boolean;
    reasons: string[];
    order_source: OrderSource;
    cells: number;
    executed: number;
  };
  cells: ICellReport[];
  findings: IFinding[];
}

export interface IErrorMessage {
  type: 'error';
  protocol: string;
  message: string;
  in_reply_to?: string | null;
}

export type KernelMessage = IWelcome | IStatus | IReport | IErrorMessage;

/** The major part of a `"MAJOR.MINOR"` version, or null when it is not one. */
export function majorOf(version: unknown): number | null {
  if (typeof version !== 'string') {
    return null;
  }
  const match = /^(\d+)\.(\d+)$/.exec(version);
  return match ? Number(match[1]) : null;
}

/** True when a kernel speaking `version` can be understood by this client. */
export function isCompatible(version: unknown): boolean {
  return majorOf(version) === majorOf(PROTOCOL_VERSION);
}

function isObject(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The kernel message in a comm payload, or null for anything this client ignores:
 * unknown types (the protocol says to ignore them), and known types missing a field the
 * protocol marks required (a malformed report must not wipe the badges).
 */
export function parseKernelMessage(data: unknown): KernelMessage | null {
  if (!isObject(data) || typeof data.type !== 'string') {
    return null;
  }
  switch (data.type) {
    case 'welcome':
      return typeof data.tracking === 'boolean' && isObject(data.kernel)
        ? (data as IWelcome)
        : null;
    case 'status':
      return typeof data.tracking === 'boolean' ? (data as IStatus) : null;
    case 'report':
      return isObject(data.summary) &&
        Array.isArray(data.cells) &&
        Array.isArray(data.findings)
        ? (data as IReport)
        : null;
    case 'error':
      return typeof data.message === 'string' ? (data as IErrorMessage) : null;
    default:
      return null;
  }
}

/** The `hello` message this client opens the comm with. */
export function helloMessage(clientVersion: string): Record<string, any> {
  return {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    client: { name: 'jupyter-repro-labextension', version: clientVersion }
  };
}

/** The `notebook` message: all cells, in order, sources joined. */
export function notebookMessage(cells: INotebookCell[]): Record<string, any> {
  return {
    type: 'notebook',
    protocol: PROTOCOL_VERSION,
    cells: cells.map(cell => ({
      id: cell.id,
      cell_type: cell.cell_type,
      source: cell.source
    }))
  };
}

/* ------------------------------------------------------------------------------------ */
/* The minimal kernel surface the client needs (a subset of @jupyterlab/services).      */

export interface ICommLike {
  readonly isDisposed?: boolean;
  onMsg: (msg: { content: { data: unknown } }) => void | PromiseLike<void>;
  onClose: (msg: { content: { data: unknown } }) => void | PromiseLike<void>;
  open(data?: any): unknown;
  send(data: any): unknown;
  close(data?: any): unknown;
}

export interface IKernelLike {
  createComm(targetName: string): ICommLike;
}

/**
 * Where the client stands with one kernel.
 *
 * - `connecting`: a comm was opened, no answer yet.
 * - `unavailable`: the kernel closed the comm (`%load_ext jupyter_repro` not run, or not
 *   a kernel that speaks the protocol).
 * - `incompatible`: the kernel speaks another MAJOR version; nothing is shown.
 * - `off`: the comm is open, `%track on` has not run.
 * - `tracking`: the comm is open and tracking is on.
 */
export type ClientState =
  | 'disconnected'
  | 'connecting'
  | 'unavailable'
  | 'incompatible'
  | 'off'
  | 'tracking';

export interface ITrackClientOptions {
  /** Returns the notebook's cells in order, as they are now. */
  cells: () => INotebookCell[];
  /** Called with every report (the complete current state), and with null when the
   * comm went away or tracking stopped (nothing is known any more). */
  onReport?: (report: IReport | null) => void;
  /** Called whenever `state` changes. */
  onStateChange?: (state: ClientState) => void;
  /** Version sent in `hello`. */
  clientVersion?: string;
  /** Debounce for `scheduleNotebook`, in milliseconds. */
  debounceMs?: number;
}

/**
 * One comm to one kernel. Create a new client for each kernel; call `connect()` again
 * after the kernel was restarted or after the user loaded the extension.
 */
export class TrackClient {
  constructor(options: ITrackClientOptions) {
    this._options = options;
  }

  get state(): ClientState {
    return this._state;
  }

  /** The last report received, or null (cleared when the comm goes away). */
  get report(): IReport | null {
    return this._report;
  }

  /** The `welcome` of the current comm, or null. */
  get welcome(): IWelcome | null {
    return this._welcome;
  }

  /**
   * Open the comm on `kernel`. Any previous comm is dropped. Resolves once the kernel
   * answered with `welcome` or closed the comm (or after `timeoutMs`).
   */
  connect(kernel: IKernelLike, timeoutMs = 10000): Promise<ClientState> {
    this.dispose(false);
    this._disposed = false;
    let comm: ICommLike;
    try {
      comm = kernel.createComm(TARGET_NAME);
    } catch (error) {
      // A kernel without comm support: nothing to show.
      this._setState('unavailable');
      return Promise.resolve(this._state);
    }
    this._comm = comm;
    this._lastSent = null;
    this._setState('connecting');
    const settled = new Promise<ClientState>(resolve => {
      this._settle = resolve;
      setTimeout(() => this._resolveSettled(), timeoutMs);
    });
    comm.onMsg = msg => this._handle(comm, msg.content.data);
    comm.onClose = () => {
      if (this._comm !== comm) {
        return;
      }
      this._comm = null;
      this._welcome = null;
      this._setReport(null);
      if (this._state !== 'incompatible') {
        this._setState('unavailable');
      }
      this._resolveSettled();
    };
    comm.open(helloMessage(this._options.clientVersion ?? '0.1.0'));
    return settled;
  }

  /**
   * Send the `notebook` message now (if the comm is open). With `onlyIfChanged`, a
   * notebook identical to the last one sent is not sent again (metadata and output
   * changes do not concern the kernel).
   */
  sendNotebook(onlyIfChanged = false): void {
    this._clearTimer();
    if (!this._comm || (this._state !== 'off' && this._state !== 'tracking')) {
      return;
    }
    const message = notebookMessage(this._options.cells());
    const signature = JSON.stringify(message.cells);
    if (onlyIfChanged && signature === this._lastSent) {
      return;
    }
    this._lastSent = signature;
    this._comm.send(message);
  }

  /** Send the `notebook` message after the debounce delay; repeated calls coalesce. */
  scheduleNotebook(): void {
    this._clearTimer();
    this._timer = setTimeout(
      () => this.sendNotebook(true),
      this._options.debounceMs ?? NOTEBOOK_DEBOUNCE_MS
    );
  }

  /** Ask for the current report (`request_report`). */
  requestReport(): void {
    if (this._comm && this._state === 'tracking') {
      this._comm.send({ type: 'request_report', protocol: PROTOCOL_VERSION });
    }
  }

  /** Forget the comm, e.g. when the kernel is restarting or the notebook closes. */
  dispose(closeComm = true): void {
    this._clearTimer();
    const comm = this._comm;
    this._comm = null;
    this._welcome = null;
    if (comm && closeComm && !comm.isDisposed) {
      try {
        comm.close();
      } catch (error) {
        // The kernel is already gone; nothing to close.
      }
    }
    this._setReport(null);
    this._setState('disconnected');
    this._resolveSettled();
    this._disposed = true;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  private _handle(comm: ICommLike, data: unknown): void {
    if (comm !== this._comm) {
      return;
    }
    const msg = parseKernelMessage(data);
    if (!msg) {
      return;
    }
    if (!isCompatible(msg.protocol ?? PROTOCOL_VERSION)) {
      // Another MAJOR: close and show nothing (protocol.md section 1).
      this._comm = null;
      this._setReport(null);
      this._setState('incompatible');
      try {
        comm.close();
      } catch (error) {
        // ignore: closing is a courtesy
      }
      this._resolveSettled();
      return;
    }
    switch (msg.type) {
      case 'welcome':
        this._welcome = msg;
        this._setState(msg.tracking ? 'tracking' : 'off');
        this.sendNotebook();
        this._resolveSettled();
        break;
      case 'status': {
        const wasTracking = this._state === 'tracking';
        this._setState(msg.tracking ? 'tracking' : 'off');
        if (msg.tracking && !wasTracking) {
          this.sendNotebook();
        }
        if (!msg.tracking) {
          this._setReport(null);
        }
        break;
      }
      case 'report':
        if (this._state !== 'tracking') {
          this._setState('tracking');
        }
        this._setReport(msg);
        break;
      case 'error':
        // The protocol lets a frontend ignore errors; they mean this client sent
        // something the kernel could not accept, which the tests catch.
        break;
    }
  }

  private _setReport(report: IReport | null): void {
    if (report === this._report) {
      return;
    }
    this._report = report;
    this._options.onReport?.(report);
  }

  private _setState(state: ClientState): void {
    if (state === this._state) {
      return;
    }
    this._state = state;
    this._options.onStateChange?.(state);
  }

  private _resolveSettled(): void {
    const settle = this._settle;
    this._settle = null;
    settle?.(this._state);
  }

  private _clearTimer(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _options: ITrackClientOptions;
  private _comm: ICommLike | null = null;
  private _state: ClientState = 'disconnected';
  private _report: IReport | null = null;
  private _welcome: IWelcome | null = null;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _settle: ((state: ClientState) => void) | null = null;
  private _disposed = false;
  private _lastSent: string | null = null;
}
