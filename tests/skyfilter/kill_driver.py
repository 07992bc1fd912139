"""Kills a command with SIGKILL at named points of its run and records what it left: the driver of the kill tests
(tests/skyfilter/test_kills.py, tests/skyrm/test_score_kills.py), run as its own process:

    python -m tests.skyfilter.kill_driver SPEC.json RESULT.json

It imports the command once (and ``preload``: modules a child would import), then forks a child per run that calls
the command's ``main(argv)`` in-process (no interpreter start per run). The driver itself runs no kernel and no
torch operation, so forking it is safe: the children start with no thread pools.

* The reference run is uninterrupted; it counts the calls of every point's function and records the order of the
  calls (and the destination of every ``os.replace``), which says which outputs a kill at a point should find in
  place: those renamed into place before it.
* A point ``{"name", "target": "module:attr.path", "which": "first" | "middle" | "last"}``: the child replaces the
  function by one that SIGKILLs its own process at that call (the first, middle or last of the reference run's
  calls). A point ``{"name", "fraction"}``: the driver SIGKILLs the child at that fraction of the reference run's
  duration (a run that ends first, or is killed with all its outputs in place, is run again and killed at half that
  time; at most three tries); the outputs in place after it must be a first part of the reference run's renames.
* After each kill: how the child ended, which outputs exist (and their fingerprints), the inputs' digests and the
  entries of the output folders that are not outputs (temporary files); then a rerun (uninterrupted) with its exit
  code, its outputs' fingerprints and what is left beside them; then the outputs are removed for the next point.

A fingerprint is a file's SHA-256, or for a folder each file's; a JSON file named in ``volatile`` is compared
without the keys named there (the test says which and why).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

#: A child that runs longer than this is killed and reported as hung.
HANG_SECONDS = 120


def _resolve(target: str):
    """The object that holds the attribute ``target`` (``module:attr.path``) names, and the attribute's name."""
    module, _, path = target.partition(":")
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


def _wrap(target: str, before) -> None:
    """Replaces the function ``target`` names by one that calls ``before(args)`` first."""
    owner, name = _resolve(target)
    real = getattr(owner, name)

    def wrapped(*args, **kwargs):
        before(args)
        return real(*args, **kwargs)

    setattr(owner, name, wrapped)


def _entry(entry: str):
    if entry == "skyfilter":
        from skyfilter.cli import main

        return lambda argv: main.main(args=argv, prog_name="skyfilter", standalone_mode=True)
    from skyrm.cli import main

    return main


def _child(spec: dict, log: Path, arm) -> None:
    """The body of a forked child: output to ``log``, ``arm()`` (patches), the command, then exit with its code."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 1
    try:
        arm()
        code = _entry(spec["entry"])(spec["argv"]) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run(spec: dict, log: Path, arm=lambda: None, kill_after: float | None = None) -> dict:
    """One forked run: how it ended and how long it took."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(spec, log, arm)
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)
    deadline = start + HANG_SECONDS
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"ended": "hung", "seconds": HANG_SECONDS, "log": log.read_text(errors="replace")[-2000:]}
        time.sleep(0.002)
    seconds = time.monotonic() - start
    if os.WIFSIGNALED(status):
        ended = "SIGKILL" if os.WTERMSIG(status) == signal.SIGKILL else f"signal {os.WTERMSIG(status)}"
    else:
        ended = f"exit {os.WEXITSTATUS(status)}"
    return {"ended": ended, "seconds": seconds, "log": log.read_text(errors="replace")[-2000:]}


