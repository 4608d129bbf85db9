#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| pausewatch_fuzz::go_pclntab(data));
