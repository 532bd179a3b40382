"""The README and `docs/*.md` say only what the code accepts: every `streamscore ...` command they show parses with
the real CLI parser, and every `make TARGET` they name is a target of the Makefile.

Two kinds of command line are told apart:
- a *command* (`streamscore run risk --bounded`): parsed with `pipelines.cli.parser()`, as the shell would split it;
- a *synopsis* (`streamscore run risk|reco [--bounded] [--parallelism N]`, with `[...]`, `|`, `(...)`, `...`
  or upper-case placeholders): its subcommands must exist and every `--option` it names must be an option of the
  subcommand it is written under (alternatives after a top-level ` | ` are sibling subcommands).
A failure names the file and line of the command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

import tests.toy_pipeline  # noqa: F401 - docs/add-a-pipeline.md walks through the toy pipeline's commands
from pipelines.cli import parser as cli_parser

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*```")
_INLINE = re.compile(r"`(streamscore [^`]+)`")
_MAKE = re.compile(r"(?:`|^)make ([a-z][a-z0-9-]*)")
#: Marks of a synopsis rather than a runnable command.
_SYNOPSIS = re.compile(r"[\[\]|()…]|\.\.\.|(?:^|\s)[A-Z][A-Z0-9_]*(?:[@=:][A-Z0-9_]+)*(?=\s|$)")


@dataclass(frozen=True)
class DocCommand:
    """One `streamscore` command line found in a document."""

    path: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _strip_comment(line: str) -> str:
    """The line without a trailing shell comment (` # ...`)."""
    match = re.search(r"(^|\s)#", line)
    return line[: match.start()].rstrip() if match else line.rstrip()


def commands_in(path: Path) -> list[DocCommand]:
    """Every `streamscore ...` line of `path`'s code blocks (continuation lines joined) and inline code spans."""
    found: list[DocCommand] = []
    lines = path.read_text().splitlines()
    in_block = False
    current: DocCommand | None = None
    for number, raw in enumerate(lines, start=1):
        if _FENCE.match(raw):
            in_block = not in_block
            current = None
            continue
        if not in_block:
            found.extend(DocCommand(path, number, m.group(1).strip()) for m in _INLINE.finditer(raw))
            continue
        line = _strip_comment(raw)
        stripped = line.strip().removeprefix("$ ")
        if current is not None and raw[:1].isspace() and stripped and (
            stripped[0] in "[(|-" or current.text.endswith("\\")
        ):
            current = DocCommand(path, current.line, current.text.removesuffix("\\").rstrip() + " " + stripped)
            found[-1] = current
            continue
        if stripped.startswith("streamscore "):
            current = DocCommand(path, number, stripped.rstrip(" &"))
            found.append(current)
        else:
            current = None
    return found


ALL_COMMANDS = [c for path in DOC_FILES for c in commands_in(path)]


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(p: argparse.ArgumentParser) -> set[str]:
    return {option for action in p._actions for option in action.option_strings}


