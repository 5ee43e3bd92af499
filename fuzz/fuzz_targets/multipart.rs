//! Video create bodies, JSON or multipart/form-data: the peek, the model rewrite and the
//! field reader; a form that reads must read again after the rewrite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    modelgate_data_plane::fuzzing::multipart(data);
});
