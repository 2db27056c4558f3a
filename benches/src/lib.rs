//! folio benchmarks (see benches/).
