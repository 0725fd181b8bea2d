//! Puts `memory.x` and `device.x` where the linker finds them and links with cortex-m-rt's
//! `link.x` (which `INCLUDE`s both). No defmt, so no `-Tdefmt.x`.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for script in ["memory.x", "device.x"] {
        let text = fs::read(script).expect("linker script next to Cargo.toml");
        fs::write(out.join(script), text).expect("OUT_DIR is writable");
        println!("cargo:rerun-if-changed={script}");
    }
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rustc-link-arg-bins=--nmagic");
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    // Fold identical functions (monomorphised copies): about 1 KiB of flash.
    println!("cargo:rustc-link-arg-bins=--icf=all");
    println!("cargo:rerun-if-changed=build.rs");
}
