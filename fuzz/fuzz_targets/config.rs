//! Fuzz the config and vocabulary parser (metadata values separated by 0xFF):
//! `folio_tests::fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    folio_tests::fuzz::config(data);
});
