//! glassbox's integration tests, one binary with a module per topic.

mod build;
mod chunking;
mod cli;
mod common;
mod compare;
mod cpu_kernels;
mod explain;
mod golden;
mod gpu;
mod incremental;
mod kernelshap;
mod known_answers;
mod lime;
mod parity;
mod rise;
mod sanity;
mod study;
mod target;
