#!/usr/bin/env bash
# Builds llama.cpp with spillway's patch set (runtimes/llama.cpp/patches/, hybrid MoE experts) from
# the source node-llama-cpp bundles, cached by a hash of the source commit and the patches: a second
# run with the same inputs only prints the binaries' folder.
#
# Usage: runtimes/llama.cpp/build.sh [options]
#   --bundle FILE     git bundle to clone (default node_modules/node-llama-cpp/llama/gitRelease.bundle)
#   --source DIR      an unpacked llama.cpp tree instead (its commit in DIR/.spillway-commit or git)
#   --cache DIR       cache root (default $SPILLWAY_CACHE, else $XDG_CACHE_HOME/spillway, else ~/.cache/spillway)
#   --dir DIR         build in DIR instead of <cache>/llama.cpp-hybrid/<key> (rebuilt when the key changes)
#   --targets "A B"   CMake targets (default "llama-server llama-cli llama-bench llama-perplexity")
#   --cuda-arch A     CMAKE_CUDA_ARCHITECTURES (default native)
#   --cpu-only        no CUDA (CI, machines without nvcc)
#   --rpc             with llama.cpp's RPC backend (GGML_RPC=ON; add ggml-rpc-server to --targets): a remote
#                     device, which CI uses to run the hybrid split's device part on a second backend
#   --no-flash-attn   no FlashAttention CUDA kernels (GGML_CUDA_FA=OFF): 82 of 121 template files fewer,
#                     for logits checks in a short device call; other kernels, so not for timings
#   --jobs N          build jobs (default: CPU count)
#   --print-dir       print the folder the binaries go to and exit (nothing is built)
#   --check           only check that the patches apply to the source (git apply --check)
# Prints the folder holding the binaries on its last line of stdout (the build log goes to stderr). Exit status: 0 ok, 1 build failed, 2 usage.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PATCHES="$HERE/patches"
BUNDLE="$ROOT/node_modules/node-llama-cpp/llama/gitRelease.bundle"
SOURCE=""
CACHE="${SPILLWAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spillway}"
TARGETS="llama-server llama-cli llama-bench llama-perplexity"
ARCH="native"
CPU_ONLY=0
RPC=OFF
FA=ON
JOBS="$(nproc 2>/dev/null || echo 2)"
MODE=build
FIXED_DIR=""

die() { echo "build.sh: $*" >&2; exit 2; }
while (($#)); do
  case "$1" in
    --bundle) BUNDLE="${2:?--bundle needs a file}"; shift ;;
    --source) SOURCE="${2:?--source needs a folder}"; shift ;;
    --cache) CACHE="${2:?--cache needs a folder}"; shift ;;
    --dir) FIXED_DIR="${2:?--dir needs a folder}"; shift ;;
    --targets) TARGETS="${2:?--targets needs names}"; shift ;;
    --cuda-arch) ARCH="${2:?--cuda-arch needs a value}"; shift ;;
    --cpu-only) CPU_ONLY=1 ;;
    --rpc) RPC=ON ;;
    --no-flash-attn) FA=OFF ;;
    --jobs) JOBS="${2:?--jobs needs a number}"; shift ;;
    --print-dir) MODE=print ;;
    --check) MODE=check ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done

