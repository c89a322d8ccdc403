"""LightGBM boosters read from their text files, predicted in numpy for small frames, LightGBM for the rest.

A cold ``joules-estimate`` predicts about 64 configurations; importing LightGBM (it imports scipy.sparse, ~0.3 s on
2 cores) and parsing its boosters cost more than the prediction itself. :class:`TextBooster` keeps a booster's
text, evaluates frames of up to :data:`NUMPY_MAX_ROWS` rows with :class:`TreeArrays` (plain numpy), and builds a
``lightgbm.Booster`` only for larger frames, for TreeSHAP contributions and for anything else LightGBM offers.

Bit-identical to ``lightgbm.Booster.predict`` by construction, following LightGBM 4's C++ code
(``include/LightGBM/tree.h``, ``src/boosting/gbdt_prediction.cpp``, ``src/c_api.cpp``):

- a dense row goes through ``RowFunctionFromDenseMatric``, which keeps a value only when ``|x| > kZeroThreshold``
  (1e-35) or it is NaN: smaller values become exactly 0;
- ``NumericalDecision``: a NaN meets a node whose missing type is not NaN as 0.0; a missing value (missing type Zero
  and ``|x| <= kZeroThreshold``, or missing type NaN and NaN) goes to the default child; otherwise
  ``x <= threshold`` goes left;
- ``GBDT::PredictRaw`` adds the trees' leaf values in tree order to 0.0 (``np.cumsum`` adds in that order too); the
  ``regression`` objective's output is the raw score.

Parsing a booster's text takes ~25 ms; :meth:`TreeArrays.cached` keeps the parsed arrays as an ``.npz`` file in
:func:`estimator.paths.cache_dir` named by the SHA-256 of the text (and this parser's version): a changed booster
has another name, so a cached file is never stale; files are written atomically (``estimator/safe_io.py``), read
back only when they carry that digest and consistent indices, and rebuilt from the text otherwise.

Boosters with categorical splits, linear trees, several trees per iteration or another objective are never
evaluated here (:meth:`TreeArrays.from_text` returns None and LightGBM predicts). ``tests/test_trees.py`` checks the
equality bit for bit against LightGBM on the trained predictor and on boosters with NaN, zero and missing values.
"""

from __future__ import annotations

import hashlib
import re
import sys
import zipfile
from dataclasses import asdict, dataclass

import numpy as np

#: LightGBM's kZeroThreshold (include/LightGBM/meta.h)
ZERO_THRESHOLD = 1e-35
#: frames up to this many rows are predicted in numpy: its cost grows with rows x trees x depth, where LightGBM's
#: C++ loop is faster on large frames (numbers in the module docstring of tests/test_trees.py)
NUMPY_MAX_ROWS = 256
#: decision_type bits (include/LightGBM/tree.h): categorical split; missing type in bits 2-3 (0 = None)
_CATEGORICAL_MASK, _MISSING_TYPE_SHIFT = 1, 2
#: names cached files; bump it whenever TreeArrays or its parser changes
CACHE_FORMAT = "trees-v1"


