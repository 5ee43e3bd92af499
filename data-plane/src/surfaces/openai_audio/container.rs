//! An uploaded audio file's container, judged by its file name's extension and its leading
//! bytes (never by the part's content type: clients commonly send
//! `application/octet-stream`), and its duration, read from the container's own header where it
//! records one.
//!
//! | container | extensions            | leading bytes                                  | duration from                                    |
//! |-----------|-----------------------|------------------------------------------------|--------------------------------------------------|
//! | WAV       | `wav`                 | `RIFF` … `WAVE`                                | `data` chunk size ÷ `fmt` byte rate (exact)      |
//! | MP3       | `mp3`, `mpga`, `mpeg` | `ID3` tag, then an MPEG audio frame sync        | every frame's samples ÷ sample rate (a Xing/Info/VBRI frame is not audio) |
//! | FLAC      | `flac`                | `fLaC`                                         | STREAMINFO total samples ÷ sample rate           |
//! | Ogg       | `ogg`, `oga`, `opus`  | `OggS`                                         | last page's granule position ÷ rate (Opus: 48 kHz less pre-skip; Vorbis and FLAC: their rate) |
//! | MP4/M4A   | `mp4`, `m4a`          | `ftyp` at offset 4                             | `moov/mvhd` duration ÷ timescale                 |
//! | WebM      | `webm`                | EBML magic `1A 45 DF A3`                       | `Segment/Info` Duration × TimecodeScale (absent in live recordings) |
//!
//! Durations are milliseconds, rounded half up. Every reader works on the bytes already held
//! (the upload is read whole under its cap), returns `None` rather than guessing when the
//! header is missing, truncated or inconsistent, and never panics on arbitrary input.

use memchr::memmem;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Wav,
    Mp3,
    Flac,
    Ogg,
    Mp4,
    Webm,
}

/// The extensions the gateway accepts (OpenAI's list, plus `oga` and `opus` for Ogg).
pub const EXTENSIONS: &str = "flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, opus, wav, webm";

impl Container {
    pub fn as_str(self) -> &'static str {
        match self {
            Container::Wav => "wav",
            Container::Mp3 => "mp3",
            Container::Flac => "flac",
            Container::Ogg => "ogg",
            Container::Mp4 => "mp4",
            Container::Webm => "webm",
        }
    }

    /// The MIME type the file is sent upstream with.
    pub fn mime(self) -> &'static str {
        match self {
            Container::Wav => "audio/wav",
            Container::Mp3 => "audio/mpeg",
            Container::Flac => "audio/flac",
            Container::Ogg => "audio/ogg",
            Container::Mp4 => "audio/mp4",
            Container::Webm => "audio/webm",
        }
    }

    /// The container a file name's extension names (case-insensitive); `None` for another
    /// extension. A name without one is [`Extension::None`].
    pub fn from_file_name(name: &str) -> Extension {
        let Some((_, ext)) = name.rsplit_once('.') else {
            return Extension::None;
        };
        let c = match ext.to_ascii_lowercase().as_str() {
            "wav" => Container::Wav,
            "mp3" | "mpga" | "mpeg" => Container::Mp3,
            "flac" => Container::Flac,
            "ogg" | "oga" | "opus" => Container::Ogg,
            "mp4" | "m4a" => Container::Mp4,
            "webm" => Container::Webm,
            _ => return Extension::Unknown,
        };
        Extension::Known(c)
    }

    /// The container the leading bytes are, if any this module knows.
    pub fn sniff(data: &[u8]) -> Option<Container> {
        if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WAVE" {
            return Some(Container::Wav);
        }
        if data.starts_with(b"fLaC") {
            return Some(Container::Flac);
        }
        if data.starts_with(b"OggS") {
            return Some(Container::Ogg);
        }
        if data.len() >= 8 && &data[4..8] == b"ftyp" {
            return Some(Container::Mp4);
        }
        if data.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
            return Some(Container::Webm);
        }
        let audio = after_id3(data)?;
        if audio.starts_with(b"fLaC") {
            return Some(Container::Flac);
        }
        FrameHeader::parse(audio).map(|_| Container::Mp3)
    }

    /// The duration the container's header records, in milliseconds.
    pub fn duration_ms(self, data: &[u8]) -> Option<u64> {
        match self {
            Container::Wav => wav_ms(data),
            Container::Mp3 => mp3_ms(data),
            Container::Flac => flac_ms(after_id3(data)?),
            Container::Ogg => ogg_ms(data),
            Container::Mp4 => mp4_ms(data),
            Container::Webm => webm_ms(data),
        }
    }
}

