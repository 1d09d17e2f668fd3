//! Parse, validate and compile graph JSON (and whatever else the bytes are:
//! `parse_input` also takes a compiled IR). See `hardmerge_fuzz::check`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hardmerge_fuzz::check(data));
