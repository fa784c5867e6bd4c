"""The serving path's model: the fitted estimator as ONNX, run by onnxruntime.

Only the estimator is converted; features are built by the same code as in
training (``FeatureSet.vector`` for one row, ``FeatureSet.matrix`` for many,
held equal by a test). Trees compare in
float32 in scikit-learn too, so float32 input reproduces its probabilities;
:func:`parity` measures the largest difference, and a model is served this way
only when it is within ``TOLERANCE`` on the evaluation rows. A linear
champion's one row skips onnxruntime: its weights (``linear_form``, checked
at training the same way) are scored by ``FeatureSet.linear``'s lookups.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from minimlops.errors import DerivedFeatureError
from minimlops.ml import features
from minimlops.ml.outputs import bounded, bounds_of, calibrate, expand, platt_one, sigmoid
from minimlops.process import cores

SMALL = 64  # up to this many rows, vectors in plain Python and a bound run (see OnnxModel._some)
SPLIT_FROM = 256  # rows from which a batch runs in two halves side by side (see OnnxModel._run)
_helpers: list[Any] = []  # the one helper thread's executor, made on first use
_helper_lock = threading.Lock()


def _forget_helper() -> None:
    """In a forked child: the parent's helper thread is not there; make another."""
    global _helper_lock
    _helpers.clear()
    _helper_lock = threading.Lock()


def _helper() -> Any:
    """The executor of the helper thread batches share, or None on one core.

    The cores are the ones this process may run on (``process.cores``); a
    CPU quota (a container's) is not seen: there the split costs a thread
    hand-off, tens of microseconds on a batch that takes milliseconds."""
    if not _helpers:
        import os
        from concurrent.futures import ThreadPoolExecutor

        with _helper_lock:
            if not _helpers:
                os.register_at_fork(after_in_child=_forget_helper)
                _helpers.append(
                    ThreadPoolExecutor(1, thread_name_prefix="minimlops-onnx")
                    if cores() > 1
                    else None
                )
    return _helpers[0]


