#!/usr/bin/env bash
# Build the benchmark peer: llama.cpp's own `llama-server` and `llama-bench`.
#
# Every rightsize performance number is reported as a ratio against these two
# binaries, measured in the same run on the same machine. There is no GitHub
# access, so the llama.cpp tree comes from the source distribution of
# `llama-cpp-python` on PyPI, which vendors it under vendor/llama.cpp.
#
# Idempotent: when <cache>/peer/bin already holds both binaries built from the
# same sdist version, it does nothing.
#
# Environment:
#   RIGHTSIZE_CACHE   cache root (default ~/.cache/rightsize); output in $RIGHTSIZE_CACHE/peer/bin
#   PEER_VERSION      llama-cpp-python version to build (default: newest on PyPI)
#   PEER_JOBS         parallel build jobs (default: nproc)
#   PEER_FORCE=1      rebuild even when the same version is installed
#   PEER_KEEP=1       keep an installed peer whatever its version (no PyPI lookup): what
#                     scripts/test.sh uses, so a new upstream release does not rebuild it
set -euo pipefail

CACHE="${RIGHTSIZE_CACHE:-$HOME/.cache/rightsize}"
PEER="$CACHE/peer"
BIN="$PEER/bin"
WORK="$PEER/build"
JOBS="${PEER_JOBS:-$(nproc)}"
PKG=llama-cpp-python

log() { echo "[build-peer] $*" >&2; }

have_bins() { [[ -x "$BIN/llama-server" && -x "$BIN/llama-bench" && -f "$BIN/VERSION" ]]; }
installed_version() { sed -n 's/^sdist_version=//p' "$BIN/VERSION" 2>/dev/null || true; }

# --- which version ----------------------------------------------------------
if [[ "${PEER_KEEP:-0}" == 1 && "${PEER_FORCE:-0}" != 1 ]] && have_bins; then
  log "keeping installed peer $(installed_version) in $BIN (PEER_KEEP=1)"
  exit 0
fi
VERSION="${PEER_VERSION:-}"
if [[ -z "$VERSION" ]]; then
  VERSION="$(python3 - "$PKG" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
with urllib.request.urlopen(f"https://pypi.org/pypi/{sys.argv[1]}/json", timeout=60) as r:
    print(json.load(r)["info"]["version"])
PY
)"
fi
if [[ -z "$VERSION" ]]; then
  if have_bins; then
    log "cannot reach PyPI; keeping installed peer $(installed_version)"
    exit 0
  fi
  log "cannot determine the newest $PKG version (set PEER_VERSION)"; exit 1
fi

if [[ "${PEER_FORCE:-0}" != 1 ]] && have_bins && [[ "$(installed_version)" == "$VERSION" ]]; then
  log "peer $PKG $VERSION already installed in $BIN"
  exit 0
fi

# --- tools ------------------------------------------------------------------
if ! command -v cmake >/dev/null 2>&1; then
  log "cmake missing: installing it"
  if [[ $(id -u) -eq 0 ]]; then apt-get update && apt-get install -y cmake
  else sudo apt-get update && sudo apt-get install -y cmake; fi
fi
for t in gcc g++ make tar; do
  command -v "$t" >/dev/null 2>&1 || { log "$t is required"; exit 1; }
done

# --- source -----------------------------------------------------------------
mkdir -p "$WORK"
SDIST_DIR="$WORK/sdist"
mkdir -p "$SDIST_DIR"
TARBALL="$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz"
if [[ ! -f "$TARBALL" ]]; then
  log "downloading $PKG==$VERSION sdist"
  # Straight from the registry's JSON listing (sha256-checked): `pip download` of an
  # sdist also prepares its metadata, which costs minutes here. pip is the fallback.
  if ! python3 - "$PKG" "$VERSION" "$TARBALL" <<'PY'
import hashlib, json, os, sys, urllib.parse, urllib.request
pkg, ver, dest = sys.argv[1:]
base = f"https://pypi.org/pypi/{pkg}/json"
with urllib.request.urlopen(base, timeout=60) as r:
    d = json.load(r)
