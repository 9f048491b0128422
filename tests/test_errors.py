"""The error catalogue: every message shows a code a user can search for, no
two codes say the same, every code is raised somewhere, and the file lists
them in order."""
import re
from pathlib import Path

from bertflow.errors import Errors

ROOT = Path(__file__).resolve().parents[1]
CODE = re.compile(r"[EW]\d{3}")


def codes():
    return [name for name in vars(Errors) if CODE.fullmatch(name)]


def test_every_message_shows_its_code():
    for code in codes():
        assert getattr(Errors, code).startswith(f"[{code}] "), code


def test_no_two_codes_share_a_message():
    seen = {}
    for code in codes():
        text = vars(Errors)[code]
        assert text not in seen, f"{code} repeats {seen.get(text)}"
        seen[text] = code


def test_every_code_is_used_and_every_used_code_exists():
    used = set()
    for folder in ("bertflow", "plugins", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "errors.py" and "/tests/" not in str(path):
                used |= set(re.findall(r"Errors\.([EW]\d{3})", path.read_text(encoding="utf8")))
    assert sorted(set(codes()) - used) == [], "codes no code raises"
    assert sorted(used - set(codes())) == [], "codes raised but not defined"


def test_codes_are_listed_in_order():
    order = codes()
    assert order == sorted(order, key=lambda c: (c[0] == "W", int(c[1:])))
