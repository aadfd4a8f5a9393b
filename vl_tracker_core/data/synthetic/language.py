"""Vocabulary and referring expressions for the synthetic tracking world.

An object is named by four attributes: ``shape``, ``colour``, ``size`` (small /
medium / large; "medium" is never said out loud) and ``pattern``. A description
mentions just enough of them to single the target out among the other objects of
the first frame, and falls back to a spatial relation to a uniquely nameable
anchor ("the red circle left of the green star") when attributes cannot.

Wording comes in three vocabularies: ``"canonical"`` (one word per value),
``"seen"`` (canonical plus the synonyms and templates used for train/val) and
``"unseen"`` (canonical plus held-out synonyms and templates, used for the test
split). The seen and unseen sets share only the canonical words, so the gap
between ``synth-test`` and ``synth-test-seen`` measures paraphrase generalisation.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vl_tracker_core.boxes import Box, box_center


class ObjectSpec(Protocol):
    """What language needs of an object: its four attributes (``world.ObjectSpec`` has them). A protocol,
    so this module never imports the world that imports it."""

    shape: str
    colour: str
    size: str
    pattern: str

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "diamond", "hexagon", "cross", "pentagon", "ring", "heart",
)

#: Saturated, well separated RGB values; background clutter stays muted so these stand out.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35),
    "green": (35, 165, 60),
    "blue": (35, 80, 215),
    "yellow": (240, 215, 35),
    "orange": (245, 130, 25),
    "purple": (125, 45, 170),
    "pink": (245, 125, 190),
    "cyan": (40, 210, 225),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "brown": (125, 75, 35),
    "grey": (135, 135, 135),
}

SIZES: tuple[str, ...] = ("small", "medium", "large")
#: Size classes that are put into words; "medium" is the unnamed default.
NAMED_SIZES: tuple[str, ...] = ("small", "large")
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
ATTRIBUTES: tuple[str, ...] = ("size", "pattern", "colour", "shape")
PARAPHRASE_MODES: tuple[str, ...] = ("canonical", "seen", "unseen")

# Synonyms per vocabulary, canonical word excluded (it is added to both sets).
# Unseen words were picked to be ones a sentence encoder relates to the canonical word.
_SEEN_WORDS: dict[str, dict[str, list[str]]] = {
    # Wide on purpose: a model that met only one synonym per value learns those tokens, not the meaning, and
    # read 44 % of unseen-worded first frames against 86 % of seen ones (model v2, session 4). Many
    # synonyms per value push it to read the encoder's meaning instead. None shares a word piece with an
    # unseen word ("aquamarine" would carry "aqua").
    "colour": {
        "red": ["scarlet", "cherry", "vermilion", "carmine", "blood-red"],
        "green": ["emerald", "grassy", "leafy", "forest-green", "verdant"],
        "blue": ["cobalt", "navy", "ultramarine", "denim", "royal-blue"],
        "yellow": ["golden", "mustard", "saffron", "sunny", "buttercup"],
        "orange": ["tangerine", "pumpkin", "carrot", "apricot"],
        "purple": ["violet", "grape", "amethyst", "aubergine"],
        "pink": ["rose", "blush", "bubblegum", "flamingo", "candy-pink"],
        "cyan": ["turquoise", "teal", "seafoam"],
        "white": ["snowy", "chalky", "pearly", "alabaster"],
        "black": ["ebony", "jet-black", "coal-black", "sooty", "raven"],
        "brown": ["chocolate", "coffee", "cocoa", "walnut", "mahogany"],
        "grey": ["gray", "slate", "ashen", "pewter", "smoky"],
    },
    "shape": {
        "circle": ["disc", "round shape", "orb", "sphere"],
        "square": ["box", "block", "slab"],
        "triangle": ["wedge", "three-sided shape", "arrowhead"],
        "star": ["five-pointed star", "star shape", "pentagram"],
        "diamond": ["rhombus", "kite", "gem"],
        "hexagon": ["hex", "hexagonal shape", "honeycomb"],
        "cross": ["plus sign", "plus shape", "cross shape"],
        "pentagon": ["five-sided shape", "home plate"],
        "ring": ["donut", "loop", "halo", "bagel"],
        "heart": ["love heart", "heart shape", "love symbol"],
    },
    "size": {"small": ["little", "petite", "wee"], "large": ["big", "enormous", "massive", "oversized"]},
    "pattern": {
        "plain": ["solid", "unpatterned", "single-colour"],
        "striped": ["stripy", "lined", "streaked", "pinstriped"],
        "dotted": ["spotted", "spotty", "speckled", "with dots"],
        "checkered": ["chequered", "plaid", "gingham", "tartan"],
    },
    "relation": {
        "left of": ["to the left of", "at the left of"],
        "right of": ["to the right of", "at the right of"],
        "above": ["over", "on top of"],
        "below": ["under", "underneath"],
    },
}

_UNSEEN_WORDS: dict[str, dict[str, list[str]]] = {
    "colour": {
        "red": ["crimson", "ruby"],
        "green": ["jade", "lime"],
        "blue": ["sapphire", "azure"],
        "yellow": ["lemon", "canary"],
        "orange": ["amber"],
        "purple": ["plum"],
        "pink": ["fuchsia"],
        "cyan": ["aqua"],
        "white": ["ivory", "milky"],
        "black": ["onyx", "inky"],
        "brown": ["chestnut"],
        "grey": ["silver"],
    },
    "shape": {
        "circle": ["ball", "round thing"],
        "square": ["tile", "cube"],
        "triangle": ["pyramid"],
        "star": ["starburst"],
        "diamond": ["lozenge"],
        "hexagon": ["six-sided shape"],
        "cross": ["crucifix"],
        "pentagon": ["pentagonal shape"],
        "ring": ["hoop", "annulus"],
        "heart": ["valentine"],
    },
    "size": {"small": ["tiny", "miniature"], "large": ["huge", "giant"]},
    "pattern": {
        "plain": ["uniform"],
        "striped": ["banded", "with stripes"],
        "dotted": ["polka-dot", "with spots"],
        "checkered": ["checkerboard", "checked"],
    },
    "relation": {
        "left of": ["on the left side of"],
        "right of": ["on the right side of"],
        "above": ["higher than"],
        "below": ["beneath", "lower than"],
    },
}

# Head noun when the shape is not mentioned ("the red object").
_NOUNS: dict[str, list[str]] = {
    "canonical": ["object"], "seen": ["object", "shape", "one", "figure"], "unseen": ["object", "item"],
}

# "{target}" is the full noun phrase (with its relation clause, if any).
TEMPLATES: dict[str, list[str]] = {
    "canonical": ["the {target}"],
    "seen": ["the {target}", "a {target}", "track the {target}", "follow the {target}", "find the {target}",
             "the {target} in the scene", "lock onto the {target}", "look for the {target}", "go after the {target}",
             "your target is the {target}", "the {target}, please"],
    "unseen": ["the {target}", "keep your eyes on the {target}", "watch the {target}", "locate the {target}",
               "the {target} somewhere in view", "there is a {target}, track it"],
}

# Glue between the target phrase and the relation ("the red square that is left of ...").
RELATION_CONNECTORS: dict[str, list[str]] = {
    "canonical": [""],
    "seen": ["", "that is ", "sitting "],
    "unseen": ["", "which is ", "located "],
}


def _build_synonyms() -> dict[str, dict[str, dict[str, list[str]]]]:
    canonical = {
        "colour": {c: [c] for c in COLOURS},
        "shape": {s: [s] for s in SHAPES},
        "size": {s: [s] for s in NAMED_SIZES},
        "pattern": {p: [p] for p in PATTERNS},
        "relation": {r: [r] for r in RELATIONS},
    }
    out: dict[str, dict[str, dict[str, list[str]]]] = {"canonical": canonical}
    for mode, extra in (("seen", _SEEN_WORDS), ("unseen", _UNSEEN_WORDS)):
        out[mode] = {cat: {val: [val, *extra[cat].get(val, [])] for val in vals} for cat, vals in canonical.items()}
    return out


#: ``SYNONYMS[mode][category][canonical value]`` -> words, canonical word first.
SYNONYMS: dict[str, dict[str, dict[str, list[str]]]] = _build_synonyms()

#: Probability of using the canonical word instead of a synonym; lower for unseen so the test split leans on them.
_P_CANONICAL = {"canonical": 1.0, "seen": 0.35, "unseen": 0.3}
MAX_DESCRIPTION_CHARS = 119


class AmbiguousTargetError(ValueError):
    """No set of attributes separates the target from the others and no relation was given."""


@dataclass(frozen=True)
class Description:
    """A generated description and what it says, for checking and for training targets.

    ``attributes`` maps the mentioned target attributes to their canonical values;
    ``relation``/``anchor_attributes`` are set when a spatial clause is used.
    """

    text: str
    attributes: dict[str, str]
    relation: str | None = None
    anchor_attributes: dict[str, str] | None = None
    canonical: str = field(default="", compare=False)


def nameable_attributes(spec: ObjectSpec) -> dict[str, str]:
    """Attributes that can be put into words (medium size is never said)."""
    attrs = {"shape": spec.shape, "colour": spec.colour, "pattern": spec.pattern}
    if spec.size in NAMED_SIZES:
        attrs["size"] = spec.size
    return attrs


def matches(spec: ObjectSpec, attributes: Mapping[str, str]) -> bool:
    """True when ``spec`` has every attribute value in ``attributes``."""
    return all(getattr(spec, key) == value for key, value in attributes.items())


def _subset_weight(keys: Sequence[str]) -> float:
    # People name shape and colour first; size and pattern are the qualifiers.
    return 1.0 + 2.0 * ("shape" in keys) + 2.0 * ("colour" in keys)


def _weighted_choice(options: list[tuple[str, ...]], rng: np.random.Generator) -> tuple[str, ...]:
    weights = np.array([_subset_weight(o) for o in options], dtype=np.float64)
    return options[int(rng.choice(len(options), p=weights / weights.sum()))]


def _ordered(attrs: Mapping[str, str], keys: Sequence[str]) -> dict[str, str]:
    return {k: attrs[k] for k in ATTRIBUTES if k in keys}


def distinguishing_sets(target: ObjectSpec, others: Sequence[ObjectSpec]) -> list[tuple[str, ...]]:
    """The smallest attribute subsets that no other object fully matches (empty when none exists)."""
    attrs = nameable_attributes(target)
    keys = [k for k in ATTRIBUTES if k in attrs]
    for n in range(1, len(keys) + 1):
        found = [
            combo for combo in itertools.combinations(keys, n)
            if not any(matches(o, {k: attrs[k] for k in combo}) for o in others)
        ]
        if found:
            return found
    return []


def choose_attributes(
    target: ObjectSpec, others: Sequence[ObjectSpec], rng: np.random.Generator, redundant_prob: float = 0.25
) -> dict[str, str] | None:
    """Pick a minimal distinguishing attribute set, sometimes plus one redundant attribute; None if impossible."""
    options = distinguishing_sets(target, others)
    if not options:
        return None
    chosen = list(_weighted_choice(options, rng))
    attrs = nameable_attributes(target)
    spare = [k for k in ATTRIBUTES if k in attrs and k not in chosen]
    if spare and rng.random() < redundant_prob:
        chosen.append(_weighted_choice([(k,) for k in spare], rng)[0])
    return _ordered(attrs, chosen)


def relation_attributes(target: ObjectSpec, others: Sequence[ObjectSpec], rng: np.random.Generator) -> dict[str, str]:
    """Attributes for a target that needs a relation: as specific as the attributes allow.

    The set is minimal among those leaving exactly the unavoidable confusers
    (objects matching every nameable attribute of the target).
    """
    attrs = nameable_attributes(target)
    keys = [k for k in ATTRIBUTES if k in attrs]
    confusers = {id(o) for o in others if matches(o, attrs)}
    for n in range(1, len(keys) + 1):
        found = [
            combo for combo in itertools.combinations(keys, n)
            if {id(o) for o in others if matches(o, {k: attrs[k] for k in combo})} == confusers
        ]
        if found:
            return _ordered(attrs, _weighted_choice(found, rng))
    return _ordered(attrs, keys)


def _relation_offsets(box: Box, anchor: Box, relation: str) -> tuple[float, float, float]:
    """(offset along the relation's direction, offset across it, half the summed extents along it)."""
    (cx, cy), (ax, ay) = box_center(box), box_center(anchor)
    if relation in ("left of", "right of"):
        along = ax - cx if relation == "left of" else cx - ax
        return along, ay - cy, 0.5 * (box[2] + anchor[2])
    if relation in ("above", "below"):
        along = ay - cy if relation == "above" else cy - ay  # image y grows downwards
        return along, ax - cx, 0.5 * (box[3] + anchor[3])
    raise ValueError(f"unknown relation {relation!r}; expected one of {RELATIONS}")


def relation_holds(box: Box, anchor: Box, relation: str) -> bool:
    """Clearly true: centres well apart along the direction, and more along it than across it."""
    along, across, extent = _relation_offsets(box, anchor, relation)
    return along > 0.8 * extent and along >= abs(across)


def relation_plausible(box: Box, anchor: Box, relation: str) -> bool:
    """Loosely true: the box is on that side of the anchor at all. Confusers must fail this."""
    along, _, _ = _relation_offsets(box, anchor, relation)
    return along > 0.0


def find_relations(target_index: int, specs: Sequence[ObjectSpec], boxes: Sequence[Box]) -> list[tuple[str, int]]:
    """Relations ``(relation, anchor index)`` that are true for the target and single it out.

    The confusers are the objects matching every nameable attribute of the
    target (none when attributes alone identify it; then the relation is merely
    redundant). A relation qualifies when it clearly holds for the target, is not
    even plausible for any confuser, and the anchor is itself uniquely nameable.
    """
    target = specs[target_index]
    others = [s for i, s in enumerate(specs) if i != target_index]
    if distinguishing_sets(target, others):
        confusers: list[int] = []
    else:
        attrs = nameable_attributes(target)
        confusers = [i for i, s in enumerate(specs) if i != target_index and matches(s, attrs)]
    found: list[tuple[str, int]] = []
    for anchor in range(len(specs)):
        if anchor == target_index or anchor in confusers:
            continue
        if not distinguishing_sets(specs[anchor], [s for i, s in enumerate(specs) if i != anchor]):
            continue
        for rel in RELATIONS:
            if not relation_holds(boxes[target_index], boxes[anchor], rel):
                continue
            if any(relation_plausible(boxes[c], boxes[anchor], rel) for c in confusers):
                continue
            found.append((rel, anchor))
    return found


def _pick(words: list[str], canonical: str, rng: np.random.Generator, mode: str) -> str:
    if len(words) == 1 or rng.random() < _P_CANONICAL[mode]:
        return canonical
    synonyms = [w for w in words if w != canonical]
    return synonyms[int(rng.integers(len(synonyms)))]


def _noun_phrase(attrs: Mapping[str, str], rng: np.random.Generator, mode: str) -> str:
    table = SYNONYMS[mode]
    words: list[str] = []
    suffix = ""
    if "size" in attrs:
        words.append(_pick(table["size"][attrs["size"]], attrs["size"], rng, mode))
    if "pattern" in attrs:
        word = _pick(table["pattern"][attrs["pattern"]], attrs["pattern"], rng, mode)
        if word.startswith("with "):
            suffix = word  # "the red ball with stripes"
        else:
            words.append(word)
    if "colour" in attrs:
        words.append(_pick(table["colour"][attrs["colour"]], attrs["colour"], rng, mode))
    if "shape" in attrs:
        words.append(_pick(table["shape"][attrs["shape"]], attrs["shape"], rng, mode))
    else:
        words.append(_pick(_NOUNS[mode], "object", rng, mode))
    if suffix:
        words.append(suffix)
    return " ".join(words)


# "an unpatterned", "an ultramarine", but "a uniform".
_ARTICLE_RE = re.compile(r"\ba ([aeio]|un(?!i)|ul)")


def _render(
    attrs: Mapping[str, str],
    relation: str | None,
    anchor_attrs: Mapping[str, str] | None,
    rng: np.random.Generator,
    mode: str,
) -> str:
    phrase = _noun_phrase(attrs, rng, mode)
    if relation is not None and anchor_attrs is not None:
        connector = RELATION_CONNECTORS[mode][int(rng.integers(len(RELATION_CONNECTORS[mode])))]
        rel_word = _pick(SYNONYMS[mode]["relation"][relation], relation, rng, mode)
        phrase = f"{phrase} {connector}{rel_word} the {_noun_phrase(anchor_attrs, rng, mode)}"
    template = TEMPLATES[mode][int(rng.integers(len(TEMPLATES[mode])))]
    return _ARTICLE_RE.sub(r"an \1", template.format(target=phrase))


def describe_structured(
    target: ObjectSpec,
    others: Sequence[ObjectSpec],
    rng: np.random.Generator,
    paraphrases: str = "seen",
    relation: tuple[str, ObjectSpec] | None = None,
    redundant_prob: float = 0.25,
) -> Description:
    """Describe ``target`` so that it is unique among ``others`` (which may include the anchor).

    The caller guarantees that ``relation`` (relation word, anchor spec) holds in
    the first frame and separates the target from any object with the same
    attributes (see :func:`find_relations`). The choice of attributes and of the
    relation uses ``rng`` in the same way for every ``paraphrases`` mode, so the
    seen and unseen descriptions of a scene say the same thing in other words.
    """
    if paraphrases not in PARAPHRASE_MODES:
        raise ValueError(f"paraphrases must be one of {PARAPHRASE_MODES}, got {paraphrases!r}")
    # Wording gets its own stream so vocabulary size never shifts the structural choices.
    word_rng = np.random.default_rng(int(rng.integers(0, 2**63 - 1)))
    attrs = choose_attributes(target, others, rng, redundant_prob)
    anchor_attrs: dict[str, str] | None = None
    rel_word: str | None = None
    if relation is not None:
        rel_word, anchor = relation
        if rel_word not in RELATIONS:
            raise ValueError(f"unknown relation {rel_word!r}; expected one of {RELATIONS}")
        if attrs is None:
            attrs = relation_attributes(target, others, rng)
        anchor_others = [target, *(o for o in others if o is not anchor)]
        anchor_attrs = choose_attributes(anchor, anchor_others, rng, redundant_prob=0.0)
        if anchor_attrs is None:
            raise AmbiguousTargetError("the relation's anchor cannot be named uniquely")
        if "shape" not in anchor_attrs:  # anchors read better as "the green circle" than "the green object"
            anchor_attrs = _ordered(nameable_attributes(anchor), [*anchor_attrs, "shape"])
    elif attrs is None:
        raise AmbiguousTargetError("attributes cannot separate the target from the others; give a relation")
    text = _render(attrs, rel_word, anchor_attrs, word_rng, paraphrases)
    if len(text) > MAX_DESCRIPTION_CHARS:  # long synonyms + relation: fall back to plain words
        text = _render(attrs, rel_word, anchor_attrs, word_rng, "canonical")
    canonical = _render(attrs, rel_word, anchor_attrs, np.random.default_rng(0), "canonical")
    return Description(text, dict(attrs), rel_word, dict(anchor_attrs) if anchor_attrs else None, canonical)


def describe(
    target: ObjectSpec,
    others: Sequence[ObjectSpec],
    rng: np.random.Generator,
    paraphrases: str = "seen",
    relation: tuple[str, ObjectSpec] | None = None,
) -> str:
    """The text of :func:`describe_structured`."""
    return describe_structured(target, others, rng, paraphrases, relation).text


def canonical_description(target: ObjectSpec) -> str:
    """Every nameable attribute in canonical words: "the small striped red triangle"."""
    attrs = nameable_attributes(target)
    if attrs.get("pattern") == "plain":
        del attrs["pattern"]  # "plain" is the default look, not worth saying
    words = [attrs[k] for k in ATTRIBUTES if k in attrs]
    return "the " + " ".join(words)


def lexicon(mode: str = "all") -> dict[str, tuple[str, str]]:
    """Surface word -> (category, canonical value) over one vocabulary or all of them."""
    modes = PARAPHRASE_MODES if mode == "all" else (mode,)
    out: dict[str, tuple[str, str]] = {}
    for m in modes:
        for category, table in SYNONYMS[m].items():
            for value, words in table.items():
                for word in words:
                    out[word] = (category, value)
    return out
