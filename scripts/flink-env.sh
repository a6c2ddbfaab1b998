#!/usr/bin/env bash
# Creates the Flink jobs' virtual environment, .venv-flink, apart from the main .venv (docs/adr/0009).
#
#   scripts/flink-env.sh          create or update it; instant when it is already up to date
#
# A stamp file holds the hash of scripts/flink-requirements.txt and the interpreter version; it is
# written last, so an interrupted install is finished by the next run, and a changed requirements
# file reinstalls.
#
# Environment (defaults in brackets):
#   FRAUDBATCH_FLINK_VENV   folder of the environment [.venv-flink]
#   PYTHON                  interpreter that creates it [python3.11]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FRAUDBATCH_FLINK_VENV:-$ROOT/.venv-flink}"
REQUIREMENTS="$ROOT/scripts/flink-requirements.txt"
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV/.fraudbatch-flink-env"

command -v java >/dev/null || { echo "flink-env: Java 17+ is needed for Flink (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
command -v "$PYTHON" >/dev/null || { echo "flink-env: $PYTHON not found; PyFlink 2.3 needs Python 3.9-3.12 (set PYTHON=...)" >&2; exit 1; }

want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/python" ]]; then
    exit 0
fi

echo "flink-env: installing PyFlink into $VENV"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -r "$REQUIREMENTS"
"$VENV/bin/pip" check >/dev/null
"$VENV/bin/python" -c 'import pyflink.table, yaml' || { echo "flink-env: pyflink does not import" >&2; exit 1; }
printf '%s\n' "$want" > "$STAMP.tmp" && mv -f "$STAMP.tmp" "$STAMP"
echo "flink-env: ready ($("$VENV/bin/python" -c 'import importlib.metadata as m; print("apache-flink", m.version("apache-flink"))'))"
