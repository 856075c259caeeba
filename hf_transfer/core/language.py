"""The language of the training text, for the card's `language`: the `language` field when given (checked to be ISO
639 codes), otherwise detected from the writing system of a sample of rows (Unicode script ranges, no dependency),
and for Latin script from its commonest words. It answers only when the evidence is clear; otherwise it says nothing
rather than guess (a Chinese review set must not be labelled `en`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hf_transfer.errors import ConfigError

# ISO 639-1 (two letters) or 639-2/639-3 (three) codes, and the Hub's `multilingual`.
_CODE = re.compile(r"^[a-z]{2,3}$")
SAMPLE_ROWS = 2000
MIN_LETTERS = 200  # below this the sample says too little to name a language
DOMINANT_SHARE = 0.6  # share of the rows a writing system needs to name the text's language
# With none dominant, two writing systems holding at least this share each make the text `multilingual` (the Hub's
# tag): the card took the base model's `en` for a mix of Chinese, Korean and Arabic reviews.
MIXED_SHARE = 0.2

# (first, last) code points of each script's blocks.
_SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "latin": ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x1E00, 0x1EFF)),
    "han": ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F)),
    "kana": ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)),
    "hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF)),
    "cyrillic": ((0x400, 0x52F),),
    "arabic": ((0x600, 0x6FF), (0x750, 0x77F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "greek": ((0x370, 0x3FF),),
    "hebrew": ((0x590, 0x5FF),),
    "thai": ((0xE00, 0xE7F),),
}
# One script, one language; the scripts that several languages share are told apart below or left unnamed.
_SCRIPT_LANGUAGE = {"hangul": "ko", "greek": "el", "hebrew": "he", "thai": "th"}
# Letters that only some languages of a shared script use.
_CYRILLIC = {"uk": set("іїєґІЇЄҐ"), "sr": set("ђјљњћџЂЈЉЊЋЏ")}
_ARABIC = {"fa": set("پچژگ"), "ur": set("ٹڈڑںے")}
# The commonest words of the Latin-script languages we name; a sample is one of them only when its words say so.
_FUNCTION_WORDS = {
    "en": "the and a of to is in it that this was for with as but not on are you i be have his her they at by an "
    "or from its so all very",
    "fr": "le la les et un une des est de du que qui dans pour pas ce il elle sur au avec ne je vous mais très",
    "de": "der die das und ist nicht ein eine zu den mit sich des auf für im dem von es ich sie auch sehr aber",
    "es": "el la los las y es en un una que de del por con no se lo para muy pero su al como más",
    "it": "il la le e è di che un una per non con si sono del della lo gli ma molto anche come",
    "pt": "o a os as e é de que um uma do da em para com não se mas muito por no na",
    "nl": "de het een en is van in dat niet op te zijn met voor maar ook als er zeer",
}
_WORDS = {code: set(words.split()) for code, words in _FUNCTION_WORDS.items()}
_TOKEN = re.compile(r"[^\W\d_]+", re.UNICODE)


def check_language(value: Any) -> str | list[str] | None:
    """`language` normalised (lower case; one code or a list), or a one-line `ConfigError`."""
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    codes = [str(v).strip().lower() if isinstance(v, str) else v for v in values]
    bad = [v for v in codes if not isinstance(v, str) or not (_CODE.match(v) or v == "multilingual")]
    if bad or not codes:
        raise ConfigError(
            f"language must be an ISO 639 code (2 or 3 lowercase letters, such as en, zh or fra) or a list of "
            f"them; got {value!r}."
        )
    return codes[0] if len(codes) == 1 and not isinstance(value, (list, tuple)) else codes


def _script(char: str) -> str | None:
    point = ord(char)
    for name, blocks in _SCRIPTS.items():
        if any(first <= point <= last for first, last in blocks):
            return name
    return None


def _sample(texts: Sequence[str], limit: int = SAMPLE_ROWS) -> list[str]:
    """Up to `limit` rows spread evenly over the data (files are often sorted by label or source)."""
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(texts) <= limit:
        return texts
    step = len(texts) / limit
    return [texts[int(i * step)] for i in range(limit)]


def _latin_language(texts: list[str]) -> tuple[str | None, dict]:
    """A Latin-script language from its function words: the best one's share of the tokens must be high (15%) and
    at least twice the runner-up's."""
    tokens = [t.lower() for text in texts for t in _TOKEN.findall(text)]
    if not tokens:
        return None, {}
    counts = Counter(tokens)
    shares = {code: sum(counts[w] for w in words) / len(tokens) for code, words in _WORDS.items()}
    ranked = sorted(shares, key=shares.get, reverse=True)
    best, second = ranked[0], ranked[1]
    evidence = {"function_word_share": {c: round(shares[c], 3) for c in ranked[:3]}}
    if shares[best] >= 0.15 and shares[best] >= 2 * shares[second]:
        return best, evidence
    return None, evidence


