"""One verdict per prediction: does the model apply to this image (``in_scope``), and if not, why (``scope_reason``).

The verdict gathers every check, in this order (the reasons keep it):

1. the DICOM header (``data.dicom_header``, read before the pixels): ``modality CT``, ``body part HAND``,
   ``lateral`` / ``view LAO``, ``multi-frame``;
2. image statistics (``data.image_stats``; colour, blank, noise, text, patterns): ``not_a_chest_xray``;
3. the applicability check (``models.applicability``): the distance to chest X-rays (``not_a_chest_xray``);
4. DICOM ``PatientAge`` against the ages of the model's training population: ``adult``, ``child`` or ``age 012Y``;
5. the population the image looks like against the model's (``data.populations``): ``adult`` for a model trained on
   children, ``child`` for one trained on adults; a model trained on both, or on images of unknown population, is
   not checked, and its ``population`` entry says so.

A population reason is not given for an input that is not a chest X-ray (it would mean nothing there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pneumoscope.data.dicom_header import DicomHeader
from pneumoscope.data.populations import ADULT, MIXED, PEDIATRIC, Population
from pneumoscope.models.applicability import ApplicabilityCheck, CheckResult

NOT_A_CHEST_XRAY = "not_a_chest_xray"
ADULT_REASON, CHILD_REASON = "adult", "child"
ADULT_AGE_YEARS = 18.0


@dataclass(frozen=True)
class ScopeCheck:
    """One check's result: what it measured, whether it passed, the short reason and a line for people."""

    name: str
    value: str | float | None
    ok: bool
    reason: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ok": self.ok, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class ScopeVerdict:
    """Every check of one input; in scope when all of them passed."""

    checks: tuple[ScopeCheck, ...]

    @property
    def in_scope(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def reasons(self) -> tuple[str, ...]:
        """The distinct reasons of the failed checks, in check order (population dropped for non-X-rays)."""
        failed = [check for check in self.checks if not check.ok]
        not_xray = any(check.reason == NOT_A_CHEST_XRAY for check in failed)
        reasons: list[str] = []
        for check in failed:
            if not_xray and check.name in ("population", "age"):
                continue
            if check.reason not in reasons:
                reasons.append(check.reason)
        return tuple(reasons)

    @property
    def reason(self) -> str:
        """``"; "``-joined reasons; empty when in scope."""
        return "; ".join(self.reasons)

    @property
    def details(self) -> tuple[str, ...]:
        return tuple(check.detail for check in self.checks if not check.ok and check.detail)

    def as_fields(self) -> dict[str, Any]:
        """The prediction fields: ``in_scope``, ``scope_reason``, ``scope_detail``, ``scope_checks``."""
        return {"in_scope": self.in_scope, "scope_reason": self.reason, "scope_detail": "; ".join(self.details),
                "scope_checks": {check.name: check.as_dict() for check in self.checks}}


def image_check(score: float, reasons: tuple[str, ...]) -> ScopeCheck:
    """The image-statistics check (``data.image_stats.image_score``'s score and the bounds it crossed)."""
    ok = score < 1.0
    return ScopeCheck("image", round(float(score), 4), ok, "" if ok else NOT_A_CHEST_XRAY,
                      "" if ok else f"image statistics unlike a chest X-ray ({', '.join(reasons)})")


def chest_xray_check(result: CheckResult) -> ScopeCheck:
    ok = result.chest_xray_ok
    return ScopeCheck("chest_xray", round(result.chest_xray_score, 4), ok, "" if ok else NOT_A_CHEST_XRAY,
                      "" if ok else "unlike any chest X-ray (the applicability check's distance to chest X-rays of "
                                    "children and adults)")


def population_check(result: CheckResult | None, check: ApplicabilityCheck | None,
                     population: Population) -> ScopeCheck:
    """The image's population (p_adult) against the model's training population."""
    if result is None or check is None:
        return ScopeCheck("population", None, True, detail="not checked: no applicability check is installed")
    p_adult = round(result.p_adult, 4)
    trained_on = f"the model was trained on {population.description}"
    if population.name == PEDIATRIC:
        ok = result.p_adult < check.adult_threshold
        return ScopeCheck("population", p_adult, ok, "" if ok else ADULT_REASON,
                          "" if ok else f"looks like an adult's X-ray (p_adult {result.p_adult:.2f}); {trained_on}")
    if population.name == ADULT:
        ok = result.p_adult > check.child_threshold
        return ScopeCheck("population", p_adult, ok, "" if ok else CHILD_REASON,
                          "" if ok else f"looks like a child's X-ray (p_adult {result.p_adult:.2f}); {trained_on}")
    why = "trained on children and adults" if population.name == MIXED else "its training population is unknown"
    return ScopeCheck("population", p_adult, True, detail=f"not checked: {why}")


def age_checks(header: DicomHeader | None, population: Population) -> list[ScopeCheck]:
    """DICOM PatientAge against the model's training ages (when both are known)."""
    age = None if header is None else header.age_years
    if header is None or age is None or population.age_range_years is None:
        return []
    low, high = population.age_range_years
    if low <= age < high + 1:
        return [ScopeCheck("age", header.patient_age, True)]
    if age >= ADULT_AGE_YEARS and high < ADULT_AGE_YEARS:
        reason = ADULT_REASON
    elif age < ADULT_AGE_YEARS <= low:
        reason = CHILD_REASON
    else:
        reason = f"age {header.patient_age}"
    return [ScopeCheck("age", header.patient_age, False, reason,
                       f"PatientAge {header.patient_age}: the model was trained on {population.description}")]


def verdict(header: DicomHeader | None, image: tuple[float, tuple[str, ...]], result: CheckResult | None,
            check: ApplicabilityCheck | None, population: Population) -> ScopeVerdict:
    """The verdict on one input from its header, its image statistics and the applicability check's result."""
    acquisition = [ScopeCheck(c.name, c.value, c.ok, c.reason, c.detail) for c in header.checks] if header else []
    early = [c for c in acquisition if c.name in ("modality", "body_part")]
    late = [c for c in acquisition if c.name not in ("modality", "body_part")]
    chest = [chest_xray_check(result)] if result is not None else []
    return ScopeVerdict((*early, image_check(*image), *chest, *late, *age_checks(header, population),
                         population_check(result, check, population)))