@dataclass(frozen=True)
class TreeArrays:
    """A booster's trees as one flat node table: internal nodes of every tree, then every leaf as a node that leads
    to itself (threshold +inf), so that ``depth`` steps from each tree's root end on its leaf."""

    root: np.ndarray  # (trees,) node index of each tree's root
    feature: np.ndarray  # (nodes,) split feature (0 for leaves)
    threshold: np.ndarray  # (nodes,) go left when value <= threshold (+inf for leaves)
    left: np.ndarray  # (nodes,) node index of the left child (a leaf: itself)
    right: np.ndarray  # (nodes,) node index of the right child (a leaf: itself)
    value: np.ndarray  # (nodes,) leaf value (0 for internal nodes)
    depth: int  # internal nodes on the longest root-to-leaf path
    num_features: int

    @classmethod
    def from_text(cls, text: str) -> TreeArrays | None:
        """Parse a LightGBM text model; None when it uses anything this evaluator does not reproduce (categorical
        splits, linear trees, a missing-value type other than None, several trees per iteration, an objective
        whose output is not the raw score)."""
        head, _, body = text.partition("\nTree=")
        header = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
        lines = _tree_lines(body.split("\nend of trees")[0])
        if (header.get("num_class") != "1" or header.get("num_tree_per_iteration") != "1"
                or header.get("objective") != "regression" or "average_output" in head.splitlines()
                or any(v != "0" for v in lines["num_cat"] + lines["is_linear"])):
            return None
        leaves = _numbers(lines["num_leaves"], int)
        decision = _numbers(lines["decision_type"], int)
        if not len(leaves) or ((decision & _CATEGORICAL_MASK) | (decision >> _MISSING_TYPE_SHIFT)).any():
            return None
        splits = np.maximum(leaves - 1, 0)
        internal_start = np.concatenate([[0], np.cumsum(splits)[:-1]])
        leaf_start = splits.sum() + np.concatenate([[0], np.cumsum(leaves)[:-1]])
        owner = np.repeat(np.arange(len(leaves)), splits)  # tree of each internal node
        children = [_numbers(lines[side], int) for side in ("left_child", "right_child")]
        left, right = (np.where(c >= 0, internal_start[owner] + c, leaf_start[owner] + ~c) for c in children)
        num_leaves = int(leaves.sum())
        leaf_index = splits.sum() + np.arange(num_leaves)
        root = np.where(leaves > 1, internal_start, leaf_start)
        return cls(root=root,
                   feature=np.concatenate([_numbers(lines["split_feature"], int),
                                           np.zeros(num_leaves, np.int64)]),
                   threshold=np.concatenate([_numbers(lines["threshold"], float), np.full(num_leaves, np.inf)]),
                   left=np.concatenate([left, leaf_index]), right=np.concatenate([right, leaf_index]),
                   value=np.concatenate([np.zeros(splits.sum()), _numbers(lines["leaf_value"], float)]),
                   depth=_max_depth(root, left, right, int(splits.sum())),
                   num_features=int(header["max_feature_idx"]) + 1)

    @classmethod
    def cached(cls, text: str) -> TreeArrays | None:
        """:meth:`from_text`, through the cache described in the module docstring (None: LightGBM must predict)."""
        from estimator.paths import cache_dir

        directory = cache_dir()
        digest = hashlib.sha256(text.encode()).hexdigest()
        path = directory / "trees" / f"{CACHE_FORMAT}-{digest}.npz" if directory is not None else None
        if path is not None and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    if str(data["digest"]) == digest:
                        arrays = cls(**{name: data[name] for name in _ARRAY_FIELDS},
                                     depth=int(data["depth"]), num_features=int(data["num_features"]))
                        if arrays._consistent():
                            return arrays
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                pass  # unreadable or foreign: rebuilt below
        arrays = cls.from_text(text)
        if arrays is not None and path is not None:
            arrays._write(path, digest)
        return arrays

    def _write(self, path, digest: str) -> None:
        from estimator.safe_io import atomic_writer

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_writer(path, "wb", encoding=None) as handle:
                np.savez(handle, digest=np.array(digest), **asdict(self))
        except OSError:
            pass  # a cache that cannot be written only costs the parse next time

    def _consistent(self) -> bool:
        """Every index in range and every array of the right length (a cached file must describe a forest)."""
        nodes = len(self.feature)
        return (all(len(a) == nodes for a in (self.threshold, self.left, self.right, self.value))
                and bool(len(self.root)) and self.depth >= 0
                and all(a.dtype.kind == "i" and ((a >= 0) & (a < nodes)).all() for a in (self.root, self.left,
                                                                                         self.right))
                and self.feature.dtype.kind == "i" and bool(((self.feature >= 0)
                                                             & (self.feature < self.num_features)).all())
                and self.threshold.dtype.kind == "f" and self.value.dtype.kind == "f")

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Raw scores of ``matrix`` (rows x features, float64), as ``lightgbm.Booster.predict`` returns them."""
        x = np.array(matrix, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected a 2-D matrix with {self.num_features} features, got shape {x.shape}")
        # the dense-row conversion drops |x| <= kZeroThreshold; a node of missing type None reads NaN as 0.0
        x[np.isnan(x) | (np.abs(x) <= ZERO_THRESHOLD)] = 0.0
        flat = x.ravel()
        row_start = (np.arange(len(x)) * self.num_features)[:, None]
        children = np.stack([self.right, self.left], axis=1).ravel()  # child of node n: [2n + (goes left)]
        node = np.broadcast_to(self.root, (len(x), len(self.root)))
        for _ in range(self.depth):
            value = flat.take(row_start + self.feature.take(node))
            node = children.take(2 * node + (value <= self.threshold.take(node)))
        return np.cumsum(self.value.take(node), axis=1)[:, -1]


_ARRAY_FIELDS = ("root", "feature", "threshold", "left", "right", "value")
_TREE_KEYS = ("num_leaves", "num_cat", "split_feature", "threshold", "decision_type", "left_child", "right_child",
              "leaf_value", "is_linear")
_TREE_LINE = re.compile("^(" + "|".join(_TREE_KEYS) + r")=([^\n]*)", re.MULTILINE)


def _tree_lines(body: str) -> dict[str, list[str]]:
    """Per key of :data:`_TREE_KEYS`, the value of every tree's ``key=...`` line, in tree order."""
    lines: dict[str, list[str]] = {key: [] for key in _TREE_KEYS}
    for key, value in _TREE_LINE.findall(body):
        lines[key].append(value)
    return lines


