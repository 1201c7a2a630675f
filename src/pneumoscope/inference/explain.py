"""Grad-CAM and Grad-CAM++ heatmaps through pytorch-grad-cam, on the layer each architecture names with
``Classifier.cam_target_layer()``.

The CAM runs on a private copy of the model: pytorch-grad-cam hooks the target layer, and a forward pass of another
thread through the same module (the web server predicting while explaining) would otherwise land in its buffers.
"""

from __future__ import annotations

import copy
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from pneumoscope.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from pneumoscope.inference.predictor import Predictor

METHODS = ("gradcam", "gradcam++")


def _cam_class(method: str) -> Any:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

    classes = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}
    if method not in classes:
        raise ConfigError(f"unknown explanation method {method!r}.", fix=f"use one of: {', '.join(METHODS)}.")
    return classes[method]


def resolve_class(classes: tuple[str, ...], target: str | int | None, predicted: str) -> int:
    """Index of the class to explain: ``target`` (name or index) or the predicted class."""
    if target is None:
        return classes.index(predicted)
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        index = int(target)
        if 0 <= index < len(classes):
            return index
    elif target in classes:
        return classes.index(target)
    raise ConfigError(f"unknown class {target!r} for this model.", fix=f"use one of: {', '.join(classes)}.")


_CAM_MODELS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _cam_model(predictor: Predictor, model: Any) -> Any:
    """A private copy of the predictor's model for CAM, made once per predictor (under its explain lock) and kept
    while the predictor lives: CAM's hooks and gradients never touch the model that predicts."""
    cached = _CAM_MODELS.get(predictor)
    if cached is None:
        cached = copy.deepcopy(model).eval()
        for parameter in cached.parameters():
            parameter.requires_grad_(True)
        _CAM_MODELS[predictor] = cached
    return cached


def _target_layers(model: Any) -> list[Any]:
    """The layers Grad-CAM weighs: the model's one, or each member's for an ensemble (their heatmaps averaged)."""
    getter = getattr(model, "cam_target_layer", None)
    if getter is None:
        raise ModelError("this model does not name a layer for Grad-CAM (no cam_target_layer()).")
    layers = getter()
    return list(layers) if isinstance(layers, list | tuple) else [layers]


def _reshape_transforms(model: Any, layers: list[Any], sample: Any) -> list[Any]:
    """Per layer (one forward pass for all): None for conv layers (B, C, h, w); a token → grid transform for
    transformer layers (B, N, C)."""
    import torch

    shapes: dict[int, tuple[int, ...]] = {}

    def recorder(index: int) -> Any:
        def record(_module: Any, _inputs: Any, output: Any) -> None:  # returns None: the output stays as it is
            shapes.setdefault(index, tuple(_first_tensor(output).shape))
        return record

    handles = [layer.register_forward_hook(recorder(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
    return [_grid_transform(shapes[i]) for i in range(len(layers))]


def _grid_transform(shape: tuple[int, ...]) -> Any:
    if len(shape) == 4:
        return None
    if len(shape) == 3:
        tokens = shape[1]
        for extra in (0, 1, 2, 4, 5):
            side = round((tokens - extra) ** 0.5)
            if side * side == tokens - extra:
                return lambda t, e=extra, s=side: t[:, e:, :].reshape(t.shape[0], s, s, t.shape[2]).permute(0, 3, 1, 2)
    raise ModelError(f"cannot map the CAM layer's output of shape {shape} onto the image.",
                     fix="make cam_target_layer() return a convolutional or token layer.")


def _first_tensor(output: Any) -> Any:
    return output[0] if isinstance(output, tuple | list) else output


def heatmap_to_input(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Map a (S, S) heatmap on the model input back onto the original (H, W) image, values in [0, 1].

    ``data.preprocess`` squashes the whole image to a square (no crop, no padding), so the inverse is a plain resize.
    """
    resized = cv2.resize(heat.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, 1.0)


def overlay_heatmap(gray: np.ndarray, heatmap: np.ndarray, image_weight: float = 0.55) -> np.ndarray:
    """JET heatmap blended over the grey image: uint8 (H, W, 3)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=-1).astype(np.float32)
    return show_cam_on_image(rgb, heatmap, use_rgb=True, image_weight=image_weight)


def explain_image(
    predictor: Predictor, model: Any, gray: np.ndarray, prepared: np.ndarray, method: str,
    target_class: str | int | None, loaded: Any = None,
) -> dict[str, Any]:
    """Heatmap of ``prepared`` (the model input of ``gray``) for the predicted or chosen class; ``loaded`` (the
    ``LoadedImage`` of ``gray``, with its DICOM header) gives the prediction its full scope verdict."""
    import torch
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, ClassifierOutputTarget

    cam_class = _cam_class(method)
    prediction = predictor.predict_arrays([gray if loaded is None else loaded])[0]
    index = resolve_class(predictor.classes, target_class, prediction["label"])
    cam_model = _cam_model(predictor, model)
    layers = _target_layers(cam_model)
    device = next(cam_model.parameters()).device
    sample = torch.from_numpy(prepared[None, None]).to(device)
    reshapes = _reshape_transforms(cam_model, layers, sample)
    if len(layers) > 1 and any(r is not None for r in reshapes):
        raise ModelError("Grad-CAM of an ensemble needs convolutional members; this one has transformer members.",
                         path=predictor.source, fix="explain its members one by one.")
    reshape = reshapes[0]
    with torch.enable_grad(), cam_class(model=cam_model, target_layers=layers, reshape_transform=reshape) as cam:
        # A one-logit (sigmoid) binary model: the positive class is the logit, the negative class its opposite.
        target = BinaryClassifierOutputTarget(index) if predictor.single_logit else ClassifierOutputTarget(index)
        heat = cam(input_tensor=sample.clone().requires_grad_(True), targets=[target])[0]
    heat = np.nan_to_num(heat, nan=0.0)
    heatmap = heatmap_to_input(heat, gray.shape)
    return {
        "heatmap": heatmap,
        "overlay": overlay_heatmap(gray, heatmap),
        "target_class": predictor.classes[index],
        "method": method,
        "label": prediction["label"],
        "probabilities": prediction["probabilities"],
        "in_scope": prediction["in_scope"],
        "scope_reason": prediction["scope_reason"],
    }


def save_explanation(result: dict[str, Any], out_dir: Path, stem: str) -> dict[str, Path]:
    """Write ``<stem>_<method>_<class>_overlay.png`` and ``..._heatmap.png`` (JET colour map) into ``out_dir``."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    base = f"{stem}_{result['method'].replace('++', 'pp')}_{result['target_class']}"
    paths = {"overlay": out_dir / f"{base}_overlay.png", "heatmap": out_dir / f"{base}_heatmap.png"}
    Image.fromarray(result["overlay"]).save(paths["overlay"])
    colour = cv2.applyColorMap(np.uint8(255 * result["heatmap"]), cv2.COLORMAP_JET)
    Image.fromarray(cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)).save(paths["heatmap"])
    return paths
