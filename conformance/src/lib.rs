//! Test support for the keel conformance suite.
