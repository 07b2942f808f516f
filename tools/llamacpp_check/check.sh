#!/usr/bin/env bash
# Do GGUF files written by kvdecode-quantize load in llama.cpp, and decode there to the
# same greedy ids as in kvdecode? Builds llama-greedy against a llama.cpp checkout, writes
# GGUF files of every type kvdecode-quantize offers from the shipped llama2.c model, a
# random model whose rows suit the K-quants (with the test data), and two llama.cpp-made
# F32 GGUF files (with the test data), then decodes five prompts in both and prints a table.
#   tools/llamacpp_check/check.sh LLAMA_CPP_DIR [KVDECODE_BUILD_DIR]   # build dir: default build/
# (KVDECODE_SHARED_DIR: the test data, default ../shared)
set -euo pipefail
cd "$(dirname "$0")/../.."
shared=${KVDECODE_SHARED_DIR:-../shared}
llama_dir=$(realpath "${1:?usage: check.sh LLAMA_CPP_DIR [KVDECODE_BUILD_DIR]}")
kv_build=${2:-build}
work=build-llamacpp-check
cmake -S tools/llamacpp_check -B "$work" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_DIR="$llama_dir" >/dev/null
cmake --build "$work" -j"$(nproc)" --target llama-greedy >/dev/null
cmake --build "$kv_build" -j"$(nproc)" --target kvdecode-quantize kvdecode-generate >/dev/null

quantize=$kv_build/examples/kvdecode-quantize
mkdir -p "$work/gguf"
: >"$work/quantize.log"  # the per-tensor fallbacks kvdecode-quantize reports
types=(f32 f16 bf16 q8_0 q4_0 q4_k q6_k)
sources=("kjv:models/kjv_llama.bin")
if [ -f "$shared/tools/make_ckpt.py" ] && python3 -c "import numpy" 2>/dev/null; then
  # The fixtures' rand256 model (../shared/fixtures/gguf/README.md): dim 256, hidden 768.
  python3 "$shared/tools/make_ckpt.py" "$work/rand256.bin" 256 768 2 8 4 1024 256 1
  sources+=("rand256:$work/rand256.bin")
fi
for source in "${sources[@]}"; do
  for type in "${types[@]}"; do
    "$quantize" "${source#*:}" "$work/gguf/${source%%:*}-$type.gguf" "$type" --tokenizer models/kjv_tok1024.bin >/dev/null 2>>"$work/quantize.log"
  done
done
# GGUF to GGUF: llama.cpp's own F32 conversions, requantised by kvdecode.
for source in "lkjv:$shared/fixtures/gguf/kjv-f32.gguf" "ltiny:$shared/fixtures/gguf/from-hf/llama-tiny-f32-f32.gguf"; do
  [ -f "${source#*:}" ] || continue
  for type in q8_0 q4_0 q4_k; do
    "$quantize" "${source#*:}" "$work/gguf/${source%%:*}-$type.gguf" "$type" >/dev/null 2>>"$work/quantize.log"
  done
done
python3 tools/llamacpp_check/compare.py "$work/llama-greedy" "$kv_build/examples/kvdecode-generate" "$work"/gguf/*.gguf
