//! A validation failure that names the offending field.

use std::fmt;

/// Why a value was refused, and where. `pointer` is a JSON pointer relative to the
/// record (`/glucose_value`); bulk callers prefix it with the record's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        let pointer = if field.is_empty() || field.starts_with('/') {
            field.to_owned()
        } else {
            format!("/{field}")
        };
        Self {
            pointer,
            message: message.into(),
        }
    }

    /// The same error, located inside a parent (`/readings/3` + `/timestamp`).
    pub fn within(mut self, parent: &str) -> Self {
        self.pointer = format!("{parent}{}", self.pointer);
        self
    }

    /// A short, stable, machine-readable reason (the last pointer segment), used
    /// as a metrics label so rejections can be counted per field.
    pub fn reason(&self) -> &str {
        match self.pointer.rsplit('/').next() {
            Some("") | None => "body",
            Some(field) if field.chars().all(|c| c.is_ascii_digit()) => "record",
            Some(field) => field,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

impl std::error::Error for FieldError {}