def _split_top_level(text: str) -> list[str]:
    """`text` split at the ` | ` that stand outside brackets and parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "|" and depth == 0 and text[i - 1 : i] == " ":
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _resolve(words: list[str], root: argparse.ArgumentParser) -> tuple[list[argparse.ArgumentParser], list[str]]:
    """The chain of (sub)parsers the leading subcommand words select, and the words left over."""
    chain = [root]
    rest = list(words)
    while rest:
        subs = _subparsers(chain[-1])
        word = rest[0].split("|")[0]
        if not subs or word.startswith("-"):
            break
        if word not in subs:
            raise AssertionError(f"no subcommand {word!r} (known: {', '.join(sorted(subs))})")
        chain.append(subs[word])
        rest.pop(0)
    return chain, rest


def _check_positional_choices(p: argparse.ArgumentParser, words: list[str]) -> None:
    """Alternatives written `a|b` in the place of a positional with choices must all be choices."""
    positionals = [a for a in p._actions if not a.option_strings and a.choices and
                   not isinstance(a, argparse._SubParsersAction)]
    for action, word in zip(positionals, [w for w in words if not w.startswith(("-", "[", "("))], strict=False):
        if re.fullmatch(r"[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*", word):
            unknown = [w for w in word.split("|") if w not in action.choices]
            assert not unknown, f"{word!r}: {unknown} not among {sorted(action.choices)}"


def check_synopsis(text: str, root: argparse.ArgumentParser) -> None:
    """Subcommands exist and every `--option` named is one of the subcommand it is written under."""
    alternatives = _split_top_level(text.removeprefix("streamscore ").strip())
    chain, rest = _resolve(alternatives[0].split(), root)
    _check_positional_choices(chain[-1], rest)
    segments = [(chain, alternatives[0])]
    for alternative in alternatives[1:]:
        head = alternative.split()[0] if alternative.split() else ""
        # a sibling of the deepest subcommand that has one by that name
        for depth in range(len(chain) - 1, 0, -1):
            if head in _subparsers(chain[depth - 1]):
                sibling, _ = _resolve(alternative.split(), chain[depth - 1])
                segments.append((chain[: depth - 1] + sibling, alternative))
                break
        else:  # an alternative form of the same subcommand, e.g. `--events N | --file F`
            values = {str(v) for a in chain[-1]._actions if not a.option_strings and a.choices for v in a.choices}
            assert head.startswith(("-", "[", "(")) or head in values, (
                f"no subcommand {head!r} beside `{chain[-1].prog}`")
            segments.append((chain, alternative))
    for parsers, segment in segments:
        known = set().union(*(_options(p) for p in parsers))
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", segment):
            assert option in known, (f"{option} is not an option of `streamscore "
                                     f"{' '.join(p.prog.split()[-1] for p in parsers[1:])}`")


def check_command(text: str, root: argparse.ArgumentParser) -> None:
    """`text` parses as the shell would split it (argparse's message when it does not)."""
    argv = shlex.split(text)[1:]
    _, rest = _resolve(argv, root)
    if not rest:  # a mention of a command in prose (`streamscore publish`), not a command line
        return
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            root.parse_args(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise AssertionError(err.getvalue().strip().splitlines()[-1]) from None


def is_synopsis(text: str) -> bool:
    """True when `text` is written as a synopsis (brackets, alternatives, placeholders), not a runnable command."""
    return bool(_SYNOPSIS.search(text.removeprefix("streamscore ")))


@pytest.fixture(scope="module")
def root_parser() -> argparse.ArgumentParser:
    return cli_parser()


def test_the_documents_show_commands() -> None:
    assert len(DOC_FILES) > 5, "README.md and docs/*.md"
    assert sum(1 for c in ALL_COMMANDS if not is_synopsis(c.text)) >= 10
    assert sum(1 for c in ALL_COMMANDS if is_synopsis(c.text)) >= 10


def test_every_documented_command_parses(root_parser: argparse.ArgumentParser) -> None:
    failures = []
    for command in ALL_COMMANDS:
        try:
            (check_synopsis if is_synopsis(command.text) else check_command)(command.text, root_parser)
        except AssertionError as exc:
            failures.append(f"{command.where}: {command.text}\n    {exc}")
    assert not failures, "documented commands the CLI does not accept:\n" + "\n".join(failures)


def test_the_checker_rejects_wrong_commands(root_parser: argparse.ArgumentParser) -> None:
    for wrong in ("streamscore run risk --no-such-option", "streamscore runn risk", "streamscore run fraud"):
        with pytest.raises(AssertionError):
            check_command(wrong, root_parser)
    for wrong in ("streamscore run risk|reco [--no-such-option N]", "streamscore cluster up | down | stat",
                  "streamscore kafka up [--port P] | status [--taskmanagers N]",
                  "streamscore run risk|fraud [--bounded]"):
        with pytest.raises(AssertionError):
            check_synopsis(wrong, root_parser)
    check_synopsis("streamscore cluster up [--taskmanagers 2] | down | status [--json]", root_parser)


def test_commands_are_found_with_their_line(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("text `streamscore consume T`\n```bash\nstreamscore run risk [--bounded]\n"
                   "                     [--fresh]   # comment\necho hi\n```\n")
    found = [(c.line, c.text) for c in commands_in(doc)]
    assert found == [(1, "streamscore consume T"), (3, "streamscore run risk [--bounded] [--fresh]")]


def test_documented_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*)\s*:", makefile, re.MULTILINE))
    missing = [f"{path.relative_to(ROOT)}:{number}: make {target}"
               for path in DOC_FILES
               for number, line in enumerate(path.read_text().splitlines(), start=1)
               for target in _MAKE.findall(line) if target not in targets]
    assert not missing, "make targets the Makefile does not have:\n" + "\n".join(missing)


def test_relative_links_point_at_files_that_exist() -> None:
    broken = []
    for path in DOC_FILES:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", line):
                if not target.startswith(("http://", "https://", "mailto:")) and not (path.parent / target).exists():
                    broken.append(f"{path.relative_to(ROOT)}:{number}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)
