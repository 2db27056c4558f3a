//! Fuzz the safetensors header reader (raw file bytes): `folio_tests::fuzz::header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    folio_tests::fuzz::header(data);
});
