"""Who the images of a data source show (children or adults), and so whom a model trained on them was trained on.

A model's training population is derived from the ``source`` column of its training rows and stored in its
``model.json`` (``population``): ``pediatric`` (every training source shows children), ``adult`` (every source shows
adults), ``mixed`` (both) or ``unknown`` (a source whose population Pneumoscope does not know: class-per-folder trees,
CSV listings). The scope verdict compares the population an image looks like with it (``models.scope``): a
pediatric model flags adults, an adult model flags children, and a mixed or unknown one checks no population and
says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEDIATRIC, ADULT, MIXED, UNKNOWN = "pediatric", "adult", "mixed", "unknown"


@dataclass(frozen=True)
class Population:
    """A training population: its name, a line for people and, where known, the ages it covers (years)."""

    name: str  # PEDIATRIC, ADULT, MIXED or UNKNOWN
    description: str
    age_range_years: tuple[float, float] | None = None
    sources: tuple[str, ...] = ()

    @property
    def checked(self) -> bool:
        """Whether images can be checked against it (pediatric or adult)."""
        return self.name in (PEDIATRIC, ADULT)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "age_range_years": list(self.age_range_years) if self.age_range_years else None,
                "sources": list(self.sources)}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | None) -> Population:
        """Read ``model.json``'s ``population``; a missing or malformed entry is the unknown population."""
        if not isinstance(value, Mapping) or value.get("name") not in (PEDIATRIC, ADULT, MIXED, UNKNOWN):
            return UNKNOWN_POPULATION
        ages = value.get("age_range_years")
        try:
            age_range = (float(ages[0]), float(ages[1])) if ages else None
        except (TypeError, ValueError, IndexError):
            age_range = None
        return cls(str(value["name"]), str(value.get("description") or value["name"]), age_range,
                   tuple(str(s) for s in value.get("sources") or ()))


# The known sources (``data.sources`` names them): who their images show.
SOURCE_POPULATIONS: dict[str, Population] = {
    "kermany": Population(PEDIATRIC, "children aged 1-5, one hospital in Guangzhou (Kermany et al. 2018)", (1.0, 5.0),
                          ("kermany",)),
    "covid_radiography": Population(ADULT, "adults (COVID-19 Radiography Database)", (18.0, 120.0),
                                    ("covid_radiography",)),
}
UNKNOWN_POPULATION = Population(UNKNOWN, "unknown (the training sources do not say who they show)")


def training_population(sources: Iterable[str]) -> Population:
    """The population of a model trained on images of ``sources`` (the ``source`` column of its training rows)."""
    names = tuple(sorted({str(s) for s in sources}))
    if not names:
        return UNKNOWN_POPULATION
    unknown = [name for name in names if name not in SOURCE_POPULATIONS]
    if unknown:
        return Population(UNKNOWN, f"unknown (source {', '.join(unknown)} does not say who its images show)",
                          None, names)
    known = [SOURCE_POPULATIONS[name] for name in names]
    if len(known) == 1:
        return known[0]
    description = "; ".join(p.description for p in known)
    if len({p.name for p in known}) > 1:
        return Population(MIXED, f"children and adults ({description})", None, names)
    ages = [p.age_range_years for p in known]
    age_range = (min(a[0] for a in ages if a), max(a[1] for a in ages if a)) if all(ages) else None
    return Population(known[0].name, description, age_range, names)


def manifest_population(rows: Any) -> Population:
    """The population of a run's manifest (a DataFrame with ``split`` and ``source``): its train rows' sources."""
    if "source" not in rows.columns or "split" not in rows.columns:
        return UNKNOWN_POPULATION
    return training_population(rows.loc[rows["split"].eq("train"), "source"].dropna().astype(str))


def recorded_population(meta: Mapping[str, Any], manifest: Path | None = None) -> Population:
    """A model's population: ``model.json``'s ``population``; for runs trained before it was recorded, that of the
    run's ``manifest.csv`` where given and present; else unknown."""
    if "population" in meta:
        return Population.from_dict(meta["population"])
    if manifest is not None and manifest.is_file():
        import pandas as pd

        try:
            return manifest_population(pd.read_csv(manifest, usecols=["split", "source"], dtype=str))
        except (ValueError, OSError, pd.errors.ParserError):
            return UNKNOWN_POPULATION
    return UNKNOWN_POPULATION
