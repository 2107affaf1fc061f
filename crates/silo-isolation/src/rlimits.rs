//! TODO: rlimits
