//! The plugin driver (being written).
