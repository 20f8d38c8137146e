#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs and builds what it
# needs (control-plane binaries, an OpenTelemetry Collector and Prometheus from Go modules,
# PyYAML and the Python OpenTelemetry SDK in venvs, the image tooling), then
# static checks, unit and integration tests against a real kube-apiserver
# (tests/otel_e2e.rs with the collector and the SDK; tests/first_hour.rs runs
# the README's quick start, hack/local-up.sh, in the background and stops it
# with SIGINT and SIGTERM), the chart and image checks, and a benchmark smoke
# run.
#
#   hack/test.sh
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/tracing-relation-operator
mkdir -p "$cache"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
t0=$SECONDS
# One build per run: incremental state would only add gigabytes to the disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
# The builds below take about 4 GB (debug tests, release and musl binaries):
# say what the disk has, so that a full disk is told apart from a failure.
echo "free disk space: $(df -Ph . | awk 'NR == 2 { print $4 }') here, $(df -Ph "$cache" | awk 'NR == 2 { print $4 }') in $cache"

step "control plane binaries (kube-apiserver, kube-controller-manager, etcd, helm) from Go modules"
start=$SECONDS
bin_dir=$(hack/controlplane/build.sh | tail -n1)
export CONTROLPLANE_BIN_DIR=$bin_dir
echo "set-up of the control plane: $((SECONDS - start)) s ($bin_dir)"

step "OpenTelemetry Collector from Go modules (receiver of tests/otel_e2e.rs)"
start=$SECONDS
otelcol_dir=$(hack/otelcol/build.sh | tail -n1)
export OTELCOL_BIN=$otelcol_dir/otelcol
echo "set-up of the collector: $((SECONDS - start)) s ($("$OTELCOL_BIN" --version))"

step "Prometheus and promtool from Go modules (the scraper of tests/scrape.rs; file/HTTP/static service discovery only)"
start=$SECONDS
prometheus_dir=$(hack/prometheus/build.sh | tail -n1)
export PROMETHEUS_BIN=$prometheus_dir/prometheus PROMTOOL_BIN=$prometheus_dir/promtool
echo "set-up of Prometheus: $((SECONDS - start)) s ($("$PROMETHEUS_BIN" --version | head -n1))"

step "Python venvs: PyYAML (reference for tempo_endpoint), the OpenTelemetry SDK (tests/otel_e2e.rs)"
# A venv is made anew whenever its requirements file changed (its sha256 is
# kept in the venv), so it always holds exactly the pinned set.
python_venv() { # directory requirements-file
  local dir=$1 req=$2 want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" != "$want" ] || ! "$dir/bin/python" -c '' 2>/dev/null; then
    local start=$SECONDS
    python3 -m venv --clear "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$want" >"$dir/.requirements.sha256"
    echo "installed $req into $dir in $((SECONDS - start)) s"
  fi
}
python_venv "$cache/venv" hack/requirements.txt
python_venv "$cache/venv-zipkin" hack/requirements-zipkin.txt
venv=$cache/venv
export PYTHON=$venv/bin/python
export PYTHON_ZIPKIN=$cache/venv-zipkin/bin/python
export PATH=$venv/bin:$PATH
"$PYTHON" -c 'import yaml; print("PyYAML", yaml.__version__)'
"$PYTHON" -c 'from importlib.metadata import version as v; print("opentelemetry-sdk", v("opentelemetry-sdk"), "distro", v("opentelemetry-distro"))'
"$PYTHON_ZIPKIN" -c 'from importlib.metadata import version as v; print("zipkin venv: opentelemetry-sdk", v("opentelemetry-sdk"), "exporter-zipkin", v("opentelemetry-exporter-zipkin"))'

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
echo
echo "all checks passed in $((SECONDS - t0)) s"
