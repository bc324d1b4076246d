"""yes, no, on, off (and true, false) written bare where text belongs: say to quote them.

YAML 1.1, which PyYAML reads, takes an unquoted ``yes`` for the boolean true. Each
case below is a small file wrong in one such way, with where `topo validate` must
point and what it must say, like the files of tests/corpus/.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.spec.checks import check
from orchestrator.spec.loader import load_text
from orchestrator.spec.validate import validate_file

ENV = {"TOPO_STATE_DIR": "/tmp/topo-t"}
QUOTE = "in quotes: YAML reads an unquoted yes, no, on, off, true or false as a boolean"

# (name, file, line, column, words of the message, the start of the hint)
CASES = [
    ("command item", """
        nodes:
          a:
            command: [yes, foo]
        """, 3, 15, "nodes.a.command.0: input should be a valid string (got yes, which YAML "
     "reads as the boolean true)", 'write "yes" in quotes'),
    ("command alone", """
        nodes:
          a: {command: Off}
        """, 2, 16, "nodes.a.command: input should be a valid list (got Off, which YAML reads "
     "as the boolean false)", 'write ["Off"], the word in quotes'),
    ("true is a program", """
        nodes:
          a: {command: [true]}
        """, 2, 17, "(got the boolean true)", 'write "true" in quotes'),
    ("depends_on", """
        nodes:
          a: {command: [x], depends_on: [no]}
          "no": {command: [x]}
        """, 2, 34, "nodes.a.depends_on.0: input should be a valid string", 'write "no" in quotes'),
    ("socket type", """
        nodes:
          a:
            command: [x]
            sockets: {s: {type: on}}
        """, 4, 25, "nodes.a.sockets.s.type:", 'write "on" in quotes'),
    ("subscribe alone", """
        nodes:
          a:
            command: [x]
            sockets: {s: {type: SUB, connect: "tcp://127.0.0.1:5", subscribe: off}}
        """, 4, 71, "(got off, which YAML reads as the boolean false)", 'write ["off"]'),
    ("a variable that became a boolean", """
        vars: {FLAG: "yes"}
        nodes:
          a:
            command:
              - prog
              - ${FLAG}
        """, 6, 9, "(got ${FLAG}, which became the boolean true)", 'write "${FLAG}" in quotes'),
    # Fields that take a boolean on purpose and make it text: the checks catch these.
    ("subscribe item", """
        nodes:
          a:
            command: [x]
            sockets: {s: {type: SUB, connect: "tcp://127.0.0.1:5", subscribe: [on]}}
        """, 4, 72, "socket a.s subscribes to on, which YAML reads as the boolean true, so the "
     "topic would be 'true'", 'write "on" in quotes'),
    ("env", """
        nodes:
          a:
            command: [x]
            env: {A: no}
        """, 4, 14, "env A of node a is written no, which YAML reads as the boolean false, so "
     "the node would get A=false", 'write "no" in quotes'),
    ("env in defaults, once", """
        defaults: {env: {VERBOSE: Yes}}
        nodes:
          a: {command: [x]}
          b: {command: [x]}
        """, 1, 27, "env VERBOSE in defaults is written Yes", 'write "Yes" in quotes'),
    ("vars", """
        vars: {MODE: OFF}
        nodes:
          a: {command: [x]}
        """, 1, 14, "vars MODE is written OFF, which YAML reads as the boolean false, so "
     "${MODE} would be replaced by false", 'write "OFF" in quotes'),
    ("ticker topic", """
        nodes:
          t:
            role: ticker
            with: {topic: on}
            sockets: {out: {type: PUB, bind: "tcp://127.0.0.1:5"}}
        """, 4, 19, "ticker node t: topic must be text (got True)", 'write "on" in quotes'),
    ("a string socket option", """
        nodes:
          a:
            command: [x]
            sockets: {s: {type: DEALER, bind: "tcp://127.0.0.1:5", options: {identity: yes}}}
        """, 4, 80, "option 'identity' of socket a.s takes a string", 'write "yes" in quotes'),
]


@pytest.mark.parametrize(("text", "line", "col", "message", "hint"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_hint_quotes_what_was_written(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          text: str, line: int, col: int, message: str,
                                          hint: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    errors = [d for d in validate_file(path, ENV).diagnostics if d.is_error]
    assert len(errors) == 1, [d.format() for d in errors]
    (d,) = errors
    assert (d.line, d.col) == (line, col)
    assert d.code == ("E103" if "ticker" in message else "E101") and message in d.message
    assert d.hint.startswith(hint) and d.hint.endswith(QUOTE)
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:{line}:{col}: error[{d.code}] " in out and f"  hint: {hint}" in out


@pytest.mark.parametrize("text", [
    'nodes: {a: {command: ["yes", "on"], env: {A: "no", B: true, C: false, D: True}}}',
    'vars: {X: true}\nnodes: {a: {command: [x], env: {X: "${X}"}}}',
    "nodes: {a: {command: [x], sockets: {s: {type: SUB, connect: 'tcp://h:1', "
    "subscribe: ['off', '']}}}}",
    "nodes: {a: {command: [x], ready: {file: f}, restart: always}}",
])
def test_quoted_words_and_true_false_where_they_mean_text_are_fine(text: str) -> None:
    loaded = load_text(text, "t.yaml", ENV)
    assert loaded.topology is not None, [d.format() for d in loaded.diagnostics]
    found = [*loaded.diagnostics, *check(loaded.topology, loaded.source, ENV)]
    assert [d.format() for d in found if d.is_error] == []


def test_a_boolean_asked_for_with_a_tag_is_not_taken_for_a_slip() -> None:
    (d,) = load_text("nodes: {a: {command: [prog, !!bool yes]}}", "t.yaml", {}).diagnostics
    assert "(got True)" in d.message and "quotes" not in d.hint


SPELLINGS = [case(w) for w in ("yes", "no", "on", "off", "true", "false")
             for case in (str.lower, str.capitalize, str.upper)]


@pytest.mark.parametrize("word", SPELLINGS)
def test_every_spelling_pyyaml_reads_as_a_boolean_is_quoted_back(word: str) -> None:
    assert isinstance(yaml.safe_load(word), bool)
    loaded = load_text(f"nodes: {{a: {{command: [prog, {word}]}}}}", "t.yaml", {})
    (d,) = loaded.diagnostics
    assert (d.line, d.col) == (1, 29)
    assert d.hint == f'write "{word}" {QUOTE}'
