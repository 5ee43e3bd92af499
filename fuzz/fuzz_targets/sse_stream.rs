//! Provider SSE streams: framing independent of chunk boundaries; every stream translation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    modelgate_data_plane::fuzzing::sse_stream(data);
});
