//! kofu's pure domain: the session state machine, the registry's record model, the
//! deterministic synthetic population and the shard-to-node assignment. No I/O, no
//! clocks, no actors.

pub mod assignment;
pub mod population;
pub mod records;
pub mod registry_file;
pub mod session;
pub mod wareki;

pub use population::{KioskCredential, Population, PopulationSpec, SpecError, issuer_seed};
