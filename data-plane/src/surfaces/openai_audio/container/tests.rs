use super::*;

/// A PCM WAV file: `rate` Hz, `channels`, 16-bit, `frames` sample frames, with an extra chunk
/// before `data` (odd-sized, so its padding byte is exercised).
pub(crate) fn wav(rate: u32, channels: u16, frames: u32) -> Vec<u8> {
    let block = u32::from(channels) * 2;
    let data_len = frames * block;
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(4 + 26 + 8 + 3 + 1 + 8 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVE");
    v.extend_from_slice(b"fmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * block).to_le_bytes());
    v.extend_from_slice(&(block as u16).to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"LIST");
    v.extend_from_slice(&3u32.to_le_bytes());
    v.extend_from_slice(b"abc\0");
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.resize(v.len() + data_len as usize, 0);
    v
}

/// `n` MPEG-1 Layer III frames, 128 kb/s, 44.1 kHz, mono: 417 bytes and 1152 samples each.
fn mp3_frames(n: usize, padding_every: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        let pad = padding_every > 0 && i % padding_every == 0;
        let len = 417 + usize::from(pad);
        v.extend_from_slice(&[0xFF, 0xFB, 0x90 | if pad { 0x02 } else { 0 }, 0xC4]);
        v.resize(v.len() + len - 4, 0);
    }
    v
}

fn id3(body: usize) -> Vec<u8> {
    let mut v = b"ID3\x04\x00\x00".to_vec();
    v.extend_from_slice(&[
        ((body >> 21) & 0x7F) as u8,
        ((body >> 14) & 0x7F) as u8,
        ((body >> 7) & 0x7F) as u8,
        (body & 0x7F) as u8,
    ]);
    v.resize(10 + body, 0);
    v
}

fn flac(rate: u32, total: u64) -> Vec<u8> {
    let mut v = b"fLaC".to_vec();
    v.extend_from_slice(&[0x80, 0, 0, 34]); // last block, STREAMINFO, 34 bytes
    let mut info = [0u8; 34];
    info[10] = (rate >> 12) as u8;
    info[11] = (rate >> 4) as u8;
    info[12] = ((rate & 0x0F) << 4) as u8 | 0x01; // 1 channel - 1 = 0, bps bits
    info[13] = 0xF0 | ((total >> 32) & 0x0F) as u8;
    info[14..18].copy_from_slice(&(total as u32).to_be_bytes());
    v.extend_from_slice(&info);
    v
}

fn ogg_page(granule: u64, packet: &[u8]) -> Vec<u8> {
    let mut v = b"OggS\0\x02".to_vec();
    v.extend_from_slice(&granule.to_le_bytes());
    v.extend_from_slice(&[0; 12]); // serial, sequence, checksum
    v.push(1);
    v.push(packet.len() as u8);
    v.extend_from_slice(packet);
    v
}

fn opus(pre_skip: u16, last_granule: u64) -> Vec<u8> {
    let mut head = b"OpusHead\x01\x01".to_vec();
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&[0, 0, 0]);
    let mut v = ogg_page(0, &head);
    v.extend(ogg_page(u64::MAX, b"OpusTags"));
    v.extend(ogg_page(last_granule, &[0; 40]));
    v
}

fn mp4(timescale: u32, duration: u32) -> Vec<u8> {
    let mut mvhd = vec![0u8; 4 + 4 + 4]; // version 0, flags, creation, modification
    mvhd.extend_from_slice(&timescale.to_be_bytes());
    mvhd.extend_from_slice(&duration.to_be_bytes());
    mvhd.resize(100, 0);
    let boxed = |kind: &[u8], body: &[u8]| {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    };
    let mut v = boxed(b"ftyp", b"M4A \0\0\0\0isomM4A ");
    v.extend(boxed(b"free", &[0; 5]));
    let moov = [boxed(b"trak", &[0; 12]), boxed(b"mvhd", &mvhd)].concat();
    v.extend(boxed(b"moov", &moov));
    v
}

fn webm(scale: Option<u32>, duration: Option<f64>) -> Vec<u8> {
    let mut info = Vec::new();
    if let Some(s) = scale {
        info.extend_from_slice(&[0x2A, 0xD7, 0xB1, 0x84]);
        info.extend_from_slice(&s.to_be_bytes());
    }
    if let Some(d) = duration {
        info.extend_from_slice(&[0x44, 0x89, 0x88]);
        info.extend_from_slice(&d.to_be_bytes());
    }
    let mut v = vec![0x1A, 0x45, 0xDF, 0xA3, 0x84, 0x42, 0x86, 0x81, 0x01];
    // Segment of unknown size (as live recordings write it), then Info.
    v.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    v.extend_from_slice(&[0x15, 0x49, 0xA9, 0x66, 0x80 | info.len() as u8]);
    v.extend(info);
    v.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75, 0xFF]);
    v
}

