//! TODO: mounts
