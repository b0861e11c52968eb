//! Dataset import: sources → archive → layout → images → profile → normalized copy.

pub mod archive;
pub mod fetch;
pub mod layout;
pub mod table;
