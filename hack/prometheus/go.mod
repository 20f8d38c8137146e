// Wrapper module: builds Prometheus 3.16.0 and promtool with only the file,
// HTTP and static service discovery (build tag remove_all_sd). See build.sh.
// Not tidied on purpose: `go mod tidy` ignores build tags and would pin the
// modules of every discovery plugin; go.sum holds what build.sh's builds need.
module tracing-relation-operator/hack/prometheus

go 1.26.7

require github.com/prometheus/prometheus v0.316.0
