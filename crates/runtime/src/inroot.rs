//! Reading a small file of an image's rootfs as the container would see it: symbolic links
//! resolve inside the rootfs (never to the host's files), only a regular file is read, and
//! only up to a size cap. An image is untrusted input: its `/etc/passwd` may be a link to
//! `/dev/zero` or to a host secret, or a FIFO that blocks forever.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

/// The biggest `/etc/passwd` or `/etc/group` read; real ones are a few KiB.
pub(crate) const MAX_ETC_FILE: u64 = 1 << 20;

/// The contents of `rel` (a relative path like `etc/passwd`) under `root`, with links
/// resolved as if `root` were `/`; `None` when there is no such file. A path that is not a
/// regular file, or is bigger than `cap`, is an error.
pub(crate) fn read_in_root(root: &Path, rel: &str, cap: u64) -> io::Result<Option<Vec<u8>>> {
    let dir = open(
        root,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // Non-blocking, so that opening a FIFO does not wait for a writer.
    let flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(dir.as_fd(), rel, how) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        // Kernels before 5.6: no link is followed at all.
        Err(Errno::ENOSYS) => match open_without_links(&dir, rel, flags) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    let st = fstat(fd.as_fd())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/{rel} is not a regular file"),
        ));
    }
    let mut data = Vec::new();
    File::from(fd).take(cap + 1).read_to_end(&mut data)?;
    if data.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/{rel} is bigger than {cap} bytes"),
        ));
    }
    Ok(Some(data))
}

/// Opens `rel` under `dir` one component at a time, refusing every symbolic link and `..`.
fn open_without_links(dir: &OwnedFd, rel: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Err(Errno::EISDIR);
    };
    let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut at: Option<OwnedFd> = None;
    for p in dirs.iter().chain(std::iter::once(last)) {
        if *p == ".." {
            return Err(Errno::EXDEV);
        }
        let base = at.as_ref().unwrap_or(dir).as_fd();
        let f = if p == last {
            flags | nofollow
        } else {
            OFlag::O_PATH | OFlag::O_DIRECTORY | nofollow
        };
        at = Some(openat(base, *p, f, Mode::empty())?);
    }
    at.ok_or(Errno::ENOENT)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn links_resolve_inside_the_root_and_only_regular_files_are_read() {
        let host = tempfile::tempdir().unwrap();
        let secret = host.path().join("secret");
        std::fs::write(&secret, "root:x:0:0:host secret:/:/bin/sh\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir(&etc).unwrap();

        std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
        assert_eq!(
            read_in_root(root.path(), "etc/group", MAX_ETC_FILE).unwrap().unwrap(),
            b"root:x:0:\n"
        );
        assert_eq!(read_in_root(root.path(), "etc/passwd", MAX_ETC_FILE).unwrap(), None);

        // An absolute link to a host file is resolved in the rootfs, where there is none.
        symlink(&secret, etc.join("passwd")).unwrap();
        assert_eq!(read_in_root(root.path(), "etc/passwd", MAX_ETC_FILE).unwrap(), None);
        // As is one that climbs out with `..`.
        std::fs::remove_file(etc.join("passwd")).unwrap();
        let up = format!("../../../../../../..{}", secret.display());
        symlink(&up, etc.join("passwd")).unwrap();
        assert_eq!(read_in_root(root.path(), "etc/passwd", MAX_ETC_FILE).unwrap(), None);

        // A link to the host's /dev/zero: in the rootfs there is none either, and a device
        // of the image's own is not a regular file.
        std::fs::remove_file(etc.join("passwd")).unwrap();
        symlink("/dev/zero", etc.join("passwd")).unwrap();
        assert_eq!(read_in_root(root.path(), "etc/passwd", MAX_ETC_FILE).unwrap(), None);
        std::fs::remove_file(etc.join("passwd")).unwrap();
        symlink("/", etc.join("passwd")).unwrap();
        let e = read_in_root(root.path(), "etc/passwd", MAX_ETC_FILE).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        std::fs::remove_file(etc.join("passwd")).unwrap();
        nix::unistd::mkfifo(&etc.join("passwd"), Mode::from_bits_truncate(0o644)).unwrap();
        let e = read_in_root(root.path(), "etc/passwd", MAX_ETC_FILE).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");

        // A link inside the rootfs is followed there.
        std::fs::remove_file(etc.join("passwd")).unwrap();
        std::fs::write(root.path().join("real"), "www:x:33:33::/var/www:/bin/sh\n").unwrap();
        symlink("/real", etc.join("passwd")).unwrap();
        assert_eq!(
            read_in_root(root.path(), "etc/passwd", MAX_ETC_FILE).unwrap().unwrap(),
            b"www:x:33:33::/var/www:/bin/sh\n"
        );

        // Too big.
        std::fs::write(root.path().join("real"), vec![b'#'; 2048]).unwrap();
        let e = read_in_root(root.path(), "etc/passwd", 1024).unwrap_err();
        assert!(e.to_string().contains("bigger than 1024"), "{e}");
    }

    #[test]
    fn without_openat2_no_link_is_followed() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/group"), "g").unwrap();
        symlink("/etc/hostname", root.path().join("etc/passwd")).unwrap();
        let dir = open(root.path(), OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()).unwrap();
        assert!(open_without_links(&dir, "etc/group", OFlag::O_RDONLY).is_ok());
        assert_eq!(
            open_without_links(&dir, "etc/passwd", OFlag::O_RDONLY).unwrap_err(),
            Errno::ELOOP
        );
        assert_eq!(
            open_without_links(&dir, "../etc/group", OFlag::O_RDONLY).unwrap_err(),
            Errno::EXDEV
        );
    }
}
