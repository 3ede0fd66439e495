"""`make test` without Chromium: browser tests skipped with one line, except where CI demands them."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _browser_tests(**env):
    base = {k: v for k, v in os.environ.items() if k != "GATEHOUSE_REQUIRE_SERVICES"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/browser", "-q", "-p", "no:cacheprovider", "-ra"],
        cwd=ROOT,
        env={**base, "GATEHOUSE_CHROMIUM": "/nonexistent/chromium", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_without_chromium_browser_tests_are_skipped_with_one_line_saying_how_to_install_it():
    result = _browser_tests()
    # Every test set aside is "deselected", which pytest answers with exit status 5 when nothing is left to run.
    assert result.returncode in (0, 5), result.stdout + result.stderr
    said = [line for line in result.stdout.splitlines() if "Chromium" in line]
    assert len(said) == 1, result.stdout
    assert "browser tests skipped: Chromium is not installed (install it with: apt-get install chromium)" in said[0]
    assert "failed" not in result.stdout and "error" not in result.stdout


def test_ci_still_requires_chromium():
    result = _browser_tests(GATEHOUSE_REQUIRE_SERVICES="1")
    assert result.returncode != 0
    assert "Chromium is required here" in result.stdout
