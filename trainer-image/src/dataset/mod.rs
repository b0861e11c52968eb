//! Dataset import: sources → archive → layout → images → profile → normalized copy.

pub mod archive;
pub mod fetch;
pub mod images;
pub mod import;
pub mod layout;
pub mod normalized;
pub mod profile;
pub mod split;
pub mod table;
