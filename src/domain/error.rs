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

    /// A short, stable reason for metrics: the reading field at fault, from a
    /// fixed set (`unknown_field` for anything else, so clients cannot mint new
    /// label values).
    pub fn reason(&self) -> &'static str {
        const FIELDS: [&str; 17] = [
            "user_id",
            "timestamp",
            "glucose_value",
            "glucose_unit",
            "trend_direction",
            "trend_rate",
            "device_info",
            "device_id",
            "serial_number",
            "transmitter_id",
            "reading_type",
            "source",
            "status",
            "source_record_id",
            "display_offset_minutes",
            "version",
            "created_at",
        ];
        match self.pointer.rsplit('/').next() {
            Some(field) if !field.is_empty() && !field.bytes().all(|b| b.is_ascii_digit()) => {
                FIELDS
                    .iter()
                    .find(|f| **f == field)
                    .copied()
                    .unwrap_or("unknown_field")
            }
            _ => "record",
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