files = d.get("releases", {}).get(ver) or (d["urls"] if d["info"]["version"] == ver else [])
sd = [f for f in files if f["packagetype"] == "sdist"]
if not sd:
    sys.exit(f"no sdist for {pkg} {ver} in the JSON listing")
f = sd[0]
url = urllib.parse.urljoin(base, f["url"])
tmp = dest + ".part"
h = hashlib.sha256()
with urllib.request.urlopen(url, timeout=600) as r, open(tmp, "wb") as out:
    while chunk := r.read(1 << 20):
        h.update(chunk); out.write(chunk)
want = f.get("digests", {}).get("sha256")
if want and h.hexdigest() != want:
    os.remove(tmp); sys.exit(f"sha256 mismatch for {url}")
os.replace(tmp, dest)
PY
  then
    log "direct download failed; falling back to pip download"
    python3 -m pip download --quiet --no-deps --no-binary :all: "$PKG==$VERSION" -d "$SDIST_DIR"
  fi
  [[ -f "$TARBALL" ]] || { log "sdist $TARBALL missing after download"; exit 1; }
fi

SRC="$WORK/llama_cpp_python-$VERSION"
if [[ ! -f "$SRC/.extracted" ]]; then
  log "extracting $TARBALL"
  rm -rf "$SRC"
  tar -xzf "$TARBALL" -C "$WORK"
  touch "$SRC/.extracted"
fi
LLAMA="$SRC/vendor/llama.cpp"
[[ -f "$LLAMA/CMakeLists.txt" && -d "$LLAMA/tools/server" && -d "$LLAMA/tools/llama-bench" ]] || {
  log "$LLAMA does not look like a full llama.cpp tree"; exit 1; }

# The sdist ships the submodule's git metadata: read the vendored commit from it.
COMMIT="unknown"
if [[ -f "$SRC/.git/modules/vendor/llama.cpp/HEAD" ]]; then
  COMMIT="$(head -1 "$SRC/.git/modules/vendor/llama.cpp/HEAD")"
fi

# --- build ------------------------------------------------------------------
BUILD="$WORK/cmake-$VERSION"
log "configuring (Release, CPU, native) in $BUILD"
cmake -S "$LLAMA" -B "$BUILD" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
  >"$WORK/cmake-configure.log" 2>&1 || { tail -50 "$WORK/cmake-configure.log" >&2; exit 1; }

log "building llama-server and llama-bench with -j$JOBS (slow on few cores)"
START=$(date +%s)
cmake --build "$BUILD" --config Release -j"$JOBS" --target llama-server llama-bench
END=$(date +%s)
log "built in $((END - START)) s"

# --- install ----------------------------------------------------------------
mkdir -p "$BIN"
for b in llama-server llama-bench; do
  f="$(find "$BUILD" -type f -name "$b" -perm -u+x | head -1)"
  [[ -n "$f" ]] || { log "built $b not found"; exit 1; }
  install -m 0755 "$f" "$BIN/$b.new" && mv -f "$BIN/$b.new" "$BIN/$b"
done
# Shared libs from the build tree (none expected with BUILD_SHARED_LIBS=OFF).
for b in llama-server llama-bench; do
  ldd "$BIN/$b" | awk '/=>/ {print $3}' | while read -r lib; do
    case "$lib" in "$BUILD"/*) install -m 0644 "$lib" "$BIN/";; esac
  done
  if ldd "$BIN/$b" | grep -q "not found"; then
    ldd "$BIN/$b" >&2; log "$b has unresolved libraries"; exit 1
  fi
done

# Vendored llama.cpp build number/commit as llama.cpp itself reports it.
INFO="$("$BIN/llama-server" --version 2>&1 | grep -m1 -i 'version' || true)"
{
  echo "sdist=$PKG"
  echo "sdist_version=$VERSION"
  echo "llama_cpp_commit=$COMMIT"
  echo "llama_cpp_version_line=$INFO"
  echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "build_seconds=$((END - START))"
  echo "jobs=$JOBS"
  echo "host=$(uname -m) $(nproc) cores"
} >"$BIN/VERSION.new"
mv -f "$BIN/VERSION.new" "$BIN/VERSION"
log "installed into $BIN:"
cat "$BIN/VERSION" >&2
