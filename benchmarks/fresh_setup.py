"""The README's two commands on a fresh clone, timed: what a new user waits for.

Clones the committed HEAD into a temporary folder (with `shared/` beside it, as CI has
it), runs the README's first command with pip's cache disabled (so every download
is as on a fresh machine), timing the install and the default `dvsynth generate`
separately, then runs the README's second command (the tests) in the same clone unless
--first-command-only.

    python benchmarks/fresh_setup.py [--keep] [--first-command-only]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def readme_commands() -> tuple[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup, test = re.findall(r"```bash\n(.+?)\n```", text, re.DOTALL)[:2]
    return setup, test


def timed(
    command: str, cwd: Path, env: dict[str, str]
) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", action="store_true", help="keep the clone")
    parser.add_argument("--first-command-only", action="store_true", help="skip the test command")
    args = parser.parse_args()
    setup, test = readme_commands()
    install, run = setup.rsplit(" && ", 1)
    assert run == "dvsynth generate", run
    work = Path(tempfile.mkdtemp(prefix="dvsynth-fresh-"))
    shared = ROOT.parent / "shared"
    if shared.exists():
        (work / "shared").symlink_to(shared)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(work / "main")], check=True)
    clone = work / "main"
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1"}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if "venv" not in p)
    report: dict[str, object] = {"clone": str(clone)}
    try:
        seconds, done = timed(install, clone, env)
        report["install_s"] = round(seconds, 1)
        if done.returncode:
            raise SystemExit(f"install failed:\n{done.stderr[-3000:]}")
        seconds, done = timed(
            f". .venv/bin/activate && /usr/bin/time -f 'RSS_KB %M' {run}", clone, env
        )
        report["default_run_s"] = round(seconds, 1)
        rss = re.search(r"RSS_KB (\d+)", done.stderr)
        report["default_run_peak_rss_mib"] = round(int(rss.group(1)) / 1024) if rss else None
        report["default_run_summary"] = done.stdout.strip().splitlines()[-12:]
        if done.returncode:
            raise SystemExit(f"dvsynth generate failed:\n{done.stderr[-3000:]}")
        report["first_command_s"] = round(report["install_s"] + report["default_run_s"], 1)
        if args.first_command_only:
            return
        seconds, done = timed(test, clone, env)
        report["test_command_s"] = round(seconds, 1)
        report["test_result"] = done.stdout.strip().splitlines()[-1:]
        report["test_rc"] = done.returncode
    finally:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "fresh_setup.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
