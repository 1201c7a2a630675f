"""``Predictor``: one trained model (run folder, ``model.safetensors``, ``.onnx`` file or bundled name) ready to
classify images, with temperature scaling, the stored operating threshold, TTA and the scope verdict (does the model
apply to the image: ``models.scope``, with the applicability check of ``inference.applicability_runtime`` and the
model's training population from its metadata).

Thread safety: after ``Predictor.load`` returns, ``predict_arrays``, ``predict_inputs``, ``predict_files`` and
``features_arrays`` may be called from several threads at once (PyTorch forward passes run under
``torch.inference_mode`` and share no state; the feature hook only records its own thread's pass; onnxruntime
sessions are thread-safe for ``run``). ``explain_array`` runs Grad-CAM on a private copy of the model, so its hooks
never see other threads' passes; calls to it are serialised by an internal lock while predictions run alongside.
Attributes are read-only after loading; do not change them from a request handler.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.data import image_stats
from pneumoscope.data.dicom_header import DicomHeader
from pneumoscope.data.imaging import check_geometry
from pneumoscope.data.populations import UNKNOWN_POPULATION, Population, recorded_population
from pneumoscope.errors import ModelError, PneumoscopeError
from pneumoscope.inference import bundled
from pneumoscope.inference.applicability_runtime import ApplicabilityRunner, load_runner
from pneumoscope.inference.sources import LoadedImage, load_input
from pneumoscope.inference.tta import check_views, reduce_views, tta_batch
from pneumoscope.models import scope
from pneumoscope.models.applicability import applicability_input, check_path_for

ONNX_META_KEY = "pneumoscope"
EXPORTED_ONNX_FILE = "model.onnx"
REQUIRED_META = ("classes", "image_size")
RUN_MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class ModelInfo:
    """What inference needs to know about a model, from ``model.json`` or the ONNX metadata."""

    classes: tuple[str, ...]
    image_size: int
    task: str | None
    clahe: bool
    threshold: float | None
    temperature: float
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_meta(cls, meta: dict[str, Any], source: str | Path) -> ModelInfo:
        """Validate ``meta`` (ModelError naming ``source`` and the missing or bad key)."""
        fix = "re-create it with `pneumoscope train` or `pneumoscope export`."
        missing = [key for key in REQUIRED_META if key not in meta]
        if missing:
            raise ModelError(f"model metadata lacks {', '.join(missing)}.", path=source, fix=fix)
        classes = meta["classes"]
        if not isinstance(classes, list | tuple) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
            raise ModelError(f"model metadata has invalid classes {classes!r}.", path=source, fix=fix)
        try:
            image_size = int(meta["image_size"])
            temperature = float(meta.get("temperature") or 1.0)
            threshold = meta.get("threshold")
            threshold = None if threshold is None else float(threshold)
        except (TypeError, ValueError) as error:
            raise ModelError(f"model metadata has an invalid value ({error}).", path=source, fix=fix) from None
        if image_size < 8 or temperature <= 0 or (threshold is not None and not 0.0 <= threshold <= 1.0):
            raise ModelError("model metadata has an out-of-range image_size, temperature or threshold.",
                             path=source, fix=fix)
        task = meta.get("task")
        if task is not None:
            from pneumoscope.tasks import TASK_CLASSES

            if task not in TASK_CLASSES:
                raise ModelError(f"model was made for task {task!r}, which pneumoscope does not predict.",
                                 path=source, fix=f"use a classifier for one of: {', '.join(TASK_CLASSES)}.")
            if tuple(classes) != TASK_CLASSES[task]:
                raise ModelError(f"model classes {list(classes)} do not match task {task!r}.", path=source, fix=fix)
        if len(classes) == 2 and threshold is None:
            threshold = 0.5
        return cls(
            classes=tuple(classes),
            image_size=image_size,
            task=task,
            clahe=bool((meta.get("preprocessing") or {}).get("clahe", False)),
            threshold=threshold if len(classes) == 2 else None,
            temperature=temperature,
            meta=dict(meta),
        )


@dataclass(frozen=True)
class ReadyInput:
    """One image ready for the model: its preprocessed input (S, S) float32, its image statistics, the applicability
    check's thumbnail and, for DICOM files, its header."""

    prepared: np.ndarray
    stats: image_stats.ImageStats
    header: DicomHeader | None = None
    thumbnail: np.ndarray | None = None


