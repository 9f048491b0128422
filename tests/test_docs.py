"""The pages generated from the code are current: docs/cli.md's reference is
what ``scripts/cli_docs.py`` writes from the typer app now."""
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_cli_reference_is_current():
    spec = importlib.util.spec_from_file_location("cli_docs", ROOT / "scripts" / "cli_docs.py")
    cli_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli_docs)
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf8")
    found = re.search(re.escape(cli_docs.START) + r"\n(.*?)" + re.escape(cli_docs.END), text, re.S)
    assert found, "docs/cli.md has no generated reference"
    assert found.group(1) == cli_docs.reference(), "docs/cli.md is out of date: run python scripts/cli_docs.py"
    for command in ("annotate", "check", "convert", "distill", "evaluate", "export-encoder", "init config",
                    "lr-sweep", "new-plugin", "package", "plugins", "train"):
        assert f"### `bertflow {command}`" in text, command
