//! End-to-end scenarios: real services, real gRPC.

mod bad_input;
mod binaries;
mod compose;
mod quickstart;
mod registry_lifecycle;
mod security;
mod transport_and_storage;
