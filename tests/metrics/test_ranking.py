"""The recipe selection rule: validation gates, five proxies rank, the mean rank decides."""

from __future__ import annotations

import pandas as pd
import pytest

from pneumoscope.metrics.ranking import PROXIES, decide_between_finalists, rounded, score_runs, seed_means


def runs(**overrides: dict[str, float]) -> pd.DataFrame:
    base = {"val_acc": 0.985, "val_auc": 0.999, "unseen_spec": 0.80, "res_mean_abs_dp": 0.010,
            "stress_photometric_bal": 0.97, "stress_framing_bal": 0.93, "stress_sharpness_bal": 0.96}
    return pd.DataFrame({name: {**base, **values} for name, values in overrides.items()}).T


def test_validation_gates_and_does_not_rank():
    figures = runs(best_val={"val_acc": 0.990}, close={"val_acc": 0.981, "unseen_spec": 0.90},
                   far={"val_acc": 0.975, "unseen_spec": 0.99}, low_auc={"val_auc": 0.990, "unseen_spec": 0.99})
    scored = score_runs(figures, "binary")
    assert scored["eligible"].to_dict() == {"best_val": True, "close": True, "far": False, "low_auc": False}
    assert scored.loc[["far", "low_auc"], "score"].isna().all()
    # among the eligible, the better proxy wins although its validation accuracy is lower
    assert scored.loc["close", "place"] == 1 and scored.loc["best_val", "place"] == 2
    # 3-class gates are wider: 1.5 points below the best is still eligible there
    assert score_runs(figures, "3class").loc["far", "eligible"]


def test_one_proxy_alone_does_not_win():
    figures = runs(specialist={"stress_framing_bal": 0.99},
                   allround={"unseen_spec": 0.84, "res_mean_abs_dp": 0.004, "stress_sharpness_bal": 0.99})
    scored = score_runs(figures, "binary")
    assert scored.loc["allround", "place"] == 1
    assert scored.loc["specialist", "rank_stress_framing_bal"] == 1


def test_differences_below_the_noise_step_are_ties():
    figures = runs(a={"unseen_spec": 0.801}, b={"unseen_spec": 0.809})
    scored = score_runs(figures, "binary")
    assert scored.loc["a", "rank_unseen_spec"] == scored.loc["b", "rank_unseen_spec"] == 1.5
    assert rounded(pd.Series([0.0124, 0.0126]), 0.005).tolist() == pytest.approx([0.010, 0.015])


def test_lower_dp_ranks_better_and_ties_break_on_validation():
    figures = runs(smooth={"res_mean_abs_dp": 0.002}, jumpy={"res_mean_abs_dp": 0.030})
    assert score_runs(figures, "binary").loc["smooth", "rank_res_mean_abs_dp"] == 1
    equal = runs(a={"val_acc": 0.986}, b={"val_acc": 0.989})
    assert score_runs(equal, "binary").sort_values("place").index.tolist() == ["b", "a"]


def test_finalists_within_half_a_rank_go_to_the_better_unseen_specificity():
    close = runs(first={"stress_framing_bal": 0.97, "unseen_spec": 0.80},
                 second={"unseen_spec": 0.86, "stress_framing_bal": 0.90, "stress_photometric_bal": 0.93})
    scored = score_runs(close, "binary")
    assert scored.loc["first", "place"] == 1  # better on two stress kinds, worse on the adult normals
    assert scored.loc["second", "score"] - scored.loc["first", "score"] == pytest.approx(0.2)
    assert decide_between_finalists(close, "binary") == "second"
    clear = runs(first={"unseen_spec": 0.80, "res_mean_abs_dp": 0.002, "stress_framing_bal": 0.99,
                        "stress_sharpness_bal": 0.99, "stress_photometric_bal": 0.99}, second={"unseen_spec": 0.86})
    assert decide_between_finalists(clear, "binary") == "first"


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="unseen_spec"):
        score_runs(runs(a={}).drop(columns="unseen_spec"), "binary")
    assert set(PROXIES) == {"unseen_spec", "res_mean_abs_dp", "stress_photometric_bal", "stress_framing_bal",
                            "stress_sharpness_bal"}


def test_seed_means_average_each_recipe_over_its_runs():
    figures = runs(a_s0={"unseen_spec": 0.80, "val_acc": 0.990}, a_s1={"unseen_spec": 0.90, "val_acc": 0.980},
                   b_s0={"unseen_spec": 0.70}, c3_s0={"unseen_spec": 0.60})
    figures["task"] = ["binary", "binary", "binary", "3class"]
    figures["recipe"] = ["a", "a", "b", "a"]
    means = seed_means(figures)
    binary = means.loc[means["task"] == "binary"]
    assert binary.loc["a", "unseen_spec"] == pytest.approx(0.85)
    assert binary.loc["a", "val_acc"] == pytest.approx(0.985)
    assert binary.loc["a", "seeds"] == 2 and binary.loc["a", "runs"] == "a_s0, a_s1"
    assert binary.loc["b", "seeds"] == 1
    # a recipe of another task is its own row, not averaged in
    assert means.loc[means["task"] == "3class", "unseen_spec"].tolist() == pytest.approx([0.60])
    assert decide_between_finalists(binary, "binary") == "a"
    with pytest.raises(ValueError, match="recipe"):
        seed_means(figures.drop(columns="recipe"))
