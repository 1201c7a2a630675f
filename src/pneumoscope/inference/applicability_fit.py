"""Fitting the applicability check (``models.applicability``) and measuring it for a model; ``pneumoscope scope fit``.

``train_check(manifests, other)`` fits the check shared by the models of ``manifests`` (deterministic for a seed):

- **children**: the ``train`` rows of the manifests whose source shows children (``data.populations``); every
  ``val`` patient of any manifest is held out (half of them, by patient, calibrates the thresholds; the other half
  only measures), so that no model's validation images are fitted on; ``test`` rows are never read;
- **adults**: ``other`` (default: the COVID-19 Radiography Database) and any adult rows of the manifests; a hash of
  each file name holds ``other_holdout`` of them out (half calibrates, half measures);
- every fitting image is seen as ``views`` random **re-encodings** (``data.reencode``: crop, resize, re-process,
  JPEG / PNG), never as it is in its archive, so that neither archive's format, size or processing can be learned.

The frozen blocks' outputs of every view are computed once (and kept in pneumoscope's cache, keyed by the files
and settings, so that a re-run skips them); the fitted blocks are trained on them (AdamW, one-cycle schedule,
classes weighted). The chest X-ray reference is fitted on the fitting views' embeddings (children and adults); its
threshold is ``distance_margin`` times the ``quantile`` of the calibration children's distances (as they are and
re-encoded: the population of every bundled model, and the tighter one; adults have a longer tail). The adult
threshold lies half-way, in logit, between the calibration children's ``quantile`` of p_adult and the calibration
adults' ``other_tail`` quantile (the few adults that look most like children); the child threshold mirrors it.

``measure(check, population, ...)`` gives a model's flag rates: the scope verdict (``models.scope``, as predict
computes it) on its validation images not fitted on (as they are and re-encoded), held-out adults (likewise),
full-resolution originals of its archive, and non-radiographs (``negatives``). ``fit_model_scope`` writes the
model's population and these rates into its ``model.json`` and model card.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscope.data import image_stats
from pneumoscope.data.imaging import load_image
from pneumoscope.data.populations import ADULT, PEDIATRIC, SOURCE_POPULATIONS, Population, manifest_population
from pneumoscope.data.reencode import reencode
from pneumoscope.errors import ConfigError, DataError, ModelError
from pneumoscope.inference.applicability_runtime import ApplicabilityRunner
from pneumoscope.inference.sources import LoadedImage, iter_image_files, load_input, load_input_bytes
from pneumoscope.models import scope
from pneumoscope.models.applicability import (
    APPLICABILITY_FILE,
    INPUT_SIZE,
    ApplicabilityCheck,
    applicability_input,
    build_network,
    embedding_of,
    fit_feature_reference,
    shipped_check_path,
)
from pneumoscope.progress import progress_bar, status_line

CARD_SECTION = "## Applicability (population and scope checks)"
SCOPE_META_KEY = "scope"


@dataclass(frozen=True)
class FitSettings:
    """How the check is fitted (defaults: about 30 minutes of one CPU core for the Kermany + COVID-19 data)."""

    views: int = 3  # re-encodings of each fitting image
    epochs: int = 4
    batch_size: int = 64
    learning_rate: float = 3e-4
    weight_decay: float = 1e-2
    other_holdout: float = 0.4  # of the adult images: never fitted on (half calibrates, half measures)
    calibration_fraction: float = 0.5  # of the held-out children (by patient) and adults: set the thresholds
    quantile: float = 0.999  # of the population that must not be flagged (see the module docstring)
    other_tail: float = 0.01  # of the population that must be flagged
    distance_margin: float = 1.25
    n_components: int = 64
    reencode_sides: tuple[int, int] = (160, 640)  # longer side of the fitting views (measurement: 160-1024)
    input_size: int = INPUT_SIZE
    max_images: int | None = None  # per population, at most (tests)
    seed: int = 0


# ------------------------------------------------------------------------------------------------ which images


@dataclass(frozen=True)
class Image:
    """One X-ray with its population label (1 = adult) and the key it is held out by."""

    path: str
    adult: int
    key: str  # the patient id (manifest rows) or "folder/name" (other images)


@dataclass(frozen=True)
class Split:
    """The images of one fit: fitted on, calibrating the thresholds, measuring."""

    fit: list[Image]
    calibration: list[Image]
    measure: list[Image]


def file_key(path: str | Path) -> str:
    """The key of an image without patient id: its folder and name (``COVID/COVID-12.png``)."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def _fraction(key: str, seed: int, salt: str) -> float:
    digest = hashlib.sha256(f"{seed}:{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little") / 2**32


