#!/usr/bin/env bash
# Build the spinefx software image from envs/Containerfile with podman (or docker).
#
#   bash scripts/container_build.sh [--tag IMAGE] [--base IMAGE] [--without "torch torchvision"]
#                                   [--wheelhouse] [--engine podman|docker] [--freeze FILE]
#                                   [-- extra build args]
#
# The build context is a temp folder holding only pyproject.toml, README.md and spinefx/ (not the
# checkout, whose .venv and results/ would be sent along). --wheelhouse first downloads (or builds)
# every wheel the image needs with this machine's pip into the context's wheels/ and installs only
# from there, for builders without PyPI access; this machine's Python must then be 3.11 on
# x86_64 Linux, like the image's. The image's packages other than pyproject.toml's pins are held at
# envs/image.lock.txt; --freeze FILE writes the built image's `pip freeze` (spinefx left out) to FILE,
# which is how that lock is made: `--freeze envs/image.lock.txt` on a full build. Prints the build seconds and the image size at the end.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=localhost/spinefx:0.1.0
BASE=docker.io/library/debian:bookworm-slim
WITHOUT=""
WHEELHOUSE=0
ENGINE=podman
FREEZE=""
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) TAG=$2; shift 2 ;;
        --base) BASE=$2; shift 2 ;;
        --without) WITHOUT=$2; shift 2 ;;
        --wheelhouse) WHEELHOUSE=1; shift ;;
        --engine) ENGINE=$2; shift 2 ;;
        --freeze) FREEZE=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "unknown argument: $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done

CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
cp "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/envs/image.lock.txt" "$CTX/"
cp -r "$REPO/spinefx" "$CTX/"
find "$CTX/spinefx" -name __pycache__ -prune -exec rm -rf {} +

PIP_ARGS=""
if [ "$WHEELHOUSE" = 1 ]; then
    # The same requirement list the Containerfile derives from pyproject.toml.
    "$PYTHON" - "$CTX/pyproject.toml" "$WITHOUT" > "$CTX/requirements.txt" <<'EOF'
import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
without = {w.lower() for w in sys.argv[2].split()}
print("\n".join(d for d in deps if re.split(r"[=<>!~ \[;]", d, maxsplit=1)[0].lower() not in without))
EOF
    # `pip wheel` keeps binary wheels as they are and builds wheels for sdist-only packages;
    # setuptools is the build backend of spinefx itself.
    "$PYTHON" -m pip wheel --quiet --wheel-dir "$CTX/wheels" -r "$CTX/requirements.txt" \
        --constraint "$CTX/image.lock.txt" "setuptools>=68" wheel
    PIP_ARGS="--no-index --find-links /ctx/wheels"
fi

RUNTIME_ARGS=()
if [ "$ENGINE" = podman ]; then
    # crun and the default ulimits fail in some sandboxes (this project's CI machine among them).
    RUNTIME_ARGS=(--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
fi

start=$(date +%s.%N)
"$ENGINE" build "${RUNTIME_ARGS[@]}" -f "$REPO/envs/Containerfile" -t "$TAG" \
    --build-arg "BASE=$BASE" --build-arg "WITHOUT=$WITHOUT" --build-arg "PIP_ARGS=$PIP_ARGS" \
    "$@" "$CTX"
end=$(date +%s.%N)
size=$("$ENGINE" image inspect --format '{{.Size}}' "$TAG")
awk -v t="$TAG" -v s="$start" -v e="$end" -v b="$size" \
    'BEGIN { printf "built %s in %.0f s, size %.0f MB\n", t, e - s, b / 1e6 }' 
if [ -n "$FREEZE" ]; then
    {
        echo "# pip freeze of $TAG (scripts/container_build.sh --freeze), spinefx left out: the versions"
        echo "# envs/Containerfile holds every package at. Regenerate after changing pyproject.toml's pins."
        "$ENGINE" run --rm "${RUNTIME_ARGS[@]}" --network none "$TAG" pip freeze --exclude spinefx
    } > "$FREEZE"
    echo "wrote $FREEZE"
fi
