use super::*;

fn price(input: i64, output: i64) -> Price {
    Price {
        input_micros_per_mtok: input,
        output_micros_per_mtok: output,
        version: 1,
        ..Price::default()
    }
}

fn tokens(input: u64, output: u64) -> Tokens {
    Tokens {
        input,
        output,
        ..Tokens::default()
    }
}

#[test]
fn cost_is_exact_for_whole_millions() {
    // $0.15 / 1M input, $0.60 / 1M output.
    let p = price(150_000, 600_000);
    assert_eq!(
        cost_micros(tokens(2_000_000, 1_000_000), &p),
        300_000 + 600_000
    );
}

#[test]
fn cost_rounds_half_up_per_line() {
    let p = price(150_000, 600_000);
    // 10 input tokens at 0.15 micro-USD each = 1.5 -> 2; 3 output at 0.6 = 1.8 -> 2.
    assert_eq!(cost_micros(tokens(10, 3), &p), 4);
    assert_eq!(cost_micros(tokens(3, 0), &p), 0);
}

#[test]
fn cost_saturates_instead_of_overflowing() {
    let p = Price {
        input_micros_per_mtok: i64::MAX,
        output_micros_per_mtok: i64::MAX,
        cached_input_micros_per_mtok: i64::MAX,
        reasoning_micros_per_mtok: i64::MAX,
        per_image_micros: i64::MAX,
        per_second_micros: i64::MAX,
        per_mchar_micros: i64::MAX,
        version: 1,
    };
    let t = Tokens {
        input: u64::MAX,
        output: u64::MAX,
        cached_input: u64::MAX / 2,
        reasoning: u64::MAX / 2,
        images: u64::MAX,
        media_ms: u64::MAX,
        characters: u64::MAX,
    };
    assert_eq!(cost_micros(t, &p), i64::MAX);
}

/// The full price of the tests below: $2.50 in, $1.25 cached in, $10 out, $12 reasoning per 1M;
/// $0.04 an image; $0.10 a second.
fn full() -> Price {
    Price {
        input_micros_per_mtok: 2_500_000,
        output_micros_per_mtok: 10_000_000,
        cached_input_micros_per_mtok: 1_250_000,
        reasoning_micros_per_mtok: 12_000_000,
        per_image_micros: 40_000,
        per_second_micros: 100_000,
        per_mchar_micros: 15_000_000,
        version: 7,
    }
}

#[test]
fn cached_input_is_the_part_of_input_charged_at_the_cached_rate() {
    // 1000 prompt tokens of which 600 cached: 400 × 2.5 + 600 × 1.25 = 1000 + 750.
    let t = Tokens {
        cached_input: 600,
        ..tokens(1_000, 0)
    };
    assert_eq!(cost_micros(t, &full()), 1_750);
}

#[test]
fn reasoning_is_the_part_of_output_charged_at_the_reasoning_rate() {
    // OpenAI's convention: completion_tokens (500) includes reasoning_tokens (200).
    // 300 × 10 + 200 × 12 = 3000 + 2400; the reasoning tokens are not charged twice.
    let t = Tokens {
        reasoning: 200,
        ..tokens(0, 500)
    };
    assert_eq!(cost_micros(t, &full()), 5_400);
}

#[test]
fn a_zero_cached_or_reasoning_price_falls_back_to_input_or_output() {
    let t = Tokens {
        cached_input: 600,
        reasoning: 200,
        ..tokens(1_000, 500)
    };
    // Everything at the plain rates: 1000 × 2.5 + 500 × 10.
    assert_eq!(cost_micros(t, &price(2_500_000, 10_000_000)), 2_500 + 5_000);
}

#[test]
fn parts_larger_than_their_totals_are_capped_at_the_total() {
    let t = Tokens {
        cached_input: 5_000,
        reasoning: 9_000,
        ..tokens(1_000, 500)
    };
    // All 1000 input tokens cached, all 500 output tokens reasoning.
    assert_eq!(cost_micros(t, &full()), 1_250 + 6_000);
}

