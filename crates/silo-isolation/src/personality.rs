//! TODO: personality