def read_manifests(manifests: Sequence[pd.DataFrame | str | Path]) -> list[pd.DataFrame]:
    """The usable rows (status ok) of each manifest."""
    from pneumoscope.data.manifest import read_manifest

    frames = []
    for manifest in manifests:
        rows = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest, check=True)
        missing = {"path", "split", "patient_id", "source"} - set(rows.columns)
        if missing:
            raise DataError(f"the manifest lacks the columns {', '.join(sorted(missing))}.",
                            path=None if isinstance(manifest, pd.DataFrame) else manifest,
                            fix="pass the manifest.csv of the model's run.")
        if "status" in rows.columns:
            rows = rows[rows["status"].fillna("").isin(["ok", ""])]
        frames.append(rows)
    return frames


def split_images(manifests: Sequence[pd.DataFrame], other: Sequence[str | Path], settings: FitSettings) -> Split:
    """Fitting, calibration and measurement images (see the module docstring)."""
    held_patients = {str(p) for rows in manifests for p in rows.loc[rows["split"].eq("val"), "patient_id"]}
    labelled: dict[str, Image] = {}
    for rows in manifests:
        for row in rows.itertuples():
            population = SOURCE_POPULATIONS.get(str(row.source))
            if population is None or row.split not in ("train", "val"):
                continue
            labelled.setdefault(str(row.path), Image(str(row.path), int(population.name == ADULT),
                                                     str(row.patient_id)))
    fit, calibration, measure = [], [], []
    for image in sorted(labelled.values(), key=lambda i: i.path):
        if image.key not in held_patients:
            fit.append(image)
        elif _fraction(image.key, settings.seed, "calibration") < settings.calibration_fraction:
            calibration.append(image)
        else:
            measure.append(image)
    for path in sorted({str(p) for p in iter_image_files(other)} - set(labelled)):
        image = Image(path, 1, file_key(path))
        if _fraction(image.key, settings.seed, "holdout") >= settings.other_holdout:
            fit.append(image)
        elif _fraction(image.key, settings.seed, "calibration") < settings.calibration_fraction:
            calibration.append(image)
        else:
            measure.append(image)
    if settings.max_images:
        fit, calibration, measure = (_cap(part, settings.max_images, settings.seed)
                                     for part in (fit, calibration, measure))
    for part, name in ((fit, "fitting"), (calibration, "calibration")):
        if {i.adult for i in part} != {0, 1}:
            raise DataError(f"the {name} images need children and adults.",
                            fix="pass manifests with Kermany (children) rows and --other adult X-rays.")
    return Split(fit, calibration, measure)


def _cap(images: list[Image], limit: int, seed: int) -> list[Image]:
    """At most ``limit`` images of each population (a reproducible sample)."""
    out = []
    for adult in (0, 1):
        part = [i for i in images if i.adult == adult]
        if len(part) > limit:
            order = np.random.default_rng(seed).permutation(len(part))[:limit]
            part = [part[k] for k in sorted(order)]
        out += part
    return out


# ------------------------------------------------------------------------------------------------ images → inputs


