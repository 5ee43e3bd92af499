//! Client request bodies and provider answers/errors: every peek, translation and usage reader.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    modelgate_data_plane::fuzzing::bodies(data);
});