class _TorchBackend:
    """A pneumoscope ``Classifier`` in PyTorch; penultimate features are read from the input of its last Linear."""

    name = "pytorch"

    def __init__(self, model: Any, device: str):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        # channels_last roughly doubles CPU convolution throughput for the registry's CNNs (same results to ~1e-6).
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)
        self.head = _last_linear(self.model)

    def run(self, batch: np.ndarray, want_features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        with self.torch.inference_mode():
            x = self.torch.from_numpy(batch).to(self.device)
            if not want_features:
                return self.model(x).float().cpu().numpy(), None
            logits, features = forward_with_features(self.model, x, self.head)
        return logits.float().cpu().numpy(), None if features is None else features.float().cpu().numpy()


def forward_with_features(model: Any, x: Any, head: Any = None) -> tuple[Any, Any]:
    """(logits, penultimate features (B, D)) in one pass.

    A pneumoscope ``Classifier`` computes ``head(features(x))``; its feature map is average-pooled. Other modules:
    the input of their last Linear layer, recorded by a hook that ignores passes of other threads.
    """
    if hasattr(model, "features") and hasattr(model, "head"):
        features = model.features(x)
        logits = model.head(features)
        return logits, features.mean(dim=(2, 3)) if features.ndim == 4 else features.flatten(1)
    if head is None:
        return model(x), None
    captured: list[Any] = []
    caller = threading.get_ident()

    def capture(_module: Any, args: tuple) -> None:
        if threading.get_ident() == caller:  # other threads may be running the same model right now
            captured.append(args[0])

    handle = head.register_forward_pre_hook(capture)
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, captured[0].flatten(1) if captured else None


def _last_linear(model: Any) -> Any:
    import torch

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1] if linears else None


class _OnnxBackend:
    """An exported ``.onnx`` file run by onnxruntime (outputs ``logits`` and, if exported, ``features``)."""

    name = "onnx"

    def __init__(self, session: Any):
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, batch: np.ndarray, want_features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        names = self.output_names if want_features else self.output_names[:1]
        outputs = self.session.run(names, {self.input_name: batch})
        features = outputs[1] if len(outputs) > 1 else None
        return outputs[0].astype(np.float32), features


