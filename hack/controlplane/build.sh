#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kube-controller-manager, etcd)
# and helm from the Go modules pinned in this directory's go.mod/go.sum, with
# CGO_ENABLED=0, into a cache outside the repository. Only missing binaries are
# built. Prints the directory holding the binaries on its last line.
#
#   hack/controlplane/build.sh            # build what is missing
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

build() { # name package ldflags
  local name=$1 pkg=$2 ldflags=$3
  if [ -x "$bin_dir/$name" ]; then return; fi
  echo "building $name ($pkg) into $bin_dir" >&2
  local start=$SECONDS
  /usr/bin/time -f "$name: %e s, peak RSS %M KiB" -o "$bin_dir/.$name.time" \
    go build -trimpath -ldflags "$ldflags" -o "$bin_dir/$name.tmp" "$pkg"
  mv "$bin_dir/$name.tmp" "$bin_dir/$name"
  cat "$bin_dir/.$name.time" >&2
  echo "built $name in $((SECONDS - start)) s" >&2
}

build etcd ./etcd "-s -w"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
build helm helm.sh/helm/v3/cmd/helm "$helm_ldflags"
echo "$bin_dir"