class OnnxModel:
    """Predicts like the TrainedModel it was converted from, ~500x faster on one row."""

    def __init__(
        self,
        onnx_bytes: bytes,
        spec: Mapping[str, Any],
        algorithm: str,
        derive: features.Derive | None = None,
        linear: Mapping[str, Any] | None = None,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        # errors only: LightGBM's converted classifiers declare their unused label
        # output with a wrong shape, and onnxruntime warns about it on every run
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.dtype = (
            np.float64 if self.session.get_inputs()[0].type == "tensor(double)" else np.float32
        )
        self.spec, self.algorithm = dict(spec), algorithm
        self.task = self.spec["task"]
        # classifiers: [label, probabilities]; regressors: [value]
        self.outputs = [self.session.get_outputs()[0 if self.task == "regression" else 1].name]
        self.features = features.FeatureSet(self.spec, derive or {})
        fitted = self.spec.get("fitted_classes")
        # binary with both classes fitted (always, in practice): the positive column as is
        self._positive_only = self.task == "binary" and list(fitted or [0, 1]) == [0, 1]
        self._calibration = self.spec.get("calibration")
        self._bounds = bounds_of(self.spec)  # regression: answers kept within the target's
        self._bound = threading.local()  # one row's input and output, bound (see _one)
        # one row in plain Python past onnxruntime: the value, or the positive
        # column (Platt-scaled if kept); multiclass goes through output()
        self._plain_one = (
            self.task == "regression"
            or self._positive_only
            and (not self._calibration or self._calibration["method"] == "platt")
        )
        # a linear model's one row: its score from the weights, no onnxruntime
        # (~3.6 instead of ~11 us for a wide churn row; see linear_form)
        self._linear = (
            self.features.linear(linear["weights"], linear["bias"])
            if linear and self._plain_one
            else None
        )

    def output(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """As :meth:`TrainedModel.output`: the positive class's probability,
        every class's probabilities, or the value."""
        if len(rows) == 1:  # a dict to a vector in plain Python: ~2 us, numpy's set-up ~30 us
            out = np.array(self._one(self.features.vector(rows[0])), dtype=np.float64)  # a copy
        elif len(rows) <= SMALL:  # a few: their vectors, one run (see _some)
            out = np.array(self._some(rows), dtype=np.float64)  # a copy
        else:
            X = self.features.matrix(rows).astype(self.dtype, copy=False)
            out = np.asarray(self._run(X), dtype=np.float64)
        if self.task == "regression":
            return bounded(self.spec, out.reshape(-1))
        out = out[:, 1] if self._positive_only else expand(self.spec, out)
        return calibrate(self._calibration, out) if self._calibration else out

    predict_proba = output

    def values(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """:meth:`output` as Python values, one a row: a float (a probability or
        a value), or a list of floats (multiclass). One binary or regression
        row skips numpy's conversions and calibration (~1.5 and ~5 us of calls
        on one value): the same numbers, within a float's last digit. Given
        the weights of a linear model, one row skips onnxruntime too: its
        score in float64, scikit-learn's number (onnxruntime's float32 one is
        within ``TOLERANCE`` of it, checked at training)."""
        if len(rows) != 1 or not self._plain_one:
            if self._linear is not None and len(rows) <= SMALL:  # a few: each as one
                return self._each(rows)
            return self.output(rows).tolist()  # type: ignore[no-any-return]
        if self._linear is not None:
            z = self._linear(rows[0])
            if self.task == "regression":
                return [
                    z if self._bounds is None else min(max(z, self._bounds[0]), self._bounds[1])
                ]
            p = sigmoid(z)
        else:
            out = self._one(self.features.vector(rows[0]))
            if self.task == "regression":
                v = out.item(0)
                return [
                    v if self._bounds is None else min(max(v, self._bounds[0]), self._bounds[1])
                ]
            p = out.item(1)
        return [platt_one(self._calibration, p) if self._calibration else p]

    def _each(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """:meth:`values` of each row as one (a linear model's few rows)."""
        out = []
        for i, row in enumerate(rows):
            try:
                out.append(self.values((row,))[0])
            except DerivedFeatureError as exc:  # found in a row of these: that row's place
                raise DerivedFeatureError(exc.feature, i, exc.cause, exc.key) from exc.cause
        return out

    def _run(self, X: np.ndarray) -> np.ndarray:
        """The model's first output on a matrix. From ``SPLIT_FROM`` rows, with a
        second core, the rows are split in two halves run side by side: one in
        this thread, one in a helper thread (onnxruntime releases the GIL, and
        one session serves concurrent runs). Rows are independent, so the
        output is the same (within float32 rounding, which depends on a
        matrix product's size); a batch takes ~0.6x the time (measured: 1,000 rows
        of the example's ensemble, 2.6 against 1.5 ms). Two halves rather than a
        session with two intra-op threads: no second session in memory, and no
        onnxruntime thread spinning on the core the rest of the server needs
        (and single rows keep their one-thread session as they are). Batches
        from several threads at once share the helper: one may wait for the
        other's half (~1 ms). Measured, running the batch whole instead when
        the helper was busy, or the second half here when it had not started
        yet, served fewer batches (alternating runs at 4 connections: ~147-155
        against ~152-158 a second)."""
        helper = _helper() if len(X) >= SPLIT_FROM else None
        if helper is None:
            return self.session.run(self.outputs, {self.input: X})[0]  # type: ignore[no-any-return]
        half = len(X) // 2
        try:
            second = helper.submit(self.session.run, self.outputs, {self.input: X[half:]})
        except RuntimeError:  # the interpreter is shutting down: no new threads
            return self.session.run(self.outputs, {self.input: X})[0]  # type: ignore[no-any-return]
        first = self.session.run(self.outputs, {self.input: X[:half]})[0]
        return np.concatenate([first, second.result()[0]])

    def _one(self, vector: list[float]) -> np.ndarray:
        """The model's output for one feature vector, through an I/O binding
        made once per thread: the vector is written into the bound input's
        memory and onnxruntime runs on it, writing into arrays bound once too
        (~0.6x the time of building an array and calling ``session.run``,
        which checks its arguments in Python on every call; measured). The
        array returned is this thread's output buffer: read it (or copy it)
        before the thread's next call."""
        bound = self._bound.__dict__.get("one")
        if bound is None:
            bound = self._bound.one = self._bind_one()
        x, binding, pack, memory, out, _ = bound
        try:  # struct writes the floats in ~0.5x numpy's time from a list, rounded as numpy does
            pack(memory, 0, *vector)
        except OverflowError:  # beyond float32: numpy writes inf, as the batch path does
            with np.errstate(over="ignore"):
                x[0] = vector
        self.session.run_with_iobinding(binding)
        return out

    def _some(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The model's first output for a few rows (up to ``SMALL``): their
        vectors (:meth:`FeatureSet.vector`), written into an input bound for
        that many rows, and one run, as :meth:`_one` does for one. Below a few
        dozen rows, building the matrix with numpy costs more than the model
        (2 rows: ~110 against ~40 us a row one at a time); one run for several
        rows costs far less a row than a run each (a forest's trees are read
        from memory once for them all: 8 rows ~7 against ~40 us a row, cold;
        measured). Same thread-local buffers as :meth:`_one`: read or copy
        the output before this thread's next call."""
        n = len(rows)
        some = self._bound.__dict__.get("some")
        if some is None:
            some = self._bound.some = {}
        bound = some.get(n)
        if bound is None:
            bound = some[n] = self._bind_one(n)
        x, binding, pack, memory, out, _ = bound
        vector, width, size = self.features.vector, self.features.width, x.itemsize
        for i, row in enumerate(rows):
            try:
                v = vector(row)
            except DerivedFeatureError as exc:  # found in a row of these: that row's place
                raise DerivedFeatureError(exc.feature, i, exc.cause, exc.key) from exc.cause
            try:
                pack(memory, i * width * size, *v)
            except OverflowError:  # beyond float32: numpy writes inf, as the batch path does
                with np.errstate(over="ignore"):
                    x[i] = v
        self.session.run_with_iobinding(binding)
        return out

    def _bind_one(
        self, n: int = 1
    ) -> tuple[np.ndarray, Any, Any, memoryview, np.ndarray, list[np.ndarray]]:
        x = np.zeros((n, self.features.width), dtype=self.dtype)
        pack = struct.Struct(
            f"={self.features.width}{'d' if self.dtype == np.float64 else 'f'}"
        ).pack_into
        binding = self.session.io_binding()
        # by address: onnxruntime reads this memory at every run (never a copy)
        binding.bind_input(self.input, "cpu", 0, self.dtype, list(x.shape), x.ctypes.data)
        # every output (a classifier's label too, which is otherwise allocated
        # at each run) into an array of its n-row shape, learnt by one run;
        # but one whose shape the graph declares otherwise is not asked for
        # (LightGBM's classifiers declare their label [1]: onnxruntime refuses
        # a label of 2 rows whoever allocates it)
        outputs = self.session.get_outputs()
        names = [o.name for o in outputs]
        for name in names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        buffers = [np.zeros_like(np.ascontiguousarray(a)) for a in binding.copy_outputs_to_cpu()]
        binding.clear_binding_outputs()
        for o, buf in zip(outputs, buffers, strict=True):
            if _fits(o.shape, buf.shape) or o.name == self.outputs[0]:
                binding.bind_output(o.name, "cpu", 0, buf.dtype, list(buf.shape), buf.ctypes.data)
        # the buffers live as long as the binding that writes into them
        return (
            x,
            binding,
            pack,
            memoryview(x).cast("B"),
            buffers[names.index(self.outputs[0])],
            buffers,
        )


def _fits(declared: Sequence[Any], shape: Sequence[int]) -> bool:
    """Whether an output's declared shape (a number a fixed size; a name or
    None any) takes an array of ``shape``."""
    return len(declared) == len(shape) and all(
        not isinstance(d, int) or d == n for d, n in zip(declared, shape, strict=True)
    )
