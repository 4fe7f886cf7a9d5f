//! The process section: which environment this is and how it logs. Parsed first,
//! because the other sections' rules depend on the environment.

use super::{invalid, ConfigError, Vars};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceEnv {
    Development,
    Staging,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// SERVICE_ENV.
pub(super) fn env(v: &Vars<'_>) -> Result<ServiceEnv, ConfigError> {
    match v.get("SERVICE_ENV").to_ascii_lowercase().as_str() {
        "development" | "dev" => Ok(ServiceEnv::Development),
        "staging" => Ok(ServiceEnv::Staging),
        "production" | "prod" => Ok(ServiceEnv::Production),
        other => Err(invalid(
            "SERVICE_ENV",
            format!("{other:?} is not development, staging or production"),
        )),
    }
}

/// LOG_LEVEL and LOG_FORMAT.
pub(super) fn logging(v: &Vars<'_>) -> Result<(tracing::Level, LogFormat), ConfigError> {
    let level = match v.get("LOG_LEVEL").to_ascii_uppercase().as_str() {
        "TRACE" => tracing::Level::TRACE,
        "DEBUG" => tracing::Level::DEBUG,
        "INFO" => tracing::Level::INFO,
        "WARNING" | "WARN" => tracing::Level::WARN,
        "ERROR" | "CRITICAL" => tracing::Level::ERROR,
        other => {
            return Err(invalid(
                "LOG_LEVEL",
                format!("{other:?} is not DEBUG, INFO, WARNING, ERROR or CRITICAL"),
            ))
        }
    };
    let format = match v.get("LOG_FORMAT").to_ascii_lowercase().as_str() {
        "json" => LogFormat::Json,
        "pretty" | "text" => LogFormat::Pretty,
        other => {
            return Err(invalid(
                "LOG_FORMAT",
                format!("{other:?} is not json or pretty"),
            ))
        }
    };
    Ok((level, format))
}