#[test]
fn each_container_is_recognised_by_its_leading_bytes() {
    assert_eq!(Container::sniff(&wav(8_000, 1, 10)), Some(Container::Wav));
    assert_eq!(Container::sniff(&mp3_frames(2, 0)), Some(Container::Mp3));
    assert_eq!(
        Container::sniff(&[id3(20), mp3_frames(1, 0)].concat()),
        Some(Container::Mp3)
    );
    assert_eq!(Container::sniff(&flac(44_100, 1)), Some(Container::Flac));
    assert_eq!(Container::sniff(&opus(312, 48_000)), Some(Container::Ogg));
    assert_eq!(Container::sniff(&mp4(1000, 1)), Some(Container::Mp4));
    assert_eq!(
        Container::sniff(&webm(None, Some(1.0))),
        Some(Container::Webm)
    );
    // Text, a PNG, an ID3 tag with nothing after it, ADTS AAC (same sync, layer 0).
    assert_eq!(Container::sniff(b"hello, this is not audio"), None);
    assert_eq!(Container::sniff(b"\x89PNG\r\n\x1a\n0000"), None);
    assert_eq!(Container::sniff(&id3(20)), None);
    assert_eq!(Container::sniff(&[0xFF, 0xF1, 0x50, 0x80, 0, 0]), None);
    assert_eq!(Container::sniff(&[]), None);
}

#[test]
fn file_name_extensions_name_containers_case_insensitively() {
    use Extension::*;
    assert_eq!(Container::from_file_name("a.WAV"), Known(Container::Wav));
    assert_eq!(Container::from_file_name("x.y.mpga"), Known(Container::Mp3));
    assert_eq!(Container::from_file_name("talk.m4a"), Known(Container::Mp4));
    assert_eq!(
        Container::from_file_name("talk.opus"),
        Known(Container::Ogg)
    );
    assert_eq!(Container::from_file_name("notes.txt"), Unknown);
    assert_eq!(Container::from_file_name("upload"), None);
}

#[test]
fn wav_duration_is_exact_from_the_header() {
    // 16 kHz stereo 16-bit: 64000 bytes a second; 24000 frames = 1.5 s.
    assert_eq!(
        Container::Wav.duration_ms(&wav(16_000, 2, 24_000)),
        Some(1_500)
    );
    // 8 kHz mono, 12 frames = 1.5 ms -> 2 (half up).
    assert_eq!(Container::Wav.duration_ms(&wav(8_000, 1, 12)), Some(2));
    // A streamed recording's data size 0xFFFFFFFF counts the bytes present.
    let mut streamed = wav(8_000, 1, 8_000);
    let at = streamed.len() - 16_000 - 4;
    streamed[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(Container::Wav.duration_ms(&streamed), Some(1_000));
    // No fmt chunk before data, or a truncated header: no figure.
    assert_eq!(Container::Wav.duration_ms(&wav(8_000, 1, 10)[..30]), None);
}

#[test]
fn mp3_duration_walks_every_frame_and_skips_the_tag_frame() {
    // 100 frames × 1152 samples / 44100 Hz = 2612.24 ms; padding varies frame lengths.
    let frames = mp3_frames(100, 3);
    assert_eq!(Container::Mp3.duration_ms(&frames), Some(2_612));
    let tagged = [id3(300), frames.clone(), b"TAG".to_vec(), vec![0; 125]].concat();
    assert_eq!(Container::Mp3.duration_ms(&tagged), Some(2_612));
    // A first frame carrying a Xing table is not audio: 99 frames.
    let mut xing = frames;
    xing[4 + 17..4 + 21].copy_from_slice(b"Xing");
    assert_eq!(Container::Mp3.duration_ms(&xing), Some(2_586));
}

#[test]
fn flac_ogg_mp4_and_webm_durations_come_from_their_headers() {
    assert_eq!(
        Container::Flac.duration_ms(&flac(44_100, 441_000)),
        Some(10_000)
    );
    // More than 32 bits of samples.
    assert_eq!(
        Container::Flac.duration_ms(&flac(48_000, 0x1_0000_0000)),
        Some(89_478_485)
    );
    assert_eq!(Container::Flac.duration_ms(&flac(44_100, 0)), None);
    // Opus: 96312 granules less 312 pre-skip at 48 kHz = 2 s.
    assert_eq!(Container::Ogg.duration_ms(&opus(312, 96_312)), Some(2_000));
    assert_eq!(
        Container::Mp4.duration_ms(&mp4(44_100, 66_150)),
        Some(1_500)
    );
    assert_eq!(
        Container::Webm.duration_ms(&webm(None, Some(2_500.0))),
        Some(2_500)
    );
    assert_eq!(
        Container::Webm.duration_ms(&webm(Some(100_000), Some(123.0))),
        Some(12)
    );
    // A live recording without a Duration.
    assert_eq!(Container::Webm.duration_ms(&webm(None, None)), None);
}

#[test]
fn readers_never_panic_on_truncated_or_arbitrary_bytes() {
    let samples = [
        wav(8_000, 1, 100),
        [id3(30), mp3_frames(5, 2)].concat(),
        flac(44_100, 1000),
        opus(0, 4800),
        mp4(1000, 1000),
        webm(Some(1_000_000), Some(10.0)),
    ];
    let containers = [
        Container::Wav,
        Container::Mp3,
        Container::Flac,
        Container::Ogg,
        Container::Mp4,
        Container::Webm,
    ];
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for sample in &samples {
        for cut in 0..sample.len() {
            for c in containers {
                let _ = c.duration_ms(&sample[..cut]);
            }
            let _ = Container::sniff(&sample[..cut]);
        }
        for _ in 0..200 {
            let mut mutated = sample.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % mutated.len();
                mutated[at] = (seed >> 32) as u8;
            }
            for c in containers {
                let _ = c.duration_ms(&mutated);
            }
        }
    }
}
