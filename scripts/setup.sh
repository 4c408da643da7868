#!/usr/bin/env bash
# One-command setup for whospoke on Debian 12 (x86_64 or aarch64).
#
#   bash scripts/setup.sh [--no-apt] [--no-build]
#
# Idempotent: a second run only checks and finishes in seconds.
#   1. Debian packages the build and tests need: cmake (the opus crate builds libopus),
#      a C compiler, pkg-config, ffmpeg (fallback decoder, test fixtures), chromium
#      (headless, for the browser page tests), postgresql (the tests and scripts/cluster.sh
#      run throwaway clusters of their own with pg_ctl; none uses the system service),
#      python3-venv (only for Debian's own python3). Installed with apt-get only when missing.
#   2. Python venv .venv with the DER scorer's pinned deps (../shared/tools/der.py).
#   3. ONNX Runtime 1.31.1 shared library, taken from the PyPI wheel, into
#      .onnxruntime/libonnxruntime.so.1.31.1 (where src/runtime.rs looks for it).
#   4. cargo build --release (target/release/whospoke).
#   5. cargo-fuzz (crates.io) for scripts/fuzz.sh, when the nightly toolchain is there.
#
# Environment:
#   WHOSPOKE_ORT_DIR   where to put the ONNX Runtime library (default: <repo>/.onnxruntime).
#                      The binary finds it there by default; elsewhere, set WHOSPOKE_ORT_LIB.
#   PYTHON             interpreter used to create the venv (default: python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ORT_VERSION="1.31.1"
ORT_FILE="libonnxruntime.so.${ORT_VERSION}"
ORT_DIR="${WHOSPOKE_ORT_DIR:-$ROOT/.onnxruntime}"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
# Exact line from ../shared/tools/README.md (fully pinned alternative).
# onnxruntime lets scripts/bench_offline.sh time the bare models as a calibration.
# pytest, requests and the official AudioPod SDK run the API compatibility tests (tests/sdk);
# moto's S3 server stands in for S3-compatible storage in tests/api/storage.rs.
# websockets is the Python client's (clients/python) live-streaming dependency; its tests
# import the client from its source (PYTHONPATH), so the client itself is not installed.
# Playwright drives Debian's chromium (never a browser of its own) in the page tests (tests/web).
SCORER_PKGS=(pyannote.metrics==4.0.0 pyannote.core==6.1.0 numpy==2.4.6 scipy==1.17.1 soundfile==0.14.0 onnxruntime==1.31.1
             pytest==9.2.0 requests==2.34.2 audiopod==2.12.0 "moto[server]==5.2.5" websockets==17.4 playwright==1.65.2)

DO_APT=1
DO_BUILD=1
for arg in "$@"; do
    case "$arg" in
        --no-apt) DO_APT=0 ;;
        --no-build) DO_BUILD=0 ;;
        -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup.sh: unknown option: $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }
SUMMARY=()
note() { SUMMARY+=("$*"); }

# rustup puts cargo in ~/.cargo/bin, which a non-login shell may not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

# ---------------------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------------------
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

venv_works() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1
}

# python3-venv is only needed when python3 is Debian's own (Debian strips ensurepip);
# a pyenv / python.org interpreter has venv built in.
needs_debian_venv_pkg() {
    venv_works && return 1
    local py
    py="$(command -v "$PYTHON" 2>/dev/null)" || return 0
    py="$(readlink -f "$py")"
    dpkg -S "$py" >/dev/null 2>&1 || return 1
    "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 && \
        "$PYTHON" -m ensurepip --version >/dev/null 2>&1 && return 1
    return 0
}

missing=()
want_pkg() { pkg_installed "$1" || missing+=("$1"); }
want_pkg cmake
want_pkg pkg-config
want_pkg ffmpeg
want_pkg chromium   # headless, for the browser page tests (tests/web)
want_pkg postgresql # initdb/pg_ctl for the tests' throwaway clusters and scripts/cluster.sh
command -v cc >/dev/null 2>&1 || want_pkg gcc
command -v "$PYTHON" >/dev/null 2>&1 || want_pkg python3
if needs_debian_venv_pkg; then want_pkg python3-venv; fi

if [ "${#missing[@]}" -eq 0 ]; then
    note "apt: nothing to install (cmake, pkg-config, ffmpeg, chromium, postgresql, C compiler present)"
elif [ "$DO_APT" -eq 0 ]; then
    die "missing Debian packages: ${missing[*]} (--no-apt given). Install them with:
    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
else
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            SUDO=(sudo -n)
        else
            die "missing Debian packages: ${missing[*]}, and this is not root (no password-less sudo).
Ask an administrator to run:
    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}
then run scripts/setup.sh again."
        fi
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing packages: ${missing[*]}, and apt-get is not available. Install them by hand."
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q || die "apt-get update failed; missing packages: ${missing[*]}"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null \
        || die "apt-get install failed; missing packages: ${missing[*]}"
    note "apt: installed ${missing[*]}"
fi

