#!/usr/bin/env bash
# Builds Prometheus and promtool (github.com/prometheus/prometheus cmd/prometheus
# and cmd/promtool, Apache-2.0) from the Go module pinned in this directory's
# go.mod/go.sum, with CGO_ENABLED=0 and -trimpath, into a cache outside the
# repository, for tests that scrape what the operator exposes. Builds only the
# binaries that are missing. Prints the directory holding `prometheus` and
# `promtool` on its last line.
#
# Build tag remove_all_sd leaves out every service-discovery plugin but the
# built-in file_sd_configs, http_sd_configs and static_configs (the cloud
# SDKs, DNS, Consul, Kubernetes, ...): half the size (about 52 MB instead of
# 105 MB) and about half the cold build time. prometheus then refuses any other
# *_sd_configs; promtool still knows kubernetes_sd_configs, which it imports
# itself. Without builtinassets the web UI is not embedded: the HTTP API
# (/api/v1/..., /-/ready, /-/healthy) works, the UI pages do not.
#
# go.mod is not tidied on purpose: `go mod tidy` ignores build tags and would
# pin the modules of every plugin. go.sum holds what these two builds need; to
# move to another release, change the version in go.mod, empty go.sum and run
# this script (GOFLAGS=-mod=mod fills it in).
#
#   hack/prometheus/build.sh              # build what is missing
#   hack/prometheus/build.sh --print-dir  # only print where the binaries go
#   PROMETHEUS_BIN_DIR=... build.sh       # override the cache location
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

version=$(awk '$1=="require" && $2=="github.com/prometheus/prometheus" {print $3; exit} $1=="github.com/prometheus/prometheus" {print $2; exit}' go.mod)
tags=remove_all_sd
# The cache key covers the pinned graph, the wrapper and the build tags, so any
# change rebuilds.
key=$({ cat go.mod go.sum tools.go; echo "tags=$tags"; } | sha256sum | cut -c1-12)
bin_dir=${PROMETHEUS_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tracing-relation-operator/prometheus-${version}-${key}}
if [ "${1:-}" = "--print-dir" ]; then echo "$bin_dir"; exit 0; fi
mkdir -p "$bin_dir"

export CGO_ENABLED=0 GOFLAGS=-mod=mod
# Module v0.MNN.P is Prometheus release M.NN.P (v0.316.0 is 3.16.0).
release=$(echo "$version" | awk -F. '{printf "%d.%d.%s", substr($2, 1, 1), substr($2, 2), $3}')
ldflags="-s -w -X github.com/prometheus/common/version.Version=$release"
ldflags+=" -X github.com/prometheus/common/version.Revision=$version"
ldflags+=" -X github.com/prometheus/common/version.Branch=go-module"

# Rough cold-build times on 2 cores (Go modules downloaded too), so a first
# run says what it waits for: the low end when the Go build cache already holds
# the standard library and the common modules (hack/otelcol, hack/controlplane
# built first), the high end with an empty one (about 5 CPU-minutes in all).
declare -A cold=([prometheus]="1.5 to 5 minutes" [promtool]="1 to 2 minutes more")
build() { # name package
  local name=$1 pkg=$2
  if [ -x "$bin_dir/$name" ]; then return; fi
  echo "building $name $release ($pkg, tags $tags) into $bin_dir: a cold build takes ${cold[$name]}, later runs reuse it" >&2
  local start=$SECONDS
  # go prints one line per module it downloads (over a hundred on a cold
  # cache). They are left out; errors still show.
  /usr/bin/time -f "$name: %e s, peak RSS %M KiB" -o "$bin_dir/.$name.time" \
    go build -tags "$tags" -trimpath -ldflags "$ldflags" -o "$bin_dir/$name.tmp" "$pkg" 2> >(sed -u '/^go: downloading /d' >&2)
  mv "$bin_dir/$name.tmp" "$bin_dir/$name"
  cat "$bin_dir/.$name.time" >&2
  echo "built $name in $((SECONDS - start)) s" >&2
}

build prometheus github.com/prometheus/prometheus/cmd/prometheus
build promtool github.com/prometheus/prometheus/cmd/promtool
echo "$bin_dir"
