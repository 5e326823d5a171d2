//! `--limit-rate`: bytes per second as curl spells them, a number with an optional `K`, `M` or
//! `G` suffix (powers of 1024, either case), so that a cap copied from a curl command means the
//! same here.

/// Parses `2M`, `500k`, `1.5G` or `65536` into bytes per second; `0` means no cap.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (number, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_lowercase()),
        _ => (t, ' '),
    };
    let scale: u64 = match unit {
        ' ' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return Err(format!("{s:?}: the unit must be K, M or G (bytes per second)")),
    };
    let value: f64 = number.parse().map_err(|_| format!("{s:?} is not a rate like 500K, 2M or 1G"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{s:?} is not a rate like 500K, 2M or 1G"));
    }
    let bytes = value * scale as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn suffixes_are_powers_of_1024_in_either_case() {
        assert_eq!(parse_rate("2M"), Ok(2 << 20));
        assert_eq!(parse_rate("500k"), Ok(500 << 10));
        assert_eq!(parse_rate("1G"), Ok(1 << 30));
        assert_eq!(parse_rate("1.5m"), Ok(3 << 19));
        assert_eq!(parse_rate("65536"), Ok(65536));
        assert_eq!(parse_rate("0"), Ok(0));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["", "M", "2X", "-1M", "two", "2MB", "NaN", "1e30G"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
