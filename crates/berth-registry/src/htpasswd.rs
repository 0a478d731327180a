//! htpasswd files with bcrypt entries (`htpasswd -B`), what Docker's
//! reference registry accepts.

use std::collections::HashMap;
use std::path::Path;

use crate::Error;

pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Io(format!("read {}: {e}", path.display())))?;
        Htpasswd::parse(&text).map_err(|m| Error::Invalid(format!("{}: {m}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: want user:hash", i + 1))?;
            if !hash.starts_with("$2") {
                return Err(format!(
                    "line {}: only bcrypt entries are supported (make them with htpasswd -B)",
                    i + 1
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Htpasswd { users })
    }

    pub fn check(&self, user: &str, password: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|h| bcrypt::verify(password, h).unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_bcrypt_and_refuses_other_hashes() {
        let h = bcrypt::hash("s3cret", 4).unwrap();
        let f = Htpasswd::parse(&format!("# users\nalice:{h}\n")).unwrap();
        assert!(f.check("alice", "s3cret"));
        assert!(!f.check("alice", "wrong"));
        assert!(!f.check("bob", "s3cret"));
        assert!(Htpasswd::parse("alice:{SHA}abc").is_err());
        assert!(Htpasswd::parse("no-colon").is_err());
    }
}
