"""The browser apps' translation catalogues (``server/static/i18n/<lang>.json``, read by
``server/static/shared/i18n.js``): every key the pages use exists in every language, the languages have
the same keys and the same ``{placeholders}``, every value the server sends that the pages name has a
name, and the HTML carries no text outside ``data-i18n``."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest

from dispatch.lifecycle import Actor
from models.enums import CallStatus, DoctorStatus, OfferOutcome, Role, SosKind, Urgency

STATIC = Path(__file__).resolve().parents[2] / "server" / "static"
LANGUAGES = ("en", "ru")
PLURAL_FORMS = {"en": {"one", "other"}, "ru": {"one", "few", "many", "other"}}
"""The forms ``Intl.PluralRules`` picks for whole numbers in each language (``other`` also for
fractions in Russian)."""
NAMESPACES = ("common", "console", "patient", "doctor")
_NS = "|".join(NAMESPACES)
KEY = re.compile(rf"^(?:{_NS})\.[A-Za-z0-9_]+\.[A-Za-z0-9_.]+$")
"""A key is ``<app>.<area>.<name>``: at least three parts, so that event names such as
``doctor.position`` are never mistaken for keys."""
KEY_IN_CODE = re.compile(rf"""["'`]((?:{_NS})\.[A-Za-z0-9_]+\.[A-Za-z0-9_.]+)["'`]""")
LABEL_GROUP = re.compile(r"""\blabel\(\s*["']([A-Za-z0-9_.]+)["']""")
HTML_KEY = re.compile(r"""data-i18n(?:-title|-placeholder|-aria-label)?=["']([^"']+)["']""")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
ENUM_GROUPS: dict[str, set[str]] = {
    "common.callStatus": {s.value for s in CallStatus},
    "common.urgency": {s.value for s in Urgency},
    "common.offerOutcome": {s.value for s in OfferOutcome},
    "common.sosKind": {s.value for s in SosKind},
    "common.doctorState": {s.value for s in DoctorStatus},
    "common.role": {s.value for s in Role} | {s.value for s in Actor},
}
OPEN_GROUPS = {"common.specialty"}
"""Groups of values the deployment chooses (specialty codes): a code without a name is shown as is."""


def catalogue(lang: str) -> dict[str, str]:
    data = json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    assert all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in data.items()), lang
    return data


def base_keys(keys: set[str], lang: str) -> set[str]:
    """The keys with plural forms folded into their base key."""
    out = set()
    for key in keys:
        base, _, form = key.rpartition(".")
        out.add(base if form in PLURAL_FORMS[lang] | {"zero", "two"} and KEY.match(base) else key)
    return out


def sources() -> list[Path]:
    return [
        p
        for p in sorted(STATIC.rglob("*"))
        if p.suffix in (".js", ".html") and "vendor" not in p.relative_to(STATIC).parts
    ]


def used_keys() -> dict[str, list[str]]:
    """Every key the pages use, with the files using it."""
    found: dict[str, list[str]] = {}
    for path in sources():
        text = path.read_text(encoding="utf-8")
        keys = set(KEY_IN_CODE.findall(text))
        if path.suffix == ".html":
            keys |= set(HTML_KEY.findall(text))
        for key in keys:
            found.setdefault(key, []).append(str(path.relative_to(STATIC)))
    return found


def test_the_scan_finds_the_consoles_keys() -> None:
    used = used_keys()
    assert {"console.queue.title", "common.action.signIn", "console.counts.doctors"} <= set(used)
    assert "doctor.position" not in used  # an event type, not a key


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_key_used_exists(lang: str) -> None:
    keys = set(catalogue(lang))
    missing = {k: files for k, files in used_keys().items() if k not in base_keys(keys, lang)}
    assert missing == {}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_keys_are_namespaced_and_plurals_complete(lang: str) -> None:
    keys = set(catalogue(lang))
    assert [k for k in keys if not KEY.match(k)] == []
    for base in base_keys(keys, lang) - keys:
        forms = {k.rpartition(".")[2] for k in keys if k.rpartition(".")[0] == base}
        assert forms == PLURAL_FORMS[lang], (lang, base)


def test_the_languages_have_the_same_keys_and_placeholders() -> None:
    en, ru = catalogue("en"), catalogue("ru")
    assert base_keys(set(en), "en") == base_keys(set(ru), "ru")
    for lang, data in (("en", en), ("ru", ru)):
        for key, text in data.items():
            other = en if lang == "ru" else ru
            base = key.rpartition(".")[0] if key not in other else key
            twins = [v for k, v in other.items() if k == base or k.rpartition(".")[0] == base]
            assert twins, (lang, key)
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(twins[0])), (lang, key)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_value_the_pages_name_has_a_name(lang: str) -> None:
    keys = set(catalogue(lang))
    groups = {g for p in sources() for g in LABEL_GROUP.findall(p.read_text(encoding="utf-8"))}
    assert groups, "no label() calls found"
    assert groups <= set(ENUM_GROUPS) | OPEN_GROUPS
    for group in groups & set(ENUM_GROUPS):
        assert {f"{group}.{v}" for v in ENUM_GROUPS[group]} <= keys, (lang, group)


class TextOutsideI18n(HTMLParser):
    """Collects text that is not inside an element with ``data-i18n`` (script and style excluded)."""

    VOID: ClassVar[set[str]] = {"meta", "link", "input", "br", "img", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []
        self.stray: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        names = {name for name, _ in attrs}
        inherited = any(translated for _, translated in self.stack)
        self.stack.append((tag, inherited or "data-i18n" in names or tag in ("script", "style")))

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if data.strip() and not any(translated for _, translated in self.stack):
            self.stray.append(data.strip())


@pytest.mark.parametrize("page", [p for p in sources() if p.suffix == ".html"], ids=lambda p: p.name)
def test_pages_have_no_untranslated_text(page: Path) -> None:
    parser = TextOutsideI18n()
    parser.feed(page.read_text(encoding="utf-8"))
    assert parser.stray == []
