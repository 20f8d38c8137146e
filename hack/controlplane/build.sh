#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kube-controller-manager, etcd)
# and helm from the Go modules pinned in this directory's go.mod/go.sum, with
# CGO_ENABLED=0, into a cache outside the repository. Only missing binaries are
# built. Prints the directory holding the binaries on its last line.
#
#   hack/controlplane/build.sh            # build what is missing
#   hack/controlplane/build.sh etcd kube-apiserver   # only these (hack/local-up.sh)
#   hack/controlplane/build.sh --print-dir  # only print where the binaries go
#   CONTROLPLANE_BIN_DIR=... build.sh     # override the cache location
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

kube_version=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' go.mod)
helm_version=$(awk '$1=="helm.sh/helm/v3" {print $2; exit}' go.mod)
kube_minor=$(echo "$kube_version" | cut -d. -f2)
# The cache key covers the pinned graph, so a changed go.sum rebuilds.
key=$(cat go.mod go.sum etcd/main.go | sha256sum | cut -c1-12)
bin_dir=${CONTROLPLANE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tracing-relation-operator/controlplane-${kube_version}-${key}}
if [ "${1:-}" = "--print-dir" ]; then echo "$bin_dir"; exit 0; fi
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(etcd kube-apiserver kube-controller-manager helm)
for name in "${wanted[@]}"; do
  case $name in
    etcd|kube-apiserver|kube-controller-manager|helm) ;;
    *) echo "unknown binary: $name (etcd, kube-apiserver, kube-controller-manager, helm)" >&2; exit 2 ;;
  esac
done
mkdir -p "$bin_dir"

export CGO_ENABLED=0 GOFLAGS=-mod=mod
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
done

# Rough cold-build times on 2 cores (Go modules downloaded too), so a first
# run says what it waits for.
declare -A cold=([etcd]="about 1 minute" [kube-apiserver]="5 to 10 minutes"
  [kube-controller-manager]="4 to 8 minutes" [helm]="2 to 4 minutes")
build() { # name package ldflags
  local name=$1 pkg=$2 ldflags=$3 w
  for w in "${wanted[@]}"; do [ "$w" = "$name" ] && break; done
  [ "$w" = "$name" ] || return 0
  if [ -x "$bin_dir/$name" ]; then return; fi
  echo "building $name ($pkg) into $bin_dir: a cold build takes ${cold[$name]}, later runs reuse it" >&2
  local start=$SECONDS
  # go prints one line per module it downloads: hundreds on a cold cache, and
  # nothing else for minutes. They are left out; errors still show.
  /usr/bin/time -f "$name: %e s, peak RSS %M KiB" -o "$bin_dir/.$name.time" \
    go build -trimpath -ldflags "$ldflags" -o "$bin_dir/$name.tmp" "$pkg" 2> >(sed -u '/^go: downloading /d' >&2)
  mv "$bin_dir/$name.tmp" "$bin_dir/$name"
  cat "$bin_dir/.$name.time" >&2
  echo "built $name in $((SECONDS - start)) s" >&2
}

build etcd ./etcd "-s -w"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
build helm helm.sh/helm/v3/cmd/helm "$helm_ldflags"
echo "$bin_dir"
