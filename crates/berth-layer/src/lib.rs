//! Layer tar streams: decompression, safe extraction with whiteouts, and
//! reproducible layers written from directories.
//!
//! A layer is untrusted input. Extraction refuses any entry that would land
//! outside the target directory, by `..`, an absolute path, a path through a
//! symlink, or a hard link to somewhere outside, and names the entry.

mod extract;
mod write;

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

pub use berth_oci::media::Compression;
pub use extract::{
    extract, extract_verified, is_overlay_whiteout, ExtractOptions, Extracted, Whiteouts,
};
pub use write::{overlay_changes, tree_items, write_layer, ChangeKind, Item, WriteOptions};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("refusing to extract {entry:?}: {reason}")]
    Unsafe { entry: String, reason: String },
    #[error("invalid tar stream: {0}")]
    Tar(#[source] io::Error),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// A hostile or broken archive is bad input; failing to write what
    /// it holds (a full disk) is ours.
    pub fn kind(&self) -> berth_oci::ErrorKind {
        match self {
            Error::Unsafe { .. } | Error::Tar(_) => berth_oci::ErrorKind::InvalidArgument,
            Error::Io { .. } => berth_oci::ErrorKind::Internal,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

/// Wraps `reader` in the decompressor its first bytes call for.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> Result<Box<dyn Read + 'a>, Error> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered.fill_buf().map_err(Error::Tar)?;
    match Compression::sniff(head) {
        Compression::None => Ok(Box::new(buffered)),
        // MultiGzDecoder: `cat a.gz b.gz` is a valid gzip stream and some tools write layers that way.
        Compression::Gzip => Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buffered))),
        Compression::Zstd => Ok(Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered).map_err(Error::Tar)?,
        )),
    }
}
