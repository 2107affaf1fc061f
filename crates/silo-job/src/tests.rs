//! Fixture tests for the job layer: v1 and v2 trees laid out in temp dirs.
