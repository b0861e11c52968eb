//! Archive extraction (zip, tar, tar.gz/tgz, tar.bz2, tar.xz), safe against path escapes and bombs.
