//! Stand-ins for the outside world we cannot reach from tests or a laptop,
//! speaking the real wire formats (`cgm-hub simulate dexcom`).

pub mod dexcom;
