"""Write the reference of every ``bertflow`` command into docs/cli.md (between
markers), from the typer app itself, so the page never drifts from the code.

    python scripts/cli_docs.py            # rewrite the reference
    python scripts/cli_docs.py --print    # only print it
"""
import argparse
import re
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def commands(group: click.Group, prefix: str = "bertflow"):
    """(full name, command) for every command of the app, groups expanded, in name order."""
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        if hasattr(command, "list_commands"):
            yield from commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def describe(name: str, command: click.Command) -> str:
    """One command's section: usage, help text, and a table of its arguments and options."""
    ctx = click.Context(command, info_name=name)
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    usage = " ".join([name, "[OPTIONS]"] + [p.name.upper() + ("..." if p.nargs == -1 else "") for p in arguments])
    lines = [f"### `{name}`", "", "```", usage, "```", ""]
    for paragraph in (command.help or "").strip().split("\n\n"):
        if paragraph.strip():
            lines += [re.sub(r"\s*\n\s*", " ", paragraph.strip()), ""]
    rows = []
    for param in command.params:
        if param.param_type_name == "argument":
            rows.append((param.name.upper(), getattr(param, "help", "") or ""))
        else:
            record = param.get_help_record(ctx)
            if record:
                rows.append(record)
    if rows:
        lines += ["| argument or option | what it does |", "|---|---|"]
        for left, right in rows:
            text = re.sub(r"\s+", " ", right).replace("|", "/").strip()
            lines.append(f"| `{left}` | {text} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def reference() -> str:
    import typer

    from bertflow.cli import app, core_commands

    group = typer.main.get_command(app)  # the core's commands: a plugin's are documented with the plugin
    return "\n".join(describe(name, command) for name, command in commands(group)
                     if name.split()[1] in core_commands())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print", action="store_true", help="print the reference, don't write docs/cli.md")
    args = parser.parse_args()
    body = reference()
    if args.print:
        print(body)
        return 0
    text = DOC.read_text(encoding="utf8")
    if START not in text:
        text = text.rstrip() + f"\n\n## Reference\n\n{START}\n{END}\n"
    DOC.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda m: f"{START}\n{body}{END}", text,
                          flags=re.S), encoding="utf8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
