//! The seed-000 topology in network namespaces (filled in by the lab work).
