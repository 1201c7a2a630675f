"""``Predictor``: one trained model ready to classify images, with temperature scaling, the stored operating
threshold, TTA and the scope verdict (does the model apply to the image: ``models.scope``, with the applicability
check of ``inference.applicability_runtime`` and the model's training population from its metadata).
``inference.loading.load_predictor`` makes one from a run folder, a ``model.safetensors``, an ``.onnx`` file or a
bundled name; ``Predictor.from_model`` from a model in memory.

Thread safety: after ``load_predictor`` returns, ``predict_arrays``, ``predict_files`` and
``features_arrays`` may be called from several threads at once (PyTorch forward passes run under
``torch.inference_mode`` and share no state; the feature hook only records its own thread's pass; onnxruntime
sessions are thread-safe for ``run``). ``explain_array`` runs Grad-CAM on a private copy of the model, so its hooks
never see other threads' passes; calls to it are serialised by an internal lock while predictions run alongside.
Attributes are read-only after loading; do not change them from a request handler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.data import image_stats
from pneumoscope.data.dicom_header import DicomHeader
from pneumoscope.data.imaging import check_geometry
from pneumoscope.data.populations import UNKNOWN_POPULATION, Population
from pneumoscope.data.preprocess import decode_side, preprocess
from pneumoscope.errors import ModelError, PneumoscopeError
from pneumoscope.inference.applicability_runtime import ApplicabilityRunner
from pneumoscope.inference.backends import OnnxBackend, TorchBackend
from pneumoscope.inference.sources import LoadedImage, load_input, load_input_bytes
from pneumoscope.inference.tta import check_views, reduce_views, tta_batch
from pneumoscope.models import scope
from pneumoscope.models.applicability import applicability_input
from pneumoscope.models.meta import ModelMeta


@dataclass(frozen=True)
class ReadyInput:
    """One image ready for the model: its preprocessed input (S, S) float32, its image statistics, the applicability
    check's thumbnail and, for DICOM files, its header."""

    prepared: np.ndarray
    stats: image_stats.ImageStats
    header: DicomHeader | None = None
    thumbnail: np.ndarray | None = None


