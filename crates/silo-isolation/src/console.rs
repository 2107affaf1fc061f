//! TODO: console
