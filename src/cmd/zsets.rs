//! zsets
