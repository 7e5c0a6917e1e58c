//! Generates bindings to Debian's libdpdk (found with pkg-config) and compiles C
//! wrappers for DPDK's static inline functions (rx/tx burst, mbuf alloc/free, ...)
//! so Rust can call them.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> String {
    let out =
        Command::new("pkg-config").args(args).arg("libdpdk").output().unwrap_or_else(|e| {
            panic!("dpdk-sys: cannot run pkg-config: {e} (install pkg-config; scripts/setup.sh does)")
        });
    if !out.status.success() {
        panic!(
            "dpdk-sys: pkg-config {args:?} libdpdk failed: {} (install libdpdk-dev; scripts/setup.sh does)",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).expect("pkg-config output is UTF-8")
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());

    // The full cflags matter: they carry `-include rte_config.h` and `-march=...`,
    // which the pkg-config crate would drop.
    let cflags: Vec<String> = pkg_config(&["--cflags"]).split_whitespace().map(String::from).collect();
    let libs = pkg_config(&["--libs"]);
    for tok in libs.split_whitespace() {
        if let Some(dir) = tok.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = tok.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={lib}");
        } else if tok.starts_with("-Wl,") {
            println!("cargo:rustc-link-arg={tok}");
        }
    }

    let wrap_src = out_dir.join("dpdk_static_fns");
    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .allowlist_function("rte_.*")
        .allowlist_function("weir_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .blocklist_function("rte_.*_fp") // function-pointer helpers we never call
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_src)
        // Packed protocol headers from rte_flow that Rust cannot lay out; weir never
        // uses them, so they stay opaque.
        .opaque_type("rte_l2tpv2_.*")
        .opaque_type("rte_gtp_psc_.*")
        .derive_debug(false)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .generate()
        .expect("dpdk-sys: bindgen failed on wrapper.h");
    bindings.write_to_file(out_dir.join("bindings.rs")).expect("dpdk-sys: cannot write bindings.rs");

    let mut build = cc::Build::new();
    build.file(wrap_src.with_extension("c")).include(env::current_dir().unwrap());
    for f in &cflags {
        build.flag(f);
    }
    build.warnings(false).opt_level(3).compile("dpdk_static_fns");
}
