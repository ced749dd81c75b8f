"""Oracle for the tokenizer tests (tests/unit/test_tokenizer.cpp): Hugging Face `tokenizers` ids.

Writes, under out_dir (ids always from Tokenizer.encode(text).ids of the bundled GPT-NeoX-20B tokenizer.json,
add_special_tokens irrelevant: its post-processor adds nothing):
  hard_strings.json   [{"name", "text", "ids", "decoded", "nfc"}]: mixed scripts, emoji (ZWJ, skin tones, flags),
                      combining marks in NFC and NFD, CRLF, tabs, whitespace runs of every length 1..40 with and
                      without text after them, digits, contractions, leading spaces, added-token strings inside
                      text. "decoded" is HF decode(ids, skip_special_tokens=False); "nfc" is Python's NFC(text).
  codepoints.json     [{"first", "last", "text", "ids"}]: every assigned code point of Unicode (Python's
                      unicodedata; private use and surrogates left out, the big ideograph / Hangul / Tangut
                      blocks sampled every 16th) in a few contexts, 256 code points a record. No mark follows
                      another mark here: HF's NFC tables predate Unicode 10, so they do not reorder the ~60 marks
                      given a combining class since; utf8proc does (a known divergence, see
                      src/tokenizer/unicode.cpp).
  flags/tokenizer.json + flags/strings.json   the NeoX file plus added tokens exercising single_word, lstrip,
                      rstrip and normalized (and one whose content is already in the vocab), with HF's ids and
                      decode for strings around them.
  variants/<name>.json + variants/strings.json   the NeoX file with add_prefix_space, use_regex=false, no
                      normalizer, or ignore_merges, with HF's ids for a few strings each.
  books/<split>/<stem>.u32          ids of every book under assets/books (little-endian uint32).
  shared_books/<split>/<stem>.u32   ids of every book under ../shared/data/books, written only when that
                      directory exists beside the source tree (the manifest says how many).
  books.json          {"books": {"<split>/<stem>": sha256 of NFC(text)}, "shared_books": {...}} for the
                      decode round trip.
"""
import hashlib
import json
import pathlib
import unicodedata

import numpy as np
import tokenizers
from tokenizers import Tokenizer

VERSION = 2
ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "assets" / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"
SHARED_BOOKS = ROOT.parent / "shared" / "data" / "books"


