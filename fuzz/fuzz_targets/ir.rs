//! Compile a compiled IR read back (compile takes its own output). Its
//! corpus holds the fixtures compiled with both strategies; the check is the
//! same as the graph target's, only the seeds differ.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hardmerge_fuzz::check(data));