#[test]
fn images_and_seconds_are_priced_per_unit() {
    let t = Tokens {
        images: 3,
        media_ms: 12_345,
        ..Tokens::default()
    };
    // 3 × 40000 + 12.345 s × 100000 = 120000 + 1234500.
    assert_eq!(cost_micros(t, &full()), 1_354_500);
    // Milliseconds round half up: 0.0005 s × 1000 micro-USD/s = 0.5 -> 1.
    let half = Price {
        per_second_micros: 1_000,
        ..Price::default()
    };
    let t = Tokens {
        media_ms: 1,
        ..Tokens::default()
    };
    assert_eq!(cost_micros(t, &half), 1);
}

#[test]
fn audio_seconds_are_priced_per_millisecond_rounded_half_up() {
    // whisper-1 at $0.006 a minute = 100 micro-USD a second: 61.5 s = 6150.
    let whisper = Price {
        per_second_micros: 100,
        ..Price::default()
    };
    let t = |media_ms| Tokens {
        media_ms,
        ..Tokens::default()
    };
    assert_eq!(cost_micros(t(61_500), &whisper), 6_150);
    // 5 ms × 100 / 1000 = 0.5 -> 1 (half up); 4 ms = 0.4 -> 0.
    assert_eq!(cost_micros(t(5), &whisper), 1);
    assert_eq!(cost_micros(t(4), &whisper), 0);
}

#[test]
fn speech_characters_are_priced_per_million_rounded_half_up() {
    // tts-1 at $15 per 1M characters: 1000 characters = 15000 micro-USD.
    let t = |characters| Tokens {
        characters,
        ..Tokens::default()
    };
    assert_eq!(cost_micros(t(1_000), &full()), 15_000);
    // 1 character at 15 micro-USD; at 0.5 micro-USD a character (500000 per 1M): 1 -> 0.5 -> 1,
    // 3 -> 1.5 -> 2.
    assert_eq!(cost_micros(t(1), &full()), 15);
    let half = Price {
        per_mchar_micros: 500_000,
        ..Price::default()
    };
    assert_eq!(cost_micros(t(1), &half), 1);
    assert_eq!(cost_micros(t(3), &half), 2);
    // A row without a character price charges no characters.
    assert_eq!(cost_micros(t(1_000_000), &Price::default()), 0);
}

#[test]
fn every_line_is_rounded_on_its_own() {
    let p = Price {
        input_micros_per_mtok: 1_500_000,
        cached_input_micros_per_mtok: 500_000,
        output_micros_per_mtok: 1_500_000,
        reasoning_micros_per_mtok: 500_000,
        ..Price::default()
    };
    // Each line is 1 token: 1.5 -> 2, 0.5 -> 1, 1.5 -> 2, 0.5 -> 1.
    let t = Tokens {
        input: 2,
        cached_input: 1,
        output: 2,
        reasoning: 1,
        ..Tokens::default()
    };
    assert_eq!(cost_micros(t, &p), 6);
}

fn check(text: &str, scale: u32, expected: Result<i64, &str>) {
    let got = parse_decimal_scaled(text, scale);
    match expected {
        Ok(v) => assert_eq!(got, Ok(v), "{text} × 10^{scale}"),
        Err(kind) => {
            let err = got.expect_err(text);
            let name = match err {
                DecimalError::Syntax(_) => "syntax",
                DecimalError::Negative(_) => "negative",
                DecimalError::TooPrecise(_) => "precise",
                DecimalError::TooLarge(_) => "large",
            };
            assert_eq!(name, kind, "{text} × 10^{scale}: {err}");
        }
    }
}

#[test]
fn decimals_are_scaled_exactly() {
    // USD per token → micro-USD per 1M tokens (× 10^12).
    check("2.5e-06", 12, Ok(2_500_000));
    check("2.5E-6", 12, Ok(2_500_000));
    check("0.0000025", 12, Ok(2_500_000));
    check("1.5e-07", 12, Ok(150_000));
    check("6e-07", 12, Ok(600_000));
    check("1.25e-06", 12, Ok(1_250_000));
    check("3e-05", 12, Ok(30_000_000));
    check("1e-12", 12, Ok(1));
    check("0", 12, Ok(0));
    check("0.0", 12, Ok(0));
    check("0e0", 12, Ok(0));
    // Values f64 cannot hold exactly still come out exact.
    check("1.1e-07", 12, Ok(110_000));
    check("0.30000000000000004", 17, Ok(30_000_000_000_000_004));
    // USD → micro-USD (× 10^6).
    check("2.50", 6, Ok(2_500_000));
    check("0.04", 6, Ok(40_000));
    check("+12", 6, Ok(12_000_000));
    check("1E3", 6, Ok(1_000_000_000));
    check(".5", 6, Ok(500_000));
    check("5.", 6, Ok(5_000_000));
    check("100000", 0, Ok(100_000));
    check("8192.0", 0, Ok(8192));
}

