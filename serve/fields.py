"""The text fields of ``POST /v1/predict``, parsed once where they enter (``PredictFields.parse``)
and bounded before anything heavy is built: a known set of fields, a length cap on each, the
name grammar for names (``zsad.names``), one variant (its values checked, the grid never built),
a finite threshold. A field that breaks a rule is a ``BadRequest`` (422) naming the rule.

Example:
    >>> f = PredictFields.parse({"class": "pill", "threshold": "0.5"}, default_variant="seed",
    ...                         default_threshold="auto", has_reference=False)
    >>> f.class_name, f.threshold, f.variant, f.heatmap
    ('pill', ThresholdSpec(kind='value', value=0.5), 'seed', False)
    >>> PredictFields.parse({"class": "pill\\n"}, default_variant="seed", default_threshold="auto",
    ...                     has_reference=False)
    Traceback (most recent call last):
    ...
    zsad.serve.fields.BadRequest: field 'class': 'pill\\n' is not a valid name: 1-64 characters from letters, digits, '_', '.' and '-', not '.' or '..'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Mapping

from zsad.names import TYPED_NAME_MAX, check_name
from zsad.thresholds import ThresholdSpec

FILE_NAME_MAX = 255  # an upload's file name (its base name), characters
FIELD_MAX = {"class": TYPED_NAME_MAX, "threshold": 32, "variant": 256, "reference": TYPED_NAME_MAX,
             "heatmap": 8, "file": FILE_NAME_MAX}  # characters


class BadRequest(ValueError):
    """A client's mistake in a request (422, or ``status``), with what was expected."""

    def __init__(self, message: str, status: int = 422, kind: str = "bad_request"):
        super().__init__(message)
        self.status, self.kind = status, kind


@dataclass(frozen=True, kw_only=True)
class PredictFields:
    """One ``/v1/predict`` request's fields, checked.

    Attributes:
        class_name: the object class. threshold: ``auto|f1|fpr|none`` or a finite number.
        variant: one aggregation variant (text, checked to name exactly one).
        reference: a sub-folder name of the server's ``--reference`` folder, or None.
        heatmap: return each file's panel PNG. file_name: the raw body's file name.
    """

    class_name: str
    threshold: ThresholdSpec
    variant: str
    reference: str | None
    heatmap: bool
    file_name: str

    @classmethod
    def parse(cls, fields: Mapping[str, str], *, default_variant: str, default_threshold: ThresholdSpec | str,
              has_reference: bool) -> "PredictFields":
        unknown = sorted(set(fields) - set(FIELD_MAX))
        if unknown:
            raise BadRequest(f"unknown field(s) {', '.join(repr(k[:40]) for k in unknown[:5])}: the fields are "
                             f"{', '.join(FIELD_MAX)} (and the uploads in 'files')")
        for key, value in fields.items():
            if len(value) > FIELD_MAX[key]:
                raise BadRequest(f"field {key!r} is {len(value)} characters, over its limit of {FIELD_MAX[key]}")
        if "class" not in fields:
            raise BadRequest("field 'class' is required: the object class of the images (e.g. class=pill)")
        reference = fields.get("reference")
        if reference is not None and not has_reference:
            raise BadRequest("field 'reference' names a sub-folder of the server's --reference folder, and this "
                             "server has no --reference")
        heatmap = fields.get("heatmap", "")
        if heatmap not in ("", "png"):
            raise BadRequest(f"field 'heatmap' is 'png' or absent, got {heatmap!r}")
        return cls(class_name=_name(fields["class"], "class"), threshold=_threshold(fields, default_threshold),
                   variant=fields.get("variant", default_variant),
                   reference=None if reference is None else _name(reference, "reference"),
                   heatmap=heatmap == "png", file_name=upload_name(fields.get("file", "upload")))


def _threshold(fields: Mapping[str, str], default: ThresholdSpec | str) -> ThresholdSpec:
    try:
        return ThresholdSpec.parse(fields.get("threshold", default), "field 'threshold'")
    except ValueError as exc:
        raise BadRequest(f"{exc} (auto, f1, fpr, none or a finite number)") from None


def _name(value: str, field: str) -> str:
    try:
        return check_name(value, f"field {field!r}:", max_len=TYPED_NAME_MAX)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def upload_name(name: str | None) -> str:
    """An upload's file name as results and logs show it: its base name (no folders), at most
    ``FILE_NAME_MAX`` characters, no control characters (a ``BadRequest`` otherwise).

    Example:
        >>> upload_name("../../etc/cam1.png"), upload_name(None)
        ('cam1.png', 'upload')
    """
    base = PurePath((name or "upload").replace("\\", "/")).name or "upload"
    if len(base) > FILE_NAME_MAX:
        raise BadRequest(f"a file name is {len(base):,} characters, over the limit of {FILE_NAME_MAX}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in base):
        raise BadRequest(f"file name {base[:80]!r} contains control characters")
    return base
