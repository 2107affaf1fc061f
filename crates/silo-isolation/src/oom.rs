//! TODO: oom