def hard_strings():
    s = {
        "empty": "",
        "ascii": "Hello, world! How are you doing today?",
        "cjk": "日本語のテキストと中文文本，还有한국어 문장입니다。",
        "arabic": "اللغة العربية تكتب من اليمين إلى اليسار ١٢٣٤",
        "devanagari": "हिन्दी भाषा देवनागरी लिपि में लिखी जाती है। क्षत्रिय",
        "cyrillic": "Съешь же ещё этих мягких французских булок, да выпей чаю.",
        "mixed_scripts": "English, Ελληνικά, עברית, ไทย, ქართული, and 漢字 in one line: ok?",
        "emoji": "I love 🍕 and 🎉! 😀😃😄",
        "emoji_zwj": "👨‍👩‍👧‍👦 family, 👩🏽‍💻 coder, 🏳️‍🌈 flag, 🇫🇷🇯🇵 flags",
        "emoji_skin_tones": "👍🏻👍🏼👍🏽👍🏾👍🏿 ✋🏿",
        "combining_nfc": "café naïve résumé Ångström",
        "combining_nfd": unicodedata.normalize("NFD", "café naïve résumé Ångström"),
        "combining_stack": "e\u0301\u0323 o\u0323\u0302 a\u0308\u0304 q\u0307\u0323 \u1e9b\u0323 x\u0336\u0336",
        "hangul_jamo": "\u1100\u1161\u11a8 \u1112\u1161\u11ab",
        "crlf": "line one\r\nline two\r\n\r\nline four\r\n",
        "tabs": "col1\tcol2\t\tcol3\t \tend\t",
        "newlines": "\n\n\npara\n\n\n\nend\n",
        "digits": "3.14159 2024-01-01 1,000,000 0x1F 007 12345678901234567890",
        "contractions": "I'm you're he's she'd we'll they've it's can't won't isn't 'S 'T 'RE n't 's",
        "contractions_upper": "DON'T I'M HE'S THEY'LL",
        "quotes": "\u201cQuoted,\u201d she said \u2014 \u2018single\u2019 \u2026 ok",
        "leading_spaces": " leading one",
        "leading_spaces2": "   three leading",
        "trailing_spaces": "trailing   ",
        "only_spaces": "        ",
        "eot_inside": "text<|endoftext|>more text",
        "eot_spaced": "a <|endoftext|> b",
        "eot_double": "<|endoftext|><|endoftext|><|padding|>",
        "eot_partial": "<|endoftext| <|endoftext <|padding|",
        "unicode_spaces": "a\u00a0b\u2003c\u3000d\u2028e\u2029f\u0085g\u180eh\u200bi\u202fj",
        "unicode_space_runs": "x\u00a0\u00a0\u00a0y \u3000 z\u2003 \u2003w",
        "mongolian_vowel_separator": "a \u180e-b x\u180e\u180e y \u180e \n\u180e\nz\u180e.",
        "controls": "nul\x00byte bell\x07 esc\x1b del\x7f \x0b\x0c",
        "punct_runs": "!!!??? ... --- *** ((())) \"\" '' `` ~~~",
        "long_word": "a" * 300 + " " + "ab" * 200,
        "long_punct": "-" * 1000,
        "url": "https://example.com/path?query=1&x=y#frag",
        "code": "def f(x):\n    return x ** 2  # square\n\tif (a && b) { c++; }",
        "math": "∑_{i=1}^{n} x_i² ≤ ∞ ≠ √2 ± ∂f/∂x",
        "fullwidth": "ＡＢＣ１２３！",
        "ligatures": "ﬁne ﬂow ﬀ",
        "surrogate_pairs": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚 𐍈 🀄",
        "bom": "\ufeffstarts with a BOM",
        "letter_number_mix": "abc123def 4th 1st x2 2x",
        "apostrophe_variants": "it\u2019s rock'n'roll O'Neil 'tis",
    }
    cases = list(s.items())
    for n in range(1, 41):
        cases.append((f"spaces_{n}", " " * n))
        cases.append((f"spaces_{n}_text", "a" + " " * n + "b"))
        cases.append((f"spaces_{n}_newline", "x" + " " * n + "\ny"))
        cases.append((f"tabs_{n}_text", "a" + "\t" * n + "b"))
        cases.append((f"newlines_{n}", "a" + "\n" * n + "b"))
    return cases


def codepoint_records():
    big = [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x17000, 0x18AFF), (0x20000, 0x3FFFF)]
    cps = []
    for cp in range(0x110000):
        cat = unicodedata.category(chr(cp))
        if cat in ("Cn", "Co", "Cs"):
            continue
        if any(lo <= cp <= hi for lo, hi in big) and cp % 16:
            continue
        cps.append(cp)
    recs = []
    for i in range(0, len(cps), 256):
        chunk = cps[i:i + 256]
        parts = []
        for cp in chunk:
            c = chr(cp)
            parts.append(c + "a" + c + " " + c + c + "1" + c + "!'" + c + "  " + c + "\te" + c + "| " + c + "-")
        recs.append({"first": chunk[0], "last": chunk[-1], "text": "\n".join(parts)})
    return recs


FLAG_TOKENS = [
    {"id": 50277, "content": "<mask>", "single_word": True, "lstrip": True, "rstrip": False,
     "normalized": False, "special": True},
    {"id": 50278, "content": "[SEP]", "single_word": False, "lstrip": False, "rstrip": True,
     "normalized": False, "special": True},
    {"id": 50279, "content": "cafe\u0301", "single_word": False, "lstrip": False, "rstrip": False,
     "normalized": True, "special": False},
    {"id": 50280, "content": "word", "single_word": True, "lstrip": False, "rstrip": False,
     "normalized": True, "special": False},
    {"id": 17374, "content": "\u0120foo", "single_word": False, "lstrip": False, "rstrip": False,
     "normalized": False, "special": False},
]
FLAG_STRINGS = [
    "Hi <mask> there", "a<mask>b", "x <mask>\t<mask>", "  <mask>  ", "<mask>,<mask>-", "\u00e9<mask> \u0301<mask>",
    "[SEP]   y", "[SEP]\u3000z", "[SEP][SEP]", "a [SEP] <mask> [SEP]", "caf\u00e9 cafe\u0301 cafés xcafé",
    "word words sword word. _word word_ word\u0301", "\u0120foo bar\u0120foo", "<|endoftext|> <mask> word",
]


