"""Running the ``skyfilter`` command in tests, and the check every bad-input test makes."""

from __future__ import annotations

from click.testing import CliRunner
from skyfilter.cli import main


def run_cli(*args) -> tuple[int, str]:
    """Exit code and output of ``skyfilter ARGS...`` (exceptions propagate: a traceback is a test failure)."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def listing(path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def assert_fails_cleanly(tmp_path, args, outputs: dict[str, str], *fragments: str) -> None:
    """``skyfilter ARGS...`` with each output option in ``outputs`` pointed into a fresh folder fails with one
    ``Error:`` line holding every fragment, no traceback or panic, and leaves that folder as it was."""
    folder = tmp_path / "outputs"
    folder.mkdir(exist_ok=True)
    before = listing(folder)
    code, text = run_cli(*args, *(x for flag, name in outputs.items() for x in (flag, folder / name)))
    assert code != 0
    message = text.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("Error: "), text
    for fragment in fragments:
        assert fragment in message[0], (fragment, message[0])
    assert "Traceback" not in text and "panicked" not in text
    assert listing(folder) == before, "a failed run must leave no output, temporary or final"
