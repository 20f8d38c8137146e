#!/usr/bin/env bash
# Builds the OpenTelemetry Collector used by tests/otel_e2e.rs (otlp receiver
# gRPC+HTTP, zipkin receiver, file and debug exporters) from the Go modules
# pinned in this directory's go.mod/go.sum, with CGO_ENABLED=0 and -trimpath,
# into a cache outside the repository. Builds only when the binary is missing.
# Prints the directory holding the binary (`otelcol`) on its last line.
#
#   hack/otelcol/build.sh              # build if missing
#   hack/otelcol/build.sh --print-dir  # only print where the binary goes
#   OTELCOL_BIN_DIR=... build.sh       # override the cache location
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

version=$(awk '$1=="go.opentelemetry.io/collector/otelcol" {print $2; exit}' go.mod)
# The cache key covers the pinned graph and the program, so any change rebuilds.
key=$(cat go.mod go.sum main.go | sha256sum | cut -c1-12)
bin_dir=${OTELCOL_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tracing-relation-operator/otelcol-${version}-${key}}
if [ "${1:-}" = "--print-dir" ]; then echo "$bin_dir"; exit 0; fi
mkdir -p "$bin_dir"

export CGO_ENABLED=0 GOFLAGS=-mod=mod
if [ ! -x "$bin_dir/otelcol" ]; then
  echo "building otelcol $version into $bin_dir" >&2
  start=$SECONDS
  /usr/bin/time -f "otelcol: %e s, peak RSS %M KiB" -o "$bin_dir/.otelcol.time" \
    go build -trimpath -ldflags "-s -w" -o "$bin_dir/otelcol.tmp" .
  mv "$bin_dir/otelcol.tmp" "$bin_dir/otelcol"
  cat "$bin_dir/.otelcol.time" >&2
  echo "built otelcol in $((SECONDS - start)) s" >&2
fi
echo "$bin_dir"
