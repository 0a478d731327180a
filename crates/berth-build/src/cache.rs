//! Build cache keys: a versioned, canonical encoding of what a step's
//! result depends on, hashed with SHA-256.
//!
//! The encoding is explicit field by field, so the key only changes when
//! this file changes, never because a `Debug` impl or a struct's field
//! order did. Any change to what is written, or how, must bump
//! [`VERSION`]: the golden tests below fail until it is deliberate.
//!
//! Layout (every `str` is a big-endian u64 byte length, then the bytes):
//!
//! ```text
//! key    := str("berth-build-cache") str(VERSION) str(parent) field*
//! field  := str(name) value
//! value  := 'n'                        absent (an unset option)
//!         | 's' str                    a string
//!         | 'l' u64(count) str*        a list of strings, in order
//! ```
//!
//! A step's key starts from its parent image (`scratch` for none), then
//! [`Key::step`] writes the instruction as parsed (its keyword and every
//! field, unexpanded), and the engine adds what the step also reads: the
//! ARG values in force, the expanded command or paths, and digests of
//! inputs from outside the image (context files, downloads, other stages).

use sha2::{Digest as _, Sha256};

use crate::{CmdForm, CopySpec, Health, Inst, Src};

/// The encoding's version; part of every key.
pub const VERSION: &str = "v1";

/// A cache key being built. Fields are written in the order added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    enc: Vec<u8>,
}

impl Key {
    /// A key for a step whose parent image is `parent` (an image id, or
    /// `scratch`).
    pub fn new(parent: &str) -> Key {
        let mut k = Key { enc: Vec::new() };
        k.str("berth-build-cache");
        k.str(VERSION);
        k.str(parent);
        k
    }

    fn str(&mut self, s: &str) {
        self.enc.extend_from_slice(&(s.len() as u64).to_be_bytes());
        self.enc.extend_from_slice(s.as_bytes());
    }

    fn name(&mut self, name: &str) -> &mut Self {
        self.str(name);
        self
    }

    /// A string field.
    pub fn field(&mut self, name: &str, value: &str) -> &mut Self {
        self.name(name).enc.push(b's');
        self.str(value);
        self
    }

