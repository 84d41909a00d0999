//! Content-addressed blobs under `blobs/sha256/<hex>`. A blob is written to a temporary file,
//! hashed while written, checked against its digest, fsynced and only then renamed into place,
//! so a blob that exists is whole and correct.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext};
use crate::sys;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temporary name for this process.
pub(crate) fn temp_name(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    dir: PathBuf,
    tmp: PathBuf,
}

/// A blob being written: hashed as it goes, removed if dropped before [`BlobWriter::commit`].
pub(crate) struct BlobWriter {
    out: Option<HashingWriter<io::BufWriter<File>>>,
    tmp_path: PathBuf,
    blobs: Blobs,
}

impl Blobs {
    pub(crate) fn open(root: &Path) -> Result<Blobs, Error> {
        let dir = root.join("blobs").join("sha256");
        let tmp = root.join("blobs").join(".tmp");
        fs::create_dir_all(&dir).ctx(|| format!("cannot create {}", dir.display()))?;
        // Nobody else writes here (the store is locked), so what is left is from a crash.
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).ctx(|| format!("cannot create {}", tmp.display()))?;
        Ok(Blobs { dir, tmp })
    }

    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub(crate) fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub(crate) fn size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }

    pub(crate) fn writer(&self) -> Result<BlobWriter, Error> {
        let tmp_path = self.tmp.join(temp_name("blob-"));
        let file = File::create(&tmp_path).ctx(|| format!("cannot create {}", tmp_path.display()))?;
        Ok(BlobWriter {
            out: Some(HashingWriter::new(io::BufWriter::with_capacity(256 * 1024, file))),
            tmp_path,
            blobs: self.clone(),
        })
    }

    /// Stores bytes whose digest is known, or checks them against `expected`.
    pub(crate) fn put(&self, data: &[u8], expected: &Digest, what: &str) -> Result<(), Error> {
        if self.exists(expected) {
            return Ok(());
        }
        let mut w = self.writer()?;
        w.write_all(data).ctx(|| format!("cannot write blob {expected}"))?;
        w.commit(Some(expected), what).map(|_| ())
    }

    /// Copies a stream into the store; with `expected`, the content must have that digest.
    pub(crate) fn ingest(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<(Digest, u64), Error> {
        if let Some(d) = expected {
            if let Some(size) = self.size(d) {
                return Ok((d.clone(), size));
            }
        }
        let mut w = self.writer()?;
        io::copy(&mut reader, &mut w).map_err(|source| Error::Io {
            context: format!("cannot copy {what} into the store"),
            source,
        })?;
        w.commit(expected, what)
    }

    /// Deletes a blob; returns the bytes freed.
    pub(crate) fn remove(&self, digest: &Digest) -> Result<u64, Error> {
        let path = self.path(digest);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(Error::Io {
                context: format!("cannot remove blob {digest}"),
                source,
            }),
        }
    }

    /// Every blob in the store.
    pub(crate) fn list(&self) -> Result<Vec<Digest>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).ctx(|| format!("cannot list {}", self.dir.display()))? {
            let entry = entry.ctx(|| format!("cannot list {}", self.dir.display()))?;
            if let Some(d) = entry.file_name().to_str().and_then(Digest::from_hex) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Removes leftover temporary files (only when nothing is being written).
    pub(crate) fn clean_temp(&self) -> Result<(), Error> {
        for entry in fs::read_dir(&self.tmp)
            .ctx(|| format!("cannot list {}", self.tmp.display()))?
            .flatten()
        {
            let _ = sys::remove_any(&entry.path());
        }
        Ok(())
    }
}

impl BlobWriter {
    pub(crate) fn written(&self) -> u64 {
        self.out.as_ref().map(|w| w.count()).unwrap_or(0)
    }

    /// Checks the digest, makes the blob durable and moves it into place.
    pub(crate) fn commit(mut self, expected: Option<&Digest>, what: &str) -> Result<(Digest, u64), Error> {
        let out = self.out.take().expect("commit once");
        let (buf, digest, size) = out.finish();
        let file = buf.into_inner().map_err(|e| Error::Io {
            context: format!("cannot write {what}"),
            source: e.into_error(),
        })?;
        if let Some(expected) = expected {
            if &digest != expected {
                return Err(Error::DigestMismatch {
                    what: what.to_string(),
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        file.sync_all().ctx(|| format!("cannot write {what}"))?;
        drop(file);
        let dst = self.blobs.path(&digest);
        fs::rename(&self.tmp_path, &dst).ctx(|| format!("cannot move {what} into the store"))?;
        sys::sync_dir(&self.blobs.dir).ctx(|| format!("cannot sync {}", self.blobs.dir.display()))?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.as_mut().expect("not committed").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().expect("not committed").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Committed blobs were renamed away; anything else is discarded.
        let _ = fs::remove_file(&self.tmp_path);
    }
}
