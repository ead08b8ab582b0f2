"""Build dist/activeclean_spark.zip, the package to ship with ``spark-submit --py-files``.

The archive contains the ``activeclean_spark/`` package without compiled
files, so executors import it from the archive.  Entries are sorted and
carry a fixed timestamp, so the same sources always give the same bytes.

Usage::

    python scripts/build_zip.py [--output PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
PACKAGE = REPOSITORY / "activeclean_spark"
DEFAULT_OUTPUT = REPOSITORY / "dist" / "activeclean_spark.zip"

# The earliest time a zip entry can carry.
ENTRY_TIME = (1980, 1, 1, 0, 0, 0)
COMPILED_SUFFIXES = (".pyc", ".pyo")


def package_files(package: Path = PACKAGE) -> list[Path]:
    """Return the package's files, sorted, without ``__pycache__`` directories and compiled files."""
    return sorted(
        path for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in COMPILED_SUFFIXES
    )


def build_zip(output: Path | str = DEFAULT_OUTPUT, package: Path = PACKAGE) -> Path:
    """Write the package to the zip archive ``output`` and return its path.

    Entries are named from the package directory down
    (``activeclean_spark/engine.py``), so the archive itself is the
    ``sys.path`` entry.  The archive is written beside ``output`` and then
    renamed, so a reader never sees a partial file.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in package_files(package):
            entry = zipfile.ZipInfo(path.relative_to(package.parent).as_posix(), date_time=ENTRY_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, path.read_bytes())
    os.replace(partial, output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"path of the archive to write (default: {DEFAULT_OUTPUT.relative_to(REPOSITORY)})")
    args = parser.parse_args(argv)
    print(build_zip(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
