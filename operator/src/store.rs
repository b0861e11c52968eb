//! Where artifacts and backbones live (`s3://bucket/prefix` or `pvc://claim/sub/path`), and
//! how a trainer pod reaches them: the contract's [`Location`], shared with the trainer.

pub use ocellus_crds::contract::location::Location;
