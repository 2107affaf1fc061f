//! TODO: fds