#[test]
fn decimals_that_are_not_exact_or_not_numbers_are_refused() {
    check("1e-13", 12, Err("precise"));
    check("2.5000001e-06", 12, Err("precise"));
    check("0.0000001", 6, Err("precise"));
    check("-1e-06", 12, Err("negative"));
    check("", 12, Err("syntax"));
    check(".", 12, Err("syntax"));
    check("abc", 12, Err("syntax"));
    check("1,5", 6, Err("syntax"));
    check("1e", 6, Err("syntax"));
    check("0x10", 6, Err("syntax"));
    check("NaN", 6, Err("syntax"));
    check("1e400", 6, Err("large"));
    check("99999999999999999999", 0, Err("large"));
    check("10000000", 12, Err("large"));
}

#[test]
fn every_spelling_of_a_value_scales_to_the_same_integer() {
    // n × 10^-k written three ways (exponent, plain decimal, padded with zeros) all scale back
    // to n with scale k; one more digit of precision is refused.
    let mut n: i64 = 1;
    while n < 1_000_000_000_000 {
        for k in 0..=12u32 {
            let exp = format!("{n}e-{k}");
            let digits = format!("{n:0>width$}", width = k as usize + 1);
            let (whole, frac) = digits.split_at(digits.len() - k as usize);
            let plain = if k == 0 {
                whole.to_owned()
            } else {
                format!("{whole}.{frac}")
            };
            let padded = format!("00{plain}{}", if k == 0 { ".000" } else { "000" });
            for text in [&exp, &plain, &padded] {
                assert_eq!(parse_decimal_scaled(text, k), Ok(n), "{text} × 10^{k}");
            }
            if n % 10 != 0 {
                let finer = format!("{n}e-{}", k + 1);
                assert!(
                    matches!(
                        parse_decimal_scaled(&finer, k),
                        Err(DecimalError::TooPrecise(_))
                    ),
                    "{finer} × 10^{k}"
                );
            }
        }
        n = n * 7 + 3;
    }
}

#[test]
fn the_cost_lines_sum_to_the_cost_and_name_their_units_quantities_and_rates() {
    let p = full();
    let usage = Tokens {
        input: 1_234,
        output: 567,
        cached_input: 200,
        reasoning: 100,
        images: 2,
        media_ms: 2_500,
        characters: 3_000,
    };
    let lines = cost_lines(usage, &p);
    let sum: i64 = lines.iter().map(|l| l.amount_micros).sum();
    assert_eq!(sum, cost_micros(usage, &p));
    let by_unit = |u: Unit| lines.iter().find(|l| l.unit == u).unwrap();
    assert_eq!(by_unit(Unit::InputTokens).quantity, 1_034);
    assert_eq!(by_unit(Unit::CachedInputTokens).quantity, 200);
    assert_eq!(
        by_unit(Unit::CachedInputTokens).unit_price_micros,
        p.cached_input_micros_per_mtok
    );
    assert_eq!(by_unit(Unit::OutputTokens).quantity, 467);
    assert_eq!(by_unit(Unit::ReasoningTokens).quantity, 100);
    assert_eq!(by_unit(Unit::Seconds).quantity, 2_500);
    assert_eq!(by_unit(Unit::Seconds).unit.price_basis(), "per_second");
    // Over many usages the lines always add up to the charged cost exactly.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let usage = Tokens {
            input: x % 100_000,
            output: (x >> 20) % 10_000,
            cached_input: (x >> 8) % 50_000,
            reasoning: (x >> 30) % 5_000,
            images: (x >> 40) % 4,
            media_ms: (x >> 44) % 100_000,
            characters: (x >> 50) % 10_000,
        };
        let sum: i64 = cost_lines(usage, &p).iter().map(|l| l.amount_micros).sum();
        assert_eq!(sum, cost_micros(usage, &p), "{usage:?}");
    }
}
