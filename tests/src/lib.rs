//! Shared helpers for folio's test suite (fixture writer, f64 reference).
