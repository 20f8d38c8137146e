# The operator image: one static (musl) binary on an empty base. No shell, no
# package manager, no libc, no /etc/passwd: it runs as the numeric user and
# group 65532 (the chart's runAsUser/runAsGroup).
#
# Nothing is pulled or compiled here: hack/image.sh builds the binary on the
# host (cargo build --release --target x86_64-unknown-linux-musl) and builds
# this file in a context directory that holds only that binary:
#
#   hack/image.sh                         # -> tracing-relation-operator:dev
#
# The binary talks to the API server with the CA of its ServiceAccount mount,
# so the image needs no CA bundle.
FROM scratch

ARG VERSION=dev
LABEL org.opencontainers.image.title="tracing-relation-operator" \
      org.opencontainers.image.description="Writes Grafana Tempo endpoints into the ConfigMaps of consumers bound by a TracingRelation" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# Owned by root and not writable by the runtime user.
COPY --chown=0:0 tracing-relation-operator /tracing-relation-operator

USER 65532:65532
# /metrics, /healthz and /readyz (--metrics-addr, chart value metrics.port).
EXPOSE 8080
ENTRYPOINT ["/tracing-relation-operator"]
