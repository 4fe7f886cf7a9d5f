//! The device that produced a reading.

use super::FieldError;

const MAX_LEN: usize = 64;

/// Identifiers of the sensor system. Each is optional, printable ASCII, at most 64 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DeviceInfo {
    device_id: Option<String>,
    serial_number: Option<String>,
    transmitter_id: Option<String>,
}

impl DeviceInfo {
    pub fn parse(
        device_id: Option<String>,
        serial_number: Option<String>,
        transmitter_id: Option<String>,
    ) -> Result<Self, FieldError> {
        Ok(Self {
            device_id: identifier("/device_info/device_id", device_id)?,
            serial_number: identifier("/device_info/serial_number", serial_number)?,
            transmitter_id: identifier("/device_info/transmitter_id", transmitter_id)?,
        })
    }

    pub fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }
    pub fn serial_number(&self) -> Option<&str> {
        self.serial_number.as_deref()
    }
    pub fn transmitter_id(&self) -> Option<&str> {
        self.transmitter_id.as_deref()
    }
    /// `parse`'s rule for one identifier, on a borrowed value: an empty one is
    /// absent. For readers that check stored rows without building a `DeviceInfo`
    /// (the range read path encodes rows straight into the response).
    pub fn borrowed_identifier(raw: Option<&str>) -> Result<Option<&str>, FieldError> {
        match raw {
            None | Some("") => Ok(None),
            Some(s) => check("/device_info", s).map(|()| Some(s)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.device_id.is_none() && self.serial_number.is_none() && self.transmitter_id.is_none()
    }
}

fn identifier(pointer: &str, raw: Option<String>) -> Result<Option<String>, FieldError> {
    match raw {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => check(pointer, &s).map(|()| Some(s)),
    }
}

fn check(pointer: &str, s: &str) -> Result<(), FieldError> {
    if s.len() > MAX_LEN {
        Err(FieldError::new(
            pointer,
            format!("must be at most {MAX_LEN} characters"),
        ))
    } else if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Err(FieldError::new(pointer, "must be printable ASCII"))
    } else {
        Ok(())
    }
}
