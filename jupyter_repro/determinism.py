"""Where a notebook's results can change from run to run, found statically.

Used by nb-smoke's lint (``unseeded_random``, ``untrusted_pickle``) and by
``nb-smoke --repeat`` to name the probable cause of a nondeterministic cell. The rules:

- **Random generators** used before any seed is set in the notebook (cells in notebook
  order): the ``random`` module's functions before ``random.seed``; ``numpy.random``'s
  legacy functions before ``numpy.random.seed``; ``numpy.random.default_rng()`` /
  ``RandomState()`` / ``random.Random()`` created with no seed (always); ``torch.rand*``
  before ``torch.manual_seed``; scikit-learn estimators and helpers that take
  ``random_state`` called without it (they fall back to numpy's global generator, so a
  ``numpy.random.seed`` above also makes them repeatable).
- **The clock**: ``time.time``, ``datetime.now`` and friends; ``uuid.uuid1/4``,
  ``os.urandom``, ``secrets``.
- **Order**: iterating a ``set`` (string hashing is randomised per process) and directory
  listings (``os.listdir``, ``glob``, ``Path.iterdir``/``glob``) not wrapped in ``sorted``.
- **Pickles**: ``pickle.load``/``joblib.load``/``torch.load``/``pandas.read_pickle`` of a
  file the notebook does not write itself: unpickling runs code from that file.

Names are resolved through the notebook's imports (``import numpy as np``,
``from numpy.random import default_rng``), accumulated in notebook order.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

from .analysis import _literal_path as literal_path
from .analysis import analyze_cell, parse_cell

_RANDOM_FUNCS = {
    "random", "randint", "choice", "choices", "shuffle", "sample", "uniform", "gauss",
    "normalvariate", "randrange", "getrandbits", "betavariate", "expovariate",
    "triangular", "lognormvariate", "vonmisesvariate", "gammavariate", "paretovariate",
    "weibullvariate", "randbytes",
}  # fmt: skip
_NUMPY_LEGACY = {
    "rand", "randn", "randint", "random", "random_sample", "ranf", "sample", "choice",
    "shuffle", "permutation", "normal", "uniform", "binomial", "poisson", "exponential",
    "beta", "gamma", "multivariate_normal", "standard_normal", "lognormal", "laplace",
    "logistic", "multinomial", "dirichlet", "geometric", "integers", "bytes",
}  # fmt: skip
_TORCH_RANDOM = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like",
                 "randint_like", "normal", "bernoulli", "multinomial", "poisson"}  # fmt: skip
_SKLEARN_RANDOM_STATE = {
    "train_test_split", "RandomForestClassifier", "RandomForestRegressor",
    "ExtraTreesClassifier", "ExtraTreesRegressor", "GradientBoostingClassifier",
    "GradientBoostingRegressor", "HistGradientBoostingClassifier",
    "HistGradientBoostingRegressor", "DecisionTreeClassifier", "DecisionTreeRegressor",
    "KMeans", "MiniBatchKMeans", "TSNE", "MLPClassifier", "MLPRegressor", "SGDClassifier",
    "SGDRegressor", "IsolationForest", "BaggingClassifier", "BaggingRegressor",
    "AdaBoostClassifier", "AdaBoostRegressor", "ShuffleSplit", "StratifiedShuffleSplit",
    "make_classification", "make_regression", "make_blobs", "make_moons", "make_circles",
    "GaussianMixture", "RandomizedSearchCV", "TruncatedSVD", "NMF", "RandomTreesEmbedding",
    "SpectralClustering", "Perceptron", "PassiveAggressiveClassifier",
}  # fmt: skip
_CLOCK = {
    "time.time", "time.time_ns", "time.perf_counter", "time.monotonic", "time.ctime",
    "time.localtime", "time.gmtime", "time.strftime", "datetime.datetime.now",
    "datetime.datetime.today", "datetime.datetime.utcnow", "datetime.date.today",
    "uuid.uuid1", "uuid.uuid4", "os.urandom", "os.getpid",
}  # fmt: skip
_LISTING = {"os.listdir", "os.scandir", "os.walk", "glob.glob", "glob.iglob"}
_LISTING_METHODS = {"iterdir", "glob", "rglob"}
_PICKLE_LOADS = {"pickle.load", "pickle.loads", "joblib.load", "torch.load",
                 "pandas.read_pickle", "dill.load", "cloudpickle.load"}  # fmt: skip
_PICKLE_WRITES = {"pickle.dump", "joblib.dump", "torch.save", "dill.dump", "cloudpickle.dump"}


@dataclass(frozen=True)
class Source:
    """One place where a run can differ from the next.

    Attributes:
        cell_index: 0-based index of the cell in the notebook.
        kind: ``unseeded_random``, ``clock``, ``set_order``, ``listing_order`` or
            ``untrusted_pickle``.
        call: the call as resolved through imports, e.g. ``numpy.random.rand``.
        line: 1-based line in the cell.
        message: one sentence for people.
    """

    cell_index: int
    kind: str
    call: str
    line: int
    message: str


def scan_notebook(sources: Sequence[tuple[int, str]]) -> list[Source]:
    """Scan ``(cell index, source)`` pairs in notebook order; returns sources found."""
    state = _State()
    found: list[Source] = []
    for index, source in sources:
        tree = parse_cell(source)
        if isinstance(tree, SyntaxError):
            continue
        state.cell = index
        analysis = analyze_cell(source)
        state.written_paths |= analysis.file_writes
        state.cell_reads = analysis.file_reads
        visitor = _Visitor(state)
        visitor.visit(tree)
        found.extend(visitor.found)
    written = state.written_paths
    return [
        s
        for s in found
        if not (s.kind == "untrusted_pickle" and s.call.split("|", 1)[-1] in written)
    ]


class _State:
    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.seeded: set[str] = set()  # "random", "numpy", "torch"
        self.written_paths: set[str] = set()
        self.cell_reads: frozenset[str] = frozenset()
        self.cell = 0


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _pickle_path(node: ast.expr | None) -> str | None:
    """The literal path a pickle is loaded from: ``"m.pkl"``, ``Path("m.pkl")`` or
    ``open("m.pkl", "rb")``, normalised as :mod:`jupyter_repro.analysis` does."""
    if node is None:
        return None
    if isinstance(node, ast.Call) and _dotted(node.func) == "open" and node.args:
        node = node.args[0]
    return literal_path(node)


class _Visitor(ast.NodeVisitor):
    def __init__(self, state: _State) -> None:
        self.state = state
        self.found: list[Source] = []
        self._sorted_depth = 0

    def _resolve(self, name: str | None) -> str | None:
        if name is None:
            return None
        head, _, rest = name.partition(".")
        full = self.state.aliases.get(head, head)
        return f"{full}.{rest}" if rest else full

    def _add(self, node: ast.AST, kind: str, call: str, message: str) -> None:
        self.found.append(Source(self.state.cell, kind, call, getattr(node, "lineno", 1), message))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.state.aliases[alias.asname] = alias.name
            else:
                head = alias.name.split(".")[0]
                self.state.aliases[head] = head

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    self.state.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def visit_For(self, node: ast.For) -> None:
        it = node.iter
        if isinstance(it, (ast.Set, ast.SetComp)) or (
            isinstance(it, ast.Call) and _dotted(it.func) in ("set", "frozenset")
        ):
            self._add(
                it, "set_order", "set iteration",
                "iterates a set: its order changes between processes for strings",
            )  # fmt: skip
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        raw = _dotted(node.func)
        name = self._resolve(raw)
        if raw == "sorted":
            self._sorted_depth += 1
            self.generic_visit(node)
            self._sorted_depth -= 1
            return
        if name:
            self._check(node, name)
        if (
            isinstance(node.func, ast.Attribute)
            and node.func.attr in _LISTING_METHODS
            and not self._sorted_depth
            and (name or "").split(".")[0] not in ("glob", "os")
        ):
            self._add(
                node, "listing_order", f".{node.func.attr}()",
                f"lists a folder with .{node.func.attr}() without sorted(): the order depends on the file system",
            )  # fmt: skip
        if isinstance(node.func, ast.Attribute) and node.func.attr == "to_pickle" and node.args:
            path = _pickle_path(node.args[0])
            if path:
                self.state.written_paths.add(path)
        self.generic_visit(node)

    def _check(self, node: ast.Call, name: str) -> None:
        state = self.state
        parts = name.split(".")
        no_args = not node.args and not any(
            k.arg in ("seed", "x") and not _is_none(k.value) for k in node.keywords
        )
        # seeds
        seeded = bool(node.args or node.keywords) and not (node.args and _is_none(node.args[0]))
        if name == "random.seed":
            if seeded:  # random.seed() with no argument seeds from the OS: not repeatable
                state.seeded.add("random")
        elif name == "numpy.random.seed":
            if seeded:
                state.seeded.add("numpy")
        elif name in (
            "torch.manual_seed",
            "torch.random.manual_seed",
            "torch.cuda.manual_seed_all",
        ):
            state.seeded.add("torch")
        # generators created without a seed
        elif name in ("numpy.random.default_rng", "numpy.random.RandomState", "random.Random",
                      "numpy.random.Generator") and (no_args or (node.args and _is_none(node.args[0]))):  # fmt: skip
            self._add(
                node, "unseeded_random", name,
                f"{name}() is created without a seed: every run draws different numbers",
            )  # fmt: skip
        elif parts[0] == "random" and len(parts) == 2 and parts[1] in _RANDOM_FUNCS:
            if "random" not in state.seeded:
                self._add(
                    node,
                    "unseeded_random",
                    name,
                    f"{name}() is used with no random.seed() set earlier",
                )
        elif name.startswith("numpy.random.") and len(parts) == 3 and parts[2] in _NUMPY_LEGACY:
            if "numpy" not in state.seeded:
                self._add(
                    node,
                    "unseeded_random",
                    name,
                    f"{name}() is used with no numpy.random.seed() set earlier",
                )
        elif parts[0] == "torch" and len(parts) == 2 and parts[1] in _TORCH_RANDOM:
            if "torch" not in state.seeded:
                self._add(
                    node,
                    "unseeded_random",
                    name,
                    f"{name}() is used with no torch.manual_seed() set earlier",
                )
        elif parts[0] == "sklearn" and parts[-1] in _SKLEARN_RANDOM_STATE:
            rs = next((k.value for k in node.keywords if k.arg == "random_state"), None)
            if (rs is None or _is_none(rs)) and "numpy" not in state.seeded:
                self._add(
                    node, "unseeded_random", parts[-1],
                    f"{parts[-1]}() is called without random_state and no numpy.random.seed() is set earlier",
                )  # fmt: skip
        elif name in _CLOCK:
            self._add(
                node, "clock", name, f"{name}() reads the clock or the OS: it differs on every run"
            )
        elif name in _LISTING and not self._sorted_depth:
            self._add(
                node, "listing_order", name,
                f"{name}() without sorted(): the order depends on the file system",
            )  # fmt: skip
        elif name in _PICKLE_LOADS:
            path = _pickle_path(node.args[0]) if node.args else None
            if path is None and len(state.cell_reads) == 1:
                # pickle.load(f) with `with open("m.pkl", "rb") as f:` in the same cell
                (path,) = state.cell_reads
            where = f" {path!r}" if path else ""
            self._add(
                node, "untrusted_pickle", f"{name}|{path or ''}",
                f"{name}(){where} loads a pickle the notebook does not write itself: "
                "unpickling runs code from that file; check its checksum first",
            )  # fmt: skip
        elif name in _PICKLE_WRITES and len(node.args) >= 2:
            path = _pickle_path(node.args[1])
            if path:
                state.written_paths.add(path)


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def probable_cause(sources: Sequence[Source], cell_index: int) -> str:
    """The likeliest reason a cell's output changed between runs, in one sentence.

    Looks at sources in that cell first, then in the cells above it (the later cells
    inherit randomness from earlier draws); RNGs before the clock before ordering.
    """
    ranked = ("unseeded_random", "clock", "set_order", "listing_order")
    candidates = [s for s in sources if s.cell_index <= cell_index and s.kind in ranked]
    if not candidates:
        return "nothing recognisable (no unseeded RNG, clock or ordering call found above it)"
    candidates.sort(key=lambda s: (s.cell_index != cell_index, ranked.index(s.kind), -s.cell_index))
    best = candidates[0]
    where = "this cell" if best.cell_index == cell_index else f"cell {best.cell_index}"
    return f"{best.message} ({where}, line {best.line})"
