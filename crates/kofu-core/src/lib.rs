//! kofu's pure domain: the session state machine, the registry's record model and the
//! deterministic synthetic population. No I/O, no clocks, no actors.

pub mod population;
pub mod records;
pub mod session;

pub use population::{KioskCredential, Population, PopulationSpec, SpecError, issuer_seed};