def view_rng(path: str, seed: int, view: int) -> np.random.Generator:
    """The random generator of one re-encoded view of one file (reproducible, independent of the file order)."""
    digest = hashlib.sha256(f"{seed}:{view}:{file_key(path)}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def check_input(gray: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(the check's input, the image's 128-px thumbnail) of a grey image, as predict computes them."""
    small = image_stats.downsample(gray)
    return applicability_input(small, size), small


def reencoded_input(path: str, seed: int, view: int, size: int, sides: tuple[int, int] = (160, 1024)) -> np.ndarray:
    """The check's input of one re-encoded view of ``path``."""
    return check_input(reencode(load_image(path), view_rng(path, seed, view), sides).gray, size)[0]


# ------------------------------------------------------------------------------------------------ training


def _frozen_outputs(net: Any, images: Sequence[Image], settings: FitSettings, progress: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(feature maps (N*V, C, h, w) float16, labels (N*V,)) of every fitting view, from the cache when the same files
    were processed with the same settings before."""
    import torch

    from pneumoscope.paths import cache_root

    key = hashlib.sha256(json.dumps({
        "files": [(i.path, i.adult, *_file_signature(i.path)) for i in images],
        "views": settings.views, "sides": settings.reencode_sides, "size": settings.input_size,
        "seed": settings.seed, "version": 1}).encode()).hexdigest()[:20]
    cached = cache_root() / "applicability-fit" / f"frozen-{key}.npz"
    if cached.is_file():
        with np.load(cached) as data:
            return data["maps"], data["labels"]
    maps, labels, batch = [], [], []

    def flush() -> None:
        with torch.inference_mode():
            feature_map, _ = net.frozen_part(torch.from_numpy(np.stack(batch)[:, None]))
        maps.append(feature_map.numpy().astype(np.float16))
        batch.clear()

    with progress_bar(progress, transient=True) as bar:
        task = bar.add_task("re-encoded views of the fitting images", total=len(images) * settings.views)
        for image in images:
            for view in range(settings.views):
                batch.append(reencoded_input(image.path, settings.seed, view, settings.input_size,
                                             settings.reencode_sides))
                labels.append(image.adult)
                if len(batch) == settings.batch_size:
                    flush()
                bar.advance(task)
        if batch:
            flush()
    result = np.concatenate(maps), np.array(labels, dtype=np.float32)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.stem + ".tmp.npz")
        np.savez(tmp, maps=result[0], labels=result[1])
        tmp.replace(cached)
    except OSError as error:
        status_line(f"could not keep the fitting views in the cache ({error}); a re-run will compute them again")
    return result


def _file_signature(path: str) -> tuple[int, int]:
    stat = Path(path).stat()
    return stat.st_size, stat.st_mtime_ns


def _train_fitted_part(net: Any, maps: np.ndarray, labels: np.ndarray, settings: FitSettings, progress: bool) -> None:
    """Train the fitted blocks on the frozen feature maps (balanced binary cross-entropy)."""
    import torch

    torch.manual_seed(settings.seed)
    parameters = net.fitted_parameters()
    optimiser = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, len(labels) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=settings.learning_rate,
                                                   total_steps=settings.epochs * steps_per_epoch)
    positive_weight = torch.tensor(float((labels == 0).sum()) / max(float((labels == 1).sum()), 1.0))
    rng = np.random.default_rng(settings.seed)
    net.train()
    with progress_bar(progress, transient=True) as bar:
        task = bar.add_task("training the population head", total=settings.epochs * steps_per_epoch)
        for _ in range(settings.epochs):
            order = rng.permutation(len(labels))
            for step in range(steps_per_epoch):
                rows = np.sort(order[step * settings.batch_size:(step + 1) * settings.batch_size])
                logits = net.fitted_part(torch.from_numpy(maps[rows].astype(np.float32)))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, torch.from_numpy(labels[rows]), pos_weight=positive_weight)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                bar.advance(task)
    net.eval()


def train_check(manifests: Sequence[pd.DataFrame | str | Path], other: Sequence[str | Path],
                settings: FitSettings | None = None, progress: bool = True, fullres: Sequence[str | Path] = (),
                select: Callable[[Image], bool] | None = None, measured: bool = True) -> ApplicabilityCheck:
    """Fit the shared check on the children of ``manifests`` and the adults of ``other`` (see the module docstring);
    its ``measured`` holds the flag rates of a pediatric model on the held-out images nothing was fitted or
    calibrated on (unless ``measured`` is False). ``select`` keeps only some of the fitting and calibration images
    (e.g. one adult source, for a cross-source test); the frozen outputs are still those of every fitting image,
    so that they come from the cache."""
    import torch

    settings = settings or FitSettings()
    split = split_images(read_manifests(manifests), other, settings)
    torch.manual_seed(settings.seed)
    net = build_network(pretrained=True)
    maps, labels = _frozen_outputs(net, split.fit, settings, progress)
    if select is not None:
        rows = np.repeat([select(i) for i in split.fit], settings.views)
        maps, labels = maps[rows], labels[rows]
        split = Split([i for i in split.fit if select(i)], [i for i in split.calibration if select(i)], split.measure)
    reference = fit_feature_reference(embedding_of(maps), n_components=settings.n_components)
    _train_fitted_part(net, maps, labels, settings, progress)
    weights = {name: value.detach().numpy().copy() for name, value in net.state_dict().items()}
    check = ApplicabilityCheck(weights=weights, reference=reference, adult_threshold=0.5, child_threshold=0.5,
                               input_size=settings.input_size, settings=_jsonable(asdict(settings)))
    runner = ApplicabilityRunner(check, backend="pytorch")
    calibration = [_judged(runner, split.calibration, settings.seed, reencoded, progress, "calibration")
                   for reencoded in (False, True)]
    distance = np.concatenate([c.distance for c in calibration])
    p_adult = np.concatenate([c.p_adult for c in calibration])
    adult = np.concatenate([c.adult for c in calibration]).astype(bool)
    reference.threshold = float(settings.distance_margin * np.quantile(distance[~adult], settings.quantile))
    check.adult_threshold = _between(np.quantile(p_adult[~adult], settings.quantile),
                                     np.quantile(p_adult[adult], settings.other_tail))
    check.child_threshold = _between(np.quantile(p_adult[adult], 1.0 - settings.quantile),
                                     np.quantile(p_adult[~adult], 1.0 - settings.other_tail))
    check.seen_patients = frozenset(i.key for i in (*split.fit, *split.calibration) if not i.adult)
    check.seen_files = frozenset(i.key for i in (*split.fit, *split.calibration) if i.adult)
    check.measured = {
        "images": {"fitted": {"children": sum(not i.adult for i in split.fit), "adults": sum(i.adult for i in split.fit),
                              "views_each": settings.views},
                   "calibration": {"children": sum(not i.adult for i in split.calibration),
                                   "adults": sum(i.adult for i in split.calibration)}},
        "thresholds": {"chest_xray_distance": reference.threshold, "adult": check.adult_threshold,
                       "child": check.child_threshold},
    }
    if measured:
        pediatric = SOURCE_POPULATIONS["kermany"]
        sets = measurement_sets(pediatric, [i.path for i in split.measure if not i.adult],
                                [i.path for i in split.measure if i.adult], fullres)
        check.measured["flag_rates"] = measure(check, pediatric, sets, progress=progress, runner=runner,
                                               seed=settings.seed)
    return check


def _between(p: float, q: float) -> float:
    """The probability half-way between ``p`` and ``q`` in logit."""
    logits = np.log(np.clip([p, q], 1e-9, 1 - 1e-9) / (1 - np.clip([p, q], 1e-9, 1 - 1e-9)))
    return float(1.0 / (1.0 + np.exp(-logits.mean())))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


# ------------------------------------------------------------------------------------------------ measuring


@dataclass
class _Judged:
    distance: np.ndarray
    p_adult: np.ndarray
    adult: np.ndarray


def _judged(runner: ApplicabilityRunner, images: Sequence[Image], seed: int, reencoded: bool, progress: bool,
            what: str) -> _Judged:
    loaded = _loaded([i.path for i in images], seed, reencoded, progress, what)
    inputs = np.stack([check_input(item.gray, runner.input_size)[0] for item in loaded])
    embeddings, logits = _outputs(runner, inputs)
    return _Judged(runner.check.reference.distance(embeddings), 1.0 / (1.0 + np.exp(-logits)),
                   np.array([i.adult for i in images]))


def _outputs(runner: ApplicabilityRunner, inputs: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    parts = [runner.outputs(inputs[start:start + batch_size]) for start in range(0, len(inputs), batch_size)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]).astype(np.float64)


def _rates(runner: ApplicabilityRunner, population: Population, loaded: Sequence[LoadedImage]) -> dict[str, Any]:
    """The scope verdict's flag rate on decoded images, and how often each reason was given."""
    inputs, stats = [], []
    for item in loaded:
        x, small = check_input(item.gray, runner.input_size)
        inputs.append(x)
        stats.append(image_stats.image_score(image_stats.thumbnail_stats(small, item.colourfulness)))
    results = runner.check.results(*_outputs(runner, np.stack(inputs)))
    verdicts = [scope.verdict(item.header, stat, result, runner.check, population)
                for item, stat, result in zip(loaded, stats, results, strict=True)]
    reasons = Counter(reason for v in verdicts for reason in v.reasons)
    flagged = sum(not v.in_scope for v in verdicts)
    return {"n": len(verdicts), "flagged": flagged, "flag_rate": round(flagged / max(len(verdicts), 1), 4),
            "reasons": dict(reasons.most_common())}


def _loaded(paths: Sequence[str], seed: int, reencoded: bool, progress: bool, what: str) -> list[LoadedImage]:
    out = []
    with progress_bar(progress, transient=True) as bar:
        task = bar.add_task(f"{what} ({'re-encoded' if reencoded else 'as is'})", total=len(paths))
        for path in paths:
            if reencoded:  # the re-encoded file decoded as predict decodes an upload of it
                encoded = reencode(load_image(path), view_rng(path, seed + 1000, 0))
                out.append(load_input_bytes(encoded.data, f"{path} (re-encoded)"))
            else:
                out.append(load_input(path))
            bar.advance(task)
    return out


def measure(check: ApplicabilityCheck, population: Population, sets: dict[str, Sequence[str]],
            progress: bool = True, runner: ApplicabilityRunner | None = None, seed: int = 0,
            negatives_per_kind: int = 20) -> dict[str, Any]:
    """Flag rates of the scope verdict for a model of ``population``: each named set of X-rays as it is and
    re-encoded, then the non-radiographs of ``negatives`` (``negatives_per_kind`` generated images of each kind; 0:
    none)."""
    from pneumoscope.inference.negatives import negative_inputs

    runner = runner or ApplicabilityRunner(check)
    measured = {}
    for name, paths in sets.items():
        for reencoded in (False, True):
            label = f"{name} ({'re-encoded' if reencoded else 'as is'})"
            measured[label] = _rates(runner, population, _loaded(paths, seed, reencoded, progress, name))
    if negatives_per_kind > 0:
        with tempfile.TemporaryDirectory() as tmp:
            for kind, loaded in negative_inputs(Path(tmp), negatives_per_kind, seed).items():
                measured[f"not a radiograph: {kind}"] = _rates(runner, population, loaded)
    return measured


def measurement_sets(population: Population, own: Sequence[str], other: Sequence[str],
                     fullres: Sequence[str | Path] = ()) -> dict[str, Sequence[str]]:
    """The named X-ray sets a model of ``population`` is measured on (empty ones left out)."""
    sets: dict[str, Sequence[str]] = {"validation images not fitted on": own}
    if population.name == PEDIATRIC:
        sets["adults, held out"] = other
        sets["children, full-resolution originals of the archive"] = [str(p) for p in iter_image_files(fullres)] \
            if fullres else []
    return {name: paths for name, paths in sets.items() if len(paths)}


# ------------------------------------------------------------------------------------------------ one model


def check_destination(model_folder: Path) -> Path:
    """Where a re-fitted check goes for a model: the shipped file for the package's bundled models, the model
    folder's own file otherwise."""
    from pneumoscope.inference.bundled import package_bundled_dir

    if model_folder.resolve().parent == package_bundled_dir().resolve():
        return shipped_check_path()
    return model_folder / APPLICABILITY_FILE


def fit_model_scope(folder: Path, manifest: pd.DataFrame | str | Path, check: ApplicabilityCheck,
                    other: Sequence[str | Path], fullres: Sequence[str | Path] = (), progress: bool = True,
                    update_card: bool = True, seed: int = 0) -> dict[str, Any]:
    """Write the model's training population (from its manifest) and its measured flag rates into its
    ``model.json`` (and model card); returns what was written."""
    from pneumoscope.files import atomic_write_text
    from pneumoscope.inference.bundled import META_FILE

    rows = read_manifests([manifest])[0]
    population = manifest_population(rows)
    val = rows[rows["split"].eq("val")]
    seen = val["patient_id"].astype(str).isin(check.seen_patients) | val["path"].map(file_key).isin(check.seen_files)
    own = sorted(val.loc[~seen, "path"].astype(str))
    if val.empty:
        raise DataError("the manifest has no val rows to measure the check on.",
                        fix="pass the manifest.csv of the run that trained the model.")
    if not own:
        raise DataError("every validation image of this model was fitted or calibrated on by the check.",
                        fix="re-fit the check on this model's manifest: `pneumoscope scope fit MODEL --manifest M "
                            "--retrain`.")
    if seen.mean() > 0.6:  # about half are calibration images when the check was fitted on this split
        status_line(f"the check was fitted on {int(seen.sum())} of the model's {len(val)} validation images (more than the "
            "calibration half): re-fit it on this model's manifest (`--retrain`) for an unbiased measurement")
    other_images = sorted(p for p in (str(p) for p in iter_image_files(other)) if file_key(p) not in check.seen_files)
    flag_rates = measure(check, population, measurement_sets(population, own, other_images, fullres),
                         progress=progress, seed=seed)
    meta_path = folder / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["population"] = population.as_dict()
    meta[SCOPE_META_KEY] = {"check_sha256": check.sha256, "thresholds": check.measured.get("thresholds"),
                            "validation_images_left_out": int(seen.sum()), "flag_rates": flag_rates}
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    meta_path.chmod(0o644)
    if update_card:
        write_card_section(folder, population, meta[SCOPE_META_KEY])
    return {"population": population.as_dict(), **meta[SCOPE_META_KEY]}


def resolve_model_folder(model: str | Path) -> Path:
    """The folder of a run, model folder or bundled model name (the scope files are written there)."""
    from pneumoscope.inference.bundled import META_FILE, find_bundled, list_bundled

    path = Path(str(model)).expanduser()
    if path.is_dir() and (path / META_FILE).is_file():
        return path
    found = find_bundled(str(model))
    if found is not None:
        return found.path
    names = ", ".join(m.name for m in list_bundled()) or "none installed"
    raise ConfigError("not a model folder or bundled model name.", path=path,
                      fix=f"pass a run folder (with model.json) or a bundled model name ({names}).")


def fit_scope(models: Sequence[str | Path], manifests: Sequence[str | Path], other: Sequence[str | Path],
              fullres: Sequence[str | Path] = (), retrain: bool = False, settings: FitSettings | None = None,
              progress: bool = True, update_card: bool = True) -> dict[str, Any]:
    """``pneumoscope scope fit``: (re-)fit the shared check on every model's manifest when ``retrain`` (or when the
    models have none), then write each model's population and flag rates. Returns {model folder: what was written,
    "check": its file}."""
    from pneumoscope.models.applicability import check_path_for

    folders = [resolve_model_folder(m) for m in models]
    if len(manifests) != len(folders):
        raise ConfigError(f"{len(folders)} model(s) but {len(manifests)} manifest(s).",
                          fix="pass one --manifest per model, in the same order (a run folder's own manifest.csv "
                              "is used when none is given).")
    settings = settings or FitSettings()
    destinations = {check_destination(f) for f in folders}
    current = [check_path_for(f) for f in folders]
    results: dict[str, Any] = {}
    fitted = None
    if retrain or any(p is None or not p.is_file() for p in current):
        fitted = train_check(manifests, other, settings, progress, fullres)
        for destination in sorted(destinations):
            fitted.save(destination)
            status_line(f"applicability check → {destination}")
        results["check"] = [str(d) for d in sorted(destinations)]
    for folder, manifest in zip(folders, manifests, strict=True):
        path = check_path_for(folder)
        if fitted is None and path is None:
            raise ModelError("no applicability check found for this model.", path=folder,
                             fix="run `pneumoscope scope fit MODEL --retrain`.")
        check = fitted if fitted is not None else ApplicabilityCheck.load(path)
        results[str(folder)] = fit_model_scope(folder, manifest, check, other, fullres, progress, update_card,
                                               settings.seed)
    return results


# ------------------------------------------------------------------------------------------------ model card


def card_section(population: Population, scope_meta: dict[str, Any]) -> str:
    """The model card's applicability section: population, reasons, measured flag rates."""
    rates = scope_meta.get("flag_rates") or {}
    thresholds = scope_meta.get("thresholds") or {}
    if population.name == PEDIATRIC:
        flags = f"`adult` when the image looks like an adult's X-ray (p_adult >= {thresholds.get('adult', 0):.3f})"
    elif population.name == ADULT:
        flags = f"`child` when the image looks like a child's X-ray (p_adult <= {thresholds.get('child', 0):.3f})"
    else:
        flags = "no population reason (the model's training population is " + population.name + ")"
    lines = [
        CARD_SECTION, "",
        (f"Trained on **{population.description}**. Every prediction carries `in_scope` and `scope_reason`: {flags}, "
        "`not_a_chest_xray`, `lateral`, `modality CT`, ... (docs/SCOPE.md says what each means). The label of an "
        "out-of-scope image is not to be trusted."), "",
        ("Flag rates measured by `pneumoscope scope fit` with the applicability check shipped with the package, on "
        "images it was not fitted or calibrated on:"), "",
        "| images | n | flagged | rate | reasons |", "|---|---|---|---|---|",
    ]
    for name, rate in rates.items():
        reasons = ", ".join(f"{reason} {count}" for reason, count in (rate.get("reasons") or {}).items())
        lines.append(f"| {name} | {rate['n']} | {rate['flagged']} | {rate['flag_rate']:.3f} | {reasons} |")
    lines += ["", ("Non-radiograph DICOMs (CT, MR, US, ...) are also refused by their header before any pixel is "
                  "read; the rates above are those of the image checks alone. Re-encoded: each image cropped, "
                  "resized, re-processed and saved again as JPEG or PNG, so that the archive's format carries no "
                  "signal. docs/SCOPE.md shows that the check reads anatomy rather than the archive (a hold-out "
                  "across the adult archive's folders, a trivial file-statistics baseline, occlusion maps)."), ""]
    return "\n".join(lines)


def write_card_section(folder: Path, population: Population, scope_meta: dict[str, Any]) -> Path | None:
    """Replace (or add) the applicability section of ``folder/MODEL_CARD.md``; None without a card."""
    from pneumoscope.files import atomic_write_text
    from pneumoscope.inference.bundled import CARD_FILE

    card = folder / CARD_FILE
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8")
    section = card_section(population, scope_meta)
    if CARD_SECTION in text:
        before, _, after = text.partition(CARD_SECTION)
        rest = after.split("\n## ", 1)
        text = before + section + ("\n## " + rest[1] if len(rest) > 1 else "")
    else:
        marker = "\n## Intended use"
        text = text.replace(marker, "\n" + section + marker, 1) if marker in text else text + "\n" + section
    atomic_write_text(card, text)
    card.chmod(0o644)
    return card


def describe(flag_rates: dict[str, Any]) -> Iterable[str]:
    """One line per measured set, for the command's output."""
    for name, rate in flag_rates.items():
        yield f"{name}: {rate['flagged']} / {rate['n']} flagged ({rate['flag_rate']:.1%})"
