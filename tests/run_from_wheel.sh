#!/usr/bin/env bash
# Run the test suite against an installed wheel, not the source tree (`make test-wheel`).
#
# Builds the wheel, installs it with its dev and examples extras into a fresh virtual
# environment, copies tests/, examples/ and pyproject.toml (for pytest's settings; no source)
# into an empty directory and runs
# pytest there, so that `import distgrad` can only find the installed package (conftest.py
# checks that with DISTGRAD_TEST_INSTALLED=1). Arguments go to pytest. Everything is made
# under one temporary directory, removed at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d -t distgrad-wheel-XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

"$python" -m pip wheel --quiet --no-deps -w "$work/dist" "$root"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
wheel=$(ls "$work"/dist/distgrad-*.whl)
"$work/venv/bin/python" -m pip install --quiet "$wheel[dev,examples]"
mkdir "$work/run"
cp -r "$root/tests" "$root/examples" "$root/pyproject.toml" "$root/README.md" "$work/run/"
find "$work/run" -name __pycache__ -prune -exec rm -rf {} +
cd "$work/run"
echo "distgrad from: $("$work/venv/bin/python" -c 'import distgrad; print(distgrad.__file__)')"
DISTGRAD_TEST_INSTALLED=1 "$work/venv/bin/python" -m pytest -q -rs -p no:cacheprovider "$@"
