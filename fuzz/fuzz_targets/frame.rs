//! Arbitrary bytes into every peer-link frame decoder: no panic, no unsealed frame accepted,
//! no read past the size limit (`duet_frame::check_decoders`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    duet_frame::check_decoders(data);
});