# Variants of the NeoX file for the options the C++ reader supports but GPT-NeoX leaves off.
VARIANTS = {
    "add_prefix_space": lambda j: j["pre_tokenizer"].update(add_prefix_space=True),
    "no_regex": lambda j: j["pre_tokenizer"].update(use_regex=False),
    "no_normalizer": lambda j: j.update(normalizer=None),
    "ignore_merges": lambda j: j["model"].update(ignore_merges=True),
}
VARIANT_STRINGS = [
    "Hello world", " leading", "a<|endoftext|>b <|endoftext|> c", "x    y\n\n  z", "e\u0301 caf\u00e9 \u212b",
    "don't STOP 123 4567", "tokenization internationalization", "\u65e5\u672c\u8a9e \U0001f600!",
]


def write_u32(path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.asarray(ids, dtype="<u4").tofile(path)


def encode_books(tok, src_root, dest_root):
    """Writes the ids of <src_root>/<split>/*.txt; returns {"<split>/<stem>": sha256 of NFC(text)}."""
    files = sorted(src_root.glob("*/*.txt"))
    texts = [f.read_text(encoding="utf-8") for f in files]
    nfc = {}
    for f, text, enc in zip(files, texts, tok.encode_batch(texts)):
        write_u32(dest_root / f.parent.name / (f.stem + ".u32"), enc.ids)
        nfc[f"{f.parent.name}/{f.stem}"] = hashlib.sha256(
            unicodedata.normalize("NFC", text).encode("utf-8")).hexdigest()
    return nfc


def main(out_dir):
    out_dir = pathlib.Path(out_dir)
    tok = Tokenizer.from_file(str(TOKENIZER))

    cases = []
    for name, text in hard_strings():
        ids = tok.encode(text).ids
        cases.append({"name": name, "text": text, "ids": ids,
                      "decoded": tok.decode(ids, skip_special_tokens=False),
                      "nfc": unicodedata.normalize("NFC", text)})
    (out_dir / "hard_strings.json").write_text(json.dumps(cases, ensure_ascii=True))

    recs = codepoint_records()
    for rec, enc in zip(recs, tok.encode_batch([r["text"] for r in recs])):
        rec["ids"] = enc.ids
    (out_dir / "codepoints.json").write_text(json.dumps(recs, ensure_ascii=True))

    spec = json.loads(TOKENIZER.read_text(encoding="utf-8"))
    spec["added_tokens"] = spec["added_tokens"] + FLAG_TOKENS
    (out_dir / "flags").mkdir(exist_ok=True)
    flags_json = out_dir / "flags" / "tokenizer.json"
    flags_json.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    ftok = Tokenizer.from_file(str(flags_json))
    flag_cases = []
    for text in FLAG_STRINGS:
        ids = ftok.encode(text).ids
        flag_cases.append({"text": text, "ids": ids, "decoded": ftok.decode(ids, skip_special_tokens=False)})
    (out_dir / "flags" / "strings.json").write_text(json.dumps(flag_cases, ensure_ascii=True))

    (out_dir / "variants").mkdir(exist_ok=True)
    variants = {}
    for name, edit in VARIANTS.items():
        spec = json.loads(TOKENIZER.read_text(encoding="utf-8"))
        edit(spec)
        path = out_dir / "variants" / f"{name}.json"
        path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        vtok = Tokenizer.from_file(str(path))
        variants[name] = [{"text": t, "ids": vtok.encode(t).ids} for t in VARIANT_STRINGS]
    (out_dir / "variants" / "strings.json").write_text(json.dumps(variants, ensure_ascii=True))

    books = encode_books(tok, ROOT / "assets" / "books", out_dir / "books")
    shared = encode_books(tok, SHARED_BOOKS, out_dir / "shared_books") if SHARED_BOOKS.is_dir() else {}
    (out_dir / "books.json").write_text(json.dumps({"books": books, "shared_books": shared}, indent=1))
    return {"version": VERSION, "tokenizers": tokenizers.__version__,
            "tokenizer_sha256": hashlib.sha256(TOKENIZER.read_bytes()).hexdigest(),
            "unidata_version": unicodedata.unidata_version, "hard_strings": len(cases),
            "codepoint_records": len(recs), "books": len(books), "shared_books": len(shared)}
