"""Prompt lists: WinCLIP's compositional ensemble, the seed's extra states, localising nouns.

WinCLIP (Jeong et al., CVPR 2023) composes state words with templates. Its published
template list (as reproduced by anomalib) repeats ``"a jpeg corrupted photo of the {}."``
where the other templates come in "a"/"the" pairs; we use the pair (``"... of a {}."`` and
``"... of the {}."``), so there are 21 distinct templates. The seed adds 12 normal and 19
anomalous states (its Fig. 2 a, b) and uses 19 localising phrases (Fig. 2 c) for CLIPSeg,
kept exactly as printed, including the repeated ``"an error"``: repeating a prompt weights
it twice in the harmonic mean, which is what the published list does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

WINCLIP_NORMAL_STATES: tuple[str, ...] = (
    "{}", "flawless {}", "perfect {}", "unblemished {}",
    "{} without flaw", "{} without defect", "{} without damage",
)
WINCLIP_ANOMALOUS_STATES: tuple[str, ...] = (
    "damaged {}", "{} with flaw", "{} with defect", "{} with damage",
)
WINCLIP_TEMPLATES: tuple[str, ...] = (
    "a cropped photo of the {}.", "a close-up photo of a {}.", "a close-up photo of the {}.",
    "a bright photo of a {}.", "a bright photo of the {}.", "a dark photo of the {}.",
    "a dark photo of a {}.", "a jpeg corrupted photo of a {}.", "a jpeg corrupted photo of the {}.",
    "a blurry photo of the {}.", "a blurry photo of a {}.", "a photo of a {}.", "a photo of the {}.",
    "a photo of a small {}.", "a photo of the small {}.", "a photo of a large {}.",
    "a photo of the large {}.", "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.", "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
)
SEED_NORMAL_STATES: tuple[str, ...] = (
    "good {}", "normal {}", "amazing {}", "pristine {}", "undamaged {}", "{} in good condition",
    "unbroken {}", "{} without any imperfections", "{} without any scratches", "{} without any marks",
    "complete {}", "new {}",
)
SEED_ANOMALOUS_STATES: tuple[str, ...] = (
    "broken {}", "bad {}", "flawed {}", "defective {}", "{} in poor condition", "worn {}",
    "{} with scratches", "{} with marks", "{} with imperfections", "cracked {}", "faulty {}",
    "incomplete {}", "bent {}", "snapped {}", "scratched {}", "shattered {}", "fractured {}",
    "burst {}", "{} in pieces",
)
SEED_LOCALISING_PROMPTS: tuple[str, ...] = (
    "a tear", "a rip", "some damage", "a fault", "a break", "an abnormality", "a defect", "a crack",
    "an anomaly", "a missing component", "an error", "a mark", "a cut", "a dent", "a scratch",
    "an imperfection", "a blemish", "a mistake", "an error",
)


@dataclass(frozen=True)
class PromptSet:
    """Sample-level prompts for one object.

    Attributes:
        texts: the P prompt strings.
        anomalous_p: (P,) bool, True for anomalous prompts.
        seed_extension_p: (P,) bool, True for prompts built from the seed's extra states.
    """

    texts: tuple[str, ...]
    anomalous_p: np.ndarray
    seed_extension_p: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


def object_name_for(class_name: str) -> str:
    """Natural-language object name from a data set class folder name.

    Example:
        >>> object_name_for("pipe_fryum"), object_name_for("macaroni2"), object_name_for("pcb1")
        ('pipe fryum', 'macaroni', 'pcb')
    """
    name = re.sub(r"\d+$", "", class_name).replace("_", " ").strip()
    if not name:
        raise ValueError(f"cannot derive an object name from class {class_name!r}; set PromptConfig.object_name")
    return name


def _compose(states: tuple[str, ...], obj: str) -> list[str]:
    return [template.format(state.format(obj)) for state in states for template in WINCLIP_TEMPLATES]


def build_prompt_set(object_name: str) -> PromptSet:
    """All sample-level prompts for ``object_name``: normal then anomalous, WinCLIP then seed.

    Counts: (7 + 12) normal states and (4 + 19) anomalous states, times 21 templates:
    399 normal and 483 anomalous prompts, of which 147 + 84 are WinCLIP's own.
    """
    if not object_name or not object_name.strip():
        raise ValueError("object_name must be a non-empty string, e.g. 'capsules'")
    groups = [
        (WINCLIP_NORMAL_STATES, False, False), (SEED_NORMAL_STATES, False, True),
        (WINCLIP_ANOMALOUS_STATES, True, False), (SEED_ANOMALOUS_STATES, True, True),
    ]
    texts: list[str] = []
    anomalous: list[bool] = []
    extension: list[bool] = []
    for states, is_anomalous, is_extension in groups:
        composed = _compose(states, object_name)
        texts += composed
        anomalous += [is_anomalous] * len(composed)
        extension += [is_extension] * len(composed)
    return PromptSet(tuple(texts), np.array(anomalous), np.array(extension))


def localising_prompts(custom: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The CLIPSeg prompts: the seed's list unless ``custom`` is given (then validated)."""
    if custom is None:
        return SEED_LOCALISING_PROMPTS
    if not custom or not all(isinstance(p, str) and p.strip() for p in custom):
        raise ValueError(f"localising prompts must be non-empty strings, got {custom!r}")
    return tuple(custom)
