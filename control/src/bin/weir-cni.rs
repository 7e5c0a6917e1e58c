//! weir-cni: the CNI plugin of weir (spec 1.0.0 and 1.1.0). A runtime runs
//! it with `CNI_COMMAND` and friends in the environment and the network
//! configuration on stdin; it asks weir-control (the configuration's
//! `socket`, default /run/weir/cni.sock) and prints the result, or a CNI
//! error document with a non-zero exit status. See docs/cni.md.

fn main() {
    std::process::exit(weir_control::cni::plugin::main());
}
