//! Exact cost arithmetic: prices are integer micro-USD per million tokens, costs integer
//! micro-USD. No floating point anywhere.

use serde::{Deserialize, Serialize};

/// Prices for one model, in micro-USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub input_micros_per_mtok: i64,
    pub output_micros_per_mtok: i64,
    /// The catalog version this price came from; recorded on every usage row.
    pub version: u64,
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

/// Cost in micro-USD, rounded half up per line (input and output each), so a bill is the sum of
/// its parts. Saturates instead of overflowing.
pub fn cost_micros(tokens: Tokens, price: &Price) -> i64 {
    line(tokens.input, price.input_micros_per_mtok)
        .saturating_add(line(tokens.output, price.output_micros_per_mtok))
}

fn line(tokens: u64, micros_per_mtok: i64) -> i64 {
    if micros_per_mtok <= 0 || tokens == 0 {
        return 0;
    }
    let product = u128::from(tokens) * micros_per_mtok as u128;
    let rounded = (product + 500_000) / 1_000_000;
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(input: i64, output: i64) -> Price {
        Price {
            input_micros_per_mtok: input,
            output_micros_per_mtok: output,
            version: 1,
        }
    }

    #[test]
    fn cost_is_exact_for_whole_millions() {
        // $0.15 / 1M input, $0.60 / 1M output.
        let p = price(150_000, 600_000);
        let c = cost_micros(
            Tokens {
                input: 2_000_000,
                output: 1_000_000,
            },
            &p,
        );
        assert_eq!(c, 300_000 + 600_000);
    }

    #[test]
    fn cost_rounds_half_up_per_line() {
        let p = price(150_000, 600_000);
        // 10 input tokens at 0.15 micro-USD each = 1.5 -> 2; 3 output at 0.6 = 1.8 -> 2.
        assert_eq!(
            cost_micros(
                Tokens {
                    input: 10,
                    output: 3
                },
                &p
            ),
            4
        );
        assert_eq!(
            cost_micros(
                Tokens {
                    input: 3,
                    output: 0
                },
                &p
            ),
            0
        );
    }

    #[test]
    fn cost_saturates_instead_of_overflowing() {
        let p = price(i64::MAX, i64::MAX);
        assert_eq!(
            cost_micros(
                Tokens {
                    input: u64::MAX,
                    output: u64::MAX
                },
                &p
            ),
            i64::MAX
        );
    }
}
