//! TODO: ns
