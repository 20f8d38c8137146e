//! Logging: structured `tracing` events, as text or JSON, filtered by a level.
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. `format` is `text` or `json`.
pub fn init(format: &str, level: &str) -> Result<(), String> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("invalid --log-level {level:?}: {e}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let res = if format == "json" {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init()
    } else {
        // Colours only on a terminal (and never with NO_COLOR): `kubectl logs`
        // and files get plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
            && std::env::var_os("NO_COLOR").is_none();
        registry.with(fmt::layer().with_ansi(ansi)).try_init()
    };
    res.map_err(|e| format!("cannot install the logger: {e}"))
}
