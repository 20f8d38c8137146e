#!/usr/bin/env python3
"""Send one span with the Python OpenTelemetry SDK, configured only from the
process environment, as a pod that loads a consumer ConfigMap with `envFrom`
would be.

    send_span.py                                   # the SDK's own env configuration
    opentelemetry-instrument python send_span.py   # zero-code: metrics and logs on too

Nothing here names an endpoint, a protocol or an exporter: the SDK reads
OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_ZIPKIN_ENDPOINT,
OTEL_METRICS_EXPORTER, OTEL_LOGS_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, ... by
itself. Run plainly, the SDK's configurator (the one `opentelemetry-instrument`
runs, without the distro's defaults) sets up exactly the exporters the
environment names. Run under `opentelemetry-instrument`, the distro has already
configured the SDK with its defaults (OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER
and OTEL_LOGS_EXPORTER `otlp`, OTEL_EXPORTER_OTLP_PROTOCOL `grpc`, unless set),
and this script only uses it.

It creates one span, inside it adds 1 to a counter and emits one log record
(so that a configured metrics or logs exporter has something to send), then
shuts the tracer, meter and logger providers down, which flushes every exporter.

stdout: the span's trace id, 32 lowercase hex digits, and nothing else (nothing
when it exits 2).
stderr: how the SDK was configured, and every warning or error the SDK logged.
Exit status: 0 when no exporter reported a problem; 1 when the SDK logged a
warning or error (an export that failed, was refused or was retried: the OTLP,
Zipkin and batch-processor code report these only through the `opentelemetry`
loggers); 2 when no trace exporter is configured at all (the span could not
leave the process).
"""

import logging
import os
import sys


class _Problems(logging.Handler):
    """Keeps every WARNING-or-worse record of the `opentelemetry` loggers."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _count_every_failure() -> None:
    """Removes the SDK's DuplicateFilter from the exporters' loggers (created
    while the SDK was configured). The filter drops a record whose message
    format equals the previous one within 20 s: the gRPC metrics and logs
    exporters share one logger and one "Failed to export %s to %s" format, so
    with it a refused logs export right after a refused metrics export would go
    unseen. Only logging changes; what is exported does not."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("opentelemetry") and isinstance(logger, logging.Logger):
            for f in list(logger.filters):
                if type(f).__name__ == "DuplicateFilter":
                    logger.removeFilter(f)


def main() -> int:
    problems = _Problems()
    otel_logger = logging.getLogger("opentelemetry")
    otel_logger.addHandler(problems)
    shown = logging.StreamHandler(sys.stderr)
    shown.setFormatter(logging.Formatter("send_span.py: SDK %(levelname)s %(name)s: %(message)s"))
    otel_logger.addHandler(shown)

    from opentelemetry import _logs, metrics, trace
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        configured_by = "opentelemetry-instrument (the distro's defaults apply)"
    else:
        from opentelemetry.distro import OpenTelemetryConfigurator

        OpenTelemetryConfigurator().configure()
        configured_by = "the SDK's environment configurator"
    _count_every_failure()
    signals = {
        name: os.environ.get(var) or "(unset)"
        for name, var in (
            ("traces", "OTEL_TRACES_EXPORTER"),
            ("metrics", "OTEL_METRICS_EXPORTER"),
            ("logs", "OTEL_LOGS_EXPORTER"),
        )
    }
    print(
        f"send_span.py: configured by {configured_by}; exporters: "
        + ", ".join(f"{k}={v}" for k, v in signals.items()),
        file=sys.stderr,
    )
    traces_exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if traces_exporter in ("", "none"):
        print(
            "send_span.py: no trace exporter configured (OTEL_TRACES_EXPORTER is unset or "
            "none), so the span cannot leave this process",
            file=sys.stderr,
        )
        return 2

    tracer = trace.get_tracer("send_span")
    counter = metrics.get_meter("send_span").create_counter(
        "send_span.spans", description="spans sent by send_span.py"
    )
    log = _logs.get_logger("send_span")
    with tracer.start_as_current_span("send_span") as span:
        span.set_attribute("send_span.pid", os.getpid())
        counter.add(1)
        log.emit(
            body="send_span.py sent a span",
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
        )
        trace_id = format(span.get_span_context().trace_id, "032x")

    for provider in (
        trace.get_tracer_provider(),
        metrics.get_meter_provider(),
        _logs.get_logger_provider(),
    ):
        shutdown = getattr(provider, "shutdown", None)
        if shutdown is not None:
            shutdown()

    print(trace_id)
    sys.stdout.flush()
    if problems.records:
        print(
            f"send_span.py: the SDK reported {len(problems.records)} export problem(s)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
