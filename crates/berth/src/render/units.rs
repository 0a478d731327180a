//! Sizes as Docker prints them (go-units).

/// Go's `%.{precision}g`: `precision` significant digits, trailing zeros
/// dropped, exponent form only for very large or small numbers.
pub fn go_g(v: f64, precision: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let p = precision.max(1);
    let e_form = format!("{:.*e}", p - 1, v);
    let (mantissa, exp) = e_form.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("integer exponent");
    if exp < -4 || exp >= p as i32 {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{m}e{sign}{:02}", exp.abs());
    }
    let decimals = (p as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn size_with(size: f64, base: f64, units: &[&str], precision: usize) -> String {
    let mut size = size;
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    format!("{}{}", go_g(size, precision), units[i])
}

const DECIMAL: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// go-units HumanSizeWithPrecision: decimal units (`docker images` uses 3).
pub fn human_size_precision(bytes: f64, precision: usize) -> String {
    size_with(bytes, 1000.0, &DECIMAL, precision)
}

/// go-units HumanSize (precision 4).
pub fn human_size(bytes: f64) -> String {
    human_size_precision(bytes, 4)
}

/// go-units BytesSize: binary units, precision 4.
pub fn bytes_size(bytes: f64) -> String {
    size_with(bytes, 1024.0, &BINARY, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_go() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(1000.0), "1kB");
        assert_eq!(human_size_precision(2_140_160.0, 3), "2.14MB");
        assert_eq!(human_size_precision(1_500_000_000.0, 3), "1.5GB");
        assert_eq!(human_size_precision(77_800_000.0, 3), "77.8MB");
        assert_eq!(human_size_precision(123_456_789.0, 3), "123MB");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
        assert_eq!(bytes_size(25_275_043_840.0), "23.54GiB");
        assert_eq!(go_g(1234567.0, 3), "1.23e+06");
        assert_eq!(go_g(0.0001234, 3), "0.000123");
    }
}
