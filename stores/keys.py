"""Key grammar: ``{stage}/{stage_hash}/{dataset}/{class}/{split}/{image_id}``.

Per-class stages (``clip_text``) stop at ``{class}``. Every component is checked against the
one name grammar (``zsad.names``: letters, digits, ``-``, ``_``, ``.``, matched whole, not
``.`` or ``..``), so a key can never escape its stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zsad.names import check_name
from zsad.stages import stage as declared


def check_component(value: str, what: str) -> str:
    """``value`` if it is a name of the store's grammar (``zsad.names``), else a ``ValueError``."""
    return check_name(value, what)


@dataclass(frozen=True, order=True)
class Unit:
    """One image's place in the store (the unit of work and of completeness)."""

    dataset: str
    class_name: str
    split: str
    image_id: str

    def __post_init__(self) -> None:
        for value, what in ((self.dataset, "dataset"), (self.class_name, "class"), (self.split, "split"),
                            (self.image_id, "image id")):
            check_component(value, what)

    @property
    def path(self) -> str:
        return f"{self.dataset}/{self.class_name}/{self.split}/{self.image_id}"

    @classmethod
    def of(cls, dataset: str, sample: Any) -> "Unit":
        """The unit of ``sample`` (a ``zsad.datasets.Sample``: its class, split and image id) in
        data set ``dataset``."""
        return cls(dataset, sample.class_name, sample.split, sample.image_id)

    @classmethod
    def parse(cls, path: str) -> "Unit":
        """The unit of ``dataset/class/split/image_id``.

        Example:
            >>> Unit.parse("visa/pcb1/test/000").class_name
            'pcb1'
        """
        parts = path.split("/") if isinstance(path, str) else []
        if len(parts) != 4:
            raise ValueError(f"a unit path is dataset/class/split/image_id, got {path!r}")
        return cls(*parts)


def stage_root(stage: str, stage_hash: str) -> str:
    declared(stage)  # an unknown stage: a ValueError listing the declared ones
    return f"{stage}/{check_component(stage_hash, 'stage hash')}"


def unit_key(stage: str, stage_hash: str, unit: Unit) -> str:
    """Example: ``unit_key("tiles", "ab12", Unit("visa", "pcb1", "test", "000"))`` is
    ``"tiles/ab12/visa/pcb1/test/000"``."""
    return f"{stage_root(stage, stage_hash)}/{unit.path}"


def threshold_key(variant_hash: str, class_name: str) -> str:
    """Where a class's decision thresholds for one aggregate variant live.

    Example: ``threshold_key("ab12", "pcb1")`` is ``"thresholds/ab12/pcb1"``."""
    return f"{stage_root('thresholds', variant_hash)}/{check_component(class_name, 'class')}"


def dataset_key(stage: str, stage_hash: str, dataset: str) -> str:
    """Example: ``dataset_key("errors", "ab12", "visa")`` is ``"errors/ab12/visa"``."""
    return f"{stage_root(stage, stage_hash)}/{check_component(dataset, 'dataset')}"


def class_key(stage: str, stage_hash: str, dataset: str, class_name: str) -> str:
    """Example: ``class_key("clip_text", "ab12", "visa", "pcb1")`` is ``"clip_text/ab12/visa/pcb1"``."""
    return f"{dataset_key(stage, stage_hash, dataset)}/{check_component(class_name, 'class')}"