    /// An optional string field; `None` and `Some("")` differ.
    pub fn opt(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.field(name, v),
            None => {
                self.name(name).enc.push(b'n');
                self
            }
        }
    }

    /// A list of strings, order kept.
    pub fn list<I, S>(&mut self, name: &str, items: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let items: Vec<S> = items.into_iter().collect();
        self.name(name).enc.push(b'l');
        self.enc
            .extend_from_slice(&(items.len() as u64).to_be_bytes());
        for i in &items {
            self.str(i.as_ref());
        }
        self
    }

    /// `name=value` pairs, as a list in the order given (pass a sorted
    /// map for a canonical order).
    pub fn pairs<'a, I>(&mut self, name: &str, pairs: I) -> &mut Self
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let flat: Vec<&str> = pairs
            .into_iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        self.list(name, flat)
    }

    fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.field(name, if value { "true" } else { "false" })
    }

    fn cmd(&mut self, name: &str, c: &CmdForm) -> &mut Self {
        match c {
            CmdForm::Exec(v) => self.field(name, "exec").list("argv", v),
            CmdForm::Shell(s) => self.field(name, "shell").field("script", s),
        }
    }

    /// The instruction as parsed: its keyword, then each of its fields.
    /// Every field is named here (no `..`), so a new field in [`Inst`]
    /// does not compile until it is given a place in the key.
    pub fn step(&mut self, inst: &Inst) -> &mut Self {
        match inst {
            Inst::Run {
                cmd,
                mounts,
                network,
            } => self
                .field("inst", "RUN")
                .cmd("cmd", cmd)
                .list("mounts", mounts)
                .opt("network", network.as_deref()),
            Inst::Copy(c) => self.copy(c),
            Inst::Env(s) => self.field("inst", "ENV").field("raw", s),
            Inst::Arg(s) => self.field("inst", "ARG").field("raw", s),
            Inst::Label(s) => self.field("inst", "LABEL").field("raw", s),
            Inst::Workdir(s) => self.field("inst", "WORKDIR").field("raw", s),
            Inst::Expose(v) => self.field("inst", "EXPOSE").list("raw", v),
            Inst::Cmd(c) => self.field("inst", "CMD").cmd("cmd", c),
            Inst::Entrypoint(c) => self.field("inst", "ENTRYPOINT").cmd("cmd", c),
            Inst::User(s) => self.field("inst", "USER").field("raw", s),
            Inst::Volume(v) => self.field("inst", "VOLUME").list("raw", v),
            Inst::Shell(v) => self.field("inst", "SHELL").list("argv", v),
            Inst::Stopsignal(s) => self.field("inst", "STOPSIGNAL").field("raw", s),
            Inst::Healthcheck(h) => self.health(h),
            Inst::Onbuild(s) => self.field("inst", "ONBUILD").field("trigger", s),
            Inst::Maintainer(s) => self.field("inst", "MAINTAINER").field("raw", s),
        }
    }

    fn copy(&mut self, c: &CopySpec) -> &mut Self {
        let CopySpec {
            add,
            srcs,
            dest,
            from,
            chown,
            chmod,
            link,
            checksum,
            keep_git_dir,
        } = c;
        self.field("inst", if *add { "ADD" } else { "COPY" })
            .opt("from", from.as_deref())
            .opt("chown", chown.as_deref())
            .opt("chmod", chmod.as_deref())
            .bool("link", *link)
            .opt("checksum", checksum.as_deref())
            .bool("keep-git-dir", *keep_git_dir);
        self.name("srcs").enc.push(b'l');
        self.enc
            .extend_from_slice(&(srcs.len() as u64).to_be_bytes());
        for s in srcs {
            match s {
                Src::Path(p) => {
                    self.str("path");
                    self.str(p);
                }
                Src::HereDoc { name, body, expand } => {
                    self.str(if *expand {
                        "heredoc"
                    } else {
                        "heredoc-literal"
                    });
                    self.str(name);
                    self.str(body);
                }
            }
        }
        self.field("dest", dest)
    }

    fn health(&mut self, h: &Health) -> &mut Self {
        let Health {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } = h;
        self.field("inst", "HEALTHCHECK")
            .list("test", test)
            .opt("interval", interval.as_deref())
            .opt("timeout", timeout.as_deref())
            .opt("start-period", start_period.as_deref())
            .opt("start-interval", start_interval.as_deref())
            .opt("retries", retries.as_deref())
    }

    /// The canonical encoding, as hashed.
    pub fn bytes(&self) -> &[u8] {
        &self.enc
    }

    /// The key as the store keeps it: `sha256:<hex>` of the encoding.
    pub fn digest(&self) -> String {
        let sum = Sha256::digest(&self.enc);
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256:");
        for b in sum {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn first_step(text: &str) -> Inst {
        parse(&format!("FROM x\n{text}\n")).unwrap().stages[0].steps[0]
            .inst
            .clone()
    }

    fn key_of(text: &str) -> String {
        Key::new("scratch").step(&first_step(text)).digest()
    }

    /// Pins the encoding byte for byte. If this fails, the encoding
    /// changed: bump VERSION (old cache entries then stop matching,
    /// rather than matching the wrong thing) and update the expectation.
    #[test]
    fn golden_encoding() {
        let mut k = Key::new("p");
        k.field("a", "b").opt("c", None).list("d", ["e", ""]);
        let mut want = Vec::new();
        for s in ["berth-build-cache", "v1", "p", "a"] {
            want.extend_from_slice(&(s.len() as u64).to_be_bytes());
            want.extend_from_slice(s.as_bytes());
        }
        want.push(b's');
        want.extend_from_slice(&1u64.to_be_bytes());
        want.push(b'b');
        want.extend_from_slice(&1u64.to_be_bytes());
        want.push(b'c');
        want.push(b'n');
        want.extend_from_slice(&1u64.to_be_bytes());
        want.push(b'd');
        want.push(b'l');
        want.extend_from_slice(&2u64.to_be_bytes());
        want.extend_from_slice(&1u64.to_be_bytes());
        want.push(b'e');
        want.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(k.bytes(), want);
    }

    /// Known instructions give known keys.
    #[test]
    fn golden_keys() {
        let run = first_step("RUN --network=none echo hi");
        let mut k = Key::new("sha256:0123");
        k.step(&run)
            .list("argv", ["/bin/sh", "-c", "echo hi"])
            .pairs("args", &std::collections::BTreeMap::new());
        assert_eq!(
            k.digest(),
            "sha256:6fe7ee85baee5d3376191dc6ea355240f36ae8c4e93ad6b35cf3b2c2d2b26b95"
        );
        assert_eq!(
            key_of("COPY --chown=1:1 a b /dst/"),
            "sha256:86fe2bd5d6d2d7850f7bedc118848547b4ab73cf2ee351ed96baff603cb8804f"
        );
        assert_eq!(
            key_of("ENV A=1"),
            "sha256:394bf8df9f9f8bbe4873fe7a5f7cf65758d0280f9ea764eac5705ccd15625246"
        );
    }

    #[test]
    fn every_part_of_an_instruction_counts() {
        let keys = [
            "RUN echo hi",
            "RUN echo  hi",
            "RUN [\"echo\", \"hi\"]",
            "RUN --network=none echo hi",
            "RUN --network=host echo hi",
            "RUN --mount=type=cache,target=/c echo hi",
            "COPY a /b",
            "ADD a /b",
            "COPY --link a /b",
            "COPY --chmod=644 a /b",
            "COPY --chown=1 a /b",
            "COPY --from=s a /b",
            "COPY a /c",
            "COPY a b /c/",
            "COPY ab /c/",
            "ADD --checksum=sha256:00 a /b",
            "ADD --keep-git-dir=true a /b",
            "COPY <<EOF /b\nx\nEOF",
            "COPY <<EOF /b\ny\nEOF",
            "COPY <<'EOF' /b\nx\nEOF",
            "ENV A=1",
            "ENV A=2",
            "LABEL A=1",
            "ARG A=1",
            "WORKDIR /a",
            "USER a",
            "EXPOSE 80",
            "EXPOSE 80 81",
            "VOLUME /a",
            "CMD echo",
            "CMD [\"echo\"]",
            "ENTRYPOINT echo",
            "SHELL [\"sh\"]",
            "STOPSIGNAL 9",
            "HEALTHCHECK CMD true",
            "HEALTHCHECK --retries=2 CMD true",
            "HEALTHCHECK NONE",
            "ONBUILD RUN x",
            "MAINTAINER a",
        ]
        .map(key_of);
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        // Same instruction, same key; another parent, another key.
        assert_eq!(key_of("RUN echo hi"), keys[0]);
        let run = first_step("RUN echo hi");
        assert_ne!(Key::new("sha256:1").step(&run).digest(), keys[0]);
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let a = Key::new("p").field("ab", "c").digest();
        let b = Key::new("p").field("a", "bc").digest();
        assert_ne!(a, b);
        let a = Key::new("p").list("l", ["a", "b"]).digest();
        let b = Key::new("p").list("l", ["ab"]).digest();
        assert_ne!(a, b);
        let a = Key::new("p").opt("o", None).digest();
        let b = Key::new("p").opt("o", Some("")).digest();
        assert_ne!(a, b);
    }
}
