"""classification_metrics checked against scikit-learn on hand-made cases, including undefined values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from pneumoscope.errors import DataError
from pneumoscope.metrics.classification import classification_metrics, most_confident_errors

CLASSES4 = ["normal", "bacteria", "virus", "covid"]


def probs_predicting(predicted: list[int], k: int, confidence: float = 0.7) -> np.ndarray:
    """Probabilities whose arg-max is ``predicted`` (varying a little so that AUCs are not all ties)."""
    rows = []
    for i, c in enumerate(predicted):
        row = np.full(k, (1 - confidence) / (k - 1))
        row[c] = confidence
        wobble = 0.01 * ((i * 7) % 5) / 5
        row[c] -= wobble
        row[(c + 1) % k] += wobble
        rows.append(row)
    return np.array(rows)


def test_four_classes_with_a_class_never_predicted_matches_sklearn():
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
    predicted = [0, 0, 1, 1, 1, 0, 1, 1, 0, 3]  # class 2 (virus) is never predicted
    probs = probs_predicting(predicted, 4)
    m = classification_metrics(y, probs, CLASSES4)

    assert m["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
    recall = recall_score(y, predicted, average=None, labels=range(4), zero_division=np.nan)
    precision = precision_score(y, predicted, average=None, labels=range(4), zero_division=np.nan)
    f1 = f1_score(y, predicted, average=None, labels=range(4))
    for i, name in enumerate(CLASSES4):
        assert m["per_class"][name]["recall"] == pytest.approx(recall[i])
        assert m["per_class"][name]["f1"] == pytest.approx(f1[i])
        if i != 2:
            assert m["per_class"][name]["precision"] == pytest.approx(precision[i])
    assert m["per_class"]["virus"]["precision"] is None  # 0/0: never predicted, not a silent 0
    assert m["per_class"]["virus"]["f1"] == 0.0 and m["per_class"]["virus"]["recall"] == 0.0
    assert m["macro"]["f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert m["weighted"]["f1"] == pytest.approx(f1_score(y, predicted, average="weighted"))
    assert m["macro"]["precision"] == pytest.approx(
        precision_score(y, predicted, average="macro", zero_division=np.nan))
    assert m["confusion_matrix"] == confusion_matrix(y, predicted).tolist()
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    for i, name in enumerate(CLASSES4):
        assert m["per_class"][name]["pr_auc"] == pytest.approx(average_precision_score(y == i, probs[:, i]))
    # specificity (one-vs-rest true-negative rate) from the confusion matrix
    cm = confusion_matrix(y, predicted)
    for i, name in enumerate(CLASSES4):
        negatives = cm.sum() - cm[i].sum()
        assert m["per_class"][name]["specificity"] == pytest.approx((negatives - (cm[:, i].sum() - cm[i, i]))
                                                                    / negatives)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_a_class_absent_from_the_labels_is_undefined_not_zero():
    y = np.array([0, 0, 1, 1, 2, 2])  # no covid image
    predicted = [0, 3, 1, 1, 2, 0]  # but covid is predicted once
    probs = probs_predicting(predicted, 4)
    m = classification_metrics(y, probs, CLASSES4)
    covid = m["per_class"]["covid"]
    assert covid["support"] == 0 and covid["predicted"] == 1
    assert covid["recall"] is None and covid["roc_auc"] is None and covid["pr_auc"] is None
    assert covid["precision"] == 0.0 and covid["f1"] == 0.0 and covid["specificity"] == pytest.approx(5 / 6)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
    present = [0, 1, 2]
    expected_auc = np.mean([roc_auc_score(y == k, probs[:, k]) for k in present])
    assert m["roc_auc"] == pytest.approx(expected_auc)
    assert m["macro"]["recall"] == pytest.approx(recall_score(y, predicted, labels=present, average="macro"))
    assert m["confusion_matrix_normalised"][3] == [None] * 4  # a row with no images: undefined
    json.dumps(m, allow_nan=False)


def test_binary_prediction_uses_the_threshold_on_the_positive_class():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p1 = np.array([0.1, 0.3, 0.35, 0.6, 0.4, 0.45, 0.7, 0.9])
    at_half = classification_metrics(y, p1, ["normal", "pneumonia"])
    at_030 = classification_metrics(y, np.stack([1 - p1, p1], axis=1), ["normal", "pneumonia"], threshold=0.3)
    assert at_half["threshold"] is None and at_030["threshold"] == 0.3
    predicted = (p1 >= 0.3).astype(int)
    assert at_030["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert at_030["per_class"]["pneumonia"]["sensitivity"] == pytest.approx(recall_score(y, predicted))
    assert at_030["per_class"]["normal"]["recall"] == pytest.approx(recall_score(y, predicted, pos_label=0))
    assert at_030["per_class"]["pneumonia"]["specificity"] == at_030["per_class"]["normal"]["recall"]
    assert at_half["accuracy"] == pytest.approx(accuracy_score(y, (p1 > 0.5).astype(int)))
    assert at_030["roc_auc"] == at_half["roc_auc"] == pytest.approx(roc_auc_score(y, p1))
    assert at_030["pr_auc"] == pytest.approx(average_precision_score(y, p1))


def test_class_names_as_labels_and_clear_errors_for_the_wrong_task():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    by_name = classification_metrics(["normal", "pneumonia"], probs, ["normal", "pneumonia"])
    assert by_name["accuracy"] == 1.0
    with pytest.raises(DataError, match="not among the model's classes"):
        classification_metrics(["normal", "covid"], probs, ["normal", "pneumonia"])
    with pytest.raises(DataError, match="outside the 2 classes"):  # 4-class labels for a binary model
        classification_metrics([0, 3], probs, ["normal", "pneumonia"])
    with pytest.raises(DataError, match="shape"):
        classification_metrics([0, 1], np.eye(3)[:2], ["normal", "pneumonia"])
    with pytest.raises(DataError, match="logits"):
        classification_metrics([0, 1], np.array([[2.0, -1.0], [0.1, 3.0]]), ["normal", "pneumonia"])


def test_most_confident_errors_are_ordered_and_respect_the_threshold():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.45, 0.55], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([1, 0, 0, 1, 1])  # wrong at argmax: 0 (0.9), 1 (0.8), 2 (0.55), 4 (0.6)
    errors = most_confident_errors(y, probs, ["normal", "pneumonia"], limit=3)
    assert [e["index"] for e in errors] == [0, 1, 4]
    assert errors[0] == {"index": 0, "true": "pneumonia", "predicted": "normal", "confidence": 0.9}
    # at threshold 0.75 image 3 (p = 0.7) is called normal: a low-confidence error that arg-max got right
    at_075 = most_confident_errors(y, probs, ["normal", "pneumonia"], threshold=0.75)
    assert [(e["index"], e["predicted"]) for e in at_075] == [(0, "normal"), (1, "pneumonia"), (4, "normal"),
                                                              (3, "normal")]
