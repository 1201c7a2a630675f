"""The examples in the public API's docstrings run, in the order a reader meets them (read a data set, split it,
train, evaluate, compare, load a model, predict, explain, export), in one working folder holding a small synthetic
Kermany-layout data set ``chest_xray/``."""

from __future__ import annotations

import doctest
import inspect
import shutil
from pathlib import Path

import pytest

import pneumoscope as ps
from pneumoscope import api

ORDER = (
    "read_dataset", "summarize_dataset", "split_dataset", "make_config", "train", "resume", "ensemble", "evaluate", "compare",
    "bundled_models", "load_model", "Model.prediction_columns", "Model.predict", "Model.iter_predictions",
    "Model.predict_to_file", "Model.explain", "Explanation.save", "export_onnx",
)


def documented() -> dict[str, object]:
    """Every public function and public method of a public class of the API, by qualified name."""
    found: dict[str, object] = {}
    for name in api.__all__:
        value = getattr(api, name)
        if inspect.isfunction(value):
            found[name] = value
        elif inspect.isclass(value) and value.__module__ == api.__name__:
            for attr, member in vars(value).items():
                if inspect.isfunction(member) and not attr.startswith("_") and attr != "summary":
                    found[f"{name}.{attr}"] = member
    return found


def test_every_public_function_has_an_example_that_runs_here():
    assert set(documented()) == set(ORDER)
    for name, function in documented().items():
        assert ">>> import pneumoscope as ps" in (function.__doc__ or ""), f"{name} has no example"


def test_the_package_root_exports_exactly_the_api():
    assert set(ps.__all__) == set(api.__all__) | {"__version__"}
    assert all(getattr(ps, name) is getattr(api, name) for name in api.__all__)
    with pytest.raises(AttributeError):
        ps.train_run  # noqa: B018 - internals are not reachable from the root


@pytest.mark.slow
def test_docstring_examples(tiny_kermany: Path, tmp_path: Path, monkeypatch) -> None:
    shutil.copytree(tiny_kermany, tmp_path / "chest_xray")
    monkeypatch.chdir(tmp_path)
    tests = {test.name.removeprefix(f"{api.__name__}."): test
             for test in doctest.DocTestFinder().find(api) if test.examples}
    assert set(tests) == set(ORDER)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for name in ORDER:
        report: list[str] = []
        result = runner.run(tests[name], out=report.append)
        assert result.failed == 0, f"example of {name} failed:\n{''.join(report)}"
    assert runner.summarize(verbose=False).attempted >= 2 * len(ORDER)  # the import and at least one call each