def _digest(path: Path, volatile: dict[str, list[str]]) -> str:
    if path.name in volatile:
        return json.dumps(_without(json.loads(path.read_text()), set(volatile[path.name])), sort_keys=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _without(value, keys: set[str]):
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def fingerprint(path: Path, volatile: dict[str, list[str]] | None = None):
    """A file's SHA-256, a folder's files' (relative path -> SHA-256), None when nothing is there."""
    volatile = volatile or {}
    if path.is_dir():
        return {str(p.relative_to(path)): _digest(p, volatile) for p in sorted(path.rglob("*")) if p.is_file()}
    return _digest(path, volatile) if path.exists() else None


def _state(spec: dict) -> dict:
    outputs = [Path(p) for p in spec["outputs"]]
    names = {(str(p.parent), p.name) for p in outputs}
    return {
        "outputs": {str(p): fingerprint(p, spec.get("volatile")) for p in outputs},
        "inputs": {p: fingerprint(Path(p)) for p in spec["inputs"]},
        "others": sorted(
            f"{folder}/{name}"
            for folder in {str(p.parent) for p in outputs}
            for name in os.listdir(folder)
            if (folder, name) not in names
        ),
    }


def _clear(spec: dict) -> None:
    for given in spec["outputs"]:
        path = Path(given)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _reference(spec: dict, logs: Path) -> tuple[dict, list]:
    """The uninterrupted run, counting calls: (its run and state, the calls in order)."""
    events = logs / "events.json"

    def arm() -> None:
        seen: list = []
        for target in sorted({p["target"] for p in spec["points"] if "target" in p} | {"os:replace"}):
            if target == "os:replace":
                _wrap(target, lambda args: seen.append(["os:replace", os.path.abspath(args[1])]))
            else:
                _wrap(target, lambda args, t=target: seen.append([t, None]))
        real_exit = os._exit

        def exit_with_events(code):  # the child's last act: the calls it counted go to the driver
            events.write_text(json.dumps(seen))
            real_exit(code)

        os._exit = exit_with_events

    run = _run(spec, logs / "reference.log", arm)
    return {**run, **_state(spec)}, json.loads(events.read_text())


def _call_index(calls: list, target: str, which: str) -> tuple[int, int]:
    """(k, position in ``calls``) of the first, middle or last call of ``target`` in the reference run."""
    positions = [i for i, (t, _) in enumerate(calls) if t == target]
    if not positions:
        raise LookupError(f"{target} was never called in the uninterrupted run")
    k = {"first": 1, "middle": (len(positions) + 1) // 2, "last": len(positions)}[which]
    return k, positions[k - 1]


def _arm_kill(target: str, k: int):
    def arm() -> None:
        calls = [0]

        def before(args) -> None:
            calls[0] += 1
            if calls[0] == k:
                os.kill(os.getpid(), signal.SIGKILL)

        _wrap(target, before)

    return arm


def drive(spec: dict) -> dict:
    for module in spec.get("preload", []):
        importlib.import_module(module)
    _entry(spec["entry"])
    logs = Path(spec["logs"])
    logs.mkdir(parents=True, exist_ok=True)
    _clear(spec)
    reference, calls = _reference(spec, logs)
    result = {"reference": reference, "points": {}}
    if reference["ended"] != "exit 0":
        return result
    outputs = {os.path.abspath(p) for p in spec["outputs"]}
    for point in spec["points"]:
        _clear(spec)
        name = point["name"]
        log = logs / f"{name.replace('/', '_').replace(':', '_')}.log"
        if "target" in point:
            try:
                k, at = _call_index(calls, point["target"], point["which"])
            except LookupError as e:
                result["points"][name] = {"error": str(e)}
                continue
            renamed = {dst for t, dst in calls[:at] if t == "os:replace" and dst in outputs}
            killed = _run(spec, log, _arm_kill(point["target"], k))
            record = {"call": k, "calls": sum(t == point["target"] for t, _ in calls), "expected": sorted(renamed)}
        else:
            # a fraction of the uninterrupted run (not of a rerun: one that resumes does less); a run that ends
            after = point["fraction"] * reference["seconds"]
            # before its kill, or killed after its outputs were all in place, is tried again, killed sooner
            tries = 1
            killed = _run(spec, log, kill_after=after)
            while (killed["ended"] != "SIGKILL" or all(os.path.exists(p) for p in outputs)) and tries < 3:
                _clear(spec)
                after, tries = after / 2, tries + 1
                killed = _run(spec, log, kill_after=after)
            order = [dst for t, dst in calls if t == "os:replace" and dst in outputs]
            record = {"after_seconds": round(after, 3), "tries": tries, "expected": None, "rename_order": order}
        record |= {"killed": {**killed, **_state(spec)}}
        rerun = _run(spec, logs / "rerun.log")
        record["rerun"] = {**rerun, **_state(spec)}
        result["points"][name] = record
    _clear(spec)
    return result


if __name__ == "__main__":
    spec_file, result_file = sys.argv[1:3]
    Path(result_file).write_text(json.dumps(drive(json.loads(Path(spec_file).read_text())), indent=1))