class Predictor:
    """A loaded model that turns images into labels, probabilities, scope verdicts and heatmaps."""

    def __init__(
        self,
        backend: TorchBackend | OnnxBackend,
        info: ModelMeta,
        *,
        model_id: str,
        source: Path,
        applicability: ApplicabilityRunner | None = None,
        population: Population = UNKNOWN_POPULATION,
        card_text: str | None = None,
        name: str | None = None,
        torch_loader: Callable[[], TorchBackend] | None = None,
        weights_sha256: str | None = None,
    ):
        """``backend`` runs the predictions; ``torch_loader`` builds the PyTorch model that explanations need, on
        first use (the ONNX backend of a model folder predicts without importing torch)."""
        self.weights_sha256 = weights_sha256
        self._backend = backend
        self._torch_backend = backend if isinstance(backend, TorchBackend) else None
        self._torch_loader = torch_loader
        self.info = info
        self.classes: tuple[str, ...] = info.classes
        self.threshold: float | None = info.threshold
        self.image_size: int = info.image_size
        self.task: str | None = info.task
        self.temperature: float = info.temperature
        self.model_id = model_id
        self.source = source
        self.applicability = applicability
        self.population = population
        self._card_text = card_text
        self._name = name
        self._explain_lock = threading.Lock()
        self._torch_lock = threading.Lock()
        self._check_outputs()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_model(cls, model: Any, meta: dict[str, Any], device: str = "cpu", name: str | None = None) -> Predictor:
        """A predictor around an in-memory ``Classifier`` and its ``model.json``-style metadata (e.g. right after
        training, for report heatmaps)."""
        info = ModelMeta.from_dict(meta, name or "in-memory model")
        return cls(TorchBackend(model, device), info, model_id=f"{name or model_stem(info)}-in-memory",
                   source=Path(name or "in-memory model"), name=name,
                   population=Population.from_dict(meta.get("population")))

    @property
    def torch_backend(self) -> TorchBackend | None:
        """The PyTorch model (built on first use where the predictor runs on ONNX), or None for an ONNX file."""
        if self._torch_backend is None and self._torch_loader is not None:
            with self._torch_lock:
                if self._torch_backend is None:
                    self._torch_backend = self._torch_loader()
        return self._torch_backend

    def _check_outputs(self) -> None:
        """One tiny forward pass: the model must give one logit per class."""
        probe = np.zeros((1, 1, self.image_size, self.image_size), dtype=np.float32)
        try:
            logits, _ = self._backend.run(probe, want_features=False)
        except Exception as error:  # noqa: BLE001
            raise ModelError(f"the model does not run on a {self.image_size}px grey image ({error}).",
                             path=self.source, fix="re-export or re-train it.") from None
        self.single_logit = logits.shape == (1, 1) and len(self.classes) == 2  # a sigmoid binary model
        if logits.shape != (1, len(self.classes)) and not self.single_logit:
            raise ModelError(
                f"the model gives {logits.shape[-1]} outputs but its metadata names {len(self.classes)} classes.",
                path=self.source, fix="the weights and model.json / ONNX metadata belong to different models.",
            )

    # ------------------------------------------------------------------ properties
    @property
    def runner(self) -> TorchBackend | OnnxBackend:
        """The backend that runs the predictions."""
        return self._backend

    @property
    def backend(self) -> str:
        """``pytorch`` or ``onnx``."""
        return self._backend.name

    @property
    def card(self) -> dict[str, Any]:
        """What GET /model shows: identity, classes, preprocessing, threshold, metrics, and the model card text."""
        meta = self.info.raw
        return {
            "model_id": self.model_id,
            "name": self._name,
            "format": self.backend,
            "architecture": meta.get("architecture"),
            "task": self.task,
            "classes": list(self.classes),
            "image_size": self.image_size,
            "preprocessing": meta.get("preprocessing", {"clahe": self.info.clahe}),
            "threshold": self.threshold,
            "threshold_method": meta.get("threshold_method"),
            "temperature": self.temperature,
            "val_metrics": meta.get("val_metrics"),
            "pneumoscope_version": meta.get("pneumoscope_version"),
            "scope": self.scope_description,
            "model_card": self._card_text,
        }

    @property
    def scope_description(self) -> dict[str, Any]:
        """Which scope checks this model runs, its training population and the flag rates measured for it."""
        runner = self.applicability
        population = self.population
        return {
            "dicom_header": True,
            "image_statistics": True,
            "chest_xray_check": runner is not None,
            "population_check": runner is not None and population.checked,
            "population": population.as_dict(),
            "note": None if runner is not None and population.checked else (
                "no applicability check is installed: only the DICOM header and image statistics are checked"
                if runner is None else f"population not checked: the model's population is {population.name}"),
            "measured": (self.info.get("scope") or {}).get("flag_rates"),
        }

    # ------------------------------------------------------------------ inputs
    @property
    def decode_side(self) -> int:
        """The largest side an input is reduced to (the model's input, the image statistics' thumbnail): files are
        decoded for it (``load``), JPEGs at reduced scale."""
        return decode_side(self.image_size)

    def load(self, path: str | Path) -> LoadedImage:
        """Decode one input file for this model (``sources.load_input`` at ``decode_side``)."""
        return load_input(path, shrink_to=self.decode_side)

    def load_bytes(self, data: bytes, name: str = "upload") -> LoadedImage:
        """Decode an in-memory file for this model (``sources.load_input_bytes`` at ``decode_side``)."""
        return load_input_bytes(data, name, shrink_to=self.decode_side)

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """The model's input for one grey image (uint8, uint16 or float in [0, 1]): the training preprocess, as
        float32 (S, S) in [0, 1]."""
        return preprocess(gray, self.image_size, clahe=self.info.clahe).astype(np.float32) / 255.0

    def _logits_and_features(self, batch: np.ndarray, want_features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return self._backend.run(np.ascontiguousarray(batch[:, None], dtype=np.float32), want_features)

    def probabilities_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """(B, C) probabilities of logits scaled by 1 / temperature: softmax, or sigmoid for one-logit binary models
        (as in training's ``probabilities_from_logits``)."""
        scaled = logits.astype(np.float64) / self.temperature
        if self.single_logit:
            positive = 1.0 / (1.0 + np.exp(-scaled[:, 0]))
            return np.stack([1.0 - positive, positive], axis=1)
        scaled -= scaled.max(axis=1, keepdims=True)
        exp = np.exp(scaled)
        return exp / exp.sum(axis=1, keepdims=True)

    def label_of(self, probabilities: np.ndarray) -> str:
        """The predicted class: the threshold on p(positive) for binary models, else the most probable class."""
        if self.threshold is not None and len(self.classes) == 2:
            return self.classes[1] if probabilities[1] >= self.threshold else self.classes[0]
        return self.classes[int(np.argmax(probabilities))]

    # ------------------------------------------------------------------ prediction
    def predict_arrays(self, images: Sequence[np.ndarray | LoadedImage], tta: int = 0) -> list[dict[str, Any]]:
        """Predict on in-memory images, batched; one result dict per image, in order.

        Images are grey (H, W) or RGB(A) (H, W, 3|4) arrays (uint8, uint16, or float in [0, 1]), or ``LoadedImage``s
        from ``sources.load_input`` / ``load_input_bytes`` (which keep the original's colourfulness and DICOM header
        for the scope checks). Result keys: ``label``, ``probabilities`` {class: p}, ``threshold``, ``in_scope``,
        ``scope_reason`` (empty when in scope), ``scope_detail``, ``scope_checks`` {check: {value, ok, reason,
        detail}} (``scope.ScopeVerdict``), and ``p_std`` {class: spread} when ``tta`` > 0.
        """
        check_views(tta)
        return self._predict_ready([self.ready(as_loaded_image(item)) for item in images], tta)

    def ready(self, item: LoadedImage) -> ReadyInput:
        """The model input, image statistics, applicability thumbnail and header of one decoded image (the
        per-image CPU work before the model)."""
        small = image_stats.downsample(item.pixels)
        runner = self.applicability
        return ReadyInput(self.prepare(item.pixels), image_stats.thumbnail_stats(small, item.colourfulness),
                          item.header, None if runner is None else applicability_input(small, runner.input_size))

    def _predict_ready(self, ready: Sequence[ReadyInput], tta: int) -> list[dict[str, Any]]:
        n_views = check_views(tta)
        if not ready:
            return []
        prepared = np.stack([item.prepared for item in ready])
        spread = None
        if n_views:
            logits, _ = self._logits_and_features(tta_batch(prepared, n_views), False)
            probabilities, spread = reduce_views(self.probabilities_from_logits(logits), n_views)
        else:
            logits, _ = self._logits_and_features(prepared, False)
            probabilities = self.probabilities_from_logits(logits)
        verdicts = self.scope_verdicts(ready)
        return [self._result(probabilities[i], None if spread is None else spread[i], verdicts[i])
                for i in range(len(ready))]

    def scope_verdicts(self, ready: Sequence[ReadyInput]) -> list[scope.ScopeVerdict]:
        """The scope verdict of each input from its header, image statistics and the applicability check."""
        runner = self.applicability
        judged = [item for item in ready if item.thumbnail is not None]
        results = iter(runner.judge(np.stack([item.thumbnail for item in judged])) if runner and judged else [])
        check = None if runner is None else runner.check
        return [scope.verdict(item.header, image_stats.image_score(item.stats),
                              next(results) if item.thumbnail is not None and runner else None, check,
                              self.population)
                for item in ready]

    def _result(self, probabilities: np.ndarray, spread: np.ndarray | None, verdict: scope.ScopeVerdict) -> dict:
        result: dict[str, Any] = {
            "label": self.label_of(probabilities),
            "probabilities": {c: float(p) for c, p in zip(self.classes, probabilities, strict=True)},
            "threshold": self.threshold,
            **verdict.as_fields(),
        }
        if spread is not None:
            result["p_std"] = {c: float(s) for c, s in zip(self.classes, spread, strict=True)}
        return result

    def features_arrays(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Penultimate features (N, D) of grey images (for analyses of what the model computes)."""
        chunks = []
        for start in range(0, len(images), batch_size):
            prepared = np.stack([self.prepare(as_loaded_image(im).gray) for im in images[start : start + batch_size]])
            _, features = self._logits_and_features(prepared, True)
            if features is None:
                raise ModelError("this model does not expose penultimate features.", path=self.source,
                                 fix="re-export it with `pneumoscope export` (it adds a features output).")
            chunks.append(features)
        return np.concatenate(chunks)

    def predict_files(
        self, paths: Iterable[str | Path], batch_size: int = 32, tta: int = 0, workers: int = 2
    ) -> Iterator[dict[str, Any]]:
        """Predict on files lazily, in order: one dict per file with ``path`` and ``error`` added.

        ``workers`` threads decode, preprocess and measure the files one batch ahead of the model (only the small model
        inputs are kept, so at most two batches are in memory); a file that cannot be decoded yields a row with its
        error and no prediction. While it runs, NumPy's BLAS keeps to one thread: its small products (the feature
        check) gain nothing from more and, woken per batch, its threads fought the decoders for the cores (80 ms
        instead of 0.2 ms per batch on 2 cores).
        """
        from threadpoolctl import threadpool_limits

        check_views(tta)
        batches = _chunks(iter(paths), max(1, batch_size))
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending = _submit(pool, next(batches, None), self._load_ready)
            while pending is not None:
                upcoming = _submit(pool, next(batches, None), self._load_ready)
                yield from self._predict_decoded(pending, tta)
                pending = upcoming

    def _load_ready(self, path: str | Path) -> ReadyInput:
        return self.ready(self.load(path))

    def _predict_decoded(self, pending: list[tuple[Path, Future]], tta: int) -> Iterator[dict[str, Any]]:
        decoded: list[tuple[Path, ReadyInput | None, str]] = []
        for path, future in pending:
            try:
                decoded.append((path, future.result(), ""))
            except PneumoscopeError as error:
                decoded.append((path, None, str(error)))
            except Exception as error:  # noqa: BLE001 - an unexpected decoder failure is still one bad file
                decoded.append((path, None, f"{path}: cannot decode ({type(error).__name__}: {error})"))
        results = iter(self._predict_ready([item for _, item, _ in decoded if item is not None], tta))
        for path, item, error in decoded:
            row = {"path": str(path), "error": error}
            if item is not None:
                row.update(next(results))
            yield row

    # ------------------------------------------------------------------ explanation
    def explain_array(
        self, image: np.ndarray, method: str = "gradcam", target_class: str | int | None = None
    ) -> dict[str, Any]:
        """Grad-CAM / Grad-CAM++ heatmap of one image for the predicted (or a chosen) class.

        Returns ``heatmap`` float32 (H, W) in [0, 1] at the input's size, ``overlay`` uint8 (H, W, 3), ``target_class``
        and the prediction (``label``, ``probabilities``).
        """
        if self.torch_backend is None:
            raise ModelError("explanations need the PyTorch model, not an ONNX file.", path=self.source,
                             fix="pass the run folder, model.safetensors or bundled name instead.")
        from pneumoscope.inference.explain import explain_image

        loaded = as_loaded_image(image)
        prepared = self.prepare(loaded.gray)
        with self._explain_lock:
            return explain_image(self, self.torch_backend.model, loaded.gray, prepared, method, target_class, loaded)


def as_loaded_image(image: np.ndarray | LoadedImage) -> LoadedImage:
    """Normalise an in-memory image to a ``LoadedImage`` (grey float in [0, 1] + colourfulness)."""
    if isinstance(image, LoadedImage):
        return image
    from pneumoscope.errors import DataError

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)) or min(array.shape[:2]) < 1:
        raise DataError(f"expected a grey (H, W) or RGB (H, W, 3) image, got shape {array.shape}.")
    check_geometry(array.shape[1], array.shape[0], "in-memory image")
    if array.dtype == np.uint8:
        scaled = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        scaled = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        scaled = array.astype(np.float32)
        if not np.isfinite(scaled).all() or scaled.min() < 0.0 or scaled.max() > 1.0:
            raise DataError("float images must hold finite values in [0, 1].")
    else:
        raise DataError(f"unsupported image dtype {array.dtype}; use uint8, uint16 or float in [0, 1].")
    if scaled.ndim == 2:
        return LoadedImage(scaled, 0.0)
    rgb = scaled[..., :3]
    return LoadedImage(rgb_to_gray(rgb), image_stats.colourfulness(rgb))


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma (what PIL's ``convert("L")`` uses), float32 (H, W) in [0, 1]."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(rgb.astype(np.float32) @ weights, 0.0, 1.0)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while True:
        chunk = [item for _, item in zip(range(size), items, strict=False)]
        if not chunk:
            return
        yield chunk


def _submit(pool: ThreadPoolExecutor, chunk: list[Any] | None, load_ready: Any) -> list[tuple[Path, Future]] | None:
    if chunk is None:
        return None
    return [(Path(p), pool.submit(load_ready, p)) for p in chunk]


def model_stem(info: ModelMeta) -> str:
    """``<architecture>-<task>``: the readable part of a model id."""
    parts = [info.get("architecture") or "model", info.task or f"{len(info.classes)}class"]
    return "-".join(str(p) for p in parts)
