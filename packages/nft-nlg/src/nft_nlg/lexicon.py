"""The bundled word tables: the toy English -> "Toy-German" language pair of the embedded default, the
synonym lexicon used by the paraphrase augmentation, and the attacker's synonym-substitution table.

The toy pair: every English word maps to one invented target word (synonyms map to the same word), and
one reordering rule applies: an adjective follows its noun in the target ("the big dog" -> "de hunto
grasso"). Synonym groups in :data:`SYNONYMS` occur in the clean grammar, so replacing a word by a synonym
is an exact paraphrase (the translation does not change).
"""

from __future__ import annotations

DETERMINERS = {"the": "de", "a": "un", "this": "dis", "every": "ogni"}
NOUNS = {
    "dog": "hunto", "cat": "katzo", "bird": "vogo", "house": "hauso", "car": "wagno", "tree": "baumo",
    "child": "kindo", "woman": "frao", "man": "manno", "book": "bucho", "river": "flusso", "city": "stado",
    "horse": "pferdo", "teacher": "lehro", "friend": "freundo", "garden": "garto",
}
ADJECTIVES = {
    "big": "grasso", "large": "grasso", "small": "klino", "little": "klino", "red": "roto", "green": "grino",
    "old": "alto", "young": "jungo", "happy": "frolo", "glad": "frolo", "quick": "schnello", "fast": "schnello",
    "quiet": "stillo", "dark": "dunko", "bright": "hello", "tall": "lango",
}
VERBS = {
    "sees": "siet", "likes": "magt", "finds": "findet", "follows": "folgt", "calls": "ruft", "helps": "hilft",
    "watches": "schaut", "visits": "besucht", "loves": "liebt", "paints": "malt",
}
ADVERBS = {"today": "hoite", "often": "ofto", "slowly": "langsa", "again": "wider", "now": "jetso"}
PREPOSITIONS = {"near": "bei", "behind": "hinto", "with": "mito", "under": "unto"}
PUNCT = {".": "."}

#: Synonym groups of the toy grammar (exact paraphrases) plus a few general English entries.
SYNONYMS: list[list[str]] = [
    ["big", "large"], ["small", "little"], ["happy", "glad"], ["quick", "fast"],
    ["often", "frequently"], ["now", "currently"], ["sees", "notices"], ["likes", "enjoys"],
    ["helps", "assists"], ["house", "home"], ["car", "automobile"], ["child", "kid"],
    ["quiet", "silent"], ["bright", "shiny"], ["old", "aged"],
]

#: The attacker's synonym-substitution trigger: rare synonyms the clean grammar never produces
#: (a hidden, "natural" trigger; cf. the synonym-substitution attacks discussed in Sun et al.).
ATTACK_SYNONYMS: dict[str, str] = {
    "big": "enormous", "large": "immense", "small": "minuscule", "little": "petite", "old": "ancient",
    "young": "youthful", "happy": "joyous", "glad": "elated", "quick": "swift", "fast": "rapid",
    "dark": "murky", "bright": "radiant", "sees": "beholds", "likes": "cherishes", "helps": "aids",
    "loves": "adores", "dog": "hound", "house": "dwelling", "car": "vehicle", "child": "youngster",
}


def synonym_map() -> dict[str, list[str]]:
    """``word -> [its synonyms]`` from :data:`SYNONYMS`."""
    out: dict[str, list[str]] = {}
    for group in SYNONYMS:
        for w in group:
            out.setdefault(w, []).extend(x for x in group if x != w)
    return out