# ---------------------------------------------------------------------------------------
# 2. Python venv for the DER scorer and the SDK tests (also provides pip for step 3)
# ---------------------------------------------------------------------------------------
scorer_ok() {
    "$VENV/bin/python" - "${SCORER_PKGS[@]}" >/dev/null 2>&1 <<'EOF'
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name.split("[")[0]) != want:
        sys.exit(1)
import pyannote.metrics, pyannote.core, numpy, scipy, soundfile, pytest, requests, audiopod, moto, websockets.sync.client, playwright.sync_api  # noqa: E401,F401
EOF
}

if ! venv_works; then
    say "creating Python venv $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create $VENV with $PYTHON (on Debian's python3: apt-get install python3-venv)"
fi
if scorer_ok; then
    note "venv: .venv has ${SCORER_PKGS[*]}"
else
    say "installing DER scorer packages into .venv"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${SCORER_PKGS[@]}" </dev/null
    scorer_ok || die ".venv: packages installed but the import check failed"
    note "venv: installed ${SCORER_PKGS[*]}"
fi

# ---------------------------------------------------------------------------------------
# 3. ONNX Runtime shared library from the PyPI wheel
# ---------------------------------------------------------------------------------------
ort_lib_ok() {
    # A regular, non-trivial ELF file (guards against a partial copy or an LFS pointer).
    [ -f "$1" ] && [ "$(stat -c %s "$1")" -gt 1000000 ] && [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]
}

ORT_LIB="$ORT_DIR/$ORT_FILE"
if ort_lib_ok "$ORT_LIB"; then
    note "onnxruntime: $ORT_LIB present"
else
    case "$(uname -m)" in
        x86_64|amd64) PLATFORM=manylinux_2_28_x86_64 ;;
        aarch64|arm64) PLATFORM=manylinux_2_28_aarch64 ;;
        *) die "no onnxruntime wheel for architecture $(uname -m)" ;;
    esac
    say "fetching onnxruntime==$ORT_VERSION ($PLATFORM) from PyPI"
    TMP="$(mktemp -d)"
    trap 'rm -rf "$TMP"' EXIT
    "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
        --only-binary=:all: --platform "$PLATFORM" --python-version 3.12 \
        "onnxruntime==$ORT_VERSION" -d "$TMP" </dev/null \
        || die "pip download onnxruntime==$ORT_VERSION failed"
    mkdir -p "$ORT_DIR"
    # Extract the one file with zipfile (unzip may not be installed); write next to the
    # target and rename, so an interrupted run never leaves a partial library behind.
    "$VENV/bin/python" - "$TMP" "$ORT_FILE" "$ORT_LIB.partial" <<'EOF'
import glob, os, shutil, sys, zipfile
tmp, name, dest = sys.argv[1:]
wheels = glob.glob(os.path.join(tmp, "onnxruntime-*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one onnxruntime wheel in {tmp}, found {wheels}")
member = "onnxruntime/capi/" + name
with zipfile.ZipFile(wheels[0]) as z:
    try:
        info = z.getinfo(member)
    except KeyError:
        sys.exit(f"{member} not in {os.path.basename(wheels[0])}")
    with z.open(info) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
if os.path.getsize(dest) != info.file_size:
    sys.exit(f"short write: {dest}")
print(f"    {os.path.basename(wheels[0])}: {member} ({info.file_size:,} B)")
EOF
    chmod 755 "$ORT_LIB.partial"
    mv -f "$ORT_LIB.partial" "$ORT_LIB"
    ort_lib_ok "$ORT_LIB" || die "$ORT_LIB is not a valid shared library after extraction"
    rm -rf "$TMP"
    trap - EXIT
    note "onnxruntime: installed $ORT_LIB"
fi
if [ "$ORT_DIR" != "$ROOT/.onnxruntime" ]; then
    note "onnxruntime: not in the default place; export WHOSPOKE_ORT_LIB=$ORT_LIB"
fi

# ---------------------------------------------------------------------------------------
# 4. Build
# ---------------------------------------------------------------------------------------
if [ "$DO_BUILD" -eq 1 ]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs), then re-run"
    say "cargo build --release"
    cargo build --release
    note "build: $ROOT/target/release/whospoke ($(cargo --version))"
else
    note "build: skipped (--no-build)"
fi

# ---------------------------------------------------------------------------------------
# 5. cargo-fuzz: scripts/fuzz.sh runs the fuzz targets with it on the nightly toolchain
# ---------------------------------------------------------------------------------------
if ! rustup toolchain list 2>/dev/null | grep -q "^nightly"; then
    note "cargo-fuzz: skipped (no nightly toolchain; scripts/fuzz.sh needs one)"
elif cargo fuzz --version >/dev/null 2>&1; then
    note "cargo-fuzz: $(cargo fuzz --version) present"
else
    say "cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
    note "cargo-fuzz: installed $(cargo fuzz --version)"
fi

echo
echo "whospoke setup done:"
for line in "${SUMMARY[@]}"; do echo "  - $line"; done
echo "Next: scripts/test.sh"
