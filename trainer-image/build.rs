//! Link flags for libtorch (tch-rs's recommended trick).
//!
//! Rust links with `--as-needed`, which drops `libtorch_cuda.so` because no symbol of it is
//! referenced directly: the binary then runs on CPU even on a GPU machine, silently.
//! `--no-as-needed -ltorch_cuda -ltorch` keeps them, and the rpath lets the binary and
//! its tests find libtorch in the virtualenv without LD_LIBRARY_PATH.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(std::path::PathBuf::from) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        println!("cargo:rustc-env=OCELLUS_LIBTORCH_LIB={}", lib.display());
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-ltorch_cuda");
        }
    }
    println!("cargo:rustc-link-arg=-ltorch");
}
