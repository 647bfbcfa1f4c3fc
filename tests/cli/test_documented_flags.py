"""Every ``rsn2`` command line the README and docs/ show names only subcommands and flags that exist."""

import argparse
import re
from pathlib import Path

import pytest

from rsn2.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps subcommands in a private action; no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def documented_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for each ``rsn2 ...`` in an inline code span or starting a line of a code block."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        spans = re.findall(r"`(rsn2 [^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        lines = [
            line.strip()
            for block in blocks
            for line in block.splitlines()
            if re.match(r"\s*(rsn2|torchrun .* -m rsn2) ", line)
        ]
        for command in [*spans, *lines]:
            found.append((page.name, command[command.index("rsn2 ") :]))
    return found


def resolve(command: str) -> tuple[list[str], argparse.ArgumentParser]:
    """The subcommand chain the command names and its innermost parser (the top parser if none)."""
    parser, chain = build_parser(), []
    words = command.split()[1:]
    while words and words[0] in _subparsers(parser):
        chain.append(words[0])
        parser = _subparsers(parser)[words.pop(0)]
    return chain, parser


def test_the_docs_show_many_commands():
    assert len(documented_commands()) > 40


def problems(command: str) -> list[str]:
    """What is wrong with a documented command line: an unknown subcommand or flags it does not take."""
    chain, parser = resolve(command)
    words = command.split()[1:]
    if words and not words[0].startswith("-") and not chain:  # `rsn2 --version` names no subcommand
        return [f"names no rsn2 subcommand ({words[0]!r})"]
    allowed = _flags(parser) | _flags(build_parser())
    unknown = [f for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command) if f not in allowed]
    return [f"rsn2 {' '.join(chain)} does not take {unknown}"] if unknown else []


def test_the_check_catches_an_unknown_subcommand_and_an_unknown_flag():
    assert problems("rsn2 cl run FILE --out DIR --seeds 3") == []
    assert problems("rsn2 predict MODEL INPUT --task T --nope") == ["rsn2 predict does not take ['--nope']"]
    assert problems("rsn2 cl run FILE --task-threshold 0.1") == ["rsn2 cl run does not take ['--task-threshold']"]
    assert problems("rsn2 frobnicate X") == ["names no rsn2 subcommand ('frobnicate')"]


@pytest.mark.parametrize("page,command", documented_commands())
def test_each_documented_command_names_existing_subcommands_and_flags(page, command):
    assert problems(command) == [], f"{page}: `{command}`"
