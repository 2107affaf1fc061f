//! TODO: user
