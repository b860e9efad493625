//! The Callback API parser and secret check on arbitrary bytes: `cargo fuzz run callback` (see fuzz/README.md).
//! The same checks run on stable in the test suite (crates/vk/tests/client/samples.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vk::callback::check_invariants(data);
});