/// What a file name's extension says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    Known(Container),
    /// An extension no accepted container has.
    Unknown,
    /// No extension at all: the leading bytes decide alone.
    None,
}

/// `count / rate` seconds in milliseconds, rounded half up; `None` for a zero rate.
fn ms(count: u64, rate: u64) -> Option<u64> {
    if rate == 0 {
        return None;
    }
    let v = (u128::from(count) * 1000 + u128::from(rate) / 2) / u128::from(rate);
    u64::try_from(v).ok()
}

fn u16_le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u32_be(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_be(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn u64_le(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The bytes after a leading ID3v2 tag (all of `data` when it has none); `None` when the tag
/// claims more bytes than there are.
fn after_id3(data: &[u8]) -> Option<&[u8]> {
    if !data.starts_with(b"ID3") {
        return Some(data);
    }
    let header = data.get(..10)?;
    // The size is "syncsafe": four 7-bit bytes. A footer (flag 0x10) adds 10 bytes.
    let size = header[6..10]
        .iter()
        .fold(0usize, |s, &b| (s << 7) | usize::from(b & 0x7F));
    let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
    data.get(10 + size + footer..)
}

/// WAV: the `data` chunk's size over the `fmt ` chunk's average byte rate. A data size of
/// `0xFFFFFFFF` (a streamed recording) or past the end counts the bytes present.
fn wav_ms(data: &[u8]) -> Option<u64> {
    let mut at = 12usize;
    let mut byte_rate = None;
    while at + 8 <= data.len() {
        let id = &data[at..at + 4];
        let size = u32_le(data, at + 4)?;
        let body = at + 8;
        if id == b"fmt " {
            byte_rate = Some(u64::from(u32_le(data, body + 8)?));
        } else if id == b"data" {
            let present = (data.len() - body) as u64;
            let size = u64::from(size).min(present);
            return ms(size, byte_rate?);
        }
        // Chunks are padded to an even size.
        at = body
            .checked_add(size as usize)?
            .checked_add(size as usize & 1)?;
    }
    None
}

/// FLAC: STREAMINFO (always the first metadata block): 20 bits of sample rate at byte 10 of
/// the block, then 36 bits of total samples (0: unknown).
fn flac_ms(data: &[u8]) -> Option<u64> {
    if !data.starts_with(b"fLaC") || data.get(4)? & 0x7F != 0 {
        return None;
    }
    streaminfo_ms(data.get(8..8 + 34)?)
}

fn streaminfo_ms(info: &[u8]) -> Option<u64> {
    let b = |i: usize| info.get(i).copied().map(u64::from);
    let rate = (b(10)? << 12) | (b(11)? << 4) | (b(12)? >> 4);
    let total = ((b(13)? & 0x0F) << 32) | (b(14)? << 24) | (b(15)? << 16) | (b(16)? << 8) | b(17)?;
    if total == 0 {
        return None;
    }
    ms(total, rate)
}

/// One MPEG audio frame header.
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    /// Bytes in the frame, header included.
    len: usize,
    samples: u64,
    rate: u64,
    /// Bytes of Layer III side information (where a Xing/Info tag would start after it).
    side_info: usize,
    crc: bool,
}

impl FrameHeader {
    fn parse(b: &[u8]) -> Option<FrameHeader> {
        let h = b.get(..4)?;
        if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
            return None;
        }
        // Version: 0 = MPEG 2.5, 2 = MPEG 2, 3 = MPEG 1 (1 reserved).
        let version = (h[1] >> 3) & 0x03;
        // Layer: 1 = III, 2 = II, 3 = I (0 reserved: ADTS AAC carries the same sync).
        let layer = (h[1] >> 1) & 0x03;
        let bitrate_index = usize::from(h[2] >> 4);
        let rate_index = usize::from((h[2] >> 2) & 0x03);
        if version == 1
            || layer == 0
            || bitrate_index == 0
            || bitrate_index == 15
            || rate_index == 3
        {
            // Reserved values, or free format (index 0: no length to walk by).
            return None;
        }
        let mpeg1 = version == 3;
        const KBPS_V1: [[u32; 15]; 3] = [
            [
                0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
            ],
            [
                0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
            ],
            [
                0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
            ],
        ];
        const KBPS_V2: [[u32; 15]; 2] = [
            [
                0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
            ],
            [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
        ];
        // Layer I = 0, II = 1, III = 2.
        let layer_no = usize::from(3 - layer);
        let kbps = if mpeg1 {
            KBPS_V1[layer_no][bitrate_index]
        } else {
            KBPS_V2[usize::from(layer_no > 0)][bitrate_index]
        };
        let base_rate = [44_100u32, 48_000, 32_000][rate_index];
        let rate = match version {
            3 => base_rate,
            2 => base_rate / 2,
            _ => base_rate / 4,
        };
        let padding = u32::from((h[2] >> 1) & 0x01);
        let bps = kbps * 1000;
        let (len, samples) = match layer_no {
            0 => ((12 * bps / rate + padding) * 4, 384),
            1 => (144 * bps / rate + padding, 1152),
            _ if mpeg1 => (144 * bps / rate + padding, 1152),
            _ => (72 * bps / rate + padding, 576),
        };
        let mono = h[3] >> 6 == 3;
        let side_info = match (mpeg1, mono) {
            (true, false) => 32,
            (true, true) | (false, false) => 17,
            (false, true) => 9,
        };
        Some(FrameHeader {
            len: len as usize,
            samples,
            rate: u64::from(rate),
            side_info,
            crc: h[1] & 0x01 == 0,
        })
    }

    /// A Xing/Info or VBRI frame: a table of contents in a silent frame, not audio.
    fn is_tag(&self, frame: &[u8]) -> bool {
        let at = 4 + self.side_info + if self.crc { 2 } else { 0 };
        let tag = frame.get(at..at + 4);
        tag == Some(b"Xing") || tag == Some(b"Info") || frame.get(36..40) == Some(b"VBRI")
    }
}

/// MP3: the frames walked one by one from the first, their samples summed at the first
/// frame's rate; the walk ends where no frame follows (an ID3v1 tag, the end, junk). Exact for
/// constant and variable bit rates alike.
fn mp3_ms(data: &[u8]) -> Option<u64> {
    let mut at = 0usize;
    let audio = after_id3(data)?;
    let mut samples = 0u64;
    let mut rate = None;
    while let Some(h) = audio.get(at..).and_then(FrameHeader::parse) {
        let frame = audio.get(at..at + h.len)?;
        if *rate.get_or_insert(h.rate) != h.rate {
            break;
        }
        if !(at == 0 && h.is_tag(frame)) {
            samples += h.samples;
        }
        at += h.len;
    }
    if samples == 0 {
        return None;
    }
    ms(samples, rate?)
}

/// Ogg: the granule position of the last page that has one, over the stream's rate, read from
/// its first packet (Opus: granules are 48 kHz samples, less the pre-skip; Vorbis: the
/// identification header's rate; FLAC in Ogg: STREAMINFO's).
fn ogg_ms(data: &[u8]) -> Option<u64> {
    // The first page's first packet starts after the segment table.
    let segments = usize::from(*data.get(26)?);
    let packet = data.get(27 + segments..)?;
    let (rate, pre_skip) = if packet.starts_with(b"OpusHead") {
        (48_000u64, u64::from(u16_le(packet, 10)?))
    } else if packet.starts_with(b"\x01vorbis") {
        (u64::from(u32_le(packet, 12)?), 0)
    } else if packet.starts_with(b"\x7FFLAC") {
        // 0x7F "FLAC", 2 version bytes, 2 header-count bytes, "fLaC", a metadata block header.
        let info = packet.get(17..17 + 34)?;
        let rate =
            (u64::from(info[10]) << 12) | (u64::from(info[11]) << 4) | (u64::from(info[12]) >> 4);
        return ms(ogg_granule(data)?, rate);
    } else {
        return None;
    };
    ms(ogg_granule(data)?.checked_sub(pre_skip)?, rate)
}

/// The granule position of the last page that carries one (`-1`: no packet ends there).
fn ogg_granule(data: &[u8]) -> Option<u64> {
    let mut end = data.len();
    while let Some(at) = memmem::rfind(&data[..end], b"OggS") {
        if data.get(at + 4) == Some(&0) {
            let granule = u64_le(data, at + 6)?;
            if granule != u64::MAX {
                return Some(granule);
            }
        }
        end = at;
    }
    None
}

/// MP4/M4A: `moov/mvhd`'s duration over its timescale (version 0: 32-bit fields, 1: 64-bit).
fn mp4_ms(data: &[u8]) -> Option<u64> {
    let moov = find_box(data, b"moov")?;
    let mvhd = find_box(moov, b"mvhd")?;
    let (timescale, duration) = match mvhd.first()? {
        0 => (u64::from(u32_be(mvhd, 12)?), u64::from(u32_be(mvhd, 16)?)),
        1 => (u64::from(u32_be(mvhd, 20)?), u64_be(mvhd, 24)?),
        _ => return None,
    };
    if duration == 0 || duration == u64::from(u32::MAX) || duration == u64::MAX {
        return None;
    }
    ms(duration, timescale)
}

/// The payload of the first box of `kind` among the boxes laid out in `data`.
fn find_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let size = u64::from(u32_be(data, at)?);
        let (header, size) = match size {
            0 => (8, (data.len() - at) as u64),
            1 => (16, u64_be(data, at + 8)?),
            s => (8, s),
        };
        let size = usize::try_from(size).ok()?;
        if size < header {
            return None;
        }
        let end = at.checked_add(size)?;
        if &data[at + 4..at + 8] == kind {
            return data.get(at + header..end.min(data.len()));
        }
        at = end;
    }
    None
}

