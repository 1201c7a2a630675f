"""What every route of the service shares: the loaded model and its runner, the decode threads, the limits, and the
conversion of the predictor's results into the API's schemas. ``create_app`` builds one ``ServiceContext`` and the
routers reach it through the ``Context`` dependency."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, UploadFile

from pneumoscope.inference.sources import LoadedImage
from pneumoscope.metrics.classification import json_ready
from pneumoscope.serve.runner import ModelRunner
from pneumoscope.serve.schemas import ModelInfo, ModelMetadata, Prediction, ScopeCheck
from pneumoscope.serve.uploads import MB, decode_upload, safe_filename

T = TypeVar("T")
INTENDED_USE = "Research use only. Not a medical device: not for diagnosis or treatment decisions."


@dataclass(frozen=True)
class Limits:
    """The service's limits on uploads, as GET /model shows them."""

    max_upload_mb: float
    max_batch_files: int
    max_batch_mb: float
    body_timeout_s: float
    min_body_rate: float

    @property
    def upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def batch_bytes(self) -> int:
        return int(self.max_batch_mb * MB)

    def body_limit_for(self, path: str) -> int:
        """The largest request body the endpoint at ``path`` takes."""
        if path == "/predict/batch":
            return self.batch_bytes
        if path in ("/predict", "/explain"):
            return self.upload_bytes
        return 64 * 1024  # no other endpoint takes a body

    def as_dict(self) -> dict[str, float]:
        return {"max_upload_mb": self.max_upload_mb, "max_batch_files": self.max_batch_files,
                "max_batch_mb": round(self.max_batch_mb, 3), "body_timeout_s": self.body_timeout_s,
                "min_body_rate_bytes_per_s": self.min_body_rate}


@dataclass
class ServiceContext:
    """The model, its runner and the decode threads of one app."""

    predictor: Any
    runner: ModelRunner
    workers: ThreadPoolExecutor
    limits: Limits
    started_at: float = field(default_factory=time.monotonic)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.predictor.classes]

    @property
    def model_id(self) -> str:
        return str(self.predictor.model_id)

    @functools.cached_property
    def model_info(self) -> ModelInfo:
        return model_info(self.predictor, self.model_id, self.limits.as_dict())

    async def cpu_work(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the decode threads (never on the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self.workers, functools.partial(function, *args))

    async def decode(self, upload: UploadFile) -> tuple[LoadedImage, str | None]:
        """The uploaded image, checked by content and decoded in memory, and its safe file name."""
        name = safe_filename(upload.filename)
        data = await upload.read(self.limits.upload_bytes + 1)
        image = await self.cpu_work(decode_upload, data, name, self.limits.upload_bytes, self.predictor.decode_side)
        return image, name

    async def predict_one(self, image: LoadedImage, name: str | None, tta: int, started: float) -> Prediction:
        raw = await self.runner.predict(image, tta)
        width, height = image.source_size
        return prediction(raw, name, (height, width), tta, self.model_id, started)

    def close(self) -> None:
        self.runner.close()
        self.workers.shutdown(wait=False, cancel_futures=True)


def get_context(request: Request) -> ServiceContext:
    return request.app.state.context


Context = Annotated[ServiceContext, Depends(get_context)]


def prediction(raw: dict, name: str | None, shape: tuple[int, ...], tta: int, model_id: str,
               started: float) -> Prediction:
    """The API's ``Prediction`` of one result of ``Predictor.predict_arrays``."""
    std = raw.get("p_std")
    return Prediction(
        filename=name,
        label=str(raw["label"]),
        probabilities={str(k): float(v) for k, v in raw["probabilities"].items()},
        probabilities_std={str(k): float(v) for k, v in std.items()} if isinstance(std, dict) else None,
        threshold=None if raw.get("threshold") is None else float(raw["threshold"]),
        in_scope=bool(raw.get("in_scope", True)),
        scope_reason=str(raw.get("scope_reason") or ""),
        scope_detail=str(raw.get("scope_detail") or ""),
        scope_checks={str(check_name): ScopeCheck(**json_ready(check)) for check_name, check in
                      (raw.get("scope_checks") or {}).items()},
        model_id=model_id,
        width=int(shape[1]),
        height=int(shape[0]),
        tta=tta,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 2),
    )


def model_info(predictor: Any, model_id: str, limits: dict[str, float]) -> ModelInfo:
    """GET /model's answer: the predictor's card and the service's limits."""
    card = dict(predictor.card)
    metrics = card.get("val_metrics") or card.get("metrics")
    meta = predictor.info
    return ModelInfo(
        **{name: getattr(meta, name) for name in ModelMetadata.model_fields},
        model_id=model_id,
        architecture=meta.architecture,
        threshold_method=card.get("threshold_method"),
        metrics=metrics if isinstance(metrics, dict) else None,
        card=json_ready(card),
        card_markdown=card.get("model_card") or None,
        limits=limits,
        intended_use=INTENDED_USE,
    )
