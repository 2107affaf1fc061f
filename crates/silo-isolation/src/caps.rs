//! TODO: caps