def _numbers(lines: list[str], kind: type) -> np.ndarray:
    """Space-separated numbers of several lines, concatenated (Python's float(): correctly rounded, as LightGBM's
    own parser)."""
    return np.array(list(map(kind, " ".join(lines).split())), dtype=np.int64 if kind is int else float)


def _max_depth(root: np.ndarray, left: np.ndarray, right: np.ndarray, internal_nodes: int) -> int:
    """Internal nodes on the longest root-to-leaf path over all trees (steps :meth:`TreeArrays.predict` takes)."""
    depth, frontier = 0, root[root < internal_nodes]
    while len(frontier):
        depth += 1
        frontier = np.concatenate([left[frontier], right[frontier]])
        frontier = frontier[frontier < internal_nodes]
    return depth


def import_lightgbm():
    """``import lightgbm`` with its optional scikit-learn wrappers switched off; returns the module.

    ``import lightgbm`` imports scikit-learn (and through it scipy) when installed: ~0.7 s of a 1.5 s budget for
    a cold CLI run. Prediction uses only ``lightgbm.Booster``, so the first import hides scikit-learn for the
    duration of that import (lightgbm then skips its sklearn wrappers, which this project does not use: training
    calls ``lightgbm.train``). scikit-learn itself stays importable afterwards.
    """
    if "lightgbm" not in sys.modules and "sklearn" not in sys.modules:
        sys.modules["sklearn"] = None  # type: ignore[assignment]  # makes `import sklearn` raise ImportError
        try:
            import lightgbm  # noqa: F401
        finally:
            if sys.modules.get("sklearn", 0) is None:
                del sys.modules["sklearn"]
    import lightgbm

    return lightgbm


class TextBooster:
    """A booster kept as LightGBM text: small frames predicted in numpy, the rest by a ``lightgbm.Booster`` built
    on first use (same interface as the ``Booster`` methods this project calls)."""

    def __init__(self, text: str):
        self.text = text
        self._arrays: TreeArrays | None | bool = False  # False: not parsed yet
        self._booster = None

    @property
    def arrays(self) -> TreeArrays | None:
        """The trees as numpy arrays (parsed on first use); None when only LightGBM can evaluate them."""
        if self._arrays is False:
            self._arrays = TreeArrays.cached(self.text)
        return self._arrays

    @property
    def booster(self):
        """The ``lightgbm.Booster`` of this text (imported and parsed on first use)."""
        if self._booster is None:
            self._booster = import_lightgbm().Booster(model_str=self.text)
        return self._booster

    def predict(self, matrix: np.ndarray, **kwargs) -> np.ndarray:
        """``lightgbm.Booster.predict``; raw scores of at most :data:`NUMPY_MAX_ROWS` rows come from numpy."""
        if not kwargs and len(matrix) <= NUMPY_MAX_ROWS and self.arrays is not None:
            return self.arrays.predict(matrix)
        return self.booster.predict(matrix, **kwargs)

    def model_to_string(self) -> str:
        return self.text
