//! Fuzz Model::from_bytes, a few generation steps and sampling (16-byte run prefix, then a
//! file): `folio_tests::fuzz::model`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    folio_tests::fuzz::model(data);
});
