"""The Java check that `make demo` and `make test` run before anything else."""

import os
import stat
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "check_java.sh")


def _fake_java(tmp_path, version_line):
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return str(home)


def _check(java_home):
    return subprocess.run(["bash", SCRIPT], env=dict(os.environ, JAVA_HOME=java_home), capture_output=True, text=True)


@pytest.mark.parametrize("line", ['openjdk version "17.0.15" 2025-04-15', 'openjdk version "21" 2023-09-19'])
def test_java_17_or_newer_passes(tmp_path, line):
    assert _check(_fake_java(tmp_path, line)).returncode == 0


@pytest.mark.parametrize("line, shown", [('openjdk version "11.0.2" 2019-01-15', "Java 11.0.2"),
                                         ('java version "1.8.0_292"', "Java 1.8.0_292")])
def test_old_java_is_rejected(tmp_path, line, shown):
    result = _check(_fake_java(tmp_path, line))
    assert result.returncode == 1
    assert f"{shown} found" in result.stderr
    assert "needs Java 17 or newer" in result.stderr


def test_missing_java_is_reported(tmp_path):
    result = _check(str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "Java not found" in result.stderr
    assert "openjdk-17" in result.stderr