mapfile -t PATCH_FILES < <(find "$PATCHES" -maxdepth 1 -name '*.patch' | LC_ALL=C sort)
((${#PATCH_FILES[@]} > 0)) || die "no patches in $PATCHES"

# The source commit: from the bundle's head, or the unpacked tree.
if [[ -n "$SOURCE" ]]; then
  [[ -d "$SOURCE" ]] || die "--source $SOURCE is not a folder"
  if [[ -f "$SOURCE/.spillway-commit" ]]; then COMMIT="$(tr -d '[:space:]' <"$SOURCE/.spillway-commit")"
  else COMMIT="$(git -C "$SOURCE" rev-parse HEAD 2>/dev/null)" || die "cannot tell the commit of $SOURCE (no .spillway-commit, not a git tree)"; fi
else
  [[ -f "$BUNDLE" ]] || die "bundle $BUNDLE not found (npm ci installs node-llama-cpp)"
  COMMIT="$(git bundle list-heads "$BUNDLE" | head -n 1 | cut -d' ' -f1)"
fi
[[ "$COMMIT" =~ ^[0-9a-f]{40}$ ]] || die "bad source commit '$COMMIT'"

# Cache key: the commit and every patch's content, in order (engine/runtimes/llamacpp_hybrid.ts
# computes the same key to find the binaries).
KEY="$({
  echo "commit $COMMIT"
  for p in "${PATCH_FILES[@]}"; do echo "patch $(basename "$p") $(sha256sum "$p" | cut -c1-64)"; done
} | sha256sum | cut -c1-16)"
DIR="${FIXED_DIR:-$CACHE/llama.cpp-hybrid/$KEY}"
BIN="$DIR/build/bin"
FLAVOR="$([[ $CPU_ONLY == 1 ]] && echo cpu || echo "cuda-$ARCH$([[ $FA == OFF ]] && echo -nofa)")"
[[ $RPC == OFF ]] || FLAVOR="$FLAVOR-rpc"

if [[ $MODE == print ]]; then echo "$BIN"; exit 0; fi

# A fresh copy of the source in $1.
fetch_source() {
  rm -rf "$1"
  if [[ -n "$SOURCE" ]]; then
    mkdir -p "$1" && (cd "$SOURCE" && tar --exclude=./.git --exclude=./build -cf - .) | tar -xf - -C "$1"
  else
    git clone -q "$BUNDLE" "$1" 2>/dev/null
  fi
}

apply_patches() { # dir
  local p
  for p in "${PATCH_FILES[@]}"; do
    # git apply works on a plain folder too (no repository needed).
    # GIT_CEILING_DIRECTORIES: never let git find an enclosing repository and patch that instead.
    if ! (cd "$1" && GIT_CEILING_DIRECTORIES="$(dirname "$1")" git apply --whitespace=nowarn "$p"); then
      echo "build.sh: $(basename "$p") does not apply to llama.cpp $COMMIT" >&2
      return 1
    fi
  done
}

if [[ $MODE == check ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  fetch_source "$tmp/src"
  for p in "${PATCH_FILES[@]}"; do
    (cd "$tmp/src" && export GIT_CEILING_DIRECTORIES="$tmp" && git apply --check --whitespace=nowarn "$p" && git apply --whitespace=nowarn "$p") \
      || { echo "build.sh: $(basename "$p") does not apply to llama.cpp $COMMIT" >&2; exit 1; }
  done
  echo "build.sh: ${#PATCH_FILES[@]} patches apply to llama.cpp $COMMIT"
  exit 0
fi

have_all() {
  local t
  [[ "$(cat "$DIR/stamp" 2>/dev/null)" == "$KEY $FLAVOR" ]] || return 1
  for t in $TARGETS; do [[ -x "$BIN/$t" ]] || return 1; done
}
if have_all; then echo "build.sh: built already ($KEY, $FLAVOR)" >&2; echo "$BIN"; exit 0; fi

mkdir -p "$(dirname "$DIR")"
# One build at a time per key (a concurrent second run waits).
exec 9>"$DIR.lock"
flock 9
if have_all; then echo "$BIN"; exit 0; fi

if [[ "$(cat "$DIR/src/.spillway-patched" 2>/dev/null)" != "$KEY" ]]; then
  echo "build.sh: preparing the source ($COMMIT + ${#PATCH_FILES[@]} patches) in $DIR/src" >&2
  fetch_source "$DIR/src.tmp"
  apply_patches "$DIR/src.tmp" || exit 1
  echo "$KEY" >"$DIR/src.tmp/.spillway-patched"
  rm -rf "$DIR/src" && mv "$DIR/src.tmp" "$DIR/src"
fi

cuda_flags=(-DGGML_CUDA=OFF)
if [[ $CPU_ONLY == 0 ]]; then
  command -v nvcc >/dev/null || [[ -x /usr/local/cuda/bin/nvcc ]] || { echo "build.sh: nvcc not found; install the CUDA toolkit or pass --cpu-only" >&2; exit 1; }
  # No fatbin compression: the same kernels, built faster.
  cuda_flags=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$ARCH" -DGGML_CUDA_COMPRESSION_MODE=none "-DGGML_CUDA_FA=$FA")
fi
echo "build.sh: building $TARGETS ($FLAVOR) with $JOBS jobs" >&2
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$DIR/src" -B "$DIR/build" "${gen[@]}" "${cuda_flags[@]}" "-DGGML_RPC=$RPC" -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >"$DIR/configure.log" 2>&1 \
  || { tail -n 30 "$DIR/configure.log" >&2; exit 1; }
# shellcheck disable=SC2086
# The build log goes to stderr: stdout carries only the folder (last line), for callers that read it.
cmake --build "$DIR/build" -j "$JOBS" --target $TARGETS >&2 || exit 1
echo "$KEY $FLAVOR" >"$DIR/stamp"
echo "$BIN"
