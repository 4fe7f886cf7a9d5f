//! Stand-ins for the outside world we cannot reach from tests or a laptop,
//! speaking the real wire formats (`cgm-hub simulate dexcom`), and the
//! synthetic patients (`patients`) whose readings they serve.

pub mod dexcom;
pub mod patients;
