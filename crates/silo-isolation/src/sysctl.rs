//! TODO: sysctl