/// An EBML variable-length integer at `at`: its value (with the length marker kept for ids,
/// removed for sizes) and its length. An all-ones size is "unknown" (`u64::MAX`).
fn vint(data: &[u8], at: usize, keep_marker: bool) -> Option<(u64, usize)> {
    let first = *data.get(at)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let bytes = data.get(at..at + len)?;
    let marker = if keep_marker {
        0xFF
    } else {
        (0xFFu16 >> len) as u8
    };
    let mut v = u64::from(first & marker);
    for &b in &bytes[1..] {
        v = (v << 8) | u64::from(b);
    }
    let all_ones = (1u64 << (7 * len)) - 1;
    if !keep_marker && v == all_ones {
        return Some((u64::MAX, len));
    }
    Some((v, len))
}

/// WebM: `Segment/Info`'s Duration (a float in timecode units) × TimecodeScale (nanoseconds a
/// unit, 1 ms by default). Browser recordings often carry no Duration: `None` then.
fn webm_ms(data: &[u8]) -> Option<u64> {
    const SEGMENT: u64 = 0x1853_8067;
    const INFO: u64 = 0x1549_A966;
    const CLUSTER: u64 = 0x1F43_B675;
    const TIMECODE_SCALE: u64 = 0x2A_D7B1;
    const DURATION: u64 = 0x4489;
    let mut at = 0usize;
    // Top level: skip the EBML header, enter the Segment; inside it, find Info.
    let info = loop {
        let (id, id_len) = vint(data, at, true)?;
        let (size, size_len) = vint(data, at + id_len, false)?;
        let body = at + id_len + size_len;
        match id {
            SEGMENT => at = body,
            INFO => break data.get(body..body.checked_add(usize::try_from(size).ok()?)?)?,
            CLUSTER => return None,
            _ if size == u64::MAX => return None,
            // The EBML header and anything else before Info: skipped.
            _ => at = body.checked_add(usize::try_from(size).ok()?)?,
        }
    };
    let mut scale = 1_000_000u64;
    let mut duration = None;
    let mut at = 0usize;
    while at < info.len() {
        let (id, id_len) = vint(info, at, true)?;
        let (size, size_len) = vint(info, at + id_len, false)?;
        let body = at + id_len + size_len;
        let end = body.checked_add(usize::try_from(size).ok()?)?;
        let value = info.get(body..end)?;
        match id {
            TIMECODE_SCALE => scale = value.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)),
            DURATION => {
                duration = match value.len() {
                    4 => Some(f64::from(f32::from_be_bytes(value.try_into().ok()?))),
                    8 => Some(f64::from_be_bytes(value.try_into().ok()?)),
                    _ => None,
                }
            }
            _ => {}
        }
        at = end;
    }
    // Nanoseconds to milliseconds, rounded; a measurement, not money.
    let ms = duration? * scale as f64 / 1_000_000.0;
    (ms.is_finite() && ms > 0.0 && ms < u64::MAX as f64).then(|| ms.round() as u64)
}

#[cfg(test)]
pub(crate) mod tests;
