//! weir-perf
