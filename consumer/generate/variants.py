"""Generator variations: the same CRM schema drawn from other tables and rates, for measuring only.

The `default` variant is what the shipped model was trained on (seeds 101-103) and what the README's
10k figures use. `heldout` changes the sources of difficulty instead of the noise model: other name
tables (Faker pools drawn with another salt, smaller, so common names repeat more), a population that is
mostly American (fewer distinct name tables), more people in the largest real cities, twice the
households and twice the namesakes. It exists to check that matching and clustering hold up on data the
project was not tuned on: never train or tune on it (issue 11).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Variant", "VARIANTS"]


@dataclass(frozen=True)
class Variant:
    name: str = "default"
    #: Mixed into the Faker seeds: other name and city tables.
    salt: int = 0
    #: (locale, weight) overrides; empty = the generator's own weights.
    locale_weights: tuple[tuple[str, float], ...] = ()
    #: Faker draws per locale: male, female, surnames, fake cities (repetition keeps Faker's weights).
    pool_sizes: tuple[int, int, int, int] = (1500, 1500, 2500, 400)
    household_start: float = 0.034
    namesake_target: float = 0.04
    #: P(a person lives in a real city from the alias table) and P(abroad).
    real_city_share: float = 0.62
    abroad_share: float = 0.10
    #: Keep only the first N (most populous) real cities per country; 0 = all.
    cities_per_country: int = 0


VARIANTS: dict[str, Variant] = {
    "default": Variant(),
    "heldout": Variant(
        name="heldout", salt=7_368_787,
        locale_weights=(("en_US", 0.78), ("en_GB", 0.08), ("es_MX", 0.06), ("en_IN", 0.04), ("de_DE", 0.04)),
        pool_sizes=(700, 700, 1200, 150), household_start=0.07, namesake_target=0.08,
        real_city_share=0.75, abroad_share=0.05, cities_per_country=18),
}
