"""Every detector, declared once: what a variant of it reads, whether it scores an image alone or
with the other images of its class, how it scores, what its units hold and which published rows
it reproduces.

A variant (``zsad.variants.AggregateConfig``) names its detector by its patch fields: None is the
seed's zero-shot detector, ``FewShot``, ``Mutual`` and ``Musc`` (``zsad.variant_fields``) the
others; ``detector_of`` finds the declaration. Everything that differs between detectors is read
from here: the plan's inputs and hashes (``reads``), the sweep grammar (``name``, ``fields``), the
service's and ``predict``'s grouping (``together``, ``against_batch``), the precompute switch
(``opt_in``), the aggregation engine's scorer (``scoring``), the unit attributes
(``unit_attrs``) and ``evaluate``'s published rows (``published``). A new detector is one
``Detector(...)`` here, its variant fields, its core function, its tests and its docs.

Examples:
    >>> from zsad.variant_fields import Musc
    >>> [d.name for d in DETECTORS]
    ['zero-shot', 'few-shot', 'mutual', 'musc', 'anomalydino', 'anomalydino-batched']
    >>> d = DETECTOR["musc"]; d.scoring, d.together, d.reads(Musc())
    ('batch', True, ('musc_tokens',))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from .anomalydino_fields import AnomalyDino, AnomalyDinoBatched
from .variant_fields import FewShot, Musc, Mutual

TILE_READS = ("tiles", "clip_image", "clip_text", "clipseg")  # the seed's zero-shot evidence
PATCH_STAGE = "clip_patch"  # CLIP patch tokens per tile (opt-in ``PipelineConfig.patches``)
DATA_SETS = {"visa": "VisA", "mvtec": "MVTec AD"}  # store-name prefix -> the data set published rows are of
TILE_ATTRS = ("sample_score", "label", "has_map", "tile_scores", "component_scores")


@dataclass(frozen=True, kw_only=True)
class Detector:
    """One detector.

    Attributes:
        name: the variant's ``mode`` in sweeps and records (``mode=few-shot``).
        fields: its variant fields' class (None: the zero-shot fields of ``AggregateConfig`` only).
        scoring: how the aggregation engine scores it: ``tile`` (tile scores and CLIPSeg maps,
            per image), ``patch`` (``tile`` plus per-image patch distances from a per-class
            context: references or the class's batch), ``batch`` (a per-class batch step makes
            every image's map and score; MuSc), ``tokens`` (whole-image patch tokens against a
            per-class memory or batch; AnomalyDINO).
        together: an image's score depends on the other images scored with it (the service
            never merges two clients' jobs of such a detector; one image alone cannot be scored).
        against_batch: new images can be scored against a cached batch (``--against``).
        takes_reference: scores against reference (normal) images (``--reference``, ``--shots``).
        opt_in: the ``PipelineConfig`` switch its precompute stage needs (``patches``, ``musc``,
            ``anomalydino``).
        device_pixels: an evaluation's maps can be pasted and counted on a torch device.
        square_protocol: can be evaluated at MuSc's protocol (maps and masks square).
        reads: the variant's precompute stages, in the order they enter its hash.
        unit_attrs: the ``aggregate`` unit attributes it writes (``zsad.results.AggregateAttrs``).
        published: data set -> pipeline config name -> published mean figures (%) of its
            reference (``published_fields`` names them); ``evaluate`` prints the rows beside the run.
        published_fields: what each published figure is (MuSc: image and pixel F1-max).
        cite: where ``published`` comes from.
    """

    name: str
    fields: type | None
    scoring: Literal["tile", "patch", "batch", "tokens"]
    reads: Callable[[Any], tuple[str, ...]]
    together: bool = False
    against_batch: bool = False
    takes_reference: bool = False
    opt_in: str | None = None
    device_pixels: bool = False
    square_protocol: bool = False
    unit_attrs: tuple[str, ...] = TILE_ATTRS
    published: Mapping[str, Mapping[str, tuple[float, ...]]] = field(default_factory=dict)
    published_fields: str = "F1-max %, image / pixel"
    cite: str = ""

    def published_note(self, dataset: str) -> str | None:
        """The published rows for ``dataset`` (a store name starting with ``visa`` or ``mvtec``), or None.

        Example:
            >>> DETECTOR["musc"].published_note("visa-2024")[:110]
            "MuSc's README (VisA mean F1-max %, image / pixel): musc 89.06 / 48.90, musc-b16 81.61 / 37.84, musc-b16-512 84"
            >>> DETECTOR["anomalydino"].published_note("mvtec")
            "AnomalyDINO's paper (WACV 2025; ViT-S/14 at 448, agnostic) (MVTec AD mean image AUROC %): anomalydino (1-shot) 96.60"
        """
        key = next((k for k in self.published if dataset.lower().startswith(k)), None)
        if key is None:
            return None
        rows = ", ".join(f"{cfg} {' / '.join(f'{v:.2f}' for v in values)}"
                         for cfg, values in self.published[key].items())
        return f"{self.cite} ({DATA_SETS[key]} mean {self.published_fields}): {rows}"


def _musc_reads(musc: Musc) -> tuple[str, ...]:
    own = ("musc_tokens",) + (("isnet", "foreground") if musc.foreground != "none" else ())
    return TILE_READS + own if musc.combine == "mean" else own


DETECTORS: tuple[Detector, ...] = (
    Detector(name="zero-shot", fields=None, scoring="tile", reads=lambda _: TILE_READS, device_pixels=True),
    Detector(name="few-shot", fields=FewShot, scoring="patch", reads=lambda _: TILE_READS + (PATCH_STAGE,),
             takes_reference=True, opt_in="patches"),
    Detector(name="mutual", fields=Mutual, scoring="patch", reads=lambda _: TILE_READS + (PATCH_STAGE,),
             together=True, opt_in="patches"),
    Detector(name="musc", fields=Musc, scoring="batch", reads=_musc_reads, together=True, against_batch=True,
             opt_in="musc", square_protocol=True,
             unit_attrs=("sample_score", "label", "has_map", "musc_score", "batch", "batch_images"),
             published={"visa": {"musc": (89.06, 48.90), "musc-b16": (81.61, 37.84), "musc-b16-512": (84.22, 43.27),
                                 "musc-dinov2-l518": (89.20, 47.12), "musc-dinov2-l336": (88.47, 43.84),
                                 "musc-dinov2-b518": (87.48, 45.56), "musc-dinov2-b336": (86.24, 41.68),
                                 "musc-dino-b16-512": (83.52, 42.86), "musc-dino-b16-256": (80.12, 36.81)},
                        "mvtec": {"musc": (97.37, 62.16), "musc-b16": (95.43, 52.23), "musc-b16-512": (96.50, 60.71),
                                  "musc-dinov2-l518": (97.13, 66.15), "musc-dinov2-l336": (97.45, 61.77),
                                  "musc-dinov2-b518": (96.87, 64.65), "musc-dinov2-b336": (96.80, 60.23),
                                  "musc-dino-b16-512": (96.13, 62.07), "musc-dino-b16-256": (93.77, 54.02)}},
             cite="MuSc's README"),
    Detector(name="anomalydino", fields=AnomalyDino, scoring="tokens", reads=lambda _: ("dino_tokens",),
             takes_reference=True, opt_in="anomalydino", unit_attrs=("sample_score", "label", "has_map"),
             published={"mvtec": {"anomalydino (1-shot)": (96.6,)}}, published_fields="image AUROC %",
             cite="AnomalyDINO's paper (WACV 2025; ViT-S/14 at 448, agnostic)"),
    Detector(name="anomalydino-batched", fields=AnomalyDinoBatched, scoring="tokens",
             reads=lambda _: ("dino_tokens",), together=True, opt_in="anomalydino",
             unit_attrs=("sample_score", "label", "has_map")),
)
DETECTOR: dict[str, Detector] = {d.name: d for d in DETECTORS}
MODES: tuple[str, ...] = tuple(DETECTOR)
BY_FIELDS: dict[type | None, Detector] = {d.fields: d for d in DETECTORS}
PATCH_MODES: dict[str, type] = {d.name: d.fields for d in DETECTORS if d.fields is not None}


def detector_of(patch: Any) -> Detector:
    """The detector of a variant's patch fields (None: zero-shot; a subclass of a detector's
    fields is that detector's)."""
    if patch is None:
        return BY_FIELDS[None]
    found = next((BY_FIELDS[k] for k in type(patch).__mro__ if k in BY_FIELDS), None)
    if found is None:
        raise TypeError(f"a variant's patch must be None or one of {', '.join(k.__name__ for k in BY_FIELDS if k)}, "
                        f"got {patch!r}")
    return found


def detector(name: str) -> Detector:
    """The detector named ``name``; a ``ValueError`` listing them when there is none."""
    if name not in DETECTOR:
        raise ValueError(f"unknown detector (mode) {name!r}; expected one of {', '.join(MODES)} (zsad/detectors.py)")
    return DETECTOR[name]