class Predictor:
    """A loaded model that turns images into labels, probabilities, scope verdicts and heatmaps."""

    def __init__(
        self,
        backend: _TorchBackend | _OnnxBackend,
        info: ModelInfo,
        *,
        model_id: str,
        source: Path,
        applicability: ApplicabilityRunner | None = None,
        population: Population = UNKNOWN_POPULATION,
        card_text: str | None = None,
        name: str | None = None,
        torch_backend: _TorchBackend | None = None,
        weights_sha256: str | None = None,
    ):
        self.weights_sha256 = weights_sha256
        self._backend = backend
        self._torch = torch_backend if torch_backend is not None else (
            backend if isinstance(backend, _TorchBackend) else None)
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
        self._check_outputs()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, ref: str | Path, device: str = "cpu", task: str | None = None, backend: str = "auto",
             applicability: str | Path | ApplicabilityRunner | None = "auto") -> Predictor:
        """Load a run folder, a ``model.safetensors``, an ``.onnx`` file or a bundled model name.

        ``task``, when given, must match the model's task (ModelError otherwise). ``backend`` for model folders:
        ``auto`` predicts through onnxruntime when the folder also holds a ``model.onnx`` exported from these very
        weights and the device is the CPU (faster there), else PyTorch; ``pytorch`` / ``onnx`` force one. The PyTorch
        model stays loaded for ``explain_array``. ``applicability``: ``auto`` uses ``check_path_for`` the model
        (``$PNEUMOSCOPE_APPLICABILITY``, the model folder's own check, else the shipped one); a path or a runner
        uses that check; None none (the verdict then has the header and image checks only).
        """
        if backend not in ("auto", "pytorch", "onnx"):
            raise ModelError(f"unknown backend {backend!r}.", fix="use auto, pytorch or onnx.")
        path = Path(str(ref)).expanduser()
        if path.exists():
            if path.is_dir():
                predictor = cls._load_folder(path, device)
            elif path.suffix.lower() == ".onnx":
                predictor = cls._load_onnx(path, device)
            elif path.suffix.lower() == ".safetensors" or path.name == bundled.META_FILE:
                predictor = cls._load_folder(path.parent, device, weights=path)
            else:
                raise ModelError(
                    "not a model file.", path=path,
                    fix="pass a run folder, a model.safetensors, an .onnx file or a bundled model name.",
                )
        else:
            model = bundled.find_bundled(str(ref))
            if model is None:
                bundled.get_bundled(str(ref))  # raises, listing what is installed
                raise AssertionError("unreachable")
            predictor = cls._load_folder(model.path, device, name=model.name)
        if predictor._torch is not None and backend != "pytorch":
            predictor._use_sibling_onnx(device, required=backend == "onnx")
        predictor.applicability = _applicability_runner(applicability, predictor.source)
        if task is not None and predictor.task is not None and predictor.task != task:
            raise ModelError(
                f"this model was trained for task {predictor.task!r}, not {task!r}.", path=predictor.source,
                fix=f"use a model trained for {task!r}, or drop --task.",
            )
        return predictor

    @classmethod
    def from_model(cls, model: Any, meta: dict[str, Any], device: str = "cpu", name: str | None = None) -> Predictor:
        """A predictor around an in-memory ``Classifier`` and its ``model.json``-style metadata (e.g. right after
        training, for report heatmaps)."""
        info = ModelInfo.from_meta(meta, name or "in-memory model")
        return cls(_TorchBackend(model, device), info, model_id=f"{name or _stem(info)}-in-memory",
                   source=Path(name or "in-memory model"), name=name, population=Population.from_dict(
                       meta.get("population")))

    @classmethod
    def _load_folder(cls, folder: Path, device: str, weights: Path | None = None, name: str | None = None) -> Predictor:
        weights = weights or folder / bundled.WEIGHTS_FILE
        meta_path = folder / bundled.META_FILE
        if not weights.is_file() or not meta_path.is_file():
            raise ModelError(
                f"no trained model here (expected {bundled.WEIGHTS_FILE} and {bundled.META_FILE}).", path=folder,
                fix="pass the folder written by `pneumoscope train`, an .onnx file or a bundled model name.",
            )
        from pneumoscope.models import load_classifier

        try:
            model, meta = load_classifier(folder if weights.parent == folder else weights)
        except PneumoscopeError:
            raise
        except Exception as error:  # noqa: BLE001 - corrupt or foreign files
            raise ModelError(f"cannot load the model ({type(error).__name__}: {error}).", path=folder,
                             fix="re-create it with `pneumoscope train`.") from None
        info = ModelInfo.from_meta(meta, meta_path)
        card = folder / bundled.CARD_FILE
        digest = file_sha256(weights)
        return cls(
            _TorchBackend(model, device),
            info,
            model_id=f"{name or _stem(info)}-{digest[:12]}",
            weights_sha256=digest,
            source=folder,
            population=recorded_population(meta, folder / RUN_MANIFEST),
            card_text=card.read_text(encoding="utf-8") if card.is_file() else None,
            name=name,
        )

    @classmethod
    def _load_onnx(cls, path: Path, device: str) -> Predictor:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = ort.InferenceSession(str(path), providers=providers)
        except Exception as error:  # noqa: BLE001 - onnxruntime raises several types for bad files
            raise ModelError(f"not a readable ONNX model ({type(error).__name__}).", path=path,
                             fix="re-export it with `pneumoscope export RUN_DIR --format onnx`.") from None
        custom = session.get_modelmeta().custom_metadata_map
        if ONNX_META_KEY not in custom:
            raise ModelError(
                "this ONNX file has no pneumoscope metadata (classes, preprocessing, threshold).", path=path,
                fix="export the model with `pneumoscope export RUN_DIR --format onnx`.",
            )
        try:
            meta = json.loads(custom[ONNX_META_KEY])
        except json.JSONDecodeError:
            raise ModelError("the ONNX file's pneumoscope metadata is not valid JSON.", path=path,
                             fix="re-export it with `pneumoscope export`.") from None
        info = ModelInfo.from_meta(meta, path)
        return cls(
            _OnnxBackend(session),
            info,
            model_id=f"{_stem(info)}-onnx-{file_sha256(path)[:12]}",
            weights_sha256=meta.get("weights_sha256"),
            source=path,
            population=Population.from_dict(meta.get("population")),
            card_text=meta.get("model_card"),
        )

    def _use_sibling_onnx(self, device: str, required: bool) -> None:
        """Predict through ``model.onnx`` beside the weights if it was exported from them (on CPU, or if required).

        Bundled models ship without ONNX (to keep the package small): theirs is exported on first use into
        pneumoscope's cache (``export.cached_onnx``); where that fails, prediction stays on PyTorch.
        """
        onnx_path = self.source / EXPORTED_ONNX_FILE if self.source.is_dir() else None
        if (onnx_path is None or not onnx_path.is_file()) and self._name is not None and (required or device == "cpu"):
            from pneumoscope.inference.export import cached_onnx

            onnx_path = cached_onnx(self, required=required)
        if onnx_path is None or not onnx_path.is_file():
            if required:
                raise ModelError(f"no {EXPORTED_ONNX_FILE} beside the model.", path=self.source,
                                 fix="create it with `pneumoscope export MODEL --format onnx`, or use --backend auto.")
            return
        if not (required or device == "cpu"):
            return
        exported = Predictor._load_onnx(onnx_path, device)
        if exported.weights_sha256 != self.weights_sha256 or exported.classes != self.classes:
            if required:
                raise ModelError(f"{EXPORTED_ONNX_FILE} was exported from other weights.", path=onnx_path,
                                 fix="re-export it with `pneumoscope export`.")
            return
        self._backend = exported._backend

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
    def backend(self) -> str:
        """``pytorch`` or ``onnx``."""
        return self._backend.name

    @property
    def card(self) -> dict[str, Any]:
        """What GET /model shows: identity, classes, preprocessing, threshold, metrics, and the model card text."""
        meta = self.info.meta
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
            "measured": (self.info.meta.get("scope") or {}).get("flag_rates"),
        }

    # ------------------------------------------------------------------ inputs
    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """The model's input for one grey image: the training preprocess, as float32 (S, S) in [0, 1]."""
        from pneumoscope.data.preprocess import preprocess

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
        return self.predict_inputs(images, tta=tta)

    def predict_inputs(self, inputs: Sequence[np.ndarray | LoadedImage], tta: int = 0) -> list[dict[str, Any]]:
        """Same as ``predict_arrays``."""
        check_views(tta)
        return self._predict_ready([self.ready(as_loaded_image(item)) for item in inputs], tta)

    def ready(self, item: LoadedImage) -> ReadyInput:
        """The model input, image statistics, applicability thumbnail and header of one decoded image (the
        per-image CPU work before the model)."""
        small = image_stats.downsample(item.gray)
        runner = self.applicability
        return ReadyInput(self.prepare(item.gray), image_stats.thumbnail_stats(small, item.colourfulness),
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
        error and no prediction.
        """
        check_views(tta)
        batches = _chunks(iter(paths), max(1, batch_size))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending = _submit(pool, next(batches, None), self.ready)
            while pending is not None:
                upcoming = _submit(pool, next(batches, None), self.ready)
                yield from self._predict_decoded(pending, tta)
                pending = upcoming

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
        if self._torch is None:
            raise ModelError("explanations need the PyTorch model, not an ONNX file.", path=self.source,
                             fix="pass the run folder, model.safetensors or bundled name instead.")
        from pneumoscope.inference.explain import explain_image

        loaded = as_loaded_image(image)
        prepared = self.prepare(loaded.gray)
        with self._explain_lock:
            return explain_image(self, self._torch.model, loaded.gray, prepared, method, target_class, loaded)


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


def _submit(pool: ThreadPoolExecutor, chunk: list[Any] | None, ready: Any) -> list[tuple[Path, Future]] | None:
    if chunk is None:
        return None
    return [(Path(p), pool.submit(lambda path: ready(load_input(path)), p)) for p in chunk]


def _applicability_runner(choice: str | Path | ApplicabilityRunner | None, source: Path) -> ApplicabilityRunner | None:
    """The runner ``Predictor.load``'s ``applicability`` argument asks for (see there)."""
    if choice is None or isinstance(choice, ApplicabilityRunner):
        return choice
    if str(choice) == "auto":
        path = check_path_for(source if source.is_dir() else None)
        return None if path is None else load_runner(path)
    return load_runner(Path(choice))


def _stem(info: ModelInfo) -> str:
    parts = [info.meta.get("architecture") or "model", info.task or f"{len(info.classes)}class"]
    return "-".join(str(p) for p in parts)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