def _row_script(text: str, specific: Counter) -> tuple[str | None, int]:
    """The writing system of one row (kana with or without Han is `kana+han`) and its number of letters; letters
    that only some languages of a shared script use are counted into `specific`."""
    scripts, letters = Counter(), 0
    for char in text:
        if not char.isalpha():
            continue
        letters += 1
        script = _script(char) or "other"
        scripts[script] += 1
        if script == "cyrillic":
            specific.update(code for code, chars in _CYRILLIC.items() if char in chars)
        elif script == "arabic":
            specific.update(code for code, chars in _ARABIC.items() if char in chars)
    if not letters:
        return None, 0
    # Japanese writes with kana and Han together: kana in a Han row makes it Japanese.
    if scripts["kana"] >= 0.05 * letters and scripts["kana"] + scripts["han"] >= 0.5 * letters:
        return "kana+han", letters
    return scripts.most_common(1)[0][0], letters


def detect_language(texts: Sequence[str]) -> dict:
    """{"language": code or None, "script": the dominant writing system or None, "letters", "rows" sampled, and
    the evidence}. Each row is given its writing system; one that holds most rows names the language (Latin script
    through its commonest words). `language` is None unless the sample clearly shows one."""
    sample = _sample(texts)
    specific, rows, letters = Counter(), Counter(), 0
    for text in sample:
        script, count = _row_script(text, specific)
        if script is not None:
            rows[script] += 1
            letters += count
    result = {"language": None, "script": None, "letters": letters, "rows": len(sample)}
    if letters < MIN_LETTERS:
        return {**result, "reason": f"only {letters} letters in the sample (at least {MIN_LETTERS} needed)"}
    total = sum(rows.values())
    shares = {script: count / total for script, count in rows.most_common()}
    result["script_shares"] = {script: round(share, 3) for script, share in list(shares.items())[:3]}
    script = next(iter(shares))
    if shares[script] < DOMINANT_SHARE or script == "other":
        named = [share for name, share in shares.items() if name != "other"]
        if len(named) > 1 and named[1] >= MIXED_SHARE:  # Chinese, Korean, Arabic and Hebrew reviews side by side
            return {**result, "language": "multilingual", "reason": "several writing systems hold many rows each"}
        return {**result, "reason": "no single writing system holds most rows"}
    result["script"] = script
    if script in ("kana+han", "han"):
        return {**result, "language": "ja" if script == "kana+han" else "zh"}
    if script in _SCRIPT_LANGUAGE:
        return {**result, "language": _SCRIPT_LANGUAGE[script]}
    if script in ("cyrillic", "arabic"):
        # A language's own letters, in at least 0.5% of the script's letters, name it; else the script's main one.
        own = [code for code, count in specific.most_common() if count >= 0.005 * letters * shares[script]]
        return {**result, "language": own[0] if own else {"cyrillic": "ru", "arabic": "ar"}[script]}
    latin_rows = [text for text in sample if _row_script(text, Counter())[0] == "latin"]
    code, evidence = _latin_language(latin_rows)
    result.update(evidence)
    if code is None:
        result["reason"] = "Latin script whose commonest words match no language we name clearly"
    return {**result, "language": code}


def language_record(given: str | list[str] | None, texts: Sequence[str]) -> dict:
    """The run record's `language`: the value for the card and where it came from (`config` or `detected`; both
    None when neither names one, and the card then takes the base model's), with the detection's evidence."""
    detected = detect_language(texts)
    if given:
        return {"value": given, "source": "config", "detected": detected}
    if detected["language"]:
        return {"value": detected["language"], "source": "detected", "detected": detected}
    return {"value": None, "source": None, "detected": detected}


# "I really enjoyed this!" in the languages detected here: the card's quick start in the training text's language (a
# Chinese model was shown English).
EXAMPLE_SENTENCES = {
    "zh": "我真的很喜欢这个！",
    "ja": "これは本当に楽しかったです！",
    "ko": "정말 즐거웠어요!",
    "ru": "Мне очень понравилось!",
    "uk": "Мені дуже сподобалося!",
    "ar": "لقد استمتعت بهذا حقا!",
    "he": "ממש נהניתי מזה!",
    "el": "Μου άρεσε πραγματικά!",
    "th": "ฉันชอบสิ่งนี้มาก!",
    "fr": "J'ai vraiment adoré !",
    "de": "Das hat mir wirklich gefallen!",
    "es": "¡Me encantó de verdad!",
    "it": "Mi è piaciuto davvero!",
    "pt": "Eu gostei muito disso!",
    "nl": "Ik vond dit echt geweldig!",
}


def example_sentence(language, source: str | None, english: str) -> str:
    """The quick start's sentence: in the language the training text was detected in, or the `language` field names;
    `english` otherwise (the base model's card language says nothing of the data)."""
    ours = source in ("detected", "config") and isinstance(language, str)
    return EXAMPLE_SENTENCES.get(language, english) if ours else english
