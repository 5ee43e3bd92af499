//! Audio uploads, files, speech requests and transcription answers: every reader of the audio
//! surfaces; an upload that reads must read again after its re-encoding, only `model` changed.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    modelgate_data_plane::fuzzing::audio(data);
});
