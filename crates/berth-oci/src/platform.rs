use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        default,
        rename = "os.features",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
}

impl Platform {
    /// The platform this binary runs on, in GOARCH terms.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            architecture: arch.to_string(),
            os: "linux".to_string(),
            variant: variant.map(str::to_string),
            ..Platform::default()
        }
    }

    /// Parses `os[/arch[/variant]]` as `--platform` takes it.
    pub fn parse(s: &str) -> Result<Platform, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(Error::InvalidPlatform(
                s.to_string(),
                "expected os[/arch[/variant]]",
            ));
        }
        // containerd's rule for each part.
        let component = |p: &&str| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !parts.iter().all(component) {
            return Err(Error::InvalidPlatform(
                s.to_string(),
                "each part may hold only letters, digits, '_' and '-'",
            ));
        }
        let os = parts[0].to_ascii_lowercase();
        let host = Platform::host();
        let architecture = match parts.get(1) {
            Some(a) => normalize_arch(&a.to_ascii_lowercase()),
            None => host.architecture.clone(),
        };
        let mut variant = parts.get(2).map(|v| v.to_ascii_lowercase());
        if architecture == "arm64" && variant.as_deref() == Some("v8") {
            variant = None;
        }
        if architecture == "arm" && variant.is_none() {
            variant = Some("v7".to_string());
        }
        Ok(Platform {
            os,
            architecture,
            variant,
            ..Platform::default()
        })
    }

    /// Whether an image for `self` is acceptable where `want` is asked for:
    /// os and architecture equal, and the variant equal when both have one
    /// (arm64's implicit v8 counts as none).
    pub fn matches(&self, want: &Platform) -> bool {
        let norm = |p: &Platform| {
            let arch = normalize_arch(&p.architecture);
            let variant = match (arch.as_str(), p.variant.as_deref()) {
                ("arm64", Some("v8")) => None,
                (_, v) => v.map(str::to_string),
            };
            (p.os.clone(), arch, variant)
        };
        let (os_a, arch_a, var_a) = norm(self);
        let (os_b, arch_b, var_b) = norm(want);
        os_a == os_b
            && arch_a == arch_b
            && match (var_a, var_b) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

fn normalize_arch(a: &str) -> String {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "armhf" | "armel" => "arm",
        "i386" => "386",
        other => other,
    }
    .to_string()
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_is_refused() {
        for bad in [
            "junk/../x",
            "linux/amd64/",
            "a b",
            "linux/amd64/v1/x",
            "../x",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_and_match() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!(Platform::parse("linux/arm64")
            .unwrap()
            .matches(&Platform::parse("linux/arm64/v8").unwrap()));
        assert!(!Platform::parse("linux/arm/v6")
            .unwrap()
            .matches(&Platform::parse("linux/arm/v7").unwrap()));
        assert!(!Platform::parse("linux/amd64")
            .unwrap()
            .matches(&Platform::parse("linux/arm64").unwrap()));
        assert!(Platform::parse("linux//x").is_err());
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().architecture,
            "amd64"
        );
    }
}
